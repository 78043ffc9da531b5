//! The Tower front end: [`RateLimitLayer`], its builder, the
//! [`RateLimit`] service it makes, the service's [`ResponseFuture`] and
//! [`ResponseBody`].
//!
//! A request goes through the layer's [`Gate`](gate): described (access
//! lists, key, policy resolution), checked by the engine, then passed on
//! with rate-limit headers or answered (429, 403, 401, 503).

mod body;
mod builder;
mod future;
mod gate;
#[cfg(feature = "metrics")]
mod metrics;
mod service;

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

pub use body::ResponseBody;
pub use builder::{ConfigError, RateLimitLayerBuilder, DEFAULT_SYNC_INTERVAL};
pub use future::ResponseFuture;
#[cfg(feature = "axum")]
pub(crate) use gate::Admission;
pub use service::RateLimit;

use crate::backend::{Backend, MemoryBackend};
use crate::health::{Health, SyncReport};
use crate::key::{ClientIp, KeyExtractor};
use crate::policy::Policy;
use crate::quota::Quota;
use crate::settings::{AccessList, Overrides, StoreError};
use gate::Gate;

/// Rate limiting as a Tower layer.
///
/// Cheap to clone (one `Arc`); the services it makes are `Clone` too (no
/// `Buffer` needed). It wraps any `Service<http::Request<B>>` returning an
/// `http::Response<_>`: axum routers and handlers, hyper services, tonic.
///
/// The one-liner keys by the client's IP (axum's `ConnectInfo`), GCRA in
/// memory, both header styles, 429 problem+json:
///
/// ```
/// use axum::{routing::get, Router};
/// use tollgate::{Quota, RateLimitLayer};
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(RateLimitLayer::new(Quota::per_second(10)));
/// // serve with app.into_make_service_with_connect_info::<std::net::SocketAddr>()
/// ```
///
/// Everything else goes through [`RateLimitLayer::builder`].
pub struct RateLimitLayer<K = ClientIp, B = MemoryBackend> {
    gate: Arc<Gate<K, B>>,
}

impl<K, B> Clone for RateLimitLayer<K, B> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            gate: self.gate.clone(),
        }
    }
}

impl<K, B> fmt::Debug for RateLimitLayer<K, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("policy", &self.gate.resolver.default_policy())
            .field("levels", &self.gate.resolver.levels.len())
            .field("engine", &self.gate.engine)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// `quota` per client IP, with every default.
    ///
    /// # Panics
    ///
    /// If `quota` cannot be enforced (a zero limit or period, a period
    /// over [`MAX_PERIOD`](crate::MAX_PERIOD)), with the error's text: a
    /// mistake in the program, found at start-up rather than answered 500
    /// on every request. Use [`RateLimitLayer::builder`] to get it as a
    /// [`ConfigError`] from `build()` instead (a quota read from a file).
    ///
    /// ```should_panic
    /// use tollgate::{Quota, RateLimitLayer};
    ///
    /// // "policy \"default\": a quota's limit must be at least 1 …"
    /// let _ = RateLimitLayer::new(Quota::per_second(0));
    /// ```
    pub fn new(quota: Quota) -> Self {
        match Self::builder().quota(quota).build() {
            Ok(layer) => layer,
            Err(error) => panic!("tollgate: RateLimitLayer::new: {error}"),
        }
    }

    /// A builder: key extractor, quota, algorithm, backend, headers,
    /// shadow mode, rejection handler.
    ///
    /// ```
    /// use tollgate::{Algorithm, Quota, RateLimitLayer, key, headers::HeaderStyle};
    ///
    /// let layer = RateLimitLayer::builder()
    ///     .key(key::Global)
    ///     .quota("100/m".parse::<Quota>().unwrap())
    ///     .algorithm(Algorithm::SlidingWindow)
    ///     .headers(HeaderStyle::Both)
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn builder() -> RateLimitLayerBuilder {
        RateLimitLayerBuilder::new()
    }
}

impl<K, B> RateLimitLayer<K, B> {
    /// The default policy (applied to every request not exempt), if the
    /// layer has one.
    pub fn policy(&self) -> Option<&Policy> {
        self.gate.resolver.default_policy().map(|p| &**p)
    }

    /// The per-key overrides: set and clear quotas for one key at runtime.
    pub fn overrides(&self) -> &Overrides {
        &self.gate.resolver.overrides
    }

    /// The allow and deny lists, if the layer has them.
    pub fn access(&self) -> Option<&AccessList> {
        self.gate.access.as_ref()
    }

    /// The backend (for example to read
    /// [`MemoryBackend::len`](crate::backend::MemoryBackend::len)).
    pub fn backend(&self) -> &B {
        self.gate.engine.backend()
    }
}

impl<K, B: Backend> RateLimitLayer<K, B> {
    /// The `n` keys of `policy` (by name) denied most over the top-keys
    /// span (with `top_keys_admitted`, requested most), heaviest first:
    /// each a hash (the `k:…` of the logs), a display label when the
    /// application gives one (a client address by default, never a
    /// credential), an estimated count and its error bound. Empty for a
    /// policy the layer does not know, or with metrics or top keys off.
    ///
    /// ```
    /// use tollgate::{Quota, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::builder()
    ///     .name("api")
    ///     .quota(Quota::per_minute(60))
    ///     .build()
    ///     .unwrap();
    /// assert!(layer.top_keys("api", 10).is_empty(), "nothing denied yet");
    /// ```
    #[cfg(feature = "metrics")]
    pub fn top_keys(&self, policy: &str, n: usize) -> Vec<crate::metrics::top::TopKey> {
        self.gate
            .engine
            .metrics()
            .map_or_else(Vec::new, |m| m.top_keys(policy, n))
    }

    /// Whether the limiter can enforce its limits now, and each backend's
    /// state: see [`health`](crate::health). Cheap enough for every
    /// health-check request (a few atomic loads and one small sort).
    ///
    /// ```
    /// use tollgate::{Quota, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::new(Quota::per_second(10));
    /// let health = layer.health();
    /// assert!(health.is_ready());
    /// assert_eq!(health.backends[0].kind, "memory");
    /// ```
    pub fn health(&self) -> Health {
        let gate = &self.gate;
        let backend = gate.engine.backend();
        let sync = backend
            .store()
            .map(|_| SyncReport::new(gate.sync_state.age(), gate.sync_state.failures()));
        Health::new(
            &backend.status(),
            gate.engine.watched(),
            gate.engine.fail_mode(),
            sync,
        )
    }
}

#[cfg(feature = "axum")]
impl<K, B> RateLimitLayer<K, B>
where
    K: Send + Sync + 'static,
    B: Backend,
{
    /// A readiness route for axum: 200 with the [`Health`] JSON while the
    /// layer serves as configured, 503 when its backend fails and the fail
    /// mode is closed ([`Health::is_ready`]).
    ///
    /// ```
    /// use axum::Router;
    /// use tollgate::{Quota, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::new(Quota::per_second(10));
    /// let app: Router = Router::new()
    ///     .route("/health/ready", layer.readiness_route())
    ///     .route("/health/live", tollgate::health::liveness());
    /// ```
    pub fn readiness_route<S>(&self) -> axum::routing::MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.health_route(false)
    }

    /// As [`readiness_route`](Self::readiness_route), but 503 whenever the
    /// backend fails, fail mode open included (the limits are not enforced
    /// then: [`Health::is_ready_strict`]).
    pub fn strict_readiness_route<S>(&self) -> axum::routing::MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.health_route(true)
    }

    fn health_route<S>(&self, strict: bool) -> axum::routing::MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let layer = self.clone();
        axum::routing::get(move || {
            let health = layer.health();
            async move { health.to_response(strict).map(axum::body::Body::from) }
        })
    }
}

impl<K: KeyExtractor, B: Backend> RateLimitLayer<K, B> {
    /// Reloads the shared overrides and access lists from the backend's
    /// store now, if they changed (the layer also does it every
    /// [`sync_interval`](RateLimitLayerBuilder::sync_interval) in the
    /// background). With a backend that shares nothing (memory) there is
    /// nothing to do.
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.gate.sync().await
    }

    /// The whole check of a request head, for the axum extractor: see
    /// `Gate::check_head`.
    #[cfg(feature = "axum")]
    pub(crate) async fn check_head(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Option<Admission>, http::Response<bytes::Bytes>> {
        self.gate.check_head(parts).await
    }
}

impl<S, K, B> Layer<S> for RateLimitLayer<K, B> {
    type Service = RateLimit<S, K, B>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_gate(inner, self.gate.clone())
    }
}
