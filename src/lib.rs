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
//! A request is keyed ([`key`]), resolved to its limits ([`policy`]:
//! rules, routes, tiers, schedules; [`settings`]: per-key overrides and
//! access lists), checked by a [`Backend`](backend::Backend) ([`Quota`],
//! [`Algorithm`]), and answered ([`headers`], [`problem`]). [`Limiter`] is
//! the same machinery without HTTP. `ARCHITECTURE.md` in the repository
//! follows one request through the modules.
//!
//! ## Cargo features
//!
//! - `axum` (default): reads the peer address from axum's `ConnectInfo`.
//! - `redis`: `backend::RedisBackend`, one limit shared by a fleet.
//! - `redis-tls`: `rediss://` URLs for the Redis backend (rustls, ring).
//! - `redis-sentinel`: the Redis backend through Sentinel.
//! - `jwt`: `key::Bearer`, keys from verified JWT claims.
//! - `schedule`: `Schedule`, quotas by local time of day and day of the
//!   week in an IANA time zone (DST-aware, tz database bundled; `jiff`).
//! - `metrics`: counters, histograms and top keys through the `metrics`
//!   facade.
//! - `config`: [`config`], configuration files (TOML, YAML) with profiles,
//!   environment overrides and validation.
//! - `cli`: the `tollgate` command (`tollgate check FILE`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// docs.rs builds with `--cfg docsrs` (Cargo.toml): each feature-gated item shows
// its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

// Modules in dependency order, leaves first: each uses only those above
// it (`tests/module_order.rs` reads this list). A comment between each
// keeps rustfmt from sorting them. See ARCHITECTURE.md.

// Integer time and the clock.
pub mod time;
// Quota: limit, period, burst.
mod quota;
// The six algorithms, pure.
mod algorithm;
// problem+json answers.
pub mod problem;
// Decisions to header values (a leaf).
pub mod headers;
// Who is limited.
pub mod key;
// Policies, rules, routes, tiers, schedules.
pub mod policy;
// Overrides and access lists, and the store that shares them.
pub mod settings;
// A request to its LimitSet.
mod resolve;
// Where counters live.
pub mod backend;
// What the limiter decides, counted (feature `metrics`).
#[cfg(feature = "metrics")]
pub mod metrics;
// LimitSet to verdict: backend call, fail mode, shadow, refunds.
mod engine;
// Can the limiter enforce now: backend states, readiness.
pub mod health;
// Front end: the Tower layer.
mod layer;
// Front end: the axum extractor, over the layer.
#[cfg(feature = "axum")]
pub mod extract;
// Front end: the Limiter, no HTTP.
mod limiter;
// Configuration files: schema, profiles, validation (feature `config`).
#[cfg(feature = "config")]
pub mod config;

pub use algorithm::{Algorithm, AlgorithmError, Decision, MAX_LOG_LIMIT};
pub use engine::{Denial, FailMode};
pub use layer::{
    ConfigError, RateLimit, RateLimitLayer, RateLimitLayerBuilder, ResponseBody, ResponseFuture,
    DEFAULT_SYNC_INTERVAL,
};
pub use limiter::Limiter;
pub use quota::{Quota, QuotaError, MAX_PERIOD, QUOTA_FORMS};
