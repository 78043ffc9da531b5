//! The quickstart's app served bare, behind tollgate, behind another rate
//! limiter, or behind a layer that only writes constant headers: the
//! servers `scripts/wrk.sh` loads.
//!
//! They live in the benches package, not in tollgate's examples, so that
//! they are built as an application builds tollgate: tollgate's
//! dev-dependencies (Tokio's `test-util`, tollgate's own `test-util`
//! feature, which turns the default clock into Tokio's) are not compiled
//! in.
//!
//! ```text
//! PEER=tower_governor_headers PORT=3001 cargo run --release -p tollgate-benches --example wrk_peers
//! ```
//!
//! `PEER` is one of:
//! - `bare`: the app without any layer (the baseline);
//! - `tollgate`: `RateLimitLayer` keyed by peer IP with `QUOTA` (default
//!   10⁹ a day) and `HEADERS` (`both`, the default, `legacy`, `ietf`,
//!   `draft6`, `draft7` or `none`), every other default;
//! - `tower_governor`: tower_governor keyed by peer IP at the quota the
//!   script gives tollgate (10⁹ a day), without headers;
//! - `tower_governor_headers`: the same with `.use_headers()` (it writes
//!   `x-ratelimit-limit` and `x-ratelimit-remaining`);
//! - `five_headers`: no rate limiting, only the five headers of tollgate's
//!   default `HeaderStyle::Both` with constant values as long as the ones
//!   tollgate writes under that quota: what emitting them costs any
//!   limiter.

use std::net::SocketAddr;
use std::time::Duration;

use axum::{body::Body, routing::get, Router};
use http::HeaderValue;
use tollgate::headers::{
    HeaderStyle, RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING,
    X_RATELIMIT_RESET,
};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;

/// tollgate's quota in `scripts/wrk.sh`: 10⁹ a day, one every 86.4 µs.
const PER_DAY: u32 = 1_000_000_000;
const PERIOD: Duration = Duration::from_nanos(86_400);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .map_err(|_| "PORT is not set")?
        .parse()
        .map_err(|e| format!("PORT is not a port number: {e}"))?;
    let peer = std::env::var("PEER").map_err(|_| "PEER is not set")?;
    let app = Router::new().route("/", get(|| async { "hello\n" }));
    let app = match peer.as_str() {
        "bare" => app,
        "tollgate" => app.layer(tollgate_layer()?),
        "tower_governor" => {
            let config = GovernorConfigBuilder::default()
                .period(PERIOD)
                .burst_size(PER_DAY)
                .finish()
                .ok_or("tower_governor rejected the configuration")?;
            app.layer(GovernorLayer::new(config))
        }
        "tower_governor_headers" => {
            let config = GovernorConfigBuilder::default()
                .period(PERIOD)
                .burst_size(PER_DAY)
                .use_headers()
                .finish()
                .ok_or("tower_governor rejected the configuration")?;
            app.layer(GovernorLayer::new(config))
        }
        "five_headers" => app.layer(tower::util::MapResponseLayer::new(five_headers)),
        other => {
            return Err(format!(
                "PEER={other:?}: expected bare, tollgate, tower_governor, tower_governor_headers or five_headers"
            )
            .into())
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("{peer} on http://{}/", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// tollgate as `scripts/wrk.sh` measures it: `QUOTA` and `HEADERS` from the
/// environment, every other default.
fn tollgate_layer() -> Result<tollgate::RateLimitLayer, Box<dyn std::error::Error>> {
    let quota: tollgate::Quota = std::env::var("QUOTA")
        .unwrap_or_else(|_| format!("{PER_DAY}/d"))
        .parse()?;
    let headers: HeaderStyle = match std::env::var("HEADERS") {
        Ok(name) => name.parse().map_err(|e| format!("HEADERS: {e}"))?,
        Err(_) => HeaderStyle::Both,
    };
    Ok(tollgate::RateLimitLayer::builder()
        .quota(quota)
        .headers(headers)
        .build()?)
}

/// The five headers tollgate writes for one request under 10⁹ a day.
fn five_headers(mut response: http::Response<Body>) -> http::Response<Body> {
    let headers = response.headers_mut();
    headers.reserve(5);
    let value = HeaderValue::from_static;
    headers.insert(&X_RATELIMIT_LIMIT, value("1000000000"));
    headers.insert(&X_RATELIMIT_REMAINING, value("999999999"));
    headers.insert(&X_RATELIMIT_RESET, value("1"));
    headers.insert(&RATELIMIT_POLICY, value("\"default\";q=1000000000;w=86400"));
    headers.insert(&RATELIMIT, value("\"default\";r=999999999;t=1"));
    response
}
