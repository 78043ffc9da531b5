//! [`RateLimitLayer`] and its builder.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tower_layer::Layer;

use crate::algorithm::Algorithm;
use crate::backend::{Backend, BackendError, MemoryBackend};
use crate::headers::{HeaderConfig, HeaderStyle, ResetFormat};
use crate::key::{ClientIp, KeyExtractor};
use crate::policy::resolve::Resolver;
use crate::policy::sync;
use crate::policy::{
    AccessList, Level, Overrides, Pattern, PatternError, Policy, PolicyError, RouteTable, Rule,
};
use crate::quota::Quota;
use crate::response::{OnRejected, Problem, RateLimited};
use crate::service::RateLimit;

/// What happens to a request when the backend cannot answer (an error or a
/// timeout).
///
/// There are three fail modes; two are set here, the third is a backend:
///
/// - **open** ([`FailMode::Open`], the default): the request passes, without
///   rate-limit headers; the failure is logged at `error` once per outage
///   and recorded per request as `outcome = "backend_error"` on the
///   `rate_limit` span.
/// - **closed** ([`FailMode::Closed`]): the request is answered `503
///   Service Unavailable` (problem+json) without reaching the service.
/// - **local**: wrap the backend in a [`Failover`](crate::backend::Failover)
///   with an in-memory fallback,
///   `.backend(Failover::new(primary, MemoryBackend::new()))`. Behind a
///   circuit breaker and a timeout, the fallback answers whenever the
///   primary cannot, so requests are still limited (per server, not
///   fleet-wide), 429s included, and the layer sees no error; what was
///   consumed locally is written back into the primary when it recovers.
///   This enum then only applies if the fallback fails too.
///
/// ```
/// use tollgate::backend::{Failover, MemoryBackend};
/// use tollgate::{FailMode, Quota, RateLimitLayer};
///
/// // "closed", with a local fallback first: 503 only if both fail.
/// let primary = MemoryBackend::new(); // e.g. RedisBackend (feature `redis`)
/// let layer = RateLimitLayer::builder()
///     .quota(Quota::per_second(10))
///     .backend(Failover::new(primary, MemoryBackend::new()))
///     .fail_mode(FailMode::Closed)
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailMode {
    /// Let the request through, log at `error` once per outage start and
    /// count it (default: a limiter outage should not become a site outage).
    #[default]
    Open,
    /// Answer `503 Service Unavailable` with a problem+json body.
    Closed,
}

/// The settings a [`RateLimit`] service reads per request, shared by every
/// clone of the layer and its services.
pub(crate) struct Shared<K, B> {
    pub(crate) extractor: K,
    pub(crate) backend: B,
    pub(crate) resolver: Resolver,
    pub(crate) headers: HeaderConfig,
    pub(crate) shadow: bool,
    pub(crate) shadow_headers: bool,
    pub(crate) fail_mode: FailMode,
    pub(crate) on_rejected: Option<OnRejected>,
    /// Set when the layer was made by [`RateLimitLayer::new`] with an
    /// invalid quota: every request is answered 500 with this problem.
    pub(crate) misconfigured: Option<Problem>,
    pub(crate) warned_backend: AtomicBool,
    pub(crate) access: Option<AccessList>,
    pub(crate) sync_interval: Duration,
}

impl<K, B> Shared<K, B> {
    /// Brings the shared overrides and access lists up to date with the
    /// backend's store.
    async fn sync(&self) -> Result<(), BackendError> {
        sync::refresh(&self.resolver.overrides).await?;
        if let Some(access) = &self.access {
            sync::refresh(access).await?;
        }
        Ok(())
    }

    pub(crate) fn warn_backend_once(&self, error: &dyn fmt::Display) {
        if !self.warned_backend.swap(true, Ordering::Relaxed) {
            tracing::error!(%error, fail_mode = ?self.fail_mode, "tollgate: rate-limit backend failed; applying the fail mode");
        }
    }

    pub(crate) fn backend_recovered(&self) {
        if self.warned_backend.load(Ordering::Relaxed) {
            self.warned_backend.store(false, Ordering::Relaxed);
            tracing::info!("tollgate: rate-limit backend answering again");
        }
    }
}

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
    pub(crate) shared: Arc<Shared<K, B>>,
}

impl<K, B> Clone for RateLimitLayer<K, B> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<K, B> fmt::Debug for RateLimitLayer<K, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("policy", &self.shared.resolver.default_policy())
            .field("levels", &self.shared.resolver.levels.len())
            .field("shadow", &self.shared.shadow)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// `quota` per client IP, with every default. An invalid quota (zero,
    /// absurd) cannot be reported here: it is logged once at `error` and
    /// every request is answered `500` with a problem+json body naming it.
    /// Use [`RateLimitLayer::builder`] to get the error at `build()` instead.
    pub fn new(quota: Quota) -> Self {
        match Self::builder().quota(quota).build() {
            Ok(layer) => layer,
            Err(error) => {
                tracing::error!(%error, "tollgate: invalid rate limit; every request will be answered 500 until fixed");
                let (mut layer, _) = Self::builder().quota(Quota::per_second(1)).assemble();
                if let Some(shared) = Arc::get_mut(&mut layer.shared) {
                    shared.misconfigured = Some(Problem::new(
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        "Rate limiter misconfigured",
                        error.to_string(),
                    ));
                }
                layer
            }
        }
    }

    /// A builder: key extractor, quota, algorithm, backend, headers,
    /// shadow mode, rejection handler.
    ///
    /// ```
    /// use tollgate::{key, Algorithm, HeaderStyle, Quota, RateLimitLayer};
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
        RateLimitLayerBuilder {
            extractor: ClientIp::new(),
            backend: MemoryBackend::new(),
            quota: None,
            name: Arc::from("default"),
            algorithm: Algorithm::Gcra,
            cost: 1,
            headers: HeaderConfig::default(),
            shadow: false,
            shadow_headers: false,
            fail_mode: FailMode::Open,
            on_rejected: None,
            access: None,
            default_rule: None,
            levels: Vec::new(),
            exempt: Vec::new(),
            sync_interval: DEFAULT_SYNC_INTERVAL,
        }
    }
}

impl<K, B> RateLimitLayer<K, B> {
    /// The default policy (applied to every request not exempt), if the
    /// layer has one.
    pub fn policy(&self) -> Option<&Policy> {
        self.shared.resolver.default_policy().map(|p| &**p)
    }

    /// The per-key overrides: set and clear quotas for one key at runtime.
    pub fn overrides(&self) -> &Overrides {
        &self.shared.resolver.overrides
    }

    /// The allow and deny lists, if the layer has them.
    pub fn access(&self) -> Option<&AccessList> {
        self.shared.access.as_ref()
    }

    /// The backend (for example to read [`MemoryBackend::len`]).
    pub fn backend(&self) -> &B {
        &self.shared.backend
    }
}

impl<K: KeyExtractor, B: Backend> RateLimitLayer<K, B> {
    /// Reloads the shared overrides and access lists from the backend's
    /// store now, if they changed (the layer also does it every
    /// [`sync_interval`](RateLimitLayerBuilder::sync_interval) in the
    /// background). With a backend that shares nothing (memory) there is
    /// nothing to do.
    pub async fn sync(&self) -> Result<(), BackendError> {
        self.shared.sync().await
    }
}

impl<S, K, B> Layer<S> for RateLimitLayer<K, B> {
    type Service = RateLimit<S, K, B>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.shared.clone())
    }
}

/// Builds a [`RateLimitLayer`]; settings are validated by
/// [`build`](RateLimitLayerBuilder::build).
pub struct RateLimitLayerBuilder<K = ClientIp, B = MemoryBackend> {
    extractor: K,
    backend: B,
    quota: Option<Quota>,
    name: Arc<str>,
    algorithm: Algorithm,
    cost: u64,
    headers: HeaderConfig,
    shadow: bool,
    shadow_headers: bool,
    fail_mode: FailMode,
    on_rejected: Option<OnRejected>,
    access: Option<AccessList>,
    default_rule: Option<Rule>,
    levels: Vec<(LevelKind, String, Rule)>,
    exempt: Vec<String>,
    sync_interval: Duration,
}

/// How often a layer compares its copy of the shared overrides and access
/// lists with the backend's store (one small read per interval).
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LevelKind {
    Group,
    Route,
}

impl<K, B> fmt::Debug for RateLimitLayerBuilder<K, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("quota", &self.quota)
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl<K, B> RateLimitLayerBuilder<K, B> {
    /// Who is limited (default [`ClientIp`]).
    pub fn key<K2: KeyExtractor>(self, extractor: K2) -> RateLimitLayerBuilder<K2, B> {
        RateLimitLayerBuilder {
            extractor,
            backend: self.backend,
            quota: self.quota,
            name: self.name,
            algorithm: self.algorithm,
            cost: self.cost,
            headers: self.headers,
            shadow: self.shadow,
            shadow_headers: self.shadow_headers,
            fail_mode: self.fail_mode,
            on_rejected: self.on_rejected,
            access: self.access,
            default_rule: self.default_rule,
            levels: self.levels,
            exempt: self.exempt,
            sync_interval: self.sync_interval,
        }
    }

    /// Where counters live (default a new [`MemoryBackend`]).
    pub fn backend<B2: Backend>(self, backend: B2) -> RateLimitLayerBuilder<K, B2> {
        RateLimitLayerBuilder {
            extractor: self.extractor,
            backend,
            quota: self.quota,
            name: self.name,
            algorithm: self.algorithm,
            cost: self.cost,
            headers: self.headers,
            shadow: self.shadow,
            shadow_headers: self.shadow_headers,
            fail_mode: self.fail_mode,
            on_rejected: self.on_rejected,
            access: self.access,
            default_rule: self.default_rule,
            levels: self.levels,
            exempt: self.exempt,
            sync_interval: self.sync_interval,
        }
    }

    /// The default limit, applied to every request that is not exempt
    /// (required unless groups or routes are given).
    pub fn quota(mut self, quota: Quota) -> Self {
        self.quota = Some(quota);
        self
    }

    /// The policy's name in headers, bodies, logs and metrics (default
    /// `"default"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The algorithm (default [`Algorithm::Gcra`]).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Units one request takes (default 1).
    pub fn cost(mut self, cost: u64) -> Self {
        self.cost = cost;
        self
    }

    /// Which headers responses carry (default [`HeaderStyle::Both`]).
    pub fn headers(mut self, style: HeaderStyle) -> Self {
        self.headers.style = style;
        self
    }

    /// How `X-RateLimit-Reset` is written (default delay seconds).
    pub fn reset_format(mut self, format: ResetFormat) -> Self {
        self.headers.reset = format;
        self
    }

    /// Shadow mode: decide and report (a `tracing` event per would-be
    /// denial at `info`, target `tollgate::shadow`), never block. Headers
    /// are left off unless [`shadow_headers`](Self::shadow_headers).
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// In shadow mode, still add the rate-limit headers (default off).
    pub fn shadow_headers(mut self, on: bool) -> Self {
        self.shadow_headers = on;
        self
    }

    /// What to do when the backend fails (default [`FailMode::Open`]).
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    /// Allow and deny lists checked before limiting: allowed clients pass
    /// unlimited, denied ones get `403` problem+json. The list can be
    /// changed at runtime through a clone.
    pub fn access(mut self, list: AccessList) -> Self {
        self.access = Some(list);
        self
    }

    /// Replaces the 429 response. The rate-limit headers, `Retry-After`
    /// and `Cache-Control: no-store` are still added unless the handler set
    /// them.
    pub fn on_rejected<F>(mut self, handler: F) -> Self
    where
        F: Fn(&RateLimited) -> http::Response<Bytes> + Send + Sync + 'static,
    {
        self.on_rejected = Some(Arc::new(handler));
        self
    }

    /// The default level as a whole [`Rule`] (its own name, key, cost,
    /// tiers, schedule, refunds), instead of `.quota(..)`, `.name(..)` and
    /// `.cost(..)`.
    pub fn policy(mut self, rule: impl Into<Rule>) -> Self {
        self.default_rule = Some(rule.into());
        self
    }

    /// A group level: every path under `pattern` (`"/api/*"`, `"/api"`, or
    /// with a method, `"POST /api/*"`) is also checked against `rule`,
    /// after the default and any enclosing group, before the route. A bare
    /// [`Quota`] becomes a rule named after the pattern.
    ///
    /// The levels of a request are one [`LimitSet`](crate::LimitSet),
    /// checked all-or-nothing: a request denied by one level consumes
    /// nothing at any level. Its response names every level in
    /// `RateLimit-Policy`; a 429 lists the denying ones in
    /// `violated-policies`.
    ///
    /// ```
    /// use tollgate::policy::Rule;
    /// use tollgate::{Quota, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::builder()
    ///     .quota(Quota::per_minute(30)).name("global")
    ///     .group("/api/*", Rule::new("api", Quota::per_minute(10)))
    ///     .route("GET /api/search", Rule::new("search", Quota::per_minute(3)))
    ///     .route("GET /beta", Rule::new("beta", Quota::per_minute(1)).shadow(true))
    ///     .exempt("/health")
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn group(mut self, pattern: &str, rule: impl Into<Rule>) -> Self {
        self.levels
            .push((LevelKind::Group, pattern.to_owned(), rule.into()));
        self
    }

    /// A route level: requests matching `pattern` exactly, axum-style
    /// (`"/users/{id}"`, `"/files/{*path}"`, with an optional method,
    /// `"GET /api/search"`), are also checked against `rule`. When several
    /// routes match, only the most specific applies, as axum picks it:
    /// static segments before parameters before wildcards, a method-specific
    /// route before an any-method one. A bare [`Quota`] becomes a rule named
    /// after the pattern.
    pub fn route(mut self, pattern: &str, rule: impl Into<Rule>) -> Self {
        self.levels
            .push((LevelKind::Route, pattern.to_owned(), rule.into()));
        self
    }

    /// Requests matching `pattern` (exact, or a prefix ending in `/*`,
    /// optionally after a method) are never limited, by any level.
    pub fn exempt(mut self, pattern: &str) -> Self {
        self.exempt.push(pattern.to_owned());
        self
    }

    /// How often the layer reloads overrides and access lists shared
    /// through the backend (default [`DEFAULT_SYNC_INTERVAL`]); a change
    /// made on one server reaches the others within this.
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// Validates and builds the layer.
    ///
    /// With a backend that shares settings (Redis), the overrides and the
    /// access lists are attached to it and a background task reloads them
    /// every [`sync_interval`](Self::sync_interval); that needs a Tokio
    /// runtime at `build()` (without one, a warning says so and
    /// [`RateLimitLayer::sync`] must be called instead).
    pub fn build(self) -> Result<RateLimitLayer<K, B>, ConfigError>
    where
        K: KeyExtractor,
        B: Backend,
    {
        if self.quota.is_none() && self.default_rule.is_none() && self.levels.is_empty() {
            return Err(ConfigError::MissingQuota);
        }
        let (layer, errors) = self.assemble();
        if let Some(error) = errors.into_iter().next() {
            return Err(error);
        }
        let resolver = &layer.shared.resolver;
        for level in resolver.default.iter().chain(&resolver.levels) {
            level.validate()?;
        }
        if let Some(store) = layer.shared.backend.store() {
            sync::attach(&resolver.overrides, store.clone());
            if let Some(access) = &layer.shared.access {
                sync::attach(access, store);
            }
            spawn_sync(&layer.shared);
        }
        Ok(layer)
    }

    /// Puts the layer together; the errors are those of patterns, which
    /// leave their level out.
    fn assemble(self) -> (RateLimitLayer<K, B>, Vec<ConfigError>) {
        let default = match (self.default_rule, self.quota) {
            (Some(rule), _) => Some(rule),
            (None, Some(quota)) => Some(Rule::new(self.name.clone(), quota).cost(self.cost)),
            (None, None) => None,
        };
        let default = default.map(|rule| Level::compile(rule, &self.name, self.algorithm));
        let mut errors = Vec::new();
        let mut table = RouteTable::default();
        let mut levels = Vec::new();
        for (kind, pattern, rule) in self.levels {
            let index = levels.len();
            let added = match kind {
                LevelKind::Group => {
                    Pattern::parse_group(&pattern).map(|parsed| table.add_group(&parsed, index))
                }
                LevelKind::Route => {
                    Pattern::parse(&pattern).map(|parsed| table.add_route(&parsed, index))
                }
            };
            match added {
                Ok(()) => levels.push(Level::compile(rule, &pattern, self.algorithm)),
                Err(error) => errors.push(ConfigError::Pattern(error)),
            }
        }
        for pattern in &self.exempt {
            match Pattern::parse(pattern) {
                Ok(parsed) => table.add_exempt(&parsed),
                Err(error) => errors.push(ConfigError::Pattern(error)),
            }
        }
        let layer = RateLimitLayer {
            shared: Arc::new(Shared {
                extractor: self.extractor,
                backend: self.backend,
                resolver: Resolver::new(default, levels, table),
                headers: self.headers,
                shadow: self.shadow,
                shadow_headers: self.shadow_headers,
                fail_mode: self.fail_mode,
                on_rejected: self.on_rejected,
                misconfigured: None,
                warned_backend: AtomicBool::new(false),
                access: self.access,
                sync_interval: self.sync_interval,
            }),
        };
        (layer, errors)
    }
}

/// Starts the background reload of shared settings: it stops when the
/// last clone of the layer and its services is dropped.
fn spawn_sync<K: KeyExtractor, B: Backend>(shared: &Arc<Shared<K, B>>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            "tollgate: no Tokio runtime at build(): shared overrides and access lists are reloaded only when RateLimitLayer::sync() is called"
        );
        return;
    };
    let weak: Weak<Shared<K, B>> = Arc::downgrade(shared);
    let interval = shared.sync_interval.max(Duration::from_millis(10));
    runtime.spawn(async move {
        let mut failing = false;
        loop {
            let Some(shared) = weak.upgrade() else { break };
            match shared.sync().await {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("tollgate: shared settings reloading again");
                }
                Ok(_) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "tollgate: could not reload shared overrides and access lists; keeping the last copy");
                }
                Err(_) => {}
            }
            drop(shared);
            tokio::time::sleep(interval).await;
        }
    });
}

/// Why a layer could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `.quota(..)` was not called.
    #[error(
        "no quota: call .quota(Quota::per_minute(60)) (or parse one: \"60/m\") on the builder, or give it groups or routes"
    )]
    MissingQuota,
    /// A policy cannot be enforced.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A group, route or exemption pattern is malformed.
    #[error(transparent)]
    Pattern(#[from] PatternError),
}
