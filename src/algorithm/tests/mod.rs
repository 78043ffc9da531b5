//! Unit and property tests of the pure algorithms: `check` here, with the
//! helpers and proptest strategies the other parts share; `force` and
//! `refund` in their own files. Each file's past failure seeds are in
//! `proptest-regressions/algorithm/tests/`.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

/// Every algorithm (the queueing leaky bucket with a 300 ms wait).
pub(crate) const ALL: [Algorithm; 8] = [
    Algorithm::Gcra,
    Algorithm::TokenBucket,
    Algorithm::LeakyBucket,
    Algorithm::LeakyBucketQueue {
        max_delay: Duration::from_millis(300),
    },
    Algorithm::FixedWindow,
    Algorithm::FixedWindowStaggered,
    Algorithm::SlidingWindow,
    Algorithm::SlidingWindowLog,
];

/// Runs requests at the given instants (ms) with cost 1; returns decisions.
fn run(alg: Algorithm, quota: Quota, at_ms: &[u64]) -> Vec<Decision> {
    let mut state = State::Fresh;
    at_ms
        .iter()
        .map(|&ms| {
            let (d, commit) = alg.check(&quota, &state, input(Nanos::from_millis(ms), 1));
            if let (true, Some(c)) = (d.allowed, commit) {
                state.apply(c);
            }
            d
        })
        .collect()
}

fn input(now: Nanos, cost: u64) -> Input {
    Input {
        now,
        cost,
        key_hash: 0x1234_5678_9abc,
    }
}

/// `force` at `ms` milliseconds with `cost`.
fn forced(alg: Algorithm, quota: &Quota, state: &State, ms: u64, cost: u64) -> (Decision, State) {
    alg.force(quota, state, input(Nanos::from_millis(ms), cost))
}

fn allowed(ds: &[Decision]) -> usize {
    ds.iter().filter(|d| d.allowed).count()
}

#[test]
fn bucket_algorithms_admit_19_in_the_first_second_of_per_second_10() {
    // 10 at t=0, then one every 100 ms: 100, 200, ... 900 ms.
    let times: Vec<u64> = (0..1000).step_by(10).collect();
    for alg in [
        Algorithm::Gcra,
        Algorithm::TokenBucket,
        Algorithm::LeakyBucket,
    ] {
        let mut at: Vec<u64> = vec![0; 10];
        at.extend(&times);
        let ds = run(alg, Quota::per_second(10), &at);
        assert_eq!(allowed(&ds), 19, "{alg:?}");
    }
}

#[test]
fn gcra_denies_the_eleventh_request_at_once_and_says_when() {
    let ds = run(Algorithm::Gcra, Quota::per_second(10), &[0; 11]);
    assert!(ds[..10].iter().all(|d| d.allowed));
    let last = ds[10];
    assert!(!last.allowed);
    assert_eq!(last.remaining, 0);
    assert_eq!(last.retry_after, Some(Nanos::from_millis(100)));
    assert_eq!(last.reset_after, Nanos::from_secs(1));
    assert_eq!(ds[0].remaining, 9);
    assert_eq!(ds[0].reset_after, Nanos::from_millis(100));
}

#[test]
fn with_burst_20_admits_20_at_once_then_the_sustained_rate() {
    let q = Quota::per_second(10).with_burst(20);
    let ds = run(Algorithm::Gcra, q, &[0; 21]);
    assert_eq!(allowed(&ds), 20);
    assert_eq!(ds[20].retry_after, Some(Nanos::from_millis(100)));
}

#[test]
fn leaky_bucket_queue_delays_instead_of_denying_up_to_max_delay() {
    let alg = Algorithm::LeakyBucketQueue {
        max_delay: Duration::from_millis(500),
    };
    let ds = run(alg, Quota::per_second(10), &[0; 16]);
    // 10 pass at once, 5 queued with delays 100..500 ms, the 16th denied.
    assert!(ds[..10].iter().all(|d| d.allowed && d.delay == Nanos::ZERO));
    for (i, d) in ds[10..15].iter().enumerate() {
        assert!(d.allowed);
        assert_eq!(d.delay, Nanos::from_millis(100 * (i as u64 + 1)));
    }
    assert!(!ds[15].allowed);
    assert_eq!(ds[15].retry_after, Some(Nanos::from_millis(100)));
}

#[test]
fn fixed_window_resets_at_the_clock_aligned_edge() {
    let ds = run(
        Algorithm::FixedWindow,
        Quota::per_second(3),
        &[900, 950, 990, 999, 1000],
    );
    assert_eq!(
        ds.iter().map(|d| d.allowed).collect::<Vec<_>>(),
        [true, true, true, false, true]
    );
    assert_eq!(ds[3].retry_after, Some(Nanos::from_millis(1)));
    assert_eq!(ds[0].reset_after, Nanos::from_millis(100));
    assert_eq!(ds[4].reset_after, Nanos::from_secs(1));
}

#[test]
fn staggered_windows_differ_per_key_but_stay_one_period_long() {
    let q = Quota::per_minute(1);
    let alg = Algorithm::FixedWindowStaggered;
    let offsets: Vec<Nanos> = [1u64, 2, 3, 4]
        .iter()
        .map(|&h| {
            let i = Input {
                now: Nanos::from_secs(1_000),
                cost: 1,
                key_hash: h * 7_919_000_000_000,
            };
            alg.check(&q, &State::Fresh, i).0.reset_after
        })
        .collect();
    assert!(offsets.windows(2).any(|w| w[0] != w[1]), "{offsets:?}");
    assert!(offsets
        .iter()
        .all(|r| *r > Nanos::ZERO && *r <= Nanos::from_secs(60)));
}

#[test]
fn sliding_window_weights_the_previous_window() {
    let q = Quota::per_second(10);
    // 10 in the first window, then at 1.5 s the previous window still
    // weighs 5: five more pass, the sixth does not.
    let mut at = vec![0; 10];
    at.extend([1500; 6]);
    let ds = run(Algorithm::SlidingWindow, q, &at);
    assert_eq!(allowed(&ds[10..]), 5);
    // The weight 10 × (1000 ms − e) / 1000 ms drops below 5 one nanosecond
    // after e = 500 ms.
    assert_eq!(ds[15].retry_after, Some(Nanos::new(1)));
}

#[test]
fn sliding_log_admits_at_most_the_limit_in_any_period() {
    let ds = run(
        Algorithm::SlidingWindowLog,
        Quota::per_second(3),
        &[0, 400, 800, 999, 1000, 1001],
    );
    assert_eq!(
        ds.iter().map(|d| d.allowed).collect::<Vec<_>>(),
        [true, true, true, false, true, false]
    );
    assert_eq!(ds[3].retry_after, Some(Nanos::from_millis(1)));
    assert_eq!(ds[5].retry_after, Some(Nanos::from_millis(399)));
}

#[test]
fn a_cost_above_capacity_is_never_admissible() {
    for alg in ALL {
        let mut state = State::Fresh;
        let (d, _) = alg.check(&Quota::per_second(5), &state, input(Nanos::ZERO, 100));
        assert!(!d.allowed, "{alg:?}");
        assert!(d.is_never_admissible(), "{alg:?}");
        state.apply(Commit::Replace(State::Fresh));
    }
}

#[test]
fn a_zero_cost_check_consumes_nothing() {
    for alg in ALL {
        let (d, commit) = alg.check(
            &Quota::per_second(5),
            &State::Fresh,
            input(Nanos::from_secs(3), 0),
        );
        assert!(d.allowed, "{alg:?}");
        assert!(commit.is_none(), "{alg:?}");
        assert_eq!(d.remaining, 5, "{alg:?}");
        assert_eq!(d.reset_after, Nanos::ZERO, "{alg:?}");
    }
}

#[test]
fn a_state_of_another_algorithm_counts_as_fresh() {
    let q = Quota::per_second(5);
    let foreign = State::Window {
        start: Nanos::ZERO,
        count: 5,
    };
    let (d, _) = Algorithm::Gcra.check(&q, &foreign, input(Nanos::ZERO, 1));
    assert!(d.allowed);
    assert_eq!(d.remaining, 4);
}

#[test]
fn huge_quotas_and_late_instants_do_not_overflow() {
    let q = Quota::new(1_000_000_000, Duration::from_secs(1));
    let late = Nanos::new(u64::MAX - 10);
    for alg in ALL {
        let (d, _) = alg.check(&q, &State::Fresh, input(late, 1));
        assert!(d.allowed, "{alg:?}");
    }
}

#[test]
fn windowed_algorithms_refuse_an_explicit_burst() {
    let q = Quota::per_second(10).with_burst(20);
    assert!(Algorithm::FixedWindow.validate(&q).is_err());
    assert!(Algorithm::SlidingWindowLog.validate(&q).is_err());
    assert!(Algorithm::Gcra.validate(&q).is_ok());
    assert!(Algorithm::SlidingWindowLog
        .validate(&Quota::per_second(MAX_LOG_LIMIT + 1))
        .is_err());
}

/// A sequence of (gap in µs, cost) steps.
fn steps() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0u64..400_000, 1u64..4), 1..120)
}

fn quotas() -> impl Strategy<Value = Quota> {
    (1u64..12, 1u64..2_000, prop::option::of(1u64..15)).prop_map(|(n, ms, burst)| {
        let q = Quota::new(n, Duration::from_millis(ms));
        match burst {
            Some(b) => q.with_burst(b),
            None => q,
        }
    })
}

/// Admitted (instant, cost) pairs; for the queue, the instant is when the
/// request is released (after its delay).
fn admitted(alg: Algorithm, quota: &Quota, steps: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut state = State::Fresh;
    let mut now = 1_000_000_000u64;
    let mut out = Vec::new();
    for &(gap_us, cost) in steps {
        now += gap_us * 1000;
        let (d, commit) = alg.check(quota, &state, input(Nanos::new(now), cost));
        if d.allowed {
            if let Some(c) = commit {
                state.apply(c);
            }
            out.push((now + d.delay.as_u64(), cost));
        }
    }
    out
}

fn max_in_span(admitted: &[(u64, u64)], span: u64) -> u64 {
    let mut best = 0;
    for (i, &(t0, _)) in admitted.iter().enumerate() {
        let sum: u64 = admitted[i..]
            .iter()
            .take_while(|(t, _)| *t < t0 + span)
            .map(|(_, c)| c)
            .sum();
        best = best.max(sum);
    }
    best
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// GCRA, token and leaky bucket (and the queue's release times): over any
    /// span L, at most burst + L / interval units.
    #[test]
    fn buckets_never_exceed_burst_plus_rate(quota in quotas(), steps in steps(), span_ms in 1u64..5_000) {
        let t = quota.emission_interval().as_u64();
        for alg in [Algorithm::Gcra, Algorithm::TokenBucket, Algorithm::LeakyBucket,
                    Algorithm::LeakyBucketQueue { max_delay: Duration::from_millis(700) }] {
            let got = admitted(alg, &quota, &steps);
            let span = span_ms * 1_000_000;
            let bound = quota.burst() + span.div_ceil(t);
            prop_assert!(max_in_span(&got, span) <= bound, "{:?}: {} > {}", alg, max_in_span(&got, span), bound);
        }
    }

    /// The three bucket forms admit exactly the same requests.
    #[test]
    fn gcra_token_and_leaky_bucket_agree(quota in quotas(), steps in steps()) {
        let g = admitted(Algorithm::Gcra, &quota, &steps);
        prop_assert_eq!(&g, &admitted(Algorithm::TokenBucket, &quota, &steps));
        prop_assert_eq!(&g, &admitted(Algorithm::LeakyBucket, &quota, &steps));
    }

    /// Fixed and sliding-counter windows: at most `limit` per aligned
    /// window; the log: at most `limit` in any span of one period.
    #[test]
    fn windows_never_exceed_the_limit(n in 1u64..12, ms in 1u64..2_000, steps in steps()) {
        let quota = Quota::new(n, Duration::from_millis(ms));
        let p = ms * 1_000_000;
        for alg in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
            let got = admitted(alg, &quota, &steps);
            let mut per_window = std::collections::HashMap::<u64, u64>::new();
            for (t, c) in got {
                *per_window.entry(t / p).or_default() += c;
            }
            prop_assert!(per_window.values().all(|&c| c <= n), "{:?}", alg);
        }
        let log = admitted(Algorithm::SlidingWindowLog, &quota, &steps);
        prop_assert!(max_in_span(&log, p) <= n);
    }

    /// A denied request retried exactly at `retry_after` is admitted, and one
    /// nanosecond earlier it is not: Retry-After is never early, never late.
    #[test]
    fn retry_after_is_exact(quota in quotas(), steps in steps(), which in 0usize..8) {
        let alg = ALL[which];
        let quota = if alg.is_windowed() { Quota::new(quota.limit(), quota.period()) } else { quota };
        let mut state = State::Fresh;
        let mut now = 1_000_000_000u64;
        for &(gap_us, cost) in &steps {
            now += gap_us * 1000;
            let (d, commit) = alg.check(&quota, &state, input(Nanos::new(now), cost));
            if d.allowed {
                if let Some(c) = commit { state.apply(c); }
                continue;
            }
            if let Some(r) = d.retry_after {
                prop_assert!(r > Nanos::ZERO);
                let at = Nanos::new(now + r.as_u64());
                prop_assert!(alg.check(&quota, &state, input(at, cost)).0.allowed, "{:?} not admitted at retry", alg);
                let before = Nanos::new(at.as_u64() - 1);
                prop_assert!(!alg.check(&quota, &state, input(before, cost)).0.allowed, "{:?} admitted before retry", alg);
            }
        }
    }

    /// At `reset_after` the full quota is back; one nanosecond earlier it
    /// is not yet.
    #[test]
    fn reset_after_is_exact(quota in quotas(), steps in steps(), which in 0usize..8) {
        let alg = ALL[which];
        let quota = if alg.is_windowed() { Quota::new(quota.limit(), quota.period()) } else { quota };
        let full = if alg.is_windowed() { quota.limit() } else { quota.burst() };
        let mut state = State::Fresh;
        let mut now = 1_000_000_000u64;
        for &(gap_us, cost) in &steps {
            now += gap_us * 1000;
            let (d, commit) = alg.check(&quota, &state, input(Nanos::new(now), cost));
            if let (true, Some(c)) = (d.allowed, commit) {
                state.apply(c);
            }
            let reset = d.reset_after.as_u64();
            let at = alg.peek(&quota, &state, Nanos::new(now + reset), 0x1234_5678_9abc);
            prop_assert_eq!(at.remaining, full, "{:?} not full at reset", alg);
            if reset > 0 {
                let before = alg.peek(&quota, &state, Nanos::new(now + reset - 1), 0x1234_5678_9abc);
                prop_assert!(before.remaining < full, "{:?} full before reset", alg);
            }
        }
    }
}

mod force;
mod refund;
