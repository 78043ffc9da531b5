//! Metrics through the [`metrics`](https://docs.rs/metrics) facade
//! (feature `metrics`): any exporter works (Prometheus, StatsD, OpenTelemetry
//! through their `metrics` recorders).
//!
//! [`names`] lists every metric; the README has the same table.
//! [`top`] keeps the heaviest keys (the most limited clients, say) over a
//! sliding span, in fixed memory.

pub mod names;
pub mod top;
