//! Nanoseconds per check on the in-memory backend, tollgate vs governor.
//!
//! What is measured: one `Limiter::check_now(key, 1)` on tollgate's
//! in-memory limiter for each algorithm (`tollgate/…`), one
//! `backend.acquire(&LimitSet::single(policy, key, 1))` as the layer makes
//! it, the policy's `Arc` cloned into the set (`tollgate_limit_set/gcra`),
//! and one `check_key(&ip)` on governor's keyed limiter
//! (`DefaultKeyedRateLimiter`, GCRA on a `DashMap`), in the same criterion
//! group so the ratio can be read off one run. The tollgate [`Key`] is
//! built inside the iteration from an `IpAddr` (`Key::from_ip`), as the
//! layer does; governor is given the `IpAddr` itself, as tower_governor and
//! axum-governor do.
//!
//! Groups:
//! - `check_1_key`, `check_10k_keys`, `check_1M_keys`: one thread, the keys
//!   cycled in order (`10.0.0.0 + i`). The many-key tables are filled once
//!   before measuring, so every measured check finds its key stored.
//! - `check_2_threads_10k_keys_each`: two threads each doing `iters` checks
//!   on disjoint key sets, reported as wall time / (2 × iters), that is the
//!   time per check at the two threads' combined throughput;
//!   `check_2_threads_1_hot_key`: the same, both threads on one key.
//!
//! Quotas are chosen so that every check is allowed and, with many keys,
//! every key stays live (not idle) for the whole run: tollgate's backend
//! drops idle keys as its table grows, governor never does, and the point
//! is to compare tables that really hold N keys.
//! - 1 key: 1e9 per second (one nanosecond per request, burst 1e9).
//! - many keys: one per second sustained with a burst of a year's worth
//!   (`Quota::new(31_536_000, 365 days)`); a key checked more often than
//!   once a second stays live and is never exhausted within a run.
//! - SlidingWindowLog keeps one timestamp per admitted request and accepts
//!   limits up to 100 000, so it gets `100000/1ms` (1 key) and `100000/1s`
//!   (many keys). Its check is linear in the entries live in the window,
//!   so its figure depends on the rate per key: read it as an indication.
//!
//! A denied check would measure the deny path instead: denials are counted
//! and reported on stderr after each benchmark (none are expected).
//!
//! Run: `cargo bench -p tollgate-benches --bench algorithms -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use governor::{DefaultKeyedRateLimiter, Quota as GovernorQuota, RateLimiter};
use tollgate::backend::{Acquire, Backend, MemoryBackend};
use tollgate::key::Key;
use tollgate::{
    policy::{LimitSet, Policy},
    Algorithm, Limiter, Quota,
};

/// The algorithms benchmarked, with the names used in benchmark ids.
const ALGORITHMS: [(&str, Algorithm); 6] = [
    ("gcra", Algorithm::Gcra),
    ("token_bucket", Algorithm::TokenBucket),
    ("leaky_bucket", Algorithm::LeakyBucket),
    ("fixed_window", Algorithm::FixedWindow),
    ("sliding_window", Algorithm::SlidingWindow),
    ("sliding_window_log", Algorithm::SlidingWindowLog),
];

/// Seconds in 365 days: the many-key quota is one per second with this burst.
const YEAR_SECS: u64 = 365 * 24 * 3600;

/// Keys per thread in the two-thread group.
const KEYS_PER_THREAD: usize = 10_000;

/// The `i`-th client address: 10.0.0.0 + i.
fn ip(i: usize) -> IpAddr {
    let offset = u32::try_from(i).expect("key index fits an IPv4 address");
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000_u32 + offset))
}

/// The tollgate quota for `algorithm` with `keys` keys (see the file docs).
fn tollgate_quota(algorithm: Algorithm, keys: usize) -> Quota {
    match (algorithm == Algorithm::SlidingWindowLog, keys == 1) {
        (false, true) => Quota::new(1_000_000_000, Duration::from_secs(1)),
        (false, false) => Quota::new(YEAR_SECS, Duration::from_secs(YEAR_SECS)),
        (true, true) => Quota::new(100_000, Duration::from_millis(1)),
        (true, false) => Quota::new(100_000, Duration::from_secs(1)),
    }
}

/// Governor's equivalent of the GCRA quota for `keys` keys.
fn governor_quota(keys: usize) -> GovernorQuota {
    let nonzero = |n: u64| {
        NonZeroU32::new(u32::try_from(n).expect("burst fits u32")).expect("burst is not zero")
    };
    if keys == 1 {
        GovernorQuota::per_second(nonzero(1_000_000_000))
    } else {
        GovernorQuota::with_period(Duration::from_secs(1))
            .expect("period is not zero")
            .allow_burst(nonzero(YEAR_SECS))
    }
}

/// A tollgate limiter, and its backend and policy, for one benchmark.
struct Tollgate {
    limiter: Limiter,
    backend: MemoryBackend,
    policy: Arc<Policy>,
}

impl Tollgate {
    fn new(algorithm: Algorithm, keys: usize) -> Self {
        let policy =
            Policy::new("bench", tollgate_quota(algorithm, keys)).with_algorithm(algorithm);
        let backend = MemoryBackend::builder().max_keys(2_000_000).build();
        let limiter =
            Limiter::with_policy(policy.clone(), backend.clone()).expect("the quota is valid");
        Tollgate {
            limiter,
            backend,
            policy: Arc::new(policy),
        }
    }

    /// One check with `Limiter::check_now`: the key built from the IP.
    #[inline]
    fn check(&self, ip: IpAddr) -> bool {
        self.limiter.check_now(Key::from_ip(ip), 1).allowed
    }

    /// One check as the layer makes it: a one-limit set (the policy's
    /// `Arc` cloned into it), the synchronous answer matched without a
    /// runtime.
    #[inline]
    fn check_set(&self, ip: IpAddr) -> bool {
        let set = LimitSet::single(self.policy.clone(), Key::from_ip(ip), 1);
        match self.backend.acquire(&set) {
            Acquire::Ready(Ok(outcome)) => outcome.allowed(),
            Acquire::Ready(result) => panic!("memory backend failed: {result:?}"),
            Acquire::Pending(_) => panic!("memory backend answered asynchronously"),
        }
    }
}

/// Governor's keyed limiter with `IpAddr` keys.
fn governor(keys: usize) -> DefaultKeyedRateLimiter<IpAddr> {
    RateLimiter::keyed(governor_quota(keys))
}

/// Checks every key once so the table holds them all before measuring.
fn fill(keys: usize, mut check: impl FnMut(IpAddr) -> bool) {
    if keys > 1 {
        for i in 0..keys {
            assert!(check(ip(i)), "pre-population was denied");
        }
    }
}

fn report_denials(id: &str, denied: u64) {
    if denied > 0 {
        eprintln!("WARNING {id}: {denied} checks were denied; the figure includes the deny path");
    }
}

fn label(keys: usize) -> &'static str {
    match keys {
        1 => "check_1_key",
        10_000 => "check_10k_keys",
        1_000_000 => "check_1M_keys",
        _ => "check_n_keys",
    }
}

/// One thread, `keys` keys cycled: every algorithm, then governor. Each
/// table is built and filled the first time its benchmark runs, so a
/// filter on the command line skips the others' set-up.
fn single_thread(c: &mut Criterion, keys: usize) {
    let mut group = c.benchmark_group(label(keys));
    for (name, algorithm) in ALGORITHMS {
        let build = || Tollgate::new(algorithm, keys);
        cycled(
            &mut group,
            &format!("tollgate/{name}"),
            keys,
            build,
            Tollgate::check,
        );
    }
    let build = || Tollgate::new(Algorithm::Gcra, keys);
    cycled(
        &mut group,
        "tollgate_limit_set/gcra",
        keys,
        build,
        Tollgate::check_set,
    );
    let check = |limiter: &DefaultKeyedRateLimiter<IpAddr>, ip| limiter.check_key(&ip).is_ok();
    cycled(&mut group, "governor/gcra", keys, || governor(keys), check);
    group.finish();
}

/// One benchmark of `check` cycling through `keys` keys on the table
/// `build` makes, filled the first time the benchmark runs (so a filter
/// on the command line skips the others' set-up).
fn cycled<T>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    keys: usize,
    build: impl FnOnce() -> T,
    check: impl Fn(&T, IpAddr) -> bool,
) {
    let mut build = Some(build);
    let mut table: Option<T> = None;
    let mut denied = 0u64;
    let mut i = 0usize;
    group.bench_function(id, |b| {
        let table = table.get_or_insert_with(|| {
            let table = build.take().expect("built once")();
            fill(keys, |ip| check(&table, ip));
            table
        });
        b.iter(|| {
            let allowed = check(table, black_box(ip(i)));
            i += 1;
            if i == keys {
                i = 0;
            }
            denied += u64::from(!allowed);
            allowed
        })
    });
    report_denials(&format!("{id}/{keys}"), denied);
}

fn check_1_key(c: &mut Criterion) {
    single_thread(c, 1);
}

fn check_10k_keys(c: &mut Criterion) {
    single_thread(c, 10_000);
}

fn check_1m_keys(c: &mut Criterion) {
    single_thread(c, 1_000_000);
}

/// Two threads doing `iters` checks each, thread `t` on `key_of(t, i)`;
/// returns wall time / 2, so criterion's time per iteration is the time
/// per check at the combined throughput.
fn two_threads<F, K>(iters: u64, check: &F, key_of: K) -> Duration
where
    F: Fn(IpAddr) -> bool + Sync,
    K: Fn(usize, usize) -> IpAddr + Sync,
{
    let barrier = Barrier::new(3);
    let mut start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let barrier = &barrier;
            let key_of = &key_of;
            s.spawn(move || {
                let mut i = 0usize;
                let mut denied = 0u64;
                barrier.wait();
                for _ in 0..iters {
                    denied += u64::from(!check(black_box(key_of(t, i))));
                    i += 1;
                    if i == KEYS_PER_THREAD {
                        i = 0;
                    }
                }
                if denied > 0 {
                    eprintln!("WARNING thread {t}: {denied} checks denied");
                }
            });
        }
        barrier.wait();
        start = Instant::now();
    });
    start.elapsed() / 2
}

/// Thread `t` on its own keys: `t × KEYS_PER_THREAD ..`.
fn own_keys(t: usize, i: usize) -> IpAddr {
    ip(t * KEYS_PER_THREAD + i)
}

/// Both threads on one key.
fn hot_key(_: usize, _: usize) -> IpAddr {
    ip(0)
}

fn check_2_threads(c: &mut Criterion) {
    let keys = 2 * KEYS_PER_THREAD;
    let mut group = c.benchmark_group("check_2_threads_10k_keys_each");

    let tollgate = Tollgate::new(Algorithm::Gcra, keys);
    fill(keys, |ip| tollgate.check(ip));
    let check = |ip| tollgate.check(ip);
    group.bench_function("tollgate/gcra", |b| {
        b.iter_custom(|iters| two_threads(iters, &check, own_keys))
    });

    let limiter = governor(keys);
    fill(keys, |ip| limiter.check_key(&ip).is_ok());
    let check = |ip| limiter.check_key(&ip).is_ok();
    group.bench_function("governor/gcra", |b| {
        b.iter_custom(|iters| two_threads(iters, &check, own_keys))
    });
    group.finish();

    // One hot key shared by both threads: the 1-key quota (a billion per
    // second), so every check is allowed.
    let mut group = c.benchmark_group("check_2_threads_1_hot_key");
    let tollgate = Tollgate::new(Algorithm::Gcra, 1);
    let check = |ip| tollgate.check(ip);
    group.bench_function("tollgate/gcra", |b| {
        b.iter_custom(|iters| two_threads(iters, &check, hot_key))
    });
    let limiter = governor(1);
    let check = |ip| limiter.check_key(&ip).is_ok();
    group.bench_function("governor/gcra", |b| {
        b.iter_custom(|iters| two_threads(iters, &check, hot_key))
    });
    group.finish();
}

criterion_group!(
    benches,
    check_1_key,
    check_10k_keys,
    check_1m_keys,
    check_2_threads
);
criterion_main!(benches);
