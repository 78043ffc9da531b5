//! The write-back ledger of a [`Failover`](super::Failover): the units its
//! fallback admitted per (policy, key), awaiting write-back into the
//! primary.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::key::Key;
use crate::policy::{Limit, LimitSet, Policy};

/// At and above this many keys the record is split into shards.
const SHARDED_FROM: usize = 4096;
const LEDGER_SHARDS: usize = 16;

/// One (policy, key) to write back.
pub(super) struct Recorded {
    pub(super) policy: Arc<Policy>,
    pub(super) key: Key,
    pub(super) units: u64,
}

type LedgerKey = (u64, Key);

/// Units admitted by the fallback per (policy, key), bounded, least
/// recently updated dropped first. Sharded when large, so that recording
/// during an outage (every admitted request) takes no global lock.
pub(super) struct Ledger {
    shards: Box<[Mutex<LedgerShard>]>,
    shard_capacity: usize,
    max_keys: usize,
    hasher: RandomState,
    len: AtomicUsize,
    /// Dropped since the last write-back started.
    dropped: AtomicU64,
    dropped_total: AtomicU64,
    warned_full: AtomicBool,
}

#[derive(Default)]
struct LedgerShard {
    map: HashMap<LedgerKey, Entry>,
    /// Keys in update order, with the update's sequence number; an item
    /// whose number is no longer the entry's is stale and skipped.
    order: VecDeque<(LedgerKey, u64)>,
    seq: u64,
}

struct Entry {
    policy: Arc<Policy>,
    units: u64,
    seq: u64,
}

impl Ledger {
    pub(super) fn new(max_keys: usize) -> Self {
        let shards = if max_keys >= SHARDED_FROM {
            LEDGER_SHARDS
        } else {
            1
        };
        Ledger {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            shard_capacity: max_keys / shards,
            max_keys,
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            warned_full: AtomicBool::new(false),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Keys dropped from the full record since the start.
    pub(super) fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Keys dropped since the last call (the write-back that starts counts
    /// them).
    pub(super) fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    fn shard(&self, key: &LedgerKey) -> MutexGuard<'_, LedgerShard> {
        let i = if self.shards.len() == 1 {
            0
        } else {
            self.hasher.hash_one(key) as usize % self.shards.len()
        };
        lock(&self.shards[i])
    }

    pub(super) fn record(&self, limit: &Limit, units: u64) {
        self.record_parts(limit.policy.clone(), limit.key.clone(), units, true);
    }

    /// Adds `units` to a key's record. `touch` makes it the most recently
    /// updated; a restored entry (`touch` false) that is still there keeps
    /// its place.
    pub(super) fn record_parts(&self, policy: Arc<Policy>, key: Key, units: u64, touch: bool) {
        if units == 0 || self.shard_capacity == 0 {
            return;
        }
        let k = (policy.id(), key);
        let mut guard = self.shard(&k);
        let LedgerShard { map, order, seq } = &mut *guard;
        *seq += 1;
        if let Some(e) = map.get_mut(&k) {
            e.units = e.units.saturating_add(units);
            e.policy = policy;
            if touch {
                e.seq = *seq;
                order.push_back((k, *seq));
            }
        } else {
            while map.len() >= self.shard_capacity {
                let Some((old, old_seq)) = order.pop_front() else {
                    break;
                };
                if map.get(&old).is_some_and(|e| e.seq == old_seq) {
                    map.remove(&old);
                    self.note_dropped();
                }
            }
            map.insert(
                k.clone(),
                Entry {
                    policy,
                    units,
                    seq: *seq,
                },
            );
            order.push_back((k, *seq));
            self.len.fetch_add(1, Ordering::AcqRel);
        }
        // Updates leave stale items behind: compact when they dominate.
        if order.len() > 2 * map.len() + 16 {
            order.retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    fn note_dropped(&self) {
        self.len.fetch_sub(1, Ordering::AcqRel);
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_total.fetch_add(1, Ordering::Relaxed);
        if !self.warned_full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max_reconcile_keys = self.max_keys,
                "tollgate: the failover's reconciliation record is full; the least recently \
                 updated keys are dropped and their local consumption will not be written \
                 back. Raise Failover::builder().max_reconcile_keys() if this is not a flood."
            );
        }
    }

    /// Takes every entry, least recently updated first per shard.
    pub(super) fn drain(&self) -> Vec<Recorded> {
        let mut out = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let LedgerShard { map, order, .. } = &mut *shard;
            for (k, s) in order.drain(..) {
                if map.get(&k).is_some_and(|e| e.seq == s) {
                    if let Some(e) = map.remove(&k) {
                        out.push(Recorded {
                            policy: e.policy,
                            key: k.1,
                            units: e.units,
                        });
                    }
                }
            }
            // Defensive: every entry has a current queue item.
            for ((_, key), e) in map.drain() {
                out.push(Recorded {
                    policy: e.policy,
                    key,
                    units: e.units,
                });
            }
        }
        self.len.fetch_sub(out.len(), Ordering::AcqRel);
        self.warned_full.store(false, Ordering::Relaxed);
        out
    }

    /// Takes up to `units` off a key's record (a refund answered by the
    /// fallback), forgetting the key at zero.
    pub(super) fn take(&self, limit: &Limit, units: u64) {
        if units == 0 || self.len() == 0 {
            return;
        }
        let k = (limit.policy.id(), limit.key.clone());
        let mut shard = self.shard(&k);
        let Some(e) = shard.map.get_mut(&k) else {
            return;
        };
        e.units = e.units.saturating_sub(units);
        if e.units == 0 {
            shard.map.remove(&k);
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Forgets the set's keys (all their units taken off).
    pub(super) fn forget(&self, set: &LimitSet) {
        for limit in set.limits() {
            self.take(limit, u64::MAX);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quota;

    fn limit(p: &Arc<Policy>, key: &str) -> Limit {
        Limit {
            policy: p.clone(),
            key: Key::from(key),
            cost: 1,
        }
    }

    fn keys(out: &[Recorded]) -> Vec<(String, u64)> {
        out.iter()
            .map(|r| {
                (
                    String::from_utf8_lossy(r.key.as_bytes()).into_owned(),
                    r.units,
                )
            })
            .collect()
    }

    #[test]
    fn the_record_merges_units_and_drops_the_least_recently_updated_key() {
        let p = Arc::new(Policy::new("p", Quota::per_minute(5)));
        let ledger = Ledger::new(2);
        ledger.record(&limit(&p, "a"), 1);
        ledger.record(&limit(&p, "b"), 1);
        ledger.record(&limit(&p, "a"), 2);
        // "b" is the least recently updated: it goes.
        ledger.record(&limit(&p, "c"), 1);
        assert_eq!(ledger.len(), 2);
        assert_eq!(ledger.dropped_total.load(Ordering::Relaxed), 1);
        assert_eq!(keys(&ledger.drain()), [("a".into(), 3), ("c".into(), 1)]);
        assert_eq!(ledger.len(), 0);
    }

    #[test]
    fn stale_queue_items_are_compacted() {
        let p = Arc::new(Policy::new("p", Quota::per_minute(5)));
        let ledger = Ledger::new(10);
        for _ in 0..10_000 {
            ledger.record(&limit(&p, "hot"), 1);
        }
        assert!(lock(&ledger.shards[0]).order.len() <= 20);
        assert_eq!(keys(&ledger.drain()), [("hot".into(), 10_000)]);
    }

    #[test]
    fn policies_keep_separate_records_and_reset_forgets_a_key() {
        let p = Arc::new(Policy::new("p", Quota::per_minute(5)));
        let q = Arc::new(Policy::new("q", Quota::per_minute(5)));
        let ledger = Ledger::new(10);
        ledger.record(&limit(&p, "k"), 1);
        ledger.record(&limit(&q, "k"), 1);
        assert_eq!(ledger.len(), 2);
        ledger.forget(&LimitSet::single(p, Key::from("k"), 0));
        let out = ledger.drain();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].policy.name(), "q");
    }

    #[test]
    fn a_large_record_is_sharded_and_stays_within_its_bound() {
        let p = Arc::new(Policy::new("p", Quota::per_minute(5)));
        let ledger = Ledger::new(5_000);
        assert_eq!(ledger.shards.len(), LEDGER_SHARDS);
        for i in 0..20_000u64 {
            ledger.record(
                &Limit {
                    policy: p.clone(),
                    key: Key::from(i),
                    cost: 1,
                },
                1,
            );
        }
        assert!(ledger.len() <= 5_000);
        assert_eq!(
            ledger.len() as u64 + ledger.dropped_total.load(Ordering::Relaxed),
            20_000
        );
        let n = ledger.len();
        assert_eq!(ledger.drain().len(), n);
        assert_eq!(ledger.len(), 0);
    }

    #[test]
    fn a_zero_bound_records_nothing() {
        let p = Arc::new(Policy::new("p", Quota::per_minute(5)));
        let ledger = Ledger::new(0);
        ledger.record(&limit(&p, "a"), 1);
        assert_eq!(ledger.len(), 0);
    }
}
