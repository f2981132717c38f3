//! The coordinator: the agent assignment procedure in one call, the conflicts it
//! meets and the escalation ladder that ends them, and the waiting tasks.
//!
//! Analyze the task ([`TaskAnalyzer`](crate::TaskAnalyzer), only when it does not
//! state its requirements) -> predict its needs
//! ([`ResourcePredictor`](crate::ResourcePredictor)) -> find the agents that can take
//! it -> pick the best ([`Assigner`](crate::assignment::Assigner)) -> validate it
//! ([`PolicyEnforcer`](crate::PolicyEnforcer), trying the next candidate on a
//! violation) -> allocate its resources -> return the assignment with its
//! explanation. A task that cannot start now waits: in the ledger's fair queue for
//! resources or a slot, behind a running task whose claim it collides with (while the
//! conflict climbs the escalation ladder), or held for normal mode in safe mode. It
//! is rejected only when no agent could ever take it.
//!
//! Two layers, in the manner of quinn-proto and governor:
//!
//! - [`Core`] is the sans-I/O state machine: `&mut self`, every command takes `now`,
//!   [`Core::poll_timeout`] says when it next needs [`Core::handle_timeout`], and
//!   every change is an [`Event`] (an envelope: sequence, time, [`EventKind`]).
//!   Simulations and hosts with their own loop drive it directly.
//! - [`Coordinator`] is the thread-safe facade: the core behind one lock, a
//!   clock for `now`, and the wakers of the drivers waiting on it.
//!   [`Driver`] ticks it on the host's timer, so escalations, lease expiries and
//!   reservations happen with no host loop.
//!
//! [`Core::snapshot`] is the checkpoint: with it and the events after it, a host
//! rebuilds the coordinator after a crash ([`CoordinatorBuilder::restore`]), open
//! conflicts and their deadlines included.
//!
//! This module sits above every domain module; only the workflow drivers
//! (`workflow::executor`, `workflow::runbooks`) and the crate root import it.

mod admission;
mod agents;
mod builder;
mod claims;
mod comms;
mod core;
mod driver;
mod emergency;
mod error;
mod event;
mod journal;
mod lifecycle;
mod queue;
mod snapshot;

pub use self::builder::CoordinatorBuilder;
pub use self::claims::OpenConflict;
pub use self::comms::{COMMUNICATIONS_GATE, CommunicationsStop, DEFAULT_EXTERNAL_CAPABILITIES};
pub use self::core::{Core, OnAgentLoss};
pub use self::driver::{Driver, Timed};
pub use self::emergency::{
    ExhaustionWindow, FailureWindow, MAX_RULE_WINDOW, OnQuarantine, RecentFailures, SafeModeRules,
    SafeModeTrigger,
};
pub use self::error::CoordinatorError;
pub use self::event::{AssignOutcome, Assignment, Decider, Event, EventKind, HandedBack, Notice};
pub use self::journal::{Command, Journal, JournalError, MemoryJournal, Record};
pub use self::queue::{Parked, WaitingTask};
pub use self::snapshot::CoordinatorSnapshot;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::agent::{AgentProfile, AgentRegistry, AgentStatus};
use crate::clock::{Clock, Timestamp};
use crate::conflict::{ConflictId, HumanDecision};
use crate::id::{AgentId, TaskId};
use crate::policy::SystemMode;
use crate::resource::{ResourceLedger, Resources};
use crate::task::Task;

/// The core and the wakers of the drivers waiting on it, behind the facade's lock.
struct Shared {
    core: Core,
    /// The driver waiting for notices of each watched group.
    group_wakers: BTreeMap<Arc<str>, Waker>,
    /// Drivers waiting for any change (a new deadline may have come).
    change_wakers: Vec<Waker>,
    /// How many times a host said something beside the core changed (see
    /// [`Coordinator::nudge`]).
    nudges: u64,
}

/// The thread-safe coordinator: a [`Core`] behind one lock, with a clock.
///
/// Every method reads the clock, takes the lock, runs the core's command with that
/// `now` and wakes the drivers the command concerns; no method awaits, so the lock is
/// never held across an `.await` and many tasks of a host's runtime can call it at
/// once. A clock that steps back (a wall clock corrected by NTP) is read as standing
/// still: the facade never hands the core a time earlier than one it has seen.
///
/// # Examples
/// ```
/// use concord::coordinator::{AssignOutcome, Coordinator};
/// use concord::{AgentId, AgentProfile, ManualClock, Role, Capability, Task, TaskId, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
/// let coordinator = Coordinator::builder().clock(clock.clone()).build();
/// coordinator.register_agent(
///     AgentProfile::new(AgentId::new(1), "qa-1")
///         .with_role(Role::new("qa")?)
///         .with_capability(Capability::new("screenshot")?)
///         .with_capacity("cpu=2,memory=4Gi".parse()?),
/// )?;
///
/// let task = Task::new(TaskId::new(7), "screenshot", "full-page screenshot of the deployment");
/// let outcome = coordinator.assign(task)?;
/// let assignment = outcome.assignment().expect("assigned");
/// assert_eq!(assignment.agent, AgentId::new(1));
/// println!("{}", assignment.explanation); // 1 of 1 agent fit; agent#1 won with ...
///
/// coordinator.complete(TaskId::new(7), true, None)?;
/// assert!(coordinator.drain_events().len() >= 3); // registered, assigned, completed
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Coordinator {
    clock: Arc<dyn Clock>,
    /// The latest time handed to the core (nanoseconds): read by `now` without the
    /// lock, so that a clock stepping back reads as standing still.
    seen: AtomicU64,
    shared: Mutex<Shared>,
    /// The next task id of the executors over this coordinator that were not given
    /// a range of their own: one sequence for all of them, so that a host making an
    /// executor per run never has two issue one id (0 until the first is made).
    executor_task_ids: Arc<AtomicU64>,
}

impl fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator")
            .field("clock", &self.clock)
            .field("core", &self.shared.lock().core)
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// A builder with every part defaulted.
    pub fn builder() -> CoordinatorBuilder {
        CoordinatorBuilder::default()
    }

    /// Wraps `core`, reading time from `clock`.
    pub fn from_core(core: Core, clock: Arc<dyn Clock>) -> Coordinator {
        let seen = AtomicU64::new(core.last_now().as_nanos());
        Coordinator {
            clock,
            seen,
            shared: Mutex::new(Shared {
                core,
                group_wakers: BTreeMap::new(),
                change_wakers: Vec::new(),
                nudges: 0,
            }),
            executor_task_ids: Arc::default(),
        }
    }

    /// The task id sequence shared by the executors over this coordinator.
    pub(crate) fn executor_task_ids(&self) -> &Arc<AtomicU64> {
        &self.executor_task_ids
    }

    /// Takes the core out (to drive it directly, or to drop the facade).
    pub fn into_core(self) -> Core {
        self.shared.into_inner().core
    }

    /// The current time by the coordinator's clock (never earlier than a time the
    /// core has seen).
    pub fn now(&self) -> Timestamp {
        let seen = Timestamp::from_nanos(self.seen.load(Ordering::Acquire));
        self.clock.now().max(seen)
    }

    /// Runs `f` on the core with the current time, then wakes whom it concerns.
    fn with<R>(&self, f: impl FnOnce(&mut Core, Timestamp) -> R) -> R {
        let now = self.clock.now();
        let mut shared = self.shared.lock();
        let now = now.max(shared.core.last_now());
        let before = shared.core.s.next_seq;
        let out = f(&mut shared.core, now);
        self.seen
            .store(shared.core.last_now().as_nanos(), Ordering::Release);
        let changed = shared.core.s.next_seq != before;
        // Most calls wake nobody: no list is made (and read back) for them.
        if shared.core.has_notified() || (changed && !shared.change_wakers.is_empty()) {
            let wake = Self::to_wake(&mut shared, changed);
            drop(shared);
            for w in wake {
                w.wake();
            }
        }
        out
    }

    /// The wakers of the drivers that a change concerns: those whose groups got
    /// notices, and, when anything changed, those waiting for a new deadline.
    fn to_wake(shared: &mut Shared, changed: bool) -> Vec<Waker> {
        let mut wake = Vec::new();
        if shared.core.has_notified() {
            for group in shared.core.take_notified() {
                if let Some(w) = shared.group_wakers.remove(&group) {
                    wake.push(w);
                }
            }
        }
        if changed && !shared.change_wakers.is_empty() {
            wake.append(&mut shared.change_wakers);
        }
        wake
    }

    /// Runs `f` on the core (read-only).
    pub fn with_core<R>(&self, f: impl FnOnce(&Core) -> R) -> R {
        f(&self.shared.lock().core)
    }

    /// What a resumed run reconciles with, under one lock: the running tasks, the
    /// waiting ones and the highest task id ever given, with the notices left for
    /// `group` until now dropped (this look holds what they say). A notice posted
    /// later is news; taken apart, one posted between the two would be acted on
    /// twice (a task started from the look, then released as not the run's when
    /// its `Started` came).
    pub(crate) fn resume_view(
        &self,
        group: &str,
    ) -> (Vec<Arc<Assignment>>, Vec<WaitingTask>, Option<TaskId>) {
        let mut shared = self.shared.lock();
        let core = &mut shared.core;
        core.take_notices(group, &mut Vec::new());
        (core.assignments(), core.waiting(), core.highest_task_id())
    }

    /// Registers an agent. See [`Core::register_agent`].
    ///
    /// # Errors
    /// As [`Core::register_agent`].
    pub fn register_agent(&self, profile: AgentProfile) -> Result<(), CoordinatorError> {
        self.with(|c, now| c.register_agent(profile, now))
    }

    /// Removes an agent for good. See [`Core::deregister_agent`].
    ///
    /// # Errors
    /// As [`Core::deregister_agent`].
    pub fn deregister_agent(&self, agent: AgentId) -> Result<AgentProfile, CoordinatorError> {
        self.with(|c, now| c.deregister_agent(agent, now))
    }

    /// Changes an agent's status; `false` when it already had it. See
    /// [`Core::set_agent_status`].
    ///
    /// # Errors
    /// As [`Core::set_agent_status`].
    pub fn set_agent_status(
        &self,
        agent: AgentId,
        status: AgentStatus,
    ) -> Result<bool, CoordinatorError> {
        self.with(|c, now| c.set_agent_status(agent, status, now))
    }

    /// Changes an agent's capacity, in the registry and the ledger together; returns
    /// the waiting tasks that started with it. See [`Core::set_agent_capacity`].
    ///
    /// # Errors
    /// As [`Core::set_agent_capacity`].
    pub fn set_agent_capacity(
        &self,
        agent: AgentId,
        capacity: Resources,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        self.with(|c, now| c.set_agent_capacity(agent, capacity, now))
    }

    /// Enters or leaves safe mode (or recovery); returns whether the mode changed.
    /// See [`Core::set_mode`].
    pub fn set_mode(&self, mode: SystemMode) -> bool {
        // The facade's `now` is never earlier than the core's: no error is possible.
        self.with(|c, now| c.set_mode(mode, now).unwrap_or(false))
    }

    /// Quarantines `agent`, keeping the evidence of what it held: see
    /// [`Core::quarantine`].
    ///
    /// # Errors
    /// As [`Core::quarantine`].
    pub fn quarantine(
        &self,
        agent: AgentId,
        reason: &str,
    ) -> Result<Vec<TaskId>, CoordinatorError> {
        self.with(|c, now| c.quarantine(agent, reason, now))
    }

    /// Releases `agent` from quarantine, as `by` decided: see
    /// [`Core::release_quarantine`].
    ///
    /// # Errors
    /// As [`Core::release_quarantine`].
    pub fn release_quarantine(
        &self,
        agent: AgentId,
        by: Decider,
        reason: &str,
    ) -> Result<Vec<TaskId>, CoordinatorError> {
        self.with(|c, now| c.release_quarantine(agent, by, reason, now))
    }

    /// Reports a security breach on `agents`: see [`Core::report_security_breach`].
    ///
    /// # Errors
    /// As [`Core::report_security_breach`].
    pub fn report_security_breach(
        &self,
        agents: &[AgentId],
        reason: &str,
    ) -> Result<Vec<TaskId>, CoordinatorError> {
        self.with(|c, now| c.report_security_breach(agents, reason, now))
    }

    /// Stops external communications: see [`Core::stop_communications`].
    pub fn stop_communications(&self, by: Decider, reason: &str) -> bool {
        // The facade's `now` is never earlier than the core's: no error is possible.
        self.with(|c, now| c.stop_communications(by, reason, now).unwrap_or(false))
    }

    /// Resumes external communications, as `by` decided: see
    /// [`Core::resume_communications`].
    ///
    /// # Errors
    /// As [`Core::resume_communications`].
    pub fn resume_communications(
        &self,
        by: Decider,
        reason: &str,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        self.with(|c, now| c.resume_communications(by, reason, now))
    }

    /// Whether external communications are stopped, since when and why.
    pub fn communications(&self) -> Option<CommunicationsStop> {
        self.shared.lock().core.communications().cloned()
    }

    /// The system mode.
    pub fn mode(&self) -> SystemMode {
        self.shared.lock().core.mode()
    }

    /// Assigns one task: the agent assignment procedure in one call.
    ///
    /// # Errors
    /// As [`Core::assign_batch`].
    pub fn assign(&self, task: Task) -> Result<AssignOutcome, CoordinatorError> {
        self.with(|c, now| c.assign_one(None, task, now))
    }

    /// Assigns one task as part of `group` (a workflow run), so separation of duties
    /// holds across the group's tasks. See [`Core::assign_in_group`].
    ///
    /// # Errors
    /// As [`Core::assign_batch`].
    pub fn assign_in_group(
        &self,
        group: &str,
        task: Task,
    ) -> Result<AssignOutcome, CoordinatorError> {
        self.with(|c, now| c.assign_one(Some(group), task, now))
    }

    /// Assigns a batch of tasks together. See [`Core::assign_batch`].
    ///
    /// # Errors
    /// As [`Core::assign_batch`]; then nothing changes.
    pub fn assign_batch(
        &self,
        group: Option<&str>,
        mut tasks: Vec<Task>,
    ) -> Result<Vec<AssignOutcome>, CoordinatorError> {
        core::check_group_named(group)?;
        let mut outcomes = Vec::with_capacity(tasks.len());
        self.assign_batch_into(group, &mut tasks, &mut outcomes, true)?;
        Ok(outcomes)
    }

    pub(crate) fn assign_batch_into(
        &self,
        group: Option<&str>,
        tasks: &mut [Task],
        outcomes: &mut Vec<AssignOutcome>,
        wait: bool,
    ) -> Result<(), CoordinatorError> {
        self.with(|c, now| c.assign_batch_into(group, tasks, outcomes, wait, now))
    }

    /// Records that `task` finished. See [`Core::complete`].
    ///
    /// # Errors
    /// As [`Core::complete`].
    pub fn complete(
        &self,
        task: TaskId,
        success: bool,
        usage: Option<Resources>,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        self.with(|c, now| c.complete(task, success, usage, now))
    }

    /// Withdraws a waiting task. See [`Core::cancel`].
    ///
    /// # Errors
    /// As [`Core::cancel`].
    pub fn cancel(&self, task: TaskId) -> Result<Task, CoordinatorError> {
        self.with(|c, now| c.cancel(task, now))
    }

    /// Records an orchestrator's or a human's answer to an open conflict. See
    /// [`Core::decide`].
    ///
    /// # Errors
    /// As [`Core::decide`].
    pub fn decide(
        &self,
        conflict: ConflictId,
        decision: HumanDecision,
        by: Decider,
    ) -> Result<(), CoordinatorError> {
        self.with(|c, now| c.decide(conflict, decision, by, now))
    }

    /// Lets time pass to the clock's now. See [`Core::handle_timeout`]; a [`Driver`]
    /// calls it when [`poll_timeout`](Self::poll_timeout) comes. A clock reading past
    /// [`Timestamp::HORIZON`] is a tick that does nothing (the core refuses the time,
    /// and keeps the one it had), so the next reading at the real time is taken.
    pub fn tick(&self) -> Vec<Arc<Assignment>> {
        self.with(|c, now| c.handle_timeout(now).unwrap_or_default())
    }

    /// When the coordinator next needs [`tick`](Self::tick). See
    /// [`Core::poll_timeout`].
    ///
    /// A later command may bring a nearer deadline (a new conflict's first rung): a
    /// host loop that sleeps until this time also waits on [`changed`](Self::changed)
    /// and asks again when it completes, or lets a [`Driver`] do both.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.shared.lock().core.poll_timeout()
    }

    /// The tasks running now, by task id.
    pub fn assignments(&self) -> Vec<Arc<Assignment>> {
        self.shared.lock().core.assignments()
    }

    /// The tasks waiting, in the order of their current requests. See
    /// [`Core::waiting`].
    pub fn waiting(&self) -> Vec<WaitingTask> {
        self.shared.lock().core.waiting()
    }

    /// How many tasks wait. See [`Core::waiting_count`].
    pub fn waiting_count(&self) -> usize {
        self.shared.lock().core.waiting_count()
    }

    /// How many tasks run. See [`Core::running_count`].
    pub fn running_count(&self) -> usize {
        self.shared.lock().core.running_count()
    }

    /// The open conflicts and where each stands on the escalation ladder.
    pub fn open_conflicts(&self) -> Vec<OpenConflict> {
        self.shared.lock().core.open_conflicts()
    }

    /// Forgets the conflicts that closed before `closed_before`. See
    /// [`Core::forget_closed_conflicts`].
    pub fn forget_closed_conflicts(&self, closed_before: Timestamp) -> usize {
        self.shared
            .lock()
            .core
            .forget_closed_conflicts(closed_before)
    }

    /// Forgets who did which duty in `group`. See [`Core::forget_group`].
    pub fn forget_group(&self, group: &str) -> bool {
        self.shared.lock().core.forget_group(group)
    }

    /// Forgets the group of a run that finished at `finished`, unless its id is in
    /// use again. See [`Core::forget_finished_group`].
    pub fn forget_finished_group(&self, group: &str, finished: Timestamp) -> bool {
        self.shared
            .lock()
            .core
            .forget_finished_group(group, finished)
    }

    /// Takes the events made since the last call, in order, for the host to journal.
    /// They are kept until drained: drain them even if you have no use for them
    /// (see [`Core::drain_events`]).
    pub fn drain_events(&self) -> Vec<Event> {
        self.shared.lock().core.drain_events()
    }

    /// Appends the events made since the last call to `out`. See
    /// [`Core::drain_events_into`].
    pub fn drain_events_into(&self, out: &mut Vec<Event>) {
        self.shared.lock().core.drain_events_into(out);
    }

    /// Runs `f` on the registry (read-only).
    pub fn with_registry<R>(&self, f: impl FnOnce(&AgentRegistry) -> R) -> R {
        f(self.shared.lock().core.registry())
    }

    /// Runs `f` on the ledger (read-only).
    pub fn with_ledger<R>(&self, f: impl FnOnce(&ResourceLedger) -> R) -> R {
        f(self.shared.lock().core.ledger())
    }

    /// The checkpoint. See [`Core::snapshot`].
    pub fn snapshot(&self) -> CoordinatorSnapshot {
        self.shared.lock().core.snapshot()
    }

    /// Appends the records made since the last call to `journal`. See
    /// [`Core::write_journal`]: call it before acknowledging a command to whoever
    /// asked for it. The lock is held while the journal writes, so records reach it
    /// in the order the commands ran.
    ///
    /// # Errors
    /// As [`Core::write_journal`].
    pub fn write_journal(&self, journal: &mut dyn Journal) -> Result<usize, JournalError> {
        self.shared.lock().core.write_journal(journal)
    }

    /// Writes the journal and stores a checkpoint in it. See [`Core::checkpoint`].
    ///
    /// # Errors
    /// As [`Core::checkpoint`].
    pub fn checkpoint(&self, journal: &mut dyn Journal) -> Result<(), JournalError> {
        self.shared.lock().core.checkpoint(journal)
    }

    /// Why no registered agent could ever take `task`, or `None` when one could.
    /// See [`Core::unplaceable`].
    ///
    /// # Errors
    /// As [`Core::unplaceable`].
    pub fn unplaceable(
        &self,
        task: &Task,
    ) -> Result<Option<crate::assignment::Explanation>, CoordinatorError> {
        self.shared.lock().core.unplaceable(task)
    }

    /// Why `task` waits, in words. See [`Core::why_waiting`].
    pub fn why_waiting(&self, task: TaskId) -> Option<String> {
        self.shared.lock().core.why_waiting(task)
    }

    /// Ends running `task` without an outcome. See [`Core::release`].
    ///
    /// # Errors
    /// As [`Core::release`].
    pub fn release(&self, task: TaskId) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        self.with(|core, now| core.release(task, now))
    }

    /// Hands back an interrupted task once its work has stopped. See
    /// [`Core::hand_back`].
    ///
    /// # Errors
    /// As [`Core::hand_back`].
    pub fn hand_back(&self, task: TaskId) -> Result<HandedBack, CoordinatorError> {
        self.with(|core, now| core.hand_back(task, now))
    }

    /// Declares that the caller drives `group`'s tasks and says when their work has
    /// stopped. See [`Core::drive`].
    ///
    /// # Errors
    /// As [`Core::drive`].
    pub fn drive(&self, group: &str) -> Result<bool, CoordinatorError> {
        self.shared.lock().core.drive(group)
    }

    /// Takes the notices left for `group` into `out`, without waiting. See
    /// [`Core::take_notices`].
    pub fn take_notices(&self, group: &str, out: &mut Vec<Notice>) {
        self.shared.lock().core.take_notices(group, out);
    }

    /// Starts watching `group`. See [`Core::watch`].
    pub fn watch(&self, group: &str) -> bool {
        self.shared.lock().core.watch(group)
    }

    /// Stops watching `group`. See [`Core::unwatch`].
    pub fn unwatch(&self, group: &str) {
        let mut shared = self.shared.lock();
        shared.core.unwatch(group);
        shared.group_wakers.remove(group);
    }

    /// Takes the notices of `group` into `out`; when there are none, remembers
    /// `cx`'s waker, to be woken when there are. Ready when `out` got any.
    pub fn poll_notices(
        &self,
        group: &str,
        cx: &mut Context<'_>,
        out: &mut Vec<Notice>,
    ) -> Poll<()> {
        let mut shared = self.shared.lock();
        let before = out.len();
        shared.core.take_notices(group, out);
        if out.len() > before {
            return Poll::Ready(());
        }
        match shared.group_wakers.get_mut(group) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => w.clone_from(cx.waker()),
            None => {
                shared
                    .group_wakers
                    .insert(Arc::from(group), cx.waker().clone());
            }
        }
        Poll::Pending
    }

    /// Remembers `cx`'s waker, to be woken at the next change (a deadline may have
    /// come): what [`Driver`] waits on between deadlines.
    pub(crate) fn wake_on_change(&self, cx: &mut Context<'_>) {
        let mut shared = self.shared.lock();
        if !shared.change_wakers.iter().any(|w| w.will_wake(cx.waker())) {
            shared.change_wakers.push(cx.waker().clone());
        }
    }

    /// A counter that moves at every change: the next event's sequence number, plus
    /// the nudges.
    pub(crate) fn change_count(&self) -> u64 {
        let shared = self.shared.lock();
        shared.core.s.next_seq + shared.nudges
    }

    /// Completes at the coordinator's first change after this call: a command that
    /// made an event, or a [`nudge`](Self::nudge). What a host's own tick loop waits
    /// on beside its sleep until [`poll_timeout`](Self::poll_timeout), so that a
    /// nearer deadline a command brings (a new conflict's first rung) is not slept
    /// through; a [`Driver`] does this already.
    ///
    /// ```
    /// # use concord::coordinator::Coordinator;
    /// # use concord::{AgentId, AgentProfile};
    /// # use futures::FutureExt;
    /// let coordinator = Coordinator::builder().build();
    /// let mut changed = Box::pin(coordinator.changed());
    /// assert!((&mut changed).now_or_never().is_none());
    /// coordinator.register_agent(AgentProfile::new(AgentId::new(1), "w1"))?;
    /// assert!(changed.now_or_never().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn changed(&self) -> impl Future<Output = ()> + Send + '_ {
        // The future `Driver` waits on between deadlines.
        driver::Changed {
            coordinator: self,
            seen: self.change_count(),
        }
    }

    /// Wakes the drivers waiting on this coordinator, so that they look at their
    /// deadlines again: call it after a change beside the coordinator that may bring
    /// a nearer one (an alert fired into a manager a driver keeps, see
    /// [`Driver::with_timed`]).
    pub fn nudge(&self) {
        let wake = {
            let mut shared = self.shared.lock();
            shared.nudges += 1;
            std::mem::take(&mut shared.change_wakers)
        };
        for w in wake {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_is_send_sync() {
        fn f<T: Send + Sync>() {}
        f::<Coordinator>();
        f::<Core>();
    }
}
