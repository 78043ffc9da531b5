//! Unit and property tests of the pure algorithms: check, then force, then
//! refund.
//!
//! Longer than the ~600 lines a source file should keep to, on purpose: the
//! three parts share their helpers and proptest strategies, and
//! `proptest-regressions/algorithm/tests.txt` holds the seeds of past
//! failures for every property here (split, the moved properties would no
//! longer replay them).

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

// ---- force: counting units whatever the limit says ----

fn forced(alg: Algorithm, quota: &Quota, state: &State, ms: u64, cost: u64) -> (Decision, State) {
    alg.force(quota, state, input(Nanos::from_millis(ms), cost))
}

#[test]
fn gcra_force_moves_the_tat_past_the_capacity() {
    // 10/s: T = 100 ms, capacity 1 s.
    let q = Quota::per_second(10);
    let (d, s) = forced(Algorithm::Gcra, &q, &State::Fresh, 1_000, 4);
    assert_eq!(
        s,
        State::Gcra {
            tat: Nanos::from_millis(1_400)
        }
    );
    assert!(d.allowed);
    assert_eq!(
        (d.remaining, d.reset_after, d.retry_after),
        (6, Nanos::from_millis(400), None)
    );
    // 12 more at the same instant: TAT = 1 000 + 400 + 1 200 ms.
    let (d, s) = forced(Algorithm::Gcra, &q, &s, 1_000, 12);
    assert_eq!(
        s,
        State::Gcra {
            tat: Nanos::from_millis(2_600)
        }
    );
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert_eq!(d.reset_after, Nanos::from_millis(1_600));
    // One more fits when TAT + T - now <= 1 s: at 1 700 ms.
    assert_eq!(d.retry_after, Some(Nanos::from_millis(700)));
    assert!(
        !Algorithm::Gcra
            .check(&q, &s, input(Nanos::from_millis(1_699), 1))
            .0
            .allowed
    );
    assert!(
        Algorithm::Gcra
            .check(&q, &s, input(Nanos::from_millis(1_700), 1))
            .0
            .allowed
    );
    // A past TAT counts from now.
    let (_, s) = forced(Algorithm::Gcra, &q, &s, 10_000, 1);
    assert_eq!(
        s,
        State::Gcra {
            tat: Nanos::from_millis(10_100)
        }
    );
}

#[test]
fn token_bucket_force_keeps_a_debt_by_moving_the_refill_start() {
    let q = Quota::per_second(10);
    // Full bucket (1 s of refill), take 15 units = 1.5 s: 0.5 s of debt.
    let (d, s) = forced(Algorithm::TokenBucket, &q, &State::Fresh, 1_000, 15);
    assert_eq!(
        s,
        State::Bucket {
            level: Nanos::ZERO,
            last: Nanos::from_millis(1_500)
        }
    );
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert_eq!(d.reset_after, Nanos::from_millis(1_500));
    assert_eq!(d.retry_after, Some(Nanos::from_millis(600)));
    // Exactly as GCRA with the same history.
    let (g, _) = forced(Algorithm::Gcra, &q, &State::Fresh, 1_000, 15);
    assert_eq!(d, g);
    // While in debt, check reports the wait including the debt.
    let (c, _) = Algorithm::TokenBucket.check(&q, &s, input(Nanos::from_millis(1_200), 1));
    assert!(!c.allowed);
    assert_eq!(c.retry_after, Some(Nanos::from_millis(400)));
    assert_eq!(c.reset_after, Nanos::from_millis(1_300));
    // More debt on top of debt adds up.
    let (_, s) = forced(Algorithm::TokenBucket, &q, &s, 1_200, 2);
    assert_eq!(
        s,
        State::Bucket {
            level: Nanos::ZERO,
            last: Nanos::from_millis(1_700)
        }
    );
    // Within the level: plain subtraction.
    let (d, s) = forced(Algorithm::TokenBucket, &q, &State::Fresh, 1_000, 3);
    assert!(d.allowed);
    assert_eq!(
        s,
        State::Bucket {
            level: Nanos::from_millis(700),
            last: Nanos::from_millis(1_000)
        }
    );
}

#[test]
fn leaky_bucket_force_pours_without_a_ceiling() {
    let q = Quota::per_second(10);
    let (_, s) = forced(Algorithm::LeakyBucket, &q, &State::Fresh, 1_000, 8);
    let (d, s) = forced(Algorithm::LeakyBucket, &q, &s, 1_200, 8);
    // 800 ms poured, 200 ms drained, 800 ms more.
    assert_eq!(
        s,
        State::Bucket {
            level: Nanos::from_millis(1_400),
            last: Nanos::from_millis(1_200)
        }
    );
    assert!(!d.allowed);
    assert_eq!(d.reset_after, Nanos::from_millis(1_400));
    assert_eq!(d.retry_after, Some(Nanos::from_millis(500)));
}

#[test]
fn window_forces_add_to_the_current_count_and_end_with_it() {
    let q = Quota::per_second(5);
    let (d, s) = forced(Algorithm::FixedWindow, &q, &State::Fresh, 1_250, 7);
    assert_eq!(
        s,
        State::Window {
            start: Nanos::from_millis(1_000),
            count: 7
        }
    );
    assert!(!d.allowed);
    assert_eq!(
        (d.remaining, d.retry_after),
        (0, Some(Nanos::from_millis(750)))
    );
    assert!(
        Algorithm::FixedWindow
            .check(&q, &s, input(Nanos::from_millis(2_000), 5))
            .0
            .allowed
    );

    let (_, s) = forced(Algorithm::SlidingWindow, &q, &State::Fresh, 1_250, 7);
    let (d, s) = forced(Algorithm::SlidingWindow, &q, &s, 2_100, 1);
    assert_eq!(
        s,
        State::Sliding {
            start: Nanos::from_millis(2_000),
            prev: 7,
            curr: 1
        }
    );
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);

    let (_, s) = forced(Algorithm::SlidingWindowLog, &q, &State::Fresh, 1_000, 4);
    let (d, s) = forced(Algorithm::SlidingWindowLog, &q, &s, 1_500, 4);
    assert_eq!(
        s,
        State::Log(
            [
                (Nanos::from_millis(1_000), 4),
                (Nanos::from_millis(1_500), 4)
            ]
            .into()
        )
    );
    assert!(!d.allowed);
    // 8 counted against 5: one more fits once the first entry expires.
    assert_eq!(d.retry_after, Some(Nanos::from_millis(500)));
    let (d, s2) = forced(Algorithm::SlidingWindowLog, &q, &s, 2_600, 1);
    assert!(d.allowed);
    assert_eq!(s2, State::Log([(Nanos::from_millis(2_600), 1)].into()));
}

#[test]
fn a_zero_cost_force_changes_nothing() {
    for alg in ALL {
        let q = Quota::per_second(5);
        let (_, s) = forced(alg, &q, &State::Fresh, 1_000, 2);
        let (d, s2) = forced(alg, &q, &s, 1_000, 0);
        assert_eq!(s, s2, "{alg:?}");
        assert!(d.allowed);
    }
}

#[test]
fn force_within_the_limit_writes_what_check_commits() {
    for alg in ALL {
        let q = Quota::per_second(5);
        let mut checked = State::Fresh;
        let mut forced_state = State::Fresh;
        for (ms, cost) in [(1_000, 1), (1_100, 2), (1_900, 1), (2_300, 3)] {
            let (d, commit) = alg.check(&q, &checked, input(Nanos::from_millis(ms), cost));
            assert!(d.allowed, "{alg:?} at {ms}");
            if let Some(c) = commit {
                checked.apply(c);
            }
            let (f, next) = forced(alg, &q, &forced_state, ms, cost);
            forced_state = next;
            assert!(f.allowed, "{alg:?} at {ms}");
            assert_eq!(forced_state, checked, "{alg:?} at {ms}");
            let peek = alg.peek(&q, &checked, Nanos::from_millis(ms), 0x1234_5678_9abc);
            assert_eq!(
                (f.remaining, f.reset_after),
                (peek.remaining, peek.reset_after)
            );
        }
    }
}

/// A sequence of (gap in µs, cost, forced?) steps.
fn mixed_steps() -> impl Strategy<Value = Vec<(u64, u64, bool)>> {
    prop::collection::vec((0u64..400_000, 1u64..6, prop::bool::weighted(0.3)), 1..120)
}

/// Runs checks and forces; returns the admitted (instant, cost) pairs.
fn admitted_mixed(alg: Algorithm, quota: &Quota, steps: &[(u64, u64, bool)]) -> Vec<(u64, u64)> {
    let mut state = State::Fresh;
    let mut now = 1_000_000_000u64;
    let mut out = Vec::new();
    for &(gap_us, cost, force) in steps {
        now += gap_us * 1000;
        if force {
            state = alg.force(quota, &state, input(Nanos::new(now), cost)).1;
            continue;
        }
        let (d, commit) = alg.check(quota, &state, input(Nanos::new(now), cost));
        if d.allowed {
            if let Some(c) = commit {
                state.apply(c);
            }
            out.push((now, cost));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Forced units are counted identically by the three bucket forms.
    #[test]
    fn bucket_forms_agree_with_forced_units(quota in quotas(), steps in mixed_steps()) {
        let g = admitted_mixed(Algorithm::Gcra, &quota, &steps);
        prop_assert_eq!(&g, &admitted_mixed(Algorithm::TokenBucket, &quota, &steps));
        prop_assert_eq!(&g, &admitted_mixed(Algorithm::LeakyBucket, &quota, &steps));
    }

    /// After forced units, `retry_after` and `reset_after` (of checks and
    /// of the forces themselves) stay exact.
    #[test]
    fn retry_and_reset_stay_exact_over_forced_units(quota in quotas(), steps in mixed_steps(), which in 0usize..8) {
        let alg = ALL[which];
        let quota = if alg.is_windowed() { Quota::new(quota.limit(), quota.period()) } else { quota };
        let full = if alg.is_windowed() { quota.limit() } else { quota.burst() };
        let h = 0x1234_5678_9abc;
        let mut state = State::Fresh;
        let mut now = 1_000_000_000u64;
        for &(gap_us, cost, force) in &steps {
            now += gap_us * 1000;
            let (d, retry_cost) = if force {
                let (d, next) = alg.force(&quota, &state, input(Nanos::new(now), cost));
                state = next;
                (d, 1)
            } else {
                let (d, commit) = alg.check(&quota, &state, input(Nanos::new(now), cost));
                if let (true, Some(c)) = (d.allowed, commit) {
                    state.apply(c);
                }
                (d, cost)
            };
            let reset = d.reset_after.as_u64();
            prop_assert_eq!(alg.peek(&quota, &state, Nanos::new(now + reset), h).remaining, full, "{:?} not full at reset", alg);
            if reset > 0 {
                prop_assert!(alg.peek(&quota, &state, Nanos::new(now + reset - 1), h).remaining < full, "{:?} full before reset", alg);
            }
            if force && d.retry_after.is_none() {
                prop_assert!(alg.check(&quota, &state, input(Nanos::new(now), 1)).0.allowed);
            }
            if let (false, Some(r)) = (d.allowed && !force, d.retry_after) {
                let at = now + r.as_u64();
                prop_assert!(alg.check(&quota, &state, input(Nanos::new(at), retry_cost)).0.allowed, "{:?} not admitted at retry", alg);
                prop_assert!(!alg.check(&quota, &state, input(Nanos::new(at - 1), retry_cost)).0.allowed, "{:?} admitted before retry", alg);
            }
        }
    }
}

// ---- refund: giving back what a check admitted ----

/// (gap in µs, cost, action, pick): action 0 keeps the request, 1 refunds
/// it at once (same instant), 2 keeps it and then refunds an earlier kept
/// request (`pick` modulo how many are kept) at that request's instant.
fn refund_steps() -> impl Strategy<Value = Vec<(u64, u64, u8, usize)>> {
    prop::collection::vec((0u64..400_000, 1u64..4, 0u8..3, any::<usize>()), 1..120)
}

/// Runs checks and refunds; returns the admitted (instant, cost) pairs
/// that were not refunded (for the queue, the instant it is released).
/// Late refunds (action 2) only when `late`.
fn admitted_net(
    alg: Algorithm,
    quota: &Quota,
    steps: &[(u64, u64, u8, usize)],
    late: bool,
) -> Vec<(u64, u64)> {
    let mut state = State::Fresh;
    let mut now = 1_000_000_000u64;
    // (released at, cost, checked at)
    let mut kept: Vec<(u64, u64, u64)> = Vec::new();
    for &(gap_us, cost, action, pick) in steps {
        now += gap_us * 1000;
        let at = input(Nanos::new(now), cost);
        let (d, commit) = alg.check(quota, &state, at);
        if d.allowed {
            if let Some(c) = commit {
                state.apply(c);
            }
            if action == 1 {
                state = alg.refund(quota, &state, at);
            } else {
                kept.push((now + d.delay.as_u64(), cost, now));
            }
        }
        if action == 2 && late && !kept.is_empty() {
            let (_, c, t) = kept.remove(pick % kept.len());
            state = alg.refund(quota, &state, input(Nanos::new(t), c));
        }
    }
    kept.into_iter().map(|(t, c, _)| (t, c)).collect()
}

#[test]
fn refunds_follow_the_table_of_algorithm_refund() {
    let q = Quota::per_second(10); // T = 100 ms, D = 1 s
    let at = input(Nanos::from_millis(1_250), 2);
    let refund = |alg: Algorithm, s: State| alg.refund(&q, &s, at);
    assert_eq!(
        refund(
            Algorithm::Gcra,
            State::Gcra {
                tat: Nanos::from_millis(1_600)
            }
        ),
        State::Gcra {
            tat: Nanos::from_millis(1_400)
        }
    );
    assert_eq!(
        refund(
            Algorithm::Gcra,
            State::Gcra {
                tat: Nanos::from_millis(150)
            }
        ),
        State::Gcra { tat: Nanos::ZERO }
    );
    let bucket = |level: u64| State::Bucket {
        level: Nanos::from_millis(level),
        last: Nanos::from_millis(1_000),
    };
    assert_eq!(refund(Algorithm::TokenBucket, bucket(300)), bucket(500));
    assert_eq!(refund(Algorithm::TokenBucket, bucket(900)), bucket(1_000));
    assert_eq!(refund(Algorithm::LeakyBucket, bucket(300)), bucket(100));
    assert_eq!(refund(Algorithm::LeakyBucket, bucket(150)), bucket(0));
    let window = |start: u64, count: u64| State::Window {
        start: Nanos::from_millis(start),
        count,
    };
    assert_eq!(
        refund(Algorithm::FixedWindow, window(1_000, 3)),
        window(1_000, 1)
    );
    assert_eq!(
        refund(Algorithm::FixedWindow, window(1_000, 1)),
        window(1_000, 0)
    );
    // The window has moved on: nothing of it is left to refund.
    assert_eq!(
        refund(Algorithm::FixedWindow, window(2_000, 3)),
        window(2_000, 3)
    );
    let sliding = |start: u64, prev: u64, curr: u64| State::Sliding {
        start: Nanos::from_millis(start),
        prev,
        curr,
    };
    assert_eq!(
        refund(Algorithm::SlidingWindow, sliding(1_000, 4, 3)),
        sliding(1_000, 4, 1)
    );
    assert_eq!(
        refund(Algorithm::SlidingWindow, sliding(2_000, 3, 5)),
        sliding(2_000, 1, 5)
    );
    assert_eq!(
        refund(Algorithm::SlidingWindow, sliding(3_000, 3, 5)),
        sliding(3_000, 3, 5)
    );
    let log = |entries: &[(u64, u64)]| {
        State::Log(
            entries
                .iter()
                .map(|&(t, c)| (Nanos::from_millis(t), c))
                .collect(),
        )
    };
    assert_eq!(
        refund(
            Algorithm::SlidingWindowLog,
            log(&[(1_000, 1), (1_250, 3), (1_300, 1)])
        ),
        log(&[(1_000, 1), (1_250, 1), (1_300, 1)])
    );
    assert_eq!(
        refund(Algorithm::SlidingWindowLog, log(&[(1_000, 1), (1_250, 2)])),
        log(&[(1_000, 1)])
    );
    assert_eq!(
        refund(Algorithm::SlidingWindowLog, log(&[(1_000, 1)])),
        log(&[(1_000, 1)])
    );
    // Fresh keys, other kinds of state and a zero cost: unchanged.
    for alg in ALL {
        assert_eq!(refund(alg, State::Fresh), State::Fresh, "{alg:?}");
        let s = window(1_000, 3);
        let other = if alg.is_windowed()
            && alg != Algorithm::SlidingWindow
            && alg != Algorithm::SlidingWindowLog
        {
            bucket(300)
        } else {
            s
        };
        assert_eq!(refund(alg, other.clone()), other, "{alg:?}");
        let (_, used) = forced(alg, &q, &State::Fresh, 1_250, 2);
        assert_eq!(
            alg.refund(&q, &used, input(Nanos::from_millis(1_250), 0)),
            used,
            "{alg:?}"
        );
    }
}

#[test]
fn staggered_refunds_use_the_key_s_own_window() {
    let q = Quota::per_minute(5);
    let alg = Algorithm::FixedWindowStaggered;
    let at = Input {
        now: Nanos::from_secs(1_000),
        cost: 2,
        key_hash: 7_919_000_000_000,
    };
    let (d, commit) = alg.check(&q, &State::Fresh, at);
    assert!(d.allowed);
    let mut state = State::Fresh;
    if let Some(c) = commit {
        state.apply(c);
    }
    assert_eq!(alg.peek(&q, &state, at.now, at.key_hash).remaining, 3);
    let back = alg.refund(&q, &state, at);
    assert_eq!(alg.peek(&q, &back, at.now, at.key_hash).remaining, 5);
    // With another key's offset, the window holding the instant differs.
    let other = Input {
        key_hash: at.key_hash + 30_000_000_000,
        ..at
    };
    assert_eq!(alg.refund(&q, &state, other), state);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A check admitted at `t` and refunded at `t` leaves a state that
    /// peeks at `t` exactly as before the check, and admits exactly the
    /// same requests afterwards: every algorithm, no exception.
    #[test]
    fn a_refund_at_the_same_instant_undoes_the_check(
        quota in quotas(), steps in steps(), which in 0usize..8, cost in 1u64..4, gaps in prop::collection::vec(0u64..1_500_000, 1..6),
    ) {
        let alg = ALL[which];
        let quota = if alg.is_windowed() { Quota::new(quota.limit(), quota.period()) } else { quota };
        let h = 0x1234_5678_9abc;
        let mut state = State::Fresh;
        let mut now = 1_000_000_000u64;
        for &(gap_us, c) in &steps {
            now += gap_us * 1000;
            let (d, commit) = alg.check(&quota, &state, input(Nanos::new(now), c));
            if let (true, Some(commit)) = (d.allowed, commit) {
                state.apply(commit);
            }
        }
        let at = input(Nanos::new(now), cost);
        let (d, commit) = alg.check(&quota, &state, at);
        prop_assume!(d.allowed);
        let mut after = state.clone();
        if let Some(commit) = commit {
            after.apply(commit);
        }
        let back = alg.refund(&quota, &after, at);
        prop_assert_eq!(alg.peek(&quota, &back, at.now, h), alg.peek(&quota, &state, at.now, h), "{:?}", alg);
        prop_assert_eq!(alg.check(&quota, &back, at).0, d, "{:?}", alg);
        // And later on, the same decisions as if the check never happened.
        let (mut a, mut b) = (state, back);
        let mut t = now;
        for &gap_us in &gaps {
            t += gap_us * 1000;
            let i = input(Nanos::new(t), cost);
            let (da, ca) = alg.check(&quota, &a, i);
            let (db, cb) = alg.check(&quota, &b, i);
            prop_assert_eq!(da, db, "{:?} at +{} ns", alg, t - now);
            if let (Some(ca), Some(cb)) = (ca, cb) {
                if da.allowed {
                    a.apply(ca);
                    b.apply(cb);
                }
            }
        }
    }

    /// With refunds at once, the buckets never let more than burst +
    /// L / interval units (of those not refunded) through over any span L,
    /// and the three bucket forms still admit exactly the same requests.
    #[test]
    fn refunded_buckets_never_exceed_burst_plus_rate(quota in quotas(), steps in refund_steps(), span_ms in 1u64..5_000) {
        let t = quota.emission_interval().as_u64();
        let span = span_ms * 1_000_000;
        let bound = quota.burst() + span.div_ceil(t);
        for alg in [Algorithm::Gcra, Algorithm::TokenBucket, Algorithm::LeakyBucket,
                    Algorithm::LeakyBucketQueue { max_delay: Duration::from_millis(700) }] {
            let got = admitted_net(alg, &quota, &steps, false);
            prop_assert!(max_in_span(&got, span) <= bound, "{:?}: {} > {}", alg, max_in_span(&got, span), bound);
        }
        let g = admitted_net(Algorithm::Gcra, &quota, &steps, false);
        prop_assert_eq!(&g, &admitted_net(Algorithm::TokenBucket, &quota, &steps, false));
        prop_assert_eq!(&g, &admitted_net(Algorithm::LeakyBucket, &quota, &steps, false));
    }

    /// The windows stay within their limit with refunds at once **and**
    /// late ones (any earlier request refunded at its own instant): at most
    /// `limit` kept units per aligned window (fixed, counter), in any span
    /// of one period (log).
    #[test]
    fn refunded_windows_never_exceed_the_limit(n in 1u64..12, ms in 1u64..2_000, steps in refund_steps()) {
        let quota = Quota::new(n, Duration::from_millis(ms));
        let p = ms * 1_000_000;
        for alg in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
            let got = admitted_net(alg, &quota, &steps, true);
            let mut per_window = std::collections::HashMap::<u64, u64>::new();
            for (t, c) in got {
                *per_window.entry(t / p).or_default() += c;
            }
            prop_assert!(per_window.values().all(|&c| c <= n), "{:?}", alg);
        }
        let log = admitted_net(Algorithm::SlidingWindowLog, &quota, &steps, true);
        prop_assert!(max_in_span(&log, p) <= n);
    }
}

// The worked examples of "Counting over the limit" and "Refunds" on
// `Algorithm`.
#[test]
fn forcing_15_units_into_a_gcra_of_10_leaves_a_debt_of_half_a_second() {
    let quota = Quota::per_second(10); // T = 100 ms, burst 10
    let now = Nanos::from_secs(100);
    let input = Input {
        now,
        cost: 15,
        key_hash: 0,
    };
    let (d, state) = Algorithm::Gcra.force(&quota, &State::Fresh, input);
    assert_eq!(
        state,
        State::Gcra {
            tat: Nanos::from_millis(101_500)
        }
    );
    assert!(!d.allowed); // 15 did not fit in 10
    assert_eq!(d.remaining, 0);
    assert_eq!(d.reset_after, Nanos::from_millis(1_500));
    // one more fits once the TAT is back within the capacity (1 s)
    assert_eq!(d.retry_after, Some(Nanos::from_millis(600)));
}

#[test]
fn a_refund_at_the_acquire_instant_restores_the_state_exactly() {
    let quota = Quota::per_second(10); // T = 100 ms, burst 10
    let input = Input {
        now: Nanos::from_secs(100),
        cost: 3,
        key_hash: 0,
    };
    let before = State::Gcra {
        tat: Nanos::from_millis(100_200),
    };
    let (d, commit) = Algorithm::Gcra.check(&quota, &before, input);
    assert_eq!(d.remaining, 5);
    let mut state = before.clone();
    state.apply(commit.unwrap());
    assert_eq!(
        state,
        State::Gcra {
            tat: Nanos::from_millis(100_500)
        }
    );

    let refunded = Algorithm::Gcra.refund(&quota, &state, input);
    assert_eq!(refunded, before);
    assert_eq!(
        Algorithm::Gcra
            .peek(&quota, &refunded, input.now, 0)
            .remaining,
        8
    );
    // Nothing to refund on a fresh key.
    assert_eq!(
        Algorithm::Gcra.refund(&quota, &State::Fresh, input),
        State::Fresh
    );
}
