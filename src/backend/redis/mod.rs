//! The Redis backend (feature `redis`); see [`RedisBackend`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::{Script, Value};
use smallvec::SmallVec;

use super::{Acquire, Backend, BackendError, Outcome};
use crate::key::Key;
use crate::policy::{LimitSet, Policy};
use crate::time::Nanos;

mod call;
mod connect;
mod reply;
#[cfg(feature = "redis-sentinel")]
mod sentinel;
mod split;
mod store;

pub use connect::{RedisBackendBuilder, RedisConnectError};

use call::{key_name, Arg, Call, CallFuture, Mode};
use connect::Connection;
use reply::{describe, failed, parse_reply};
use split::slot_groups;

/// How long a call may take before it fails with
/// [`BackendError::Timeout`]: 250 ms.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// How long [`RedisBackendBuilder::connect`] may take: 2 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The default prefix of every key tollgate writes: `tollgate:`.
pub const DEFAULT_KEY_PREFIX: &str = "tollgate:";

/// How long a key outlives the instant its state is fresh again: 1 s.
pub const DEFAULT_TTL_MARGIN: Duration = Duration::from_secs(1);

/// The whole script, assembled at compile time: shared arithmetic, one
/// file per algorithm, the dispatcher.
const SCRIPT: &str = concat!(
    include_str!("arith.lua"),
    "\n",
    include_str!("gcra.lua"),
    "\n",
    include_str!("token_bucket.lua"),
    "\n",
    include_str!("leaky_bucket.lua"),
    "\n",
    include_str!("fixed_window.lua"),
    "\n",
    include_str!("sliding_window.lua"),
    "\n",
    include_str!("sliding_log.lua"),
    "\n",
    include_str!("dispatch.lua"),
);

/// The Redis backend (feature `redis`): one limit shared exactly by every
/// app server that talks to the same Redis.
///
/// Cheap to clone: clones share one multiplexed connection. Build one with
/// [`RedisBackend::connect`] or [`RedisBackend::builder`], or on a Redis
/// Cluster with [`RedisBackend::cluster`] or
/// [`RedisBackend::cluster_builder`] (see [Redis Cluster](#redis-cluster)),
/// or through Redis Sentinel with `RedisBackend::sentinel_builder`
/// (feature `redis-sentinel`; see [Redis Sentinel](#redis-sentinel)).
///
/// ```no_run
/// use std::sync::Arc;
/// use tollgate::backend::{Backend, RedisBackend};
/// use tollgate::{Quota, key::Key, policy::{LimitSet, Policy}};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RedisBackend::connect("redis://127.0.0.1/").await?;
/// let policy = Arc::new(Policy::new("api", Quota::per_second(10)));
/// let set = LimitSet::single(policy, Key::from("alice"), 1);
/// let outcome = backend.acquire(&set).await?;
/// assert!(outcome.allowed());
/// # Ok(()) }
/// ```
///
///
/// # One script, one round trip
///
/// A whole [`LimitSet`] is checked by one Lua script call (`EVALSHA`),
/// all-or-nothing exactly like [`MemoryBackend`](super::MemoryBackend):
/// every limit is decided on tentative states (a key that appears twice
/// sees its own first count), and the states are written back only if
/// every enforcing (non-shadow) limit allowed. Redis runs a script
/// atomically, so app servers never race each other. The script is the
/// concatenation, at compile time, of one `.lua` file per algorithm (each a
/// line-for-line copy of its Rust twin in `src/algorithm/`), a shared
/// arithmetic file and a dispatcher; it is loaded once at connection
/// (`SCRIPT LOAD`) and reloaded by the `redis` crate when the server
/// answers `NOSCRIPT` (after a restart or a `SCRIPT FLUSH`).
///
/// # Time
///
/// The script reads the server's clock (`TIME`, microseconds), so app
/// servers with skewed clocks agree. [`RedisBackend::acquire_at`] and
/// [`RedisBackend::peek_at`] pass an explicit instant instead: that is how
/// the conformance table drives a real Redis through exact clock steps.
/// Every outcome reports the instant it was decided at ([`Outcome::at`]:
/// the server's `TIME` as the script read it, or the instant given), which
/// is what a later [`Backend::refund`] passes back.
///
/// # Exact integer arithmetic
///
/// Lua numbers in Redis are doubles, exact only below 2^53, while instants
/// are `u64` nanoseconds since the epoch (about 1.7 × 10^18) and the
/// sliding window multiplies two of them. Everything that does not depend
/// on stored state is computed here in Rust (the emission interval `T`,
/// the capacity `burst × T`, the period, the window offset of
/// [`Algorithm::FixedWindowStaggered`], the leaky bucket's ceiling) and
/// sent as decimal strings. In the script, numbers are arrays of base-2^24
/// limbs with exact addition, subtraction, multiplication and division
/// (every limb operation stays below 2^53; a division is estimated in
/// floating point, then corrected with exact products until
/// `0 ≤ a − q·b < b` holds, which is checked before it returns). The
/// decisions are those of [`Algorithm`](crate::Algorithm) to the nanosecond, which the
/// conformance table and a differential property test against the memory
/// backend verify on a real server.
///
/// # Keys
///
/// Each (policy, key) pair has one Redis key:
///
/// ```text
/// {prefix}{policy name}:{<32 hex digits>}
/// tollgate:api:{6f1c0e2b9a7d4c3e8f5a1b2c3d4e5f60}
/// ```
///
/// The hex digits are a 128-bit SipHash-1-3 (fixed keys, the same in every
/// process) of [`Key::as_bytes`], so neither an address nor a credential
/// appears in clear in Redis, and names stay short. The braces are a
/// Redis Cluster hash tag: every policy's key for one client lands in the
/// same slot, so a set of several policies on the same client key stays a
/// single-slot script. (Sets that mix client keys may span slots: see
/// [Redis Cluster](#redis-cluster).) The prefix defaults to
/// [`DEFAULT_KEY_PREFIX`].
///
/// Values: a string `g <tat>` (GCRA), `b <level> <last>` (token and leaky
/// buckets), `w <start> <count>` (fixed windows), `s <start> <prev>
/// <curr>` (sliding window), or, for the sliding log, a list whose first
/// element is a header `L <sum of costs> <sorted>` followed by `<instant>
/// <cost>` entries, oldest first. A value of another kind (the policy's
/// algorithm changed) counts as a fresh state. Two policies with the same
/// name share their keys, as in the memory backend; give policies with
/// different algorithms different names.
///
/// The sliding log reads only what it needs: while its instants never go
/// down (the server's clock), a check reads the header, the expired
/// entries at the front and the newest entry, whatever the limit. After
/// instants went backwards (explicit instants, a clock step), the log is
/// scanned whole, as in memory, about 2 µs per entry in Redis's Lua,
/// until it empties.
///
/// Every written key gets a TTL (`PX`/`PEXPIRE`): the time until its state
/// is fresh again (the decision's `reset_after`, rounded up to the
/// millisecond) plus a margin ([`RedisBackendBuilder::ttl_margin`]), so
/// Redis memory stays bounded by the clients active in the last period.
///
/// # Failures
///
/// The connection is the `redis` crate's multiplexed [`ConnectionManager`]
/// (concurrent requests pipelined on one connection, automatic
/// reconnection). Every call is bounded by a timeout (default
/// [`DEFAULT_TIMEOUT`]): past it, the call returns
/// [`BackendError::Timeout`]; any other failure is
/// [`BackendError::Unavailable`], with a message that never contains key
/// bytes. A call that timed out may still have been counted by Redis.
///
/// # Redis Cluster
///
/// [`RedisBackend::cluster`] builds the same backend (same script, same
/// arithmetic, same key names) on a cluster, through the `redis` crate's
/// async cluster connection, which follows slot moves (`MOVED`/`ASK`) and
/// loads the script on every master (`SCRIPT LOAD` is sent to all of them;
/// a `NOSCRIPT` reloads it).
///
/// **Key tagging.** Only the part of a key name between braces decides its
/// slot, and that part is the hash of the *client key*, not the policy:
/// `tollgate:api:{6f1c…}` and `tollgate:api-burst:{6f1c…}` share a slot.
/// So every set whose limits all use one client key (the common case:
/// several policies on one client) is **one script call on one node**,
/// atomic and all-or-nothing exactly as on a single server. Limits that
/// must always be checked atomically together should therefore use the
/// same [`Key`].
///
/// **Sets that span slots** (limits on different client keys, e.g. a
/// per-user and a global key) are split by slot, in the order of each
/// slot's first limit, one script call per slot, one after the other:
///
/// - **One clock.** Unless the caller gave an instant
///   ([`RedisBackend::acquire_at`]), the first slot's script call reads
///   `TIME` on its master, as on one server, and reports that instant,
///   which the backend passes explicitly to every other slot's call, so
///   one decision uses one clock. Masters' clocks may differ slightly: a
///   key on another master then sees instants that may be behind its own
///   by that skew, which, like any backward step, grants no refill (and
///   makes a sliding log scan itself whole until it empties). Such a set
///   costs one round trip per slot (and one per refunded slot).
/// - **All-or-nothing by refund.** Each slot's acquire commits only if
///   every enforcing limit of that slot allowed. Once a slot has
///   denied, the slots after it are only decided (the same script call,
///   answering as an acquire would, but writing nothing). If any slot
///   denies (or a call fails), every slot that passed before it is
///   called again in refund mode, at the same instant, for the limits
///   it counted, which undoes exactly the committed cost: GCRA takes
///   `cost × T` off the stored TAT (saturating); the token bucket gives
///   `cost × T` back to its level (up to the capacity); the leaky
///   buckets take `cost × T` off their water (saturating); the fixed
///   windows decrement the count of the window holding that instant
///   (nothing if the window has moved on); the sliding window
///   decrements `curr` of that window (or `prev` if a later instant has
///   rolled it over since); the sliding log takes `cost` off the entry
///   at that instant (removing it at zero) and off its total. Refunds
///   keep each key's TTL. Decisions, the verdict and shadow policies
///   are those of the single-server backend (a denied set reports each
///   allowed limit's `remaining` after its tentative count, as there).
///   The difference is isolation: between a slot's commit and its
///   refund, a concurrent request may see that transient count and be
///   denied; and if a call times out or fails midway, the refund may
///   not have run (as on one server, a call that timed out may have
///   been counted).
/// - Peek, reset and absorb are split the same way (nothing to refund).
///
/// [`RedisBackendBuilder::connect_lazy`] is not available on a cluster.
///
/// # Redis Sentinel
///
/// With feature `redis-sentinel`, `RedisBackend::sentinel_builder` (or
/// `RedisBackend::sentinel`) builds the same backend on the master of a
/// service monitored by Redis Sentinel (`sentinel_builder(["redis://s1:26379",
/// "redis://s2:26379"], "mymaster")`). The backend asks the sentinels
/// (`SENTINEL MASTERS`, through the `redis` crate's
/// `redis::sentinel::SentinelClient`) for the service's master, checks
/// that the server named considers itself master (`ROLE`), and keeps one
/// multiplexed connection to it, shared by clones as on one server.
///
/// **Failover.** When a call on that connection fails with a connection
/// error, or the server answers `READONLY` (the old master was demoted to a
/// replica) or `MASTERDOWN`, the call fails ([`BackendError::Unavailable`])
/// and the connection is dropped; the next call asks the sentinels again
/// and connects to whichever server they name then. While the sentinels
/// still name the dead master (until they agree it is down and promote a
/// replica: `down-after-milliseconds` plus the failover), calls fail fast;
/// once a replica is promoted, the same backend serves again, without being
/// rebuilt. Resolution is part of the call, so no call waits longer than
/// the per-call timeout ([`RedisBackendBuilder::timeout`]), sentinels
/// included; the first [`connect`](RedisBackendBuilder::connect) resolves
/// within the connect timeout, and
/// [`connect_lazy`](RedisBackendBuilder::connect_lazy) resolves on the first
/// call. The script is reloaded on the new master when it answers
/// `NOSCRIPT`. A master that hangs without closing its connection is only
/// left once the connection breaks; until then its calls time out.
///
/// What the old master acknowledged but had not yet replicated when it
/// died is lost with it (Redis replication is asynchronous), so clients may
/// get back a little quota at a failover. Credentials and the database in
/// the sentinel URLs are those of the sentinels; the master is reached
/// without credentials, on database 0.
///
/// # Refund
///
/// [`Backend::refund`] (and [`RedisBackend::refund_at`]) is the same
/// script in refund mode, at the instant of the acquire it undoes: each
/// limit's stored state becomes
/// the refund of [`Algorithm`](crate::Algorithm#refunds) of it (the same
/// arithmetic as the cluster refunds above), keys keep their TTL, absent
/// keys are not created, and the reply is the peek at that instant after
/// the refund. One `EVALSHA` per set, as for every other call (on a
/// cluster, one per slot).
///
/// # Absorb
///
/// [`Backend::absorb`] is implemented (the same script, counting every
/// limit with the forced count of [`Algorithm`](crate::Algorithm#counting-over-the-limit)), so a
/// [`Failover`](crate::backend::Failover) writes what its fallback
/// admitted during an outage back into Redis.
///
/// [`Algorithm::FixedWindowStaggered`]: crate::Algorithm::FixedWindowStaggered
/// [`ConnectionManager`]: ::redis::aio::ConnectionManager
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    script: Script,
    prefix: String,
    timeout: Duration,
    /// [`RedisBackendBuilder::ttl_margin`] in whole milliseconds.
    ttl_margin_ms: u64,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("RedisBackend")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("script", &self.inner.script.get_hash())
            .finish()
    }
}

impl RedisBackend {
    /// Whether this backend is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.connection, Connection::Cluster(_))
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The SHA-1 of the script, as `EVALSHA` takes it.
    pub fn script_hash(&self) -> &str {
        self.inner.script.get_hash()
    }

    /// The Lua source of the script (for `SCRIPT LOAD` by other tools, such
    /// as `redis-benchmark`).
    pub fn script_source() -> &'static str {
        SCRIPT
    }

    /// The Redis key that holds `key`'s state under `policy`:
    /// `{prefix}{policy name}:{<hash>}` (see [`RedisBackend`]).
    pub fn key_name(&self, policy: &Policy, key: &Key) -> String {
        key_name(&self.inner.prefix, policy, key)
    }

    /// [`Backend::acquire`] at an explicit instant (nanoseconds since the
    /// Unix epoch) instead of the server's clock: how the conformance table
    /// drives exact clock steps. Instants should not go backwards for a
    /// key; if they do, no refill is granted for the negative step.
    pub async fn acquire_at(&self, set: &LimitSet, now: Nanos) -> Result<Outcome, BackendError> {
        self.call(set, Mode::Acquire, Some(now)).await
    }

    /// [`Backend::peek`] at an explicit instant.
    pub async fn peek_at(&self, set: &LimitSet, now: Nanos) -> Result<Outcome, BackendError> {
        self.call(set, Mode::Peek, Some(now)).await
    }

    /// [`Backend::absorb`] at an explicit instant.
    pub async fn absorb_at(&self, set: &LimitSet, now: Nanos) -> Result<Outcome, BackendError> {
        self.call(set, Mode::Absorb, Some(now)).await
    }

    /// [`Backend::refund`] as an `async fn`, like
    /// [`acquire_at`](Self::acquire_at): gives back what an acquire of
    /// `set` at `at` (its [`Outcome::at`], the server instant it decided
    /// at) counted, and answers the decisions a peek at `at` gives
    /// afterwards. A refund always runs at the instant it is given, never
    /// at the server's clock.
    pub async fn refund_at(&self, set: &LimitSet, at: Nanos) -> Result<Outcome, BackendError> {
        self.call(set, Mode::Refund, Some(at)).await
    }

    fn call(&self, set: &LimitSet, mode: Mode, now: Option<Nanos>) -> Acquire<CallFuture> {
        if set.is_empty() {
            return Acquire::ready(Ok(Outcome::new(SmallVec::new(), true)));
        }
        let call = self.encode(set, mode, now);
        let inner = self.inner.clone();
        Acquire::pending(Box::pin(async move { inner.run(call).await }))
    }
}

impl Inner {
    async fn run(&self, call: Call) -> Result<Outcome, BackendError> {
        let work = async {
            if let Connection::Cluster(_) = &self.connection {
                let groups = slot_groups(&call.keys);
                if groups.len() > 1 {
                    return self.run_split(&call, &groups).await;
                }
            }
            self.invoke(&call).await
        };
        self.bounded(work).await
    }

    /// Runs `work` within the backend's timeout.
    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        match tokio::time::timeout(self.timeout, work).await {
            Err(_) => Err(BackendError::Timeout(self.timeout)),
            Ok(result) => result,
        }
    }

    /// One script call (on a cluster, routed by its first key).
    async fn invoke_raw(&self, call: &Call) -> Result<Value, BackendError> {
        let mut connection = self.connection.clone();
        let mut invocation = self.script.prepare_invoke();
        for key in &call.keys {
            invocation.key(key.as_str());
        }
        for arg in &call.args {
            match arg {
                Arg::Str(s) => invocation.arg(*s),
                Arg::Num(n) => invocation.arg(*n),
            };
        }
        invocation
            .invoke_async::<Value>(&mut connection)
            .await
            .map_err(|e| failed(&e))
    }

    async fn invoke(&self, call: &Call) -> Result<Outcome, BackendError> {
        let value = self.invoke_raw(call).await?;
        parse_reply(value, &call.limits)
    }
}

impl Backend for RedisBackend {
    type Future = CallFuture;

    fn acquire(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.call(set, Mode::Acquire, None)
    }

    fn peek(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.call(set, Mode::Peek, None)
    }

    fn reset(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.call(set, Mode::Reset, None)
    }

    /// Counts every limit of the set with
    /// the forced count of [`Algorithm`](crate::Algorithm#counting-over-the-limit), in order, over its
    /// quota if need be, in one script call at the server's clock, with the
    /// same TTLs as [`acquire`](Backend::acquire): how a
    /// [`Failover`](crate::backend::Failover) writes back what its fallback
    /// admitted while Redis was down.
    fn absorb(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.call(set, Mode::Absorb, None)
    }

    /// Overrides and access lists live on the server, shared by every
    /// layer connected to it (see [`RedisBackend::settings`]).
    fn store(&self) -> Option<std::sync::Arc<dyn crate::settings::SettingsStore>> {
        Some(self.settings())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    /// Gives back what an acquire at `at` counted, with
    /// the refund of [`Algorithm`](crate::Algorithm#refunds) of each limit's
    /// stored state, in one script call at the instant `at` (on a cluster,
    /// one per slot, like every other call); keys keep their TTL, and a key
    /// that does not exist is not created. The answer is what a peek at `at`
    /// gives afterwards. See [Refund](RedisBackend#refund).
    fn refund(&self, set: &LimitSet, at: Nanos) -> Acquire<Self::Future> {
        self.call(set, Mode::Refund, Some(at))
    }
}
