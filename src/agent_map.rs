//! [`AgentMap`]: the few agents that did something, with a value each, held inline
//! while there is one.
//!
//! The duty log and the affinity table keep one of these per (group, duty) and per
//! task kind. Almost all of them ever hold one agent (one agent per duty is what
//! separation of duties asks for), and a long run makes one per step: a B-tree node
//! per entry (about 200 bytes, one allocation to make and one to free) was most of
//! what recording and dropping them cost.

use crate::id::AgentId;

/// Agents with a value each, in ascending id order; no allocation for one agent.
/// Two maps are equal when they hold the same agents and values, whichever form
/// holds them (one agent may sit in the vector form, after a removal).
#[derive(Debug, Clone)]
pub(crate) enum AgentMap<V> {
    /// Exactly one agent.
    One(AgentId, V),
    /// Any number, sorted by id, without repeats.
    Many(Vec<(AgentId, V)>),
}

impl<V: PartialEq> PartialEq for AgentMap<V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<V: Eq> Eq for AgentMap<V> {}

impl<V> AgentMap<V> {
    /// A map holding `agent` only.
    pub(crate) fn one(agent: AgentId, value: V) -> Self {
        AgentMap::One(agent, value)
    }

    /// The value of `agent`.
    pub(crate) fn get(&self, agent: AgentId) -> Option<&V> {
        match self {
            AgentMap::One(a, v) => (*a == agent).then_some(v),
            AgentMap::Many(entries) => entries
                .binary_search_by_key(&agent, |(a, _)| *a)
                .ok()
                .map(|i| &entries[i].1),
        }
    }

    /// The value of `agent`, to change.
    pub(crate) fn get_mut(&mut self, agent: AgentId) -> Option<&mut V> {
        match self {
            AgentMap::One(a, v) => (*a == agent).then_some(v),
            AgentMap::Many(entries) => match entries.binary_search_by_key(&agent, |(a, _)| *a) {
                Ok(i) => Some(&mut entries[i].1),
                Err(_) => None,
            },
        }
    }

    /// Whether `agent` is in the map.
    pub(crate) fn contains(&self, agent: AgentId) -> bool {
        self.get(agent).is_some()
    }

    /// The value of `agent`, inserted as `value` if it had none; and whether it was
    /// inserted.
    pub(crate) fn get_or_insert(&mut self, agent: AgentId, value: V) -> (&mut V, bool) {
        if let AgentMap::One(a, _) = self {
            if *a == agent {
                let AgentMap::One(_, v) = self else {
                    unreachable!("matched One just above")
                };
                return (v, false);
            }
            // A second agent: move to the vector form.
            let AgentMap::One(a, v) = std::mem::replace(self, AgentMap::Many(Vec::new())) else {
                unreachable!("matched One just above")
            };
            *self = AgentMap::Many(vec![(a, v)]);
        }
        let AgentMap::Many(entries) = self else {
            unreachable!("One was turned into Many just above")
        };
        match entries.binary_search_by_key(&agent, |(a, _)| *a) {
            Ok(i) => (&mut entries[i].1, false),
            Err(i) => {
                entries.insert(i, (agent, value));
                (&mut entries[i].1, true)
            }
        }
    }

    /// Removes `agent`; whether it was there. A map left with no agent is the
    /// empty vector form.
    pub(crate) fn remove(&mut self, agent: AgentId) -> bool {
        match self {
            AgentMap::One(a, _) if *a == agent => {
                *self = AgentMap::Many(Vec::new());
                true
            }
            AgentMap::One(..) => false,
            AgentMap::Many(entries) => match entries.binary_search_by_key(&agent, |(a, _)| *a) {
                Ok(i) => {
                    entries.remove(i);
                    true
                }
                Err(_) => false,
            },
        }
    }

    /// The agents and their values, ascending by agent.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (AgentId, &V)> + '_ {
        let (one, many) = match self {
            AgentMap::One(a, v) => (Some((*a, v)), &[][..]),
            AgentMap::Many(entries) => (None, &entries[..]),
        };
        one.into_iter().chain(many.iter().map(|(a, v)| (*a, v)))
    }

    /// The agents, ascending.
    pub(crate) fn agents(&self) -> impl Iterator<Item = AgentId> + '_ {
        self.iter().map(|(a, _)| a)
    }

    /// Whether no agent is in the map.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many agents.
    pub(crate) fn len(&self) -> usize {
        match self {
            AgentMap::One(..) => 1,
            AgentMap::Many(entries) => entries.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/agent_map.txt"))]

        /// Any sequence of inserts leaves the map agreeing with a `BTreeMap` given the
        /// same inserts (first value wins, as `get_or_insert` does).
        #[test]
        fn agrees_with_a_btree_map(ops in prop::collection::vec((0u64..6, 0u32..100), 1..40)) {
            let (a0, v0) = ops[0];
            let mut map = AgentMap::one(AgentId::new(a0), v0);
            let mut model = BTreeMap::from([(AgentId::new(a0), v0)]);
            for &(a, v) in &ops[1..] {
                let (got, inserted) = map.get_or_insert(AgentId::new(a), v);
                let fresh = !model.contains_key(&AgentId::new(a));
                let want = *model.entry(AgentId::new(a)).or_insert(v);
                prop_assert_eq!(*got, want);
                prop_assert_eq!(inserted, fresh);
            }
            let got: Vec<(AgentId, u32)> = map.iter().map(|(a, v)| (a, *v)).collect();
            let want: Vec<(AgentId, u32)> = model.iter().map(|(a, v)| (*a, *v)).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(map.len(), model.len());
            for a in 0..6 {
                prop_assert_eq!(map.get(AgentId::new(a)), model.get(&AgentId::new(a)));
                prop_assert_eq!(map.contains(AgentId::new(a)), model.contains_key(&AgentId::new(a)));
            }
        }
    }

    #[test]
    fn values_can_be_updated_in_place() {
        let mut map = AgentMap::one(AgentId::new(2), 1.0);
        *map.get_or_insert(AgentId::new(2), 0.0).0 += 1.0;
        *map.get_or_insert(AgentId::new(1), 5.0).0 += 1.0;
        assert_eq!(
            map.iter().map(|(a, v)| (a.get(), *v)).collect::<Vec<_>>(),
            [(1, 6.0), (2, 2.0)]
        );
        assert_eq!(map.agents().map(AgentId::get).collect::<Vec<_>>(), [1, 2]);
    }
}
