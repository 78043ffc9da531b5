//! Encoding a call: what the script is asked to do ([`Mode`]), and its keys
//! and arguments ([`Call`]), everything that does not depend on stored
//! state computed here, exactly.

use std::future::Future;
use std::hash::Hasher;
use std::pin::Pin;

use siphasher::sip128::{Hasher128, SipHasher13};
use smallvec::SmallVec;

use super::RedisBackend;
use crate::backend::{BackendError, Outcome};
use crate::key::Key;
use crate::policy::{Limit, LimitSet, Policy};
use crate::time::Nanos;
use crate::Algorithm;

/// What the script is asked to do.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Acquire,
    Peek,
    Reset,
    Absorb,
    /// Undo what an acquire at an explicit instant committed: a split
    /// cluster set's slots when another slot denied, and
    /// [`Backend::refund`](crate::backend::Backend::refund).
    Refund,
    /// An acquire's decisions without its writes: the slots of a split
    /// cluster set after a slot that denied, so that they have nothing to
    /// refund.
    Decide,
}

impl Mode {
    pub(super) fn code(self) -> &'static str {
        match self {
            Mode::Acquire => "a",
            Mode::Peek => "p",
            Mode::Reset => "r",
            Mode::Absorb => "f",
            Mode::Refund => "u",
            Mode::Decide => "d",
        }
    }
}

/// One script argument.
#[derive(Clone, Copy)]
pub(super) enum Arg {
    Str(&'static str),
    Num(u64),
}

/// A script call, owned so that its future is `'static`.
pub(super) struct Call {
    pub(super) mode: Mode,
    pub(super) now: Option<u64>,
    pub(super) keys: SmallVec<[String; 2]>,
    pub(super) args: Vec<Arg>,
    pub(super) limits: SmallVec<[u64; 2]>,
}

/// The boxed future of a Redis call.
pub(super) type CallFuture = Pin<Box<dyn Future<Output = Result<Outcome, BackendError>> + Send>>;

impl RedisBackend {
    /// The call of mode `mode` for `set`, at `now` or at the server's
    /// clock.
    pub(super) fn encode(&self, set: &LimitSet, mode: Mode, now: Option<Nanos>) -> Call {
        let limits = set.limits();
        let mut call = Call {
            mode,
            now: now.map(Nanos::as_u64),
            keys: SmallVec::with_capacity(limits.len()),
            args: Vec::with_capacity(3 + 8 * limits.len()),
            limits: SmallVec::with_capacity(limits.len()),
        };
        call.args.push(Arg::Str(mode.code()));
        call.args.push(match now {
            Some(n) => Arg::Num(n.as_u64()),
            None => Arg::Str(""),
        });
        call.args.push(Arg::Num(self.inner.ttl_margin_ms));
        for limit in limits {
            call.keys
                .push(key_name(&self.inner.prefix, &limit.policy, &limit.key));
            call.limits.push(limit.policy.quota().limit());
            encode_limit(&mut call.args, limit);
        }
        call
    }
}

/// The 8 arguments of one limit: everything that does not depend on the
/// stored state, computed exactly here.
fn encode_limit(args: &mut Vec<Arg>, limit: &Limit) {
    let quota = limit.policy.quota();
    let algorithm = limit.policy.algorithm();
    let t = quota.emission_interval().as_u64().max(1);
    let capacity = quota.burst().saturating_mul(t);
    let period = quota.period_nanos().as_u64().max(1);
    let (code, extra) = match algorithm {
        Algorithm::Gcra => ("g", 0),
        Algorithm::TokenBucket => ("t", 0),
        Algorithm::LeakyBucket => ("k", capacity),
        Algorithm::LeakyBucketQueue { max_delay } => (
            "k",
            capacity.saturating_add(Nanos::from(max_delay).as_u64()),
        ),
        Algorithm::FixedWindow => ("f", 0),
        Algorithm::FixedWindowStaggered => ("f", limit.key.stable_hash() % period),
        Algorithm::SlidingWindow => ("s", 0),
        Algorithm::SlidingWindowLog => ("l", 0),
    };
    args.push(Arg::Str(code));
    args.push(Arg::Num(limit.cost));
    args.push(Arg::Num(t));
    args.push(Arg::Num(capacity));
    args.push(Arg::Num(period));
    args.push(Arg::Num(quota.limit()));
    args.push(Arg::Num(extra));
    args.push(Arg::Str(if limit.policy.is_shadow() { "1" } else { "0" }));
}

/// `{prefix}{policy}:{<128-bit hash of the key bytes, hex>}`.
pub(super) fn key_name(prefix: &str, policy: &Policy, key: &Key) -> String {
    let mut h = SipHasher13::new_with_keys(0x7265_6469_735f_6b65, 0x795f_6e61_6d65_7631);
    h.write(key.as_bytes());
    let hash = h.finish128().as_u128();
    let name = policy.name();
    let mut out = String::with_capacity(prefix.len() + name.len() + 35);
    out.push_str(prefix);
    out.push_str(name);
    out.push_str(":{");
    out.push_str(&format!("{hash:032x}"));
    out.push('}');
    out
}

impl Call {
    /// The call of mode `mode` for the limits at `indices`, at `now` (or,
    /// if `None`, at the server's clock, read by the script).
    pub(super) fn subset(&self, mode: Mode, now: Option<u64>, indices: &[usize]) -> Call {
        let mut call = Call {
            mode,
            now,
            keys: SmallVec::with_capacity(indices.len()),
            args: Vec::with_capacity(3 + 8 * indices.len()),
            limits: SmallVec::with_capacity(indices.len()),
        };
        call.args.push(Arg::Str(mode.code()));
        call.args.push(match now {
            Some(n) => Arg::Num(n),
            None => Arg::Str(""),
        });
        call.args.extend_from_slice(&self.args[2..3]);
        for &j in indices {
            call.keys.push(self.keys[j].clone());
            call.args
                .extend_from_slice(&self.args[3 + 8 * j..3 + 8 * (j + 1)]);
            call.limits.push(self.limits[j]);
        }
        call
    }
}
