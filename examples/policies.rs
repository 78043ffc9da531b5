//! Stacked policies: a global limit, an `/api` group, a search route and a
//! shadow-mode beta route, keyed by client IP behind trusted proxies, with
//! allow and deny lists.
//!
//! ```text
//! cargo run --example policies
//! for i in $(seq 5); do curl -si localhost:3000/api/search | grep -i -e '^HTTP' -e '^ratelimit-policy'; done
//! ```
//!
//! Per client, per minute:
//! - `global`: 30, every route except `/health`;
//! - `api`: 10, the `/api/*` group;
//! - `search`: 3, `GET /api/search`;
//! - `beta`: 1, `GET /beta`, in shadow mode (reported, never blocking);
//! - `GET /health` is never limited.
//!
//! A request is checked against every level that applies, all-or-nothing:
//! a search denied by `search` consumes nothing from `api` or `global`.
//!
//! Environment:
//! - `PORT`: the port (default 3000);
//! - `TRUSTED_PROXIES`: comma-separated CIDRs of proxies whose
//!   `X-Forwarded-For` is believed (default: none, the peer is the client);
//! - `ALLOW`: comma-separated CIDRs never limited;
//! - `DENY`: comma-separated CIDRs answered 403 problem+json.

use std::net::SocketAddr;

use axum::{routing::get, Router};
use ipnet::IpNet;
use tollgate::key::ClientIp;
use tollgate::policy::Rule;
use tollgate::{settings::AccessList, Quota, RateLimitLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tollgate::shadow=info".into()),
        )
        .init();

    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|e| format!("PORT={p:?} is not a port number: {e}"))?,
        Err(_) => 3000,
    };
    let proxies = cidrs("TRUSTED_PROXIES")?;
    let client_ip = ClientIp::trusting(proxies.clone());
    let access = AccessList::new()
        .client_ip(client_ip.clone())
        .allowing(cidrs("ALLOW")?)
        .denying(cidrs("DENY")?);

    let layer = RateLimitLayer::builder()
        .key(client_ip)
        .quota(Quota::per_minute(30))
        .name("global")
        .group("/api/*", Rule::new("api", Quota::per_minute(10)))
        .route("GET /api/search", Rule::new("search", Quota::per_minute(3)))
        .route(
            "GET /beta",
            Rule::new("beta", Quota::per_minute(1)).shadow(true),
        )
        .exempt("/health")
        .access(access)
        .build()?;

    let app = Router::new()
        .route("/", get(|| async { "home\n" }))
        .route("/api/items", get(|| async { "items\n" }))
        .route("/api/search", get(|| async { "results\n" }))
        .route("/beta", get(|| async { "beta\n" }))
        .route("/health", get(|| async { "ok\n" }))
        .layer(layer);

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    println!(
        "tollgate policies example on http://{}/ (trusted proxies: {:?})",
        listener.local_addr()?,
        proxies
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// The comma-separated CIDRs of environment variable `name` (a bare
/// address is a /32 or /128); unset or empty is none.
fn cidrs(name: &str) -> Result<Vec<IpNet>, String> {
    let Ok(text) = std::env::var(name) else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|e| format!("{name}: {s:?} is not a CIDR range or address: {e}"))
        })
        .collect()
}
