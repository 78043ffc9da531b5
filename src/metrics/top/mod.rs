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
mod tests;
