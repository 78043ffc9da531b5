//! The Redis backend (feature `redis`); see [`RedisBackend`].

use std::fmt;
use std::future::Future;
use std::hash::Hasher;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::Slot;
use ::redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Script, Value};
use siphasher::sip128::{Hasher128, SipHasher13};
use smallvec::SmallVec;

use super::{Acquire, Backend, BackendError, Outcome};
use crate::algorithm::{Algorithm, Decision};
use crate::key::Key;
use crate::policy::{Limit, LimitSet, Policy};
use crate::time::Nanos;

#[cfg(feature = "redis-sentinel")]
mod sentinel;
mod store;

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
/// use tollgate::{key::Key, LimitSet, Policy, Quota};
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
/// line-for-line copy of its Rust twin in [`crate::algorithm`]), a shared
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
/// decisions are those of [`Algorithm::check`] to the nanosecond, which the
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
/// [`Algorithm::refund`](crate::Algorithm::refund) of it (the same
/// arithmetic as the cluster refunds above), keys keep their TTL, absent
/// keys are not created, and the reply is the peek at that instant after
/// the refund. One `EVALSHA` per set, as for every other call (on a
/// cluster, one per slot).
///
/// # Absorb
///
/// [`Backend::absorb`] is implemented (the same script, counting every
/// limit with [`Algorithm::force`]), so a
/// [`Failover`](crate::backend::Failover) writes what its fallback
/// admitted during an outage back into Redis.
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

/// The connection: one server, or a Redis Cluster.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    #[cfg(feature = "redis-sentinel")]
    Sentinel(sentinel::SentinelConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
            #[cfg(feature = "redis-sentinel")]
            Connection::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "redis-sentinel")]
            Connection::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
            #[cfg(feature = "redis-sentinel")]
            Connection::Sentinel(c) => c.get_db(),
        }
    }
}

/// Where a builder connects.
#[derive(Clone)]
enum Target {
    Single(String),
    Cluster(Vec<String>),
    /// Sentinel URLs and the service (master) name.
    #[cfg(feature = "redis-sentinel")]
    Sentinel(Vec<String>, String),
}

/// Builder for [`RedisBackend`]: key prefix, timeouts, TTL margin.
///
/// ```no_run
/// use std::time::Duration;
/// use tollgate::backend::RedisBackend;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RedisBackend::builder("redis://127.0.0.1:6379/0")
///     .prefix("myapp:rl:")
///     .timeout(Duration::from_millis(100))
///     .connect()
///     .await?;
/// assert_eq!(backend.prefix(), "myapp:rl:");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackendBuilder {
    target: Target,
    prefix: String,
    timeout: Duration,
    connect_timeout: Duration,
    ttl_margin: Duration,
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackendBuilder")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("ttl_margin", &self.ttl_margin)
            .finish_non_exhaustive()
    }
}

/// Why [`RedisBackend::connect`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisConnectError {
    /// The URL is not a Redis URL (`redis://[user:password@]host[:port][/db]`,
    /// `unix:///path`).
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// The server could not be reached, refused the connection, or
    /// rejected the script.
    #[error("cannot connect to Redis: {0}")]
    Unreachable(String),
    /// Connecting took longer than the connect timeout.
    #[error("connecting to Redis timed out after {0:?}")]
    Timeout(Duration),
    /// [`RedisBackendBuilder::connect_lazy`] was called outside a Tokio
    /// runtime.
    #[error("RedisBackendBuilder::connect_lazy must be called within a Tokio runtime")]
    NoRuntime,
    /// [`RedisBackendBuilder::connect_lazy`] was called on a cluster
    /// builder ([`RedisBackend::cluster_builder`]): a cluster backend must
    /// learn the cluster's slots first, with
    /// [`connect`](RedisBackendBuilder::connect).
    #[error("RedisBackendBuilder::connect_lazy is not supported for Redis Cluster; use connect")]
    LazyCluster,
}

impl RedisBackendBuilder {
    /// The prefix of every key (default [`DEFAULT_KEY_PREFIX`]).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The most a call may take, connection included, before it fails
    /// with [`BackendError::Timeout`] (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most [`connect`](Self::connect) may take (default
    /// [`DEFAULT_CONNECT_TIMEOUT`]); also the limit of each reconnection
    /// attempt.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a key outlives the instant its state is fresh again
    /// (default [`DEFAULT_TTL_MARGIN`], rounded up to the millisecond).
    /// The margin only costs memory; it keeps a state alive when callers
    /// pass their own instants ([`RedisBackend::acquire_at`]) that run
    /// ahead of the server's clock.
    pub fn ttl_margin(mut self, margin: Duration) -> Self {
        self.ttl_margin = margin;
        self
    }

    /// Connects (waiting for the first connection, at most the connect
    /// timeout) and loads the script.
    ///
    /// On a cluster ([`RedisBackend::cluster_builder`]), connects to the
    /// nodes given, learns the cluster's slots and loads the script on
    /// every master.
    pub async fn connect(self) -> Result<RedisBackend, RedisConnectError> {
        let script = Script::new(SCRIPT);
        let connect = async {
            let mut connection = match &self.target {
                Target::Single(_) => {
                    let (client, config) = self.client()?;
                    let manager = ConnectionManager::new_with_config(client, config)
                        .await
                        .map_err(|e| RedisConnectError::Unreachable(describe(&e)))?;
                    Connection::Single(manager)
                }
                Target::Cluster(nodes) => {
                    install_tls_provider();
                    let client = ClusterClient::builder(nodes.iter().map(String::as_str))
                        .connection_timeout(self.connect_timeout)
                        .build()
                        .map_err(|e| RedisConnectError::InvalidUrl(describe(&e)))?;
                    let cluster = client
                        .get_async_connection()
                        .await
                        .map_err(|e| RedisConnectError::Unreachable(describe(&e)))?;
                    Connection::Cluster(cluster)
                }
                #[cfg(feature = "redis-sentinel")]
                Target::Sentinel(..) => self.sentinel()?,
            };
            // On a cluster, SCRIPT LOAD goes to every master.
            script
                .load_async(&mut connection)
                .await
                .map_err(|e| RedisConnectError::Unreachable(describe(&e)))?;
            Ok::<_, RedisConnectError>(connection)
        };
        let connection = match tokio::time::timeout(self.connect_timeout, connect).await {
            Err(_) => return Err(RedisConnectError::Timeout(self.connect_timeout)),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(c)) => c,
        };
        Ok(self.finish(connection, script))
    }

    /// A backend that connects on its first call instead of now, so an
    /// application can start while Redis is down (calls fail until it is
    /// reachable). Must be called within a Tokio runtime. The script is
    /// loaded on the first call. Not available on a cluster
    /// ([`RedisConnectError::LazyCluster`]).
    pub fn connect_lazy(self) -> Result<RedisBackend, RedisConnectError> {
        if matches!(self.target, Target::Cluster(_)) {
            return Err(RedisConnectError::LazyCluster);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisConnectError::NoRuntime);
        }
        #[cfg(feature = "redis-sentinel")]
        if let Target::Sentinel(..) = self.target {
            let connection = self.sentinel()?;
            return Ok(self.finish(connection, Script::new(SCRIPT)));
        }
        let (client, config) = self.client()?;
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| RedisConnectError::InvalidUrl(describe(&e)))?;
        Ok(self.finish(Connection::Single(connection), Script::new(SCRIPT)))
    }

    fn client(&self) -> Result<(Client, ConnectionManagerConfig), RedisConnectError> {
        let Target::Single(url) = &self.target else {
            return Err(RedisConnectError::LazyCluster);
        };
        install_tls_provider();
        let client =
            Client::open(url.as_str()).map_err(|e| RedisConnectError::InvalidUrl(describe(&e)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // Calls are bounded by our own timeout.
            .set_response_timeout(None)
            // Retry a lost connection quickly: a restarted Redis is used
            // again within about a second.
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        Ok((client, config))
    }

    fn finish(self, connection: Connection, script: Script) -> RedisBackend {
        let margin = self.ttl_margin.as_nanos().div_ceil(1_000_000);
        RedisBackend {
            inner: Arc::new(Inner {
                connection,
                script,
                prefix: self.prefix,
                timeout: self.timeout,
                ttl_margin_ms: u64::try_from(margin).unwrap_or(u64::MAX),
            }),
        }
    }
}

/// What the script is asked to do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Acquire,
    Peek,
    Reset,
    Absorb,
    /// Undo what an acquire at an explicit instant committed: a split
    /// cluster set's slots when another slot denied, and
    /// [`Backend::refund`](super::Backend::refund).
    Refund,
    /// An acquire's decisions without its writes: the slots of a split
    /// cluster set after a slot that denied, so that they have nothing to
    /// refund.
    Decide,
}

impl Mode {
    fn code(self) -> &'static str {
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
enum Arg {
    Str(&'static str),
    Num(u64),
}

/// A script call, owned so that its future is `'static`.
struct Call {
    mode: Mode,
    now: Option<u64>,
    keys: SmallVec<[String; 2]>,
    args: Vec<Arg>,
    limits: SmallVec<[u64; 2]>,
}

/// The boxed future of a Redis call.
type CallFuture = Pin<Box<dyn Future<Output = Result<Outcome, BackendError>> + Send>>;

impl RedisBackend {
    /// Connects to `url` with the defaults (prefix [`DEFAULT_KEY_PREFIX`],
    /// timeout [`DEFAULT_TIMEOUT`]) and loads the script. `rediss://` (TLS)
    /// URLs need the `redis-tls` feature.
    ///
    /// ```no_run
    /// use tollgate::backend::RedisBackend;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let backend = RedisBackend::connect("redis://127.0.0.1/").await?;
    /// # let _ = backend;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, RedisConnectError> {
        Self::builder(url).connect().await
    }

    /// Connects to a Redis Cluster through `nodes` (one or more of its
    /// nodes' URLs, `redis://host:port`; the others are discovered) with
    /// the defaults, and loads the script on every master. See
    /// [Redis Cluster](RedisBackend#redis-cluster).
    ///
    /// ```no_run
    /// use tollgate::backend::RedisBackend;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let backend = RedisBackend::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]).await?;
    /// # let _ = backend;
    /// # Ok(()) }
    /// ```
    pub async fn cluster<I, S>(nodes: I) -> Result<Self, RedisConnectError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::cluster_builder(nodes).connect().await
    }

    /// A builder for a backend on a Redis Cluster reached through `nodes`
    /// (see [`RedisBackend::cluster`]); everything else is configured as
    /// for one server.
    pub fn cluster_builder<I, S>(nodes: I) -> RedisBackendBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        RedisBackendBuilder {
            target: Target::Cluster(nodes),
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            ttl_margin: DEFAULT_TTL_MARGIN,
        }
    }

    /// Whether this backend is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.connection, Connection::Cluster(_))
    }

    /// A builder for a backend connecting to `url`.
    pub fn builder(url: &str) -> RedisBackendBuilder {
        RedisBackendBuilder {
            target: Target::Single(url.to_owned()),
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            ttl_margin: DEFAULT_TTL_MARGIN,
        }
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

    fn encode(&self, set: &LimitSet, mode: Mode, now: Option<Nanos>) -> Call {
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
    let algorithm = limit.policy.get_algorithm();
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
fn key_name(prefix: &str, policy: &Policy, key: &Key) -> String {
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
    fn subset(&self, mode: Mode, now: Option<u64>, indices: &[usize]) -> Call {
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

/// The positions of `keys` grouped by cluster slot, groups in the order of
/// their first key.
fn slot_groups(keys: &[String]) -> SmallVec<[(Slot, SmallVec<[usize; 2]>); 2]> {
    let mut groups: SmallVec<[(Slot, SmallVec<[usize; 2]>); 2]> = SmallVec::new();
    for (j, key) in keys.iter().enumerate() {
        let slot = Slot::for_key(key.as_bytes());
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, members)) => members.push(j),
            None => groups.push((slot, smallvec::smallvec![j])),
        }
    }
    groups
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
            .map_err(|e| BackendError::Unavailable(describe(&e)))
    }

    async fn invoke(&self, call: &Call) -> Result<Outcome, BackendError> {
        let value = self.invoke_raw(call).await?;
        parse_reply(value, &call.limits)
    }

    /// A set whose keys span cluster slots: one script call per slot, in
    /// order, all at one instant (the caller's, or the server clock the
    /// first slot's script read); an acquire that does not pass everywhere
    /// refunds what the slots that passed committed.
    async fn run_split(
        &self,
        call: &Call,
        groups: &[(Slot, SmallVec<[usize; 2]>)],
    ) -> Result<Outcome, BackendError> {
        // Without an instant from the caller, the first slot's script reads
        // its master's `TIME` and reports it: the other slots run at that
        // instant, and no call spends a round trip of its own on `TIME`
        // (under a burst, every round trip waits behind the whole queue).
        let mut now = call.now;
        let mut decisions: SmallVec<[Option<Decision>; 4]> =
            smallvec::smallvec![None; call.keys.len()];
        let mut allowed = true;
        // Per group, the positions of the limits its acquire committed.
        let mut committed: SmallVec<[SmallVec<[usize; 2]>; 2]> = SmallVec::new();
        let mut failure = None;
        // Once a slot denied, the set is denied: the later slots are only
        // decided, so they commit nothing that would need a refund.
        let mut mode = call.mode;
        for (_, members) in groups {
            let outcome = match self.invoke(&call.subset(mode, now, members)).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            if now.is_none() {
                // The first call; `parse_reply` always reports the instant.
                let at = outcome.at().ok_or_else(malformed)?;
                now = Some(at.as_u64());
            }
            allowed &= outcome.allowed();
            let mut done = SmallVec::new();
            for (&j, d) in members.iter().zip(outcome.decisions()) {
                // A passing acquire wrote every allowed limit.
                if mode == Mode::Acquire && outcome.allowed() && d.allowed {
                    done.push(j);
                }
                decisions[j] = Some(*d);
            }
            committed.push(done);
            if mode == Mode::Acquire && !outcome.allowed() {
                mode = Mode::Decide;
            }
        }
        // Set by the first call whenever any call succeeded.
        if let Some(at) = now {
            if call.mode == Mode::Acquire && (!allowed || failure.is_some()) {
                for done in committed.iter().filter(|d| !d.is_empty()) {
                    self.invoke_raw(&call.subset(Mode::Refund, Some(at), done))
                        .await?;
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let now = now.ok_or_else(malformed)?;
        let decisions = decisions
            .into_iter()
            .collect::<Option<SmallVec<[Decision; 2]>>>()
            .ok_or_else(malformed)?;
        Ok(Outcome::new(decisions, allowed).decided_at(Nanos::new(now)))
    }
}

/// A Redis error as a message. Key names only carry hashes, so no key
/// bytes can appear here.
fn describe(e: &RedisError) -> String {
    format!("redis: {e}")
}

fn malformed() -> BackendError {
    BackendError::Unavailable("redis: malformed reply from the tollgate script".into())
}

/// The script's reply: the set's verdict, five fields per limit, then the
/// instant it decided at.
fn parse_reply(value: Value, limits: &[u64]) -> Result<Outcome, BackendError> {
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
    /// [`Algorithm::force`](crate::Algorithm::force), in order, over its
    /// quota if need be, in one script call at the server's clock, with the
    /// same TTLs as [`acquire`](Backend::acquire): how a
    /// [`Failover`](crate::backend::Failover) writes back what its fallback
    /// admitted while Redis was down.
    fn absorb(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.call(set, Mode::Absorb, None)
    }

    /// Overrides and access lists live on the server, shared by every
    /// layer connected to it (see [`RedisBackend::settings`]).
    fn store(&self) -> Option<std::sync::Arc<dyn crate::backend::SettingsStore>> {
        Some(self.settings())
    }

    /// Gives back what an acquire at `at` counted, with
    /// [`Algorithm::refund`](crate::Algorithm::refund) of each limit's
    /// stored state, in one script call at the instant `at` (on a cluster,
    /// one per slot, like every other call); keys keep their TTL, and a key
    /// that does not exist is not created. The answer is what a peek at `at`
    /// gives afterwards. See [Refund](RedisBackend#refund).
    fn refund(&self, set: &LimitSet, at: Nanos) -> Acquire<Self::Future> {
        self.call(set, Mode::Refund, Some(at))
    }
}

/// With feature `redis-tls`, makes rustls' ring provider the process
/// default (once; a provider the application installed first is kept), so
/// `rediss://` URLs work without any setup. Without the feature, nothing.
fn install_tls_provider() {
    #[cfg(feature = "redis-tls")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // An `Err` means a provider is already installed: keep it.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
    }
}
