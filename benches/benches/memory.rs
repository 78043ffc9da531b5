//! Resident memory per tracked key at 1,000,000 keys: tollgate's
//! `MemoryBackend` vs governor's keyed limiter.
//!
//! What is measured: the growth of the process's resident set (`VmRSS` in
//! `/proc/self/status`) while 1,000,000 distinct IPv4 clients
//! (10.0.0.0 + i) are each checked once, divided by the number of keys.
//! That is what a server pays: table slots, hash-map load factor and
//! allocator overhead included.
//!
//! Each case runs in its own child process (this binary re-executes itself
//! with `--case NAME`), so one case's freed memory cannot hide in another's
//! figure:
//! - `tollgate_gcra`: `MemoryBackend::new()` (its default bound, 1,000,000
//!   keys, so the table holds exactly its bound), GCRA, keys built
//!   with `Key::from_ip` as the layer does;
//! - `governor`: `governor::DefaultKeyedRateLimiter<IpAddr>` (GCRA on a
//!   `DashMap`), the store under tower_governor and axum-governor;
//! - `tollgate_sliding_window`: tollgate with `Algorithm::SlidingWindow`, for
//!   information (the non-GCRA algorithms keep wider state).
//!
//! The quota is one request per hour, so every key is still live (none
//! idle, none replaced) when the memory is read; each case checks that its
//! table holds exactly 1,000,000 keys.
//!
//! Run: `cargo bench -p tollgate-benches --bench memory` (plain `main`, not
//! criterion; Linux only, as it reads `/proc`).

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::process::{Command, ExitCode};
use std::sync::Arc;

use tollgate::backend::{Acquire, Backend, MemoryBackend};
use tollgate::key::Key;
use tollgate::{
    policy::{LimitSet, Policy},
    Algorithm, Quota,
};

/// How many distinct keys each case inserts.
const KEYS: usize = 1_000_000;

/// The cases, each run in a child process.
const TOLLGATE_GCRA: &str = "tollgate_gcra";
const GOVERNOR: &str = "governor";
const TOLLGATE_SLIDING: &str = "tollgate_sliding_window";

/// The prefix of the one line a child prints for its parent.
const RESULT_PREFIX: &str = "bytes_per_key=";

/// The `i`-th client address: 10.0.0.0 + i.
fn ip(i: usize) -> IpAddr {
    let offset = u32::try_from(i).expect("key index fits an IPv4 address");
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000_u32 + offset))
}

/// The resident set size of this process, in bytes.
fn rss_bytes() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line in /proc/self/status")?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|e| format!("bad VmRSS line {line:?}: {e}"))?;
    Ok(kib * 1024)
}

/// Inserts `KEYS` keys into tollgate's backend with `algorithm`; returns the
/// resident bytes per key.
fn tollgate_case(algorithm: Algorithm) -> Result<f64, String> {
    // The default bound (1,000,000): the table holds exactly its bound.
    let backend = MemoryBackend::new();
    let policy = Policy::new("bench", Quota::per_hour(1)).with_algorithm(algorithm);
    policy.validate().map_err(|e| e.to_string())?;
    let policy = Arc::new(policy);
    let before = rss_bytes()?;
    for i in 0..KEYS {
        let set = LimitSet::single(policy.clone(), Key::from_ip(ip(i)), 1);
        let allowed = match backend.acquire(&set) {
            Acquire::Ready(Ok(outcome)) => outcome.allowed(),
            other => return Err(format!("unexpected answer from the backend: {other:?}")),
        };
        if !allowed {
            return Err(format!("key {i} was denied on its first request"));
        }
    }
    let after = rss_bytes()?;
    let stored = backend.len();
    if stored != KEYS || backend.evictions() != 0 {
        return Err(format!(
            "the backend holds {stored} keys, not {KEYS}, after {} evictions",
            backend.evictions()
        ));
    }
    Ok(per_key(before, after))
}

/// Inserts `KEYS` keys into governor's keyed limiter; returns the resident
/// bytes per key.
fn governor_case() -> Result<f64, String> {
    let quota = governor::Quota::per_hour(NonZeroU32::MIN);
    let limiter: governor::DefaultKeyedRateLimiter<IpAddr> = governor::RateLimiter::keyed(quota);
    let before = rss_bytes()?;
    for i in 0..KEYS {
        if limiter.check_key(&ip(i)).is_err() {
            return Err(format!("key {i} was denied on its first request"));
        }
    }
    let after = rss_bytes()?;
    let stored = limiter.len();
    if stored != KEYS {
        return Err(format!("the limiter holds {stored} keys, not {KEYS}"));
    }
    Ok(per_key(before, after))
}

fn per_key(before: u64, after: u64) -> f64 {
    after.saturating_sub(before) as f64 / KEYS as f64
}

/// Child mode: runs one case and prints its result line.
fn child(case: &str) -> Result<(), String> {
    let bytes = match case {
        TOLLGATE_GCRA => tollgate_case(Algorithm::Gcra)?,
        TOLLGATE_SLIDING => tollgate_case(Algorithm::SlidingWindow)?,
        GOVERNOR => governor_case()?,
        other => return Err(format!("unknown case {other:?}")),
    };
    println!("{RESULT_PREFIX}{bytes}");
    Ok(())
}

/// Parent mode: runs `case` in a child process and reads its figure.
fn measure(case: &str) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let output = Command::new(exe)
        .args(["--case", case])
        .output()
        .map_err(|e| format!("cannot run case {case}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "case {case} failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_PREFIX))
        .ok_or_else(|| format!("case {case} printed no result: {stdout}"))?
        .trim()
        .parse()
        .map_err(|e| format!("case {case}: bad result: {e}"))
}

fn parent() -> Result<(), String> {
    let gcra = measure(TOLLGATE_GCRA)?;
    let governor = measure(GOVERNOR)?;
    let sliding = measure(TOLLGATE_SLIDING)?;
    let mib = |bytes_per_key: f64| bytes_per_key * KEYS as f64 / (1024.0 * 1024.0);
    println!("resident memory per key at {KEYS} keys (VmRSS growth, one process per case)");
    println!(
        "  tollgate MemoryBackend, GCRA            {gcra:8.1} bytes/key ({:6.1} MiB)",
        mib(gcra)
    );
    println!(
        "  governor keyed limiter, IpAddr keys     {governor:8.1} bytes/key ({:6.1} MiB)",
        mib(governor)
    );
    if governor > 0.0 {
        println!(
            "  ratio tollgate/governor                 {:8.2}",
            gcra / governor
        );
    }
    println!(
        "  tollgate MemoryBackend, SlidingWindow   {sliding:8.1} bytes/key ({:6.1} MiB)  (information)",
        mib(sliding)
    );
    Ok(())
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench` (and any filter): only `--case NAME`
    // means something here.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().position(|a| a == "--case") {
        Some(i) => match args.get(i + 1) {
            Some(case) => child(case),
            None => Err("--case needs a case name".to_string()),
        },
        None => parent(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("memory bench: {error}");
            ExitCode::FAILURE
        }
    }
}
