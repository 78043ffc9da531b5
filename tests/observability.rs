//! What the layer reports through `tracing`: a span per checked request
//! with the key's hash (never the raw key), the policy and the outcome;
//! denials at debug; shadow denials as events; warnings once.

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use tower::ServiceExt;

use tollgate::key::{self, Key};
use tollgate::{Quota, RateLimitLayer};
use tracing_subscriber::fmt::format::FmtSpan;

use common::Captured;

/// What `tollgate` logs at `debug` and above, for this thread.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    common::capture("tollgate=debug")
}

fn keyed_by_api_key(layer_quota: Quota) -> Router {
    let layer = RateLimitLayer::builder()
        .key(key::from_fn(|parts: &http::request::Parts| {
            parts
                .headers
                .get("x-api-key")
                .map(|v| Key::from_bytes(v.as_bytes()))
        }))
        .quota(layer_quota)
        .build()
        .unwrap();
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer)
}

fn with_key(k: &str) -> Request<Body> {
    Request::get("/")
        .header("x-api-key", k)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn denials_are_logged_with_the_key_hash_never_the_raw_key() {
    let (out, _guard) = capture();
    let app = keyed_by_api_key(Quota::per_minute(1));
    let secret = "sk_live_VERY_SECRET_123";
    assert_eq!(
        app.clone()
            .oneshot(with_key(secret))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone()
            .oneshot(with_key(secret))
            .await
            .unwrap()
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let text = out.text();
    assert!(text.contains("request denied"), "{text}");
    assert!(text.contains("rate_limit"), "span name missing: {text}");
    assert!(
        text.contains(&Key::from(secret).to_string()),
        "key hash missing: {text}"
    );
    assert!(
        text.contains("policy=\"default\"") || text.contains("policy=default"),
        "{text}"
    );
    assert!(
        !text.contains(secret),
        "the raw key leaked into logs: {text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn shadow_mode_reports_each_would_be_denial() {
    let (out, _guard) = capture();
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .shadow(true)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);
    for _ in 0..3 {
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        req.extensions_mut().insert(axum::extract::ConnectInfo(
            "192.0.2.1:5".parse::<SocketAddr>().unwrap(),
        ));
        assert_eq!(
            app.clone().oneshot(req).await.unwrap().status(),
            StatusCode::OK
        );
    }
    let text = out.text();
    assert_eq!(
        text.matches("would deny (shadow mode)").count(),
        2,
        "{text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_missing_peer_address_warns_once_not_per_request() {
    let (out, _guard) = capture();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(Quota::per_minute(10)));
    for _ in 0..5 {
        let res = app
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let text = out.text();
    assert_eq!(
        text.matches("request has no peer address").count(),
        1,
        "{text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn each_span_records_its_outcome() {
    let (out, _guard) = common::capture_spans("tollgate=debug", FmtSpan::CLOSE);
    let app = keyed_by_api_key(Quota::per_minute(1));
    for expected in [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
        let res = app.clone().oneshot(with_key("k")).await.unwrap();
        assert_eq!(res.status(), expected);
    }
    let text = out.text();
    let closed: Vec<&str> = text.lines().filter(|l| l.contains("close")).collect();
    assert_eq!(closed.len(), 2, "{text}");
    assert!(closed[0].contains("outcome=\"allowed\""), "{text}");
    assert!(closed[1].contains("outcome=\"denied\""), "{text}");
}
