//! [`NameTable`]: values by shared name, hashed once per name.
//!
//! A table that grows by one name per workflow step (the affinity table in a long run
//! of distinct step kinds) is probed for a name when its task is assigned and written
//! when the task completes. Each slot of the index is one word holding the name's
//! hash tag and its entry: the probe for a new name reads the very line its insertion
//! writes next, growth moves words without rereading a name, and a name is read only
//! when its tag matches (or not at all when it is the very string stored).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::hash::FxHasher;

/// Values by name, in the order the names came; a name is stored shared, never
/// copied.
///
/// The entries are appended to one vector; the index is open addressing with linear
/// probing over 8-byte slots: the upper half of a slot is the upper half of the name's
/// hash (which also places it), the lower half the entry's position plus one (zero:
/// empty). At most three slots in four are used, so a probe for a missing name
/// mostly ends within the cache line it started in.
#[derive(Debug, Clone)]
pub(crate) struct NameTable<V> {
    slots: Vec<u64>,
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
            entries: Vec::new(),
        }
    }
}

/// The upper half of the name's hash: its tag in the index, and its home slot.
fn tag_of(name: &str) -> u32 {
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

/// Whether `stored` is `name`: the same string (the caller's own shared name, nearly
/// always) or equal bytes.
fn is(stored: &Arc<str>, name: &str) -> bool {
    (std::ptr::eq(stored.as_ptr(), name.as_ptr()) && stored.len() == name.len())
        || **stored == *name
}

/// The index is never smaller.
const MIN_SLOTS: usize = 16;

/// Where a probe for a name ended.
enum Probe {
    /// At the entry of that name.
    Found(usize),
    /// At the empty slot where the name belongs (none when the index has no slots).
    Vacant(Option<usize>),
}

impl<V> NameTable<V> {
    /// Probes the index for `name`, of tag `tag`.
    fn probe(&self, tag: u32, name: &str) -> Probe {
        let mask = match self.slots.len() {
            0 => return Probe::Vacant(None),
            n => n - 1,
        };
        let mut at = tag as usize & mask;
        // The index is never full, so an empty slot ends every probe; the bound only
        // keeps a bug from looping forever.
        for _ in 0..self.slots.len() {
            let slot = self.slots[at];
            if slot == 0 {
                return Probe::Vacant(Some(at));
            }
            if (slot >> 32) as u32 == tag {
                let i = (slot as u32 - 1) as usize;
                if self.entries.get(i).is_some_and(|e| is(&e.name, name)) {
                    return Probe::Found(i);
                }
            }
            at = (at + 1) & mask;
        }
        Probe::Vacant(None)
    }

    /// The value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&V> {
        match self.probe(tag_of(name), name) {
            Probe::Found(i) => self.entries.get(i).map(|e| &e.value),
            Probe::Vacant(_) => None,
        }
    }

    /// The value of `name`, made by `make` (and `name` shared) if it had none; and
    /// whether it was made.
    pub(crate) fn get_or_insert_with(
        &mut self,
        name: &Arc<str>,
        make: impl FnOnce() -> V,
    ) -> (&mut V, bool) {
        let tag = tag_of(name);
        let vacant = match self.probe(tag, name) {
            Probe::Found(i) => return (&mut self.entries[i].value, false),
            Probe::Vacant(at) => at,
        };
        let i = self.entries.len();
        self.entries.push(Entry {
            name: Arc::clone(name),
            value: make(),
        });
        // Past 2^32 - 1 names the new one is not indexed, never wrong: it is found
        // by nothing but `iter`. (A table that big is 200 GB.)
        if let Ok(position) = u32::try_from(i + 1) {
            let slot = (u64::from(tag) << 32) | u64::from(position);
            match vacant {
                // Within three quarters of the slots, it goes where the probe ended.
                Some(at) if (i + 1) * 4 <= self.slots.len() * 3 => self.slots[at] = slot,
                _ => {
                    self.grow();
                    self.place(slot);
                }
            }
        }
        (&mut self.entries[i].value, true)
    }

    /// Doubles the index (or makes its first slots), placing every entry again by its
    /// tag alone.
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        for slot in old.into_iter().filter(|&s| s != 0) {
            self.place(slot);
        }
    }

    /// Writes `slot` into the first empty slot from its home (there is one: the index
    /// is at most three quarters full).
    fn place(&mut self, slot: u64) {
        let mask = self.slots.len() - 1;
        let mut at = (slot >> 32) as usize & mask;
        while self.slots[at] != 0 {
            at = (at + 1) & mask;
        }
        self.slots[at] = slot;
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

        /// It holds what a `BTreeMap` holds, through any sequence of insertions and
        /// updates (growing the index several times), with real hashes and with every
        /// name of one tag: one probe run from the first slot, or from the last, which
        /// wraps around; equality ignores the order names came in.
        #[test]
        fn it_is_a_map(
            ops in prop::collection::vec(("[a-f]{1,3}", 0u32..5), 0..200),
            collide in prop::option::of(prop::sample::select(vec![0, 7, u32::MAX])),
        ) {
            COLLIDE.with(|c| c.set(collide));
            let mut t = NameTable::default();
            let mut model = BTreeMap::new();
            for (name, v) in &ops {
                let shared: Arc<str> = Arc::from(name.as_str());
                let (slot, made) = t.get_or_insert_with(&shared, || *v);
                prop_assert_eq!(made, !model.contains_key(name));
                *slot += v;
                *model.entry(name.clone()).or_insert(*v) += v;
                prop_assert_eq!(t.get(name), model.get(name));
            }
            prop_assert_eq!(t.entries.len(), model.len());
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
