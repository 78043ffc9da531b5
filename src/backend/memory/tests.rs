//! Tests of the in-memory backend's own contracts: all-or-nothing sets,
//! bounded memory, idle expiry, peek and reset, concurrency.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::key::Key;
use crate::{policy::Policy, Quota};

fn policy(name: &str, quota: Quota) -> Arc<Policy> {
    Arc::new(Policy::new(name, quota))
}

fn at_secs(s: u64) -> Nanos {
    Nanos::from_secs(1_700_000_000 + s)
}

#[test]
fn a_denial_by_one_limit_consumes_nothing_from_the_others() {
    let b = MemoryBackend::new();
    let per_sec = policy("second", Quota::per_second(2));
    let per_min = policy("minute", Quota::per_minute(3));
    let mut set = LimitSet::new();
    set.push(per_sec.clone(), Key::from("c"), 1);
    set.push(per_min.clone(), Key::from("c"), 1);
    let t = at_secs(0);
    assert!(b.acquire_at(&set, t).allowed());
    assert!(b.acquire_at(&set, t).allowed());
    // The per-second limit denies the third: the minute must keep 1 left.
    let third = b.acquire_at(&set, t);
    assert!(!third.allowed());
    assert!(third.decisions()[1].allowed);
    let minute_alone = LimitSet::single(per_min, Key::from("c"), 1);
    assert_eq!(b.peek_at(&minute_alone, t).decisions()[0].remaining, 1);
    // A second later the set passes once more, then the minute denies.
    assert!(b.acquire_at(&set, at_secs(1)).allowed());
    let fifth = b.acquire_at(&set, at_secs(1));
    assert!(!fifth.allowed());
    assert!(!fifth.decisions()[1].allowed);
}

#[test]
fn the_same_key_twice_in_a_set_counts_twice() {
    let b = MemoryBackend::new();
    let p = policy("p", Quota::per_minute(3));
    let mut set = LimitSet::new();
    set.push(p.clone(), Key::from("k"), 1);
    set.push(p.clone(), Key::from("k"), 1);
    assert!(b.acquire_at(&set, at_secs(0)).allowed());
    // Two left before this set would take 2 more: 1 left, so it is denied.
    assert!(!b.acquire_at(&set, at_secs(0)).allowed());
    assert_eq!(
        b.peek_at(&LimitSet::single(p, Key::from("k"), 1), at_secs(0))
            .decisions()[0]
            .remaining,
        1
    );
}

#[test]
fn a_shadow_limit_that_denies_does_not_block_the_set() {
    let b = MemoryBackend::new();
    let real = policy("real", Quota::per_minute(10));
    let shadow = Arc::new(Policy::new("trial", Quota::per_minute(1)).with_shadow(true));
    let mut set = LimitSet::new();
    set.push(real.clone(), Key::from("k"), 1);
    set.push(shadow, Key::from("k"), 1);
    assert!(b.acquire_at(&set, at_secs(0)).allowed());
    let second = b.acquire_at(&set, at_secs(0));
    assert!(second.allowed());
    assert!(!second.decisions()[1].allowed);
    let real_only = LimitSet::single(real, Key::from("k"), 1);
    assert_eq!(
        b.peek_at(&real_only, at_secs(0)).decisions()[0].remaining,
        8
    );
}

#[test]
fn peek_counts_nothing_and_reset_gives_the_quota_back() {
    let b = MemoryBackend::builder()
        .clock(crate::time::MonotonicClock::starting_at(at_secs(0)))
        .build();
    for alg in [
        Algorithm::Gcra,
        Algorithm::SlidingWindowLog,
        Algorithm::FixedWindow,
    ] {
        let p = Arc::new(Policy::new("p", Quota::per_minute(2)).with_algorithm(alg));
        let set = LimitSet::single(p, Key::from("k"), 1);
        for _ in 0..5 {
            let peeked = b.peek_at(&set, at_secs(0));
            assert!(peeked.allowed());
            assert_eq!(peeked.decisions()[0].remaining, 2, "{alg:?}");
        }
        assert!(b.acquire_at(&set, at_secs(0)).allowed());
        assert!(b.acquire_at(&set, at_secs(0)).allowed());
        let peeked = b.peek_at(&set, at_secs(0));
        assert!(!peeked.allowed(), "{alg:?}");
        assert_eq!(peeked.decisions()[0].remaining, 0);
        b.run(&set, at_secs(0), Mode::Reset);
        assert!(b.acquire_at(&set, at_secs(0)).allowed(), "{alg:?}");
    }
}

#[test]
fn idle_keys_are_swept_and_counted_as_fresh_before_that() {
    let clock = crate::time::ManualClock::starting_at(at_secs(0));
    let b = MemoryBackend::builder()
        .max_keys(10_000)
        .clock(clock.clone())
        .build();
    let p = policy("p", Quota::per_second(1));
    for i in 0..100u64 {
        b.acquire_at(&LimitSet::single(p.clone(), Key::from(i), 1), at_secs(0));
    }
    assert_eq!(b.len(), 100);
    assert_eq!(b.sweep(), 0, "nothing is idle yet");
    // Two seconds later every key is idle; a sweep drops them all.
    clock.set(at_secs(2));
    assert_eq!(b.sweep(), 100);
    assert!(b.is_empty());
}

#[test]
fn a_full_table_replaces_idle_keys_before_live_ones() {
    let b = MemoryBackend::builder().max_keys(100).build();
    let p = policy("p", Quota::per_second(1));
    // 5,000 one-off clients, one every 100 ms of a 1 s quota: at most 10
    // are live at any instant, so every sample of 16 holds an idle key.
    for i in 0..5_000u64 {
        let t = at_secs(0).saturating_add(Nanos::from_millis(100 * i));
        assert!(b
            .acquire_at(&LimitSet::single(p.clone(), Key::from(i), 1), t)
            .allowed());
    }
    assert_eq!(b.len(), 100);
    assert_eq!(b.evictions(), 0, "only idle keys were replaced");
}

#[test]
fn a_flood_of_new_keys_cannot_push_a_limited_client_out() {
    let b = MemoryBackend::builder().max_keys(1_000).shards(4).build();
    let p = policy("p", Quota::per_hour(5));
    let victim = LimitSet::single(p.clone(), Key::from("limited-client"), 1);
    for _ in 0..5 {
        assert!(b.acquire_at(&victim, at_secs(0)).allowed());
    }
    assert!(!b.acquire_at(&victim, at_secs(0)).allowed());
    // One million distinct clients, spread over ten minutes: every one is
    // let in, and the table stays at its bound.
    for i in 0..1_000_000u64 {
        let t = at_secs(0).saturating_add(Nanos::new(i * 600_000));
        assert!(b
            .acquire_at(&LimitSet::single(p.clone(), Key::from(i), 1), t)
            .allowed());
    }
    assert_eq!(b.len(), 1_000, "bounded");
    assert!(
        !b.acquire_at(&victim, at_secs(600)).allowed(),
        "the limited client escaped"
    );
}

#[test]
fn a_full_table_forgets_the_key_closest_to_idle_and_never_a_denied_one() {
    let b = MemoryBackend::builder().max_keys(8).shards(1).build();
    let p = policy("p", Quota::per_hour(3));
    let set = |i: u64| LimitSet::single(p.clone(), Key::from(i), 1);
    for i in 0..8u64 {
        assert!(b.acquire_at(&set(i), at_secs(i)).allowed());
    }
    // Key 7 uses its quota and is denied; keys 1 to 6 use a second unit.
    for _ in 0..2 {
        assert!(b.acquire_at(&set(7), at_secs(8)).allowed());
    }
    assert!(!b.acquire_at(&set(7), at_secs(8)).allowed());
    for i in 1..7u64 {
        assert!(b.acquire_at(&set(i), at_secs(8)).allowed());
    }
    // A newcomer replaces key 0, the one closest to going idle.
    assert!(b.acquire_at(&set(100), at_secs(9)).allowed());
    assert_eq!(b.len(), 8);
    assert_eq!(b.evictions(), 1);
    assert_eq!(
        b.peek_at(&set(0), at_secs(9)).decisions()[0].remaining,
        3,
        "key 0 was forgotten"
    );
    // Six more newcomers: each replaces the closest to idle, never key 7.
    for i in 101..107u64 {
        assert!(b.acquire_at(&set(i), at_secs(10)).allowed());
    }
    assert_eq!(b.len(), 8);
    assert!(
        !b.acquire_at(&set(7), at_secs(10)).allowed(),
        "key 7 escaped"
    );
}

#[test]
fn a_table_full_of_denied_keys_still_lets_a_newcomer_in() {
    let b = MemoryBackend::builder().max_keys(4).shards(1).build();
    let p = policy("p", Quota::per_hour(1));
    let set = |i: u64| LimitSet::single(p.clone(), Key::from(i), 1);
    for i in 0..4u64 {
        assert!(b.acquire_at(&set(i), at_secs(i)).allowed());
        assert!(!b.acquire_at(&set(i), at_secs(i)).allowed());
    }
    // Nothing but denied keys: the one closest to idle (key 0) makes room.
    assert!(b.acquire_at(&set(9), at_secs(5)).allowed());
    assert_eq!(b.len(), 4);
    assert!(b.acquire_at(&set(0), at_secs(5)).allowed(), "key 0 went");
    for i in 1..4u64 {
        assert!(!b.acquire_at(&set(i), at_secs(5)).allowed(), "key {i}");
    }
}

#[test]
fn an_idle_key_goes_first_even_if_its_last_check_was_denied() {
    // Idle, a key loses nothing when forgotten, whatever its last check
    // said: it goes before a live key of another algorithm's table.
    let b = MemoryBackend::builder().max_keys(2).shards(1).build();
    let gcra = LimitSet::single(policy("g", Quota::per_second(1)), Key::from("a"), 1);
    let bucket =
        Arc::new(Policy::new("t", Quota::per_hour(5)).with_algorithm(Algorithm::TokenBucket));
    let live = LimitSet::single(bucket, Key::from("b"), 1);
    assert!(b.acquire_at(&gcra, at_secs(0)).allowed());
    assert!(!b.acquire_at(&gcra, at_secs(0)).allowed(), "marked denied");
    assert!(b.acquire_at(&live, at_secs(0)).allowed());
    let newcomer = LimitSet::single(policy("g", Quota::per_second(1)), Key::from("c"), 1);
    assert!(b.acquire_at(&newcomer, at_secs(5)).allowed());
    assert_eq!(b.evictions(), 0, "the idle key made room, not the live one");
    assert_eq!(b.peek_at(&live, at_secs(5)).decisions()[0].remaining, 4);
}

#[test]
fn the_bound_holds_across_shards_that_fill_unevenly() {
    let b = MemoryBackend::builder().max_keys(1_000).shards(16).build();
    let p = policy("p", Quota::per_hour(1));
    for i in 0..1_000u64 {
        assert!(b
            .acquire_at(&LimitSet::single(p.clone(), Key::from(i), 1), at_secs(0))
            .allowed());
    }
    assert_eq!(b.len(), 1_000);
    assert_eq!(b.evictions(), 0, "every key found a seat below the bound");
    assert!(b
        .acquire_at(
            &LimitSet::single(p.clone(), Key::from("one more"), 1),
            at_secs(1)
        )
        .allowed());
    assert_eq!(b.len(), 1_000);
    assert_eq!(b.evictions(), 1);
}

#[test]
fn concurrent_checks_on_one_key_admit_exactly_the_limit() {
    let b = MemoryBackend::new();
    let p = policy("p", Quota::per_hour(1_000));
    let set = LimitSet::single(p, Key::from("shared"), 1);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            let set = set.clone();
            std::thread::spawn(move || {
                (0..1_000)
                    .filter(|_| b.acquire_at(&set, at_secs(0)).allowed())
                    .count()
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    assert_eq!(total, 1_000);
}

#[test]
fn concurrent_sets_spanning_shards_never_deadlock_and_stay_all_or_nothing() {
    let b = MemoryBackend::builder().shards(8).build();
    let a = policy("a", Quota::per_hour(500));
    let c = policy("c", Quota::per_hour(700));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (b, a, c) = (b.clone(), a.clone(), c.clone());
            std::thread::spawn(move || {
                let mut ok = 0;
                for i in 0..1_000u64 {
                    // Alternate the order so lock order matters.
                    let mut set = LimitSet::new();
                    if (i + t) % 2 == 0 {
                        set.push(a.clone(), Key::from("x"), 1);
                        set.push(c.clone(), Key::from("y"), 1);
                    } else {
                        set.push(c.clone(), Key::from("y"), 1);
                        set.push(a.clone(), Key::from("x"), 1);
                    }
                    ok += usize::from(b.acquire_at(&set, at_secs(0)).allowed());
                }
                ok
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    assert_eq!(total, 500);
    let c_only = LimitSet::single(c, Key::from("y"), 1);
    assert_eq!(b.peek_at(&c_only, at_secs(0)).decisions()[0].remaining, 200);
}

#[cfg(feature = "test-util")]
#[tokio::test(start_paused = true)]
async fn the_default_clock_follows_paused_tokio_time_with_test_util() {
    let b = MemoryBackend::new();
    let p = policy("p", Quota::per_second(1));
    let set = LimitSet::single(p, Key::from("k"), 1);
    assert!(b.acquire(&set).await.unwrap().allowed());
    assert!(!b.acquire(&set).await.unwrap().allowed());
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(!b.acquire(&set).await.unwrap().allowed());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(b.acquire(&set).await.unwrap().allowed());
}

#[test]
fn absorb_counts_every_limit_even_over_its_quota() {
    let b = MemoryBackend::new();
    let small = policy("small", Quota::per_minute(2));
    let large = policy("large", Quota::per_minute(100));
    let mut set = LimitSet::new();
    set.push(small.clone(), Key::from("c"), 5);
    set.push(large.clone(), Key::from("c"), 5);
    let out = b.absorb_at(&set, at_secs(0));
    // The small limit could not fit 5: reported, but counted all the same.
    assert!(!out.allowed());
    assert!(!out.decisions()[0].allowed);
    assert!(out.decisions()[1].allowed);
    assert_eq!(out.decisions()[1].remaining, 95);
    let small_alone = LimitSet::single(small, Key::from("c"), 1);
    let peeked = b.peek_at(&small_alone, at_secs(0));
    assert_eq!(peeked.decisions()[0].remaining, 0);
    // GCRA 2/min: T = 30 s; TAT = now + 150 s; one fits again at now + 120 s.
    assert_eq!(out.decisions()[0].retry_after, Some(Nanos::from_secs(120)));
    assert!(!b.acquire_at(&small_alone, at_secs(119)).allowed());
    assert!(b.acquire_at(&small_alone, at_secs(120)).allowed());
    let large_alone = LimitSet::single(large, Key::from("c"), 1);
    assert_eq!(
        b.peek_at(&large_alone, at_secs(0)).decisions()[0].remaining,
        95
    );
}

#[test]
fn absorb_of_the_same_key_twice_counts_twice_and_zero_counts_nothing() {
    let b = MemoryBackend::new();
    let p =
        Arc::new(Policy::new("p", Quota::per_minute(10)).with_algorithm(Algorithm::FixedWindow));
    let mut set = LimitSet::new();
    set.push(p.clone(), Key::from("k"), 4);
    set.push(p.clone(), Key::from("k"), 4);
    set.push(p.clone(), Key::from("other"), 0);
    let out = b.absorb_at(&set, at_secs(0));
    assert_eq!(out.decisions()[0].remaining, 6);
    assert_eq!(out.decisions()[1].remaining, 2);
    assert_eq!(out.decisions()[2].remaining, 10);
    assert_eq!(b.len(), 1, "a zero cost stores nothing");
}

#[test]
fn an_absorbed_debt_is_kept_until_it_is_repaid() {
    // 6 units on a quota of 2/s: a bucket is busy for 3 s; a log entry
    // counts for one period, a window until its end (the sliding counter:
    // until the previous window's weighted count rounds down to zero).
    for (alg, busy_ns) in [
        (Algorithm::Gcra, 3_000_000_000),
        (Algorithm::TokenBucket, 3_000_000_000),
        (Algorithm::LeakyBucket, 3_000_000_000),
        (Algorithm::SlidingWindowLog, 1_000_000_000),
        (Algorithm::FixedWindow, 1_000_000_000),
        (Algorithm::SlidingWindow, 1_833_333_334),
    ] {
        let b = MemoryBackend::builder().max_keys(10_000).build();
        let p = Arc::new(Policy::new("p", Quota::per_second(2)).with_algorithm(alg));
        let set = LimitSet::single(p, Key::from("k"), 6);
        let out = b.absorb_at(&set, at_secs(0));
        let busy = Nanos::new(busy_ns);
        assert_eq!(out.decisions()[0].reset_after, busy, "{alg:?}");
        let one = LimitSet::single(set.limits()[0].policy.clone(), Key::from("k"), 1);
        // Sweeping just before the debt is repaid keeps the key.
        let before = at_secs(0).saturating_add(busy).as_u64() - 1;
        b.sweep_at(before);
        assert_eq!(b.len(), 1, "{alg:?}");
        let left = b.peek_at(&one, Nanos::new(before)).decisions()[0].remaining;
        assert!(left < 2, "{alg:?}: still counted");
        let at = at_secs(0).saturating_add(busy).as_u64();
        let swept = b.sweep_at(at);
        assert_eq!(swept, 1, "{alg:?}");
    }
}

#[tokio::test]
async fn absorb_through_the_backend_trait_uses_the_backend_clock() {
    let b = MemoryBackend::new();
    let p = policy("p", Quota::per_minute(3));
    let out = b
        .absorb(&LimitSet::single(p.clone(), Key::from("k"), 3))
        .await
        .unwrap();
    assert!(out.allowed());
    assert_eq!(out.decisions()[0].remaining, 0);
    let next = b
        .acquire(&LimitSet::single(p, Key::from("k"), 1))
        .await
        .unwrap();
    assert!(!next.allowed());
}

// ---- refund ----

/// Every algorithm, one policy each, so a set can be refunded per algorithm.
fn every_algorithm(quota: Quota) -> Vec<Arc<Policy>> {
    crate::algorithm::tests::ALL
        .into_iter()
        .map(|a| Arc::new(Policy::new(a.name(), quota).with_algorithm(a)))
        .collect()
}

#[test]
fn a_refund_at_the_acquire_instant_gives_the_quota_back_for_every_algorithm() {
    let b = MemoryBackend::new();
    for p in every_algorithm(Quota::per_second(3)) {
        let set = LimitSet::single(p.clone(), Key::from("k"), 1);
        let t = at_secs(0).saturating_add(Nanos::from_millis(250));
        for _ in 0..3 {
            assert!(b.acquire_at(&set, t).allowed(), "{}", p.name());
        }
        let out = b.acquire_at(&set, t);
        assert!(!out.allowed(), "{}", p.name());
        assert_eq!(out.at(), Some(t));
        // Give one back: one more passes, and only one.
        let back = b.refund_at(&set, t);
        assert_eq!(back.at(), Some(t));
        assert_eq!(back.decisions()[0].remaining, 1, "{}", p.name());
        assert!(back.allowed(), "{}", p.name());
        assert_eq!(back, b.peek_at(&set, t), "{}", p.name());
        assert!(b.acquire_at(&set, t).allowed(), "{}", p.name());
        assert!(!b.acquire_at(&set, t).allowed(), "{}", p.name());
        // Refund all three: a fresh key again, at that instant.
        let three = LimitSet::single(p.clone(), Key::from("k"), 3);
        let back = b.refund_at(&three, t);
        assert_eq!(back.decisions()[0].remaining, 3, "{}", p.name());
    }
}

#[test]
fn a_refund_never_creates_a_key() {
    let b = MemoryBackend::new();
    for p in every_algorithm(Quota::per_second(3)) {
        let set = LimitSet::single(p.clone(), Key::from("absent"), 2);
        let out = b.refund_at(&set, at_secs(0));
        assert_eq!(out.decisions()[0].remaining, 3, "{}", p.name());
    }
    assert!(b.is_empty());
    // A key forgotten by reset stays forgotten.
    let p = policy("p", Quota::per_minute(2));
    let set = LimitSet::single(p, Key::from("k"), 1);
    assert!(b.acquire_at(&set, at_secs(0)).allowed());
    b.run(&set, at_secs(0), Mode::Reset);
    assert!(b.is_empty());
    b.refund_at(&set, at_secs(0));
    assert!(b.is_empty());
}

#[test]
fn refunds_are_per_limit_and_zero_costs_refund_nothing() {
    let b = MemoryBackend::new();
    let second = policy("second", Quota::per_second(2));
    let minute = policy("minute", Quota::per_minute(3));
    let t = at_secs(0);
    let mut set = LimitSet::new();
    set.push(second.clone(), Key::from("c"), 1);
    set.push(minute.clone(), Key::from("c"), 1);
    assert!(b.acquire_at(&set, t).allowed());
    assert!(b.acquire_at(&set, t).allowed());
    // Only the minute's unit is given back.
    let mut partial = LimitSet::new();
    partial.push(second.clone(), Key::from("c"), 0);
    partial.push(minute.clone(), Key::from("c"), 1);
    let back = b.refund_at(&partial, t);
    assert_eq!(back.decisions()[0].remaining, 0);
    assert_eq!(back.decisions()[1].remaining, 2);
    // The second is still used up: the set is denied.
    assert!(!b.acquire_at(&set, t).allowed());
    // The same key twice is refunded twice.
    let mut twice = LimitSet::new();
    twice.push(second.clone(), Key::from("c"), 1);
    twice.push(second, Key::from("c"), 1);
    assert_eq!(b.refund_at(&twice, t).decisions()[1].remaining, 2);
}

#[test]
fn a_late_refund_takes_only_what_is_still_counted() {
    let b = MemoryBackend::new();
    let fixed =
        Arc::new(Policy::new("fixed", Quota::per_second(2)).with_algorithm(Algorithm::FixedWindow));
    let set = LimitSet::single(fixed, Key::from("k"), 2);
    let t0 = at_secs(0).saturating_add(Nanos::from_millis(900));
    assert!(b.acquire_at(&set, t0).allowed());
    let t1 = at_secs(1).saturating_add(Nanos::from_millis(100));
    assert!(b.acquire_at(&set, t1).allowed());
    // The window of t0 is gone: refunding it gives nothing of t1's back.
    b.refund_at(&set, t0);
    assert_eq!(b.peek_at(&set, t1).decisions()[0].remaining, 0);
    b.refund_at(&set, t1);
    assert_eq!(b.peek_at(&set, t1).decisions()[0].remaining, 2);
}

#[test]
fn a_refunded_gcra_key_is_swept_at_its_earlier_idle_instant() {
    let b = MemoryBackend::builder().shards(1).build();
    let p = policy("p", Quota::per_second(1));
    let set = LimitSet::single(p, Key::from("k"), 1);
    // The key's idle instant is its TAT, 1 s on...
    assert!(b.acquire_at(&set, at_secs(10)).allowed());
    // ...then the refund moves the TAT (and so the idle instant) back.
    b.refund_at(&set, at_secs(10));
    assert_eq!(b.sweep_at(at_secs(10).as_u64()), 1);
    assert!(b.is_empty());
}

#[tokio::test]
async fn acquire_reports_its_instant_and_the_trait_refund_uses_it() {
    let b = MemoryBackend::new();
    let p = policy("p", Quota::per_minute(1));
    let set = LimitSet::single(p, Key::from("k"), 1);
    let out = b.acquire(&set).await.unwrap();
    assert!(out.allowed());
    let at = out.at().unwrap();
    assert!(at <= b.now());
    assert!(!b.acquire(&set).await.unwrap().allowed());
    let back = b.refund(&set, at).await.unwrap();
    assert_eq!(back.at(), Some(at));
    assert!(b.acquire(&set).await.unwrap().allowed());
    assert!(b.peek(&set).await.unwrap().at().is_some());
    assert!(b.absorb(&set).await.unwrap().at().is_some());
}
