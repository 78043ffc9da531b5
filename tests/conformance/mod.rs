//! The conformance table: scenarios (policies, algorithm, clock steps,
//! costs) with the exact decisions and header values every backend must
//! produce. A backend is correct when it passes the whole table; when two
//! backends disagree, a scenario here pins the bug first.
//!
//! A backend is driven through a closure `(op, set, now) -> Outcome`, so
//! the memory backend (`acquire_at`, `refund_at`) and a real Redis (a
//! script given the time) run the very same rows. Instants are offsets
//! from `BASE`, a multiple of a minute since the Unix epoch, so
//! clock-aligned windows line up.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use tollgate::headers::{self, HeaderStyle, PolicyHeader, ResetFormat};
use tollgate::key::Key;
use tollgate::{
    backend::Outcome,
    policy::{LimitSet, Policy},
    time::Nanos,
    Algorithm, Quota,
};

/// 2023-11-14T22:14:00Z: a whole minute.
pub const BASE: Nanos = Nanos::from_secs(1_700_000_040);

const MS: u64 = 1_000_000;

/// What a step asks the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `acquire` at the step's instant (`Backend::acquire`).
    Acquire,
    /// `refund` of what an acquire at the step's instant counted, with the
    /// step's cost (`Backend::refund`); its answer is the peek at that
    /// instant afterwards.
    Refund,
}

/// One request of a scenario.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Acquire, or refund.
    pub op: Op,
    /// Milliseconds after [`BASE`].
    pub at_ms: u64,
    /// Cost for every policy of the scenario.
    pub cost: u64,
    /// Whether the set passes.
    pub allowed: bool,
    /// Per policy: (allowed, remaining, reset_after ns, retry_after ns, delay ns).
    pub decisions: &'static [(bool, u64, u64, Option<u64>, u64)],
    /// `X-RateLimit-Remaining`, `X-RateLimit-Reset`, `Retry-After` ("-" for none).
    pub legacy: [&'static str; 3],
    /// `RateLimit`, or "" to derive it from `legacy` (single policy).
    pub ietf: &'static str,
}

/// A scenario: policies checked together for one key, and its steps.
pub struct Scenario {
    pub name: &'static str,
    pub policies: Vec<Policy>,
    pub steps: Vec<Step>,
}

const fn allow(
    at_ms: u64,
    cost: u64,
    d: &'static [(bool, u64, u64, Option<u64>, u64)],
    legacy: [&'static str; 3],
) -> Step {
    Step {
        op: Op::Acquire,
        at_ms,
        cost,
        allowed: true,
        decisions: d,
        legacy,
        ietf: "",
    }
}

const fn deny(
    at_ms: u64,
    cost: u64,
    d: &'static [(bool, u64, u64, Option<u64>, u64)],
    legacy: [&'static str; 3],
) -> Step {
    Step {
        allowed: false,
        ..allow(at_ms, cost, d, legacy)
    }
}

/// A refund of `cost` units acquired at `at_ms`; `d` and `legacy` are the
/// answer: the peek at `at_ms` after the refund (of a request of `cost`;
/// it passes).
const fn refund(
    at_ms: u64,
    cost: u64,
    d: &'static [(bool, u64, u64, Option<u64>, u64)],
    legacy: [&'static str; 3],
) -> Step {
    Step {
        op: Op::Refund,
        ..allow(at_ms, cost, d, legacy)
    }
}

/// GCRA, token bucket and leaky bucket (policing) admit the same requests
/// with the same numbers: one step list for the three.
fn bucket_steps() -> Vec<Step> {
    vec![
        // 4/s: interval 250 ms, a full bucket spans 1 s.
        allow(0, 1, &[(true, 3, 250 * MS, None, 0)], ["3", "1", "-"]),
        allow(0, 1, &[(true, 2, 500 * MS, None, 0)], ["2", "1", "-"]),
        allow(0, 1, &[(true, 1, 750 * MS, None, 0)], ["1", "1", "-"]),
        allow(0, 1, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
        deny(
            0,
            1,
            &[(false, 0, 1000 * MS, Some(250 * MS), 0)],
            ["0", "1", "1"],
        ),
        deny(
            100,
            1,
            &[(false, 0, 900 * MS, Some(150 * MS), 0)],
            ["0", "1", "1"],
        ),
        allow(250, 1, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
        allow(1500, 1, &[(true, 3, 250 * MS, None, 0)], ["3", "1", "-"]),
        allow(1500, 3, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
        // Cost 5 exceeds the bucket of 4: never admissible, no Retry-After.
        deny(1600, 5, &[(false, 0, 900 * MS, None, 0)], ["0", "1", "-"]),
        // Two and a half seconds idle: the bucket is full again.
        allow(4000, 4, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
    ]
}

/// The three bucket forms, with refunds at the latest instant (a refund
/// at an earlier instant answers a peek back in time, where the forms'
/// states differ).
fn bucket_refund_steps() -> Vec<Step> {
    vec![
        allow(0, 1, &[(true, 3, 250 * MS, None, 0)], ["3", "1", "-"]),
        allow(0, 1, &[(true, 2, 500 * MS, None, 0)], ["2", "1", "-"]),
        refund(0, 1, &[(true, 3, 250 * MS, None, 0)], ["3", "1", "-"]),
        allow(0, 3, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
        deny(
            0,
            1,
            &[(false, 0, 1000 * MS, Some(250 * MS), 0)],
            ["0", "1", "1"],
        ),
        refund(0, 2, &[(true, 2, 500 * MS, None, 0)], ["2", "1", "-"]),
        allow(100, 1, &[(true, 1, 650 * MS, None, 0)], ["1", "1", "-"]),
        refund(100, 1, &[(true, 2, 400 * MS, None, 0)], ["2", "1", "-"]),
        allow(600, 4, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
        refund(600, 1, &[(true, 1, 750 * MS, None, 0)], ["1", "1", "-"]),
        allow(600, 1, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
    ]
}

/// Refunds, for every algorithm: an acquire, a refund at its instant, then
/// the next decisions; late refunds for the windows (nothing once the
/// window is gone; the sliding counter's rolled-over `prev`; a log entry).
fn refund_scenarios() -> Vec<Scenario> {
    let per_sec_4 = Quota::per_second(4);
    vec![
        Scenario {
            name: "refund_gcra",
            policies: vec![Policy::new("r-gcra", per_sec_4).with_algorithm(Algorithm::Gcra)],
            steps: bucket_refund_steps(),
        },
        Scenario {
            name: "refund_token_bucket",
            policies: vec![Policy::new("r-tb", per_sec_4).with_algorithm(Algorithm::TokenBucket)],
            steps: bucket_refund_steps(),
        },
        Scenario {
            name: "refund_leaky_bucket",
            policies: vec![Policy::new("r-lb", per_sec_4).with_algorithm(Algorithm::LeakyBucket)],
            steps: bucket_refund_steps(),
        },
        Scenario {
            name: "refund_leaky_bucket_queue",
            policies: vec![Policy::new("r-queue", per_sec_4).with_algorithm(
                Algorithm::LeakyBucketQueue {
                    max_delay: Duration::from_millis(600),
                },
            )],
            steps: vec![
                allow(0, 1, &[(true, 3, 250 * MS, None, 0)], ["3", "1", "-"]),
                allow(0, 3, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
                allow(
                    0,
                    1,
                    &[(true, 0, 1250 * MS, None, 250 * MS)],
                    ["0", "2", "-"],
                ),
                // The queued request given back: the next one would be
                // queued for 250 ms again.
                refund(
                    0,
                    1,
                    &[(true, 0, 1000 * MS, None, 250 * MS)],
                    ["0", "1", "-"],
                ),
                refund(0, 2, &[(true, 2, 500 * MS, None, 0)], ["2", "1", "-"]),
                allow(
                    0,
                    3,
                    &[(true, 0, 1250 * MS, None, 250 * MS)],
                    ["0", "2", "-"],
                ),
            ],
        },
        Scenario {
            name: "refund_fixed_window",
            policies: vec![
                Policy::new("r-fixed", Quota::per_second(3)).with_algorithm(Algorithm::FixedWindow)
            ],
            steps: vec![
                allow(100, 1, &[(true, 2, 900 * MS, None, 0)], ["2", "1", "-"]),
                allow(200, 2, &[(true, 0, 800 * MS, None, 0)], ["0", "1", "-"]),
                deny(
                    300,
                    1,
                    &[(false, 0, 700 * MS, Some(700 * MS), 0)],
                    ["0", "1", "1"],
                ),
                // The count of the window holding 200 ms loses 2.
                refund(200, 2, &[(true, 2, 800 * MS, None, 0)], ["2", "1", "-"]),
                allow(300, 2, &[(true, 0, 700 * MS, None, 0)], ["0", "1", "-"]),
                allow(1100, 1, &[(true, 2, 900 * MS, None, 0)], ["2", "1", "-"]),
                // That window is gone: nothing is taken from the new one
                // (and a peek at 300 ms sees no count of its window).
                refund(300, 2, &[(true, 3, 0, None, 0)], ["3", "0", "-"]),
                allow(1100, 2, &[(true, 0, 900 * MS, None, 0)], ["0", "1", "-"]),
            ],
        },
        Scenario {
            // "client-a" starts its windows at hh:mm:50.933101820.
            name: "refund_fixed_window_staggered",
            policies: vec![Policy::new("r-staggered", Quota::per_minute(2))
                .with_algorithm(Algorithm::FixedWindowStaggered)],
            steps: vec![
                allow(
                    0,
                    1,
                    &[(true, 1, 50_933_101_820, None, 0)],
                    ["1", "51", "-"],
                ),
                refund(0, 1, &[(true, 2, 0, None, 0)], ["2", "0", "-"]),
                allow(
                    0,
                    2,
                    &[(true, 0, 50_933_101_820, None, 0)],
                    ["0", "51", "-"],
                ),
                refund(
                    0,
                    1,
                    &[(true, 1, 50_933_101_820, None, 0)],
                    ["1", "51", "-"],
                ),
                allow(
                    50_000,
                    1,
                    &[(true, 0, 933_101_820, None, 0)],
                    ["0", "1", "-"],
                ),
                allow(
                    51_000,
                    1,
                    &[(true, 1, 59_933_101_820, None, 0)],
                    ["1", "60", "-"],
                ),
                // 50 s is in the previous window of this key: nothing left.
                refund(50_000, 1, &[(true, 2, 0, None, 0)], ["2", "0", "-"]),
                allow(
                    51_000,
                    1,
                    &[(true, 0, 59_933_101_820, None, 0)],
                    ["0", "60", "-"],
                ),
            ],
        },
        Scenario {
            name: "refund_sliding_window",
            policies: vec![
                Policy::new("r-sliding", per_sec_4).with_algorithm(Algorithm::SlidingWindow)
            ],
            steps: vec![
                allow(100, 1, &[(true, 3, 900_000_001, None, 0)], ["3", "1", "-"]),
                allow(
                    200,
                    1,
                    &[(true, 2, 1_300_000_001, None, 0)],
                    ["2", "2", "-"],
                ),
                refund(200, 1, &[(true, 3, 800_000_001, None, 0)], ["3", "1", "-"]),
                allow(
                    300,
                    3,
                    &[(true, 0, 1_450_000_001, None, 0)],
                    ["0", "2", "-"],
                ),
                // The previous window weighs floor(4 × 0.75) = 3.
                allow(1250, 1, &[(true, 0, 750_000_001, None, 0)], ["0", "1", "-"]),
                // Rolled over since: the 3 units come off `prev` (a peek at
                // 300 ms sees neither stored window).
                refund(300, 3, &[(true, 4, 0, None, 0)], ["4", "0", "-"]),
                // prev 1 weighs floor(0.75) = 0: three more fit.
                allow(
                    1250,
                    3,
                    &[(true, 0, 1_500_000_001, None, 0)],
                    ["0", "2", "-"],
                ),
            ],
        },
        Scenario {
            name: "refund_sliding_window_log",
            policies: vec![Policy::new("r-log", Quota::per_second(3))
                .with_algorithm(Algorithm::SlidingWindowLog)],
            steps: vec![
                allow(0, 1, &[(true, 2, 1000 * MS, None, 0)], ["2", "1", "-"]),
                allow(400, 2, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
                deny(
                    500,
                    1,
                    &[(false, 0, 900 * MS, Some(500 * MS), 0)],
                    ["0", "1", "1"],
                ),
                // The entry of 400 ms keeps 1 of its 2.
                refund(400, 1, &[(true, 1, 1000 * MS, None, 0)], ["1", "1", "-"]),
                allow(500, 1, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
                allow(1000, 1, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
                // A late refund: the entry of 500 ms goes (the peek at 500
                // ms sees the entries of 400 and 1000 ms).
                refund(500, 1, &[(true, 1, 1500 * MS, None, 0)], ["1", "2", "-"]),
                allow(1000, 1, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
            ],
        },
        Scenario {
            // Two limits refunded together: each gets its own unit back
            // (the peek reports both), and the next acquire sees exactly
            // the counts after the first.
            name: "refund_two_limits",
            policies: vec![
                Policy::new("r-second", Quota::per_second(2)),
                Policy::new("r-minute", Quota::per_minute(3)),
            ],
            steps: vec![
                Step {
                    ietf: "\"r-second\";r=1;t=1, \"r-minute\";r=2;t=20",
                    ..allow(
                        0,
                        1,
                        &[
                            (true, 1, 500 * MS, None, 0),
                            (true, 2, 20_000 * MS, None, 0),
                        ],
                        ["1", "1", "-"],
                    )
                },
                Step {
                    ietf: "\"r-second\";r=0;t=1, \"r-minute\";r=1;t=40",
                    ..allow(
                        0,
                        1,
                        &[
                            (true, 0, 1000 * MS, None, 0),
                            (true, 1, 40_000 * MS, None, 0),
                        ],
                        ["0", "1", "-"],
                    )
                },
                Step {
                    ietf: "\"r-second\";r=1;t=1, \"r-minute\";r=2;t=20",
                    ..refund(
                        0,
                        1,
                        &[
                            (true, 1, 500 * MS, None, 0),
                            (true, 2, 20_000 * MS, None, 0),
                        ],
                        ["1", "1", "-"],
                    )
                },
                Step {
                    ietf: "\"r-second\";r=0;t=1, \"r-minute\";r=1;t=40",
                    ..allow(
                        0,
                        1,
                        &[
                            (true, 0, 1000 * MS, None, 0),
                            (true, 1, 40_000 * MS, None, 0),
                        ],
                        ["0", "1", "-"],
                    )
                },
            ],
        },
    ]
}

/// Every scenario.
pub fn table() -> Vec<Scenario> {
    let per_sec_4 = Quota::per_second(4);
    let mut table = vec![
        Scenario {
            name: "gcra",
            policies: vec![Policy::new("gcra", per_sec_4).with_algorithm(Algorithm::Gcra)],
            steps: bucket_steps(),
        },
        Scenario {
            name: "token_bucket",
            policies: vec![Policy::new("tb", per_sec_4).with_algorithm(Algorithm::TokenBucket)],
            steps: bucket_steps(),
        },
        Scenario {
            name: "leaky_bucket",
            policies: vec![Policy::new("lb", per_sec_4).with_algorithm(Algorithm::LeakyBucket)],
            steps: bucket_steps(),
        },
        Scenario {
            name: "leaky_bucket_queue",
            policies: vec![Policy::new("queue", per_sec_4).with_algorithm(
                Algorithm::LeakyBucketQueue {
                    max_delay: Duration::from_millis(600),
                },
            )],
            steps: vec![
                allow(0, 1, &[(true, 3, 250 * MS, None, 0)], ["3", "1", "-"]),
                allow(0, 1, &[(true, 2, 500 * MS, None, 0)], ["2", "1", "-"]),
                allow(0, 1, &[(true, 1, 750 * MS, None, 0)], ["1", "1", "-"]),
                allow(0, 1, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
                // Queued: passed on after 250 and 500 ms.
                allow(
                    0,
                    1,
                    &[(true, 0, 1250 * MS, None, 250 * MS)],
                    ["0", "2", "-"],
                ),
                allow(
                    0,
                    1,
                    &[(true, 0, 1500 * MS, None, 500 * MS)],
                    ["0", "2", "-"],
                ),
                // A 750 ms wait is over the 600 ms maximum.
                deny(
                    0,
                    1,
                    &[(false, 0, 1500 * MS, Some(150 * MS), 0)],
                    ["0", "2", "1"],
                ),
                allow(
                    200,
                    1,
                    &[(true, 0, 1550 * MS, None, 550 * MS)],
                    ["0", "2", "-"],
                ),
                deny(200, 5, &[(false, 0, 1550 * MS, None, 0)], ["0", "2", "-"]),
            ],
        },
        Scenario {
            name: "fixed_window",
            policies: vec![
                Policy::new("fixed", Quota::per_second(3)).with_algorithm(Algorithm::FixedWindow)
            ],
            steps: vec![
                allow(100, 1, &[(true, 2, 900 * MS, None, 0)], ["2", "1", "-"]),
                allow(200, 1, &[(true, 1, 800 * MS, None, 0)], ["1", "1", "-"]),
                allow(300, 1, &[(true, 0, 700 * MS, None, 0)], ["0", "1", "-"]),
                deny(999, 1, &[(false, 0, MS, Some(MS), 0)], ["0", "1", "1"]),
                allow(1000, 1, &[(true, 2, 1000 * MS, None, 0)], ["2", "1", "-"]),
                allow(1500, 2, &[(true, 0, 500 * MS, None, 0)], ["0", "1", "-"]),
                deny(1600, 4, &[(false, 0, 400 * MS, None, 0)], ["0", "1", "-"]),
            ],
        },
        Scenario {
            // The key "client-a" hashes to an offset of 50.933101820 s in a
            // minute: its windows start at hh:mm:50.933101820.
            name: "fixed_window_staggered",
            policies: vec![Policy::new("staggered", Quota::per_minute(2))
                .with_algorithm(Algorithm::FixedWindowStaggered)],
            steps: vec![
                allow(
                    0,
                    1,
                    &[(true, 1, 50_933_101_820, None, 0)],
                    ["1", "51", "-"],
                ),
                allow(
                    0,
                    1,
                    &[(true, 0, 50_933_101_820, None, 0)],
                    ["0", "51", "-"],
                ),
                deny(
                    50_000,
                    1,
                    &[(false, 0, 933_101_820, Some(933_101_820), 0)],
                    ["0", "1", "1"],
                ),
                allow(
                    51_000,
                    1,
                    &[(true, 1, 59_933_101_820, None, 0)],
                    ["1", "60", "-"],
                ),
            ],
        },
        Scenario {
            name: "sliding_window",
            policies: vec![
                Policy::new("sliding", per_sec_4).with_algorithm(Algorithm::SlidingWindow)
            ],
            steps: vec![
                allow(100, 1, &[(true, 3, 900_000_001, None, 0)], ["3", "1", "-"]),
                allow(
                    200,
                    1,
                    &[(true, 2, 1_300_000_001, None, 0)],
                    ["2", "2", "-"],
                ),
                allow(
                    300,
                    1,
                    &[(true, 1, 1_366_666_667, None, 0)],
                    ["1", "2", "-"],
                ),
                allow(
                    400,
                    1,
                    &[(true, 0, 1_350_000_001, None, 0)],
                    ["0", "2", "-"],
                ),
                // Full until one nanosecond into the next window.
                deny(
                    500,
                    1,
                    &[(false, 0, 1_250_000_001, Some(500_000_001), 0)],
                    ["0", "2", "1"],
                ),
                // At 1.25 s the previous window still weighs floor(4 × 0.75) = 3.
                allow(1250, 1, &[(true, 0, 750_000_001, None, 0)], ["0", "1", "-"]),
                deny(
                    1250,
                    1,
                    &[(false, 0, 750_000_001, Some(1), 0)],
                    ["0", "1", "1"],
                ),
                allow(1600, 1, &[(true, 1, 900_000_001, None, 0)], ["1", "1", "-"]),
                deny(
                    1600,
                    5,
                    &[(false, 1, 900_000_001, None, 0)],
                    ["0", "1", "-"],
                ),
            ],
        },
        Scenario {
            name: "sliding_window_log",
            policies: vec![Policy::new("log", Quota::per_second(3))
                .with_algorithm(Algorithm::SlidingWindowLog)],
            steps: vec![
                allow(0, 1, &[(true, 2, 1000 * MS, None, 0)], ["2", "1", "-"]),
                allow(400, 1, &[(true, 1, 1000 * MS, None, 0)], ["1", "1", "-"]),
                allow(800, 1, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
                deny(
                    999,
                    1,
                    &[(false, 0, 801 * MS, Some(MS), 0)],
                    ["0", "1", "1"],
                ),
                allow(1000, 1, &[(true, 0, 1000 * MS, None, 0)], ["0", "1", "-"]),
                deny(
                    1000,
                    2,
                    &[(false, 0, 1000 * MS, Some(800 * MS), 0)],
                    ["0", "1", "1"],
                ),
                deny(1500, 4, &[(false, 1, 500 * MS, None, 0)], ["0", "1", "-"]),
            ],
        },
        Scenario {
            // Two limits checked together: a denial by either consumes
            // nothing from the other.
            name: "all_or_nothing",
            policies: vec![
                Policy::new("second", Quota::per_second(2)),
                Policy::new("minute", Quota::per_minute(3)),
            ],
            steps: vec![
                Step {
                    ietf: "\"second\";r=1;t=1, \"minute\";r=2;t=20",
                    ..allow(
                        0,
                        1,
                        &[
                            (true, 1, 500 * MS, None, 0),
                            (true, 2, 20_000 * MS, None, 0),
                        ],
                        ["1", "1", "-"],
                    )
                },
                Step {
                    ietf: "\"second\";r=0;t=1, \"minute\";r=1;t=40",
                    ..allow(
                        0,
                        1,
                        &[
                            (true, 0, 1000 * MS, None, 0),
                            (true, 1, 40_000 * MS, None, 0),
                        ],
                        ["0", "1", "-"],
                    )
                },
                Step {
                    ietf: "\"second\";r=0;t=1, \"minute\";r=0;t=60",
                    ..deny(
                        0,
                        1,
                        &[
                            (false, 0, 1000 * MS, Some(500 * MS), 0),
                            (true, 0, 60_000 * MS, None, 0),
                        ],
                        ["0", "1", "1"],
                    )
                },
                // The minute was not charged for the denied request.
                Step {
                    ietf: "\"second\";r=1;t=1, \"minute\";r=0;t=59",
                    ..allow(
                        1000,
                        1,
                        &[
                            (true, 1, 500 * MS, None, 0),
                            (true, 0, 59_000 * MS, None, 0),
                        ],
                        ["0", "59", "-"],
                    )
                },
                Step {
                    ietf: "\"second\";r=0;t=1, \"minute\";r=0;t=59",
                    ..deny(
                        1000,
                        1,
                        &[
                            (true, 0, 1000 * MS, None, 0),
                            (false, 0, 59_000 * MS, Some(19_000 * MS), 0),
                        ],
                        ["0", "59", "19"],
                    )
                },
                // And the second was not charged for that one.
                Step {
                    ietf: "\"second\";r=0;t=1, \"minute\";r=0;t=59",
                    ..deny(
                        1000,
                        1,
                        &[
                            (true, 0, 1000 * MS, None, 0),
                            (false, 0, 59_000 * MS, Some(19_000 * MS), 0),
                        ],
                        ["0", "59", "19"],
                    )
                },
            ],
        },
    ];
    table.extend(refund_scenarios());
    table
}

/// [`run_table`] on a Redis backend (one node or a cluster), each step one
/// call at its instant, awaited on `rt`.
#[cfg(feature = "redis")]
pub fn run_table_on_redis(rt: &tokio::runtime::Runtime, backend: &tollgate::backend::RedisBackend) {
    run_table(|op, set, now| {
        let call = async {
            match op {
                Op::Acquire => backend.acquire_at(set, now).await,
                Op::Refund => backend.refund_at(set, now).await,
            }
        };
        rt.block_on(call).expect("redis call")
    });
}

/// Runs every scenario through `run`, a backend driven at explicit
/// instants (`Op::Acquire`: acquire at the instant; `Op::Refund`: refund
/// of an acquire at the instant); panics with the scenario, step and field
/// on the first difference.
pub fn run_table(mut run: impl FnMut(Op, &LimitSet, Nanos) -> Outcome) {
    for scenario in table() {
        let policies: Vec<Arc<Policy>> = scenario.policies.into_iter().map(Arc::new).collect();
        for p in &policies {
            p.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
        }
        for (i, step) in scenario.steps.iter().enumerate() {
            let at = format!(
                "{} step {} ({:?} t={} ms, cost {})",
                scenario.name, i, step.op, step.at_ms, step.cost
            );
            let mut set = LimitSet::new();
            for p in &policies {
                set.push(p.clone(), Key::from("client-a"), step.cost);
            }
            let now = BASE.saturating_add(Nanos::from_millis(step.at_ms));
            let outcome = run(step.op, &set, now);
            assert_eq!(outcome.at(), Some(now), "{at}: decided at");
            assert_eq!(outcome.allowed(), step.allowed, "{at}: allowed");
            assert_eq!(
                outcome.decisions().len(),
                step.decisions.len(),
                "{at}: decisions"
            );
            for (j, (d, want)) in outcome.decisions().iter().zip(step.decisions).enumerate() {
                let got = (
                    d.allowed,
                    d.remaining,
                    d.reset_after.as_u64(),
                    d.retry_after.map(|r| r.as_u64()),
                    d.delay.as_u64(),
                );
                assert_eq!(
                    got, *want,
                    "{at}: policy {j} (allowed, remaining, reset ns, retry ns, delay ns)"
                );
            }
            let items: Vec<(&PolicyHeader, &tollgate::Decision)> = policies
                .iter()
                .map(|p| p.header())
                .zip(outcome.decisions())
                .collect();
            let mut h = HeaderMap::new();
            headers::write_headers(
                &mut h,
                HeaderStyle::Both,
                ResetFormat::DelaySeconds,
                &items,
                !outcome.allowed(),
            );
            let header = |name: &str| {
                h.get(name)
                    .map_or("-".to_owned(), |v| v.to_str().unwrap_or("?").to_owned())
            };
            let legacy = [
                header("x-ratelimit-remaining"),
                header("x-ratelimit-reset"),
                header("retry-after"),
            ];
            assert_eq!(
                legacy,
                step.legacy.map(str::to_owned),
                "{at}: X-RateLimit-Remaining, -Reset, Retry-After"
            );
            let ietf = if step.ietf.is_empty() {
                format!(
                    "\"{}\";r={};t={}",
                    policies[0].name(),
                    step.legacy[0],
                    step.legacy[1]
                )
            } else {
                step.ietf.to_owned()
            };
            assert_eq!(header("ratelimit"), ietf, "{at}: RateLimit");
            if !outcome.allowed() {
                assert_eq!(header("cache-control"), "no-store", "{at}");
            }
        }
    }
}
