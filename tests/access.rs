//! Allow and deny lists through a real `Router`: allowed clients are never
//! limited, denied ones get 403 problem+json, by range or by key, and the
//! lists change at runtime.

mod common;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{HeaderName, Request, StatusCode};
use http_body_util::BodyExt;

use common::{req, send};
use tollgate::key::{ClientIp, Header, Key};
use tollgate::{settings::AccessList, Quota, RateLimitLayer};

fn app(access: AccessList) -> Router {
    Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::builder()
            .quota(Quota::per_minute(1))
            .access(access)
            .build()
            .unwrap(),
    )
}

/// `GET /` from `ip`.
fn from(ip: &str) -> Request<Body> {
    req("GET", "/", ip)
}

async fn status(app: &Router, r: Request<Body>) -> StatusCode {
    send(app, r).await.status()
}

#[tokio::test]
async fn allowed_ranges_are_never_limited_and_denied_ones_get_403() {
    let access = AccessList::new()
        .allowing(["10.0.0.0/8".parse().unwrap()])
        .denying(["203.0.113.0/24".parse().unwrap()]);
    let app = app(access);
    for _ in 0..5 {
        let res = send(&app, from("10.1.2.3")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            !res.headers().contains_key("x-ratelimit-limit"),
            "allowed: not limited"
        );
    }
    let res = send(&app, from("203.0.113.50")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], 403);
    // Everyone else is limited as usual.
    assert_eq!(status(&app, from("192.0.2.1")).await, StatusCode::OK);
    assert_eq!(
        status(&app, from("192.0.2.1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn lists_change_at_runtime() {
    let access = AccessList::new();
    let app = app(access.clone());
    assert_eq!(status(&app, from("198.51.100.7")).await, StatusCode::OK);
    access
        .deny_net("198.51.100.0/24".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        status(&app, from("198.51.100.7")).await,
        StatusCode::FORBIDDEN
    );
    access
        .remove_net("198.51.100.0/24".parse().unwrap())
        .await
        .unwrap();
    access
        .allow_net("198.51.100.7/32".parse().unwrap())
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(status(&app, from("198.51.100.7")).await, StatusCode::OK);
    }
}

#[tokio::test]
async fn the_client_behind_a_trusted_proxy_is_the_one_listed() {
    let access = AccessList::new()
        .client_ip(ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]))
        .denying(["203.0.113.9/32".parse().unwrap()]);
    let app = app(access);
    let mut r = from("10.0.0.1");
    r.headers_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    assert_eq!(status(&app, r).await, StatusCode::FORBIDDEN);
    // An untrusted peer cannot dodge the list by forging the header.
    let mut r = from("203.0.113.9");
    r.headers_mut()
        .insert("x-forwarded-for", "10.9.9.9".parse().unwrap());
    assert_eq!(status(&app, r).await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn keys_can_be_allowed_and_denied() {
    let access = AccessList::new();
    access.allow_key(Key::secret(b"vip-key")).await.unwrap();
    access.deny_key(Key::secret(b"revoked-key")).await.unwrap();
    let app = Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::builder()
            .key(Header::new(HeaderName::from_static("x-api-key")))
            .quota(Quota::per_minute(1))
            .access(access)
            .build()
            .unwrap(),
    );
    let with = |k: &str| {
        Request::get("/")
            .header("x-api-key", k)
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(status(&app, with("vip-key")).await, StatusCode::OK);
    }
    assert_eq!(
        status(&app, with("revoked-key")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(status(&app, with("plain")).await, StatusCode::OK);
    assert_eq!(
        status(&app, with("plain")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}
