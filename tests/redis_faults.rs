//! Faults a real Redis produces on demand, under load through the layer:
//! connections dropped by the server, the server killed and restarted.
//! Every request is answered within the timeout, the fail mode applies,
//! and the app recovers without being rebuilt.
#![cfg(feature = "redis")]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use tower::ServiceExt;

use tollgate::backend::{Failover, MemoryBackend};
use tollgate::{FailMode, Quota, RateLimitLayer};

fn req(ip: &str) -> Request<Body> {
    let mut r = Request::get("/").body(Body::empty()).unwrap_or_default();
    let addr: SocketAddr = format!("{ip}:1000").parse().expect("addr");
    r.extensions_mut().insert(ConnectInfo(addr));
    r
}

async fn timed(app: &Router, ip: &str) -> (StatusCode, Duration) {
    let start = Instant::now();
    let status = app
        .clone()
        .oneshot(req(ip))
        .await
        .expect("infallible")
        .status();
    (status, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_by_the_server_are_reestablished() {
    let server = redis_or_skip!();
    let mut admin = server.client();
    let backend = server.backend().await;
    let app = Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::builder()
            .backend(backend)
            .fail_mode(FailMode::Closed)
            .quota(Quota::per_minute(1_000))
            .build()
            .expect("layer"),
    );
    assert_eq!(timed(&app, "192.0.2.1").await.0, StatusCode::OK);
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut admin)
        .expect("CLIENT KILL");
    // Within a second every request is served by Redis again; none waits
    // past the timeout meanwhile.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (status, took) = timed(&app, "192.0.2.1").await;
        assert!(took < Duration::from_millis(1_200), "waited {took:?}");
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "closed fail mode");
        assert!(Instant::now() < deadline, "no recovery after CLIENT KILL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_falls_back_to_memory_and_recovers() {
    let mut server = redis_or_skip!();
    let redis = server.backend().await;
    let backend = Failover::new(redis, MemoryBackend::new());
    let app = Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::builder()
            .backend(backend.clone())
            .quota(Quota::per_minute(3))
            .build()
            .expect("layer"),
    );
    assert_eq!(timed(&app, "192.0.2.2").await.0, StatusCode::OK);
    server.kill();
    // During the outage: answered within the timeout, still limited (by
    // memory: 3 per minute for a fresh client).
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, took) = timed(&app, "192.0.2.3").await;
        assert!(took < Duration::from_millis(1_500), "waited {took:?}");
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    server.restart();
    // After the restart Redis answers again and the client that spent its
    // quota locally is still limited there (written back).
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let health = backend.health();
        if health.primary.is_healthy() && health.pending_reconciliation == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {health}");
        let _ = timed(&app, "192.0.2.4").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        timed(&app, "192.0.2.3").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}
