//! [`NameTable`]: values by shared name, hashed once per name.
//!
//! A table that grows by one name per workflow step (the affinity table in a long run
//! of distinct step kinds) rehashes every key each time it grows. Keyed by the names
//! themselves, that rereads every name from memory it long left; keyed by each
//! name's hash, growth moves integers, and a name is read only to tell it from
//! another of the same hash (or not at all when it is the very string stored).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::hash::{FxHashMap, FxHasher};

/// Values by name, in the order the names came; a name is stored shared, never
/// copied.
///
/// The entries are appended to one vector, and a small index (16 bytes a slot) maps
/// each hash to its latest entry, entries of one hash chained from there: a new name
/// writes the end of the vector and one index slot, not a 60-byte slot somewhere in
/// a table of them.
#[derive(Debug, Clone)]
pub(crate) struct NameTable<V> {
    by_hash: FxHashMap<u64, u32>,
    entries: Vec<Entry<V>>,
}

#[derive(Debug, Clone)]
struct Entry<V> {
    name: Arc<str>,
    value: V,
    /// The entry of the same hash made before this one.
    next: Option<u32>,
}

impl<V> Default for NameTable<V> {
    fn default() -> Self {
        NameTable {
            by_hash: FxHashMap::default(),
            entries: Vec::new(),
        }
    }
}

fn hash_of(name: &str) -> u64 {
    // The tests make every name collide, to try the chains of many names.
    #[cfg(test)]
    if tests::COLLIDE.with(std::cell::Cell::get) {
        return 0;
    }
    let mut h = FxHasher::default();
    name.hash(&mut h);
    h.finish()
}

/// Whether `stored` is `name`: the same string (the caller's own shared name, nearly
/// always) or equal bytes.
fn is(stored: &Arc<str>, name: &str) -> bool {
    (std::ptr::eq(stored.as_ptr(), name.as_ptr()) && stored.len() == name.len())
        || **stored == *name
}

impl<V> NameTable<V> {
    /// The entry of `name` among those of `hash`.
    fn find(&self, hash: u64, name: &str) -> Option<usize> {
        let mut at = self.by_hash.get(&hash).copied();
        while let Some(i) = at {
            let e = self.entries.get(i as usize)?;
            if is(&e.name, name) {
                return Some(i as usize);
            }
            at = e.next;
        }
        None
    }

    /// The value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&V> {
        let i = self.find(hash_of(name), name)?;
        self.entries.get(i).map(|e| &e.value)
    }

    /// The value of `name`, made by `make` (and `name` shared) if it had none; and
    /// whether it was made.
    pub(crate) fn get_or_insert_with(
        &mut self,
        name: &Arc<str>,
        make: impl FnOnce() -> V,
    ) -> (&mut V, bool) {
        let hash = hash_of(name);
        let (i, made) = match self.find(hash, name) {
            Some(i) => (i, false),
            None => {
                let i = self.entries.len();
                // Past 2^32 names the chain is cut, never wrong: such an entry is
                // found by nothing but `iter`. (A table that big is 200 GB.)
                let at = u32::try_from(i).ok();
                let next = at.and_then(|at| self.by_hash.insert(hash, at));
                self.entries.push(Entry {
                    name: Arc::clone(name),
                    value: make(),
                    next,
                });
                (i, true)
            }
        };
        (&mut self.entries[i].value, made)
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
        /// Every name hashes to 0 while set (this thread only).
        pub(super) static COLLIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/name_table.txt"))]

        /// It holds what a `BTreeMap` holds, through any sequence of insertions and
        /// updates, with real hashes and with every name colliding; equality ignores
        /// the order names came in.
        #[test]
        fn it_is_a_map(
            ops in prop::collection::vec(("[a-d]{1,2}", 0u32..5), 0..60),
            collide in proptest::bool::ANY,
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
            COLLIDE.with(|c| c.set(false));
        }
    }
}
