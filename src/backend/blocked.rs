//! [`BlockedCache`]: answer known-denied requests from process memory.
//!
//! A client over its limit stays over it until its `Retry-After`: nothing
//! is consumed by a denial, so its state only improves with time, and other
//! servers of a fleet can only consume more. While that holds, asking a
//! shared store again is wasted work, and under a flood from one client it
//! is most of the store's load. This wrapper remembers denied sets until
//! the earliest instant they could pass and answers them locally.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Acquire, Backend, BackendError, Outcome};
use crate::policy::LimitSet;
use crate::time::Nanos;

/// The default bound on remembered denials.
pub const DEFAULT_BLOCKED_CAPACITY: usize = 100_000;

/// Wraps a backend so that a set it denied is denied again from process
/// memory, without a call, until its retry time (opt-in; the first denial
/// and every allowed request still go to the backend).
///
/// What a cached denial reports: the backend's decisions with
/// `reset_after` and `retry_after` reduced by the time since, so headers
/// and `Retry-After` stay exact. Trade-off: a `reset` made through another
/// server, or a raised quota, is seen by this server only when the cached
/// denial expires (at most the original `Retry-After`). Sets whose cost
/// can never be admitted are not cached. Memory is bounded by `capacity`
/// (expired entries are dropped first, then the one expiring soonest).
///
/// ```
/// use std::sync::Arc;
/// use tollgate::backend::{Backend, BlockedCache, MemoryBackend};
/// use tollgate::{key::Key, LimitSet, Policy, Quota};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let backend = BlockedCache::new(MemoryBackend::new(), 10_000);
/// let set = LimitSet::single(Arc::new(Policy::new("p", Quota::per_minute(1))), Key::from("k"), 1);
/// assert!(backend.acquire(&set).await.unwrap().allowed());
/// assert!(!backend.acquire(&set).await.unwrap().allowed()); // asks the backend, remembers
/// assert!(!backend.acquire(&set).await.unwrap().allowed()); // answered from memory
/// assert_eq!(backend.hits(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct BlockedCache<B> {
    inner: B,
    shared: Arc<Shared>,
}

struct Shared {
    entries: Mutex<HashMap<u64, Entry>>,
    capacity: usize,
    hasher: std::collections::hash_map::RandomState,
    hits: std::sync::atomic::AtomicU64,
}

struct Entry {
    outcome: Outcome,
    at: Instant,
    until: Instant,
}

impl<B> std::fmt::Debug for BlockedCache<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockedCache")
            .field("capacity", &self.shared.capacity)
            .field("hits", &self.hits())
            .finish_non_exhaustive()
    }
}

impl<B> BlockedCache<B> {
    /// Wraps `inner`, remembering at most `capacity` denied sets.
    pub fn new(inner: B, capacity: usize) -> Self {
        BlockedCache {
            inner,
            shared: Arc::new(Shared {
                entries: Mutex::new(HashMap::new()),
                capacity: capacity.max(1),
                hasher: Default::default(),
                hits: Default::default(),
            }),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// How many requests were answered from memory so far.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many denials are remembered now.
    pub fn len(&self) -> usize {
        self.shared.lock().len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A hash of what makes two sets the same request: policies, keys, costs.
    fn fingerprint(&self, set: &LimitSet) -> u64 {
        let mut h = self.hasher.build_hasher();
        for l in set.limits() {
            h.write_u64(l.policy.id());
            h.write_usize(l.key.as_bytes().len());
            h.write(l.key.as_bytes());
            h.write_u64(l.cost);
        }
        h.finish()
    }

    /// The remembered denial of `fp`, aged to `now`.
    fn lookup(&self, fp: u64, now: Instant) -> Option<Outcome> {
        let mut entries = self.lock();
        let entry = entries.get(&fp)?;
        if now >= entry.until {
            entries.remove(&fp);
            return None;
        }
        let elapsed = Nanos::from(now.saturating_duration_since(entry.at));
        let mut outcome = entry.outcome.clone();
        outcome.age(elapsed);
        self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(outcome)
    }

    fn remember(&self, fp: u64, outcome: &Outcome, now: Instant) {
        if outcome.allowed() {
            return;
        }
        // Denied until every denying limit would admit the request again.
        let mut wait = Nanos::ZERO;
        for d in outcome.decisions().iter().filter(|d| !d.allowed) {
            match d.retry_after {
                Some(r) => wait = wait.max(r),
                None => return,
            }
        }
        if wait == Nanos::ZERO {
            return;
        }
        let until = now + Duration::from(wait);
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&fp) {
            entries.retain(|_, e| e.until > now);
            if entries.len() >= self.capacity {
                let soonest = entries.iter().min_by_key(|(_, e)| e.until).map(|(k, _)| *k);
                if let Some(k) = soonest {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(
            fp,
            Entry {
                outcome: outcome.clone(),
                at: now,
                until,
            },
        );
    }
}

type BoxFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outcome, BackendError>> + Send>>;

impl<B: Backend> Backend for BlockedCache<B> {
    type Future = BoxFuture;

    fn acquire(&self, set: &LimitSet) -> Acquire<Self::Future> {
        let now = Instant::now();
        let fp = self.shared.fingerprint(set);
        if let Some(outcome) = self.shared.lookup(fp, now) {
            return Acquire::ready(Ok(outcome));
        }
        match self.inner.acquire(set) {
            Acquire::Ready { result } => {
                if let Some(Ok(outcome)) = &result {
                    self.shared.remember(fp, outcome, now);
                }
                Acquire::Ready { result }
            }
            Acquire::Pending { future } => {
                let shared = self.shared.clone();
                Acquire::pending(Box::pin(async move {
                    let result = future.await;
                    if let Ok(outcome) = &result {
                        shared.remember(fp, outcome, now);
                    }
                    result
                }))
            }
        }
    }

    fn peek(&self, set: &LimitSet) -> Acquire<Self::Future> {
        box_acquire(self.inner.peek(set))
    }

    fn reset(&self, set: &LimitSet) -> Acquire<Self::Future> {
        self.shared.lock().remove(&self.shared.fingerprint(set));
        box_acquire(self.inner.reset(set))
    }

    /// Forwarded: counting over the limit only makes a remembered denial
    /// truer, so the memory is kept.
    fn absorb(&self, set: &LimitSet) -> Acquire<Self::Future> {
        box_acquire(self.inner.absorb(set))
    }
}

fn box_acquire<F>(a: Acquire<F>) -> Acquire<BoxFuture>
where
    F: std::future::Future<Output = Result<Outcome, BackendError>> + Send + Unpin + 'static,
{
    match a {
        Acquire::Ready { result } => Acquire::Ready { result },
        Acquire::Pending { future } => Acquire::pending(Box::pin(future)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;
    use crate::key::Key;
    use crate::{Policy, Quota};

    fn set(key: &str) -> LimitSet {
        LimitSet::single(
            Arc::new(Policy::new("p", Quota::per_minute(2))),
            Key::from(key),
            1,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_denied_client_is_answered_from_memory_until_its_retry_time() {
        let b = BlockedCache::new(MemoryBackend::new(), 100);
        assert!(b.acquire(&set("a")).await.unwrap().allowed());
        assert!(b.acquire(&set("a")).await.unwrap().allowed());
        let first = b.acquire(&set("a")).await.unwrap();
        assert!(!first.allowed());
        let retry = first.decisions()[0].retry_after.unwrap();
        assert_eq!(retry, Nanos::from_secs(30));
        tokio::time::advance(Duration::from_secs(10)).await;
        let cached = b.acquire(&set("a")).await.unwrap();
        assert!(!cached.allowed());
        assert_eq!(
            cached.decisions()[0].retry_after,
            Some(Nanos::from_secs(20)),
            "aged by 10 s"
        );
        assert_eq!(b.hits(), 1);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(
            b.acquire(&set("a")).await.unwrap().allowed(),
            "asks the backend again at retry time"
        );
        assert_eq!(b.hits(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn other_clients_and_resets_are_not_affected() {
        let b = BlockedCache::new(MemoryBackend::new(), 100);
        for _ in 0..3 {
            b.acquire(&set("a")).await.unwrap();
        }
        assert!(b.acquire(&set("b")).await.unwrap().allowed());
        b.reset(&set("a")).await.unwrap();
        assert!(b.acquire(&set("a")).await.unwrap().allowed());
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_is_bounded() {
        let b = BlockedCache::new(MemoryBackend::new(), 10);
        for i in 0..100 {
            let s = set(&format!("k{i}"));
            for _ in 0..3 {
                b.acquire(&s).await.unwrap();
            }
        }
        assert!(b.len() <= 10, "{}", b.len());
    }
}
