//! Metrics through the [`metrics`](https://docs.rs/metrics) facade
//! (feature `metrics`): any exporter works (Prometheus, StatsD, OpenTelemetry
//! through their `metrics` recorders).
//!
//! [`names`] lists every metric; the README has the same table.

pub mod names;
