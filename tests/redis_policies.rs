//! Policies on a real `redis-server`: stacked levels all-or-nothing across
//! two app servers, per-key overrides and allow/deny lists shared by two
//! layers on one Redis, refunds after the response.
#![cfg(feature = "redis")]

mod common;
mod support;

use std::time::Duration;

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use http::{Request, StatusCode};

use tollgate::key::{ClientIp, Key};
use tollgate::policy::Rule;
use tollgate::{backend::RedisBackend, settings::AccessList, Quota, RateLimitLayer};

use common::{header, req, send};

async fn layer(url: &str, access: Option<AccessList>) -> RateLimitLayer<ClientIp, RedisBackend> {
    let backend = RedisBackend::connect(url).await.expect("connect");
    let builder = RateLimitLayer::builder()
        .backend(backend)
        .quota(Quota::per_hour(5))
        .name("global")
        .group("/api/*", Rule::new("api", Quota::per_hour(3)))
        .route("GET /api/search", Rule::new("search", Quota::per_hour(2)))
        .route(
            "POST /login",
            Rule::new("login", Quota::per_hour(1))
                .count_only(|res| res.status == StatusCode::UNAUTHORIZED),
        )
        .exempt("/health")
        // Long: the tests sync by hand, so they see exactly what a sync does.
        .sync_interval(Duration::from_secs(3600));
    let builder = match access {
        Some(access) => builder.access(access),
        None => builder,
    };
    builder.build().expect("build")
}

fn app(layer: RateLimitLayer<ClientIp, RedisBackend>) -> Router {
    Router::new()
        .route("/", get(|| async { "home" }))
        .route("/api/items", get(|| async { "items" }))
        .route("/api/search", get(|| async { "results" }))
        .route(
            "/login",
            post(|req: Request<Body>| async move {
                if req.headers().contains_key("x-right") {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        )
        .layer(layer)
}

#[tokio::test]
async fn two_servers_share_stacked_levels_all_or_nothing() {
    let server = redis_or_skip!();
    let a = app(layer(&server.url(), None).await);
    let b = app(layer(&server.url(), None).await);
    assert_eq!(
        send(&a, req("GET", "/api/search", "192.0.2.1"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&b, req("GET", "/api/search", "192.0.2.1"))
            .await
            .status(),
        StatusCode::OK
    );
    for app in [&a, &b, &a] {
        let res = send(app, req("GET", "/api/search", "192.0.2.1")).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    // The denials took nothing from api: one left, on either server.
    let res = send(&b, req("GET", "/api/items", "192.0.2.1")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-ratelimit-remaining"), "0");
    assert_eq!(
        header(&res, "ratelimit-policy"),
        "\"global\";q=5;w=3600, \"api\";q=3;w=3600"
    );
    assert_eq!(
        send(&a, req("GET", "/api/items", "192.0.2.1"))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn an_override_set_on_one_server_applies_on_the_other_after_a_sync() {
    let server = redis_or_skip!();
    let (la, lb) = (
        layer(&server.url(), None).await,
        layer(&server.url(), None).await,
    );
    let (a, b) = (app(la.clone()), app(lb.clone()));
    let vip = Key::from_ip("192.0.2.2".parse().unwrap());
    la.overrides()
        .set(vip.clone(), Quota::per_hour(50), None)
        .await
        .unwrap();
    assert_eq!(
        la.overrides().get(&vip),
        Some(Quota::per_hour(50)),
        "at once where set"
    );
    assert_eq!(lb.overrides().get(&vip), None, "not before the other syncs");
    lb.sync().await.unwrap();
    assert_eq!(lb.overrides().get(&vip), Some(Quota::per_hour(50)));
    let res = send(&b, req("GET", "/", "192.0.2.2")).await;
    assert_eq!(header(&res, "x-ratelimit-limit"), "50");
    // Per policy, cleared from the other side.
    la.overrides()
        .set_for("search", vip.clone(), Quota::per_hour(9), None)
        .await
        .unwrap();
    lb.sync().await.unwrap();
    let res = send(&b, req("GET", "/api/search", "192.0.2.2")).await;
    assert!(header(&res, "ratelimit-policy").contains("\"search\";q=9;w=3600"));
    assert!(lb.overrides().clear(&vip).await.unwrap());
    la.sync().await.unwrap();
    assert_eq!(la.overrides().get(&vip), None);
    let res = send(&a, req("GET", "/", "192.0.2.2")).await;
    assert_eq!(header(&res, "x-ratelimit-limit"), "5");
}

#[tokio::test]
async fn the_background_sync_picks_changes_up_without_being_asked() {
    let server = redis_or_skip!();
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    let la = layer(&server.url(), None).await;
    let lb = RateLimitLayer::builder()
        .backend(backend)
        .quota(Quota::per_hour(5))
        .name("global")
        .sync_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let key = Key::from("k");
    la.overrides()
        .set(key.clone(), Quota::per_hour(7), None)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while lb.overrides().get(&key).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "never synced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn access_lists_are_shared_through_redis() {
    let server = redis_or_skip!();
    // Server A starts with a configured deny list; B with none.
    let list_a = AccessList::new().denying(["203.0.113.0/24".parse().unwrap()]);
    let list_b = AccessList::new();
    let la = layer(&server.url(), Some(list_a.clone())).await;
    let lb = layer(&server.url(), Some(list_b.clone())).await;
    let (a, b) = (app(la.clone()), app(lb.clone()));
    // A's configured entries reach the store at its first sync.
    la.sync().await.unwrap();
    lb.sync().await.unwrap();
    assert_eq!(
        send(&b, req("GET", "/", "203.0.113.7")).await.status(),
        StatusCode::FORBIDDEN
    );
    // A runtime change on B: an allow-listed client, seen by A.
    list_b
        .allow_net("198.51.100.0/24".parse().unwrap())
        .await
        .unwrap();
    list_b
        .deny_key(Key::from_ip("192.0.2.66".parse().unwrap()))
        .await
        .unwrap();
    la.sync().await.unwrap();
    for _ in 0..10 {
        let res = send(&a, req("GET", "/", "198.51.100.9")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            !res.headers().contains_key("ratelimit-policy"),
            "allowed: unlimited"
        );
    }
    assert_eq!(
        send(&a, req("GET", "/", "192.0.2.66")).await.status(),
        StatusCode::FORBIDDEN
    );
    // Removal travels too.
    list_a
        .remove_net("203.0.113.0/24".parse().unwrap())
        .await
        .unwrap();
    lb.sync().await.unwrap();
    assert_eq!(
        send(&b, req("GET", "/", "203.0.113.7")).await.status(),
        StatusCode::OK
    );
    assert_eq!(list_b.len(), 2, "B holds what the store holds");
}

#[tokio::test]
async fn a_list_change_the_server_does_not_take_changes_nothing() {
    let mut server = redis_or_skip!();
    let list = AccessList::new();
    let l = layer(&server.url(), Some(list.clone())).await;
    l.sync().await.unwrap();
    server.kill();
    let e = list.deny_net("203.0.113.0/24".parse().unwrap()).await;
    assert!(e.is_err());
    assert!(list.is_empty(), "not applied locally either");
    let e = l
        .overrides()
        .set(Key::from("k"), Quota::per_hour(9), None)
        .await;
    assert!(e.is_err());
    assert!(l.overrides().is_empty());
}

#[tokio::test]
async fn count_only_refunds_on_redis() {
    let server = redis_or_skip!();
    let a = app(layer(&server.url(), None).await);
    let login = |right: bool| {
        let mut r = req("POST", "/login", "192.0.2.3");
        if right {
            r.headers_mut().insert("x-right", "1".parse().unwrap());
        }
        r
    };
    for _ in 0..3 {
        assert_eq!(send(&a, login(true)).await.status(), StatusCode::OK);
        // The refund is one more round trip, made in the background.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        send(&a, login(false)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        send(&a, login(true)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
