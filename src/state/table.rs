//! A compact hash table for keys that are already uniform hashes (subject
//! hashes): what holds consent, erasure and data-key state for millions of
//! subjects (the goal: 10 million subjects in well under 1 GiB).
//!
//! `std`'s table (hashbrown) grows by doubling, so right after a growth it
//! is less than half full: 49 bytes of payload cost 82 to 103 bytes per
//! subject between 1 and 10 million (`cargo bench --bench state` measured
//! it). This one grows by 15%, keeps 96 bits of each key (two of 10
//! million subjects sharing them: about 6 in 10^16) and stores entries
//! inline, so a subject costs its payload and one byte, divided by a load
//! that stays between 0.81 and 0.93 as entries are added (removals can take
//! it down to 0.5, where the table shrinks to 0.85). While it grows, the
//! old and the new slots are both allocated (2.15 times the table, for the
//! moment it takes).
//!
//! Open addressing with linear probing in Robin Hood order: an entry's home
//! slot is its key's top 64 bits scaled to the capacity (any capacity, not
//! only powers of two), and an insert goes before the first entry whose
//! home is further on, so every run of full slots is in order of homes. A
//! byte per slot beside the entries holds a fingerprint of its key (0:
//! empty): a lookup reads those bytes from the home slot to the first empty
//! one (tens of adjacent bytes at high load: one or two cache lines), and
//! reads an entry only where the fingerprint matches (one in 255 of the
//! others), so a hit costs one read of the entries and a miss usually none,
//! however large the table. The keys cannot be chosen to collide: consent
//! and erasure keys are hashes under a key drawn at start, data-key slots
//! come from keys-topic records that only a holder of the KEK can write
//! (a record that does not unwrap never enters the table).

/// A key: 96 bits of a uniform hash; all zeros marks an empty slot.
type Key = [u32; 3];

const EMPTY: Key = [0; 3];

/// Grow when an insert would take the load above this…
const MAX_LOAD: f64 = 0.93;
/// …by this factor (the load right after: 0.93 / 1.15 = 0.81). Each growth
/// moves every entry: about 7 moves per insert, amortised, on top of the
/// run an insert shifts (about 1/(1 - load)^2 / 2 entries: 120 at 0.93,
/// a few KiB copied at once).
const GROWTH: f64 = 1.15;
const MIN_CAPACITY: usize = 16;
/// Shrink when removals take the load below this…
const MIN_LOAD: f64 = 0.5;
/// …to this load.
const SHRUNK_LOAD: f64 = 0.85;

#[derive(Clone, Copy)]
#[repr(C)]
struct Slot<V> {
    key: Key,
    value: V,
}

/// A map from 128-bit uniform hashes to small `Copy` values. Only the
/// first 96 bits of a key are kept: keys equal in them are one entry.
#[derive(Clone)]
pub struct SubjectTable<V: Copy + Default> {
    slots: Vec<Slot<V>>,
    /// Per slot, the fingerprint of its key, 0 when the slot is empty.
    prints: Vec<u8>,
    len: usize,
}

impl<V: Copy + Default> Default for SubjectTable<V> {
    fn default() -> Self {
        SubjectTable {
            slots: Vec::new(),
            prints: Vec::new(),
            len: 0,
        }
    }
}

fn key_of(hash: &[u8; 16]) -> Key {
    let word = |i: usize| u32::from_le_bytes([hash[i], hash[i + 1], hash[i + 2], hash[i + 3]]);
    let k = [word(0), word(4), word(8)];
    // The one 96-bit value that cannot be stored stands for the empty slot:
    // it shares its entry with [0, 0, 1] (as likely as any other 96-bit tie).
    if k == EMPTY {
        [0, 0, 1]
    } else {
        k
    }
}

/// The key's home slot in a table of `capacity` slots: its top 64 bits
/// scaled to the capacity, so homes keep the keys' order.
fn home(key: &Key, capacity: usize) -> usize {
    let top = (u64::from(key[0]) << 32) | u64::from(key[1]);
    ((u128::from(top) * capacity as u128) >> 64) as usize
}

/// 1 to 255, from the key's bits that do not make its home.
fn print(key: &Key) -> u8 {
    (key[2] % 255) as u8 + 1
}

impl<V: Copy + Default> SubjectTable<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots allocated (the memory is this times the entry size plus one).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn distance(&self, at: usize, key: &Key) -> usize {
        let h = home(key, self.slots.len());
        if at >= h {
            at - h
        } else {
            at + self.slots.len() - h
        }
    }

    fn next(&self, at: usize) -> usize {
        if at + 1 == self.slots.len() {
            0
        } else {
            at + 1
        }
    }

    fn find(&self, key: &Key) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let p = print(key);
        let mut at = home(key, self.slots.len());
        loop {
            let here = self.prints[at];
            if here == 0 {
                return None;
            }
            if here == p && self.slots[at].key == *key {
                return Some(at);
            }
            at = self.next(at);
        }
    }

    pub fn get(&self, hash: &[u8; 16]) -> Option<V> {
        self.find(&key_of(hash)).map(|at| self.slots[at].value)
    }

    pub fn contains_key(&self, hash: &[u8; 16]) -> bool {
        self.find(&key_of(hash)).is_some()
    }

    /// Sets the key's value; returns the value it had.
    pub fn insert(&mut self, hash: &[u8; 16], value: V) -> Option<V> {
        let key = key_of(hash);
        if let Some(at) = self.find(&key) {
            return Some(std::mem::replace(&mut self.slots[at].value, value));
        }
        if (self.len + 1) as f64 > self.slots.len() as f64 * MAX_LOAD {
            let grown = ((self.slots.len() as f64 * GROWTH) as usize).max(MIN_CAPACITY);
            self.resize(grown);
        }
        self.place(Slot { key, value });
        self.len += 1;
        None
    }

    /// Puts an entry whose key is not in the table before the first entry
    /// whose home is further on (or into the first empty slot).
    fn place(&mut self, slot: Slot<V>) {
        let mut at = home(&slot.key, self.slots.len());
        let mut dist = 0;
        while self.prints[at] != 0 && self.distance(at, &self.slots[at].key) >= dist {
            at = self.next(at);
            dist += 1;
        }
        // The run from there to the next empty slot moves one slot on.
        let mut end = at;
        while self.prints[end] != 0 {
            end = self.next(end);
        }
        if end >= at {
            self.slots.copy_within(at..end, at + 1);
            self.prints.copy_within(at..end, at + 1);
        } else {
            // The run wraps round the end of the table.
            let last = self.slots.len() - 1;
            let (wrapped, wrapped_print) = (self.slots[last], self.prints[last]);
            self.slots.copy_within(0..end, 1);
            self.prints.copy_within(0..end, 1);
            self.slots[0] = wrapped;
            self.prints[0] = wrapped_print;
            self.slots.copy_within(at..last, at + 1);
            self.prints.copy_within(at..last, at + 1);
        }
        self.prints[at] = print(&slot.key);
        self.slots[at] = slot;
    }

    fn resize(&mut self, capacity: usize) {
        let empty = Slot {
            key: EMPTY,
            value: V::default(),
        };
        let old = std::mem::replace(&mut self.slots, vec![empty; capacity]);
        self.prints = vec![0; capacity];
        for s in old.into_iter().filter(|s| s.key != EMPTY) {
            self.place(s);
        }
    }

    /// Removes the key; returns the value it had.
    pub fn remove(&mut self, hash: &[u8; 16]) -> Option<V> {
        let mut at = self.find(&key_of(hash))?;
        let value = self.slots[at].value;
        // Backward shift: the entries after it that are not at home move
        // back one slot, so no run has a hole.
        loop {
            let next = self.next(at);
            if self.prints[next] == 0 || self.distance(next, &self.slots[next].key) == 0 {
                break;
            }
            self.slots[at] = self.slots[next];
            self.prints[at] = self.prints[next];
            at = next;
        }
        self.slots[at] = Slot {
            key: EMPTY,
            value: V::default(),
        };
        self.prints[at] = 0;
        self.len -= 1;
        // Shrink when half empty (mass tombstones) to 85% full: whatever
        // the mix of inserts and removals, the load stays between 0.5 and
        // MAX_LOAD, and a shrink is far from the next growth.
        if self.slots.len() > MIN_CAPACITY && (self.len as f64) < self.slots.len() as f64 * MIN_LOAD
        {
            let target = ((self.len as f64 / SHRUNK_LOAD) as usize).max(MIN_CAPACITY);
            self.resize(target);
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Where the test keys' homes fall.
    #[derive(Clone, Copy)]
    enum Homes {
        /// Uniform-looking keys.
        Spread,
        /// Every key's home is the first slot: one long run.
        First,
        /// Every key's home is the last slot: the run wraps round the end.
        Last,
    }

    fn hash(n: u64, homes: Homes) -> [u8; 16] {
        let mut h = [0u8; 16];
        let top = match homes {
            Homes::Spread => n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            Homes::First => 7,
            Homes::Last => u64::MAX - 7,
        };
        // Key words are little-endian u32s, the first two the top 64 bits.
        h[..4].copy_from_slice(&((top >> 32) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&(top as u32).to_le_bytes());
        h[8..].copy_from_slice(&n.to_le_bytes());
        h
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u32),
        Remove(u64),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                3 => (0u64..400, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
                1 => (0u64..400).prop_map(Op::Remove),
            ],
            0..2000,
        )
    }

    fn check(ops: &[Op], homes: Homes) {
        let mut t = SubjectTable::<u32>::default();
        let mut model = HashMap::new();
        for op in ops {
            match *op {
                Op::Insert(k, v) => {
                    assert_eq!(t.insert(&hash(k, homes), v), model.insert(k, v))
                }
                Op::Remove(k) => assert_eq!(t.remove(&hash(k, homes)), model.remove(&k)),
            }
            assert_eq!(t.len(), model.len());
        }
        for k in 0..400 {
            assert_eq!(t.get(&hash(k, homes)), model.get(&k).copied(), "key {k}");
            assert_eq!(t.contains_key(&hash(k, homes)), model.contains_key(&k));
        }
        if !model.is_empty() {
            assert!(t.len() as f64 <= t.capacity() as f64 * MAX_LOAD);
        }
    }

    proptest! {
        #[test]
        fn behaves_as_a_map(ops in ops()) {
            check(&ops, Homes::Spread);
        }

        #[test]
        fn behaves_as_a_map_when_every_key_shares_one_home(ops in ops()) {
            check(&ops, Homes::First);
        }

        #[test]
        fn behaves_as_a_map_when_runs_wrap_round_the_end(ops in ops()) {
            check(&ops, Homes::Last);
        }
    }

    #[test]
    fn the_empty_key_is_stored_as_its_neighbour() {
        let mut t = SubjectTable::<u8>::default();
        let zero = [0u8; 16];
        let mut one = [0u8; 16];
        one[8] = 1;
        assert_eq!(t.insert(&zero, 5), None);
        assert_eq!(t.get(&zero), Some(5));
        // The one documented tie: all-zero 96 bits share [0, 0, 1]'s entry.
        assert_eq!(t.get(&one), Some(5));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn load_stays_within_bounds_as_entries_come_and_go() {
        let mut t = SubjectTable::<[u8; 4]>::default();
        let mut lowest = f64::MAX;
        for n in 0..200_000u64 {
            t.insert(&hash(n, Homes::Spread), [1; 4]);
            if t.len() > 1000 {
                lowest = lowest.min(t.len() as f64 / t.capacity() as f64);
            }
        }
        assert!(lowest >= MAX_LOAD / GROWTH - 0.01, "load fell to {lowest}");
        assert!(t.len() as f64 / t.capacity() as f64 <= MAX_LOAD);
        let mut lowest = f64::MAX;
        for n in 0..200_000u64 {
            t.remove(&hash(n, Homes::Spread));
            if t.capacity() > MIN_CAPACITY {
                lowest = lowest.min(t.len() as f64 / t.capacity() as f64);
            }
        }
        assert!(
            lowest >= MIN_LOAD - 0.01,
            "removals left the load at {lowest}"
        );
        assert!(t.is_empty());
        assert_eq!(t.get(&hash(3, Homes::Spread)), None);
    }
}
