//! Every metric tollgate records: its name, kind, labels and meaning. The
//! README's table, the Grafana dashboard and the alert rules are checked
//! against [`ALL`] by `tests/ops_assets.rs`.
//!
//! Labels come from the configuration only (policy names, backend kinds,
//! fixed outcome words), never from a request: the number of series is
//! bounded by the configuration. `layer` is the layer's name (its default
//! policy's, `.name(..)` on the builder), so that two layers of one process
//! keep their backends' series apart.

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; Prometheus names end in `_total`.
    Counter,
    /// A value sampled now.
    Gauge,
    /// A distribution (Prometheus `_bucket`, `_sum`, `_count`).
    Histogram,
}

/// One metric: name, kind, label names and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The name, as exported.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The label names, in order.
    pub labels: &'static [&'static str],
    /// What it counts or shows (also its `# HELP` text).
    pub help: &'static str,
}

/// Limit decisions: one per limit checked (a request checked at three
/// levels counts three), `policy` its name. `outcome`: `allowed`,
/// `denied`, `shadow_denied` (over the limit, let through by shadow mode or
/// a shadow policy), `fail_open` and `fail_closed` (the backend failed and
/// the fail mode decided). Requests settled before any limit count once
/// under the layer's default policy name: `unlimited` (exempt route, allow
/// list, skipped key, unlimited tier), `forbidden` (deny list),
/// `key_rejected` (the key extractor refused the request).
pub const DECISIONS: &str = "tollgate_decisions_total";

/// Allowed decisions that left the key at or over the near-limit share of
/// its limit (0.8 by default, as Envoy's `near_limit`), by `policy`.
pub const NEAR_LIMIT: &str = "tollgate_near_limit_total";

/// Requests whose key the extractor rejected, by `policy` (the layer's
/// default policy name) and the answer's HTTP `status`.
pub const KEY_REJECTIONS: &str = "tollgate_key_rejections_total";

/// Seconds a networked backend took to answer, by `backend` (its kind:
/// `redis`, `failover`…) and `operation` (`acquire`, `peek`, `reset`,
/// `absorb`, `refund`). The memory backend answers in-process and is not
/// timed.
pub const BACKEND_DURATION: &str = "tollgate_backend_duration_seconds";

/// Backend calls that failed, by `backend` and `kind`: `timeout`,
/// `connection`, `script`, `cluster`, `other`.
pub const BACKEND_ERRORS: &str = "tollgate_backend_errors_total";

/// Keys the memory backend holds now, by `backend`.
pub const MEMORY_KEYS: &str = "tollgate_memory_keys";

/// The memory backend's bound on keys (`max_keys`), by `backend`.
pub const MEMORY_MAX_KEYS: &str = "tollgate_memory_max_keys";

/// Live keys the full memory table forgot to make room for newcomers, by
/// `backend`.
pub const MEMORY_EVICTIONS: &str = "tollgate_memory_evictions_total";

/// A circuit breaker's state, by `backend`: 0 closed, 1 half-open, 2 open.
pub const CIRCUIT_STATE: &str = "tollgate_circuit_state";

/// (Policy, key) pairs a failover's fallback admitted that wait to be
/// written back into the primary, by `backend`.
pub const FAILOVER_PENDING: &str = "tollgate_failover_writeback_pending";

/// Keys the blocked-key cache holds (known over their limit), by `backend`.
pub const BLOCKED_ENTRIES: &str = "tollgate_blocked_cache_entries";

/// Requests the blocked-key cache answered without asking the backend, by
/// `backend`.
pub const BLOCKED_HITS: &str = "tollgate_blocked_cache_hits_total";

/// Seconds since the shared overrides and access lists were last reloaded
/// from the backend's store.
pub const SYNC_AGE: &str = "tollgate_settings_sync_age_seconds";

/// Reloads of the shared overrides and access lists that failed.
pub const SYNC_FAILURES: &str = "tollgate_settings_sync_failures_total";

/// Denials counted in the top-keys span for the most-denied keys of
/// `policy`, by `rank` (`1` to `10`): how concentrated the denials are,
/// without naming any key (`RateLimitLayer::top_keys` names them).
pub const TOP_KEYS_DENIED: &str = "tollgate_top_keys_denied";

/// Every metric, in the README's order.
pub const ALL: &[Metric] = &[
    Metric {
        name: DECISIONS,
        kind: Kind::Counter,
        labels: &["policy", "outcome"],
        help: "Limit decisions by policy and outcome (allowed, denied, shadow_denied, fail_open, fail_closed; per request: unlimited, forbidden, key_rejected).",
    },
    Metric {
        name: NEAR_LIMIT,
        kind: Kind::Counter,
        labels: &["policy"],
        help: "Allowed decisions that left the key at or over the near-limit share of its limit.",
    },
    Metric {
        name: KEY_REJECTIONS,
        kind: Kind::Counter,
        labels: &["policy", "status"],
        help: "Requests whose key the extractor rejected, by the answer's HTTP status.",
    },
    Metric {
        name: BACKEND_DURATION,
        kind: Kind::Histogram,
        labels: &["layer", "backend", "operation"],
        help: "Seconds a networked rate-limit backend took to answer.",
    },
    Metric {
        name: BACKEND_ERRORS,
        kind: Kind::Counter,
        labels: &["layer", "backend", "kind"],
        help: "Rate-limit backend calls that failed, by kind (timeout, connection, script, cluster, other).",
    },
    Metric {
        name: MEMORY_KEYS,
        kind: Kind::Gauge,
        labels: &["layer", "backend"],
        help: "Keys the in-memory backend holds.",
    },
    Metric {
        name: MEMORY_MAX_KEYS,
        kind: Kind::Gauge,
        labels: &["layer", "backend"],
        help: "The in-memory backend's bound on keys.",
    },
    Metric {
        name: MEMORY_EVICTIONS,
        kind: Kind::Counter,
        labels: &["layer", "backend"],
        help: "Live keys the full in-memory table forgot to make room for newcomers.",
    },
    Metric {
        name: CIRCUIT_STATE,
        kind: Kind::Gauge,
        labels: &["layer", "backend"],
        help: "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
    },
    Metric {
        name: FAILOVER_PENDING,
        kind: Kind::Gauge,
        labels: &["layer", "backend"],
        help: "Keys whose fallback consumption waits to be written back into the primary backend.",
    },
    Metric {
        name: BLOCKED_ENTRIES,
        kind: Kind::Gauge,
        labels: &["layer", "backend"],
        help: "Keys the blocked-key cache holds.",
    },
    Metric {
        name: BLOCKED_HITS,
        kind: Kind::Counter,
        labels: &["layer", "backend"],
        help: "Requests the blocked-key cache answered without asking the backend.",
    },
    Metric {
        name: SYNC_AGE,
        kind: Kind::Gauge,
        labels: &["layer"],
        help: "Seconds since the shared overrides and access lists were last reloaded.",
    },
    Metric {
        name: SYNC_FAILURES,
        kind: Kind::Counter,
        labels: &["layer"],
        help: "Reloads of the shared overrides and access lists that failed.",
    },
    Metric {
        name: TOP_KEYS_DENIED,
        kind: Kind::Gauge,
        labels: &["policy", "rank"],
        help: "Denials in the top-keys span of the most-denied keys, by rank (1 to 10); no key is named.",
    },
];
