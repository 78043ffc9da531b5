//! [`RateLimitLayerBuilder`]: every setting of a [`RateLimitLayer`],
//! validated at [`build`](RateLimitLayerBuilder::build).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::gate::{spawn_sync, Gate, OnRejected, SyncState};
use super::RateLimitLayer;
use crate::backend::{Backend, MemoryBackend};
use crate::engine::{Denial, Engine, FailMode};
use crate::headers::{HeaderConfig, HeaderStyle, ResetFormat};
use crate::key::{ClientIp, KeyExtractor};
use crate::policy::{Level, Pattern, PatternError, PolicyError, RouteTable, Rule};
use crate::quota::Quota;
use crate::resolve::Resolver;
use crate::settings::{sync, AccessList};
use crate::time::{default_clock, Clock, SharedClock};
use crate::Algorithm;

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
    rejected_keys: Option<Rule>,
    clock: Option<SharedClock>,
    sync_interval: Duration,
    #[cfg(feature = "metrics")]
    pub(super) metrics: crate::metrics::MetricsOptions,
}

/// How often a layer compares its copy of the shared overrides and access
/// lists with the backend's store (one small read per interval).
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LevelKind {
    Group,
    Route,
}

impl RateLimitLayerBuilder {
    /// Every default: client IP, a new [`MemoryBackend`], GCRA, both header
    /// styles, fail open; no quota yet.
    pub(super) fn new() -> Self {
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
            rejected_keys: None,
            clock: None,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::MetricsOptions::default(),
        }
    }
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
            rejected_keys: self.rejected_keys,
            clock: self.clock,
            sync_interval: self.sync_interval,
            #[cfg(feature = "metrics")]
            metrics: self.metrics,
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
            rejected_keys: self.rejected_keys,
            clock: self.clock,
            sync_interval: self.sync_interval,
            #[cfg(feature = "metrics")]
            metrics: self.metrics,
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

    /// Still add the rate-limit headers for decisions that only report
    /// (default off): in shadow mode, the whole layer's; otherwise, a shadow
    /// level's ([`Rule::shadow`]), which is then listed beside the enforced
    /// levels. Off, a client only ever sees limits that are enforced.
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
        F: Fn(&Denial) -> http::Response<Bytes> + Send + Sync + 'static,
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
    /// The levels of a request are one [`LimitSet`](crate::policy::LimitSet),
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

    /// Counts the requests whose key is rejected (a missing, malformed,
    /// expired or forged credential: the extractor's 401 or 400) against
    /// `rule`, per client: once a client is over it, its rejected requests
    /// are answered 429 (with `Retry-After`) instead, so guessing API keys
    /// or tokens is throttled like any other traffic.
    ///
    /// When the backend cannot answer, a rejected request gets the
    /// extractor's answer whatever the fail mode (it was refused anyway).
    ///
    /// Without it a rejected request consumes nothing anywhere. The rule
    /// is keyed by its own key if it has one, else by the peer address
    /// (`ClientIp::new()`): behind a reverse proxy give it
    /// `.key(ClientIp::trusting(..))`. A bare [`Quota`] becomes a rule named
    /// `rejected-keys`. Requests that pass the extractor but carry a key
    /// your application turns down (an unknown API key, answered 401 by
    /// the handler) are limited by a rule that counts only those answers:
    /// `Rule::new(..).key(ClientIp::new()).count_only(|res| res.status == 401)`
    /// as a group over the routes.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tollgate::key::Header;
    /// use tollgate::{Quota, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::builder()
    ///     .key(Header::new(HeaderName::from_static("x-api-key")))
    ///     .quota(Quota::per_minute(100))
    ///     // Ten requests without a usable key per client IP per minute.
    ///     .rejected_keys(Quota::per_minute(10))
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn rejected_keys(mut self, rule: impl Into<Rule>) -> Self {
        self.rejected_keys = Some(rule.into());
        self
    }

    /// The clock the layer reads: the expiry of per-key overrides, and
    /// which window of a [`Schedule`](crate::policy::Schedule) applies
    /// (read only for a level that has one).
    /// Give the backend, its circuit breaker and its blocked-key cache the
    /// same one to drive them all from a test
    /// ([`ManualClock`](crate::time::ManualClock)). Default: the wall clock
    /// at start-up, advanced by Tokio's monotonic time.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
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
        #[cfg(feature = "metrics")]
        super::metrics::validate(&self.metrics)?;
        let (layer, errors) = self.assemble();
        if let Some(error) = errors.into_iter().next() {
            return Err(error);
        }
        let resolver = &layer.gate.resolver;
        for level in resolver
            .default
            .iter()
            .chain(&resolver.levels)
            .chain(&resolver.rejected)
        {
            level.validate()?;
        }
        if let Some(store) = layer.gate.engine.backend().store() {
            sync::attach(&resolver.overrides, store.clone());
            if let Some(access) = &layer.gate.access {
                sync::attach(access, store);
            }
            spawn_sync(&layer.gate);
        }
        #[cfg(feature = "metrics")]
        super::metrics::spawn_sampling(&layer.gate);
        Ok(layer)
    }

    /// Puts the layer together; the errors are those of patterns, which
    /// leave their level out.
    fn assemble(self) -> (RateLimitLayer<K, B>, Vec<ConfigError>)
    where
        B: Backend,
    {
        let default = match (self.default_rule, self.quota) {
            (Some(rule), _) => Some(rule),
            (None, Some(quota)) => Some(Rule::new(self.name.clone(), quota).cost(self.cost)),
            (None, None) => None,
        };
        let default = default.map(|rule| Level::compile(rule, &self.name, self.algorithm));
        let rejected = self.rejected_keys.map(|rule| {
            let mut level = Level::compile(rule, "rejected-keys", self.algorithm);
            if level.key.is_none() {
                level.key = Some(Arc::new(ClientIp::new()));
            }
            level
        });
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
        let resolver = Resolver::new(
            default,
            levels,
            table,
            rejected,
            self.clock.unwrap_or_else(default_clock),
        );
        let engine = Engine::new(
            self.backend,
            self.fail_mode,
            self.shadow,
            self.shadow_headers,
        );
        let engine = if self.headers.style == HeaderStyle::None {
            engine.without_report()
        } else {
            engine
        };
        #[cfg(feature = "metrics")]
        let engine = match super::metrics::instruments(&self.metrics, &resolver, &engine) {
            Some(instruments) => engine.with_metrics(instruments),
            None => engine,
        };
        let simple = resolver.simple && resolver.rejected.is_none() && self.access.is_none();
        let layer = RateLimitLayer {
            gate: Arc::new(Gate {
                simple,
                extractor: self.extractor,
                resolver,
                access: self.access,
                engine,
                headers: self.headers,
                on_rejected: self.on_rejected,
                sync_interval: self.sync_interval,
                sync_state: SyncState::default(),
                #[cfg(feature = "metrics")]
                metrics_interval: self.metrics.interval,
            }),
        };
        (layer, errors)
    }
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
    /// `.near_limit_ratio(..)` is not a share of the limit.
    #[error(
        "near_limit_ratio({0}) is not a share of the limit: give a number above 0 and at most 1 (the default is 0.8)"
    )]
    NearLimitRatio(String),
}
