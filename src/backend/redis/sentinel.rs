//! Redis Sentinel (feature `redis-sentinel`): the connection to the master
//! the sentinels name, re-resolved after a failover.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::sentinel::{SentinelClient, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};

use super::connect::{install_tls_provider, Connection, Target};
use super::{describe, RedisBackend, RedisBackendBuilder, RedisConnectError};

/// A connection to the current master of a service monitored by Redis
/// Sentinel. Clones share the sentinels and the master connection.
///
/// The master is resolved through the sentinels on first use and kept (one
/// multiplexed connection); a reply that shows it is no longer the master
/// (a connection error, `READONLY`, `MASTERDOWN`) drops it, so the next
/// command asks the sentinels again.
#[derive(Clone)]
pub(super) struct SentinelConnection {
    state: Arc<Sentinels>,
}

struct Sentinels {
    /// The sentinels; locked while resolving, so one resolution runs at a
    /// time.
    client: tokio::sync::Mutex<SentinelClient>,
    /// The master connection, with the generation it was made in.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    config: AsyncConnectionConfig,
}

impl SentinelConnection {
    /// Checks the URLs; connects nothing.
    pub(super) fn new(
        sentinels: &[String],
        service_name: &str,
        connect_timeout: Duration,
    ) -> RedisResult<Self> {
        // A `String`: `build` takes one, or `impl AsRef<str>` with the
        // `redis/tls-rustls` feature.
        let service_name: String = service_name.to_owned();
        let client = SentinelClient::build(
            sentinels.to_vec(),
            service_name,
            None,
            SentinelServerType::Master,
        )?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            // Calls are bounded by the backend's own timeout.
            .set_response_timeout(None);
        Ok(SentinelConnection {
            state: Arc::new(Sentinels {
                client: tokio::sync::Mutex::new(client),
                current: Mutex::new(None),
                generation: AtomicU64::new(0),
                config,
            }),
        })
    }

    /// The current master connection, resolving it through the sentinels
    /// if there is none.
    async fn master(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.state.current() {
            return Ok(current);
        }
        let mut client = self.state.client.lock().await;
        // Another call may have resolved it while this one waited.
        if let Some(current) = self.state.current() {
            return Ok(current);
        }
        // Asks the sentinels, checks that the server they name is a master
        // (`ROLE`), then connects to it.
        let connection = client
            .async_get_client()
            .await?
            .get_multiplexed_async_connection_with_config(&self.state.config)
            .await?;
        let generation = self.state.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self.state.lock_current() = Some((generation, connection.clone()));
        Ok((generation, connection))
    }

    /// Drops the connection of `generation` (not a newer one) if
    /// `result` shows that it no longer reaches the master. Server errors
    /// arrive as `Ok` values ([`Value::ServerError`], also inside a
    /// pipeline's replies); they become `Err` later, in the caller.
    fn check(&self, generation: u64, result: Result<&[Value], &RedisError>) {
        let stale = match result {
            Err(error) => stale_master(error),
            Ok(values) => values.iter().any(|v| {
                matches!(
                    v,
                    Value::ServerError(e) if matches!(
                        e.kind(),
                        Some(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
                    )
                )
            }),
        };
        if stale {
            let mut current = self.state.lock_current();
            if current.as_ref().is_some_and(|(g, _)| *g == generation) {
                *current = None;
            }
        }
    }
}

impl Sentinels {
    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<(u64, MultiplexedConnection)>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.lock_current().clone()
    }
}

/// Whether `error` means the connection no longer reaches a usable master:
/// the connection failed, or the server answered `READONLY` (it was demoted
/// to a replica) or `MASTERDOWN` (when reported as an `Err`).
fn stale_master(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut connection) = self.master().await?;
            let result = connection.req_packed_command(cmd).await;
            self.check(generation, result.as_ref().map(std::slice::from_ref));
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut connection) = self.master().await?;
            let result = connection
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.check(generation, result.as_ref().map(Vec::as_slice));
            result
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl RedisBackendBuilder {
    /// The connection of a [`RedisBackend::sentinel_builder`] builder, not
    /// yet resolved.
    pub(super) fn sentinel(&self) -> Result<Connection, RedisConnectError> {
        let Target::Sentinel(sentinels, service_name) = &self.target else {
            // Only called for sentinel targets; answer rather than panic.
            return Err(RedisConnectError::InvalidUrl(
                "not a sentinel target".into(),
            ));
        };
        install_tls_provider();
        SentinelConnection::new(sentinels, service_name, self.connect_timeout)
            .map(Connection::Sentinel)
            .map_err(|e| RedisConnectError::InvalidUrl(describe(&e)))
    }
}

impl RedisBackend {
    /// Connects through Redis Sentinel (feature `redis-sentinel`) to the
    /// master of `service_name` with the defaults, and loads the script.
    /// See [Redis Sentinel](RedisBackend#redis-sentinel).
    ///
    /// ```no_run
    /// use tollgate::backend::RedisBackend;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let backend = RedisBackend::sentinel(
    ///     ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"],
    ///     "mymaster",
    /// )
    /// .await?;
    /// # let _ = backend;
    /// # Ok(()) }
    /// ```
    pub async fn sentinel<I, S>(sentinels: I, service_name: &str) -> Result<Self, RedisConnectError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::sentinel_builder(sentinels, service_name)
            .connect()
            .await
    }

    /// A builder for a backend on the master of `service_name`, found
    /// through the sentinels at `sentinels` (their URLs,
    /// `redis://host:port`; feature `redis-sentinel`); everything else is
    /// configured as for one server. See
    /// [Redis Sentinel](RedisBackend#redis-sentinel).
    pub fn sentinel_builder<I, S>(sentinels: I, service_name: &str) -> RedisBackendBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let sentinels = sentinels
            .into_iter()
            .map(|s| s.as_ref().to_owned())
            .collect();
        let mut builder = RedisBackend::builder("");
        builder.target = Target::Sentinel(sentinels, service_name.to_owned());
        builder
    }
}
