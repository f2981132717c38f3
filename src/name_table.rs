//! [`NameTable`]: values by shared name, hashed once per name.
//!
//! The affinity table gains a row for every distinct step kind (up to its limit, in
//! two generations of these tables): a long run of new kinds looks each one up when
//! its task is assigned (and finds nothing), then adds it when the task completes. A
//! compact filter (about a byte a name) answers "never seen" without touching the
//! index, and new names wait in a short list that enters the index a batch at a
//! time, their misses overlapping when the index outgrows the cache.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::hash::FxHasher;

/// Values by name, in the order the names came; a name is stored shared, never
/// copied.
///
/// - The entries are appended to one vector.
/// - The index is open addressing with linear probing over 8-byte slots: the upper
///   half of a slot is the name's tag (the upper half of its hash, which also places
///   it), the lower half the entry's position plus one (zero: empty).
/// - The newest names (up to [`PENDING`]) wait in `pending`, as their slots-to-be,
///   and enter the index together. Indexed and pending names together fill at most
///   three slots in four, so every probe ends at an empty slot.
/// - The filter has three bits of one word set for the tag of every indexed or
///   pending name: a name with any of its bits clear is in neither. It has a byte
///   for each slot of the index.
#[derive(Debug, Clone)]
pub(crate) struct NameTable<V> {
    slots: Vec<u64>,
    /// How many slots are used.
    indexed: usize,
    pending: Vec<u64>,
    filter: Vec<u64>,
    entries: Vec<Entry<V>>,
}

#[derive(Debug, Clone)]
struct Entry<V> {
    name: Arc<str>,
    value: V,
}

impl<V> Default for NameTable<V> {
    fn default() -> Self {
        NameTable {
            slots: Vec::new(),
            indexed: 0,
            pending: Vec::new(),
            filter: Vec::new(),
            entries: Vec::new(),
        }
    }
}

/// How many new names wait before they enter the index (few in tests, so that
/// small tables flush often).
const PENDING: usize = if cfg!(test) { 3 } else { 32 };

/// The index is never smaller.
const MIN_SLOTS: usize = 16;

/// The upper half of the name's hash: its tag in the index, and its home slot. A
/// caller that looks a name up in several tables hashes it once, and passes the tag
/// to the `_tagged` methods.
pub(crate) fn tag_of(name: &str) -> u32 {
    // The tests give every name one tag, to try long probe runs.
    #[cfg(test)]
    if let Some(tag) = tests::COLLIDE.with(std::cell::Cell::get) {
        return tag;
    }
    let mut h = FxHasher::default();
    name.hash(&mut h);
    // The Fx hash's best-mixed bits are its upper ones.
    (h.finish() >> 32) as u32
}

/// The tag of a slot.
fn tag(slot: u64) -> u32 {
    (slot >> 32) as u32
}

/// The entry of a slot.
fn entry(slot: u64) -> usize {
    (slot as u32 as usize).wrapping_sub(1)
}

/// The word of `tag` in a filter of `words` words (a power of two), and its bits.
fn filter_bits(tag: u32, words: usize) -> (usize, u64) {
    // Mixed apart from the low bits that place the tag in the index.
    let m = u64::from(tag).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let word = (m >> 40) as usize & (words - 1);
    let bits = (1 << (m & 63)) | (1 << ((m >> 6) & 63)) | (1 << ((m >> 12) & 63));
    (word, bits)
}

/// Whether `stored` is `name`: the same string (the caller's own shared name, nearly
/// always) or equal bytes.
fn is(stored: &Arc<str>, name: &str) -> bool {
    (std::ptr::eq(stored.as_ptr(), name.as_ptr()) && stored.len() == name.len())
        || crate::id::same_name(stored, name)
}

impl<V> NameTable<V> {
    /// The entry of `name`, of tag `tag`.
    fn find(&self, tag: u32, name: &str) -> Option<usize> {
        if self.filter.is_empty() {
            return None;
        }
        let (word, bits) = filter_bits(tag, self.filter.len());
        if self.filter[word] & bits != bits {
            return None;
        }
        let named = |slot: u64| {
            let i = entry(slot);
            let e = self.entries.get(i)?;
            (self::tag(slot) == tag && is(&e.name, name)).then_some(i)
        };
        let mask = self.slots.len() - 1;
        let mut at = tag as usize & mask;
        // An empty slot ends every probe (see the type); the bound only keeps a bug
        // from looping forever.
        for _ in 0..self.slots.len() {
            let slot = self.slots[at];
            if slot == 0 {
                break;
            }
            if let Some(i) = named(slot) {
                return Some(i);
            }
            at = (at + 1) & mask;
        }
        self.pending.iter().find_map(|&slot| named(slot))
    }

    /// How many names it holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Forgets every name, keeping the storage (the index keeps its size).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.slots.fill(0);
        self.filter.fill(0);
        self.pending.clear();
        self.indexed = 0;
    }

    /// The value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&V> {
        self.get_tagged(tag_of(name), name)
    }

    /// [`get`](Self::get) for `name` of tag `tag` ([`tag_of`]).
    pub(crate) fn get_tagged(&self, tag: u32, name: &str) -> Option<&V> {
        let i = self.find(tag, name)?;
        self.entries.get(i).map(|e| &e.value)
    }

    /// The value of `name`, made by `make` (and `name` shared) if it had none; and
    /// whether it was made.
    pub(crate) fn get_or_insert_with(
        &mut self,
        name: &Arc<str>,
        make: impl FnOnce() -> V,
    ) -> (&mut V, bool) {
        self.get_or_insert_tagged(tag_of(name), name, make)
    }

    /// [`get_or_insert_with`](Self::get_or_insert_with) for `name` of tag `tag`
    /// ([`tag_of`]).
    pub(crate) fn get_or_insert_tagged(
        &mut self,
        tag: u32,
        name: &Arc<str>,
        make: impl FnOnce() -> V,
    ) -> (&mut V, bool) {
        if let Some(i) = self.find(tag, name) {
            return (&mut self.entries[i].value, false);
        }
        let i = self.entries.len();
        self.entries.push(Entry {
            name: Arc::clone(name),
            value: make(),
        });
        // Past 2^32 - 1 names the new one is not indexed, never wrong: it is found
        // by nothing but `iter`. (A table that big is 200 GB.)
        if let Ok(position) = u32::try_from(i + 1) {
            if self.pending.len() == PENDING || self.slots.is_empty() {
                self.flush();
            }
            let slot = (u64::from(tag) << 32) | u64::from(position);
            self.pending.push(slot);
            self.mark(tag);
        }
        (&mut self.entries[i].value, true)
    }

    /// Moves the pending names into the index, first growing it (and the filter,
    /// then rebuilt from the tags) so that a full list of new pending names fits.
    fn flush(&mut self) {
        let used = self.indexed + self.pending.len();
        let mut size = self.slots.len().max(MIN_SLOTS);
        while (used + PENDING) * 4 > size * 3 {
            size *= 2;
        }
        if size != self.slots.len() {
            let old = std::mem::replace(&mut self.slots, vec![0; size]);
            self.filter = vec![0; size / 8];
            for slot in old.into_iter().filter(|&s| s != 0) {
                self.place(slot);
            }
        }
        let mut pending = std::mem::take(&mut self.pending);
        // Their home slots are read first, all at once, so that the cache misses
        // overlap instead of following one another through the placing loop.
        let mask = self.slots.len() - 1;
        let homes = pending
            .iter()
            .fold(0, |acc, &slot| acc | self.slots[tag(slot) as usize & mask]);
        std::hint::black_box(homes);
        for slot in pending.drain(..) {
            self.place(slot);
        }
        self.pending = pending;
        self.indexed = used;
    }

    /// Writes `slot` into the first empty slot from its home, and marks its tag.
    fn place(&mut self, slot: u64) {
        let mask = self.slots.len() - 1;
        let mut at = tag(slot) as usize & mask;
        while self.slots[at] != 0 {
            at = (at + 1) & mask;
        }
        self.slots[at] = slot;
        self.mark(tag(slot));
    }

    /// Sets the filter bits of `tag`.
    fn mark(&mut self, tag: u32) {
        let (word, bits) = filter_bits(tag, self.filter.len());
        self.filter[word] |= bits;
    }

    /// Every value, to change in place (the names and the index stay).
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.entries.iter_mut().map(|e| &mut e.value)
    }

    /// Where `name` (of tag `tag`, [`tag_of`]) is, for [`at`](Self::at) and
    /// [`at_mut`](Self::at_mut): a place stays the name's until the table is cleared.
    pub(crate) fn position_tagged(&self, tag: u32, name: &str) -> Option<usize> {
        self.find(tag, name)
    }

    /// The name and value at `position` ([`position_tagged`](Self::position_tagged)).
    pub(crate) fn at(&self, position: usize) -> Option<(&Arc<str>, &V)> {
        self.entries.get(position).map(|e| (&e.name, &e.value))
    }

    /// [`at`](Self::at), the value to change in place.
    pub(crate) fn at_mut(&mut self, position: usize) -> Option<(&Arc<str>, &mut V)> {
        self.entries
            .get_mut(position)
            .map(|e| (&e.name, &mut e.value))
    }

    /// Every name with its value, in the order the names came.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &V)> + '_ {
        self.entries.iter().map(|e| (&e.name, &e.value))
    }
}

impl<V: PartialEq> PartialEq for NameTable<V> {
    /// The same names with equal values, whatever the order they came in.
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    thread_local! {
        /// Every name has this tag while set (this thread only).
        pub(super) static COLLIDE: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
    }

    proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/name_table.txt"))]

        /// It holds what a `BTreeMap` holds, through any sequence of insertions,
        /// updates and clears (growing the index several times, and refilling a
        /// cleared one), with real hashes and with every
        /// name of one tag: one probe run from the first slot, or from the last, which
        /// wraps around; equality ignores the order names came in.
        #[test]
        fn it_is_a_map(
            ops in prop::collection::vec(("[a-f]{1,3}", 0u32..5, prop::bool::weighted(0.03)), 0..200),
            collide in prop::option::of(prop::sample::select(vec![0, 7, u32::MAX])),
        ) {
            COLLIDE.with(|c| c.set(collide));
            let mut t = NameTable::default();
            let mut model = BTreeMap::new();
            for (name, v, clear) in &ops {
                if *clear {
                    t.clear();
                    model.clear();
                    prop_assert_eq!(t.get(name), None);
                }
                let shared: Arc<str> = Arc::from(name.as_str());
                let (slot, made) = t.get_or_insert_with(&shared, || *v);
                prop_assert_eq!(made, !model.contains_key(name));
                *slot += v;
                *model.entry(name.clone()).or_insert(*v) += v;
                prop_assert_eq!(t.get(name), model.get(name));
            }
            prop_assert_eq!(t.len(), model.len());
            let mut listed: Vec<(String, u32)> =
                t.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            listed.sort();
            prop_assert_eq!(&listed, &model.clone().into_iter().collect::<Vec<_>>());
            // The same content built in reverse order is equal.
            let mut reversed = NameTable::default();
            for (name, v) in model.iter().rev() {
                *reversed.get_or_insert_with(&Arc::from(name.as_str()), || 0).0 = *v;
            }
            prop_assert!(t == reversed);
            COLLIDE.with(|c| c.set(None));
        }
    }
}
