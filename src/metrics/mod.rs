//! Metrics through the [`metrics`](https://docs.rs/metrics) facade
//! (feature `metrics`): any exporter works (Prometheus, StatsD, OpenTelemetry
//! through their `metrics` recorders).
//!
//! [`names`] lists every metric; the README has the same table.
//! [`top`] keeps the heaviest keys (the most limited clients, say) over a
//! sliding span, in fixed memory.

mod instruments;
pub mod names;
pub mod top;

pub(crate) use instruments::{
    ip_label, Instruments, MetricsOptions, Operation, Outcome, Settled, TopKeysOptions,
};
pub use instruments::{
    DEFAULT_METRICS_INTERVAL, DEFAULT_NEAR_LIMIT_RATIO, DEFAULT_TOP_KEYS_CAPACITY,
    DEFAULT_TOP_KEYS_SPAN,
};
