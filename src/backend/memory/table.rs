//! One shard's table: open addressing on 63-bit fingerprints, with linear
//! probing and backward-shift deletion (no tombstones), so that it can be
//! sampled by position when it is full and its memory is one flat array.
//!
//! A slot is the fingerprint and the value side by side (16 bytes for
//! GCRA's single `u64`). The table grows by doubling up to a fixed number
//! of slots, sized so that it is at most 7/8 full at its shard's bound;
//! the home slot of a fingerprint is `fp × slots >> 64` (any slot count,
//! not only powers of two, so the last growth step is no larger than
//! needed).

/// The fingerprint bits that identify a key; the top bit of a stored tag
/// marks a key whose last check was denied.
const FP_MASK: u64 = u64::MAX >> 1;
const DENIED: u64 = 1 << 63;

/// The smallest allocation.
const MIN_SLOTS: usize = 16;

/// A value that knows when its key goes idle (its state equals a fresh
/// one from then on, so forgetting it loses nothing).
pub(super) trait Idle: Default {
    fn idle_at(&self) -> u64;
}

impl Idle for u64 {
    /// GCRA's theoretical arrival time is its idle instant.
    fn idle_at(&self) -> u64 {
        *self
    }
}

#[derive(Default)]
struct Slot<V> {
    /// 0: empty; else the fingerprint, with [`DENIED`] set if marked.
    tag: u64,
    value: V,
}

/// The fingerprint of a key: never zero (zero marks an empty slot), top
/// bit clear (it is the denial mark).
pub(super) fn fingerprint_from_hash(hash: u64) -> u64 {
    (hash & FP_MASK).max(1)
}

pub(super) struct Table<V> {
    slots: Box<[Slot<V>]>,
    len: usize,
    /// The most slots this table may grow to.
    max_slots: usize,
}

/// A key that may be forgotten to make room, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Candidate {
    pub index: usize,
    pub idle_at: u64,
    pub denied: bool,
}

impl Candidate {
    /// Whether `self` gains less than `other` from being forgotten: a key
    /// whose last check passed before one that was denied, then the one
    /// that goes idle first.
    pub fn better_than(&self, other: &Candidate) -> bool {
        (self.denied, self.idle_at) < (other.denied, other.idle_at)
    }
}

impl<V: Idle> Table<V> {
    /// An empty table that will hold at most `max_len` keys.
    pub fn new(max_len: usize) -> Self {
        Table {
            slots: Box::default(),
            len: 0,
            max_slots: (max_len.saturating_mul(8) / 7 + 1).max(MIN_SLOTS),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes allocated for slots.
    pub fn allocated_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot<V>>()
    }

    fn home(&self, fp: u64) -> usize {
        // `fp` has 63 significant bits: shift them to the top.
        (((fp << 1) as u128 * self.slots.len() as u128) >> 64) as usize
    }

    /// Where a probe for `fp` starts (0 in an empty table).
    pub fn home_of(&self, fp: u64) -> usize {
        self.home(fp)
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// The slot holding `fp`, if any.
    #[inline]
    pub fn find(&self, fp: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mut i = self.home(fp);
        // At most 7/8 full, so an empty slot ends every probe; the bound
        // only guards against a bug turning into an endless loop.
        for _ in 0..self.slots.len() {
            let tag = self.slots[i].tag;
            if tag == 0 {
                return None;
            }
            if tag & FP_MASK == fp {
                return Some(i);
            }
            i = self.next(i);
        }
        None
    }

    pub fn get(&self, fp: u64) -> Option<&V> {
        self.find(fp).map(|i| &self.slots[i].value)
    }

    pub fn value_mut(&mut self, index: usize) -> &mut V {
        &mut self.slots[index].value
    }

    /// Marks (or clears) the key at `index` as denied by its last check.
    pub fn mark(&mut self, index: usize, denied: bool) {
        let tag = &mut self.slots[index].tag;
        *tag = if denied {
            *tag | DENIED
        } else {
            *tag & FP_MASK
        };
    }

    /// Stores `fp` (which must be absent) with `value`; returns its slot.
    /// The caller keeps the table within the `max_len` it was built for.
    pub fn insert(&mut self, fp: u64, value: V) -> usize {
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        let mut i = self.home(fp);
        while self.slots[i].tag != 0 {
            i = self.next(i);
        }
        self.slots[i] = Slot { tag: fp, value };
        self.len += 1;
        i
    }

    fn grow(&mut self) {
        let slots = (self.slots.len() * 2).clamp(MIN_SLOTS, self.max_slots);
        self.rebuild(slots, |_| true);
    }

    /// Re-inserts, with their marks, the entries `keep` accepts into
    /// `slots` fresh slots.
    fn rebuild(&mut self, slots: usize, keep: impl Fn(&V) -> bool) {
        let old = std::mem::replace(
            &mut self.slots,
            (0..slots).map(|_| Slot::default()).collect(),
        );
        self.len = 0;
        for slot in Vec::from(old) {
            if slot.tag != 0 && keep(&slot.value) {
                let i = self.insert(slot.tag & FP_MASK, slot.value);
                self.slots[i].tag = slot.tag;
            }
        }
    }

    /// Empties the slot at `index`, shifting back the entries after it
    /// that probed past it, so every probe still ends at an empty slot.
    pub fn remove(&mut self, index: usize) -> V {
        let removed = std::mem::take(&mut self.slots[index]).value;
        self.len -= 1;
        let mut hole = index;
        let mut i = self.next(index);
        while self.slots[i].tag != 0 {
            let home = self.home(self.slots[i].tag & FP_MASK);
            // The entry at `i` may move into the hole if its home is not
            // in the cyclic range (hole, i].
            let stays = if hole < i {
                hole < home && home <= i
            } else {
                hole < home || home <= i
            };
            if !stays {
                self.slots[hole] = std::mem::take(&mut self.slots[i]);
                hole = i;
            }
            i = self.next(i);
        }
        removed
    }

    /// The best key to forget among up to `samples` stored keys read from
    /// slot `start` on (at most `4 × samples` slots): an idle one at once,
    /// else by [`Candidate::better_than`].
    pub fn sample(&self, start: usize, samples: usize, now: u64) -> Option<Candidate> {
        if self.len == 0 {
            return None;
        }
        let mut best: Option<Candidate> = None;
        let mut i = start % self.slots.len();
        let mut seen = 0;
        for _ in 0..self.slots.len().min(samples * 4) {
            let slot = &self.slots[i];
            if slot.tag != 0 {
                let idle_at = slot.value.idle_at();
                if idle_at <= now {
                    // Idle, it loses nothing, whatever its last check said.
                    return Some(Candidate {
                        index: i,
                        idle_at,
                        denied: false,
                    });
                }
                let c = Candidate {
                    index: i,
                    idle_at,
                    denied: slot.tag & DENIED != 0,
                };
                if best.is_none_or(|b| c.better_than(&b)) {
                    best = Some(c);
                }
                seen += 1;
                if seen == samples {
                    break;
                }
            }
            i = self.next(i);
        }
        best
    }

    /// Drops every key idle at `now`; returns how many.
    pub fn sweep(&mut self, now: u64) -> usize {
        let before = self.len;
        self.rebuild(self.slots.len(), |value| value.idle_at() > now);
        before - self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(i: u64) -> u64 {
        // Spread like real fingerprints, but reproducible.
        fingerprint_from_hash(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    #[test]
    fn finds_what_it_stores_and_forgets_what_it_removes() {
        let mut t: Table<u64> = Table::new(1000);
        for i in 0..800 {
            t.insert(fp(i), i + 1);
        }
        assert_eq!(t.len(), 800);
        for i in (0..800).step_by(3) {
            let at = t.find(fp(i)).expect("stored");
            assert_eq!(t.remove(at), i + 1);
        }
        for i in 0..800 {
            let expected = (i % 3 != 0).then_some(i + 1);
            assert_eq!(t.get(fp(i)).copied(), expected, "key {i}");
        }
    }

    #[test]
    fn removal_keeps_colliding_probes_reachable() {
        // Every key has the same home slot: removal must shift the rest.
        let mut t: Table<u64> = Table::new(100);
        let same_home = |i: u64| i + 1; // tiny fingerprints all map to slot 0
        for i in 0..20 {
            t.insert(same_home(i), i);
        }
        for i in [0, 5, 19, 7] {
            let at = t.find(same_home(i)).expect("stored");
            t.remove(at);
        }
        for i in 0..20 {
            assert_eq!(t.get(same_home(i)).is_some(), ![0, 5, 19, 7].contains(&i));
        }
    }

    #[test]
    fn agrees_with_a_map_through_random_inserts_and_removals() {
        let mut t: Table<u64> = Table::new(300);
        let mut model = std::collections::HashMap::new();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for step in 0..200_000u64 {
            // xorshift: reproducible, spread over the whole range
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = fingerprint_from_hash((x % 400).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            match t.find(key) {
                Some(i) if step % 2 == 0 => {
                    assert_eq!(t.remove(i), model.remove(&key).expect("in the model"));
                }
                Some(i) => {
                    *t.value_mut(i) = step;
                    model.insert(key, step);
                }
                None if t.len() < 300 => {
                    t.insert(key, step);
                    assert!(model.insert(key, step).is_none(), "lost key");
                }
                None => assert!(!model.contains_key(&key), "lost key"),
            }
        }
        assert_eq!(t.len(), model.len());
        for (k, v) in &model {
            assert_eq!(t.get(*k), Some(v));
        }
    }

    #[test]
    fn never_grows_past_its_bound() {
        let mut t: Table<u64> = Table::new(1000);
        for i in 0..1000 {
            t.insert(fp(i), 1);
        }
        assert!(t.allocated_bytes() <= (1000 * 8 / 7 + 1) * 16);
    }

    #[test]
    fn sampling_prefers_an_idle_key_then_a_passing_one_closest_to_idle() {
        let mut t: Table<u64> = Table::new(16);
        let a = t.insert(fp(1), 50);
        let b = t.insert(fp(2), 40);
        let c = t.insert(fp(3), 30);
        t.mark(c, true);
        let best = t.sample(0, 16, 10).expect("a candidate");
        assert_eq!((best.index, best.denied), (b, false));
        t.mark(b, true);
        t.mark(a, true);
        assert_eq!(t.sample(0, 16, 10).map(|c| c.idle_at), Some(30));
        let idle = t.sample(0, 16, 45).expect("a candidate");
        assert!(idle.idle_at <= 45, "an idle key goes first: {idle:?}");
    }

    #[test]
    fn a_sweep_keeps_the_live_keys_and_their_marks() {
        let mut t: Table<u64> = Table::new(100);
        for i in 0..50 {
            let at = t.insert(fp(i), i);
            t.mark(at, i % 2 == 0);
        }
        assert_eq!(t.sweep(25), 26);
        for i in 26..50 {
            let at = t.find(fp(i)).expect("live key kept");
            let marked = t.sample(at, 1, 0).expect("itself").denied;
            assert_eq!(marked, i % 2 == 0);
        }
    }
}
