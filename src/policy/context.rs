//! [`PolicyContext`]: what rules may look at, and the [`SystemMode`].

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{DutyLog, Proposal};
use crate::agent::{AgentRegistry, AgentView};
use crate::clock::Timestamp;
use crate::hash::FxHashMap;
use crate::id::{AgentId, TaskId};
use crate::resource::{ResourceLedger, ResourceName, Resources};
use crate::task::{KeptShares, Task};

/// The mode the whole system is in: safe mode of the system-wide agent
/// failure procedure (activate safe mode, stop new task assignments, recover, exit safe
/// mode).
///
/// ```
/// use concord::policy::SystemMode;
///
/// assert_eq!(SystemMode::default(), SystemMode::Normal);
/// assert!(!SystemMode::SafeMode.admits_new_assignments());
/// assert_eq!(SystemMode::SafeMode.to_string(), "safe_mode");
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SystemMode {
    /// Everything runs; new work is assigned.
    #[default]
    Normal,
    /// A global stop: no new work is assigned, running work is preserved.
    SafeMode,
    /// Leaving safe mode: agents are restarted incrementally and recovery is
    /// validated; only recovery work is assigned.
    Recovery,
}

impl SystemMode {
    /// Every mode, in declaration order.
    pub const ALL: [SystemMode; 3] = [
        SystemMode::Normal,
        SystemMode::SafeMode,
        SystemMode::Recovery,
    ];

    /// Whether ordinary new work may be assigned: only in [`Normal`](Self::Normal).
    pub const fn admits_new_assignments(self) -> bool {
        matches!(self, SystemMode::Normal)
    }

    /// The mode's name, as serialized (`normal`, `safe_mode`, `recovery`).
    pub const fn as_str(self) -> &'static str {
        match self {
            SystemMode::Normal => "normal",
            SystemMode::SafeMode => "safe_mode",
            SystemMode::Recovery => "recovery",
        }
    }
}

impl fmt::Display for SystemMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

static NO_DUTIES: DutyLog = DutyLog::new();

/// What a batch's accepted proposals load one agent with: how many tasks, and the
/// sum of each resource (exact: in `u128`, as the rules add them).
#[derive(Debug, Default)]
pub(crate) struct PendingLoad {
    tasks: u32,
    amounts: Vec<(ResourceName, u128)>,
}

impl PendingLoad {
    fn amount(&self, resource: &ResourceName) -> u128 {
        self.amounts
            .iter()
            .find(|(r, _)| r == resource)
            .map_or(0, |&(_, n)| n)
    }

    /// Adds (`sign` true) or takes away what `p` asks for.
    fn count(&mut self, p: &Proposal, add: bool) {
        if add {
            self.tasks += 1;
        } else {
            self.tasks = self.tasks.saturating_sub(1);
        }
        for (resource, v) in p.resources().iter() {
            let v = u128::from(v);
            match self.amounts.iter_mut().find(|(r, _)| *r == resource) {
                Some((_, n)) if add => *n += v,
                Some((_, n)) => *n = n.saturating_sub(v),
                None if add => self.amounts.push((resource, v)),
                None => {}
            }
        }
    }
}

/// The proposals of a batch's placements so far, in the order accepted, with what
/// they load each agent with: what the coordinator's admission asks the policies
/// about, kept between batches for its capacity.
///
/// A proposal stays in the list once accepted (a refused one is retracted); it is
/// counted into the load when the next proposal is made, the first time a rule could
/// read it. A one-task batch (every step of a chain) so counts nothing.
#[derive(Debug, Default)]
pub(crate) struct PendingBatch {
    /// The accepted proposals are the first `len`; those after them are kept from
    /// earlier batches and written over by the next proposals (their names and
    /// lists are reused, where a new proposal cloned them).
    proposals: Vec<Proposal>,
    len: usize,
    /// How many of `proposals`, from the first, `load` counts.
    counted: usize,
    load: FxHashMap<AgentId, PendingLoad>,
    /// The requirement lists the proposals were written over, to be taken back.
    kept_shares: KeptShares,
}

impl PendingBatch {
    /// Keeps the first `n` accepted proposals (an assigner took the others back).
    pub(crate) fn truncate(&mut self, n: usize) {
        while self.len > n {
            self.len -= 1;
            if self.len < self.counted {
                self.counted -= 1;
                let p = &self.proposals[self.len];
                if let Some(load) = self.load.get_mut(&p.agent()) {
                    load.count(p, false);
                }
            }
        }
    }

    /// Empties the batch, keeping the storage.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.counted = 0;
        if !self.load.is_empty() {
            self.load.clear();
        }
    }

    /// Adds the proposal of `task` to `agent` in `group` (see
    /// [`Proposal::for_admission`]) to be checked against the accepted ones before it
    /// (now counted); it stays accepted unless [`retract_last`](Self::retract_last)
    /// takes it back.
    pub(crate) fn propose(&mut self, task: &Task, agent: AgentId, group: Option<&Arc<str>>) {
        for q in &self.proposals[self.counted..self.len] {
            self.load.entry(q.agent()).or_default().count(q, true);
        }
        self.counted = self.len;
        match self.proposals.get_mut(self.len) {
            Some(kept) => kept.refill_for_admission(task, agent, group, &mut self.kept_shares),
            None => self
                .proposals
                .push(Proposal::for_admission(task, agent, group.cloned())),
        }
        self.len += 1;
    }

    /// The proposal being checked, and the accepted ones before it.
    pub(crate) fn split_last(&self) -> Option<(&Proposal, &[Proposal])> {
        self.proposals[..self.len].split_last()
    }

    /// Takes back the proposal being checked (refused).
    pub(crate) fn retract_last(&mut self) {
        self.len = self.len.saturating_sub(1);
    }
}

/// What a [`PolicyEnforcer`](super::PolicyEnforcer) may look at when it validates a
/// [`Proposal`]: borrowed, read-only views of the coordinator's state.
///
/// - the [`AgentRegistry`]: agents' status, profile, running tasks and slots;
/// - the [`ResourceLedger`]: agents' capacity and what they hold;
/// - the [`SystemMode`] (default [`Normal`](SystemMode::Normal));
/// - the [`DutyLog`] of duties done so far (default empty);
/// - the proposals accepted earlier in the same batch (default none), which the
///   registry and ledger do not show yet: rules count them as if they had started;
/// - the current time, if the caller gives it (no built-in rule needs it; host rules
///   about time windows or deadlines do, and must not read a clock themselves);
/// - resources the ledger shows as held that count as free (default none): a grant the
///   ledger has already made for the very proposal being validated, as when the
///   coordinator checks a queued task it has just been granted resources for. Rules
///   read holdings through [`allocated`](Self::allocated), which takes them off.
///
/// Cheap to copy. Validating a batch means accepting proposals one at a time and
/// handing the accepted ones to the next call:
///
/// ```
/// use concord::agent::{AgentProfile, AgentRegistry};
/// use concord::policy::{PolicyContext, PolicyEnforcerExt, PolicySet, Proposal};
/// use concord::{AgentId, ResourceLedger, TaskId, Timestamp};
///
/// let agent = AgentId::new(1);
/// let mut registry = AgentRegistry::new();
/// registry.register(AgentProfile::new(agent, "ops").with_max_tasks(2), Timestamp::EPOCH)?;
/// let ledger = ResourceLedger::new();
///
/// let policies = PolicySet::default();
/// let mut accepted = Vec::new();
/// for task in 1..=3 {
///     let proposal = Proposal::new(TaskId::new(task), "build", agent);
///     let ctx = PolicyContext::new(&registry, &ledger).with_pending(&accepted);
///     if policies.permits(&proposal, &ctx) {
///         accepted.push(proposal);
///     }
/// }
/// // Two slots: the third task is refused.
/// assert_eq!(accepted.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PolicyContext<'a> {
    registry: &'a AgentRegistry,
    ledger: &'a ResourceLedger,
    mode: SystemMode,
    duties: &'a DutyLog,
    pending: &'a [Proposal],
    /// What `pending` loads each agent with, when the caller keeps count (the
    /// coordinator does): the slot and utilization rules read it instead of going
    /// through the list for every candidate, which made a big batch quadratic.
    pending_load: Option<&'a FxHashMap<AgentId, PendingLoad>>,
    now: Option<Timestamp>,
    released: Option<(AgentId, &'a Resources)>,
    /// The proposal (task and agent) whose agent passed the assigner's filters (see
    /// [`Admission::admit_filtered`](crate::assignment::Admission::admit_filtered)):
    /// the built-in rules that check only those are known to pass for it. Named, so
    /// that a host rule checking another proposal with this context skips nothing.
    filtered: Option<(TaskId, AgentId)>,
}

impl<'a> PolicyContext<'a> {
    /// A context over `registry` and `ledger`, in normal mode, with no duty history and
    /// nothing pending.
    pub fn new(registry: &'a AgentRegistry, ledger: &'a ResourceLedger) -> Self {
        PolicyContext {
            registry,
            ledger,
            mode: SystemMode::Normal,
            duties: &NO_DUTIES,
            pending: &[],
            pending_load: None,
            now: None,
            released: None,
            filtered: None,
        }
    }

    /// Sets the system mode.
    pub fn with_mode(mut self, mode: SystemMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the duty history.
    pub fn with_duties(mut self, duties: &'a DutyLog) -> Self {
        self.duties = duties;
        self
    }

    /// Sets the proposals accepted earlier in the same batch.
    pub fn with_pending(mut self, pending: &'a [Proposal]) -> Self {
        self.pending = pending;
        self.pending_load = None;
        self
    }

    /// Sets the current time.
    pub fn with_now(mut self, now: Timestamp) -> Self {
        self.now = Some(now);
        self
    }

    /// Counts `resources` that `agent` holds in the ledger as free: the check then sees
    /// the ledger as it was before a grant it has already made for the proposal (the
    /// coordinator validating a queued task it was just granted capacity for), without
    /// copying or changing the ledger. [`allocated`](Self::allocated) takes them off;
    /// [`ledger`](Self::ledger) still shows them held.
    ///
    /// ```
    /// use concord::agent::{AgentProfile, AgentRegistry};
    /// use concord::policy::{PolicyContext, PolicyEnforcerExt, PolicySet, Proposal};
    /// use concord::{AgentId, AllocationRequest, ResourceLedger, Resources, TaskId, Timestamp};
    ///
    /// let (agent, now) = (AgentId::new(1), Timestamp::EPOCH);
    /// let mut registry = AgentRegistry::new();
    /// registry.register(AgentProfile::new(agent, "ops"), now)?;
    /// let mut ledger = ResourceLedger::new();
    /// ledger.add_agent(agent, &"cpu=1".parse()?)?;
    /// let needs: Resources = "cpu=900m".parse()?;
    /// // The ledger already granted the task its 90%.
    /// let grant = ledger.try_allocate(&AllocationRequest::new(agent, needs.clone()), now)?;
    /// let held = ledger.allocation(grant.allocation).expect("live").resources;
    ///
    /// let proposal = Proposal::new(TaskId::new(1), "build", agent).with_resources(needs);
    /// let policies = PolicySet::default();
    /// // Counted twice (held, and asked for again): 180%, over the 95% cap.
    /// assert!(!policies.permits(&proposal, &PolicyContext::new(&registry, &ledger)));
    /// // Counted once.
    /// let ctx = PolicyContext::new(&registry, &ledger).with_released(agent, &held);
    /// assert!(policies.permits(&proposal, &ctx));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_released(mut self, agent: AgentId, resources: &'a Resources) -> Self {
        self.released = Some((agent, resources));
        self
    }

    /// The agent registry.
    pub fn registry(&self) -> &'a AgentRegistry {
        self.registry
    }

    /// The resource ledger, as it is: resources counted as released
    /// ([`with_released`](Self::with_released)) still show as held in it; read an
    /// agent's holdings through [`allocated`](Self::allocated).
    pub fn ledger(&self) -> &'a ResourceLedger {
        self.ledger
    }

    /// What `agent` holds in the ledger, less what is counted as released
    /// ([`with_released`](Self::with_released)); nothing for an agent not in the
    /// ledger.
    ///
    /// # Complexity
    /// `O(r)` for `r` kinds of resource the ledger tracks: no copy of the ledger.
    pub fn allocated(&self, agent: AgentId) -> Resources {
        let held = self.ledger.allocated(agent).unwrap_or_default();
        match self.released {
            Some((a, released)) if a == agent => held.saturating_sub(released),
            _ => held,
        }
    }

    /// What [`allocated`](Self::allocated) gives of `resource`, and `agent`'s
    /// capacity of it (0 for an agent not in the ledger), read without building
    /// either whole.
    pub(crate) fn capacity_and_allocated(
        &self,
        agent: AgentId,
        resource: &ResourceName,
    ) -> (u64, u64) {
        let (capacity, held) = self.ledger.amounts_of(agent, resource).unwrap_or((0, 0));
        match self.released {
            Some((a, released)) if a == agent => {
                (capacity, held.saturating_sub(released.get(resource)))
            }
            _ => (capacity, held),
        }
    }

    /// Whether [`allocated`](Self::allocated) is nothing for `agent`.
    pub(crate) fn holds_nothing(&self, agent: AgentId) -> bool {
        match self.released {
            Some((a, _)) if a == agent => self.allocated(agent).is_zero(),
            _ => self.ledger.holds_nothing(agent).unwrap_or(true),
        }
    }

    /// The resources counted as released, and their agent, if any.
    pub fn released(&self) -> Option<(AgentId, &'a Resources)> {
        self.released
    }

    /// The system mode.
    pub fn mode(&self) -> SystemMode {
        self.mode
    }

    /// The duty history.
    pub fn duties(&self) -> &'a DutyLog {
        self.duties
    }

    /// The proposals accepted earlier in the batch, as given.
    pub fn pending(&self) -> &'a [Proposal] {
        self.pending
    }

    /// The current time, if given.
    pub fn now(&self) -> Option<Timestamp> {
        self.now
    }

    /// The agent, if registered.
    pub fn agent(&self, agent: AgentId) -> Option<AgentView<'a>> {
        self.registry.get(agent)
    }

    /// [`with_pending`](Self::with_pending) for the proposals of `batch` before its
    /// last (the one being checked), with the load the batch keeps per agent.
    pub(crate) fn with_pending_batch(
        mut self,
        before: &'a [Proposal],
        batch: &'a PendingBatch,
    ) -> Self {
        self.pending = before;
        self.pending_load = Some(&batch.load);
        self
    }

    /// Marks `agent`, proposed for `task`, as one that passed the assigner's filters
    /// (see [`Admission::admit_filtered`](crate::assignment::Admission::admit_filtered)).
    pub(crate) fn with_filtered(mut self, task: TaskId, agent: AgentId) -> Self {
        self.filtered = Some((task, agent));
        self
    }

    /// Whether `proposal`'s agent passed the assigner's filters for it.
    pub(crate) fn filtered_for(&self, proposal: &Proposal) -> bool {
        self.filtered == Some((proposal.task(), proposal.agent()))
    }

    /// How many pending proposals would load the same agent as `proposal`: the
    /// count of [`pending_for`](Self::pending_for), in O(1) when the caller keeps
    /// count.
    pub(crate) fn pending_tasks_for(&self, proposal: &Proposal) -> usize {
        match self.pending_load {
            Some(load) => {
                let n = load.get(&proposal.agent()).map_or(0, |l| l.tasks as usize);
                debug_assert_eq!(n, self.pending_for(proposal).count());
                n
            }
            None => self.pending_for(proposal).count(),
        }
    }

    /// How much of `resource` the pending proposals of `proposal`'s agent would take:
    /// the sum over [`pending_for`](Self::pending_for), in O(resources) when the
    /// caller keeps count.
    pub(crate) fn pending_amount_for(&self, proposal: &Proposal, resource: &ResourceName) -> u128 {
        let listed = || {
            self.pending_for(proposal)
                .map(|p| u128::from(p.resources().get(resource)))
                .sum()
        };
        match self.pending_load {
            Some(load) => {
                let n = load
                    .get(&proposal.agent())
                    .map_or(0, |l| l.amount(resource));
                debug_assert_eq!(n, listed());
                n
            }
            None => listed(),
        }
    }

    /// The pending proposals that would load the same agent as `proposal`, in the
    /// order given. A pending entry for `proposal`'s own task is skipped, so passing
    /// a whole batch, the proposal itself included, counts it once.
    pub fn pending_for<'p>(
        &self,
        proposal: &'p Proposal,
    ) -> impl Iterator<Item = &'a Proposal> + use<'a, 'p> {
        self.pending
            .iter()
            .filter(move |p| p.agent() == proposal.agent() && p.task() != proposal.task())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::id::TaskId;

    #[derive(Debug, Clone)]
    enum Op {
        /// Kind, agent, in the group, refused (retracted at once).
        Propose(u64, u64, bool, bool),
        Truncate(usize),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..3, 0u64..3, any::<bool>(), proptest::bool::weighted(0.2))
                .prop_map(|(k, a, g, r)| Op::Propose(k, a, g, r)),
            1 => (0usize..6).prop_map(Op::Truncate),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// The batch (which keeps old proposals to write over) reads as the list of
        /// accepted proposals it stands for, and its load counts exactly the proposals
        /// before the last.
        #[test]
        fn a_pending_batch_is_its_list_of_proposals(ops in proptest::collection::vec(op(), 0..40)) {
            let kinds: [Arc<str>; 3] = ["a".into(), "b".into(), "a".into()];
            let group: Arc<str> = "run".into();
            let mut batch = PendingBatch::default();
            let mut model: Vec<Proposal> = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Propose(k, a, g, refused) => {
                        let task = Task::new(TaskId::new(i as u64), Arc::clone(&kinds[k as usize]), "t")
                            .with_requirements(crate::Requirements::new().with_resources(
                                format!("cpu={}", k + 1).parse().unwrap(),
                            ));
                        let agent = AgentId::new(a);
                        let group = g.then_some(&group);
                        batch.propose(&task, agent, group);
                        model.push(Proposal::for_admission(&task, agent, group.cloned()));
                        if refused {
                            batch.retract_last();
                            model.pop();
                        }
                    }
                    Op::Truncate(n) => {
                        batch.truncate(n);
                        model.truncate(n);
                    }
                    Op::Clear => {
                        batch.clear();
                        model.clear();
                    }
                }
                let (last, before) = match batch.split_last() {
                    Some((last, before)) => (Some(last), before),
                    None => (None, &[][..]),
                };
                prop_assert_eq!(last, model.last());
                prop_assert_eq!(before, &model[..model.len().saturating_sub(1)]);
                // What the load holds is what the proposals before the last ask for
                // (counted once a later proposal is made).
                for a in 0..3 {
                    let agent = AgentId::new(a);
                    let want = model[..batch.counted]
                        .iter()
                        .filter(|p| p.agent() == agent)
                        .count();
                    let got = batch.load.get(&agent).map_or(0, |l| l.tasks as usize);
                    prop_assert_eq!(got, want);
                }
            }
        }
    }

    /// A context marked for one proposal's filtered agent skips the rules the
    /// filters prove for that proposal only: a host rule that checks another agent
    /// with the same context gets every rule.
    #[test]
    fn a_filtered_mark_covers_its_own_proposal_only() {
        use crate::agent::AgentProfile;
        use crate::id::Role;
        use crate::policy::{PolicyEnforcer, PolicySet};
        use crate::task::Requirements;

        let qa = Role::new("qa").unwrap();
        let mut registry = AgentRegistry::new();
        let (one, two) = (AgentId::new(1), AgentId::new(2));
        registry
            .register(
                AgentProfile::new(one, "qa-1").with_role(qa.clone()),
                Timestamp::EPOCH,
            )
            .unwrap();
        registry
            .register(AgentProfile::new(two, "ops-1"), Timestamp::EPOCH)
            .unwrap();
        let ledger = ResourceLedger::new();
        let needs = Requirements::new().with_role(qa);
        let to =
            |agent| Proposal::new(TaskId::new(7), "check", agent).with_requirements(needs.clone());
        let ctx = PolicyContext::new(&registry, &ledger).with_filtered(TaskId::new(7), one);
        let policies = PolicySet::default();
        assert!(policies.validate(&to(one), &ctx).is_empty());
        let rules: Vec<String> = (policies.validate(&to(two), &ctx).iter())
            .map(|v| v.rule.to_string())
            .collect();
        assert_eq!(rules, ["role_and_capability"]);
    }
}
