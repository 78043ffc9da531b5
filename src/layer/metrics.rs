//! The layer's metrics (feature `metrics`): the builder's settings, the
//! instruments the engine counts with, and the task that samples the gauges
//! (table fill, circuit state, write-back backlog, blocked-key cache,
//! settings sync).

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::gate::Gate;
use super::RateLimitLayerBuilder;
use crate::backend::{Backend, BackendStatus, CircuitState};
use crate::engine::Engine;
use crate::key::Key;
use crate::metrics::{names, Instruments, MetricsOptions, TopKeysOptions};
use crate::resolve::Resolver;

impl<K, B> RateLimitLayerBuilder<K, B> {
    /// Whether the layer records metrics (default `true` with the
    /// `metrics` feature). Off, the engine counts nothing and no sampling
    /// task runs.
    ///
    /// The counters are registered with the recorder installed when the
    /// layer handles its first request, so install it (for example
    /// `metrics_exporter_prometheus::PrometheusBuilder::install_recorder`)
    /// before serving.
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.metrics.enabled = enabled;
        self
    }

    /// The share of a limit at or over which an allowed decision also
    /// counts in `tollgate_near_limit_total` (default
    /// [`DEFAULT_NEAR_LIMIT_RATIO`](crate::metrics::DEFAULT_NEAR_LIMIT_RATIO),
    /// 0.8). `build()` refuses a ratio outside `(0, 1]`.
    pub fn near_limit_ratio(mut self, ratio: f64) -> Self {
        self.metrics.near_limit_ratio = ratio;
        self
    }

    /// Keep each policy's most limited keys over the last `span` (default
    /// [`DEFAULT_TOP_KEYS_CAPACITY`](crate::metrics::DEFAULT_TOP_KEYS_CAPACITY)
    /// = 64 counters over
    /// [`DEFAULT_TOP_KEYS_SPAN`](crate::metrics::DEFAULT_TOP_KEYS_SPAN) = 5
    /// minutes), in fixed memory (about 46 KB a policy at 64; see
    /// [`TopKeys`](crate::metrics::top::TopKeys) for the error bound);
    /// `capacity` 0 keeps none. Read them with
    /// [`RateLimitLayer::top_keys`](crate::RateLimitLayer::top_keys).
    pub fn top_keys(mut self, capacity: usize, span: Duration) -> Self {
        self.metrics.top = (capacity > 0).then(|| {
            let label = match &self.metrics.top {
                Some(top) => top.label.clone(),
                None => Arc::new(crate::metrics::ip_label),
            };
            TopKeysOptions {
                capacity,
                span,
                admitted: false,
                label,
            }
        });
        self
    }

    /// Count admitted requests in the top keys too, not only denials
    /// (default `false`: it adds a lock and a label to every request).
    pub fn top_keys_admitted(mut self, admitted: bool) -> Self {
        if let Some(top) = &mut self.metrics.top {
            top.admitted = admitted;
        }
        self
    }

    /// How a key is shown in the top keys, beside its hash (the `k:…` of
    /// the logs). By default a client address (a key made by
    /// [`Key::from_ip`]) is shown and any other key is not: it may be a
    /// credential. Return `None` for a key that must not be shown.
    ///
    /// ```
    /// use tollgate::{key::Key, Quota, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::builder()
    ///     .quota(Quota::per_minute(60))
    ///     .top_keys_label(|key: &Key| key.as_ip().map(|ip| format!("client {ip}")))
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn top_keys_label(
        mut self,
        label: impl Fn(&Key) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        if let Some(top) = &mut self.metrics.top {
            top.label = Arc::new(label);
        }
        self
    }

    /// How often the gauges are sampled (default
    /// [`DEFAULT_METRICS_INTERVAL`](crate::metrics::DEFAULT_METRICS_INTERVAL),
    /// 5 s; at least 10 ms).
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.metrics.interval = interval;
        self
    }
}

/// Checks the metrics settings for `build()`.
pub(super) fn validate(options: &MetricsOptions) -> Result<(), super::ConfigError> {
    let ratio = options.near_limit_ratio;
    if ratio > 0.0 && ratio <= 1.0 {
        Ok(())
    } else {
        Err(super::ConfigError::NearLimitRatio(ratio.to_string()))
    }
}

/// The instruments for a layer's policies and backend, if it counts.
pub(super) fn instruments<B: Backend>(
    options: &MetricsOptions,
    resolver: &Resolver,
    engine: &Engine<B>,
) -> Option<Arc<Instruments>> {
    if !options.enabled {
        return None;
    }
    let levels = resolver
        .default
        .iter()
        .chain(&resolver.levels)
        .chain(&resolver.rejected);
    let default_policy = resolver
        .default_policy()
        .map(|p| p.shared_name().clone())
        .or_else(|| {
            resolver
                .levels
                .first()
                .map(|l| l.base.shared_name().clone())
        })
        .unwrap_or_else(|| Arc::from("default"));
    Some(Arc::new(Instruments::new(
        levels.map(|level| &*level.base),
        default_policy,
        engine.backend().kind(),
        options,
        resolver.clock().clone(),
    )))
}

/// Starts sampling the gauges every interval, if the layer counts and a
/// Tokio runtime runs; it stops when the last clone of the layer and its
/// services is dropped.
pub(super) fn spawn_sampling<K, B>(gate: &Arc<Gate<K, B>>)
where
    K: Send + Sync + 'static,
    B: Backend,
{
    if gate.engine.metrics().is_none() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            "tollgate: no Tokio runtime at build(): the metrics' gauges (table fill, circuit state, settings sync) are not sampled"
        );
        return;
    };
    let weak: Weak<Gate<K, B>> = Arc::downgrade(gate);
    let interval = gate.metrics_interval.max(Duration::from_millis(10));
    runtime.spawn(async move {
        loop {
            let Some(gate) = weak.upgrade() else { break };
            sample(&gate);
            drop(gate);
            tokio::time::sleep(interval).await;
        }
    });
}

/// Sets every gauge from the state now.
pub(super) fn sample<K, B: Backend>(gate: &Gate<K, B>) {
    let Some(instruments) = gate.engine.metrics() else {
        return;
    };
    let layer = instruments.layer().to_string();
    for status in gate.engine.backend().status().walk() {
        sample_backend(&layer, status);
    }
    for (policy, top) in instruments.every_top(10) {
        for rank in 1..=10usize {
            let count = top.get(rank - 1).map_or(0, |k| k.count);
            metrics::gauge!(
                names::TOP_KEYS_DENIED,
                "policy" => policy.to_string(),
                "rank" => rank.to_string()
            )
            .set(count as f64);
        }
    }
    if gate.engine.backend().store().is_some() {
        if let Some(age) = gate.sync_state.age() {
            metrics::gauge!(names::SYNC_AGE, "layer" => layer.clone()).set(age.as_secs_f64());
        }
        metrics::counter!(names::SYNC_FAILURES, "layer" => layer)
            .absolute(gate.sync_state.failures());
    }
}

fn sample_backend(layer: &str, status: &BackendStatus) {
    let labels = [
        ("layer", layer.to_owned()),
        ("backend", status.kind.to_owned()),
    ];
    if let Some(memory) = status.memory {
        metrics::gauge!(names::MEMORY_KEYS, &labels).set(memory.keys as f64);
        metrics::gauge!(names::MEMORY_MAX_KEYS, &labels).set(memory.max_keys as f64);
        metrics::counter!(names::MEMORY_EVICTIONS, &labels).absolute(memory.evictions);
    }
    if let Some(circuit) = &status.circuit {
        let state = match circuit.state {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        };
        metrics::gauge!(names::CIRCUIT_STATE, &labels).set(state);
    }
    if let Some(pending) = status.pending_writeback {
        metrics::gauge!(names::FAILOVER_PENDING, &labels).set(pending as f64);
    }
    if let Some(blocked) = status.blocked {
        metrics::gauge!(names::BLOCKED_ENTRIES, &labels).set(blocked.entries as f64);
        metrics::counter!(names::BLOCKED_HITS, &labels).absolute(blocked.hits);
    }
}
