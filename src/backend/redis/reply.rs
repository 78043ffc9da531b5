//! Parsing the script's replies, and describing Redis errors without key
//! bytes.

use ::redis::{RedisError, Value};
use smallvec::SmallVec;

use crate::backend::{BackendError, Outcome};
use crate::time::Nanos;
use crate::Decision;

/// A Redis error as a message. Key names only carry hashes, so no key
/// bytes can appear here.
pub(super) fn describe(e: &RedisError) -> String {
    format!("redis: {e}")
}

/// A failed call's error, by kind (the `kind` label of the errors metric).
pub(super) fn failed(e: &RedisError) -> BackendError {
    let why = describe(e);
    if e.is_cluster_error() {
        BackendError::Cluster(why)
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        BackendError::Connection(why)
    } else if e.code() == Some("NOSCRIPT") || why.contains("script") {
        BackendError::Script(why)
    } else {
        BackendError::Unavailable(why)
    }
}

pub(super) fn malformed() -> BackendError {
    BackendError::Unavailable("redis: malformed reply from the tollgate script".into())
}

/// The script's reply: the set's verdict, five fields per limit, then the
/// instant it decided at.
pub(super) fn parse_reply(value: Value, limits: &[u64]) -> Result<Outcome, BackendError> {
    let Value::Array(items) = value else {
        return Err(malformed());
    };
    if items.len() != 2 + 5 * limits.len() {
        return Err(malformed());
    }
    let field = |i: usize| -> Result<&[u8], BackendError> {
        match &items[i] {
            Value::BulkString(b) => Ok(b.as_slice()),
            Value::SimpleString(s) => Ok(s.as_bytes()),
            _ => Err(malformed()),
        }
    };
    let number = |i: usize| -> Result<u64, BackendError> {
        std::str::from_utf8(field(i)?)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(malformed)
    };
    let allowed = field(0)? == b"1";
    let mut decisions = SmallVec::with_capacity(limits.len());
    for (j, &limit) in limits.iter().enumerate() {
        let at = 1 + 5 * j;
        let remaining = number(at + 1)?;
        let reset = Nanos::new(number(at + 2)?);
        // Absorb may report a retry time on an allowed decision.
        let retry = match field(at + 3)? {
            b"-" => None,
            _ => Some(Nanos::new(number(at + 3)?)),
        };
        let decision = if field(at)? == b"1" {
            let mut d = Decision::allow(limit, remaining, reset);
            d.retry_after = retry;
            d.delay = Nanos::new(number(at + 4)?);
            d
        } else {
            Decision::deny(limit, remaining, reset, retry)
        };
        decisions.push(decision);
    }
    let now = Nanos::new(number(1 + 5 * limits.len())?);
    Ok(Outcome::new(decisions, allowed).decided_at(now))
}
