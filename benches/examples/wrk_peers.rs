//! The quickstart's app behind another rate limiter, or behind a layer
//! that only writes constant headers: the peers `scripts/wrk.sh` loads
//! beside the quickstart when `WRK_PEERS` names them.
//!
//! ```text
//! PEER=tower_governor_headers PORT=3001 cargo run --release -p tollgate-benches --example wrk_peers
//! ```
//!
//! `PEER` is one of:
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
    RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
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
                "PEER={other:?}: expected tower_governor, tower_governor_headers or five_headers"
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
