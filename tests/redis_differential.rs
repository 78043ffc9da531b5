//! The Redis scripts against the Rust algorithms: random quotas, clock
//! steps, costs and sets through `MemoryBackend::acquire_at` and
//! `RedisBackend::acquire_at` must give identical outcomes, to the
//! nanosecond; and the scripts' integer arithmetic against `u128`.
#![cfg(feature = "redis")]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tollgate::backend::RedisBackend;
use tollgate::key::Key;
use tollgate::{
    backend::MemoryBackend,
    policy::{LimitSet, Policy},
    time::Nanos,
    Algorithm, Quota,
};

const DAY: u64 = 86_400_000_000_000;

/// One server, one runtime and one backend for all the cases of a test,
/// owned by the test (so the server is stopped when it ends).
struct Shared {
    server: support::RedisServer,
    rt: tokio::runtime::Runtime,
    backend: RedisBackend,
}

fn shared() -> Option<Shared> {
    let server = support::RedisServer::start()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let backend = rt
        .block_on(
            RedisBackend::builder(&server.url())
                // Cases run in real milliseconds over virtual days: keep
                // every state for the whole test.
                .ttl_margin(Duration::from_secs(600))
                .timeout(Duration::from_secs(5))
                .connect(),
        )
        .expect("connect");
    Some(Shared {
        server,
        rt,
        backend,
    })
}

/// Runs a property with a few dozen cases against `shared`.
fn check<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::Gcra),
        Just(Algorithm::TokenBucket),
        Just(Algorithm::LeakyBucket),
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_millis(1)),
            Just(Duration::from_millis(250)),
            Just(Duration::from_secs(1)),
            Just(Duration::from_secs(10 * 86_400)),
        ]
        .prop_map(|max_delay| Algorithm::LeakyBucketQueue { max_delay }),
        Just(Algorithm::FixedWindow),
        Just(Algorithm::FixedWindowStaggered),
        Just(Algorithm::SlidingWindow),
        Just(Algorithm::SlidingWindowLog),
    ]
}

/// Periods from a millisecond to 366 days, odd ones included; above 104
/// days a period is more than 2^53 nanoseconds.
fn period() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(1_000_000),
        Just(1_000_000_000),
        Just(3_000_000_000),
        Just(60_000_000_000),
        Just(3_600_000_000_000),
        Just(DAY),
        Just(150 * DAY),
        Just(366 * DAY),
        1_000_000..=366 * DAY,
    ]
}

fn limit() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 1..=10u64, 1 => 11..=1_000_000u64]
}

#[derive(Debug, Clone)]
struct PolicySpec {
    algorithm: Algorithm,
    limit: u64,
    period: u64,
    burst: Option<u64>,
    shadow: bool,
}

impl PolicySpec {
    fn policy(&self, name: String) -> Policy {
        let mut quota = Quota::new(self.limit, Duration::from_nanos(self.period));
        if let Some(b) = self.burst {
            quota = quota.with_burst(b);
        }
        Policy::new(name, quota)
            .with_algorithm(self.algorithm)
            .with_shadow(self.shadow)
    }
}

fn policy_spec() -> impl Strategy<Value = PolicySpec> {
    (
        algorithm(),
        limit(),
        period(),
        prop::option::weighted(0.3, 1..=20u64),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(algorithm, limit, period, burst, shadow)| PolicySpec {
            algorithm,
            limit,
            period,
            burst: if algorithm.is_windowed() { None } else { burst },
            shadow,
        })
        .prop_filter("a valid policy", |spec| {
            spec.policy("p".into()).validate().is_ok()
        })
}

/// A limit of the set: which policy, which key, and a cost multiplier.
#[derive(Debug, Clone)]
struct LimitSpec {
    policy: usize,
    key: usize,
    cost_factor: u64,
}

#[derive(Debug, Clone)]
struct Step {
    /// Nanoseconds to move the clock (backwards when `back`).
    delta: u64,
    back: bool,
    cost: u64,
    peek: bool,
    /// `absorb_at` (Backend::absorb: counted over the limit) instead.
    absorb: bool,
}

fn step() -> impl Strategy<Value = Step> {
    let delta = prop_oneof![
        3 => Just(0u64),
        1 => 1..=10u64,
        2 => 1..=10_000_000u64,
        3 => 1..=2_000_000_000u64,
        1 => 1..=200_000_000_000u64,
        1 => 1..=400 * DAY,
    ];
    let cost = prop_oneof![
        2 => Just(1u64),
        1 => 0..=4u64,
        1 => prop::sample::select(vec![7u64, 1_000, 250_000, 2_000_000]),
    ];
    (
        delta,
        prop::bool::weighted(0.12),
        cost,
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(delta, back, cost, peek, absorb)| Step {
            delta,
            back,
            cost,
            peek,
            absorb,
        })
}

#[derive(Debug, Clone)]
struct Case {
    policies: Vec<PolicySpec>,
    limits: Vec<LimitSpec>,
    start: u64,
    steps: Vec<Step>,
}

impl Case {
    /// A case whose limits are `(policy, key, cost factor)`, the policy
    /// index taken modulo the number of policies.
    fn new(
        policies: Vec<PolicySpec>,
        limits: Vec<(usize, usize, u64)>,
        start: u64,
        steps: Vec<Step>,
    ) -> Self {
        let n = policies.len();
        Case {
            limits: limits
                .into_iter()
                .map(|(policy, key, cost_factor)| LimitSpec {
                    policy: policy % n,
                    key,
                    cost_factor,
                })
                .collect(),
            policies,
            start,
            steps,
        }
    }
}

fn case() -> impl Strategy<Value = Case> {
    let start = prop_oneof![
        Just(1_700_000_040_000_000_000u64),
        1_600_000_000_000_000_000u64..=1_900_000_000_000_000_000,
        0..=1_000_000_000_000u64,
        0..=(1u64 << 63),
    ];
    (
        prop::collection::vec(policy_spec(), 1..=3),
        prop::collection::vec((0..3usize, 0..3usize, 1..=2u64), 1..=3),
        start,
        prop::collection::vec(step(), 1..=25),
    )
        .prop_map(|(policies, limits, start, steps)| Case::new(policies, limits, start, steps))
}

fn keys() -> [Key; 3] {
    [
        Key::from("client-a"),
        Key::from_ip("2001:db8::1".parse().expect("ip")),
        Key::secret(b"an api key"),
    ]
}

fn run_case(shared: &Shared, case: &Case) -> Result<(), TestCaseError> {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let id = CASE.fetch_add(1, Ordering::Relaxed);
    let policies: Vec<Arc<Policy>> = case
        .policies
        .iter()
        .enumerate()
        .map(|(i, spec)| Arc::new(spec.policy(format!("diff-{id}-{i}"))))
        .collect();
    let keys = keys();
    let memory = MemoryBackend::new();
    let mut now = case.start;
    for (i, step) in case.steps.iter().enumerate() {
        now = if step.back {
            now.saturating_sub(step.delta)
        } else {
            now.saturating_add(step.delta)
        };
        let mut set = LimitSet::new();
        for l in &case.limits {
            set.push(
                policies[l.policy].clone(),
                keys[l.key].clone(),
                step.cost.saturating_mul(l.cost_factor),
            );
        }
        let at = Nanos::new(now);
        let (want, got) = if step.absorb {
            (
                memory.absorb_at(&set, at),
                shared.rt.block_on(shared.backend.absorb_at(&set, at)),
            )
        } else if step.peek {
            (
                memory.peek_at(&set, at),
                shared.rt.block_on(shared.backend.peek_at(&set, at)),
            )
        } else {
            (
                memory.acquire_at(&set, at),
                shared.rt.block_on(shared.backend.acquire_at(&set, at)),
            )
        };
        let got = got.map_err(|e| TestCaseError::fail(format!("step {i}: redis: {e}")))?;
        prop_assert_eq!(got, want, "step {} at {} ns", i, now);
    }
    Ok(())
}

#[test]
fn redis_decisions_equal_memory_decisions() {
    let Some(shared) = shared() else { return };
    check(case(), |case| run_case(&shared, &case));
}

/// The sliding log reads its list lazily (only the expired prefix while it
/// is sorted): many steps, small limits, merges at one instant, clocks
/// going back (an unsorted log), the same key twice in a set.
fn log_case() -> impl Strategy<Value = Case> {
    let policy = (
        1..=6u64,
        prop::sample::select(vec![1_000_000u64, 5_000_000, 1_000_000_000]),
    )
        .prop_map(|(limit, period)| PolicySpec {
            algorithm: Algorithm::SlidingWindowLog,
            limit,
            period,
            burst: None,
            shadow: false,
        });
    let step = (
        prop_oneof![3 => Just(0u64), 3 => 1..=3_000_000u64, 1 => 1..=2_000_000_000u64],
        prop::bool::weighted(0.15),
        prop_oneof![4 => Just(1u64), 1 => 0..=3u64],
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(delta, back, cost, peek, absorb)| Step {
            delta,
            back,
            cost,
            peek,
            absorb,
        });
    (
        prop::collection::vec(policy, 1..=2),
        prop::collection::vec((0..2usize, 0..2usize, 1..=2u64), 1..=3),
        prop::collection::vec(step, 1..=60),
    )
        .prop_map(|(policies, limits, steps)| {
            Case::new(policies, limits, 1_700_000_040_000_000_000, steps)
        })
}

#[test]
fn redis_sliding_log_equals_memory_under_churn() {
    let Some(shared) = shared() else { return };
    check(log_case(), |case| run_case(&shared, &case));
}

#[test]
fn redis_is_exact_where_doubles_are_not() {
    // 3 per 200 days: T and the capacity are above 2^53 ns, the instants
    // near 1.7e18; a sliding window of 1,000,000 per 366 days multiplies
    // the previous count by a span of ~3e16 (a 128-bit product).
    let Some(shared) = shared() else { return };
    let case = Case {
        policies: vec![
            PolicySpec {
                algorithm: Algorithm::Gcra,
                limit: 3,
                period: 200 * DAY,
                burst: None,
                shadow: false,
            },
            PolicySpec {
                algorithm: Algorithm::SlidingWindow,
                limit: 1_000_000,
                period: 366 * DAY,
                burst: None,
                shadow: true,
            },
        ],
        limits: vec![
            LimitSpec {
                policy: 1,
                key: 0,
                cost_factor: 1,
            },
            LimitSpec {
                policy: 0,
                key: 0,
                cost_factor: 1,
            },
        ],
        start: 1_700_000_000_123_456_789,
        steps: [
            (0, 1),
            (0, 1),
            (1, 1),
            (66 * DAY + 7, 1),
            (300 * DAY + 3, 999_998),
            (1, 1),
            (12_345_678_901, 1),
            (200 * DAY, 3),
        ]
        .into_iter()
        .map(|(delta, cost)| Step {
            delta,
            back: false,
            cost,
            peek: false,
            absorb: false,
        })
        .collect(),
    };
    if let Err(e) = run_case(&shared, &case) {
        panic!("{e}");
    }
}

/// The arithmetic of `arith.lua`, driven by `EVAL` with a tiny harness:
/// each triple (op, a, b) of arguments gives one result.
const ARITH_HARNESS: &str = r#"
local out = {}
for i = 1, #ARGV, 3 do
  local op, a, b = ARGV[i], N(ARGV[i + 1]), N(ARGV[i + 2])
  local r
  if op == 'add' then r = S(add(a, b))
  elseif op == 'sub' then r = S(sub(a, b))
  elseif op == 'mul' then r = S(mul(a, b))
  elseif op == 'divmod' then local q, m = divmod(a, b); r = S(q) .. ' ' .. S(m)
  elseif op == 'cmp' then r = tostring(cmp(a, b))
  elseif op == 'id' then r = S(a)
  end
  out[#out + 1] = r
end
return out
"#;

fn arith(shared: &Shared, ops: &[(&str, u128, u128)]) -> Vec<String> {
    let source = format!(
        "{}\n{}",
        include_str!("../src/backend/redis/arith.lua"),
        ARITH_HARNESS
    );
    let script = redis::Script::new(&source);
    let mut invocation = script.prepare_invoke();
    for (op, a, b) in ops {
        invocation.arg(*op).arg(a.to_string()).arg(b.to_string());
    }
    shared.rt.block_on(async {
        let client = redis::Client::open(shared.server.url()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connection");
        invocation
            .invoke_async::<Vec<String>>(&mut conn)
            .await
            .expect("arith harness")
    })
}

fn expected(op: &str, a: u128, b: u128) -> Option<String> {
    Some(match op {
        "add" => a.checked_add(b)?.to_string(),
        "sub" => a.checked_sub(b)?.to_string(),
        "mul" => a.checked_mul(b)?.to_string(),
        "divmod" => format!("{} {}", a.checked_div(b)?, a % b),
        "cmp" => (a.cmp(&b) as i8).to_string(),
        "id" => a.to_string(),
        _ => return None,
    })
}

fn check_arith(shared: &Shared, ops: &[(&'static str, u128, u128)]) -> Result<(), TestCaseError> {
    let ops: Vec<_> = ops
        .iter()
        .copied()
        .filter(|(op, a, b)| expected(op, *a, *b).is_some())
        .collect();
    let got = arith(shared, &ops);
    for ((op, a, b), got) in ops.iter().zip(&got) {
        let want = expected(op, *a, *b).unwrap_or_default();
        prop_assert_eq!(got, &want, "{} {} {}", op, a, b);
    }
    Ok(())
}

#[test]
fn lua_arithmetic_is_exact_on_edge_values() {
    let Some(shared) = shared() else { return };
    let mut edges: Vec<u128> = vec![0, 1, 2, 9, 10, 9_999_999, 10_000_000, 10_000_001];
    for bits in [23u32, 24, 25, 47, 48, 49, 52, 53, 54, 63, 64, 65, 96, 127] {
        let p = 1u128 << bits;
        edges.extend([p - 1, p, p + 1]);
    }
    edges.extend([
        u64::MAX as u128,
        u128::MAX,
        u128::MAX - 1,
        10u128.pow(18),
        10u128.pow(19),
        10u128.pow(38),
        1_700_000_000_000_000_000,
        366 * DAY as u128,
    ]);
    let mut ops = Vec::new();
    for &a in &edges {
        for &b in &edges {
            for op in ["add", "sub", "mul", "divmod", "cmp", "id"] {
                ops.push((op, a, b));
            }
        }
    }
    for chunk in ops.chunks(3000) {
        if let Err(e) = check_arith(&shared, chunk) {
            panic!("{e}");
        }
    }
}

fn wide() -> impl Strategy<Value = u128> {
    prop_oneof![
        any::<u64>().prop_map(u128::from),
        any::<u128>(),
        (0..128u32, any::<u128>()).prop_map(|(bits, x)| x >> bits),
        (0..54u32).prop_map(|b| 1u128 << b),
    ]
}

#[test]
fn lua_arithmetic_matches_u128() {
    let Some(shared) = shared() else { return };
    let pairs = prop::collection::vec((wide(), wide()), 50);
    check(pairs, |pairs| {
        let mut ops = Vec::new();
        for (a, b) in pairs {
            for op in ["add", "sub", "mul", "divmod", "cmp", "id"] {
                ops.push((op, a, b));
                ops.push((op, b, a));
            }
            // A u64 × u64 product divided back, as the sliding window does.
            let (x, y) = (a as u64 as u128, b as u64 as u128);
            ops.push(("mul", x, y));
            ops.push(("divmod", x * y, y | 1));
        }
        check_arith(&shared, &ops)
    });
}
