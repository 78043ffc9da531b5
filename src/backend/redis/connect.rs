//! Connecting: [`RedisBackendBuilder`], the connection (one server, a
//! cluster, or a master found through Sentinel, see `sentinel.rs`) and the
//! constructors of [`RedisBackend`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Client, Cmd, Pipeline, RedisFuture, Script, Value};

#[cfg(feature = "redis-sentinel")]
use super::sentinel;
use super::{
    describe, Inner, RedisBackend, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT,
    DEFAULT_TTL_MARGIN, SCRIPT,
};

/// The connection: one server, or a Redis Cluster.
#[derive(Clone)]
pub(super) enum Connection {
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
pub(super) enum Target {
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
    pub(super) target: Target,
    pub(super) prefix: String,
    pub(super) timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) ttl_margin: Duration,
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
    /// with [`BackendError::Timeout`](crate::backend::BackendError::Timeout) (default [`DEFAULT_TIMEOUT`]).
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
}

/// With feature `redis-tls`, makes rustls' ring provider the process
/// default (once; a provider the application installed first is kept), so
/// `rediss://` URLs work without any setup. Without the feature, nothing.
pub(super) fn install_tls_provider() {
    #[cfg(feature = "redis-tls")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // An `Err` means a provider is already installed: keep it.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
    }
}
