//! The keys that carry the most weight (denials, say) over the last few
//! minutes, in fixed memory: a dashboard's "top limited clients".
//!
//! [`TopKeys`] never sees a key, only a `u64` hash of it that the caller
//! computes with a keyed hash (so the table holds nothing a reader could
//! turn back into an API key), and an optional display label the
//! application chooses (a client address, never a credential).
//!
//! # Algorithm
//!
//! The span is cut into five slices of equal length, the *granularity*.
//! Each slice has its own **Space-Saving** summary (Metwally, Agrawal and
//! El Abbadi, *Efficient computation of frequent and top-k elements in data
//! streams*, ICDT 2005) of at most `capacity` counters:
//!
//! - a tracked key's counter grows by the record's weight;
//! - a new key, while counters are free, takes one with its weight;
//! - otherwise it takes over the counter with the smallest count `min`: its
//!   count becomes `min + weight` and its `error` `min` (what the key it
//!   replaced may have contributed, and so the most the newcomer's earlier,
//!   unseen records may have weighed).
//!
//! A record goes into the summary of the slice its `now` falls in.
//! [`TopKeys::top`] merges the summaries of the slices that overlap the last
//! span (the current one and the five before it, six in all). Per key it
//! sums the counts and errors, and for each slice where the key is not
//! tracked it adds that slice's smallest count to both: a key missing from a
//! full summary may have weighed up to that much there (zero when the summary
//! never filled, since then nothing was ever replaced).
//!
//! # Error bound
//!
//! Let *N* be the weight recorded in the merged slices ([`TopKeys::total`])
//! and *N*<sub>w</sub> that of slice *w*, and call a key's *true* count the
//! weight recorded for it in those slices. Then, until a count saturates at
//! `u64::MAX`, every [`TopKey`] reported satisfies
//!
//! - `count - error <= true <= count`: `count` is an overestimate by at most
//!   `error`, and `count - error` a guaranteed lower bound;
//! - `error <= Σ_w ⌊N_w / capacity⌋ <= N / capacity`: the smallest count of
//!   a full summary is at most its slice's share, `N_w / capacity`, and each
//!   slice adds at most that to the error;
//! - every key whose true count exceeds `N / capacity` is reported (by
//!   `top(n, now)` with `n` at least the number of keys merged; at most
//!   [`SUB_WINDOWS`]` × capacity`): such a key exceeds `N_w / capacity` in
//!   some slice, where Space-Saving keeps it.
//!
//! The ranking follows from the bounds: a key whose `count - error` exceeds
//! another's `count` certainly weighs more.
//!
//! # Sliding span and granularity
//!
//! The span is at least one millisecond and rounded up to a whole number of
//! 5 ns so that the granularity, `span / 5`, is exact
//! ([`TopKeys::granularity`]). A record made at time *t* counts until the
//! start of its slice plus the span plus one granularity: for at least the
//! span (a query at `t + span` still sees it) and less than one granularity
//! longer (a query at `t + span + granularity` no longer does).
//!
//! Time is passed in ([`Nanos`], as the backends' [`Clock`](crate::time::Clock)
//! reads it), never read here. A `now` earlier than the latest one seen
//! (clocks of two threads read a moment apart, or a clock stepped back) is
//! taken as the latest: the record goes into the current slice and nothing
//! recorded is lost; a query with an earlier `now` reads as of the latest.
//!
//! # Memory
//!
//! [`TopKeys::new`] allocates [`SUB_WINDOWS`]` × capacity` entries, and
//! nothing is allocated afterwards but labels. An entry is 48 bytes (hash,
//! count, error, label pointer, heap position), 4 more in its summary's heap,
//! and its share of the summary's hash index, reserved for twice `capacity`
//! keys so that it never needs to grow: 17 bytes a bucket (a hash, a slot
//! number and a control byte), 4 buckets an entry for a power-of-two
//! capacity (2.3 to 4.6 otherwise), 68 bytes. About 120 bytes an entry in
//! all: 46 KB for a capacity of 64 (384 entries), 0.74 MB for 1024. Labels
//! come on top: one `Arc<str>` per key and slice, shared with the previous
//! slice's when it has not changed.
//!
//! # Cost
//!
//! [`TopKeys::record`] takes one mutex lock and, for a tracked key, one
//! hash-map probe and a sift down the summary's indexed binary min-heap
//! (O(log capacity) compare-and-swaps, no hash-map access); it allocates
//! nothing unless the key's label changes. A new key costs a failed probe,
//! a removal and an insertion, a sift, and an `Arc<str>` for its label unless
//! the previous slice held the same one. No step scans the counters. The
//! heap rather than Space-Saving's "stream summary" bucket list: that list
//! is O(1) for increments of one, but a weighted increment may move a
//! counter past any number of buckets. The index mixes each hash with a
//! secret drawn from std's `RandomState` per summary (an xor, a multiply
//! and a fold: a tenth of a SipHash), so hashes an attacker can compute
//! (the logs' fixed-key `k:…`) still cannot be chosen to share a bucket;
//! and the index never holds more than `2 × capacity` keys, which bounds a
//! probe even then.
//!
//! [`TopKeys::total`] adds up six totals. [`TopKeys::top`] reads every entry
//! of the merged slices under the lock (O(`SUB_WINDOWS × capacity`)) into a
//! merge table it allocates: it is meant for a scrape every few seconds, not
//! for the request path.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::time::Nanos;

/// The slices a span is cut into.
const SLICES: u64 = 5;

/// The summaries a [`TopKeys`] keeps: the span's five slices plus the one
/// being filled (the last span overlaps six slices unless it starts exactly
/// on a slice boundary). Memory is `SUB_WINDOWS × capacity` entries.
pub const SUB_WINDOWS: usize = SLICES as usize + 1;

/// The largest capacity [`TopKeys::new`] accepts; larger ones are lowered to
/// it (65,536 counters a slice: about 47 MB in all).
pub const MAX_CAPACITY: usize = 1 << 16;

/// The shortest span [`TopKeys::new`] accepts.
const MIN_SPAN_NANOS: u64 = 1_000_000;

/// One key tracked in a summary.
#[derive(Debug)]
struct Slot {
    hash: u64,
    count: u64,
    error: u64,
    label: Option<Arc<str>>,
    /// Where this slot sits in the summary's heap.
    pos: u32,
}

/// The Space-Saving summary of one slice: the slots, a min-heap of their
/// indices by count, and an index from hash to slot.
#[derive(Debug)]
struct Summary {
    /// The slice counted here; meaningless while `slots` is empty.
    slice: u64,
    /// The weight recorded in this slice (saturating).
    total: u64,
    slots: Vec<Slot>,
    /// Slot indices; `slots[heap[0]]` has the smallest count.
    heap: Vec<u32>,
    index: HashMap<u64, u32, Mixed>,
}

/// Hashes a `u64` that is already a hash: xor with a secret, multiply,
/// fold the high half down (the table reads the low bits).
#[derive(Clone)]
struct Mixed(u64);

impl Mixed {
    fn new() -> Self {
        use std::hash::BuildHasher;
        Mixed(RandomState::new().hash_one(0x746f_705f_6b65_7973_u64) | 1)
    }
}

impl std::hash::BuildHasher for Mixed {
    type Hasher = MixedHasher;

    fn build_hasher(&self) -> MixedHasher {
        MixedHasher {
            secret: self.0,
            hash: 0,
        }
    }
}

/// The hasher of [`Mixed`].
struct MixedHasher {
    secret: u64,
    hash: u64,
}

impl std::hash::Hasher for MixedHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64`s are hashed; anything else still gets a keyed mix.
        for &b in bytes {
            self.write_u64(self.hash.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let h = (n ^ self.secret).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.hash = h ^ (h >> 32);
    }
}

impl Summary {
    fn new(capacity: usize) -> Self {
        Summary {
            slice: 0,
            total: 0,
            slots: Vec::with_capacity(capacity),
            heap: Vec::with_capacity(capacity),
            // Twice the keys it will hold: with at most half its room in
            // use, std's table rehashes in place rather than growing when
            // deleted entries use up its free buckets.
            index: HashMap::with_capacity_and_hasher(capacity * 2, Mixed::new()),
        }
    }

    /// Empties the summary (keeping its memory) for `slice`.
    fn reset(&mut self, slice: u64) {
        self.slice = slice;
        self.total = 0;
        self.slots.clear();
        self.heap.clear();
        self.index.clear();
    }

    /// The most a key not tracked here can have weighed in this slice: the
    /// smallest count once the summary is full, zero before.
    fn floor(&self, capacity: usize) -> u64 {
        if self.slots.len() < capacity {
            return 0;
        }
        self.heap
            .first()
            .and_then(|&s| self.slots.get(s as usize))
            .map_or(0, |s| s.count)
    }

    /// The label a key entering the next slice starts with: `label` itself,
    /// sharing this summary's `Arc` when it holds the same text; with no
    /// label given, the one this summary knows.
    fn label_for(&self, hash: u64, label: Option<&str>) -> Option<Arc<str>> {
        let known = self
            .index
            .get(&hash)
            .and_then(|&s| self.slots.get(s as usize))
            .and_then(|s| s.label.as_ref());
        match (label, known) {
            (None, known) => known.cloned(),
            (Some(l), Some(k)) if **k == *l => Some(Arc::clone(k)),
            (Some(l), _) => Some(Arc::from(l)),
        }
    }

    /// Space-Saving's update. `previous` is the summary of an earlier slice,
    /// read for a newcomer's label only.
    fn add(
        &mut self,
        capacity: usize,
        hash: u64,
        label: Option<&str>,
        weight: u64,
        previous: &Summary,
    ) {
        self.total = self.total.saturating_add(weight);
        if let Some(&slot) = self.index.get(&hash) {
            let s = &mut self.slots[slot as usize];
            s.count = s.count.saturating_add(weight);
            if let Some(l) = label {
                if s.label.as_deref() != Some(l) {
                    s.label = Some(Arc::from(l));
                }
            }
            let pos = s.pos as usize;
            self.sift_down(pos);
            return;
        }
        let label = previous.label_for(hash, label);
        if self.slots.len() < capacity {
            // `capacity <= MAX_CAPACITY`, so indices fit a u32.
            let slot = self.slots.len() as u32;
            let pos = self.heap.len();
            self.slots.push(Slot {
                hash,
                count: weight,
                error: 0,
                label,
                pos: pos as u32,
            });
            self.heap.push(slot);
            self.index.insert(hash, slot);
            self.sift_up(pos);
        } else {
            let slot = self.heap[0];
            let s = &mut self.slots[slot as usize];
            self.index.remove(&s.hash);
            let min = s.count;
            *s = Slot {
                hash,
                count: min.saturating_add(weight),
                error: min,
                label,
                pos: 0,
            };
            self.index.insert(hash, slot);
            self.sift_down(0);
        }
    }

    fn count_at(&self, pos: usize) -> u64 {
        self.slots[self.heap[pos] as usize].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.slots[self.heap[a] as usize].pos = a as u32;
        self.slots[self.heap[b] as usize].pos = b as u32;
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.count_at(pos) >= self.count_at(parent) {
                break;
            }
            self.swap(pos, parent);
            pos = parent;
        }
    }

    fn sift_down(&mut self, mut pos: usize) {
        let len = self.heap.len();
        loop {
            let left = 2 * pos + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.count_at(right) < self.count_at(left) {
                right
            } else {
                left
            };
            if self.count_at(child) >= self.count_at(pos) {
                break;
            }
            self.swap(pos, child);
            pos = child;
        }
    }
}

/// What the mutex guards.
#[derive(Debug)]
struct Inner {
    /// Slice `s` lives at `ring[s % SUB_WINDOWS]`.
    ring: Vec<Summary>,
    /// The latest slice recorded into.
    latest: u64,
}

/// The heaviest keys over a sliding span, in fixed memory: a Space-Saving
/// summary of `capacity` counters for each fifth of the span (see the
/// [module documentation](self) for the algorithm, its error bound, the
/// granularity and the memory used).
///
/// `Send + Sync`: share it (in an `Arc`) between the threads that record
/// and the one that reports. Keys are `u64` hashes the caller computes with
/// a keyed hash; labels are for display.
///
/// ```
/// use std::collections::hash_map::RandomState;
/// use std::hash::BuildHasher;
/// use std::time::Duration;
/// use tollgate::metrics::top::TopKeys;
/// use tollgate::time::Nanos;
///
/// // A keyed hash: a client cannot pick keys that collide with another's.
/// let hasher = RandomState::new();
/// let (alice, bob) = (hasher.hash_one("key-of-alice"), hasher.hash_one("key-of-bob"));
///
/// let top = TopKeys::new(64, Duration::from_secs(300));
/// let now = Nanos::from_secs(1_000);
/// top.record(alice, Some("203.0.113.7"), 3, now);
/// top.record(bob, None, 1, now);
///
/// let keys = top.top(10, now);
/// assert_eq!(keys.len(), 2);
/// assert_eq!(keys[0].hash, alice);
/// assert_eq!(keys[0].label.as_deref(), Some("203.0.113.7"));
/// // Fewer keys than counters: exact.
/// assert_eq!((keys[0].count, keys[0].error), (3, 0));
/// assert_eq!(top.total(now), 4);
///
/// // Six minutes later the five-minute span no longer reaches them.
/// let later = now.saturating_add(Nanos::from_secs(360));
/// assert!(top.top(10, later).is_empty());
/// assert_eq!(top.total(later), 0);
/// ```
pub struct TopKeys {
    capacity: usize,
    span: Nanos,
    /// `span / SLICES`, exact.
    granularity: Nanos,
    inner: Mutex<Inner>,
}

impl TopKeys {
    /// Up to `capacity` counters a slice over a sliding `span`.
    ///
    /// `capacity` is raised to at least 1 and lowered to at most
    /// [`MAX_CAPACITY`]; `span` is raised to at least one millisecond and
    /// rounded up to a multiple of 5 ns (a span beyond `u64::MAX`
    /// nanoseconds, 584 years, is lowered to it). [`capacity`](Self::capacity)
    /// and [`span`](Self::span) return what was kept. Allocates
    /// [`SUB_WINDOWS`]` × capacity` entries now.
    pub fn new(capacity: usize, span: Duration) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        // u64::MAX is a multiple of 5, so rounding up cannot overflow.
        let span = Nanos::from(span).as_u64().max(MIN_SPAN_NANOS);
        let granularity = span.div_ceil(SLICES);
        TopKeys {
            capacity,
            span: Nanos::new(granularity.saturating_mul(SLICES)),
            granularity: Nanos::new(granularity),
            inner: Mutex::new(Inner {
                ring: (0..SUB_WINDOWS).map(|_| Summary::new(capacity)).collect(),
                latest: 0,
            }),
        }
    }

    /// Counts `weight` for the key whose hash is `hash`, at `now`.
    ///
    /// `label`, when given, becomes the key's label (a record without one
    /// keeps the label already known). A weight of zero records nothing.
    /// A `now` earlier than the latest seen counts as the latest. Counts and
    /// totals saturate at `u64::MAX`.
    pub fn record(&self, hash: u64, label: Option<&str>, weight: u64, now: Nanos) {
        if weight == 0 {
            return;
        }
        let mut inner = self.lock();
        self.record_in(&mut inner, hash, label, weight, now);
    }

    /// `record` under the lock already taken.
    fn record_in(
        &self,
        inner: &mut Inner,
        hash: u64,
        label: Option<&str>,
        weight: u64,
        now: Nanos,
    ) {
        let capacity = self.capacity;
        let slice = self.slice_of(now).max(inner.latest);
        inner.latest = slice;
        let at = (slice % SUB_WINDOWS as u64) as usize;
        let before = (at + SUB_WINDOWS - 1) % SUB_WINDOWS;
        let (current, previous) = current_and_previous(&mut inner.ring, at, before);
        if current.slice != slice {
            current.reset(slice);
        }
        current.add(capacity, hash, label, weight, previous);
    }

    /// As [`record`](TopKeys::record), with the label made only when the
    /// key has none yet in the current slice: for a label that allocates
    /// (an address formatted), so that a key already shown costs nothing
    /// more. The label must be the same every time for one hash.
    pub fn record_with(
        &self,
        hash: u64,
        label: impl FnOnce() -> Option<String>,
        weight: u64,
        now: Nanos,
    ) {
        if weight == 0 {
            return;
        }
        let mut inner = self.lock();
        let slice = self.slice_of(now).max(inner.latest);
        let current = &inner.ring[(slice % SUB_WINDOWS as u64) as usize];
        let labelled = current.slice == slice
            && current
                .index
                .get(&hash)
                .is_some_and(|&slot| current.slots[slot as usize].label.is_some());
        let label = if labelled { None } else { label() };
        self.record_in(&mut inner, hash, label.as_deref(), weight, now);
    }

    /// The `n` keys with the largest estimated counts over the span before
    /// `now`, largest first (equal counts by hash).
    ///
    /// Each [`TopKey`] bounds its true count from both sides (see the
    /// [module documentation](self#error-bound)). `n` of zero returns an
    /// empty vector; `usize::MAX` returns every key tracked in the span.
    pub fn top(&self, n: usize, now: Nanos) -> Vec<TopKey> {
        if n == 0 {
            return Vec::new();
        }
        #[derive(Default)]
        struct Merged {
            count: u64,
            error: u64,
            /// The floors of the slices where the key is tracked.
            floors: u64,
            label: Option<Arc<str>>,
        }

        let (merged, floors) = {
            let inner = self.lock();
            let mut live: Vec<&Summary> = self.live(&inner, now).collect();
            // Oldest first, so that the latest label wins.
            live.sort_unstable_by_key(|s| s.slice);
            let entries = live.iter().map(|s| s.slots.len()).sum();
            let mut merged: HashMap<u64, Merged> = HashMap::with_capacity(entries);
            let mut floors = 0u64;
            for summary in live {
                let floor = summary.floor(self.capacity);
                floors = floors.saturating_add(floor);
                for slot in &summary.slots {
                    let m = merged.entry(slot.hash).or_default();
                    m.count = m.count.saturating_add(slot.count);
                    m.error = m.error.saturating_add(slot.error);
                    m.floors = m.floors.saturating_add(floor);
                    if slot.label.is_some() {
                        m.label.clone_from(&slot.label);
                    }
                }
            }
            (merged, floors)
        };

        let mut keys: Vec<TopKey> = merged
            .into_iter()
            .map(|(hash, m)| {
                // The floors of the slices where the key is not tracked.
                let missing = floors.saturating_sub(m.floors);
                TopKey {
                    hash,
                    label: m.label,
                    count: m.count.saturating_add(missing),
                    error: m.error.saturating_add(missing),
                }
            })
            .collect();
        let order = |a: &TopKey, b: &TopKey| b.count.cmp(&a.count).then(a.hash.cmp(&b.hash));
        if n < keys.len() {
            keys.select_nth_unstable_by(n - 1, order);
            keys.truncate(n);
        }
        keys.sort_unstable_by(order);
        keys
    }

    /// The weight recorded over the span before `now` (*N* in the error
    /// bound), exact until it saturates at `u64::MAX`.
    pub fn total(&self, now: Nanos) -> u64 {
        let inner = self.lock();
        self.live(&inner, now)
            .fold(0u64, |sum, s| sum.saturating_add(s.total))
    }

    /// The counters a slice holds, as kept by [`new`](Self::new).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The span, as kept by [`new`](Self::new).
    pub fn span(&self) -> Duration {
        self.span.into()
    }

    /// The length of a slice, a fifth of the span: how much longer than the
    /// span a record may keep counting.
    pub fn granularity(&self) -> Duration {
        self.granularity.into()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slice_of(&self, now: Nanos) -> u64 {
        // The granularity is at least 200 µs: never zero.
        now.as_u64() / self.granularity.as_u64().max(1)
    }

    /// The summaries of the slices that overlap the span before `now` (or
    /// before the latest record, when `now` is earlier).
    fn live<'a>(&self, inner: &'a Inner, now: Nanos) -> impl Iterator<Item = &'a Summary> {
        let current = self.slice_of(now).max(inner.latest);
        let oldest = current.saturating_sub(SLICES);
        inner
            .ring
            .iter()
            .filter(move |s| !s.slots.is_empty() && (oldest..=current).contains(&s.slice))
    }
}

impl fmt::Debug for TopKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopKeys")
            .field("capacity", &self.capacity)
            .field("span", &self.span)
            .field("granularity", &self.granularity)
            .finish_non_exhaustive()
    }
}

/// `ring[at]` to update and `ring[before]` to read (`at != before`).
fn current_and_previous(
    ring: &mut [Summary],
    at: usize,
    before: usize,
) -> (&mut Summary, &Summary) {
    if at < before {
        let (low, high) = ring.split_at_mut(before);
        (&mut low[at], &high[0])
    } else {
        let (low, high) = ring.split_at_mut(at);
        (&mut high[0], &low[before])
    }
}

/// One of the heaviest keys, as [`TopKeys::top`] reports it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopKey {
    /// The key's hash, as recorded.
    pub hash: u64,
    /// The latest label recorded for the key in the span, if any.
    pub label: Option<Arc<str>>,
    /// The estimated weight over the span: never less than the true weight.
    pub count: u64,
    /// The most `count` may overestimate by: `count - error` is a
    /// guaranteed lower bound on the true weight.
    pub error: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn secs(s: u64) -> Nanos {
        Nanos::from_secs(s)
    }

    fn ms(m: u64) -> Nanos {
        Nanos::from_millis(m)
    }

    /// `(hash, count, error)` of each key reported, in order.
    fn counts(keys: &[TopKey]) -> Vec<(u64, u64, u64)> {
        keys.iter().map(|k| (k.hash, k.count, k.error)).collect()
    }

    /// SplitMix64: a small seeded generator, and its finalizer as a
    /// stand-in for a keyed hash (a bijection: distinct ranks, distinct
    /// hashes).
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix(self.0)
        }

        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `records` ranks drawn from a Zipf law of exponent `s` over `keys`.
    fn zipf_ranks(keys: usize, s: f64, records: usize, seed: u64) -> Vec<usize> {
        let mut cdf = Vec::with_capacity(keys);
        let mut sum = 0.0;
        for rank in 1..=keys {
            sum += (rank as f64).powf(-s);
            cdf.push(sum);
        }
        let mut rng = SplitMix(seed);
        (0..records)
            .map(|_| {
                let u = rng.unit() * sum;
                cdf.partition_point(|&c| c <= u).min(keys - 1)
            })
            .collect()
    }

    #[test]
    fn exact_when_the_distinct_keys_fit() {
        let top = TopKeys::new(8, MINUTE);
        // Eight keys, spread over three slices of 12 s: no summary fills.
        for (i, t) in [0, 13, 25, 30].into_iter().enumerate() {
            for h in 1..=8u64 {
                top.record(h * 100, None, h + i as u64, secs(t));
            }
        }
        // Key 300 gets one more, tying key 400 (3+4+5+6 + 4 = 22 each).
        top.record(300, None, 4, secs(30));
        let keys = top.top(usize::MAX, secs(30));
        let mut expected: Vec<_> = (1..=8u64).map(|h| (h * 100, 4 * h + 6, 0)).collect();
        expected[2].1 += 4;
        expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(counts(&keys), expected);
        assert_eq!(top.total(secs(30)), 4 * 36 + 8 * 6 + 4);
        assert_eq!(counts(&top.top(3, secs(30))), expected[..3]);
    }

    /// Records a Zipf stream and checks what the bounds guarantee.
    /// `spread`: the records are spread over the span's five slices (the
    /// merge is exercised), or all made at one instant (one summary).
    /// `ranking`: check the ranking of the exact top ten too (which needs a
    /// bound smaller than the gaps between them).
    fn check_zipf(capacity: usize, spread: bool, ranking: bool) {
        const KEYS: usize = 10_000;
        const RECORDS: usize = 200_000;
        let top = TopKeys::new(capacity, MINUTE);
        let ranks = zipf_ranks(KEYS, 1.1, RECORDS, 0x7011_6a7e);
        let mut truth: HashMap<u64, u64> = HashMap::new();
        let mut per_slice = [0u64; SUB_WINDOWS];
        for (i, &rank) in ranks.iter().enumerate() {
            let hash = mix(rank as u64 + 1);
            let now = if spread {
                // 0 to 59.9997 s: slices 0 to 4.
                ms(i as u64 * 60_000 / RECORDS as u64)
            } else {
                secs(30)
            };
            per_slice[(now.as_u64() / top.granularity.as_u64()) as usize] += 1;
            *truth.entry(hash).or_default() += 1;
            top.record(hash, None, 1, now);
        }
        let now = secs(60);
        let n = RECORDS as u64;
        assert_eq!(top.total(now), n);
        let bound: u64 = per_slice.iter().map(|&w| w / capacity as u64).sum();
        assert!(bound <= n / capacity as u64);

        let reported = top.top(usize::MAX, now);
        assert!(reported.len() <= SUB_WINDOWS * capacity);
        // Counters were taken over: the bounds are not those of exact counts.
        assert!(reported.iter().any(|k| k.error > 0));
        for k in &reported {
            let t = truth[&k.hash];
            assert!(k.count - k.error <= t && t <= k.count, "{k:?}, true {t}");
            assert!(k.error <= bound, "{k:?}, bound {bound}");
        }
        // Every key above N / capacity is reported.
        let rank_of: HashMap<u64, usize> = reported
            .iter()
            .enumerate()
            .map(|(i, k)| (k.hash, i))
            .collect();
        for (&hash, &t) in &truth {
            if t * capacity as u64 > n {
                assert!(rank_of.contains_key(&hash), "{hash:x}: {t} > N/m");
            }
        }

        if !ranking {
            return;
        }
        // The exact top ten: each is reported, and ranked no lower than the
        // bounds allow. A key y ranked above x has count_y >= count_x >=
        // true_x, so true_y >= count_y - error_y >= true_x - bound: x's rank
        // is at most one more than the number of such keys.
        let mut exact: Vec<(u64, u64)> = truth.iter().map(|(&h, &t)| (h, t)).collect();
        exact.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for &(hash, t) in &exact[..10] {
            let rivals = exact
                .iter()
                .filter(|&&(h, u)| h != hash && u + bound >= t)
                .count();
            let rank = rank_of[&hash];
            assert!(rank <= rivals, "{hash:x} ranked {rank}, {rivals} rivals");
            // For this stream the bound alone puts the exact top ten in the
            // reported top twenty.
            assert!(rivals < 20, "{rivals} rivals for a top-ten key");
        }
        // Observed, not guaranteed (the stream is deterministic, so this
        // holds for every run): the reported top ten is the exact top ten.
        let mut reported_ten: Vec<u64> = reported[..10].iter().map(|k| k.hash).collect();
        let mut exact_ten: Vec<u64> = exact[..10].iter().map(|&(h, _)| h).collect();
        reported_ten.sort_unstable();
        exact_ten.sort_unstable();
        assert_eq!(reported_ten, exact_ten);
    }

    #[test]
    fn zipf_stream_over_five_slices_stays_within_the_bounds() {
        check_zipf(256, true, true);
    }

    #[test]
    fn zipf_stream_in_one_slice_stays_within_the_bounds() {
        check_zipf(256, false, true);
    }

    #[test]
    fn zipf_stream_with_few_counters_stays_within_the_bounds() {
        // N / capacity = 6,250: the bound says nothing of the ranking here.
        check_zipf(32, true, false);
    }

    #[test]
    fn records_older_than_the_span_no_longer_count() {
        let top = TopKeys::new(16, MINUTE);
        assert_eq!(top.granularity(), Duration::from_secs(12));
        top.record(1, None, 1, secs(0)); // slice 0
        top.record(2, None, 1, ms(11_999)); // slice 0
        top.record(3, None, 1, secs(12)); // slice 1
        let hashes = |now| top.top(10, now).iter().map(|k| k.hash).collect::<Vec<_>>();

        // Exactly one span later: still counted.
        assert_eq!(hashes(secs(60)), [1, 2, 3]);
        // Lingering: slice 0 overlaps the span until slice 6 begins.
        assert_eq!(hashes(Nanos::new(72_000_000_000 - 1)), [1, 2, 3]);
        // Slice 6: slice 0 is gone, slice 1 (exactly one span old) is not.
        assert_eq!(hashes(secs(72)), [3]);
        assert_eq!(top.total(secs(72)), 1);
        assert_eq!(hashes(secs(84)), [] as [u64; 0]);
        assert_eq!(top.total(secs(84)), 0);
    }

    #[test]
    fn a_record_counts_for_the_span_and_lingers_less_than_one_slice_more() {
        let mut rng = SplitMix(7);
        // A span that is not a multiple of 5 ns is rounded up to one.
        let top = TopKeys::new(4, Duration::from_nanos(7_000_000_003));
        assert_eq!(top.span(), Duration::from_nanos(7_000_000_005));
        let span = Nanos::from(top.span());
        let slice = Nanos::from(top.granularity());
        for i in 0..500u64 {
            // Far enough apart that no earlier record is still counted.
            let t = Nanos::new(i * 20_000_000_000 + rng.next() % 10_000_000_000);
            top.record(i, None, 1, t);
            let seen = |now: Nanos| top.top(1, now).first().map(|k| k.hash) == Some(i);
            assert!(seen(t));
            assert!(seen(t.saturating_add(span)), "{t:?}");
            assert!(!seen(t.saturating_add(span).saturating_add(slice)), "{t:?}");
        }
    }

    #[test]
    fn a_burst_in_an_old_slice_ages_out() {
        let top = TopKeys::new(2, MINUTE);
        top.record(0xb, Some("burst"), 10_000, secs(1));
        // A steady key, 10 in each slice from 0 to 10.
        let steady = |slice: u64| top.record(0x5, None, 10, secs(slice * 12 + 6));
        for s in 0..=3 {
            steady(s);
        }
        assert_eq!(
            counts(&top.top(2, secs(42))),
            [(0xb, 10_000, 0), (0x5, 40, 0)]
        );
        for s in 4..=5 {
            steady(s);
        }
        assert_eq!(top.top(1, ms(71_999))[0].hash, 0xb);
        steady(6);
        // Slice 6: slice 0 and the burst with it are gone.
        assert_eq!(counts(&top.top(2, secs(72))), [(0x5, 60, 0)]);
        assert_eq!(top.total(secs(72)), 60);
        for s in 7..=10 {
            steady(s);
        }
        assert_eq!(counts(&top.top(2, secs(126))), [(0x5, 60, 0)]);
    }

    #[test]
    fn time_going_backwards_counts_in_the_current_slice() {
        let top = TopKeys::new(4, MINUTE);
        top.record(1, None, 1, secs(100));
        top.record(2, None, 1, secs(10)); // a span and more back
        top.record(1, None, 1, secs(99));
        top.record(3, None, 1, Nanos::ZERO);
        let expected = [(1, 2, 0), (2, 1, 0), (3, 1, 0)];
        assert_eq!(counts(&top.top(10, secs(100))), expected);
        // Queries with an earlier time read as of the latest record.
        assert_eq!(counts(&top.top(10, Nanos::ZERO)), expected);
        assert_eq!(top.total(secs(5)), 4);
        // They age with the slice they went into (slice 8: 96 to 108 s).
        assert_eq!(top.total(ms(167_999)), 4);
        assert_eq!(top.total(secs(168)), 0);
    }

    #[test]
    fn weights_add_and_counts_saturate() {
        let top = TopKeys::new(1, MINUTE);
        top.record(1, None, 0, secs(1));
        assert!(top.top(10, secs(1)).is_empty());
        assert_eq!(top.total(secs(1)), 0);
        top.record(1, None, 5, secs(1));
        top.record(1, None, 7, secs(1));
        assert_eq!(counts(&top.top(10, secs(1))), [(1, 12, 0)]);
        top.record(1, None, u64::MAX, secs(1));
        top.record(1, None, u64::MAX, secs(13));
        assert_eq!(counts(&top.top(10, secs(13))), [(1, u64::MAX, 0)]);
        assert_eq!(top.total(secs(13)), u64::MAX);
        // A newcomer replacing a saturated counter. (Key 1's count in
        // slice 0 is saturated already: the floor of slice 1, where it is
        // missing, cannot be added.)
        top.record(2, None, 3, secs(13));
        assert_eq!(
            counts(&top.top(10, secs(13))),
            [(1, u64::MAX, 0), (2, u64::MAX, u64::MAX)]
        );

        // The extremes of time and span.
        let top = TopKeys::new(usize::MAX, Duration::MAX);
        assert_eq!(top.capacity(), MAX_CAPACITY);
        assert_eq!(top.span(), Duration::from_nanos(u64::MAX));
        top.record(u64::MAX, Some(""), u64::MAX, Nanos::MAX);
        top.record(0, None, 1, Nanos::ZERO);
        assert_eq!(top.total(Nanos::MAX), u64::MAX);
        assert_eq!(top.top(usize::MAX, Nanos::ZERO).len(), 2);
    }

    #[test]
    fn capacity_one_keeps_the_latest_key_with_its_bound() {
        let top = TopKeys::new(0, Duration::ZERO);
        assert_eq!(top.capacity(), 1);
        assert_eq!(top.span(), Duration::from_millis(1));
        assert_eq!(top.granularity(), Duration::from_micros(200));

        let top = TopKeys::new(1, MINUTE);
        top.record(0xa, None, 5, secs(1));
        top.record(0xb, None, 3, secs(1));
        // b's true 3 = 8 - 5; a's 5 is folded into b's error.
        assert_eq!(counts(&top.top(10, secs(1))), [(0xb, 8, 5)]);
        top.record(0xa, None, 1, secs(1));
        assert_eq!(counts(&top.top(10, secs(1))), [(0xa, 9, 8)]);
        assert_eq!(top.total(secs(1)), 9);
        // In the next slice b enters alone; a, missing there, may have had
        // up to that slice's floor (2): added to a's count and error.
        top.record(0xb, None, 2, secs(13));
        assert_eq!(
            counts(&top.top(10, secs(13))),
            [(0xa, 11, 10), (0xb, 11, 9)]
        );
    }

    #[test]
    fn top_zero_is_empty() {
        let top = TopKeys::new(4, MINUTE);
        for h in 0..4 {
            top.record(h, None, h + 1, secs(1));
        }
        assert!(top.top(0, secs(1)).is_empty());
        assert_eq!(counts(&top.top(1, secs(1))), [(3, 4, 0)]);
        assert_eq!(top.top(2, secs(1)).len(), 2);
    }

    #[test]
    fn labels_follow_the_latest_record_that_has_one() {
        let top = TopKeys::new(4, MINUTE);
        let label = |now| top.top(1, now)[0].label.clone();
        top.record(1, Some("192.0.2.1"), 1, secs(1));
        assert_eq!(label(secs(1)).as_deref(), Some("192.0.2.1"));
        top.record(1, None, 1, secs(2));
        assert_eq!(label(secs(2)).as_deref(), Some("192.0.2.1"));
        top.record(1, Some("192.0.2.2"), 1, secs(3));
        let first = label(secs(3)).unwrap();
        assert_eq!(&*first, "192.0.2.2");
        // The next slice: the label is carried over, the same allocation.
        top.record(1, None, 1, secs(13));
        assert!(Arc::ptr_eq(&label(secs(13)).unwrap(), &first));
        top.record(1, Some("192.0.2.2"), 1, secs(25));
        assert!(Arc::ptr_eq(&label(secs(25)).unwrap(), &first));
        // An unchanged label is not replaced.
        top.record(1, Some("192.0.2.2"), 1, secs(26));
        assert!(Arc::ptr_eq(&label(secs(26)).unwrap(), &first));
        // The latest slice's label wins over an older slice's.
        top.record(1, Some("192.0.2.3"), 1, secs(37));
        assert_eq!(label(secs(37)).as_deref(), Some("192.0.2.3"));
        // A key without any label.
        top.record(2, None, 100, secs(37));
        assert_eq!(label(secs(37)), None);
    }

    #[test]
    fn memory_is_allocated_up_front() {
        let top = TopKeys::new(64, MINUTE);
        let sizes = |top: &TopKeys| {
            let inner = top.lock();
            inner
                .ring
                .iter()
                .map(|s| (s.slots.capacity(), s.heap.capacity(), s.index.capacity()))
                .collect::<Vec<_>>()
        };
        let before = sizes(&top);
        assert_eq!(before.len(), SUB_WINDOWS);
        assert!(before
            .iter()
            .all(|&(s, h, i)| s >= 64 && h >= 64 && i >= 128));
        let mut rng = SplitMix(3);
        for i in 0..100_000u64 {
            // Mostly newcomers: an eviction on nearly every record.
            top.record(rng.next() % 5_000, None, 1, ms(i));
        }
        // An index's `capacity()` counts its free buckets, which deleted
        // entries use up until the table rehashes: empty the summaries
        // (their allocations stay) to read the room each one has.
        for summary in &mut top.lock().ring {
            summary.reset(0);
        }
        assert_eq!(sizes(&top), before);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<Slot>(), 48);
    }

    #[test]
    fn two_threads_recording_add_up() {
        let top = Arc::new(TopKeys::new(64, MINUTE));
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let top = Arc::clone(&top);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        top.record(i % 16, Some("shared"), 1 + t, secs(1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(top.total(secs(1)), 30_000);
        let keys = top.top(usize::MAX, secs(1));
        assert_eq!(keys.len(), 16);
        assert!(keys.iter().all(|k| k.count == 1_875 && k.error == 0));
    }

    #[test]
    fn top_keys_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<TopKeys>();
        check::<TopKey>();
    }

    /// One operation of the model test: a key among a few, a weight and a
    /// step of the clock (backwards sometimes).
    fn op() -> impl Strategy<Value = (u64, u64, i64)> {
        (
            0..12u64,
            prop_oneof![4 => 0..20u64, 1 => 0..2_000u64],
            -3_000..6_000i64,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Against an exact model of the same slices: after every record,
        /// total is exact, every reported count is bounded on both sides,
        /// errors stay under Σ ⌊N_w / capacity⌋, every key above
        /// N / capacity is reported, and `top(n)` is a sorted prefix.
        #[test]
        fn bounds_hold_for_any_stream(
            capacity in 1..6usize,
            span_ms in 1..20_000u64,
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let top = TopKeys::new(capacity, Duration::from_millis(span_ms));
            let width = top.granularity.as_u64();
            let mut now = 0u64;
            let mut latest = 0u64;
            // (hash, weight, slice) of every record.
            let mut model: Vec<(u64, u64, u64)> = Vec::new();
            for (hash, weight, step) in ops {
                now = now.saturating_add_signed(step * 1_000_000);
                top.record(hash, None, weight, Nanos::new(now));
                if weight > 0 {
                    latest = latest.max(now / width);
                    model.push((hash, weight, latest));
                }
                let current = (now / width).max(latest);
                let oldest = current.saturating_sub(SLICES);
                let mut truth: HashMap<u64, u64> = HashMap::new();
                let mut per_slice: HashMap<u64, u64> = HashMap::new();
                for &(h, w, s) in model.iter().filter(|r| r.2 >= oldest) {
                    *truth.entry(h).or_default() += w;
                    *per_slice.entry(s).or_default() += w;
                }
                let n: u64 = truth.values().sum();
                let bound: u64 = per_slice.values().map(|&w| w / capacity as u64).sum();
                prop_assert_eq!(top.total(Nanos::new(now)), n);

                let all = top.top(usize::MAX, Nanos::new(now));
                for k in &all {
                    let t = truth.get(&k.hash).copied().unwrap_or(0);
                    prop_assert!(k.count - k.error <= t && t <= k.count, "{:?} true {}", k, t);
                    prop_assert!(k.error <= bound, "{:?} bound {}", k, bound);
                }
                for (h, &t) in &truth {
                    if t * capacity as u64 > n {
                        prop_assert!(all.iter().any(|k| k.hash == *h), "{} missing", h);
                    }
                }
                prop_assert!(all.windows(2).all(|w| (w[1].count, w[0].hash) <= (w[0].count, w[1].hash)));
                let three = top.top(3, Nanos::new(now));
                prop_assert_eq!(&three[..], &all[..all.len().min(3)]);
            }
        }
    }

    #[test]
    fn record_with_makes_a_label_once_per_key_and_slice() {
        let top = TopKeys::new(8, Duration::from_secs(5));
        let made = std::cell::Cell::new(0);
        let label = || {
            made.set(made.get() + 1);
            Some(String::from("192.0.2.1"))
        };
        for _ in 0..3 {
            top.record_with(7, label, 1, Nanos::from_secs(0));
        }
        assert_eq!(made.get(), 1, "labelled once in the slice");
        // The next slice (a second later) labels it once more.
        top.record_with(7, label, 1, Nanos::from_secs(1));
        assert_eq!(made.get(), 2);
        let keys = top.top(1, Nanos::from_secs(1));
        assert_eq!(keys[0].count, 4);
        assert_eq!(keys[0].label.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn hashes_alike_in_their_low_bits_land_in_different_buckets() {
        use std::hash::BuildHasher;
        // Chosen hashes equal in their low 20 bits: the multiply alone
        // would keep them equal in the bits a table reads.
        let mixed = Mixed::new();
        let buckets: std::collections::HashSet<u64> = (0..1000u64)
            .map(|i| mixed.hash_one(i << 20) & 127)
            .collect();
        assert!(buckets.len() > 100, "{} of 128 buckets", buckets.len());
    }
}
