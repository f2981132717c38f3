//! [`AgentRegistry`]: the agents a coordinator knows, their status and their free
//! task slots.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::capability::{CapabilityCatalog, CapabilitySet};
use super::error::RegistryError;
use super::profile::AgentProfile;
use super::status::AgentStatus;
use crate::clock::Timestamp;
use crate::id::{AgentId, Capability, Role};
use crate::layout::{ChangeLog, Layout};
use crate::resource::{ResourceName, Resources};
use crate::task::Requirements;

/// The agents a coordinator knows: their profiles, lifecycle status and task slots, and
/// which of them can take a task now (the coordination procedure's "check agent availability").
///
/// A sans-I/O state machine: every change is a method call with the current time, and
/// every failing call returns a [`RegistryError`] naming the offending value and leaves
/// the registry unchanged. Nothing panics on any input.
///
/// # Status and task slots
///
/// Status changes follow [`AgentStatus::can_transition_to`]. On top of that the
/// registry counts the tasks each agent runs against its
/// [`max_tasks`](AgentProfile::max_tasks) slots, with one invariant: **an agent whose
/// every slot is taken is never `available`**.
///
/// - [`task_started`](Self::task_started) needs an `available` agent (so a free slot);
///   it takes a slot and, when that was the last one, makes the agent `busy`.
/// - [`task_finished`](Self::task_finished) frees a slot in any status (an offline or
///   quarantined agent's tasks still end) and makes a `busy` agent `available`;
///   `unhealthy`, `quarantined` and `offline` stay as they are.
/// - [`set_status`](Self::set_status) never changes the slot count. Going to
///   `available` needs a free slot (else [`RegistryError::NoFreeSlot`]): an agent that
///   recovers while its tasks still fill its slots goes to `busy` instead. A host may
///   also make an agent with free slots `busy` to stop new work; that lasts until
///   `set_status(.., Available, ..)` or the agent's next `task_finished`.
/// - [`deregister`](Self::deregister) refuses an agent that still runs tasks.
///
/// # Layout
///
/// Agents are kept sorted by id in a struct of arrays: one column each for ids,
/// statuses, running counts, slots, role bitsets, capability bitsets and capacities,
/// with the full profiles in a column of their own that the hot path never touches.
/// Roles and capabilities are interned into two [`CapabilityCatalog`]s on
/// registration, so matching is a bitset comparison. Lookups by id are binary searches;
/// registering appends when ids arrive in ascending order and shifts the columns
/// otherwise (O(n)); iteration and [`available_agents`](Self::available_agents) are in
/// ascending id order, so results never depend on hashing.
///
/// ```
/// use concord::agent::{AgentProfile, AgentRegistry, AgentStatus};
/// use concord::{AgentId, Capability, Requirements, Role, Timestamp};
///
/// let now = Timestamp::from_secs(1);
/// let (ops, qa) = (AgentId::new(1), AgentId::new(2));
/// let mut registry = AgentRegistry::new();
/// registry.register(AgentProfile::new(ops, "ops").with_role(Role::new("ops")?), now)?;
/// registry.register(
///     AgentProfile::new(qa, "qa")
///         .with_role(Role::new("qa")?)
///         .with_capability(Capability::new("screenshot")?),
///     now,
/// )?;
///
/// let needs = Requirements::new().with_capability(Capability::new("screenshot")?);
/// assert_eq!(registry.available_agents(&needs), [qa]);
///
/// // Its only slot taken, the qa agent is busy and no longer offered work.
/// assert_eq!(registry.task_started(qa, now)?, AgentStatus::Busy);
/// assert!(registry.available_agents(&needs).is_empty());
/// assert_eq!(registry.utilization(qa)?, 1.0);
///
/// // Lifecycle changes outside the table are refused.
/// registry.set_status(ops, AgentStatus::Quarantined, now)?;
/// assert!(registry.set_status(ops, AgentStatus::Unhealthy, now).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct AgentRegistry {
    // Hot columns, read by `available_agents`; all the same length, sorted by id.
    ids: Vec<AgentId>,
    status: Vec<AgentStatus>,
    running: Vec<u32>,
    max_tasks: Vec<u32>,
    roles: Vec<CapabilitySet>,
    capabilities: Vec<CapabilitySet>,
    capacity: Vec<Option<Resources>>,
    // Cold columns.
    profiles: Vec<AgentProfile>,
    status_since: Vec<Timestamp>,
    registered_at: Vec<Timestamp>,
    /// Whether the host set the agent `busy` (a drain): it stays busy when a slot
    /// frees, until the host sets another status. False for an agent busy only
    /// because every slot is taken.
    held: Vec<bool>,
    /// Shared with the [`Fleet`](crate::assignment::Fleet)s compiled from this
    /// registry (copied only when a new name is interned while a fleet holds it).
    role_catalog: Arc<CapabilityCatalog>,
    capability_catalog: Arc<CapabilityCatalog>,
    /// Which agents with which roles, capabilities and capacities: changed on
    /// registering and deregistering, read by a fleet to skip rebuilding its columns.
    layout: Layout,
    /// The rows whose status or running count changed, read by a fleet to reread
    /// only those rows. Every change of either is recorded here: a change missed
    /// leaves a fleet offering a slot the registry refuses, or hiding one it has.
    changes: ChangeLog,
}

impl AgentRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many agents are registered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no agent is registered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `agent` is registered.
    pub fn contains(&self, agent: AgentId) -> bool {
        self.ids.binary_search(&agent).is_ok()
    }

    fn index(&self, agent: AgentId) -> Result<usize, RegistryError> {
        // Hosts mostly number their agents in a run (0, 1, 2, ... or from any
        // start): where the ids before `agent` are such a run, its offset from the
        // first id is its place, found without a search. Any other layout is
        // searched.
        if let Some(first) = self.ids.first() {
            let offset = agent.get().wrapping_sub(first.get());
            if let Some(&id) = usize::try_from(offset).ok().and_then(|o| self.ids.get(o)) {
                if id == agent {
                    return Ok(offset as usize);
                }
            }
        }
        self.ids
            .binary_search(&agent)
            .map_err(|_| RegistryError::UnknownAgent { agent })
    }

    /// Registers an agent, `available` with no task running, as of `now`.
    ///
    /// # Errors
    /// - [`RegistryError::DuplicateAgent`] if its id is taken.
    /// - [`RegistryError::InvalidProfile`] if it has no task slot (`max_tasks` 0), or
    ///   if its name is longer than [`MAX_LABEL_LEN`](crate::id::MAX_LABEL_LEN) bytes
    ///   or holds a control or invisible character.
    pub fn register(&mut self, profile: AgentProfile, now: Timestamp) -> Result<(), RegistryError> {
        let agent = profile.id();
        if let Some(reason) = profile_problem(&profile) {
            return Err(RegistryError::InvalidProfile { agent, reason });
        }
        let at = match self.ids.binary_search(&agent) {
            Ok(_) => return Err(RegistryError::DuplicateAgent { agent }),
            Err(at) => at,
        };
        self.insert_at(at, profile, AgentStatus::Available, 0, now, now);
        tracing::info!(agent.id = %agent, agent.status = %AgentStatus::Available, "agent registered");
        Ok(())
    }

    /// Inserts one agent at column position `at`, interning its names.
    fn insert_at(
        &mut self,
        at: usize,
        profile: AgentProfile,
        status: AgentStatus,
        running: u32,
        status_since: Timestamp,
        registered_at: Timestamp,
    ) {
        self.layout = Layout::fresh();
        let roles = Arc::make_mut(&mut self.role_catalog).intern_all(profile.roles());
        let capabilities =
            Arc::make_mut(&mut self.capability_catalog).intern_all(profile.capabilities());
        self.ids.insert(at, profile.id());
        self.status.insert(at, status);
        self.running.insert(at, running);
        self.max_tasks.insert(at, profile.max_tasks());
        self.roles.insert(at, roles);
        self.capabilities.insert(at, capabilities);
        self.capacity.insert(at, profile.capacity().cloned());
        self.profiles.insert(at, profile);
        self.status_since.insert(at, status_since);
        self.registered_at.insert(at, registered_at);
        self.held.insert(at, false);
    }

    /// Removes an agent and returns its profile. Its names stay in the catalogs (bits
    /// are never reused).
    ///
    /// # Errors
    /// - [`RegistryError::UnknownAgent`] if it is not registered.
    /// - [`RegistryError::AgentBusy`] if it still runs tasks: report them finished
    ///   first.
    pub fn deregister(&mut self, agent: AgentId) -> Result<AgentProfile, RegistryError> {
        let i = self.index(agent)?;
        let running = self.running[i];
        if running > 0 {
            return Err(RegistryError::AgentBusy { agent, running });
        }
        self.layout = Layout::fresh();
        self.ids.remove(i);
        self.status.remove(i);
        self.running.remove(i);
        self.max_tasks.remove(i);
        self.roles.remove(i);
        self.capabilities.remove(i);
        self.capacity.remove(i);
        self.status_since.remove(i);
        self.registered_at.remove(i);
        self.held.remove(i);
        let profile = self.profiles.remove(i);
        tracing::info!(agent.id = %agent, "agent deregistered");
        Ok(profile)
    }

    /// Changes the agent's declared capacity (scaled up or down, as its host says).
    /// The registry keeps no holdings to check it against: a coordinator changes its
    /// ledger first, which refuses a capacity below what the agent holds.
    ///
    /// # Errors
    /// [`RegistryError::UnknownAgent`] if it is not registered; nothing changes.
    pub fn set_capacity(
        &mut self,
        agent: AgentId,
        capacity: Resources,
    ) -> Result<(), RegistryError> {
        let i = self.index(agent)?;
        self.layout = Layout::fresh();
        self.profiles[i] = self.profiles[i].clone().with_capacity(capacity.clone());
        self.capacity[i] = Some(capacity);
        Ok(())
    }

    /// The agent, if registered.
    pub fn get(&self, agent: AgentId) -> Option<AgentView<'_>> {
        self.index(agent)
            .ok()
            .map(|i| AgentView { registry: self, i })
    }

    /// The agent's status.
    ///
    /// # Errors
    /// [`RegistryError::UnknownAgent`] if it is not registered.
    pub fn status(&self, agent: AgentId) -> Result<AgentStatus, RegistryError> {
        self.index(agent).map(|i| self.status[i])
    }

    /// Moves the agent to status `to` as of `now`, and returns the status it had.
    /// `busy` set here on an agent with a free slot is the host's (a drain): the
    /// agent stays busy when a slot frees, until the host sets another status
    /// ([`is_held_busy`](Self::is_held_busy)); set on an agent whose slots are all
    /// taken (one reconnecting with its tasks), it is busy from its slots, available
    /// again when one frees ([`hold_busy`](Self::hold_busy) holds it).
    ///
    /// # Errors
    /// - [`RegistryError::UnknownAgent`] if it is not registered.
    /// - [`RegistryError::IllegalTransition`] if the lifecycle does not allow the change
    ///   (see [`AgentStatus::can_transition_to`]; staying put is not a change).
    /// - [`RegistryError::NoFreeSlot`] if `to` is `available` but every slot is taken.
    pub fn set_status(
        &mut self,
        agent: AgentId,
        to: AgentStatus,
        now: Timestamp,
    ) -> Result<AgentStatus, RegistryError> {
        let i = self.index(agent)?;
        let from = self.status[i];
        if !from.can_transition_to(to) {
            return Err(RegistryError::IllegalTransition { agent, from, to });
        }
        let (running, max_tasks) = (self.running[i], self.max_tasks[i]);
        if to == AgentStatus::Available && running >= max_tasks {
            return Err(RegistryError::NoFreeSlot {
                agent,
                running,
                max_tasks,
            });
        }
        self.status[i] = to;
        self.status_since[i] = now;
        // Set busy by the host with a slot free: held so until the host says
        // otherwise. With every slot taken (an agent reconnecting with its tasks) it
        // is busy from its slots, and available again when one frees. A drained
        // agent that falls ill or is quarantined stays drained, so that whoever
        // brings it back (a health check, a driver started again after a crash, a
        // release from quarantine) brings it back to the drain, not to work: the
        // drain is the host's, not the illness's or the quarantine's.
        self.held[i] = (to == AgentStatus::Busy && running < max_tasks)
            || (matches!(to, AgentStatus::Unhealthy | AgentStatus::Quarantined) && self.held[i]);
        self.record_change(i);
        tracing::info!(agent.id = %agent, status.from = %from, status.to = %to, "agent status changed");
        Ok(from)
    }

    /// Brings the agent back into service as `available` would, except that an agent
    /// whose every slot is still taken (by work interrupted when it left service,
    /// which its driver has not yet stopped) comes back `busy` from its slots, and
    /// available once one frees, where [`set_status`](Self::set_status) would
    /// refuse. With `keep_drain` (a release from quarantine, which is not the host
    /// setting it available), an agent the host had drained before it left
    /// ([`is_drained`](Self::is_drained)) comes back `busy` and still held. Returns
    /// the status it had.
    ///
    /// # Errors
    /// As [`set_status`](Self::set_status) to `available`, but for the slots.
    pub(crate) fn return_to_service(
        &mut self,
        agent: AgentId,
        keep_drain: bool,
        now: Timestamp,
    ) -> Result<AgentStatus, RegistryError> {
        let i = self.index(agent)?;
        let drained = keep_drain && self.held[i];
        if self.running[i] < self.max_tasks[i] && !drained {
            return self.set_status(agent, AgentStatus::Available, now);
        }
        let from = self.status[i];
        if !from.can_transition_to(AgentStatus::Available) {
            return Err(RegistryError::IllegalTransition {
                agent,
                from,
                to: AgentStatus::Available,
            });
        }
        self.set_status_unchecked(i, AgentStatus::Busy, now);
        self.held[i] = drained;
        self.record_change(i);
        Ok(from)
    }

    /// Whether the host set the agent `busy` (with [`set_status`](Self::set_status) or
    /// [`hold_busy`](Self::hold_busy)): it then stays busy when a slot frees, until
    /// the host sets another status.
    ///
    /// # Errors
    /// [`RegistryError::UnknownAgent`] if it is not registered.
    pub fn is_held_busy(&self, agent: AgentId) -> Result<bool, RegistryError> {
        self.index(agent)
            .map(|i| self.held[i] && self.status[i] == AgentStatus::Busy)
    }

    /// Whether the agent is drained: held busy by the host
    /// ([`is_held_busy`](Self::is_held_busy)), or unhealthy or quarantined since it
    /// left service while so held. An unhealthy drained agent that is well again
    /// goes back to `busy`, held, not to work (the `Driver`'s health checks do
    /// this), and a quarantined one comes back so when its quarantine is released.
    ///
    /// # Errors
    /// [`RegistryError::UnknownAgent`] if it is not registered.
    pub fn is_drained(&self, agent: AgentId) -> Result<bool, RegistryError> {
        self.index(agent).map(|i| self.held[i])
    }

    /// Holds (`hold`) or lets go of a `busy` agent as the host's: held, it stays busy
    /// when a slot frees (a host draining an agent whose every slot is already
    /// taken); let go, it is busy only while every slot is taken, and available again
    /// when one frees (or at once, if one is free). Returns whether anything changed.
    ///
    /// # Errors
    /// - [`RegistryError::UnknownAgent`] if it is not registered.
    /// - [`RegistryError::IllegalTransition`] if it is not `busy` (to `busy`).
    pub fn hold_busy(
        &mut self,
        agent: AgentId,
        hold: bool,
        now: Timestamp,
    ) -> Result<bool, RegistryError> {
        let i = self.index(agent)?;
        let from = self.status[i];
        if from != AgentStatus::Busy {
            return Err(RegistryError::IllegalTransition {
                agent,
                from,
                to: AgentStatus::Busy,
            });
        }
        if self.held[i] == hold {
            return Ok(false);
        }
        self.held[i] = hold;
        if !hold && self.running[i] < self.max_tasks[i] {
            self.set_status_unchecked(i, AgentStatus::Available, now);
        }
        self.record_change(i);
        Ok(true)
    }

    /// Records that the agent started a task at `now`, and returns its status after:
    /// `busy` if that took its last free slot, else still `available`.
    ///
    /// # Errors
    /// - [`RegistryError::UnknownAgent`] if it is not registered.
    /// - [`RegistryError::NotAvailable`] if it is not `available`.
    /// - [`RegistryError::NoFreeSlot`] if every slot is taken (never for an
    ///   `available` agent; kept as a safeguard).
    pub fn task_started(
        &mut self,
        agent: AgentId,
        now: Timestamp,
    ) -> Result<AgentStatus, RegistryError> {
        let i = self.index(agent)?;
        let status = self.status[i];
        if status != AgentStatus::Available {
            return Err(RegistryError::NotAvailable { agent, status });
        }
        let (running, max_tasks) = (self.running[i], self.max_tasks[i]);
        if running >= max_tasks {
            return Err(RegistryError::NoFreeSlot {
                agent,
                running,
                max_tasks,
            });
        }
        let running = running + 1;
        self.running[i] = running;
        // Its status too, if that took its last slot (below): one entry for both.
        self.record_change(i);
        tracing::debug!(agent.id = %agent, agent.running = running, "task started");
        if running == max_tasks {
            self.set_status_unchecked(i, AgentStatus::Busy, now);
        }
        Ok(self.status[i])
    }

    /// Records that one of the agent's tasks finished at `now`, and returns its status
    /// after: a `busy` agent becomes `available`, unless the host set it busy (see
    /// [`is_held_busy`](Self::is_held_busy)); any other status is kept.
    ///
    /// # Errors
    /// - [`RegistryError::UnknownAgent`] if it is not registered.
    /// - [`RegistryError::NoRunningTask`] if it runs no task.
    pub fn task_finished(
        &mut self,
        agent: AgentId,
        now: Timestamp,
    ) -> Result<AgentStatus, RegistryError> {
        let i = self.index(agent)?;
        let running = self.running[i];
        if running == 0 {
            return Err(RegistryError::NoRunningTask { agent });
        }
        self.running[i] = running - 1;
        // Its status too, if it was busy (below): one entry for both.
        self.record_change(i);
        tracing::debug!(agent.id = %agent, agent.running = running - 1, "task finished");
        if self.status[i] == AgentStatus::Busy && !self.held[i] {
            self.set_status_unchecked(i, AgentStatus::Available, now);
        }
        Ok(self.status[i])
    }

    /// Records that row `i`'s status or running count changed.
    fn record_change(&mut self, i: usize) {
        // A log of an eighth of the rows (at least 64): trimming it costs as much
        // per entry as the entry, and a fleet that fell behind rereads its rows
        // once, which is what the entries it missed would have cost.
        let keep = (self.ids.len() / 8).max(64);
        self.changes.record(i, keep);
    }

    /// The automatic busy/available changes of slot accounting, already known legal.
    /// Its caller records the change.
    fn set_status_unchecked(&mut self, i: usize, to: AgentStatus, now: Timestamp) {
        let from = self.status[i];
        self.status[i] = to;
        self.status_since[i] = now;
        tracing::debug!(agent.id = %self.ids[i], status.from = %from, status.to = %to, "agent status changed");
    }

    /// The share of the agent's slots in use: running tasks over `max_tasks`, from 0.0
    /// to 1.0.
    ///
    /// # Errors
    /// [`RegistryError::UnknownAgent`] if it is not registered.
    pub fn utilization(&self, agent: AgentId) -> Result<f64, RegistryError> {
        self.index(agent)
            .map(|i| f64::from(self.running[i]) / f64::from(self.max_tasks[i]))
    }

    /// How many agents have `status`.
    pub fn count(&self, status: AgentStatus) -> usize {
        self.status.iter().filter(|s| **s == status).count()
    }

    /// Every agent, in ascending id order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = AgentView<'_>> + '_ {
        (0..self.ids.len()).map(move |i| AgentView { registry: self, i })
    }

    /// The registered ids, ascending.
    pub fn ids(&self) -> &[AgentId] {
        &self.ids
    }

    /// The catalog of role names.
    pub fn role_catalog(&self) -> &CapabilityCatalog {
        &self.role_catalog
    }

    /// The catalog of capability names.
    pub fn capability_catalog(&self) -> &CapabilityCatalog {
        &self.capability_catalog
    }

    /// The current layout (see [`Layout`]).
    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    /// Each agent's free slots, in id order, written into `out` (overwritten).
    pub(crate) fn free_slots_into(&self, out: &mut Vec<u32>) {
        out.clear();
        // One push per agent: fleets are small, and a vectorized loop's set-up
        // cost more than the agents it served.
        for (max, running) in self.max_tasks.iter().zip(&self.running) {
            out.push(max.saturating_sub(*running));
        }
    }

    /// Each agent's status, in id order.
    pub(crate) fn statuses(&self) -> &[AgentStatus] {
        &self.status
    }

    /// The rows (positions in id order) whose status or free slots changed, for a
    /// view that rereads only those: see [`usage_at`](Self::usage_at).
    pub(crate) fn changes(&self) -> &ChangeLog {
        &self.changes
    }

    /// The status and free slots of the agent at row `i` (position in id order), as
    /// [`statuses`](Self::statuses) and [`free_slots_into`](Self::free_slots_into)
    /// give them; `None` past the last row.
    pub(crate) fn usage_at(&self, i: usize) -> Option<(AgentStatus, u32)> {
        let status = *self.status.get(i)?;
        let free = self.max_tasks.get(i)?.saturating_sub(*self.running.get(i)?);
        Some((status, free))
    }

    /// Both catalogs, shared (a reference count each, no copy).
    pub(crate) fn shared_catalogs(&self) -> (Arc<CapabilityCatalog>, Arc<CapabilityCatalog>) {
        (
            Arc::clone(&self.role_catalog),
            Arc::clone(&self.capability_catalog),
        )
    }

    /// Translates `requirements` into bitsets against this registry's catalogs, for
    /// [`available_agents_into`](Self::available_agents_into).
    ///
    /// A requirement naming a role or capability no registered agent ever had matches
    /// nobody. The result reflects the catalogs as they are now: compile again after
    /// registering agents with new names.
    pub fn compile(&self, requirements: &Requirements) -> CompiledRequirements {
        let roles = self.role_catalog.lookup_all(requirements.roles());
        let capabilities = self
            .capability_catalog
            .lookup_all(requirements.capabilities());
        let resources =
            (!requirements.resources().is_zero()).then(|| requirements.resources().clone());
        match (roles, capabilities) {
            (Some(roles), Some(capabilities)) => CompiledRequirements {
                roles,
                capabilities,
                resources,
                satisfiable: true,
            },
            _ => CompiledRequirements {
                roles: CapabilitySet::new(),
                capabilities: CapabilitySet::new(),
                resources,
                satisfiable: false,
            },
        }
    }

    /// The agents that can take a task with `requirements` now, in ascending id order:
    /// `available` (so with a free slot), with every required role and capability, and
    /// a declared capacity (if any) that fits the required resources.
    ///
    /// # Complexity
    /// O(n) over the agents, a few word comparisons each; allocates the result. Use
    /// [`compile`](Self::compile) and
    /// [`available_agents_into`](Self::available_agents_into) to reuse both.
    pub fn available_agents(&self, requirements: &Requirements) -> Vec<AgentId> {
        let mut out = Vec::new();
        self.available_agents_into(&self.compile(requirements), &mut out);
        out
    }

    /// [`available_agents`](Self::available_agents) for requirements compiled by
    /// [`compile`](Self::compile) on this registry, written into `out` (cleared first).
    /// Does not allocate unless `out` must grow.
    pub fn available_agents_into(
        &self,
        requirements: &CompiledRequirements,
        out: &mut Vec<AgentId>,
    ) {
        out.clear();
        if !requirements.satisfiable {
            return;
        }
        let n = self.ids.len();
        // Slicing every column to `n` lets the compiler drop the bounds checks.
        let ids = &self.ids[..n];
        let status = &self.status[..n];
        let running = &self.running[..n];
        let max_tasks = &self.max_tasks[..n];
        let roles = &self.roles[..n];
        let capabilities = &self.capabilities[..n];
        let capacity = &self.capacity[..n];
        for i in 0..n {
            if status[i] == AgentStatus::Available
                && running[i] < max_tasks[i]
                && requirements.qualifies(&roles[i], &capabilities[i])
                && requirements
                    .resources
                    .as_ref()
                    .is_none_or(|need| capacity[i].as_ref().is_none_or(|cap| need.fits(cap)))
            {
                out.push(ids[i]);
            }
        }
    }

    /// Why `agent` is not among [`available_agents`](Self::available_agents) for
    /// `requirements`: every reason, status and slots first, then missing roles and
    /// capabilities in name order, then resources short. Empty when it is available.
    ///
    /// # Errors
    /// [`RegistryError::UnknownAgent`] if it is not registered.
    pub fn explain(
        &self,
        agent: AgentId,
        requirements: &Requirements,
    ) -> Result<Vec<Unfit>, RegistryError> {
        let i = self.index(agent)?;
        let profile = &self.profiles[i];
        let mut reasons = Vec::new();
        let status = self.status[i];
        if status != AgentStatus::Available {
            reasons.push(Unfit::Status { status });
        }
        let (running, max_tasks) = (self.running[i], self.max_tasks[i]);
        if running >= max_tasks {
            reasons.push(Unfit::NoFreeSlot { running, max_tasks });
        }
        reasons.extend(
            requirements
                .roles()
                .iter()
                .filter(|r| !profile.has_role(r))
                .map(|r| Unfit::MissingRole { role: r.clone() }),
        );
        reasons.extend(
            requirements
                .capabilities()
                .iter()
                .filter(|c| !profile.has_capability(c))
                .map(|c| Unfit::MissingCapability {
                    capability: c.clone(),
                }),
        );
        if let Some(cap) = profile.capacity() {
            reasons.extend(
                requirements
                    .resources()
                    .iter()
                    .filter_map(|(resource, needed)| {
                        let capacity = cap.get(&resource);
                        (needed > capacity).then_some(Unfit::Capacity {
                            resource,
                            needed,
                            capacity,
                        })
                    }),
            );
        }
        Ok(reasons)
    }

    /// A copy of the registry's state, for the host to store.
    pub fn snapshot(&self) -> RegistrySnapshot {
        RegistrySnapshot {
            version: RegistrySnapshot::VERSION,
            agents: self.iter().map(|a| a.record()).collect(),
        }
    }

    /// Rebuilds a registry from a snapshot, checking it first. Agents may come in any
    /// order. Catalog bits are given afresh, in id order.
    ///
    /// # Errors
    /// [`RegistryError::CorruptSnapshot`] if the version is unknown, an id appears
    /// twice, an agent has no slot, runs more tasks than it has slots, is
    /// `available` with every slot taken, or is drained by the host while neither
    /// `busy` nor `unhealthy`.
    pub fn restore(snapshot: RegistrySnapshot) -> Result<Self, RegistryError> {
        let corrupt = |reason: String| RegistryError::CorruptSnapshot { reason };
        if snapshot.version != RegistrySnapshot::VERSION {
            return Err(corrupt(format!(
                "unsupported version {} (expected {})",
                snapshot.version,
                RegistrySnapshot::VERSION
            )));
        }
        let mut agents = snapshot.agents;
        agents.sort_by_key(|a| a.profile.id());
        if let Some(w) = agents
            .windows(2)
            .find(|w| w[0].profile.id() == w[1].profile.id())
        {
            return Err(corrupt(format!("{} appears twice", w[0].profile.id())));
        }
        for a in &agents {
            let (id, max_tasks) = (a.profile.id(), a.profile.max_tasks());
            if let Some(reason) = profile_problem(&a.profile) {
                return Err(corrupt(format!("{id}: {reason}")));
            }
            if a.running > max_tasks {
                return Err(corrupt(format!(
                    "{id} runs {} tasks in {max_tasks} slots",
                    a.running
                )));
            }
            if a.status == AgentStatus::Available && a.running == max_tasks {
                return Err(corrupt(format!(
                    "{id} is available with all {max_tasks} slots taken"
                )));
            }
            let away = matches!(a.status, AgentStatus::Unhealthy | AgentStatus::Quarantined);
            if a.held && !(a.status == AgentStatus::Busy || away) {
                return Err(corrupt(format!(
                    "{id} is drained by the host but {}",
                    a.status
                )));
            }
        }
        let mut registry = AgentRegistry::new();
        for a in agents {
            let at = registry.ids.len();
            registry.insert_at(
                at,
                a.profile,
                a.status,
                a.running,
                a.status_since,
                a.registered_at,
            );
            registry.held[at] = a.held;
        }
        Ok(registry)
    }
}

/// Requirements translated into bitsets by [`AgentRegistry::compile`]: check them
/// against many agents without looking names up again.
///
/// Valid only for the registry that compiled them (bits mean nothing to another
/// catalog; using them elsewhere gives wrong answers, never a panic).
#[derive(Debug, Clone)]
pub struct CompiledRequirements {
    roles: CapabilitySet,
    capabilities: CapabilitySet,
    /// `None` when nothing is required.
    resources: Option<Resources>,
    /// False when a required name is unknown, so no agent can match.
    satisfiable: bool,
}

impl CompiledRequirements {
    /// Whether an agent with these role and capability bits could ever take the task:
    /// it plays every role and has every capability the task needs. The one rule
    /// every filter applies (the registry's, the assigners', the waiting queue's);
    /// status, slots and resources are each checked by their owner on top.
    #[inline]
    pub fn qualifies(&self, roles: &CapabilitySet, capabilities: &CapabilitySet) -> bool {
        self.satisfiable && qualifies(roles, capabilities, &self.roles, &self.capabilities)
    }

    /// Whether some agent could match: false when a required role or capability was
    /// unknown to the registry when compiled.
    pub fn is_satisfiable(&self) -> bool {
        self.satisfiable
    }

    /// The required roles as bits of the registry's role catalog.
    pub fn roles(&self) -> &CapabilitySet {
        &self.roles
    }

    /// The required capabilities as bits of the registry's capability catalog.
    pub fn capabilities(&self) -> &CapabilitySet {
        &self.capabilities
    }
}

/// One reason an agent cannot take a task now, from [`AgentRegistry::explain`].
///
/// ```
/// use concord::agent::{AgentStatus, Unfit};
/// use concord::Capability;
///
/// let why = Unfit::MissingCapability { capability: Capability::new("qa")? };
/// assert_eq!(why.to_string(), "lacks capability `qa`");
/// assert_eq!(Unfit::Status { status: AgentStatus::Offline }.to_string(), "is offline");
/// # Ok::<(), concord::NameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Unfit {
    /// The agent is not `available`.
    Status {
        /// Its status.
        status: AgentStatus,
    },
    /// Every slot is taken.
    NoFreeSlot {
        /// Tasks it runs.
        running: u32,
        /// Its slots.
        max_tasks: u32,
    },
    /// The agent does not play a required role.
    MissingRole {
        /// The role.
        role: Role,
    },
    /// The agent lacks a required capability.
    MissingCapability {
        /// The capability.
        capability: Capability,
    },
    /// The agent's declared capacity is smaller than a required resource.
    Capacity {
        /// The resource.
        resource: ResourceName,
        /// How much is required.
        needed: u64,
        /// How much the agent could ever hold.
        capacity: u64,
    },
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Status { status } => write!(f, "is {status}"),
            Unfit::NoFreeSlot { running, max_tasks } => {
                write!(f, "has no free slot ({running} of {max_tasks} running)")
            }
            Unfit::MissingRole { role } => write!(f, "lacks role `{role}`"),
            Unfit::MissingCapability { capability } => {
                write!(f, "lacks capability `{capability}`")
            }
            Unfit::Capacity {
                resource,
                needed,
                capacity,
            } => write!(
                f,
                "lacks {resource}: needs {}, holds at most {}",
                resource.format_amount(*needed),
                resource.format_amount(*capacity)
            ),
        }
    }
}

/// One registered agent, borrowed from an [`AgentRegistry`].
#[derive(Clone, Copy)]
pub struct AgentView<'a> {
    registry: &'a AgentRegistry,
    i: usize,
}

impl<'a> AgentView<'a> {
    /// The agent's id.
    pub fn id(&self) -> AgentId {
        self.registry.ids[self.i]
    }

    /// The agent's profile.
    pub fn profile(&self) -> &'a AgentProfile {
        &self.registry.profiles[self.i]
    }

    /// The agent's status.
    pub fn status(&self) -> AgentStatus {
        self.registry.status[self.i]
    }

    /// When the agent entered its status.
    pub fn status_since(&self) -> Timestamp {
        self.registry.status_since[self.i]
    }

    /// When the agent was registered.
    pub fn registered_at(&self) -> Timestamp {
        self.registry.registered_at[self.i]
    }

    /// How many tasks it runs.
    pub fn running(&self) -> u32 {
        self.registry.running[self.i]
    }

    /// How many tasks it may run at once.
    pub fn max_tasks(&self) -> u32 {
        self.registry.max_tasks[self.i]
    }

    /// How many more tasks it could run.
    pub fn free_slots(&self) -> u32 {
        self.max_tasks().saturating_sub(self.running())
    }

    /// Whether the host holds it busy, a drain
    /// ([`AgentRegistry::is_held_busy`]).
    pub fn is_held_busy(&self) -> bool {
        self.registry.held[self.i] && self.status() == AgentStatus::Busy
    }

    /// Whether it is drained: held busy, or unhealthy or quarantined since it left
    /// service while held ([`AgentRegistry::is_drained`]).
    pub fn is_drained(&self) -> bool {
        self.registry.held[self.i]
    }

    /// The share of its slots in use, from 0.0 to 1.0.
    pub fn utilization(&self) -> f64 {
        f64::from(self.running()) / f64::from(self.max_tasks())
    }

    /// Its roles as bits of the registry's [`role_catalog`](AgentRegistry::role_catalog).
    pub fn role_bits(&self) -> &'a CapabilitySet {
        &self.registry.roles[self.i]
    }

    /// Its capabilities as bits of the registry's
    /// [`capability_catalog`](AgentRegistry::capability_catalog).
    pub fn capability_bits(&self) -> &'a CapabilitySet {
        &self.registry.capabilities[self.i]
    }

    /// An owned copy of its state, as stored in a [`RegistrySnapshot`].
    pub fn record(&self) -> AgentRecord {
        AgentRecord {
            profile: self.profile().clone(),
            status: self.status(),
            running: self.running(),
            status_since: self.status_since(),
            registered_at: self.registered_at(),
            held: self.registry.held[self.i],
        }
    }
}

impl fmt::Debug for AgentView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentView")
            .field("id", &self.id())
            .field("status", &self.status())
            .field("running", &self.running())
            .field("max_tasks", &self.max_tasks())
            .finish()
    }
}

/// One agent's state in a [`RegistrySnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    profile: AgentProfile,
    status: AgentStatus,
    running: u32,
    status_since: Timestamp,
    registered_at: Timestamp,
    /// Whether the host drained it (absent: no): set it busy, and it is busy still
    /// or fell ill or was quarantined since.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    held: bool,
}

impl AgentRecord {
    /// The agent's profile.
    pub fn profile(&self) -> &AgentProfile {
        &self.profile
    }

    /// Its status.
    pub fn status(&self) -> AgentStatus {
        self.status
    }

    /// How many tasks it ran.
    pub fn running(&self) -> u32 {
        self.running
    }

    /// When it entered its status.
    pub fn status_since(&self) -> Timestamp {
        self.status_since
    }

    /// When it was registered.
    pub fn registered_at(&self) -> Timestamp {
        self.registered_at
    }

    /// Whether the host set it busy ([`AgentRegistry::is_held_busy`]).
    pub fn held_busy(&self) -> bool {
        self.held && self.status == AgentStatus::Busy
    }

    /// Whether it is drained ([`AgentRegistry::is_drained`]).
    pub fn is_drained(&self) -> bool {
        self.held
    }
}

/// The state of an [`AgentRegistry`], as serde data: agents in ascending id order.
///
/// Versioned: [`AgentRegistry::restore`] refuses a version it does not know.
///
/// ```
/// use concord::agent::{AgentProfile, AgentRegistry};
/// use concord::{AgentId, Timestamp};
///
/// let mut registry = AgentRegistry::new();
/// registry.register(AgentProfile::new(AgentId::new(1), "a"), Timestamp::EPOCH)?;
/// let snapshot = registry.snapshot();
/// let restored = AgentRegistry::restore(snapshot.clone())?;
/// assert_eq!(restored.snapshot(), snapshot);
/// # Ok::<(), concord::agent::RegistryError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySnapshot {
    version: u32,
    agents: Vec<AgentRecord>,
}

impl RegistrySnapshot {
    /// The version this crate writes and reads.
    pub const VERSION: u32 = 1;

    /// The snapshot's version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The agents, in ascending id order (when written by
    /// [`AgentRegistry::snapshot`]).
    pub fn agents(&self) -> &[AgentRecord] {
        &self.agents
    }
}

/// Whether an agent with `roles` and `capabilities` could ever take a task that needs
/// `need_roles` and `need_capabilities` (bits of the same catalogs): the rule behind
/// [`CompiledRequirements::qualifies`], shared with the assigners' own compiled tasks.
#[inline]
pub(crate) fn qualifies(
    roles: &CapabilitySet,
    capabilities: &CapabilitySet,
    need_roles: &CapabilitySet,
    need_capabilities: &CapabilitySet,
) -> bool {
    roles.is_superset(need_roles) && capabilities.is_superset(need_capabilities)
}

/// What makes `profile` one no registry takes, if anything.
fn profile_problem(profile: &AgentProfile) -> Option<String> {
    if profile.max_tasks() == 0 {
        return Some("max_tasks is 0, so it could never run a task".to_owned());
    }
    // An agent is named to the people who read its dashboard line, its alerts and
    // the audit log: a name of nothing (or of spaces) names it to nobody.
    if profile.name().trim().is_empty() {
        return Some(crate::id::NameError::Empty { kind: "agent" }.to_string());
    }
    crate::id::check_label("agent name", profile.name())
        .err()
        .map(|e| e.to_string())
}
