//! A load generator for the Redis backend: `CONCURRENCY` tasks checking
//! GCRA limits on `KEYS` distinct keys for `SECONDS`, on one multiplexed
//! connection; prints checks per second. `scripts/redis_bench.sh` runs it
//! beside `redis-benchmark` replaying the same `EVALSHA`.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run --release --example redis_load --features redis
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::backend::{Backend, RedisBackend};
use tollgate::key::Key;
use tollgate::{
    policy::{LimitSet, Policy},
    Quota,
};

fn env(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|e| format!("{name}={v:?}: {e}")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let concurrency = env("CONCURRENCY", 32)?;
    let keys = env("KEYS", 500)?.max(1);
    let seconds = env("SECONDS", 5)?;
    let backend = RedisBackend::connect(&url).await?;
    // A quota the run never exhausts, so every call is a full check.
    let policy = Arc::new(Policy::new(
        "load",
        Quota::new(1_000_000_000, Duration::from_secs(1)),
    ));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (backend, policy, done, errors) = (
            backend.clone(),
            policy.clone(),
            done.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while Instant::now() < deadline {
                let set = LimitSet::single(policy.clone(), Key::from(i % keys), 1);
                match backend.acquire(&set).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
                i += concurrency;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let n = done.load(Ordering::Relaxed);
    println!("checks/s: {:.0}", n as f64 / seconds.max(1) as f64);
    println!("errors: {}", errors.load(Ordering::Relaxed));
    Ok(())
}
