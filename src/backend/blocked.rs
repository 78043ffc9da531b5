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

use smallvec::SmallVec;

use super::{Acquire, Backend, BackendError, BackendStatus, BlockedStatus, Outcome, SettingsStore};
use crate::policy::LimitSet;
use crate::time::{default_clock, Clock, Nanos, SharedClock};

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
/// A [`refund`](Backend::refund) is forwarded to the inner backend, and
/// first forgets every remembered denial of a set that shares a (policy,
/// key) with the refunded one: a refund is the one thing besides time and
/// `reset` that makes a denied client's state better, so its next request
/// asks the backend again instead of being denied until the old
/// `Retry-After`. (A denial by another server's refund is, like its
/// `reset`, only seen once the cached denial expires.)
///
/// ```
/// use std::sync::Arc;
/// use tollgate::backend::{Backend, BlockedCache, MemoryBackend};
/// use tollgate::{Quota, key::Key, policy::{LimitSet, Policy}};
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
    denials: Arc<Denials>,
    /// When a remembered denial lapses.
    clock: SharedClock,
}

struct Denials {
    entries: Mutex<Entries>,
    capacity: usize,
    hasher: std::collections::hash_map::RandomState,
    hits: std::sync::atomic::AtomicU64,
}

/// The remembered denials, and which of them each (policy, key) is in.
#[derive(Default)]
struct Entries {
    by_set: HashMap<u64, Entry>,
    /// (policy, key) hash → fingerprints of sets holding it. May name sets
    /// that are gone (removing those is a no-op); rebuilt when it has grown
    /// well past the entries.
    by_limit: HashMap<u64, SmallVec<[u64; 1]>>,
}

struct Entry {
    outcome: Outcome,
    at: Nanos,
    until: Nanos,
    limits: SmallVec<[u64; 2]>,
}

/// Records that the set `fp` holds each of `limits`.
fn index(by_limit: &mut HashMap<u64, SmallVec<[u64; 1]>>, fp: u64, limits: &[u64]) {
    for &l in limits {
        let sets = by_limit.entry(l).or_default();
        if !sets.contains(&fp) {
            sets.push(fp);
        }
    }
}

impl Entries {
    fn len(&self) -> usize {
        self.by_set.len()
    }

    fn insert(&mut self, fp: u64, entry: Entry) {
        index(&mut self.by_limit, fp, &entry.limits);
        self.by_set.insert(fp, entry);
        if self.by_limit.len() > 2 * self.by_set.len() + 16 {
            self.by_limit.clear();
            for (&fp, e) in &self.by_set {
                index(&mut self.by_limit, fp, &e.limits);
            }
        }
    }

    /// Forgets every set holding the (policy, key) hashed as `limit`.
    fn forget_limit(&mut self, limit: u64) {
        for fp in self.by_limit.remove(&limit).unwrap_or_default() {
            self.by_set.remove(&fp);
        }
    }
}

impl<B> std::fmt::Debug for BlockedCache<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockedCache")
            .field("capacity", &self.denials.capacity)
            .field("hits", &self.hits())
            .finish_non_exhaustive()
    }
}

impl<B> BlockedCache<B> {
    /// Wraps `inner`, remembering at most `capacity` denied sets.
    pub fn new(inner: B, capacity: usize) -> Self {
        BlockedCache {
            inner,
            denials: Arc::new(Denials {
                entries: Mutex::new(Entries::default()),
                capacity: capacity.max(1),
                hasher: Default::default(),
                hits: Default::default(),
            }),
            clock: default_clock(),
        }
    }

    /// The same cache reading `clock` (default: the wall clock at start-up,
    /// advanced by Tokio's monotonic time). Give it the clock of the rest
    /// of the chain to drive everything from a test.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// How many requests were answered from memory so far.
    pub fn hits(&self) -> u64 {
        self.denials.hits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many denials are remembered now.
    pub fn len(&self) -> usize {
        self.denials.lock().len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Denials {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A hash of one limit's (policy, key), whatever its cost.
    fn limit_hashes(&self, set: &LimitSet) -> SmallVec<[u64; 2]> {
        set.limits()
            .iter()
            .map(|l| {
                let mut h = self.hasher.build_hasher();
                h.write_u64(l.policy.id());
                h.write(l.key.as_bytes());
                h.finish()
            })
            .collect()
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
    fn lookup(&self, fp: u64, now: Nanos) -> Option<Outcome> {
        let mut entries = self.lock();
        let entry = entries.by_set.get(&fp)?;
        if now >= entry.until {
            entries.by_set.remove(&fp);
            return None;
        }
        let elapsed = now.saturating_sub(entry.at);
        let mut outcome = entry.outcome.clone();
        outcome.age(elapsed);
        self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(outcome)
    }

    /// Remembers a denial of the set `fp` whose (policy, key) hashes are
    /// `limits`.
    fn remember(&self, fp: u64, limits: SmallVec<[u64; 2]>, outcome: &Outcome, now: Nanos) {
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
        let until = now.saturating_add(wait);
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.by_set.contains_key(&fp) {
            entries.by_set.retain(|_, e| e.until > now);
            if entries.len() >= self.capacity {
                let soonest = entries
                    .by_set
                    .iter()
                    .min_by_key(|(_, e)| e.until)
                    .map(|(k, _)| *k);
                if let Some(k) = soonest {
                    entries.by_set.remove(&k);
                }
            }
        }
        entries.insert(
            fp,
            Entry {
                outcome: outcome.clone(),
                at: now,
                until,
                limits,
            },
        );
    }
}

type BoxFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outcome, BackendError>> + Send>>;

impl<B: Backend> Backend for BlockedCache<B> {
    type Future = BoxFuture;

    fn acquire(&self, set: &LimitSet) -> Acquire<Self::Future> {
        let now = self.clock.now();
        let fp = self.denials.fingerprint(set);
        if let Some(outcome) = self.denials.lookup(fp, now) {
            return Acquire::ready(Ok(outcome));
        }
        match self.inner.acquire(set) {
            Acquire::Ready(result) => {
                if let Ok(outcome) = &result {
                    if !outcome.allowed() {
                        let limits = self.denials.limit_hashes(set);
                        self.denials.remember(fp, limits, outcome, now);
                    }
                }
                Acquire::Ready(result)
            }
            Acquire::Pending(future) => {
                let denials = self.denials.clone();
                // Hashed now (no allocation for up to two limits) rather
                // than keeping the set across the await.
                let limits = denials.limit_hashes(set);
                Acquire::pending(Box::pin(async move {
                    let result = future.await;
                    if let Ok(outcome) = &result {
                        denials.remember(fp, limits, outcome, now);
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
        self.denials
            .lock()
            .by_set
            .remove(&self.denials.fingerprint(set));
        box_acquire(self.inner.reset(set))
    }

    /// Forwarded: counting over the limit only makes a remembered denial
    /// truer, so the memory is kept.
    fn absorb(&self, set: &LimitSet) -> Acquire<Self::Future> {
        box_acquire(self.inner.absorb(set))
    }

    /// Forwarded, after forgetting the remembered denials of every set
    /// that holds one of the refunded (policy, key) pairs: the units given
    /// back may let them pass before their cached retry time. See
    /// [`BlockedCache`].
    fn refund(&self, set: &LimitSet, at: Nanos) -> Acquire<Self::Future> {
        let limits = self.denials.limit_hashes(set);
        {
            let mut entries = self.denials.lock();
            if entries.len() > 0 {
                for l in limits {
                    entries.forget_limit(l);
                }
            }
        }
        box_acquire(self.inner.refund(set, at))
    }

    /// The inner backend's settings store.
    fn store(&self) -> Option<Arc<dyn SettingsStore>> {
        self.inner.store()
    }

    fn kind(&self) -> &'static str {
        "blocked_cache"
    }

    fn status(&self) -> BackendStatus {
        let mut status = BackendStatus::new(self.kind());
        status.blocked = Some(BlockedStatus::new(self.len(), self.hits()));
        status.parts = vec![self.inner.status()];
        status
    }
}

fn box_acquire<F>(a: Acquire<F>) -> Acquire<BoxFuture>
where
    F: std::future::Future<Output = Result<Outcome, BackendError>> + Send + Unpin + 'static,
{
    a.map_pending(|future| -> BoxFuture { Box::pin(future) })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backend::MemoryBackend;
    use crate::key::Key;
    use crate::{policy::Policy, Quota};

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

    #[tokio::test]
    async fn one_manual_clock_drives_the_backend_and_the_cache_together() {
        let clock = crate::time::ManualClock::starting_at(Nanos::from_secs(1_000));
        let memory = MemoryBackend::builder().clock(clock.clone()).build();
        let b = BlockedCache::new(memory, 100).clock(clock.clone());
        for _ in 0..2 {
            assert!(b.acquire(&set("a")).await.unwrap().allowed());
        }
        assert!(!b.acquire(&set("a")).await.unwrap().allowed());
        clock.advance(Duration::from_secs(29));
        let cached = b.acquire(&set("a")).await.unwrap();
        assert_eq!(cached.decisions()[0].retry_after, Some(Nanos::from_secs(1)));
        assert_eq!(b.hits(), 1);
        clock.advance(Duration::from_secs(1));
        assert!(b.acquire(&set("a")).await.unwrap().allowed());
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
    async fn a_refund_forgets_the_denials_of_its_keys_and_reaches_the_backend() {
        let inner = MemoryBackend::new();
        let b = BlockedCache::new(inner.clone(), 100);
        let first = b.acquire(&set("a")).await.unwrap();
        assert!(b.acquire(&set("a")).await.unwrap().allowed());
        assert!(!b.acquire(&set("a")).await.unwrap().allowed());
        assert!(!b.acquire(&set("a")).await.unwrap().allowed());
        assert_eq!(b.hits(), 1);
        // A denial of another set holding the same (policy, key), and one
        // of another key, remembered too.
        let mut two = LimitSet::new();
        two.push(
            Arc::new(Policy::new("p", Quota::per_minute(2))),
            Key::from("a"),
            1,
        );
        two.push(
            Arc::new(Policy::new("q", Quota::per_minute(5))),
            Key::from("a"),
            1,
        );
        assert!(!b.acquire(&two).await.unwrap().allowed());
        for _ in 0..3 {
            b.acquire(&set("other")).await.unwrap();
        }
        assert_eq!(b.len(), 3);
        let back = b.refund(&set("a"), first.at().unwrap()).await.unwrap();
        assert_eq!(back.decisions()[0].remaining, 1);
        assert_eq!(b.len(), 1, "only the other key's denial is kept");
        assert!(b.acquire(&set("a")).await.unwrap().allowed());
        assert_eq!(b.hits(), 1);
        assert!(b.store().is_none());
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
