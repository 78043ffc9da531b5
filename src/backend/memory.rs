//! The in-memory backend: sharded, bounded, synchronous.
//!
//! Keys are stored as 64-bit keyed hashes (SipHash-1-3 with random keys per
//! backend, so a client cannot aim for a collision; two of a million live
//! keys share a counter with probability about 3 × 10⁻⁸), spread over shards each
//! behind its own short-held mutex: no global lock, nothing held across an
//! await (nothing here awaits). GCRA state is one `u64` per key (its
//! theoretical arrival time, which is also the instant the key goes idle);
//! the other algorithms keep their state beside the instant it goes idle.
//!
//! **Bounded.** At most `max_keys` keys (default [`DEFAULT_MAX_KEYS`]).
//! Idle keys (whose state equals a fresh one) are dropped by sweeps that run
//! as the table grows and, when it is full, at most every 250 ms per shard:
//! no background task to spawn. When a shard is full of keys that are still
//! counting, a new key is **not** let in by evicting one (that would hand an
//! evicted, limited client a fresh quota); it is counted in a per-policy
//! overflow bucket shared by all keys that could not be stored, and a
//! warning is logged once. Under a flood of unique keys, known clients keep
//! their exact state and the flood shares one quota.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use siphasher::sip::SipHasher13;
use smallvec::SmallVec;

use super::{Acquire, Backend, Outcome};
use crate::key::Key;
use crate::policy::{Limit, LimitSet};
use crate::time::{Clock, MonotonicClock, Nanos};
use crate::{
    algorithm::{Commit, Input, State},
    Algorithm, Decision,
};

/// The default bound on stored keys: one million (with GCRA about 37 bytes a
/// key, 35 MiB in all, measured by `cargo bench --bench memory`).
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// How often a full shard may be swept for idle keys.
const FULL_SWEEP_INTERVAL: Nanos = Nanos::from_millis(250);

/// The smallest table size at which growth triggers a sweep.
const MIN_SWEEP_LEN: usize = 1024;

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
    shards: Box<[Mutex<Shard>]>,
    shard_mask: usize,
    shard_capacity: usize,
    max_keys: usize,
    clock: Arc<dyn Clock>,
    hash_keys: (u64, u64),
    warned_full: AtomicBool,
}

/// A fingerprint is already uniformly random: use it as the hash.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map<V> = HashMap<u64, V, BuildHasherDefault<FingerprintHasher>>;

/// The shard comes from the middle bits of a fingerprint: the hash table
/// uses the low bits for the bucket and the top bits for its tag.
const SHARD_SHIFT: u32 = 32;

fn shard_of(fp: u64, mask: usize) -> usize {
    (fp >> SHARD_SHIFT) as usize & mask
}

#[derive(Default)]
struct Shard {
    /// GCRA: theoretical arrival time, which is also when the key goes idle.
    gcra: Map<u64>,
    /// Every other algorithm.
    wide: Map<Slot>,
    /// A lower bound on the earliest `idle_at` in the shard.
    earliest_idle: u64,
    last_sweep: u64,
    next_sweep_len: usize,
}

struct Slot {
    state: State,
    idle_at: u64,
}

impl Shard {
    fn len(&self) -> usize {
        self.gcra.len() + self.wide.len()
    }

    fn contains(&self, fp: u64, narrow: bool) -> bool {
        if narrow {
            self.gcra.contains_key(&fp)
        } else {
            self.wide.contains_key(&fp)
        }
    }

    fn state(&self, fp: u64, narrow: bool) -> State {
        if narrow {
            self.gcra.get(&fp).map_or(State::Fresh, |t| State::Gcra {
                tat: Nanos::new(*t),
            })
        } else {
            self.wide.get(&fp).map_or(State::Fresh, |s| s.state.clone())
        }
    }

    /// Drops every idle key; returns how many.
    fn sweep(&mut self, now: u64) -> usize {
        let before = self.len();
        self.gcra.retain(|_, tat| *tat > now);
        self.wide.retain(|_, s| s.idle_at > now);
        let earliest = self
            .gcra
            .values()
            .copied()
            .chain(self.wide.values().map(|s| s.idle_at))
            .min();
        self.earliest_idle = earliest.unwrap_or(u64::MAX);
        self.last_sweep = now;
        self.next_sweep_len = (self.len() * 2).max(MIN_SWEEP_LEN);
        before - self.len()
    }

    fn note_idle_at(&mut self, idle_at: u64) {
        self.earliest_idle = self.earliest_idle.min(idle_at);
    }

    fn write(&mut self, fp: u64, narrow: bool, commit: Commit, idle_at: u64) {
        self.note_idle_at(idle_at);
        if narrow {
            if let Commit::Replace(State::Gcra { tat }) = commit {
                self.gcra.insert(fp, tat.as_u64());
            }
            return;
        }
        let slot = self.wide.entry(fp).or_insert(Slot {
            state: State::Fresh,
            idle_at,
        });
        slot.state.apply(commit);
        slot.idle_at = idle_at;
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
    shards: usize,
    clock: Option<Arc<dyn Clock>>,
}

impl MemoryBackendBuilder {
    /// The most keys kept at once (default [`DEFAULT_MAX_KEYS`]; at least
    /// one per shard).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The number of shards, rounded up to a power of two (default: 64, or
    /// 4 × the available parallelism if larger).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.max(1);
        self
    }

    /// The clock (default [`MonotonicClock::new`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Builds the backend.
    pub fn build(self) -> MemoryBackend {
        let shards = self.shards.next_power_of_two();
        let max_keys = self.max_keys.max(shards);
        let shard_capacity = max_keys.div_ceil(shards);
        let hash_keys = random_keys();
        MemoryBackend {
            inner: Arc::new(Inner {
                shards: (0..shards)
                    .map(|_| {
                        Mutex::new(Shard {
                            earliest_idle: u64::MAX,
                            next_sweep_len: MIN_SWEEP_LEN,
                            ..Shard::default()
                        })
                    })
                    .collect(),
                shard_mask: shards - 1,
                shard_capacity,
                max_keys,
                clock: self
                    .clock
                    .unwrap_or_else(|| Arc::new(MonotonicClock::new())),
                hash_keys,
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
    limit: &'a Limit,
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
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        MemoryBackendBuilder {
            max_keys: DEFAULT_MAX_KEYS,
            shards: (parallelism * 4).max(64),
            clock: None,
        }
    }

    /// The bound on stored keys.
    pub fn max_keys(&self) -> usize {
        self.inner.max_keys
    }

    /// How many keys are stored now (idle ones included until swept).
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every idle key now; returns how many. Never needed for
    /// correctness or for the bound; useful before measuring memory.
    pub fn sweep(&self) -> usize {
        let now = self.inner.clock.now().as_u64();
        self.inner.shards.iter().map(|s| lock(s).sweep(now)).sum()
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
            let mut slot = self.slot(limit);
            let algorithm = limit.policy.algorithm();
            let quota = limit.policy.quota();
            let input = Input {
                now,
                cost: limit.cost,
                key_hash: key_hash(limit),
            };
            let mut shard = lock(&self.inner.shards[slot.shard]);
            if limit.cost > 0 {
                self.admit_new_key(&mut shard, &mut slot, now.as_u64());
            }
            let state = shard.state(slot.fp, slot.narrow);
            let (d, next) = algorithm.force(quota, &state, input);
            if limit.cost > 0 {
                let idle_at = now.saturating_add(d.reset_after).as_u64();
                shard.write(slot.fp, slot.narrow, Commit::Replace(next), idle_at);
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
    /// counted, forgotten by [`reset`](Backend::reset), or swept once
    /// idle) has nothing to give back and stays absent. A refund only
    /// shortens the time until a key is idle, and keeps the instant at
    /// which it was due to be swept (like a Redis TTL). Units that a full
    /// table counted in a policy's shared overflow bucket are not
    /// refunded: the refund cannot tell them from a swept key's, and a
    /// lost refund only makes the limiter stricter.
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
                key_hash: key_hash(limit),
            };
            let mut shard = lock(&self.inner.shards[slot.shard]);
            if slot.narrow {
                let refunded = shard.gcra.get_mut(&slot.fp).map(|tat| {
                    let state = State::Gcra {
                        tat: Nanos::new(*tat),
                    };
                    if let State::Gcra { tat: next } = algorithm.refund(quota, &state, input) {
                        *tat = next.as_u64();
                    }
                    *tat
                });
                // The TAT is the key's idle instant: it moved earlier, so
                // the shard's lower bound on idle instants must follow.
                if let Some(tat) = refunded {
                    shard.note_idle_at(tat);
                }
            } else if let Some(stored) = shard.wide.get_mut(&slot.fp) {
                stored.state = algorithm.refund(quota, &stored.state, input);
            }
        }
        self.run(set, at, Mode::Peek)
    }

    fn fingerprint(&self, limit: &Limit) -> u64 {
        let (k0, k1) = self.inner.hash_keys;
        let mut h = SipHasher13::new_with_keys(k0, k1);
        h.write_u64(limit.policy.id());
        h.write(limit.key.as_bytes());
        h.finish()
    }

    fn overflow_fingerprint(&self, limit: &Limit) -> u64 {
        let overflow = Limit {
            policy: limit.policy.clone(),
            key: Key::from_bytes(b"\xfe\xfftollgate-overflow"),
            cost: limit.cost,
        };
        self.fingerprint(&overflow)
    }

    fn slot<'a>(&self, limit: &'a Limit) -> Slotted<'a> {
        let fp = self.fingerprint(limit);
        Slotted {
            limit,
            fp,
            shard: shard_of(fp, self.inner.shard_mask),
            narrow: limit.policy.algorithm() == Algorithm::Gcra,
        }
    }

    /// Makes room for `slot` in its (locked) shard, or redirects it to the
    /// policy's overflow bucket when the shard is full of live keys.
    fn admit_new_key(&self, shard: &mut Shard, slot: &mut Slotted<'_>, now: u64) {
        if shard.contains(slot.fp, slot.narrow) {
            return;
        }
        let len = shard.len();
        if len >= shard.next_sweep_len && len < self.inner.shard_capacity {
            shard.sweep(now);
        }
        if shard.len() < self.inner.shard_capacity {
            return;
        }
        if now >= shard.earliest_idle
            && now.saturating_sub(shard.last_sweep) >= FULL_SWEEP_INTERVAL.as_u64()
        {
            shard.sweep(now);
            if shard.len() < self.inner.shard_capacity {
                return;
            }
        }
        if !self.inner.warned_full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max_keys = self.inner.max_keys,
                "tollgate: the in-memory backend is full of active keys; new keys now share one \
                 overflow bucket per policy until some go idle. Raise MemoryBackend::builder().max_keys() \
                 if this is not a flood."
            );
        }
        // The overflow bucket lives in the same shard so the lock we hold
        // covers it; it may exceed the capacity by one per policy.
        let overflow = self.overflow_fingerprint(slot.limit);
        slot.fp = (overflow & !((self.inner.shard_mask as u64) << SHARD_SHIFT))
            | ((slot.shard as u64) << SHARD_SHIFT);
    }

    fn run(&self, set: &LimitSet, now: Nanos, mode: Mode) -> Outcome {
        let outcome = match set.limits() {
            [] => Outcome::new(SmallVec::new(), true),
            [one] => self.run_one(one, now, mode),
            many => self.run_many(many, now, mode),
        };
        outcome.decided_at(now)
    }

    /// The common case: one limit, one shard lock, no allocation.
    fn run_one(&self, limit: &Limit, now: Nanos, mode: Mode) -> Outcome {
        let mut slot = self.slot(limit);
        let mut shard = lock(&self.inner.shards[slot.shard]);
        if mode == Mode::Reset {
            forget(&mut shard, &slot);
            drop(shard);
            return self.run_one(limit, now, Mode::Peek);
        }
        let key_hash = key_hash(limit);
        let algorithm = limit.policy.algorithm();
        let quota = limit.policy.quota();
        let input = Input {
            now,
            cost: limit.cost,
            key_hash,
        };
        if mode == Mode::Peek {
            let state = shard.state(slot.fp, slot.narrow);
            drop(shard);
            let mut decisions = SmallVec::new();
            let d = peek_decision(algorithm, quota, &state, input);
            let allowed = d.allowed || limit.policy.is_shadow();
            decisions.push(d);
            return Outcome::new(decisions, allowed);
        }
        // Known key: one lookup, updated in place.
        let known = if slot.narrow {
            shard.gcra.get_mut(&slot.fp).map(|tat| {
                let (d, commit) = algorithm.check(
                    quota,
                    &State::Gcra {
                        tat: Nanos::new(*tat),
                    },
                    input,
                );
                if let Some(Commit::Replace(State::Gcra { tat: next })) = commit {
                    *tat = next.as_u64();
                }
                d
            })
        } else {
            shard.wide.get_mut(&slot.fp).map(|stored| {
                let (d, commit) = algorithm.check(quota, &stored.state, input);
                if let Some(commit) = commit {
                    stored.state.apply(commit);
                    stored.idle_at = now.saturating_add(d.reset_after).as_u64();
                }
                d
            })
        };
        // Updates only move a key's idle instant later, so the shard's
        // lower bound on it stays valid without being touched.
        let decision = match known {
            Some(d) => d,
            None => {
                self.admit_new_key(&mut shard, &mut slot, now.as_u64());
                let state = shard.state(slot.fp, slot.narrow);
                let (d, commit) = algorithm.check(quota, &state, input);
                if let Some(commit) = commit {
                    let idle_at = now.saturating_add(d.reset_after).as_u64();
                    shard.write(slot.fp, slot.narrow, commit, idle_at);
                }
                d
            }
        };
        drop(shard);
        let allowed = decision.allowed || limit.policy.is_shadow();
        let mut decisions = SmallVec::new();
        decisions.push(decision);
        Outcome::new(decisions, allowed)
    }

    /// Several limits: lock their shards in index order (no deadlock),
    /// decide all on tentative copies, write back only if the set passes.
    fn run_many(&self, limits: &[Limit], now: Nanos, mode: Mode) -> Outcome {
        let mut slots: SmallVec<[Slotted<'_>; 4]> = limits.iter().map(|l| self.slot(l)).collect();
        let mut order: SmallVec<[usize; 4]> = slots.iter().map(|s| s.shard).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: SmallVec<[(usize, MutexGuard<'_, Shard>); 4]> = order
            .iter()
            .map(|&i| (i, lock(&self.inner.shards[i])))
            .collect();
        let guard_of = |shard: usize| order.binary_search(&shard).unwrap_or(0);

        if mode == Mode::Reset {
            for slot in &slots {
                forget(&mut guards[guard_of(slot.shard)].1, slot);
            }
            drop(guards);
            return self.run_many(limits, now, Mode::Peek);
        }
        if mode == Mode::Acquire {
            for slot in slots.iter_mut() {
                let g = &mut guards[guard_of(slot.shard)].1;
                self.admit_new_key(g, slot, now.as_u64());
            }
        }

        // Tentative states, so a key that appears twice sees its own first
        // count; nothing is written until every limit has decided.
        let mut tentative: SmallVec<[Tentative; 4]> = SmallVec::new();
        let mut decisions: SmallVec<[Decision; 2]> = SmallVec::new();
        let mut allowed = true;
        for slot in &slots {
            let g = &guards[guard_of(slot.shard)].1;
            let pos = tentative
                .iter()
                .position(|t| t.fp == slot.fp && t.narrow == slot.narrow);
            let state = match pos {
                Some(i) => tentative[i].state.clone(),
                None => g.state(slot.fp, slot.narrow),
            };
            let input = Input {
                now,
                cost: slot.limit.cost,
                key_hash: key_hash(slot.limit),
            };
            let algorithm = slot.limit.policy.algorithm();
            let quota = slot.limit.policy.quota();
            if mode == Mode::Peek {
                let d = peek_decision(algorithm, quota, &state, input);
                allowed &= d.allowed || slot.limit.policy.is_shadow();
                decisions.push(d);
                continue;
            }
            let (d, commit) = algorithm.check(quota, &state, input);
            allowed &= d.allowed || slot.limit.policy.is_shadow();
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
                        narrow: slot.narrow,
                        state: next,
                        idle_at,
                    }),
                }
            }
            decisions.push(d);
        }
        if allowed && mode == Mode::Acquire {
            for t in tentative {
                let shard = shard_of(t.fp, self.inner.shard_mask);
                let g = &mut guards[guard_of(shard)].1;
                g.write(t.fp, t.narrow, Commit::Replace(t.state), t.idle_at);
            }
        }
        drop(guards);
        Outcome::new(decisions, allowed)
    }
}

/// A state decided but not yet written (multi-limit sets).
struct Tentative {
    fp: u64,
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

fn forget(shard: &mut Shard, slot: &Slotted<'_>) {
    if slot.narrow {
        shard.gcra.remove(&slot.fp);
    } else {
        shard.wide.remove(&slot.fp);
    }
}

/// The stable key hash, only computed when the algorithm needs it.
fn key_hash(limit: &Limit) -> u64 {
    if limit.policy.algorithm() == Algorithm::FixedWindowStaggered {
        limit.key.stable_hash()
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
