//! `BoxBackend`: a backend chosen at run time decides exactly as the same
//! backend unboxed, answers in memory without a future, and carries a real
//! Redis (and a failover chain over it) through the layer. The support
//! module (a real redis-server) needs the `redis` feature.
#![cfg(feature = "redis")]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use tower::ServiceExt;

use tollgate::backend::{Acquire, Backend, BoxBackend, Failover, MemoryBackend};
use tollgate::key::Key;
use tollgate::policy::{LimitSet, Policy};
use tollgate::time::ManualClock;
use tollgate::{Quota, RateLimitLayer};

#[test]
fn a_boxed_backend_decides_as_the_backend_itself() {
    for algorithm in support::every_algorithm() {
        let clock = ManualClock::starting_at(tollgate::time::Nanos::from_secs(1_000_000));
        let plain = MemoryBackend::builder().clock(clock.clone()).build();
        let boxed = BoxBackend::new(MemoryBackend::builder().clock(clock.clone()).build());
        let policy = Policy::new("boxed", Quota::per_second(3)).with_algorithm(algorithm);
        policy.validate().expect("a valid policy");
        let policy = Arc::new(policy);
        for step in 0..20u64 {
            let set = LimitSet::single(policy.clone(), Key::from("k"), 1 + step % 2);
            let (Acquire::Ready(a), Acquire::Ready(b)) = (plain.acquire(&set), boxed.acquire(&set))
            else {
                panic!("{algorithm:?}: the memory backend answers at once, boxed or not");
            };
            assert_eq!(
                a.expect("answered"),
                b.expect("answered"),
                "{algorithm:?} step {step}"
            );
            let now = (
                plain.acquire_now(&policy, &Key::from("n"), 1),
                boxed.acquire_now(&policy, &Key::from("n"), 1),
            );
            assert_eq!(now.0, now.1, "{algorithm:?} step {step}: acquire_now");
            clock.advance(Duration::from_millis(90));
        }
    }
    let boxed = BoxBackend::new(MemoryBackend::builder().max_keys(500).build());
    assert_eq!(boxed.kind(), "memory");
    let memory = boxed.status().memory.expect("the boxed backend's status");
    assert_eq!(memory.max_keys, 500);
}

fn from(ip: &str) -> Request<Body> {
    let addr: SocketAddr = format!("{ip}:4000").parse().expect("an address");
    let mut req = Request::get("/").body(Body::empty()).expect("a request");
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

async fn statuses(
    layer: RateLimitLayer<tollgate::key::ClientIp, BoxBackend>,
    n: usize,
) -> Vec<u16> {
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer);
    let mut out = Vec::new();
    for _ in 0..n {
        let res = match app.clone().oneshot(from("198.51.100.1")).await {
            Ok(res) => res,
            Err(never) => match never {},
        };
        out.push(res.status().as_u16());
    }
    out
}

#[tokio::test]
async fn a_layer_over_a_boxed_backend_limits_in_memory_and_on_redis() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(2))
        .backend(BoxBackend::new(MemoryBackend::new()))
        .build()
        .expect("a layer");
    assert_eq!(statuses(layer, 3).await, [200, 200, 429]);

    let Some(mut redis) = support::RedisServer::start() else {
        return;
    };
    let chain = Failover::new(
        redis
            .backend_timing_out_after(Duration::from_millis(500))
            .await,
        MemoryBackend::new(),
    );
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(2))
        .backend(BoxBackend::new(chain))
        .build()
        .expect("a layer");
    assert_eq!(layer.backend().kind(), "failover");
    assert_eq!(statuses(layer.clone(), 3).await, [200, 200, 429]);
    // The primary's counters are on the server: a fresh layer over the
    // same server sees them.
    let again = RateLimitLayer::builder()
        .quota(Quota::per_minute(2))
        .backend(BoxBackend::new(redis.backend().await))
        .build()
        .expect("a layer");
    assert_eq!(
        statuses(again, 1).await,
        [StatusCode::TOO_MANY_REQUESTS.as_u16()]
    );
    // Redis down: the chain's fallback answers.
    redis.kill();
    let answers = statuses(layer, 1).await;
    assert_eq!(answers, [200], "the fallback's own count starts afresh");
}
