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

pub(crate) use instruments::{Instruments, MetricsOptions, Operation, Outcome, Settled};
pub use instruments::{DEFAULT_METRICS_INTERVAL, DEFAULT_NEAR_LIMIT_RATIO};
