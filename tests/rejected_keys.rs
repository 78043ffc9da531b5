//! Requests whose key is rejected (a missing or forged credential) are
//! limited per client with `rejected_keys`, so guessing keys or tokens is
//! throttled; keys the application turns down are limited by a rule that
//! counts only its 401s.

mod common;

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use axum::routing::get;
use axum::Router;
use http::{HeaderName, StatusCode};
use tollgate::backend::{Acquire, Backend, BackendError, MemoryBackend, Outcome};
use tollgate::key::{ClientIp, Header};
use tollgate::policy::{LimitSet, Rule};
use tollgate::{Quota, RateLimitLayer};

use common::{header, req, send};

const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

fn app(layer: RateLimitLayer<Header, impl Backend>) -> Router {
    Router::new()
        .route("/items", get(|| async { "items" }))
        .layer(layer)
}

fn with_key(ip: &str, key: &str) -> http::Request<axum::body::Body> {
    let mut r = req("GET", "/items", ip);
    r.headers_mut()
        .insert(API_KEY, key.parse().expect("header value"));
    r
}

async fn guessing_is_throttled_per_client(app: Router) {
    for _ in 0..2 {
        let res = send(&app, req("GET", "/items", "192.0.2.30")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = send(&app, req("GET", "/items", "192.0.2.30")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!header(&res, "retry-after").is_empty());
    assert!(header(&res, "ratelimit-policy").contains("\"rejected-keys\""));
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .expect("body")
        .to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem+json");
    assert_eq!(problem["violated-policies"][0], "rejected-keys");
    // Another client is not affected, nor is this one's real key.
    let other = send(&app, req("GET", "/items", "192.0.2.31")).await;
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
    let real = send(&app, with_key("192.0.2.30", "alice")).await;
    assert_eq!(real.status(), StatusCode::OK);
}

/// API keys in a header on `backend`; two rejected requests a minute per
/// client IP.
fn two_rejections_a_minute<B: Backend>(backend: B) -> RateLimitLayer<Header, B> {
    RateLimitLayer::builder()
        .key(Header::new(API_KEY))
        .backend(backend)
        .quota(Quota::per_minute(100))
        .rejected_keys(Quota::per_minute(2))
        .build()
        .expect("layer")
}

#[tokio::test]
async fn missing_api_keys_are_throttled_per_client_ip() {
    let layer = two_rejections_a_minute(MemoryBackend::new());
    guessing_is_throttled_per_client(app(layer)).await;
}

#[tokio::test]
async fn without_rejected_keys_a_rejected_request_is_never_counted() {
    let layer = RateLimitLayer::builder()
        .key(Header::new(API_KEY))
        .quota(Quota::per_minute(2))
        .build()
        .expect("layer");
    let app = app(layer);
    for _ in 0..10 {
        let res = send(&app, req("GET", "/items", "192.0.2.32")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}

/// The memory backend, answering through a future as a network backend
/// does: the service's pending path.
#[derive(Clone, Default)]
struct Later(MemoryBackend);

type Answer = Pin<Box<dyn Future<Output = Result<Outcome, BackendError>> + Send>>;

impl Later {
    fn later(
        answer: Acquire<std::future::Ready<Result<Outcome, BackendError>>>,
    ) -> Acquire<Answer> {
        Acquire::pending(Box::pin(answer.into_future()))
    }
}

impl Backend for Later {
    type Future = Answer;

    fn acquire(&self, set: &LimitSet) -> Acquire<Answer> {
        Later::later(self.0.acquire(set))
    }

    fn peek(&self, set: &LimitSet) -> Acquire<Answer> {
        Later::later(self.0.peek(set))
    }

    fn reset(&self, set: &LimitSet) -> Acquire<Answer> {
        Later::later(self.0.reset(set))
    }
}

#[tokio::test]
async fn rejected_keys_are_counted_on_a_backend_that_answers_later() {
    let layer = two_rejections_a_minute(Later::default());
    guessing_is_throttled_per_client(app(layer)).await;
}

/// A backend that is down.
#[derive(Clone)]
struct Down;

impl Backend for Down {
    type Future = std::future::Ready<Result<Outcome, BackendError>>;

    fn acquire(&self, _: &LimitSet) -> Acquire<Self::Future> {
        Acquire::ready(Err(BackendError::Unavailable("down".into())))
    }

    fn peek(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.acquire(set)
    }

    fn reset(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.acquire(set)
    }
}

#[tokio::test]
async fn a_rejected_key_is_still_refused_when_the_backend_is_down_and_closed() {
    let layer = RateLimitLayer::builder()
        .key(Header::new(API_KEY))
        .backend(Down)
        .fail_mode(tollgate::FailMode::Closed)
        .quota(Quota::per_minute(100))
        .rejected_keys(Quota::per_minute(2))
        .build()
        .expect("layer");
    let app = app(layer);
    let missing = send(&app, req("GET", "/items", "192.0.2.36")).await;
    assert_eq!(
        missing.status(),
        StatusCode::UNAUTHORIZED,
        "the key's own answer"
    );
    let with = send(&app, with_key("192.0.2.36", "alice")).await;
    assert_eq!(with.status(), StatusCode::SERVICE_UNAVAILABLE, "closed");
}

#[tokio::test]
async fn a_rule_with_its_own_key_and_name_counts_rejections() {
    let layer = RateLimitLayer::builder()
        .key(Header::new(API_KEY))
        .quota(Quota::per_minute(100))
        .rejected_keys(Rule::new("bad-keys", Quota::per_minute(1)).key(ClientIp::new()))
        .build()
        .expect("layer");
    let app = app(layer);
    assert_eq!(
        send(&app, req("GET", "/items", "192.0.2.33"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let res = send(&app, req("GET", "/items", "192.0.2.33")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&res, "ratelimit").contains("\"bad-keys\";r=0"));
}

#[tokio::test]
async fn unknown_keys_the_application_refuses_are_counted_by_a_rule_on_its_401s() {
    // The extractor accepts any key; the handler knows which exist.
    let layer = RateLimitLayer::builder()
        .key(Header::new(API_KEY))
        .quota(Quota::per_minute(100))
        .group(
            "/*",
            Rule::new("unknown-keys", Quota::per_minute(2))
                .key(ClientIp::new())
                .count_only(|res| res.status == StatusCode::UNAUTHORIZED),
        )
        .build()
        .expect("layer");
    let app = Router::new()
        .route(
            "/items",
            get(|headers: http::HeaderMap| async move {
                if headers.get(API_KEY).is_some_and(|k| k == "alice") {
                    (StatusCode::OK, "items")
                } else {
                    (StatusCode::UNAUTHORIZED, "unknown key")
                }
            }),
        )
        .layer(layer);
    // Successful requests do not count against the rule.
    for _ in 0..5 {
        let res = send(&app, with_key("192.0.2.34", "alice")).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    for guess in ["bob", "carol"] {
        let res = send(&app, with_key("192.0.2.34", guess)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Two invented keys spent the client's allowance, whatever the key.
    let res = send(&app, with_key("192.0.2.34", "dave")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&res, "ratelimit-policy").contains("\"unknown-keys\""));
}

#[cfg(feature = "jwt")]
#[tokio::test]
async fn a_forged_token_counts_as_a_rejected_key() {
    use tollgate::key::Bearer;

    let layer = RateLimitLayer::builder()
        .key(Bearer::hs256(b"a-secret-of-at-least-32-bytes-long!").expect("key"))
        .quota(Quota::per_minute(100))
        .rejected_keys(Quota::per_minute(1))
        .build()
        .expect("layer");
    let app = Router::new()
        .route("/me", get(|| async { "me" }))
        .layer(layer);
    let forged = || {
        let mut r = req("GET", "/me", "192.0.2.35");
        r.headers_mut().insert(
            http::header::AUTHORIZATION,
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
                .parse()
                .expect("header value"),
        );
        r
    };
    assert_eq!(
        send(&app, forged()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, forged()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
