//! A rate-limited axum app as operators run it:
//!
//! - `/metrics`: every tollgate metric in Prometheus's text format
//!   (`metrics-exporter-prometheus`), for a scrape;
//! - `/health/ready` and `/health/live`: readiness (503 when the limiter
//!   cannot enforce as configured) and liveness;
//! - `/admin/top?policy=api&n=10`: the most limited clients, behind
//!   `Authorization: Bearer $TOLLGATE_ADMIN_TOKEN` (the route is not served
//!   without the variable); keys are shown by hash and client address,
//!   never raw;
//! - JSON logs on stderr through `tracing-subscriber` (`RUST_LOG` filters).
//!
//! ```text
//! TOLLGATE_ADMIN_TOKEN=change-me cargo run --example observability --features metrics
//! curl localhost:3000/            # limited: QUOTA per client (default 5/s)
//! curl localhost:3000/metrics
//! curl localhost:3000/health/ready
//! curl -H 'Authorization: Bearer change-me' 'localhost:3000/admin/top?policy=api'
//! ```
//!
//! `ADDR` (default `127.0.0.1:3000`; port 0 takes a free one) and `QUOTA`
//! (default `5/s`) configure it; the address served is printed on stdout
//! as `listening on http://ADDR`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tollgate::{health, Quota, RateLimitLayer};

/// What the admin route needs.
#[derive(Clone)]
struct Admin {
    layer: RateLimitLayer,
    token: Arc<str>,
}

#[derive(serde::Deserialize)]
struct TopQuery {
    policy: Option<String>,
    n: Option<usize>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tollgate=info".into()),
        )
        .init();

    // Installed before the layer serves: its counters are registered with
    // this recorder on the first request.
    let prometheus = PrometheusBuilder::new().install_recorder()?;

    let quota: Quota = std::env::var("QUOTA")
        .unwrap_or_else(|_| "5/s".into())
        .parse()
        .map_err(|e| format!("QUOTA: {e}"))?;
    let layer = RateLimitLayer::builder().name("api").quota(quota).build()?;

    let limited = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .layer(layer.clone());
    let mut app = Router::new()
        .route("/metrics", get(metrics).with_state(prometheus))
        .route("/health/ready", layer.readiness_route())
        .route("/health/live", health::liveness())
        .merge(limited);
    match std::env::var("TOLLGATE_ADMIN_TOKEN") {
        Ok(token) if !token.is_empty() => {
            let admin = Admin {
                layer: layer.clone(),
                token: token.into(),
            };
            app = app.route("/admin/top", get(top).with_state(admin));
        }
        _ => tracing::warn!("TOLLGATE_ADMIN_TOKEN is not set: /admin/top is not served"),
    }

    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()
        .map_err(|e| format!("ADDR: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// The Prometheus scrape.
async fn metrics(State(prometheus): State<PrometheusHandle>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus.render(),
    )
        .into_response()
}

/// The most limited clients of a policy, for an operator holding the token.
async fn top(State(admin): State<Admin>, headers: HeaderMap, query: Query<TopQuery>) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same(given.as_bytes(), admin.token.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response();
    }
    let policy = query.policy.as_deref().unwrap_or("api");
    let keys = admin.layer.top_keys(policy, query.n.unwrap_or(10).min(100));
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "key": format!("k:{:016x}", k.hash),
                "label": k.label.as_deref(),
                "count": k.count,
                "error": k.error,
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "policy": policy, "keys": keys })).into_response()
}

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
