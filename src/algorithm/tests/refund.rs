//! `refund`: giving back what a check admitted.

use proptest::prelude::*;

use super::*;

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
