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
/// rule compares them. The host forgets a group once it is over, which keeps the log
/// small; the [`Coordinator`](crate::coordinator::Coordinator) records only the
/// duties its policies read
/// ([`PolicyEnforcer::reads_duty`](super::PolicyEnforcer::reads_duty)).
///
/// A record is lasting ([`record`](Self::record): the agent performed the duty) or
/// held by attempts in progress ([`record_running`](Self::record_running)), each
/// ended by [`end_running`](Self::end_running): with an outcome it becomes lasting,
/// as a success or as a failure, and an attempt that ended without one (interrupted
/// by a restart, handed back when its agent left service, its run cancelled) takes
/// its record away again, as that agent never did the duty. Without that, an attempt
/// moved to another agent would leave both agents counted as having done it, and
/// with two agents the other duty of the pair could never be placed. The coordinator
/// records each task it starts as running and ends it so. Whether a failed attempt
/// counts is the rule's to say
/// ([`SeparationOfDuties::counting_failed`](super::SeparationOfDuties::counting_failed));
/// [`record_of`](Self::record_of) tells the three apart.
///
/// Plain serde data, written in ascending order, so a log serializes the same way
/// every time. Duties within a group are hashed: recording and checking a duty cost
/// the same however many a long workflow run has.
///
/// ```
/// use concord::policy::{AttemptEnd, DutyLog, DutyRecord};
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
///
/// // An attempt in progress counts until it ends; one that ends without an outcome
/// // (interrupted, handed back) leaves no record.
/// log.record_running("run-8", "deploy", AgentId::new(1));
/// assert!(log.has_performed("run-8", "deploy", AgentId::new(1)));
/// log.end_running("run-8", "deploy", AgentId::new(1), AttemptEnd::Void);
/// assert!(!log.has_performed("run-8", "deploy", AgentId::new(1)));
/// log.record_running("run-8", "deploy", AgentId::new(2));
/// log.end_running("run-8", "deploy", AgentId::new(2), AttemptEnd::Failed);
/// assert_eq!(
///     log.record_of("run-8", "deploy", AgentId::new(2)),
///     Some(DutyRecord { in_progress: 0, succeeded: false, failed: true })
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "DutyLogData")]
pub struct DutyLog {
    /// group -> duty (normalized) -> agents. Names are shared: the coordinator
    /// records a step's kind and its run's id without copying them.
    groups: BTreeMap<Arc<str>, FxHashMap<Arc<str>, AgentMap<DutyRecord>>>,
}

/// What a [`DutyLog`] holds of one agent's duty in one group
/// ([`DutyLog::record_of`]): lasting, held by attempts in progress, or both. The log
/// keeps these themselves, so a look hands one out as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DutyRecord {
    /// Attempts in progress.
    pub in_progress: u32,
    /// The agent performed the duty: an attempt succeeded, or the host recorded it
    /// ([`DutyLog::record`]).
    pub succeeded: bool,
    /// An attempt of the duty by the agent failed.
    pub failed: bool,
}

impl DutyRecord {
    /// Whether anything is left of it.
    fn holds(self) -> bool {
        self.in_progress > 0 || self.succeeded || self.failed
    }
}

/// How an attempt [`DutyLog::record_running`] recorded ended
/// ([`DutyLog::end_running`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptEnd {
    /// The attempt succeeded: the agent performed the duty.
    Succeeded,
    /// The attempt failed: the agent acted, and may have changed what the other duty
    /// of a pair would look at. Separation of duties counts it as the duty done
    /// unless told not to
    /// ([`SeparationOfDuties::counting_failed`](super::SeparationOfDuties::counting_failed)).
    Failed,
    /// The attempt ended without an outcome (interrupted by a restart, handed back
    /// when its agent left service, its run cancelled): the agent did not do the
    /// duty.
    Void,
}

/// Per group and duty, in name order, a list of what the log writes of its agents.
type ByGroup<'a, T> = BTreeMap<&'a str, BTreeMap<&'a str, Vec<T>>>;

impl Serialize for DutyLog {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// Per group and duty, ascending, what `pick` makes of each agent's record,
        /// leaving out the agents it makes nothing of and the duties and groups left
        /// empty.
        fn sorted<T>(
            log: &DutyLog,
            pick: impl Fn(AgentId, DutyRecord) -> Option<T>,
        ) -> ByGroup<'_, T> {
            let mut out = BTreeMap::new();
            for (g, duties) in &log.groups {
                let mut by_duty = BTreeMap::new();
                for (d, agents) in duties {
                    let picked: Vec<T> = agents.iter().filter_map(|(a, r)| pick(a, *r)).collect();
                    if !picked.is_empty() {
                        by_duty.insert(&**d, picked);
                    }
                }
                if !by_duty.is_empty() {
                    out.insert(&**g, by_duty);
                }
            }
            out
        }
        #[derive(Serialize)]
        struct Sorted<'a> {
            groups: ByGroup<'a, AgentId>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            failed: ByGroup<'a, AgentId>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            running: ByGroup<'a, (AgentId, u32)>,
        }
        Sorted {
            groups: sorted(self, |a, r| r.succeeded.then_some(a)),
            failed: sorted(self, |a, r| r.failed.then_some(a)),
            running: sorted(self, |a, r| {
                (r.in_progress > 0).then_some((a, r.in_progress))
            }),
        }
        .serialize(serializer)
    }
}

/// The serialized form, normalized into a [`DutyLog`]: the duties performed by group
/// and duty, the failed attempts, and the attempts in progress with their counts. A
/// log written before failed attempts were kept apart has every lasting record in
/// `groups`, read as performed: what every setting of the rule counts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DutyLogData {
    #[serde(default)]
    groups: BTreeMap<String, BTreeMap<String, BTreeSet<AgentId>>>,
    #[serde(default)]
    failed: BTreeMap<String, BTreeMap<String, BTreeSet<AgentId>>>,
    #[serde(default)]
    running: BTreeMap<String, BTreeMap<String, Vec<(AgentId, u32)>>>,
}

impl From<DutyLogData> for DutyLog {
    fn from(data: DutyLogData) -> Self {
        let mut log = DutyLog::new();
        for (by_group, mark) in [
            (
                data.groups,
                DutyLog::record as fn(&mut DutyLog, &str, &str, AgentId) -> bool,
            ),
            (data.failed, DutyLog::record_failed),
        ] {
            for (group, duties) in by_group {
                for (duty, agents) in duties {
                    for agent in agents {
                        mark(&mut log, &group, &duty, agent);
                    }
                }
            }
        }
        for (group, duties) in data.running {
            for (duty, agents) in duties {
                for (agent, n) in agents.into_iter().filter(|(_, n)| *n > 0) {
                    log.record_owned(&group, &duty, agent, |r| {
                        r.in_progress = r.in_progress.saturating_add(n);
                    });
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

    /// Records that `agent` performed `duty` in `group`, lastingly. Returns whether
    /// the agent had no record of it before.
    ///
    /// Allocates only for a group or duty not seen before.
    pub fn record(&mut self, group: &str, duty: &str, agent: AgentId) -> bool {
        self.record_owned(group, duty, agent, |r| r.succeeded = true)
    }

    /// Records that `agent` attempted `duty` in `group` and failed, lastingly.
    /// Returns whether the agent had no record of it before.
    pub fn record_failed(&mut self, group: &str, duty: &str, agent: AgentId) -> bool {
        self.record_owned(group, duty, agent, |r| r.failed = true)
    }

    /// Records that `agent` started an attempt of `duty` in `group`: it counts as
    /// doing the duty until [`end_running`](Self::end_running) ends the attempt.
    /// Attempts are counted, so an agent with two at once keeps its record until
    /// both end. Returns whether the agent had no record of it before.
    pub fn record_running(&mut self, group: &str, duty: &str, agent: AgentId) -> bool {
        self.record_owned(group, duty, agent, start_attempt)
    }

    /// Ends an attempt of `duty` in `group` by `agent` that
    /// [`record_running`](Self::record_running) recorded. One that succeeded or
    /// failed leaves a lasting record of that outcome; one that ended without an
    /// outcome ([`AttemptEnd::Void`]: interrupted, handed back, cancelled) takes its
    /// part of the record away, and the agent keeps one only if it has an outcome
    /// from before or other attempts in progress. Returns whether the agent still
    /// has a record. An attempt never recorded changes nothing.
    pub fn end_running(
        &mut self,
        group: &str,
        duty: &str,
        agent: AgentId,
        end: AttemptEnd,
    ) -> bool {
        let key = duty_key(duty);
        let Some(duties) = self.groups.get_mut(group) else {
            return false;
        };
        let Some(agents) = duties.get_mut(&*key) else {
            return false;
        };
        let Some(record) = agents.get_mut(agent) else {
            return false;
        };
        record.in_progress = record.in_progress.saturating_sub(1);
        match end {
            AttemptEnd::Succeeded => record.succeeded = true,
            AttemptEnd::Failed => record.failed = true,
            AttemptEnd::Void => {}
        }
        if record.holds() {
            return true;
        }
        agents.remove(agent);
        if agents.is_empty() {
            duties.remove(&*key);
            if duties.is_empty() {
                self.groups.remove(group);
            }
        }
        false
    }

    /// [`record_running`](Self::record_running) with names the caller already
    /// shares: nothing is copied for a group or duty seen before, nor for a new duty
    /// already normalized.
    pub(crate) fn record_running_shared(
        &mut self,
        group: &Arc<str>,
        duty: &Arc<str>,
        agent: AgentId,
    ) -> bool {
        match duty_key(duty) {
            Cow::Borrowed(key) if key.len() == duty.len() => {
                self.record_key(group, || Arc::clone(duty), key, agent, start_attempt)
            }
            key => self.record_key(group, || Arc::from(&*key), &key, agent, start_attempt),
        }
    }

    /// [`record`](Self::record) and [`record_running`](Self::record_running), with
    /// names the log copies if it has no such group or duty yet.
    fn record_owned(
        &mut self,
        group: &str,
        duty: &str,
        agent: AgentId,
        mark: impl FnOnce(&mut DutyRecord),
    ) -> bool {
        let group = match self.shared_group(group) {
            Some(shared) => Arc::clone(shared),
            None => Arc::from(group),
        };
        let key = duty_key(duty);
        self.record_key(&group, || Arc::from(&*key), &key, agent, mark)
    }

    /// Marks `agent`'s record under the normalized duty `key` (made by `make_key`
    /// only if the group has no such duty yet) with `mark`; whether it is new.
    fn record_key(
        &mut self,
        group: &Arc<str>,
        make_key: impl FnOnce() -> Arc<str>,
        key: &str,
        agent: AgentId,
        mark: impl FnOnce(&mut DutyRecord),
    ) -> bool {
        let duties = match self.groups.get_mut(&**group) {
            Some(duties) => duties,
            None => self.groups.entry(Arc::clone(group)).or_default(),
        };
        match duties.get_mut(key) {
            Some(agents) => {
                let (record, new) = agents.get_or_insert(agent, DutyRecord::default());
                mark(record);
                new
            }
            None => {
                let mut record = DutyRecord::default();
                mark(&mut record);
                duties.insert(make_key(), AgentMap::one(agent, record));
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

    /// Whether `agent` has any record of `duty` in `group`: it performed it, an
    /// attempt of it failed, or one is in progress.
    pub fn has_performed(&self, group: &str, duty: &str, agent: AgentId) -> bool {
        self.groups
            .get(group)
            .and_then(|duties| duties.get(&*duty_key(duty)))
            .is_some_and(|agents| agents.contains(agent))
    }

    /// What the log holds of `agent`'s `duty` in `group`, if anything.
    pub fn record_of(&self, group: &str, duty: &str, agent: AgentId) -> Option<DutyRecord> {
        self.groups
            .get(group)?
            .get(&*duty_key(duty))?
            .get(agent)
            .copied()
    }

    /// Whether `agent` has an attempt of any duty in progress in `group`: until it
    /// ends, what the log says of the agent there may still change (the attempt may
    /// succeed, fail, or come to nothing).
    ///
    /// ```
    /// use concord::policy::{AttemptEnd, DutyLog};
    /// use concord::AgentId;
    ///
    /// let mut log = DutyLog::default();
    /// log.record_running("run-8", "deploy", AgentId::new(1));
    /// assert!(log.is_running("run-8", AgentId::new(1)));
    /// assert!(!log.is_running("run-9", AgentId::new(1)));
    /// log.end_running("run-8", "deploy", AgentId::new(1), AttemptEnd::Void);
    /// assert!(!log.is_running("run-8", AgentId::new(1)));
    /// ```
    pub fn is_running(&self, group: &str, agent: AgentId) -> bool {
        let Some(duties) = self.groups.get(group) else {
            return false;
        };
        (duties.values()).any(|agents| agents.get(agent).is_some_and(|r| r.in_progress > 0))
    }

    /// Every record with attempts in progress, as (group, duty (normalized), agent,
    /// attempts): what a restored coordinator checks against its running tasks.
    pub(crate) fn in_progress(&self) -> impl Iterator<Item = (&str, &str, AgentId, u32)> + '_ {
        self.groups.iter().flat_map(|(group, duties)| {
            duties.iter().flat_map(move |(duty, agents)| {
                (agents.iter())
                    .filter(|(_, r)| r.in_progress > 0)
                    .map(move |(agent, r)| (&**group, &**duty, agent, r.in_progress))
            })
        })
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

    /// How many (group, duty, agent) records there are, lasting or in progress.
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

/// Counts one more attempt in progress.
fn start_attempt(record: &mut DutyRecord) {
    record.in_progress = record.in_progress.saturating_add(1);
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

        /// Lasting records and attempts in progress, against a model that counts
        /// each (group, duty, agent)'s attempts and whether it succeeded or failed:
        /// an agent has a record while it has any, and what the log writes reads
        /// back the same.
        #[test]
        fn records_and_attempts_follow_the_model(
            ops in proptest::collection::vec((0..6u8, 0..2usize, 0..3usize, 1..4u64), 0..40),
        ) {
            const GROUPS: [&str; 2] = ["run-1", "run-2"];
            const DUTIES: [&str; 3] = ["deploy", "Deploy ", "verify"];
            let mut log = DutyLog::new();
            let mut model: BTreeMap<(usize, String, u64), DutyRecord> = BTreeMap::new();
            let holds = |r: &DutyRecord| r.holds();
            for (op, g, d, a) in ops {
                let (group, duty, agent) = (GROUPS[g], DUTIES[d], AgentId::new(a));
                let key = (g, duty.trim().to_ascii_lowercase(), a);
                let had = model.get(&key).is_some_and(holds);
                match op {
                    0 => {
                        prop_assert_eq!(log.record(group, duty, agent), !had);
                        model.entry(key).or_default().succeeded = true;
                    }
                    1 => {
                        prop_assert_eq!(log.record_running(group, duty, agent), !had);
                        model.entry(key).or_default().in_progress += 1;
                    }
                    2 => {
                        prop_assert_eq!(log.record_failed(group, duty, agent), !had);
                        model.entry(key).or_default().failed = true;
                    }
                    _ => {
                        let end = [AttemptEnd::Succeeded, AttemptEnd::Failed, AttemptEnd::Void]
                            [usize::from(op - 3)];
                        if let Some(r) = model.get_mut(&key) {
                            r.in_progress = r.in_progress.saturating_sub(1);
                            r.succeeded |= end == AttemptEnd::Succeeded;
                            r.failed |= end == AttemptEnd::Failed;
                        }
                        let kept = model.get(&key).is_some_and(holds);
                        prop_assert_eq!(log.end_running(group, duty, agent, end), kept);
                    }
                }
                model.retain(|_, r| holds(r));
                for (g, group) in GROUPS.iter().enumerate() {
                    for duty in ["deploy", "verify"] {
                        for a in 1..4 {
                            let want = model.get(&(g, duty.to_owned(), a)).copied();
                            prop_assert_eq!(log.record_of(group, duty, AgentId::new(a)), want);
                            prop_assert_eq!(
                                log.has_performed(group, duty, AgentId::new(a)),
                                want.is_some()
                            );
                        }
                    }
                }
                prop_assert_eq!(log.len(), model.len());
                prop_assert_eq!(log.is_empty(), model.is_empty());
            }
            let json = serde_json::to_string(&log).unwrap();
            prop_assert_eq!(&serde_json::from_str::<DutyLog>(&json).unwrap(), &log);
        }
    }
}
