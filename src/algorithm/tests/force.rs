//! `force`: counting units whatever the limit says.

use proptest::prelude::*;

use super::*;

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
