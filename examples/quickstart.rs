//! The quick start: `GET /` answers `hello`, limited to 5 requests per
//! minute per client IP, in memory.
//!
//! ```text
//! cargo run --example quickstart            # listens on PORT, default 3000
//! for i in $(seq 7); do curl -si localhost:3000/ | head -1; done
//! ```

use std::net::SocketAddr;

use axum::{routing::get, Router};
use tollgate::{Quota, RateLimitLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tollgate=debug".into()),
        )
        .init();

    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().map_err(|e| format!("PORT={p:?} is not a port number: {e}"))?,
        Err(_) => 3000,
    };
    if std::env::var_os("REDIS_URL").is_some() {
        eprintln!("REDIS_URL is set, but this build has no Redis backend yet; using memory.");
    }

    let quota = Quota::per_minute(5);
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .layer(RateLimitLayer::new(quota));

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let addr = listener.local_addr()?;
    println!("tollgate quickstart on http://{addr}/ ({quota} per client IP, in memory)");
    println!("try: for i in $(seq 7); do curl -si http://127.0.0.1:{}/ | head -1; done", addr.port());
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
