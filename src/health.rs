//! Can the limiter enforce its limits now? [`Health`] is what
//! [`RateLimitLayer::health`](crate::RateLimitLayer::health) answers: each
//! backend's state (up, failing, circuit open), its last error and median
//! latency, how full an in-memory table is, how the settings sync goes; and
//! whether the layer is **ready**: it is not when its backend fails and the
//! fail mode is closed (every request would get a 503). Failing open, the
//! layer still serves (unlimited) and counts as ready, unless a strict
//! readiness check is asked for.
//!
//! With the `axum` feature,
//! [`RateLimitLayer::readiness_route`](crate::RateLimitLayer::readiness_route),
//! [`strict_readiness_route`](crate::RateLimitLayer::strict_readiness_route)
//! and [`liveness`] are ready-made routes answering JSON.
//!
//! ```
//! use tollgate::{Quota, RateLimitLayer};
//!
//! let layer = RateLimitLayer::new(Quota::per_second(10));
//! let health = layer.health();
//! assert!(health.is_ready());
//! assert_eq!(health.status(), tollgate::health::Status::Ok);
//! assert!(health.to_json().starts_with(r#"{"status":"ok","ready":true"#));
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};

use crate::backend::{BackendStatus, CircuitState, MemoryStatus};
use crate::engine::Watched;
use crate::problem::push_json_str;
use crate::FailMode;

/// The overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Every backend answers.
    Ok,
    /// The limiter enforces, but not as configured in full: a failover
    /// answers from its fallback, a circuit is probing.
    Degraded,
    /// The backend fails: the fail mode decides every request.
    Failing,
}

impl Status {
    /// `"ok"`, `"degraded"` or `"failing"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Failing => "failing",
        }
    }
}

/// One backend's state, as a health check shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendState {
    /// It answers.
    Up,
    /// Its last call failed.
    Failing,
    /// Its circuit breaker is open: it is not called until the next probe.
    CircuitOpen,
    /// Its circuit breaker lets one probe through.
    HalfOpen,
}

impl BackendState {
    /// `"up"`, `"failing"`, `"circuit_open"` or `"half_open"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            BackendState::Up => "up",
            BackendState::Failing => "failing",
            BackendState::CircuitOpen => "circuit_open",
            BackendState::HalfOpen => "half_open",
        }
    }
}

/// One backend of the layer (a failover lists its primary and fallback
/// after itself).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendReport {
    /// What it is (`"memory"`, `"redis"`, `"failover"`…).
    pub kind: &'static str,
    /// Its state.
    pub state: BackendState,
    /// Failed calls in a row.
    pub consecutive_failures: u32,
    /// The last error, if any call failed since the start.
    pub last_error: Option<String>,
    /// The median of its recent networked calls (the layer's own backend
    /// only; `None` in memory, which answers in-process).
    pub p50_latency: Option<Duration>,
    /// How full an in-memory table is.
    pub memory: Option<MemoryStatus>,
    /// Keys waiting to be written back into a failover's primary.
    pub pending_writeback: Option<usize>,
}

/// How the reload of settings shared through the backend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Since the last successful reload (`None`: none yet).
    pub age: Option<Duration>,
    /// Failed reloads since the start.
    pub failures: u64,
}

impl SyncReport {
    pub(crate) fn new(age: Option<Duration>, failures: u64) -> Self {
        SyncReport { age, failures }
    }
}

/// A layer's health now: see the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The overall state.
    pub status: Status,
    /// The layer's fail mode.
    pub fail_mode: FailMode,
    /// Every backend, the layer's own first.
    pub backends: Vec<BackendReport>,
    /// The settings sync, for a backend that shares settings.
    pub settings_sync: Option<SyncReport>,
}

impl Health {
    /// From the backend's status, what the engine saw of its calls, the
    /// fail mode and the sync.
    pub(crate) fn new(
        status: &BackendStatus,
        watched: Watched,
        fail_mode: FailMode,
        settings_sync: Option<SyncReport>,
    ) -> Self {
        let mut backends = Vec::new();
        for (i, part) in status.walk().into_iter().enumerate() {
            let mut report = BackendReport {
                kind: part.kind,
                state: BackendState::Up,
                consecutive_failures: 0,
                last_error: None,
                p50_latency: None,
                memory: part.memory,
                pending_writeback: part.pending_writeback,
            };
            if let Some(circuit) = &part.circuit {
                report.state = match circuit.state {
                    CircuitState::Open => BackendState::CircuitOpen,
                    CircuitState::HalfOpen => BackendState::HalfOpen,
                    CircuitState::Closed if circuit.consecutive_failures > 0 => {
                        BackendState::Failing
                    }
                    CircuitState::Closed => BackendState::Up,
                };
                report.consecutive_failures = circuit.consecutive_failures;
                report.last_error = circuit.last_error.clone();
            }
            if i == 0 {
                // The layer's own backend: what the engine saw of it.
                if watched.failing {
                    report.state = BackendState::Failing;
                }
                report.consecutive_failures = report
                    .consecutive_failures
                    .max(watched.consecutive_failures);
                report.last_error = report.last_error.or(watched.last_error.clone());
                report.p50_latency = watched.p50;
            }
            backends.push(report);
        }
        let status = if watched.failing {
            Status::Failing
        } else if backends.iter().any(|b| b.state != BackendState::Up) {
            Status::Degraded
        } else {
            Status::Ok
        };
        Health {
            status,
            fail_mode,
            backends,
            settings_sync,
        }
    }

    /// The overall state.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether the layer serves requests as configured: `false` only when
    /// the backend fails and the fail mode is closed (every request would
    /// be answered 503). Failing open, requests pass unlimited and the
    /// layer counts as ready (so that a backend outage does not take every
    /// server of a fleet out of its load balancer).
    pub fn is_ready(&self) -> bool {
        !(self.status == Status::Failing && self.fail_mode == FailMode::Closed)
    }

    /// Whether the layer enforces its limits now: `false` whenever the
    /// backend fails, whatever the fail mode.
    pub fn is_ready_strict(&self) -> bool {
        self.status != Status::Failing
    }

    /// The health as JSON: `status`, `ready`, `fail_mode`, `backends`
    /// (`kind`, `state`, `consecutive_failures`, `last_error`,
    /// `p50_latency_ms`, and when known `keys`, `max_keys`,
    /// `pending_writeback`), `settings_sync` (`age_seconds`, `failures`).
    pub fn to_json(&self) -> String {
        self.json(self.is_ready())
    }

    fn json(&self, ready: bool) -> String {
        let mut out = String::with_capacity(256);
        let _ = write!(
            out,
            r#"{{"status":"{}","ready":{ready},"fail_mode":"{}","backends":["#,
            self.status.as_str(),
            match self.fail_mode {
                FailMode::Open => "open",
                FailMode::Closed => "closed",
            }
        );
        for (i, b) in self.backends.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(r#"{"kind":"#);
            push_json_str(&mut out, b.kind);
            let _ = write!(
                out,
                r#","state":"{}","consecutive_failures":{},"last_error":"#,
                b.state.as_str(),
                b.consecutive_failures
            );
            match &b.last_error {
                Some(error) => push_json_str(&mut out, error),
                None => out.push_str("null"),
            }
            out.push_str(r#","p50_latency_ms":"#);
            match b.p50_latency {
                Some(p50) => {
                    let _ = write!(out, "{:.3}", p50.as_secs_f64() * 1000.0);
                }
                None => out.push_str("null"),
            }
            if let Some(memory) = b.memory {
                let _ = write!(
                    out,
                    r#","keys":{},"max_keys":{},"evictions":{}"#,
                    memory.keys, memory.max_keys, memory.evictions
                );
            }
            if let Some(pending) = b.pending_writeback {
                let _ = write!(out, r#","pending_writeback":{pending}"#);
            }
            out.push('}');
        }
        out.push(']');
        if let Some(sync) = self.settings_sync {
            out.push_str(r#","settings_sync":{"age_seconds":"#);
            match sync.age {
                Some(age) => {
                    let _ = write!(out, "{:.3}", age.as_secs_f64());
                }
                None => out.push_str("null"),
            }
            let _ = write!(out, r#","failures":{}}}"#, sync.failures);
        }
        out.push('}');
        out
    }

    /// The readiness answer: 200 when [`is_ready`](Health::is_ready) (or
    /// with `strict`, [`is_ready_strict`](Health::is_ready_strict)), else
    /// 503; the JSON body either way, never cached.
    pub fn to_response(&self, strict: bool) -> Response<Bytes> {
        let ready = if strict {
            self.is_ready_strict()
        } else {
            self.is_ready()
        };
        let mut res = Response::new(Bytes::from(self.json(ready)));
        if !ready {
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// A liveness route for axum: always 200 `{"status":"alive"}` (the process
/// answers; whether the limiter can enforce is readiness's question).
#[cfg(feature = "axum")]
pub fn liveness<S>() -> axum::routing::MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    axum::routing::get(|| async {
        (
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            r#"{"status":"alive"}"#,
        )
    })
}
