//! Key extractors through a real axum `Router`: API keys in a header or
//! the query, users from the app's auth middleware, routes, methods,
//! composites and fallbacks, and what a request without a key gets.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use http::{HeaderName, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use tollgate::key::{
    self, ClientIp, Header, KeyExtractor, KeyExtractorExt, MatchedRoute, OnMissing, Query, User,
};
use tollgate::{Quota, RateLimitLayer};

const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

fn app<K: KeyExtractor>(key: K, per_minute: u64) -> Router {
    let layer = RateLimitLayer::builder()
        .key(key)
        .quota(Quota::per_minute(per_minute))
        .build()
        .unwrap();
    Router::new()
        .route("/", get(|| async { "root" }))
        .route(
            "/items/{id}",
            get(|| async { "item" }).post(|| async { "made" }),
        )
        .route("/search", post(|| async { "found" }))
        .layer(layer)
}

fn req(uri: &str) -> http::request::Builder {
    Request::get(uri).extension(ConnectInfo(
        "192.0.2.20:5000".parse::<SocketAddr>().unwrap(),
    ))
}

async fn status(app: &Router, r: Request<Body>) -> StatusCode {
    app.clone().oneshot(r).await.unwrap().status()
}

#[tokio::test]
async fn each_api_key_has_its_own_bucket() {
    let app = app(Header::new(API_KEY), 2);
    let with = |k: &str| req("/").header("x-api-key", k).body(Body::empty()).unwrap();
    assert_eq!(status(&app, with("alice")).await, StatusCode::OK);
    assert_eq!(status(&app, with("alice")).await, StatusCode::OK);
    assert_eq!(
        status(&app, with("alice")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(&app, with("bob")).await, StatusCode::OK);
}

#[tokio::test]
async fn a_missing_api_key_is_a_401_problem_and_not_counted() {
    let app = app(Header::new(API_KEY), 1);
    for _ in 0..3 {
        let res = app
            .clone()
            .oneshot(req("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["status"], 401);
        assert!(json["detail"].as_str().unwrap().contains("x-api-key"));
    }
}

#[tokio::test]
async fn a_missing_api_key_can_fall_back_to_the_client_ip_or_skip() {
    let app1 = app(Header::new(API_KEY).or(ClientIp::new()), 1);
    assert_eq!(
        status(&app1, req("/").body(Body::empty()).unwrap()).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app1, req("/").body(Body::empty()).unwrap()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The API key holder is not affected by the anonymous bucket.
    let keyed = req("/")
        .header("x-api-key", "k1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(status(&app1, keyed).await, StatusCode::OK);

    let app2 = app(Header::new(API_KEY).on_missing(OnMissing::Skip), 1);
    for _ in 0..3 {
        let res = app2
            .clone()
            .oneshot(req("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            !res.headers().contains_key("x-ratelimit-limit"),
            "skipped requests are not limited"
        );
    }
}

#[tokio::test]
async fn query_api_keys_are_limited_and_never_echoed() {
    let app = app(Query::new("api_key"), 1);
    assert_eq!(
        status(&app, req("/?api_key=secret-1").body(Body::empty()).unwrap()).await,
        StatusCode::OK
    );
    let res = app
        .clone()
        .oneshot(req("/?api_key=secret-1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("secret-1"));
    assert_eq!(
        status(&app, req("/?api_key=").body(Body::empty()).unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
}

#[derive(Clone)]
struct CurrentUser {
    id: u64,
}

#[tokio::test]
async fn users_set_by_auth_middleware_are_limited_per_user() {
    let app = app(User::new(|u: &CurrentUser| u.id), 1);
    let as_user = |id| {
        req("/")
            .extension(CurrentUser { id })
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(status(&app, as_user(1)).await, StatusCode::OK);
    assert_eq!(
        status(&app, as_user(1)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(&app, as_user(2)).await, StatusCode::OK);
    assert_eq!(
        status(&app, req("/").body(Body::empty()).unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn routes_are_keyed_by_pattern_not_raw_path() {
    let app = app((ClientIp::new(), MatchedRoute), 2);
    assert_eq!(
        status(&app, req("/items/1").body(Body::empty()).unwrap()).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, req("/items/2").body(Body::empty()).unwrap()).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, req("/items/3").body(Body::empty()).unwrap()).await,
        StatusCode::TOO_MANY_REQUESTS,
        "/items/1, /items/2 and /items/3 are one route"
    );
    assert_eq!(
        status(&app, req("/").body(Body::empty()).unwrap()).await,
        StatusCode::OK,
        "another route"
    );
}

#[tokio::test]
async fn methods_split_a_composite_key() {
    let app = app((ClientIp::new(), key::RequestMethod), 1);
    assert_eq!(
        status(&app, req("/items/1").body(Body::empty()).unwrap()).await,
        StatusCode::OK
    );
    let post = Request::post("/items/1")
        .extension(ConnectInfo(
            "192.0.2.20:5000".parse::<SocketAddr>().unwrap(),
        ))
        .body(Body::empty())
        .unwrap();
    assert_eq!(status(&app, post).await, StatusCode::OK);
    assert_eq!(
        status(&app, req("/items/1").body(Body::empty()).unwrap()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}
