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

/// Values by name, in no order; a name is stored shared, never copied.
#[derive(Debug, Clone)]
pub(crate) struct NameTable<V> {
    by_hash: FxHashMap<u64, Bucket<V>>,
    len: usize,
}

/// The names of one hash: one but for a collision.
#[derive(Debug, Clone)]
enum Bucket<V> {
    One(Arc<str>, V),
    Many(Vec<(Arc<str>, V)>),
}

impl<V> Default for NameTable<V> {
    fn default() -> Self {
        NameTable {
            by_hash: FxHashMap::default(),
            len: 0,
        }
    }
}

fn hash_of(name: &str) -> u64 {
    // The tests make every name collide, to try the buckets of many names.
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
    /// The value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&V> {
        match self.by_hash.get(&hash_of(name))? {
            Bucket::One(k, v) => is(k, name).then_some(v),
            Bucket::Many(entries) => entries.iter().find(|(k, _)| is(k, name)).map(|(_, v)| v),
        }
    }

    /// The value of `name`, made by `make` (and `name` shared) if it had none; and
    /// whether it was made.
    pub(crate) fn get_or_insert_with(
        &mut self,
        name: &Arc<str>,
        make: impl FnOnce() -> V,
    ) -> (&mut V, bool) {
        use std::collections::hash_map::Entry;
        match self.by_hash.entry(hash_of(name)) {
            Entry::Vacant(slot) => {
                self.len += 1;
                let Bucket::One(_, v) = slot.insert(Bucket::One(Arc::clone(name), make())) else {
                    unreachable!("just inserted One");
                };
                (v, true)
            }
            Entry::Occupied(slot) => {
                let bucket = slot.into_mut();
                // Another name of the same hash: keep both.
                if let Bucket::One(k, _) = bucket {
                    if !is(k, name) {
                        let Bucket::One(k, v) =
                            std::mem::replace(bucket, Bucket::Many(Vec::with_capacity(2)))
                        else {
                            unreachable!("matched One just above");
                        };
                        *bucket = Bucket::Many(vec![(k, v)]);
                    }
                }
                match bucket {
                    Bucket::One(_, v) => (v, false),
                    Bucket::Many(entries) => {
                        let made = match entries.iter().position(|(k, _)| is(k, name)) {
                            Some(i) => return (&mut entries[i].1, false),
                            None => {
                                entries.push((Arc::clone(name), make()));
                                true
                            }
                        };
                        self.len += 1;
                        let last = entries.len() - 1;
                        (&mut entries[last].1, made)
                    }
                }
            }
        }
    }

    /// Every name with its value, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &V)> + '_ {
        self.by_hash.values().flat_map(|b| {
            let (one, many) = match b {
                Bucket::One(k, v) => (Some((k, v)), &[][..]),
                Bucket::Many(entries) => (None, &entries[..]),
            };
            one.into_iter().chain(many.iter().map(|(k, v)| (k, v)))
        })
    }
}

impl<V: PartialEq> PartialEq for NameTable<V> {
    /// The same names with equal values, whatever the order they came in.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|(k, v)| other.get(k) == Some(v))
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
            prop_assert_eq!(t.len, model.len());
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
