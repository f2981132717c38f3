//! [`DutyLog`]: who did which duty in which group, for separation of duties.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize, Serializer};

use super::Proposal;
use crate::hash::FxHashMap;
use crate::id::AgentId;

/// Which agent performed which duty in which group: the history the
/// separation-of-duties rule reads, so that "the agent that deploys is not the agent
/// that verifies" holds across calls, not only within one batch.
///
/// Groups (a workflow run id, a batch id) are compared exactly. Duties are compared
/// trimmed and ASCII-case-insensitively (`Deploy` and `deploy` are one duty), as the
/// rule compares them. The host records a duty once the assignment is made, and
/// forgets a group once it is over, which keeps the log small.
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
    /// group -> duty (normalized) -> agents.
    groups: BTreeMap<String, FxHashMap<Box<str>, BTreeSet<AgentId>>>,
}

impl Serialize for DutyLog {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Sorted<'a> {
            groups: BTreeMap<&'a str, BTreeMap<&'a str, &'a BTreeSet<AgentId>>>,
        }
        let groups = self
            .groups
            .iter()
            .map(|(g, duties)| {
                let sorted = duties.iter().map(|(d, a)| (&**d, a)).collect();
                (g.as_str(), sorted)
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
    a.trim().eq_ignore_ascii_case(b.trim())
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
        if !self.groups.contains_key(group) {
            self.groups.insert(group.to_owned(), FxHashMap::default());
        }
        let Some(duties) = self.groups.get_mut(group) else {
            return false;
        };
        let key = duty_key(duty);
        if let Some(agents) = duties.get_mut(&*key) {
            return agents.insert(agent);
        }
        duties.insert(key.into(), BTreeSet::from([agent]));
        true
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
            .is_some_and(|agents| agents.contains(&agent))
    }

    /// The agents that perform `duty` in `group`, ascending.
    pub fn agents(&self, group: &str, duty: &str) -> impl Iterator<Item = AgentId> + '_ {
        self.groups
            .get(group)
            .and_then(|duties| duties.get(&*duty_key(duty)))
            .into_iter()
            .flatten()
            .copied()
    }

    /// The duties `agent` performs in `group`, normalized, in name order.
    pub fn duties_of(&self, group: &str, agent: AgentId) -> impl Iterator<Item = &str> + '_ {
        let mut duties: Vec<&str> = self
            .groups
            .get(group)
            .into_iter()
            .flatten()
            .filter(|(_, agents)| agents.contains(&agent))
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
        self.groups.keys().map(String::as_str)
    }

    /// How many (group, duty, agent) records there are.
    pub fn len(&self) -> usize {
        self.groups
            .values()
            .flat_map(|duties| duties.values())
            .map(BTreeSet::len)
            .sum()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}
