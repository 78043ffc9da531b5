//! `RateLimitLayer::health` and the readiness and liveness routes: ready
//! while the limiter serves as configured, 503 when a failing backend would
//! answer every request 503 (fail closed), and with the strict check
//! whenever the limits are not enforced.

mod common;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use tollgate::backend::{Backend, CircuitBreaker, Failover, MemoryBackend};
use tollgate::health::{self, BackendState, Status};
use tollgate::{FailMode, Quota, RateLimitLayer};

use common::Down;

fn request(path: &str) -> Request<Body> {
    common::req("GET", path, "198.51.100.1")
}

/// An app limited by `layer`, with the health routes beside it (outside
/// the limit).
fn app<B: Backend>(layer: RateLimitLayer<tollgate::key::ClientIp, B>) -> Router {
    let limited = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer.clone());
    Router::new()
        .route("/health/ready", layer.readiness_route())
        .route("/health/strict", layer.strict_readiness_route())
        .route("/health/live", health::liveness())
        .merge(limited)
}

async fn send(app: &Router, path: &str) -> StatusCode {
    match app.clone().oneshot(request(path)).await {
        Ok(res) => res.status(),
        Err(never) => match never {},
    }
}

async fn get_json(app: &Router, path: &str) -> (StatusCode, serde_json::Value) {
    let res = match app.clone().oneshot(request(path)).await {
        Ok(res) => res,
        Err(never) => match never {},
    };
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("a body").to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{path}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

#[tokio::test]
async fn a_memory_layer_is_ready_and_says_how_full_its_table_is() {
    let backend = MemoryBackend::builder().max_keys(10_000).build();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(10))
        .backend(backend)
        .build()
        .expect("a layer");
    let app = app(layer.clone());
    assert_eq!(send(&app, "/").await, StatusCode::OK);
    let health = layer.health();
    assert_eq!(health.status(), Status::Ok);
    assert!(health.is_ready() && health.is_ready_strict());
    let (code, json) = get_json(&app, "/health/ready").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(json["status"], "ok");
    assert_eq!(json["ready"], true);
    assert_eq!(json["fail_mode"], "open");
    let backend = &json["backends"][0];
    assert_eq!(backend["kind"], "memory");
    assert_eq!(backend["state"], "up");
    assert_eq!(backend["max_keys"], 10_000);
    assert_eq!(backend["last_error"], serde_json::Value::Null);
    assert_eq!(get_json(&app, "/health/live").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_failing_backend_failing_closed_is_not_ready() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(10))
        .backend(Down)
        .fail_mode(FailMode::Closed)
        .build()
        .expect("a layer");
    let app = app(layer.clone());
    // Ready until a call fails: nothing is known yet.
    assert!(layer.health().is_ready());
    assert_eq!(send(&app, "/").await, StatusCode::SERVICE_UNAVAILABLE);
    let health = layer.health();
    assert_eq!(health.status(), Status::Failing);
    assert!(!health.is_ready());
    assert_eq!(health.backends[0].state, BackendState::Failing);
    assert_eq!(health.backends[0].consecutive_failures, 1);
    let (code, json) = get_json(&app, "/health/ready").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["ready"], false);
    assert_eq!(json["status"], "failing");
    assert_eq!(
        json["backends"][0]["last_error"],
        "rate-limit backend connection failed: refused"
    );
    // The process itself is alive.
    assert_eq!(get_json(&app, "/health/live").await.0, StatusCode::OK);
}

#[tokio::test]
async fn failing_open_is_ready_but_not_strictly() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(10))
        .backend(Down)
        .build()
        .expect("a layer");
    let app = app(layer.clone());
    let code = send(&app, "/").await;
    assert_eq!(code, StatusCode::OK, "fail open lets the request through");
    let (code, json) = get_json(&app, "/health/ready").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(json["status"], "failing");
    let (code, json) = get_json(&app, "/health/strict").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["ready"], false);
}

#[tokio::test]
async fn a_failover_on_its_fallback_is_degraded_and_ready() {
    let breaker = CircuitBreaker::builder()
        .name("primary")
        .failure_threshold(2)
        .build();
    let failover = Failover::builder(Down, MemoryBackend::new())
        .breaker(breaker)
        .build();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(10))
        .backend(failover)
        .fail_mode(FailMode::Closed)
        .build()
        .expect("a layer");
    let app = app(layer.clone());
    for _ in 0..3 {
        assert_eq!(
            send(&app, "/").await,
            StatusCode::OK,
            "the fallback answers"
        );
    }
    let health = layer.health();
    assert_eq!(health.status(), Status::Degraded);
    assert!(health.is_ready() && health.is_ready_strict());
    let kinds: Vec<_> = health.backends.iter().map(|b| b.kind).collect();
    assert_eq!(kinds, ["failover", "down", "memory"]);
    assert_eq!(health.backends[1].state, BackendState::CircuitOpen);
    assert_eq!(health.backends[2].state, BackendState::Up);
    let (code, json) = get_json(&app, "/health/ready").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(json["status"], "degraded");
    assert_eq!(json["backends"][1]["state"], "circuit_open");
}
