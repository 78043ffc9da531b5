//! The sliding log keeps its entries in instant order in Redis as in
//! memory: an instant earlier than the newest entry (the slots of a Redis
//! Cluster set run at their first slot's instant, so concurrent calls
//! arrive out of order; or the clock went back) is inserted where it
//! belongs. A log that became unsorted used to stay so until every entry
//! expired, and every check then read the whole log (about 6 µs of Redis
//! CPU per entry): the cause of the cluster fleet test's timeouts.
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;

use redis::Commands;
use tollgate::backend::MemoryBackend;
use tollgate::key::Key;
use tollgate::policy::{LimitSet, Policy};
use tollgate::time::Nanos;
use tollgate::Algorithm;

use support::{single, slow_quota};

fn log_policy(limit: u64) -> Arc<Policy> {
    Arc::new(Policy::new("log", slow_quota(limit)).with_algorithm(Algorithm::SlidingWindowLog))
}

/// The stored list: the header, then each entry's instant.
fn stored(server: &support::RedisServer, key: &str) -> (String, Vec<u64>) {
    let mut client = server.client();
    let items: Vec<String> = client.lrange(key, 0, -1).expect("LRANGE");
    let header = items.first().cloned().unwrap_or_default();
    let instants = items
        .iter()
        .skip(1)
        .map(|e| {
            e.split(' ')
                .next()
                .and_then(|t| t.parse().ok())
                .expect("an entry is '<t> <c>'")
        })
        .collect();
    (header, instants)
}

#[tokio::test]
async fn an_earlier_instant_is_inserted_in_order_and_the_log_stays_sorted() {
    let server = redis_or_skip!();
    let redis = server.backend().await;
    let memory = MemoryBackend::new();
    let policy = log_policy(10);
    let set: LimitSet = single(&policy, "client");
    let name = redis.key_name(&policy, &Key::from("client"));
    // Out of order, with a merge into an entry that is not the newest.
    let steps = [100, 300, 200, 250, 200, 50, 400];
    for (i, at) in steps.into_iter().enumerate() {
        let at = Nanos::from_secs(1_000_000 + at);
        let want = memory.acquire_at(&set, at);
        let got = redis.acquire_at(&set, at).await.expect("redis");
        assert_eq!(got, want, "step {i}: memory and Redis agree");
    }
    let (header, instants) = stored(&server, &name);
    assert!(header.ends_with(" 1"), "still marked sorted: {header}");
    let mut sorted = instants.clone();
    sorted.sort_unstable();
    assert_eq!(instants, sorted, "entries in instant order");
    assert_eq!(instants.len(), 6, "the two at 200 s merged");
    // Seven units are held (two at 200 s): three more fit; then the
    // oldest admitted request is the first to free a place.
    for _ in 0..3 {
        let at = Nanos::from_secs(1_000_500);
        assert!(redis.acquire_at(&set, at).await.expect("redis").allowed());
        assert!(memory.acquire_at(&set, at).allowed());
    }
    let at = Nanos::from_secs(1_000_500);
    let denied = redis.acquire_at(&set, at).await.expect("redis");
    assert_eq!(denied, memory.acquire_at(&set, at));
    let period = slow_quota(10).period().as_secs();
    assert_eq!(
        denied.decisions()[0].retry_after,
        Some(Nanos::from_secs(1_000_000 + 50 + period - 1_000_500)),
        "the entry at 50 s expires first"
    );
}

#[tokio::test]
async fn a_refund_finds_an_entry_inserted_out_of_order() {
    let server = redis_or_skip!();
    let redis = server.backend().await;
    let policy = log_policy(3);
    let set = single(&policy, "client");
    let t = |s: u64| Nanos::from_secs(2_000_000 + s);
    redis.acquire_at(&set, t(20)).await.expect("redis");
    redis.acquire_at(&set, t(10)).await.expect("redis");
    redis.acquire_at(&set, t(30)).await.expect("redis");
    assert!(!redis
        .acquire_at(&set, t(31))
        .await
        .expect("redis")
        .allowed());
    // Giving back the request admitted at 10 s frees one place.
    redis.refund_at(&set, t(10)).await.expect("refund");
    assert!(redis
        .acquire_at(&set, t(31))
        .await
        .expect("redis")
        .allowed());
}
