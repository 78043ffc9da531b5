//! The blocked-key cache in front of a real Redis: a flood from one client
//! over its limit stops reaching Redis; Redis commands per request are
//! counted by the server (`INFO commandstats`).
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;

use tollgate::backend::{Backend, BlockedCache};
use tollgate::key::Key;
use tollgate::{
    policy::{LimitSet, Policy},
    Quota,
};

#[tokio::test]
async fn a_flood_over_the_limit_costs_one_redis_call_then_none() {
    let server = redis_or_skip!();
    let redis = server.backend().await;
    let backend = BlockedCache::new(redis, 1_000);
    let set = LimitSet::single(
        Arc::new(Policy::new("blocked-flood", Quota::per_minute(5))),
        Key::from("flooder"),
        1,
    );
    let mut admitted = 0;
    for _ in 0..1_000 {
        admitted += usize::from(backend.acquire(&set).await.expect("call").allowed());
    }
    assert_eq!(admitted, 5);
    // Five admitted and the first denial reached Redis; 994 did not.
    assert_eq!(
        support::command_calls(&server.command_stats(), "evalsha").unwrap_or(0),
        6
    );
    assert_eq!(backend.hits(), 994);
}

#[tokio::test]
async fn without_the_cache_every_request_is_exactly_one_redis_call() {
    let server = redis_or_skip!();
    let backend = server.backend().await;
    let set = LimitSet::single(
        Arc::new(Policy::new("one-call", Quota::per_minute(5))),
        Key::from("client"),
        1,
    );
    for _ in 0..100 {
        backend.acquire(&set).await.expect("call");
    }
    assert_eq!(
        support::command_calls(&server.command_stats(), "evalsha").unwrap_or(0),
        100
    );
}
