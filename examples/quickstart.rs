//! The quick start: `GET /` answers `hello`, limited to 5 requests per
//! minute per client IP, in memory.
//!
//! ```text
//! cargo run --example quickstart            # listens on PORT, default 3000
//! for i in $(seq 7); do curl -si localhost:3000/ | head -1; done
//! ```
//!
//! Environment:
//! - `PORT`: the port (default 3000);
//! - `QUOTA`: another quota in tollgate's string form (`"100/m"`, `"5/30s"`);
//! - `REDIS_URL` (with `--features redis`): share the limit through Redis,
//!   falling back to memory while Redis is down;
//! - `HEADERS`: which rate-limit headers responses carry: `both` (the
//!   default), `legacy`, `ietf`, `draft6`, `draft7` or `none`;
//! - `RATE_LIMIT=off`: serve without the layer, to compare with the
//!   same app (`scripts/wrk.sh` measures production builds of both from
//!   `benches/examples/wrk_peers.rs`).

use std::net::SocketAddr;

use axum::{routing::get, Router};
use tollgate::{headers::HeaderStyle, Quota, RateLimitLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tollgate=debug".into()),
        )
        .init();

    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|e| format!("PORT={p:?} is not a port number: {e}"))?,
        Err(_) => 3000,
    };
    let quota: Quota = match std::env::var("QUOTA") {
        Ok(q) => q.parse()?,
        Err(_) => Quota::per_minute(5),
    };
    let headers: HeaderStyle = match std::env::var("HEADERS") {
        Ok(name) => name.parse().map_err(|e| format!("HEADERS: {e}"))?,
        Err(_) => HeaderStyle::Both,
    };
    let limited = std::env::var("RATE_LIMIT").map_or(true, |v| v != "off");
    let app = Router::new().route("/", get(|| async { "hello\n" }));
    let app = if !limited {
        app
    } else if let Ok(url) = std::env::var("REDIS_URL") {
        with_redis(app, quota, headers, &url)?
    } else {
        // Built here, not with RateLimitLayer::new, so a bad QUOTA is an error.
        app.layer(
            RateLimitLayer::builder()
                .quota(quota)
                .headers(headers)
                .build()?,
        )
    };

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let addr = listener.local_addr()?;
    if limited {
        let store = if std::env::var_os("REDIS_URL").is_some() {
            "Redis, memory if it is down"
        } else {
            "in memory"
        };
        println!("tollgate quickstart on http://{addr}/ ({quota} per client IP, {store})");
    } else {
        println!("tollgate quickstart on http://{addr}/ (RATE_LIMIT=off: no limit)");
    }
    println!(
        "try: for i in $(seq 7); do curl -si http://127.0.0.1:{}/ | head -1; done",
        addr.port()
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// Redis shared by every instance, behind a failover to memory so the app
/// stays up (and limited) when Redis does not.
#[cfg(feature = "redis")]
fn with_redis(
    app: Router,
    quota: Quota,
    headers: HeaderStyle,
    url: &str,
) -> Result<Router, Box<dyn std::error::Error>> {
    use tollgate::backend::{Failover, MemoryBackend};
    // Lazy: the app starts even if Redis is down; the failover answers.
    let redis = tollgate::backend::RedisBackend::builder(url).connect_lazy()?;
    let backend = Failover::new(redis, MemoryBackend::new());
    Ok(app.layer(
        RateLimitLayer::builder()
            .backend(backend)
            .quota(quota)
            .headers(headers)
            .build()?,
    ))
}

#[cfg(not(feature = "redis"))]
fn with_redis(
    _: Router,
    _: Quota,
    _: HeaderStyle,
    _: &str,
) -> Result<Router, Box<dyn std::error::Error>> {
    Err("REDIS_URL is set, but this build has no Redis backend: run `cargo run --example quickstart --features redis` (or unset REDIS_URL to use memory)".into())
}
