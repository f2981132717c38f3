//! [`DutyLog`]: who did which duty in which group, for separation of duties.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use super::Proposal;
use crate::agent_map::AgentMap;
use crate::hash::FxHashMap;
use crate::id::AgentId;

/// Which agent performed which duty in which group: the history the
/// separation-of-duties rule reads, so that "the agent that deploys is not the agent
/// that verifies" holds across calls, not only within one batch.
///
/// Groups (a workflow run id, a batch id) are compared exactly. Duties are compared
/// trimmed and ASCII-case-insensitively (`Deploy` and `deploy` are one duty), as the
/// rule compares them. The host records a duty once the assignment is made, and
/// forgets a group once it is over, which keeps the log small; the
/// [`Coordinator`](crate::coordinator::Coordinator) records only the duties its
/// policies read ([`PolicyEnforcer::reads_duty`](super::PolicyEnforcer::reads_duty)).
///
/// Plain serde data, written in ascending order, so a log serializes the same way
/// every time. Duties within a group are hashed: recording and checking a duty cost
/// the same however many a long workflow run has.
///
/// ```
/// use concord::policy::DutyLog;
/// use concord::AgentId;
///
/// let mut log = DutyLog::new();
/// assert!(log.record("run-7", "Deploy", AgentId::new(1)));
/// assert!(!log.record("run-7", "deploy", AgentId::new(1))); // already known
/// assert!(log.has_performed("run-7", "deploy", AgentId::new(1)));
/// assert!(!log.has_performed("run-8", "deploy", AgentId::new(1)));
/// assert_eq!(log.duties_of("run-7", AgentId::new(1)).collect::<Vec<_>>(), ["deploy"]);
/// assert!(log.forget_group("run-7"));
/// assert!(log.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "DutyLogData")]
pub struct DutyLog {
    /// group -> duty (normalized) -> agents. Names are shared: the coordinator
    /// records a step's kind and its run's id without copying them.
    groups: BTreeMap<Arc<str>, FxHashMap<Arc<str>, AgentMap<()>>>,
}

impl Serialize for DutyLog {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// Agents as a sequence, ascending (as a `BTreeSet` writes them).
        struct Agents<'a>(&'a AgentMap<()>);
        impl Serialize for Agents<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.agents())
            }
        }
        #[derive(Serialize)]
        struct Sorted<'a> {
            groups: BTreeMap<&'a str, BTreeMap<&'a str, Agents<'a>>>,
        }
        let groups = self
            .groups
            .iter()
            .map(|(g, duties)| {
                let sorted = duties.iter().map(|(d, a)| (&**d, Agents(a))).collect();
                (&**g, sorted)
            })
            .collect();
        Sorted { groups }.serialize(serializer)
    }
}

/// The serialized form, normalized into a [`DutyLog`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DutyLogData {
    #[serde(default)]
    groups: BTreeMap<String, BTreeMap<String, BTreeSet<AgentId>>>,
}

impl From<DutyLogData> for DutyLog {
    fn from(data: DutyLogData) -> Self {
        let mut log = DutyLog::new();
        for (group, duties) in data.groups {
            for (duty, agents) in duties {
                for agent in agents {
                    log.record(&group, &duty, agent);
                }
            }
        }
        log
    }
}

/// A duty as compared: trimmed, ASCII-lowercased; borrowed when it already is.
pub(crate) fn duty_key(duty: &str) -> Cow<'_, str> {
    let trimmed = duty.trim();
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// Whether two duties are the same duty.
pub(crate) fn same_duty(a: &str, b: &str) -> bool {
    // Checked for every rule on every candidate, and mostly false. Equal bytes but
    // for case stay equal when trimmed (the blanks trimmed are the same); names
    // without surrounding blanks (nearly all) equal no other way.
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    !(unpadded(a) && unpadded(b)) && a.trim().eq_ignore_ascii_case(b.trim())
}

/// Whether `trim` surely leaves `s` as it is: it starts and ends with printable ASCII
/// (Unicode whitespace outside ASCII starts and ends with a non-ASCII byte). `false`
/// only means that it may not.
fn unpadded(s: &str) -> bool {
    // Printable ASCII (no blank, no control byte, no start of a longer character):
    // stricter than "not whitespace", so an odd name only takes the trimming path.
    let plain = |b: &u8| (b'!'..=b'~').contains(b);
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(first), Some(last)) => plain(first) && plain(last),
        _ => true,
    }
}

impl DutyLog {
    /// An empty log.
    pub const fn new() -> Self {
        DutyLog {
            groups: BTreeMap::new(),
        }
    }

    /// Records that `agent` performs `duty` in `group`. Returns whether that was new.
    ///
    /// Allocates only for a group or duty not seen before.
    pub fn record(&mut self, group: &str, duty: &str, agent: AgentId) -> bool {
        let group = match self.shared_group(group) {
            Some(shared) => Arc::clone(shared),
            None => Arc::from(group),
        };
        let key = duty_key(duty);
        self.record_key(&group, || Arc::from(&*key), &key, agent)
    }

    /// [`record`](Self::record) with names the caller already shares: nothing is
    /// copied for a group or duty seen before, nor for a new duty already normalized.
    pub(crate) fn record_shared(
        &mut self,
        group: &Arc<str>,
        duty: &Arc<str>,
        agent: AgentId,
    ) -> bool {
        match duty_key(duty) {
            Cow::Borrowed(key) if key.len() == duty.len() => {
                self.record_key(group, || Arc::clone(duty), key, agent)
            }
            key => self.record_key(group, || Arc::from(&*key), &key, agent),
        }
    }

    /// Records `agent` under the normalized duty `key`, made by `make_key` only if
    /// the group has no such duty yet.
    fn record_key(
        &mut self,
        group: &Arc<str>,
        make_key: impl FnOnce() -> Arc<str>,
        key: &str,
        agent: AgentId,
    ) -> bool {
        let duties = match self.groups.get_mut(&**group) {
            Some(duties) => duties,
            None => self.groups.entry(Arc::clone(group)).or_default(),
        };
        match duties.get_mut(key) {
            Some(agents) => agents.get_or_insert(agent, ()).1,
            None => {
                duties.insert(make_key(), AgentMap::one(agent, ()));
                true
            }
        }
    }

    /// The log's own copy of the name `group`, if it has a record for it: a caller
    /// that records under that group again can share it instead of copying.
    pub(crate) fn shared_group(&self, group: &str) -> Option<&Arc<str>> {
        self.groups.get_key_value(group).map(|(g, _)| g)
    }

    /// Records the duty of an accepted proposal in its group. Returns whether that was
    /// new; a proposal without a group records nothing and returns `false`.
    pub fn record_proposal(&mut self, proposal: &Proposal) -> bool {
        match proposal.group() {
            Some(group) => self.record(group, proposal.duty(), proposal.agent()),
            None => false,
        }
    }

    /// Whether `agent` performs `duty` in `group`.
    pub fn has_performed(&self, group: &str, duty: &str, agent: AgentId) -> bool {
        self.groups
            .get(group)
            .and_then(|duties| duties.get(&*duty_key(duty)))
            .is_some_and(|agents| agents.contains(agent))
    }

    /// The agents that perform `duty` in `group`, ascending.
    pub fn agents(&self, group: &str, duty: &str) -> impl Iterator<Item = AgentId> + '_ {
        self.groups
            .get(group)
            .and_then(|duties| duties.get(&*duty_key(duty)))
            .into_iter()
            .flat_map(AgentMap::agents)
    }

    /// The duties `agent` performs in `group`, normalized, in name order.
    pub fn duties_of(&self, group: &str, agent: AgentId) -> impl Iterator<Item = &str> + '_ {
        let mut duties: Vec<&str> = self
            .groups
            .get(group)
            .into_iter()
            .flatten()
            .filter(|(_, agents)| agents.contains(agent))
            .map(|(duty, _)| &**duty)
            .collect();
        duties.sort_unstable();
        duties.into_iter()
    }

    /// Forgets everything recorded for `group` (its run is over). Returns whether
    /// anything was.
    pub fn forget_group(&mut self, group: &str) -> bool {
        self.groups.remove(group).is_some()
    }

    /// The groups with a record, in name order.
    pub fn groups(&self) -> impl Iterator<Item = &str> + '_ {
        self.groups.keys().map(|g| &**g)
    }

    /// How many (group, duty, agent) records there are.
    pub fn len(&self) -> usize {
        self.groups
            .values()
            .flat_map(|duties| duties.values())
            .map(AgentMap::len)
            .sum()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/duties.txt"))]

        /// The shortcut for unpadded names agrees with trimming every time.
        #[test]
        fn same_duty_is_trimmed_case_blind_equality(
            a in "[ \t\u{1}\u{b}\u{a0}\u{2003}]{0,2}(deploy|Deploy|verify|DEPLOY|x|é|~)?[ \t\u{1}\u{b}\u{a0}]{0,2}",
            b in "[ \t\u{1}\u{b}\u{a0}\u{2003}]{0,2}(deploy|Deploy|verify|DEPLOY|x|é|~)?[ \t\u{1}\u{b}\u{a0}]{0,2}",
        ) {
            prop_assert_eq!(same_duty(&a, &b), a.trim().eq_ignore_ascii_case(b.trim()));
        }
    }
}
