//! An API with one key extractor per route (feature `jwt`):
//!
//! - `GET /`          — per client IP (trusted-proxy aware, IPv6 by /64), 10 per minute;
//! - `GET /api/items` — per `X-Api-Key` header, 5 per minute; 401 problem+json without one;
//! - `GET /me`        — per verified JWT `sub` from `Authorization: Bearer`, 3 per minute;
//!   401 problem+json for a missing, malformed, expired, unsigned or wrongly signed token.
//!
//! A request whose key or token is rejected consumes nothing of those
//! limits, so each protected route also counts its rejections per client IP
//! (`rejected_keys`): after 10 in a minute the client gets 429 instead of
//! 401, so keys and tokens cannot be guessed at full speed.
//!
//! ```text
//! JWT_SECRET=change-me-to-32-bytes-or-more-please TRUSTED_PROXIES=127.0.0.1/32 \
//!     cargo run --example api_server --features jwt
//! curl -i localhost:3000/
//! curl -i -H 'X-Api-Key: demo' localhost:3000/api/items
//! curl -i -H "Authorization: Bearer $TOKEN" localhost:3000/me
//! ```
//!
//! Environment: `PORT` (default 3000); `TRUSTED_PROXIES`, comma-separated
//! CIDRs of the reverse proxies in front (default: none, so forwarded
//! headers are ignored); `JWT_SECRET`, the HS256 secret (required).

use std::net::SocketAddr;

use axum::{routing::get, Router};
use http::HeaderName;
use tollgate::key::{Bearer, ClientIp, Header};
use tollgate::policy::Rule;
use tollgate::{Quota, RateLimitLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|e| format!("PORT={p:?} is not a port number: {e}"))?,
        Err(_) => 3000,
    };
    let mut trusted = Vec::new();
    for cidr in std::env::var("TRUSTED_PROXIES")
        .unwrap_or_default()
        .split(',')
    {
        let cidr = cidr.trim();
        if !cidr.is_empty() {
            trusted.push(
                cidr.parse::<ipnet::IpNet>()
                    .map_err(|e| format!("TRUSTED_PROXIES: {cidr:?} is not a CIDR range: {e}"))?,
            );
        }
    }
    let secret = std::env::var("JWT_SECRET")
        .map_err(|_| "set JWT_SECRET (the HS256 secret of your tokens)")?;

    let by_ip = RateLimitLayer::builder()
        .name("per-ip")
        .key(ClientIp::trusting(trusted.clone()))
        .quota(Quota::per_minute(10))
        .build()?;
    // Missing, malformed or forged credentials, per client IP.
    let rejected = || {
        Rule::new("rejected-keys", Quota::per_minute(10)).key(ClientIp::trusting(trusted.clone()))
    };
    let by_api_key = RateLimitLayer::builder()
        .name("per-api-key")
        .key(Header::new(HeaderName::from_static("x-api-key")))
        .quota(Quota::per_minute(5))
        .rejected_keys(rejected())
        .build()?;
    let by_user = RateLimitLayer::builder()
        .name("per-user")
        .key(Bearer::hs256(secret.as_bytes())?)
        .quota(Quota::per_minute(3))
        .rejected_keys(rejected())
        .build()?;

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }).layer(by_ip))
        .route(
            "/api/items",
            get(|| async { "[\"apple\",\"pear\"]\n" }).layer(by_api_key),
        )
        .route(
            "/me",
            get(|| async { "you are signed in\n" }).layer(by_user),
        );

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let addr = listener.local_addr()?;
    println!("api_server on http://{addr}/ (trusted proxies: {trusted:?})");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
