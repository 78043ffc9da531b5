//! # tollgate
//!
//! Rate limiting as a [Tower](https://docs.rs/tower) layer for axum, hyper
//! and tonic services: six algorithms, an in-memory backend that is bounded
//! and sharded, `X-RateLimit-*` and IETF `RateLimit` headers, RFC 9457
//! problem+json 429s.
//!
//! ## Quick start
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use axum::{routing::get, Router};
//! use tollgate::{Quota, RateLimitLayer};
//!
//! #[tokio::main]
//! async fn main() {
//!     let app = Router::new()
//!         .route("/", get(|| async { "hello" }))
//!         // ten per second per client IP, in memory, GCRA
//!         .layer(RateLimitLayer::new(Quota::per_second(10)));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//!     // the client IP comes from the connection: serve with connect info
//!     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//!         .await
//!         .unwrap();
//! }
//! ```
//!
//! ## The parts
//!
//! A request is keyed ([`key`]), checked against its policy ([`Policy`],
//! [`Quota`], [`Algorithm`]) by a [`Backend`](backend::Backend), and
//! answered ([`headers`], [`response`]). [`Limiter`] is the same machinery
//! without HTTP.
//!
//! ## Cargo features
//!
//! - `axum` (default): reads the peer address from axum's `ConnectInfo`.
//! - `redis`: `RedisBackend`, one limit shared by a
//!   fleet.
//! - `redis-tls`: `rediss://` URLs for the Redis backend (rustls, ring).
//! - `redis-sentinel`: the Redis backend through Sentinel.
//! - `jwt`: `key::Bearer`, keys from verified JWT claims.
//! - `schedule`: `Schedule`, quotas by local time of day and day of the
//!   week in an IANA time zone (DST-aware, tz database bundled; `jiff`).
//! - `metrics`, `config`: reserved for metrics and file configuration.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod algorithm;
pub mod backend;
mod body;
#[cfg(feature = "axum")]
pub mod extract;
pub mod headers;
pub mod key;
mod layer;
mod limiter;
pub mod policy;
mod quota;
pub mod response;
mod service;
pub mod time;

pub use algorithm::{Algorithm, Decision};
#[cfg(feature = "redis")]
pub use backend::RedisBackend;
pub use backend::{CircuitBreaker, CircuitState, Failover, MemoryBackend, Outcome};
pub use body::ResponseBody;
pub use headers::{HeaderStyle, ResetFormat};
pub use layer::{
    ConfigError, FailMode, RateLimitLayer, RateLimitLayerBuilder, DEFAULT_SYNC_INTERVAL,
};
pub use limiter::Limiter;
pub use policy::{
    Access, AccessList, Cost, Limit, LimitSet, Overrides, Policy, PolicyError, Rule, Tiers,
};
#[cfg(feature = "schedule")]
pub use policy::{Schedule, ScheduleError, MAX_SCHEDULE_WINDOWS};
pub use quota::{Quota, QuotaError, MAX_PERIOD, QUOTA_FORMS};
pub use service::{RateLimit, ResponseFuture};
pub use time::Nanos;
