//! The in-memory backend: sharded, bounded, synchronous.
//!
//! Keys are stored as 63-bit keyed fingerprints: SipHash-1-3 of the
//! policy and the key, with random keys per backend, so a client cannot
//! aim for a collision without the keys. Two of a million live keys share a
//! counter with probability about n²/2⁶⁴ = 5 × 10⁻⁸ (n = 10⁶). The keys
//! spread over shards, each behind its own short-held mutex on its own
//! cache line: no global lock, nothing held across an await (nothing here
//! awaits). A shard is a flat open-addressing table
//! ([`table`](self::table)): GCRA's state is one `u64` per key (its
//! theoretical arrival time, which is also the instant the key goes idle),
//! 16 bytes a slot; the other algorithms keep their state beside the
//! instant it goes idle.
//!
//! **Bounded, and fair when full.** At most `max_keys` keys (default
//! [`DEFAULT_MAX_KEYS`]), counted across shards, so an uneven spread never
//! turns a newcomer away below the bound. At the bound, a newcomer takes the
//! place of the stored key that gains least from being forgotten: among 32
//! keys sampled from its shard (around the slot the newcomer's keyed
//! fingerprint picks for it), an idle one if any (it loses nothing), else one
//! whose last check passed, closest to going idle; a key whose last check
//! was denied goes only when every sampled key was denied too. The cost is
//! bounded per request (at most 128 slots read per table), with no sweep
//! and no background task.
//!
//! **What a forgotten client gains.** Its next request starts from a fresh
//! state: it gets back what it had used and not yet repaid, at most one
//! burst, and only if no sampled key was closer to idle. Under a flood of
//! fresh addresses the flood's own keys are closest to idle (one request
//! each, so one request is all each regains), and a client being limited
//! is never freed while a key that passed could go instead.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use siphasher::sip::SipHasher13;
use smallvec::SmallVec;

use super::{Acquire, Backend, BackendStatus, MemoryStatus, Outcome};
use crate::key::Key;
use crate::policy::{Limit, LimitSet, Policy};
use crate::time::{Clock, MonotonicClock, Nanos};
use crate::{
    algorithm::{gcra, Commit, Input, State},
    Algorithm, Decision,
};

mod table;

use table::{fingerprint_from_hash, Candidate, Idle, Table};

/// The default bound on stored keys: one million (with GCRA about 20 bytes a
/// key at the bound, measured by `cargo bench -p tollgate-benches --bench memory`).
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// Keys read per table when choosing one to forget.
const EVICTION_SAMPLES: usize = 32;

/// Keys a shard is expected to hold at least, when the shard count is not
/// set: fewer, larger shards for small bounds.
const MIN_KEYS_PER_SHARD: usize = 256;

/// The in-memory backend (the default).
///
/// Cheap to clone: clones share the same table. Build one with
/// [`MemoryBackend::new`] or [`MemoryBackend::builder`].
///
/// ```
/// use std::sync::Arc;
/// use tollgate::{Quota, backend::{Backend, MemoryBackend}, key::Key, policy::{LimitSet, Policy}};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let backend = MemoryBackend::builder().max_keys(10_000).build();
/// let policy = Arc::new(Policy::new("api", Quota::per_second(2)));
/// let set = LimitSet::single(policy, Key::from("alice"), 1);
/// assert!(backend.acquire(&set).await.unwrap().allowed());
/// assert!(backend.acquire(&set).await.unwrap().allowed());
/// assert!(!backend.acquire(&set).await.unwrap().allowed());
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Padded<Mutex<Shard>>]>,
    shard_mask: u64,
    /// The most keys one shard may hold (the expected share plus a margin
    /// no random spread reaches).
    shard_max: usize,
    max_keys: usize,
    /// Keys stored across all shards.
    stored: AtomicUsize,
    evictions: AtomicU64,
    clock: Arc<dyn Clock>,
    hasher: SipHasher13,
    warned_full: AtomicBool,
}

/// A shard on cache lines of its own, so that two threads on two shards
/// never write the same line (128 bytes: adjacent-line prefetch pairs them).
#[repr(align(128))]
struct Padded<T>(T);

struct Shard {
    /// GCRA: theoretical arrival time, which is also when the key goes idle.
    gcra: Table<u64>,
    /// Every other algorithm.
    wide: Table<Wide>,
}

#[derive(Default)]
struct Wide {
    state: State,
    idle_at: u64,
}

impl Idle for Wide {
    fn idle_at(&self) -> u64 {
        self.idle_at
    }
}

impl Shard {
    fn new(max_len: usize) -> Self {
        Shard {
            gcra: Table::new(max_len),
            wide: Table::new(max_len),
        }
    }

    fn len(&self) -> usize {
        self.gcra.len() + self.wide.len()
    }

    fn contains(&self, fp: u64, narrow: bool) -> bool {
        if narrow {
            self.gcra.find(fp).is_some()
        } else {
            self.wide.find(fp).is_some()
        }
    }

    fn state(&self, fp: u64, narrow: bool) -> State {
        if narrow {
            self.gcra.get(fp).map_or(State::Fresh, |t| State::Gcra {
                tat: Nanos::new(*t),
            })
        } else {
            self.wide.get(fp).map_or(State::Fresh, |s| s.state.clone())
        }
    }

    /// Drops every idle key; returns how many.
    fn sweep(&mut self, now: u64) -> usize {
        self.gcra.sweep(now) + self.wide.sweep(now)
    }

    /// Marks a stored key as denied (or not) by its last check.
    fn mark(&mut self, fp: u64, narrow: bool, denied: bool) {
        if narrow {
            if let Some(i) = self.gcra.find(fp) {
                self.gcra.mark(i, denied);
            }
        } else if let Some(i) = self.wide.find(fp) {
            self.wide.mark(i, denied);
        }
    }

    /// Writes a key's state (stored or not: the caller made room).
    fn write(&mut self, fp: u64, narrow: bool, commit: Commit, idle_at: u64) {
        if narrow {
            if let Commit::Replace(State::Gcra { tat }) = commit {
                match self.gcra.find(fp) {
                    Some(i) => *self.gcra.value_mut(i) = tat.as_u64(),
                    None => {
                        self.gcra.insert(fp, tat.as_u64());
                    }
                }
            }
            return;
        }
        let i = match self.wide.find(fp) {
            Some(i) => i,
            None => self.wide.insert(fp, Wide::default()),
        };
        let slot = self.wide.value_mut(i);
        slot.state.apply(commit);
        slot.idle_at = idle_at;
    }

    /// The key to forget to make room for `fp`, if the shard holds any.
    fn victim(&self, fp: u64, now: u64) -> Option<(bool, Candidate)> {
        // Sample where the newcomer will live: the slot its keyed
        // fingerprint picks (a client cannot steer it), so that room is
        // made where keys are added and no region fills up with the keys
        // that sampling passes over.
        let narrow = self
            .gcra
            .sample(self.gcra.home_of(fp), EVICTION_SAMPLES, now);
        let wide = self
            .wide
            .sample(self.wide.home_of(fp), EVICTION_SAMPLES, now);
        match (narrow, wide) {
            (Some(n), Some(w)) if w.better_than(&n) => Some((false, w)),
            (Some(n), _) => Some((true, n)),
            (None, Some(w)) => Some((false, w)),
            (None, None) => None,
        }
    }

    fn remove(&mut self, narrow: bool, index: usize) {
        if narrow {
            self.gcra.remove(index);
        } else {
            self.wide.remove(index);
        }
    }
}

/// Builder for [`MemoryBackend`].
///
/// ```
/// use tollgate::backend::MemoryBackend;
/// use tollgate::time::MonotonicClock;
/// use tollgate::time::Nanos;
///
/// let backend = MemoryBackend::builder()
///     .max_keys(100_000)
///     .shards(32)
///     .clock(MonotonicClock::starting_at(Nanos::ZERO))
///     .build();
/// assert_eq!(backend.max_keys(), 100_000);
/// ```
pub struct MemoryBackendBuilder {
    max_keys: usize,
    shards: Option<usize>,
    clock: Option<Arc<dyn Clock>>,
}

impl MemoryBackendBuilder {
    /// The most keys kept at once (default [`DEFAULT_MAX_KEYS`], at least
    /// one).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// The number of shards, rounded up to a power of two (default: 4 ×
    /// the available parallelism, at least 64, and at most one per 256
    /// keys of `max_keys`).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards.max(1));
        self
    }

    /// The clock (default [`MonotonicClock::new`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Builds the backend.
    pub fn build(self) -> MemoryBackend {
        let shards = self
            .shards
            .unwrap_or_else(|| {
                let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
                (parallelism * 4)
                    .max(64)
                    .min((self.max_keys / MIN_KEYS_PER_SHARD).max(1))
            })
            .next_power_of_two();
        let expected = self.max_keys.div_ceil(shards);
        // Six standard deviations of a binomial spread over the expected
        // share, and a little more for small shards: a shard is never full
        // before the whole table is, short of odds below 10⁻⁹.
        let margin = 6 * (expected as f64).sqrt().ceil() as usize + 16;
        let shard_max = (expected + margin).min(self.max_keys);
        let (k0, k1) = random_keys();
        MemoryBackend {
            inner: Arc::new(Inner {
                shards: (0..shards)
                    .map(|_| Padded(Mutex::new(Shard::new(shard_max))))
                    .collect(),
                shard_mask: shards as u64 - 1,
                shard_max,
                max_keys: self.max_keys,
                stored: AtomicUsize::new(0),
                evictions: AtomicU64::new(0),
                clock: self
                    .clock
                    .unwrap_or_else(|| Arc::new(MonotonicClock::new())),
                hasher: SipHasher13::new_with_keys(k0, k1),
                warned_full: AtomicBool::new(false),
            }),
        }
    }
}

/// Two random 64-bit keys from the standard library's per-process random
/// hasher seeds: no extra dependency for randomness.
fn random_keys() -> (u64, u64) {
    use std::hash::BuildHasher;
    let s = std::collections::hash_map::RandomState::new();
    (s.hash_one(0x5eed_u64), s.hash_one(0xc0ffee_u64))
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("shards", &self.inner.shards.len())
            .field("max_keys", &self.inner.max_keys)
            .finish()
    }
}

/// Where one limit's state lives.
struct Slotted<'a> {
    policy: &'a Policy,
    key: &'a Key,
    cost: u64,
    fp: u64,
    shard: usize,
    narrow: bool,
}

impl MemoryBackend {
    /// A backend with the defaults: [`DEFAULT_MAX_KEYS`], the monotonic
    /// clock.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder.
    pub fn builder() -> MemoryBackendBuilder {
        MemoryBackendBuilder {
            max_keys: DEFAULT_MAX_KEYS,
            shards: None,
            clock: None,
        }
    }

    /// The bound on stored keys.
    pub fn max_keys(&self) -> usize {
        self.inner.max_keys
    }

    /// How many keys are stored now (idle ones included until they are
    /// swept or replaced).
    pub fn len(&self) -> usize {
        self.inner.stored.load(Ordering::Relaxed)
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many keys that were not idle have been forgotten to make room
    /// for newcomers since the backend was built. Zero while the table has
    /// never been full of live keys; if it grows steadily, raise
    /// [`max_keys`](MemoryBackendBuilder::max_keys).
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::Relaxed)
    }

    /// Bytes held by the shards' tables (the keys' memory, without the
    /// logs of [`Algorithm::SlidingWindowLog`]).
    pub fn allocated_bytes(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| {
                let s = lock(&s.0);
                s.gcra.allocated_bytes() + s.wide.allocated_bytes()
            })
            .sum()
    }

    /// Drops every idle key now; returns how many. Never needed for
    /// correctness or for the bound (a full table replaces idle keys
    /// first); useful before measuring memory. Reads every key: call it
    /// from a maintenance task, not per request.
    pub fn sweep(&self) -> usize {
        self.sweep_at(self.inner.clock.now().as_u64())
    }

    fn sweep_at(&self, now: u64) -> usize {
        let dropped = self
            .inner
            .shards
            .iter()
            .map(|s| lock(&s.0).sweep(now))
            .sum();
        self.inner.stored.fetch_sub(dropped, Ordering::Relaxed);
        dropped
    }

    /// The backend's current time.
    pub fn now(&self) -> Nanos {
        self.inner.clock.now()
    }

    /// [`Backend::acquire`] at an explicit instant: how the conformance
    /// table drives exact clock steps. Instants should not go backwards for
    /// a key; if they do, no refill is granted for the negative step.
    ///
    /// Every outcome of this backend is decided at the instant it was
    /// given (or read from its clock): [`Outcome::at`] reports it, for a
    /// later [`refund_at`](Self::refund_at).
    pub fn acquire_at(&self, set: &LimitSet, now: Nanos) -> Outcome {
        self.run(set, now, Mode::Acquire)
    }

    /// [`Backend::peek`] at an explicit instant.
    pub fn peek_at(&self, set: &LimitSet, now: Nanos) -> Outcome {
        self.run(set, now, Mode::Peek)
    }

    /// [`Backend::absorb`] at an explicit instant: counts every limit's
    /// units, over its quota if need be, with
    /// the forced count of [`Algorithm`](crate::Algorithm#counting-over-the-limit); each limit is counted on its own (one shard
    /// lock at a time), in the set's order.
    pub fn absorb_at(&self, set: &LimitSet, now: Nanos) -> Outcome {
        let mut decisions: SmallVec<[Decision; 2]> = SmallVec::new();
        let mut allowed = true;
        for limit in set.limits() {
            let slot = self.slot(limit);
            let algorithm = limit.policy.algorithm();
            let quota = limit.policy.quota();
            let input = Input {
                now,
                cost: limit.cost,
                key_hash: key_hash(&limit.policy, &limit.key),
            };
            let mut shard = lock(&self.inner.shards[slot.shard].0);
            let state = shard.state(slot.fp, slot.narrow);
            let (d, next) = algorithm.force(quota, &state, input);
            if limit.cost > 0 {
                if !shard.contains(slot.fp, slot.narrow) {
                    self.make_room(&mut shard, slot.fp, now.as_u64());
                }
                let idle_at = now.saturating_add(d.reset_after).as_u64();
                shard.write(slot.fp, slot.narrow, Commit::Replace(next), idle_at);
                shard.mark(slot.fp, slot.narrow, !d.allowed);
            }
            drop(shard);
            allowed &= d.allowed || limit.policy.is_shadow();
            decisions.push(d);
        }
        Outcome::new(decisions, allowed).decided_at(now)
    }

    /// [`Backend::refund`] at an explicit instant: gives back what an
    /// acquire of `set` at `at` (its [`Outcome::at`]) counted, limit by
    /// limit, with the refund of [`Algorithm`](crate::Algorithm#refunds) (one shard lock at a time, in the
    /// set's order; the same key twice is refunded twice), and answers the
    /// decisions [`peek_at`](Self::peek_at) gives at `at` afterwards.
    ///
    /// A refund never creates a key: a key that is not stored (never
    /// counted, forgotten by [`reset`](Backend::reset), swept once idle or
    /// replaced by a newcomer in a full table) has nothing to give back and
    /// stays absent. A lost refund only makes the limiter stricter.
    pub fn refund_at(&self, set: &LimitSet, at: Nanos) -> Outcome {
        for limit in set.limits() {
            if limit.cost == 0 {
                continue;
            }
            let slot = self.slot(limit);
            let algorithm = limit.policy.algorithm();
            let quota = limit.policy.quota();
            let input = Input {
                now: at,
                cost: limit.cost,
                key_hash: key_hash(&limit.policy, &limit.key),
            };
            let mut shard = lock(&self.inner.shards[slot.shard].0);
            if slot.narrow {
                if let Some(i) = shard.gcra.find(slot.fp) {
                    let tat = shard.gcra.value_mut(i);
                    let state = State::Gcra {
                        tat: Nanos::new(*tat),
                    };
                    if let State::Gcra { tat: next } = algorithm.refund(quota, &state, input) {
                        *tat = next.as_u64();
                    }
                }
            } else if let Some(i) = shard.wide.find(slot.fp) {
                let stored = shard.wide.value_mut(i);
                stored.state = algorithm.refund(quota, &stored.state, input);
            }
        }
        self.run(set, at, Mode::Peek)
    }

    /// SipHash-1-3 of the key in one call (no streaming state), mixed
    /// with an odd multiple of the policy id. Both parts of the mix are
    /// bijective in their own input, so one key under two policies never
    /// collides, and two keys collide only if the keyed hashes happen to
    /// differ by what the ids do: the 2⁻⁶⁴ odds of any pair, unguessable
    /// without the backend's random keys.
    #[inline]
    fn fingerprint(&self, policy: &Policy, key: &Key) -> u64 {
        let key = self.inner.hasher.hash(key.as_bytes());
        let policy = policy.id().wrapping_mul(0x9e37_79b9_7f4a_7c15);
        fingerprint_from_hash(key ^ policy)
    }

    #[inline]
    fn slot<'a>(&self, limit: &'a Limit) -> Slotted<'a> {
        self.slot_of(&limit.policy, &limit.key, limit.cost)
    }

    #[inline]
    fn slot_of<'a>(&self, policy: &'a Policy, key: &'a Key, cost: u64) -> Slotted<'a> {
        let fp = self.fingerprint(policy, key);
        Slotted {
            policy,
            key,
            cost,
            fp,
            // The low bits: a table's home slot comes from the high ones.
            shard: (fp & self.inner.shard_mask) as usize,
            narrow: policy.algorithm() == Algorithm::Gcra,
        }
    }

    /// Makes room in `shard` (locked) for the absent key `fp`: a free seat
    /// below the bound, else the place of the key that gains least from
    /// being forgotten.
    fn make_room(&self, shard: &mut Shard, fp: u64, now: u64) {
        let stored = &self.inner.stored;
        if shard.len() < self.inner.shard_max {
            if stored.fetch_add(1, Ordering::Relaxed) < self.inner.max_keys {
                return;
            }
            stored.fetch_sub(1, Ordering::Relaxed);
        }
        let Some((narrow, victim)) = shard.victim(fp, now) else {
            // Nothing here to forget (a tiny bound over many shards): the
            // bound is exceeded by at most one key per shard.
            stored.fetch_add(1, Ordering::Relaxed);
            return;
        };
        shard.remove(narrow, victim.index);
        if victim.idle_at > now {
            self.inner.evictions.fetch_add(1, Ordering::Relaxed);
            if !self.inner.warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_keys = self.inner.max_keys,
                    "tollgate: the in-memory backend is full of active keys; each new key now \
                     replaces the one closest to going idle (never a client being limited while \
                     another can go). Raise MemoryBackend::builder().max_keys() if this is not \
                     a flood."
                );
            }
        }
    }

    #[inline]
    fn run(&self, set: &LimitSet, now: Nanos, mode: Mode) -> Outcome {
        let outcome = match set.limits() {
            [] => Outcome::new(SmallVec::new(), true),
            [one] => self.run_one(one, now, mode),
            many => self.run_many(many, now, mode),
        };
        outcome.decided_at(now)
    }

    /// The common case: one limit, one shard lock, no allocation.
    #[inline]
    fn run_one(&self, limit: &Limit, now: Nanos, mode: Mode) -> Outcome {
        let slot = self.slot(limit);
        let decision = self.decide_one(&slot, now, mode);
        Outcome::one(decision, decision.allowed || limit.policy.is_shadow())
    }

    /// Checks one key of one policy now, synchronously, on borrowed
    /// values: no [`LimitSet`] to build, nothing to clone. The decision
    /// is the policy's own (a shadow policy's denial is reported as a
    /// denial; [`Backend::acquire`] lets it pass).
    ///
    /// ```
    /// use tollgate::{Quota, backend::MemoryBackend, key::Key, policy::Policy};
    ///
    /// let backend = MemoryBackend::new();
    /// let policy = Policy::new("api", Quota::per_second(1));
    /// let key = Key::from("alice");
    /// assert!(backend.check(&policy, &key, 1).allowed);
    /// assert!(!backend.check(&policy, &key, 1).allowed);
    /// ```
    #[inline]
    pub fn check(&self, policy: &Policy, key: &Key, cost: u64) -> Decision {
        let slot = self.slot_of(policy, key, cost);
        self.decide_one(&slot, self.inner.clock.now(), Mode::Acquire)
    }

    #[inline]
    fn decide_one(&self, slot: &Slotted<'_>, now: Nanos, mode: Mode) -> Decision {
        let mut shard = lock(&self.inner.shards[slot.shard].0);
        if mode == Mode::Reset {
            self.forget(&mut shard, slot);
            drop(shard);
            return self.decide_one(slot, now, Mode::Peek);
        }
        let algorithm = slot.policy.algorithm();
        let quota = slot.policy.quota();
        let input = Input {
            now,
            cost: slot.cost,
            key_hash: key_hash(slot.policy, slot.key),
        };
        if mode == Mode::Peek {
            let state = shard.state(slot.fp, slot.narrow);
            drop(shard);
            return peek_decision(algorithm, quota, &state, input);
        }
        // Known key: one lookup, updated in place.
        let known = if slot.narrow {
            shard.gcra.find(slot.fp).map(|i| {
                let tat = shard.gcra.value_mut(i);
                let (d, next) = gcra::check_tat(quota, *tat, input);
                if let Some(next) = next {
                    *tat = next;
                }
                shard.gcra.mark(i, !d.allowed);
                d
            })
        } else {
            shard.wide.find(slot.fp).map(|i| {
                let stored = shard.wide.value_mut(i);
                let (d, commit) = algorithm.check(quota, &stored.state, input);
                if let Some(commit) = commit {
                    stored.state.apply(commit);
                    stored.idle_at = now.saturating_add(d.reset_after).as_u64();
                }
                shard.wide.mark(i, !d.allowed);
                d
            })
        };
        match known {
            Some(d) => d,
            None => {
                let (d, commit) = algorithm.check(quota, &State::Fresh, input);
                if let Some(commit) = commit {
                    self.make_room(&mut shard, slot.fp, now.as_u64());
                    let idle_at = now.saturating_add(d.reset_after).as_u64();
                    shard.write(slot.fp, slot.narrow, commit, idle_at);
                }
                d
            }
        }
    }

    /// Several limits: lock their shards in index order (no deadlock),
    /// decide all on tentative copies, write back only if the set passes.
    fn run_many(&self, limits: &[Limit], now: Nanos, mode: Mode) -> Outcome {
        let slots: SmallVec<[Slotted<'_>; 4]> = limits.iter().map(|l| self.slot(l)).collect();
        let mut order: SmallVec<[usize; 4]> = slots.iter().map(|s| s.shard).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: SmallVec<[MutexGuard<'_, Shard>; 4]> = order
            .iter()
            .map(|&i| lock(&self.inner.shards[i].0))
            .collect();
        let guard_of = |shard: usize| order.binary_search(&shard).unwrap_or(0);

        if mode == Mode::Reset {
            for slot in &slots {
                self.forget(&mut guards[guard_of(slot.shard)], slot);
            }
            drop(guards);
            return self.run_many(limits, now, Mode::Peek);
        }

        // Tentative states, so a key that appears twice sees its own first
        // count; nothing is written until every limit has decided.
        let mut tentative: SmallVec<[Tentative; 4]> = SmallVec::new();
        let mut decisions: SmallVec<[Decision; 2]> = SmallVec::new();
        let mut allowed = true;
        for slot in &slots {
            let g = &guards[guard_of(slot.shard)];
            let pos = tentative
                .iter()
                .position(|t| t.fp == slot.fp && t.narrow == slot.narrow);
            let state = match pos {
                Some(i) => tentative[i].state.clone(),
                None => g.state(slot.fp, slot.narrow),
            };
            let input = Input {
                now,
                cost: slot.cost,
                key_hash: key_hash(slot.policy, slot.key),
            };
            let algorithm = slot.policy.algorithm();
            let quota = slot.policy.quota();
            if mode == Mode::Peek {
                let d = peek_decision(algorithm, quota, &state, input);
                allowed &= d.allowed || slot.policy.is_shadow();
                decisions.push(d);
                continue;
            }
            let (d, commit) = algorithm.check(quota, &state, input);
            allowed &= d.allowed || slot.policy.is_shadow();
            if let Some(commit) = commit {
                let mut next = state;
                next.apply(commit);
                let idle_at = now.saturating_add(d.reset_after).as_u64();
                match pos {
                    Some(i) => {
                        tentative[i].state = next;
                        tentative[i].idle_at = idle_at;
                    }
                    None => tentative.push(Tentative {
                        fp: slot.fp,
                        shard: slot.shard,
                        narrow: slot.narrow,
                        state: next,
                        idle_at,
                    }),
                }
            }
            decisions.push(d);
        }
        if mode == Mode::Acquire {
            if allowed {
                for t in tentative {
                    let g = &mut guards[guard_of(t.shard)];
                    if !g.contains(t.fp, t.narrow) {
                        self.make_room(g, t.fp, now.as_u64());
                    }
                    g.write(t.fp, t.narrow, Commit::Replace(t.state), t.idle_at);
                }
            }
            for (slot, d) in slots.iter().zip(&decisions) {
                guards[guard_of(slot.shard)].mark(slot.fp, slot.narrow, !d.allowed);
            }
        }
        drop(guards);
        Outcome::new(decisions, allowed)
    }

    fn forget(&self, shard: &mut Shard, slot: &Slotted<'_>) {
        let index = if slot.narrow {
            shard.gcra.find(slot.fp)
        } else {
            shard.wide.find(slot.fp)
        };
        if let Some(i) = index {
            shard.remove(slot.narrow, i);
            self.inner.stored.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A state decided but not yet written (multi-limit sets).
struct Tentative {
    fp: u64,
    shard: usize,
    narrow: bool,
    state: State,
    idle_at: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Acquire,
    Peek,
    Reset,
}

/// The stable key hash, only computed when the algorithm needs it.
fn key_hash(policy: &Policy, key: &Key) -> u64 {
    if policy.algorithm() == Algorithm::FixedWindowStaggered {
        key.stable_hash()
    } else {
        0
    }
}

/// What `acquire` would answer, with `remaining` and `reset` as of now.
fn peek_decision(
    algorithm: Algorithm,
    quota: &crate::Quota,
    state: &State,
    input: Input,
) -> Decision {
    let (at_cost, _) = algorithm.check(quota, state, input);
    let now = algorithm.peek(quota, state, input.now, input.key_hash);
    let mut d = at_cost;
    d.remaining = now.remaining;
    d.reset_after = now.reset_after;
    d
}

/// A poisoned shard only means another thread panicked mid-update of plain
/// integers; the data is still a valid state, so keep serving.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Backend for MemoryBackend {
    type Future = std::future::Ready<Result<Outcome, super::BackendError>>;

    fn acquire(&self, set: &LimitSet) -> Acquire<Self::Future> {
        Acquire::ready(Ok(self.run(set, self.inner.clock.now(), Mode::Acquire)))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn status(&self) -> BackendStatus {
        let mut status = BackendStatus::new(self.kind());
        status.memory = Some(MemoryStatus::new(
            self.len(),
            self.max_keys(),
            self.evictions(),
        ));
        status
    }

    #[inline]
    fn acquire_now(&self, policy: &Policy, key: &Key, cost: u64) -> Option<Decision> {
        Some(self.check(policy, key, cost))
    }

    fn peek(&self, set: &LimitSet) -> Acquire<Self::Future> {
        Acquire::ready(Ok(self.run(set, self.inner.clock.now(), Mode::Peek)))
    }

    fn reset(&self, set: &LimitSet) -> Acquire<Self::Future> {
        Acquire::ready(Ok(self.run(set, self.inner.clock.now(), Mode::Reset)))
    }

    fn absorb(&self, set: &LimitSet) -> Acquire<Self::Future> {
        Acquire::ready(Ok(self.absorb_at(set, self.inner.clock.now())))
    }

    /// [`refund_at`](MemoryBackend::refund_at) the given instant: the
    /// answer describes the keys at `at`.
    fn refund(&self, set: &LimitSet, at: Nanos) -> Acquire<Self::Future> {
        Acquire::ready(Ok(self.refund_at(set, at)))
    }
}

#[cfg(test)]
mod tests;
