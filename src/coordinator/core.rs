//! [`Core`]: the sans-I/O coordinator. It owns the whole coordination state and the
//! parts that decide (analyzer, predictor, assigner, policies); every command takes
//! `now`, and nothing here reads a clock, locks or waits.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use crate::agent::{AgentRegistry, AgentStatus, RegistryError};
use crate::assignment::{Assigner, Explanation, Fleet, Plan, Refusal};
use crate::clock::Timestamp;
use crate::conflict::{ConflictDetector, ConflictId, ConflictManager, HumanDecision};
use crate::id::{
    AgentId, NameError, RequestId, TaskId, check_claim, check_description, check_label, excerpt,
};
use crate::layout::Layout;
use crate::policy::{AttemptEnd, DutyLog, PendingBatch, PolicyEnforcer, SystemMode};
use crate::resource::{Grant, ResourceLedger, ResourcePredictor, Resources};
use crate::task::{Claim, FiredMark, FiredRule, KeptShares, RuleBasedAnalyzer, Task, TaskAnalyzer};

use super::admission::PolicyAdmission;
use super::error::CoordinatorError;
use super::event::{AssignOutcome, Assignment, Decider, Event, EventKind, Notice};
use super::journal::{Command, JournalState};
use super::queue::WaitingTask;

/// What becomes of a running task whose agent leaves service (goes offline or
/// unhealthy, or is deregistered).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnAgentLoss {
    /// It waits again, keeping its age in the queue, for another agent (the default:
    /// the agent's loss is not the task's failure).
    #[default]
    Requeue,
    /// It ends as a failure.
    Fail,
}

/// The task analyzer a core was built with. The built-in one is kept as itself: the
/// core then keeps the rules that fired for a task by number and names them only if
/// it refuses the task (see `FiredMark`), where a host's analyzer names them for
/// every task it reads.
#[derive(Debug, Clone)]
pub(super) enum Analyzer {
    /// The built-in [`RuleBasedAnalyzer`].
    Rules(Box<RuleBasedAnalyzer>),
    /// Any other.
    Host(Arc<dyn TaskAnalyzer>),
}

impl Analyzer {
    /// `analyzer`, kept as itself if it is the built-in one (copied once, when the
    /// coordinator is built).
    pub(super) fn of<A: TaskAnalyzer + 'static>(analyzer: A) -> Self {
        match (&analyzer as &dyn std::any::Any).downcast_ref::<RuleBasedAnalyzer>() {
            Some(rules) => Analyzer::Rules(Box::new(rules.clone())),
            None => Analyzer::Host(Arc::new(analyzer)),
        }
    }
}

/// Writes `predictor`'s needs for `task` over the ones it states. A prediction never
/// asks for more than some agent could hold if what was asked for fits one
/// (`shapes`: the most each agent could hold, see
/// [`ResourceLedger::capacity_shapes_into`]): a kind whose usage was reported above
/// every agent's size (or learned with a margin on the largest agent) would otherwise
/// never be placed again. It is cut down to the shape that holds what was asked and
/// keeps the most of the prediction; per agent, not to the most of each resource
/// over all agents, which on a fleet of mixed sizes (many cores and little memory,
/// or the other way) is a size no agent has.
///
/// [`ResourceLedger::capacity_shapes_into`]: crate::resource::ResourceLedger
pub(super) fn predict_within(
    predictor: &dyn ResourcePredictor,
    shapes: &[Resources],
    task: &mut Task,
) {
    let (kind, resources) = task.kind_and_resources_mut();
    // Bit k: shape k holds what was asked (of the first 64: a fleet of more sizes
    // than that, none within another, is cut down to one of those).
    let holds_asked = (shapes.iter().take(64).enumerate()).fold(0u64, |m, (k, shape)| {
        m | u64::from(resources.fits(shape)) << k
    });
    predictor.predict_in_place(kind, resources);
    if holds_asked == 0 || shapes.iter().any(|shape| resources.fits(shape)) {
        return;
    }
    let kept = |shape: &Resources| -> f64 {
        (resources.iter())
            .filter(|&(_, p)| p > 0)
            .map(|(name, p)| shape.get(&name).min(p) as f64 / p as f64)
            .sum()
    };
    let mut best: Option<(usize, f64)> = None;
    for (k, shape) in shapes.iter().enumerate().take(64) {
        if holds_asked >> k & 1 == 1 {
            let share = kept(shape);
            if best.is_none_or(|(_, most)| share > most) {
                best = Some((k, share));
            }
        }
    }
    if let Some((k, _)) = best {
        *resources = resources.min(&shapes[k]);
    }
}

/// Refuses a task (as analyzed) with a claim that names nothing (`/`): it would
/// collide with every claim.
pub(super) fn check_claims(task: &Task) -> Result<(), CoordinatorError> {
    match task
        .requirements()
        .claims()
        .iter()
        .find(|c| c.names_nothing())
    {
        Some(c) => Err(CoordinatorError::InvalidTaskText {
            task: task.id(),
            source: NameError::NamesNothing {
                kind: "claim",
                name: excerpt(c.resource()),
            },
        }),
        None => Ok(()),
    }
}

/// The rules that fired for a batch's tasks, kept between batches for their
/// capacity (a list per task was two allocations per one-task batch).
#[derive(Debug, Default)]
pub(super) struct Fired {
    /// A host analyzer's rules, as it named them.
    named: Vec<FiredRule>,
    /// The built-in analyzer's rules, by number.
    marks: Vec<FiredMark>,
    /// Each analyzed task's range of `named` or of `marks`.
    ranges: Vec<(TaskId, std::ops::Range<usize>)>,
}

/// The deciding parts, owned by the core so that none needs a lock of its own.
pub(super) struct Parts {
    pub(super) analyzer: Analyzer,
    pub(super) predictor: Box<dyn ResourcePredictor>,
    pub(super) assigner: Box<dyn Assigner>,
    pub(super) policies: Arc<dyn PolicyEnforcer>,
    /// Whether tasks whose requirements are stated go through the analyzer too.
    pub(super) analyze_explicit: bool,
    /// Whether events are kept until the host drains them, or dropped once their
    /// command has ended (see [`CoordinatorBuilder::keep_events`](super::CoordinatorBuilder::keep_events)).
    pub(super) keep_events: bool,
    pub(super) on_agent_loss: OnAgentLoss,
    /// What a quarantined agent's running tasks do.
    pub(super) on_quarantine: super::emergency::OnQuarantine,
    /// When the core enters safe mode by itself.
    pub(super) safe_mode_rules: super::emergency::SafeModeRules,
    /// The capabilities that count as external communication, sorted: the tasks
    /// that need one wait while communications are stopped.
    pub(super) external: Vec<crate::id::Capability>,
}

/// The coordination state.
#[derive(Debug)]
pub(super) struct State {
    pub(super) registry: AgentRegistry,
    pub(super) ledger: ResourceLedger,
    pub(super) mode: SystemMode,
    pub(super) duties: DutyLog,
    /// Hashed: a B-tree freed and made its root node again each time the last running
    /// task finished and the next started. Sorted where it is shown or saved.
    pub(super) assignments: crate::hash::FxHashMap<TaskId, Arc<Assignment>>,
    pub(super) waiting: BTreeMap<RequestId, WaitingTask>,
    /// Each waiting task's key in `waiting`: kept in step with it by `wait` and
    /// `unwait`, so that finding a task among those waiting is not a scan.
    pub(super) waiting_by_task: BTreeMap<TaskId, RequestId>,
    pub(super) events: Vec<Event>,
    pub(super) next_seq: u64,
    /// The latest `now` any command was given: time never goes back.
    pub(super) last_now: Timestamp,
    /// The fleet view the assigner reads, refreshed in place for every batch (not in
    /// the snapshot: it follows from the registry and the ledger). It holds the
    /// affinity table, which the core owns and lends it.
    pub(super) fleet: Fleet,
    /// Grants the ledger made to waiting tasks while capacity was given back outside
    /// `serve` (by `queue_or_reject`); served before the call returns.
    pub(super) handed_back: Vec<Grant>,
    pub(super) detector: ConflictDetector,
    pub(super) conflicts: ConflictManager,
    /// The id the next conflict opened gets: issued there and nowhere else
    /// (`open_conflicts_for`), so that ids are never reused.
    pub(super) next_conflict_id: u64,
    /// The claims each running task holds, and its agent.
    pub(super) claims: BTreeMap<TaskId, (AgentId, Vec<Claim>)>,
    /// The task holding the resource of each open conflict: its end resolves it.
    pub(super) holders: BTreeSet<(TaskId, ConflictId)>,
    /// The waiting tasks (their keys in `waiting`) blocked behind each running task's
    /// claims. Not in the snapshot: restore derives it from `WaitingTask::behind`.
    pub(super) blocked: BTreeMap<TaskId, BTreeSet<RequestId>>,
    /// Pairs (holder, task) a decision approved: the task may run beside the holder
    /// although their claims collide. Dropped when either finishes.
    pub(super) approved: BTreeSet<(TaskId, TaskId)>,
    /// The policy admission's proposals, kept between batches for their capacity.
    pub(super) proposals: PendingBatch,
    /// The group of the last batch, shared by the next batch of the same group.
    pub(super) last_group: Option<Arc<str>>,
    /// The assigner's plan, kept between batches for its lists' capacity, with one
    /// placement left in it whose explanation the next one-task batch writes over.
    pub(super) plan: Plan,
    /// The outcome list of a one-task call, kept between calls for its capacity.
    pub(super) outcomes: Vec<AssignOutcome>,
    /// The rules that fired for the batch's tasks.
    pub(super) fired: Fired,
    /// The requirement lists of the one-call path's finished tasks, for the analyzer
    /// to give the next tasks (see [`KeptShares`]).
    pub(super) kept: KeptShares,
    /// Assignments of finished tasks, oldest first, kept so that the next
    /// assignments reuse their allocations once nobody else holds them. Kept even
    /// while shared: the host's copy in an event not yet drained is dropped by the
    /// time the next task is assigned, and only then may the allocation be reused.
    pub(super) spare: std::collections::VecDeque<Arc<Assignment>>,
    /// The keys of the waiting tasks the core holds off the ledger's queue
    /// ([`WaitingTask::parked`]), in order.
    pub(super) parked: BTreeSet<RequestId>,
    /// The mailboxes of the watched groups (see [`Core::watch`]).
    pub(super) watched: BTreeMap<Arc<str>, Vec<Notice>>,
    /// The groups whose driver confirms when work stops (see [`Core::drive`]), in
    /// the snapshot: whether a task is interrupted or handed back when its agent
    /// leaves service must come out the same when the journal is replayed.
    pub(super) driven: BTreeSet<Arc<str>>,
    /// When each group's latest duty attempt started: a finished run's group is
    /// forgotten only if no attempt started in it since (see
    /// [`Core::forget_finished_group`]), as a later run may reuse the id.
    pub(super) duty_started: BTreeMap<Arc<str>, Timestamp>,
    /// The running tasks of driven groups whose agent left service while they ran
    /// (see [`Core::hand_back`]), in the snapshot.
    pub(super) interrupted: BTreeSet<TaskId>,
    /// The watched groups whose mailbox went from empty to not, since the last
    /// [`Core::take_notified`].
    pub(super) notified: Vec<Arc<str>>,
    /// The records made for the journal, and the number of the next.
    pub(super) journal: JournalState,
    /// The most each agent could hold, but for the agents another holds as much
    /// as, and the ledger layout they were read from: predictions are held under
    /// one of them (see [`predict_within`]).
    pub(super) shapes: (Option<Layout>, Vec<Resources>),
    /// The failures the safe-mode rules count (in the snapshot).
    pub(super) recent: super::emergency::RecentFailures,
    /// Whether external communications are stopped (in the snapshot).
    pub(super) comms: Option<super::comms::CommunicationsStop>,
    /// The highest task id ever given to the core (in the snapshot): a driver that
    /// issues ids goes on above it after a restart, so a finished task's id is
    /// never issued again.
    pub(super) highest_task: Option<TaskId>,
}

impl State {
    pub(super) fn new(ledger: ResourceLedger, conflicts: ConflictManager) -> State {
        State {
            registry: AgentRegistry::new(),
            ledger,
            mode: SystemMode::Normal,
            duties: DutyLog::default(),
            assignments: crate::hash::FxHashMap::default(),
            waiting: BTreeMap::new(),
            waiting_by_task: BTreeMap::new(),
            fleet: Fleet::new(&AgentRegistry::new(), None)
                .with_affinity(crate::assignment::AffinityTable::default()),
            handed_back: Vec::new(),
            events: Vec::new(),
            next_seq: 1,
            last_now: Timestamp::from_secs(0),
            detector: ConflictDetector::new(),
            conflicts,
            next_conflict_id: 1,
            claims: BTreeMap::new(),
            holders: BTreeSet::new(),
            blocked: BTreeMap::new(),
            approved: BTreeSet::new(),
            proposals: PendingBatch::default(),
            last_group: None,
            fired: Fired::default(),
            kept: KeptShares::default(),
            plan: Plan::default(),
            outcomes: Vec::new(),
            spare: std::collections::VecDeque::new(),
            parked: BTreeSet::new(),
            watched: BTreeMap::new(),
            driven: BTreeSet::new(),
            duty_started: BTreeMap::new(),
            interrupted: BTreeSet::new(),
            notified: Vec::new(),
            shapes: (None, Vec::new()),
            recent: super::emergency::RecentFailures::default(),
            comms: None,
            highest_task: None,
            journal: JournalState {
                on: false,
                next: 1,
                pending: Vec::new(),
            },
        }
    }

    /// Appends an event, stamped with the next sequence number and `at`.
    pub(super) fn push(&mut self, at: Timestamp, kind: EventKind) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.push(Event { seq, at, kind });
    }

    /// Leaves `notice` in the mailbox of `group`, if a driver watches it.
    pub(super) fn notify(&mut self, group: Option<&Arc<str>>, notice: Notice) {
        let Some(group) = group else { return };
        if let Some(mailbox) = self.watched.get_mut(&**group) {
            if mailbox.is_empty() {
                self.notified.push(Arc::clone(group));
            }
            mailbox.push(notice);
        }
    }

    /// The tasks running on `agent`, in id order: the order its loss or quarantine
    /// reports and hands them back in, the same whatever the map's history.
    pub(super) fn tasks_on(&self, agent: AgentId) -> Vec<TaskId> {
        let mut tasks: Vec<TaskId> = (self.assignments.values())
            .filter(|a| a.agent == agent)
            .map(|a| a.task.id())
            .collect();
        tasks.sort_unstable();
        tasks
    }

    /// Books a started task, however it started (assigned directly or served from
    /// the queue): its duty in its group as an attempt in progress (if the policies
    /// ever read it; [`end_duty`](Self::end_duty) ends it), its place among the
    /// running tasks, and the event.
    pub(super) fn book(
        &mut self,
        policies: &dyn PolicyEnforcer,
        a: &Arc<Assignment>,
        now: Timestamp,
    ) {
        self.start_duty(policies, a);
        self.assignments.insert(a.task.id(), Arc::clone(a));
        self.push(
            now,
            EventKind::TaskAssigned {
                assignment: Arc::clone(a),
            },
        );
    }

    /// Records `a`'s duty in its group as an attempt in progress, if the policies
    /// ever read it.
    pub(super) fn start_duty(&mut self, policies: &dyn PolicyEnforcer, a: &Assignment) {
        if let Some(group) = a
            .group
            .as_ref()
            .filter(|_| policies.reads_duty(a.task.kind()))
        {
            self.duties
                .record_running_shared(group, a.task.kind_arc(), a.agent);
            match self.duty_started.get_mut(&**group) {
                Some(at) => *at = a.assigned_at,
                None => {
                    self.duty_started.insert(Arc::clone(group), a.assigned_at);
                }
            }
        }
    }

    /// Ends the duty attempt [`book`](Self::book) recorded for `a` as `end` says:
    /// lasting if it succeeded or failed, else gone, as its agent never did it.
    /// Nothing for a task without a group, or whose duty was never recorded.
    pub(super) fn end_duty(&mut self, a: &Assignment, end: AttemptEnd) {
        if let Some(group) = &a.group {
            self.duties.end_running(group, a.task.kind(), a.agent, end);
        }
    }

    pub(super) fn knows(&self, task: TaskId) -> bool {
        self.assignments.contains_key(&task) || self.waiting_by_task.contains_key(&task)
    }

    /// Records that a task was rejected: an event, and a notice for its driver if it
    /// had been waiting in a watched group.
    pub(super) fn reject(
        &mut self,
        task: TaskId,
        group: Option<&Arc<str>>,
        explanation: Explanation,
        now: Timestamp,
    ) {
        tracing::debug!(task.id = %task, why = %explanation, "task rejected");
        // A decision that let it run beside a holder ends with it (a task handed
        // back keeps its approval while it waits, and may be rejected there).
        if !self.approved.is_empty() {
            self.approved.retain(|&(h, t)| h != task && t != task);
        }
        let reason = format!("no agent can ever take it: {explanation}");
        self.push(
            now,
            EventKind::TaskRejected {
                task,
                explanation: Box::new(explanation),
            },
        );
        self.notify(group, Notice::Refused { task, reason });
    }
}

/// The sans-I/O coordinator: the whole coordination state and the parts that decide,
/// driven by commands that each take `now`, in the manner of quinn-proto's
/// `Connection`.
///
/// - **Commands**: [`register_agent`](Self::register_agent),
///   [`deregister_agent`](Self::deregister_agent),
///   [`set_agent_status`](Self::set_agent_status), [`set_mode`](Self::set_mode),
///   [`assign_batch`](Self::assign_batch), [`complete`](Self::complete),
///   [`cancel`](Self::cancel), [`decide`](Self::decide).
/// - **Time**: [`poll_timeout`](Self::poll_timeout) says when the core next needs
///   [`handle_timeout`](Self::handle_timeout): the next rung of the escalation ladder
///   (and a human's deadline, past which the ladder's default decision applies), the
///   next lease expiry, the next reservation due to a long-waiting task.
/// - **Out**: every change is an [`Event`] ([`drain_events`](Self::drain_events),
///   [`drain_events_into`](Self::drain_events_into)); a driver that submitted tasks
///   of a group it [watches](Self::watch) gets [`Notice`]s of what happened to them
///   while they waited.
///
/// A `now` earlier than one the core has seen is refused
/// ([`CoordinatorError::TimeWentBack`]) and changes nothing, as is one past
/// [`Timestamp::HORIZON`] ([`CoordinatorError::PastHorizon`]), which would
/// otherwise refuse every later command at the real time. Wrap the core in a
/// [`Coordinator`](super::Coordinator) to share it between tasks with a clock.
///
/// # Examples
/// ```
/// use concord::coordinator::{AssignOutcome, Coordinator};
/// use concord::{AgentId, AgentProfile, Requirements, Role, Task, TaskId, Timestamp};
///
/// let mut core = Coordinator::builder().build_core();
/// let t0 = Timestamp::from_secs(1_000);
/// let ops = AgentProfile::new(AgentId::new(1), "ops-1")
///     .with_role(Role::new("ops")?)
///     .with_capacity("cpu=2,memory=4Gi".parse()?);
/// core.register_agent(ops, t0)?;
/// // A task that says who can do it is taken at its word (no keyword analysis).
/// let task = Task::new(TaskId::new(1), "backup_index", "back up the index")
///     .with_requirements(Requirements::new().with_role(Role::new("ops")?));
/// let outcome = core.assign(task, t0)?;
/// assert!(matches!(outcome, AssignOutcome::Assigned(_)));
/// core.complete(TaskId::new(1), true, None, t0)?;
/// assert_eq!(core.poll_timeout(), None); // nothing timed is pending
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Core {
    pub(super) parts: Parts,
    pub(super) s: State,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("analyzer", &self.parts.analyzer)
            .field("assigner", &self.parts.assigner)
            .field("policies", &self.parts.policies)
            .field("mode", &self.s.mode)
            .field("running", &self.s.assignments.len())
            .field("waiting", &self.s.waiting.len())
            .finish_non_exhaustive()
    }
}

/// The items of a plan (placements, unplaced tasks) handed out by task, in place:
/// each is read where the assigner wrote it, as a placement (explanation included)
/// is a few hundred bytes that a move would copy. The crate's assigners list them in
/// the batch's order, which one pass takes in turn; any other order falls back to a
/// map, so a host's assigner costs no quadratic search. Each item is handed out
/// once.
struct ByTask<'a, T> {
    items: &'a mut [T],
    /// The next item in order, while the items come in order.
    next: usize,
    rest: Option<crate::hash::FxHashMap<TaskId, usize>>,
    key: fn(&T) -> TaskId,
}

impl<'a, T> ByTask<'a, T> {
    fn new(items: &'a mut [T], key: fn(&T) -> TaskId) -> Self {
        ByTask {
            items,
            next: 0,
            rest: None,
            key,
        }
    }

    /// The item of `task`, if it has one not handed out yet.
    fn take(&mut self, task: TaskId) -> Option<&mut T> {
        if self.rest.is_none() {
            match self.items.get(self.next) {
                None => return None,
                Some(next) if (self.key)(next) == task => {
                    self.next += 1;
                    return self.items.get_mut(self.next - 1);
                }
                // Not in order, or `task` has no item: look it up from now on.
                Some(_) => {
                    let key = self.key;
                    let from = self.next;
                    self.rest = Some(
                        (self.items[from..].iter().enumerate())
                            .map(|(i, t)| (key(t), from + i))
                            .collect(),
                    );
                }
            }
        }
        let i = self.rest.as_mut()?.remove(&task)?;
        self.items.get_mut(i)
    }
}

impl Core {
    /// Refuses a `now` earlier than one already seen, else makes it the latest.
    fn at(&mut self, now: Timestamp) -> Result<Timestamp, CoordinatorError> {
        self.check_time(now)?;
        self.s.last_now = now;
        Ok(now)
    }

    /// The latest time the core was given.
    pub fn last_now(&self) -> Timestamp {
        self.s.last_now
    }

    /// The highest task id the core was ever given (running, waiting or finished
    /// long ago): ids a host issues go on above it, so none is issued twice.
    pub fn highest_task_id(&self) -> Option<TaskId> {
        self.s.highest_task
    }

    /// Fails with [`CoordinatorError::TimeWentBack`] for a `now` earlier than one
    /// seen, and with [`CoordinatorError::PastHorizon`] for one past
    /// [`Timestamp::HORIZON`].
    pub(super) fn check_time(&self, now: Timestamp) -> Result<(), CoordinatorError> {
        if now > Timestamp::HORIZON {
            return Err(CoordinatorError::PastHorizon { now });
        }
        if now < self.s.last_now {
            return Err(CoordinatorError::TimeWentBack {
                now,
                seen: self.s.last_now,
            });
        }
        Ok(())
    }

    /// Enters or leaves safe mode (or recovery). Outside normal mode the default
    /// policies admit only the duties their safe-mode rule allows (the recovery's
    /// own); a task the safe-mode rule refuses is held ([`WaitingTask::parked`]) and
    /// waits for normal mode, in its order, instead of failing. Returns whether the
    /// mode changed.
    ///
    /// # Errors
    /// [`CoordinatorError::TimeWentBack`]; nothing changes.
    pub fn set_mode(&mut self, mode: SystemMode, now: Timestamp) -> Result<bool, CoordinatorError> {
        let cmd = self.recording().then_some(Command::SetMode { mode });
        self.journaled(now, cmd, |c| c.set_mode_inner(mode, now))
    }

    fn set_mode_inner(
        &mut self,
        mode: SystemMode,
        now: Timestamp,
    ) -> Result<bool, CoordinatorError> {
        let now = self.at(now)?;
        Ok(self.change_mode(mode, now))
    }

    pub(super) fn change_mode(&mut self, mode: SystemMode, now: Timestamp) -> bool {
        let from = self.s.mode;
        if from == mode {
            return false;
        }
        self.s.mode = mode;
        tracing::info!(from = %from, to = %mode, "system mode changed");
        self.s.push(now, EventKind::ModeChanged { from, to: mode });
        if mode.admits_new_assignments() {
            // Out of safe mode: what waited for it is queued again, in order.
            self.retry_parked(now);
        }
        true
    }

    /// The system mode.
    pub fn mode(&self) -> SystemMode {
        self.s.mode
    }

    /// Assigns one task: the agent assignment procedure in one call.
    ///
    /// # Errors
    /// As [`assign_batch`](Self::assign_batch).
    pub fn assign(
        &mut self,
        task: Task,
        now: Timestamp,
    ) -> Result<AssignOutcome, CoordinatorError> {
        self.assign_one(None, task, now)
    }

    /// Assigns one task as part of `group` (a workflow run), so separation of duties
    /// holds across the group's tasks: what the facade's
    /// [`Coordinator::assign_in_group`](super::Coordinator::assign_in_group) does.
    ///
    /// # Errors
    /// As [`assign_batch`](Self::assign_batch).
    pub fn assign_in_group(
        &mut self,
        group: &str,
        task: Task,
        now: Timestamp,
    ) -> Result<AssignOutcome, CoordinatorError> {
        self.assign_one(Some(group), task, now)
    }

    /// Assigns one task, optionally in `group`: [`assign`](Self::assign),
    /// [`assign_in_group`](Self::assign_in_group), and
    /// [`Coordinator`](super::Coordinator)'s one-task calls.
    pub(super) fn assign_one(
        &mut self,
        group: Option<&str>,
        task: Task,
        now: Timestamp,
    ) -> Result<AssignOutcome, CoordinatorError> {
        check_group_named(group)?;
        // The batch of one is the task where it lies (a task is a few hundred bytes
        // to move), its outcome in the list kept for it: no vector is made for
        // either.
        let mut task = task;
        let mut out = std::mem::take(&mut self.s.outcomes);
        out.clear();
        let tasks = std::slice::from_mut(&mut task);
        let done = self.assign_batch_into(group, tasks, &mut out, true, now);
        let outcome = out.pop();
        self.s.outcomes = out;
        // What is left here is dropped: an assigned task's place holds the finished
        // task it was traded for, whose lists the analyzer gives the next tasks.
        task.requirements_mut().keep_lists(&mut self.s.kept);
        done?;
        // One task in, one outcome out (or an error, returned above).
        Ok(outcome.expect("a batch of one task has one outcome"))
    }

    /// Assigns a batch of tasks together (the assigner sees them all at once, which is
    /// what an optimal assigner needs), optionally as part of `group` (a workflow
    /// run: separation of duties holds across the group). Outcomes come back in the
    /// batch's order.
    ///
    /// A task that cannot start now waits ([`AssignOutcome::Queued`],
    /// [`AssignOutcome::Conflicted`]); it is [`AssignOutcome::Rejected`] only when no
    /// agent could ever take it.
    ///
    /// # Errors
    /// [`CoordinatorError::DuplicateTask`] if one is already assigned or waiting;
    /// [`CoordinatorError::InvalidTaskText`] for a kind, description or claim it does
    /// not take (see [`MAX_LABEL_LEN`](crate::id::MAX_LABEL_LEN); a claim that names
    /// nothing included) and
    /// [`CoordinatorError::InvalidGroup`] for such a group name or an empty one; the
    /// analyzer's or assigner's refusal of bad input; [`CoordinatorError::TimeWentBack`]
    /// or [`CoordinatorError::PastHorizon`] for a `now` the core does not take. Then
    /// nothing changes.
    pub fn assign_batch(
        &mut self,
        group: Option<&str>,
        mut tasks: Vec<Task>,
        now: Timestamp,
    ) -> Result<Vec<AssignOutcome>, CoordinatorError> {
        check_group_named(group)?;
        let mut outcomes = Vec::with_capacity(tasks.len());
        self.assign_batch_into(group, &mut tasks, &mut outcomes, true, now)?;
        Ok(outcomes)
    }

    /// [`assign_batch`](Self::assign_batch) for a caller that reuses its buffers:
    /// takes the tasks out of `tasks` and appends their outcomes to `outcomes`. Spent
    /// tasks are left in `tasks`, for [`Task::refill`] to make the next batch's. With
    /// `wait`, a task whose claims collide waits behind the holder (what a driver
    /// that watches the group wants); without, the caller submits it again.
    pub(crate) fn assign_batch_into(
        &mut self,
        group: Option<&str>,
        tasks: &mut [Task],
        outcomes: &mut Vec<AssignOutcome>,
        wait: bool,
        now: Timestamp,
    ) -> Result<(), CoordinatorError> {
        let cmd = self.recording().then(|| Command::AssignBatch {
            group: group.map(Arc::from),
            tasks: tasks.to_vec(),
            wait,
        });
        self.journaled(now, cmd, |c| {
            c.assign_batch_into_inner(group, tasks, outcomes, wait, now)
        })
    }

    fn assign_batch_into_inner(
        &mut self,
        group: Option<&str>,
        tasks: &mut [Task],
        outcomes: &mut Vec<AssignOutcome>,
        wait: bool,
        now: Timestamp,
    ) -> Result<(), CoordinatorError> {
        self.check_time(now)?;
        check_texts(group, tasks.iter())?;
        let Core { parts, s } = self;
        // 1. Analyze. A task that states its requirements is taken at its word, unless
        // the host asked for analysis of those too: the keyword rules read names, and a
        // step named `backup_index` is not an ops task because of its name.
        let span = tracing::debug_span!("analyze", tasks = tasks.len()).entered();
        // The rules that fired, kept to name them in a refusal.
        let Fired {
            named,
            marks,
            ranges,
        } = &mut s.fired;
        named.clear();
        marks.clear();
        ranges.clear();
        for task in tasks.iter_mut() {
            if !parts.analyze_explicit && task.requirements().is_stated() {
                continue;
            }
            let (start, end) = match &parts.analyzer {
                Analyzer::Rules(rules) => {
                    let start = marks.len();
                    rules.analyze_in_place_marked(task, marks, &mut s.kept)?;
                    (start, marks.len())
                }
                Analyzer::Host(host) => {
                    let start = named.len();
                    host.analyze_in_place_into(task, named)?;
                    tracing::debug!(task.id = %task.id(), rules = ?named[start..].iter().map(|f| &f.rule).collect::<Vec<_>>(), "task analyzed");
                    (start, named.len())
                }
            };
            if end > start {
                ranges.push((task.id(), start..end));
            }
        }
        drop(span);
        let analyzed = tasks;
        // 2. Predict the needs.
        {
            let _span = tracing::debug_span!("predict", tasks = analyzed.len()).entered();
            let layout = s.ledger.layout();
            if s.shapes.0 != Some(layout) {
                s.ledger.capacity_shapes_into(&mut s.shapes.1);
                s.shapes.0 = Some(layout);
            }
            for task in analyzed.iter_mut() {
                predict_within(parts.predictor.as_ref(), &s.shapes.1, task);
            }
        }
        // One shared name for the whole batch's proposals and assignments.
        let group: Option<Arc<str>> = group.map(|g| {
            if let Some(last) = s.last_group.as_ref().filter(|last| ***last == *g) {
                return Arc::clone(last);
            }
            let shared = match s.duties.shared_group(g) {
                Some(logged) => Arc::clone(logged),
                None => Arc::from(g),
            };
            s.last_group = Some(Arc::clone(&shared));
            shared
        });
        for t in analyzed.iter() {
            if s.knows(t.id()) {
                return Err(CoordinatorError::DuplicateTask { task: t.id() });
            }
            // Refused here, before any task of the batch is committed, so that a bad
            // claim on the third task does not leave the first two assigned behind an
            // error.
            check_claims(t)?;
        }
        s.last_now = now;
        let highest = analyzed.iter().map(|t| t.id()).max();
        // 3-4. Find available agents and assign, validating through the policies.
        let (planned, mut warnings) = {
            let _span = tracing::debug_span!("assign", tasks = analyzed.len()).entered();
            s.fleet.refresh(&s.registry, Some(&s.ledger));
            // The fields apart: the admission reads some while the plan and the
            // proposals, kept between batches, are written in place.
            let State {
                registry,
                ledger,
                mode,
                duties,
                comms,
                fleet,
                proposals,
                plan,
                ..
            } = &mut *s;
            let mut admission = PolicyAdmission {
                policies: parts.policies.as_ref(),
                registry,
                ledger,
                mode: *mode,
                duties,
                comms: comms.as_ref(),
                fleet,
                external: &parts.external,
                group: group.as_ref(),
                pending: proposals,
                warnings: BTreeMap::new(),
                now,
            };
            let planned = if fleet.is_empty() {
                plan.placements.clear();
                plan.unplaced.clear();
                plan.refusals.clear();
                Ok(())
            } else {
                // The core owns its assigner: no lock of the assigner's own is taken.
                (parts.assigner).assign_into_mut(analyzed, fleet, &mut admission, plan)
            };
            let warnings = std::mem::take(&mut admission.warnings);
            admission.pending.clear();
            (planned, warnings)
        };
        planned?;
        // Out of the state while its placements are committed into it.
        let mut plan = std::mem::take(&mut s.plan);
        for refusal in &plan.refusals {
            s.push(
                now,
                EventKind::PolicyRefused {
                    refusal: Box::new(refusal.clone()),
                },
            );
        }
        // 5. Allocate, in the batch's order.
        let _span = tracing::debug_span!("allocate", tasks = analyzed.len()).entered();
        let mut placements = ByTask::new(&mut plan.placements, |p| p.task);
        let mut unplaced = ByTask::new(&mut plan.unplaced, |u| u.task);
        for task in analyzed.iter_mut() {
            let id = task.id();
            if let Some(p) = placements.take(id) {
                // An assigner that does not ask the admission (the core's gate is
                // there) must not start what the communications stop holds.
                if self.comms_gate(task).is_some() {
                    warnings.remove(&id);
                    let explanation = Explanation::default();
                    outcomes.push(self.wait_for_communications(
                        task.take(),
                        explanation,
                        group.as_ref(),
                        None,
                        now,
                    ));
                    continue;
                }
                let outcome = self.commit(
                    task,
                    p,
                    warnings.remove(&id).unwrap_or_default(),
                    group.as_ref(),
                    wait,
                    now,
                )?;
                outcomes.push(outcome);
                continue;
            }
            let mut explanation = unplaced
                .take(id)
                .map(|u| std::mem::take(&mut u.explanation))
                .unwrap_or_else(|| Explanation {
                    considered: 0,
                    ..Explanation::default()
                });
            let fired = &self.s.fired;
            if let Some((_, range)) = fired.ranges.iter().find(|(task, _)| *task == id) {
                explanation.analyzed = match &self.parts.analyzer {
                    Analyzer::Rules(rules) => rules.name_fired(&fired.marks[range.clone()]),
                    Analyzer::Host(_) => fired.named[range.clone()].to_vec(),
                };
            }
            let refusals: Vec<Refusal> = plan
                .refusals
                .iter()
                .filter(|r| r.task == id)
                .cloned()
                .collect();
            outcomes.push(self.queue_or_reject(
                task.take(),
                explanation,
                refusals,
                group.as_ref(),
                None,
                now,
            )?);
        }
        // Only now: an assignment refused above changes nothing, this included (the
        // journal does not keep it, and a replay would not count its ids).
        self.s.highest_task = self.s.highest_task.max(highest);
        drop((placements, unplaced));
        // One placement is kept: its explanation, a finished assignment's written
        // back at commit, is where the next one-task batch writes its own (see
        // `GreedyAssigner`), its lists' capacity reused.
        plan.placements.truncate(1);
        plan.unplaced.clear();
        plan.refusals.clear();
        self.s.plan = plan;
        // Giving back capacity for a task the assigner refused may have granted
        // waiting tasks some: they are assigned now (see the journal).
        self.serve_handed_back(now);
        Ok(())
    }

    /// Records the orchestrator's or a human's answer to an open conflict, with who
    /// gave it, as the escalation ladder's default decision would at its deadline:
    ///
    /// - **deny**: the waiting side is withdrawn with the reason
    ///   ([`EventKind::TaskDenied`]; a workflow step fails with it and its rollback
    ///   runs), and the other conflicts it waited on close with it;
    /// - **approve**: the waiting side may run beside the holder: it is queued now and
    ///   starts when an agent has room (a collision with that holder is not reopened).
    ///
    /// # Errors
    /// [`CoordinatorError::DefaultDecidesOnlyAtTheDeadline`] if `by` is
    /// [`Decider::Default`] (the ladder's default applies itself at the deadline);
    /// [`CoordinatorError::UnknownConflict`], [`CoordinatorError::ConflictClosed`],
    /// [`CoordinatorError::TimeWentBack`]. At or after the time the ladder's default
    /// decision applies, [`CoordinatorError::ConflictClosed`] once a tick has applied
    /// it, and [`ConflictError::DecisionTooLate`](crate::conflict::ConflictError::DecisionTooLate)
    /// (as [`CoordinatorError::Conflict`]) before: a late answer loses however often
    /// the host ticks. Nothing changes.
    pub fn decide(
        &mut self,
        conflict: ConflictId,
        decision: HumanDecision,
        by: Decider,
        now: Timestamp,
    ) -> Result<(), CoordinatorError> {
        let cmd = self.recording().then_some(Command::Decide {
            conflict,
            decision,
            by,
        });
        self.journaled(now, cmd, |c| c.decide_inner(conflict, decision, by, now))
    }

    fn decide_inner(
        &mut self,
        conflict: ConflictId,
        decision: HumanDecision,
        by: Decider,
        now: Timestamp,
    ) -> Result<(), CoordinatorError> {
        self.check_time(now)?;
        let Some(level) = by.level() else {
            return Err(CoordinatorError::DefaultDecidesOnlyAtTheDeadline { conflict });
        };
        match self.s.conflicts.state(conflict) {
            None => return Err(CoordinatorError::UnknownConflict { conflict }),
            Some(state) if state.is_closed() => {
                return Err(CoordinatorError::ConflictClosed {
                    conflict,
                    state: state.to_string(),
                });
            }
            Some(_) => {}
        }
        self.s.conflicts.decide(conflict, decision, level, now)?;
        self.s.last_now = now;
        self.apply_decision(conflict, decision, by, now);
        Ok(())
    }

    /// When the core next needs [`handle_timeout`](Self::handle_timeout): the next
    /// rung of the escalation ladder or human deadline, lease expiry, or reservation
    /// due. `None` when nothing is timed. A time already past means "now".
    pub fn poll_timeout(&mut self) -> Option<Timestamp> {
        let conflicts = self.s.conflicts.next_deadline();
        let ledger = self.s.ledger.next_deadline();
        match (conflicts, ledger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lets time pass to `now`: climbs the escalation ladder (carrying out safe mode
    /// and the default decisions itself), expires leases, gives reservations to
    /// long-waiting tasks and assigns waiting tasks that fit. Returns the tasks
    /// assigned.
    ///
    /// # Errors
    /// [`CoordinatorError::TimeWentBack`], [`CoordinatorError::PastHorizon`]; nothing
    /// changes.
    pub fn handle_timeout(
        &mut self,
        now: Timestamp,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        let cmd = self.recording().then_some(Command::Tick);
        self.journaled(now, cmd, |c| c.handle_timeout_inner(now))
    }

    fn handle_timeout_inner(
        &mut self,
        now: Timestamp,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        let now = self.at(now)?;
        let actions = self.s.conflicts.tick(now);
        let decisions = self.s.escalate(actions, now);
        for (conflict, decision) in decisions {
            self.apply_decision(conflict, decision, Decider::Default, now);
        }
        let mut grants = self.s.ledger.expire(now).grants;
        grants.extend(self.s.ledger.drain(now));
        // Only the tasks held before this tick are asked for again: one that the
        // serving below holds for capacity (a grant the utilization cap refused)
        // waits for capacity to come back. Asked again at once, it would queue with
        // its age, so with its reservation due at once, and be granted, refused and
        // queued again at every tick.
        let held: Vec<RequestId> = self.s.parked.iter().copied().collect();
        let mut assigned = self.serve(grants, Vec::new(), now);
        assigned.extend(self.retry_parked_keys(held, now));
        Ok(assigned)
    }

    /// Starts watching `group` (a workflow run): from now on, what happens to its
    /// waiting tasks is left as [`Notice`]s for [`take_notices`](Self::take_notices).
    /// A driver watches the groups it submits; nobody else needs to. Returns whether
    /// `group` was not watched yet: a group has one mailbox, so a driver told `false`
    /// shares it with another (the workflow executor refuses such a run).
    pub fn watch(&mut self, group: &str) -> bool {
        if self.s.watched.contains_key(group) {
            return false;
        }
        self.s.watched.insert(Arc::from(group), Vec::new());
        true
    }

    /// Declares that the caller drives `group`'s tasks to their agents and says when
    /// their work has stopped, as the workflow executor does. Then a running task of
    /// the group whose agent leaves service (goes offline or unhealthy, or is
    /// quarantined) is not taken from it at once: it is interrupted
    /// ([`Notice::Interrupted`], [`EventKind::TaskInterrupted`]) and keeps its slot,
    /// resources and claims until the driver either completes it (the work was done
    /// after all: its answer wins) or, once the work has stopped, hands it back
    /// ([`hand_back`](Self::hand_back)). So a one-slot agent that leaves service and
    /// comes straight back is not given a second task while the first one's work
    /// still runs, and work finished as its agent left is not done twice.
    /// Without this, such a task is handed back at once.
    ///
    /// Lasts until [`forget_group`](Self::forget_group). Returns whether `group`
    /// was not driven yet.
    ///
    /// # Errors
    /// [`CoordinatorError::InvalidGroup`] for an empty group name; nothing changes.
    pub fn drive(&mut self, group: &str) -> Result<bool, CoordinatorError> {
        check_group_named(Some(group))?;
        let mark = self.journal_mark();
        let new = !self.s.driven.contains(group);
        if new {
            self.s.driven.insert(Arc::from(group));
        }
        let cmd = mark.recording.then(|| Command::Drive {
            group: Arc::from(group),
        });
        self.journal(mark, new, self.s.last_now, cmd);
        Ok(new)
    }

    /// Stops watching `group`, dropping its unread notices.
    pub fn unwatch(&mut self, group: &str) {
        self.s.watched.remove(group);
    }

    /// Appends the notices left for `group` since the last call to `out`.
    pub fn take_notices(&mut self, group: &str, out: &mut Vec<Notice>) {
        if let Some(mailbox) = self.s.watched.get_mut(group) {
            out.append(mailbox);
        }
    }

    /// The watched groups that got notices since the last call (each once): the
    /// drivers to wake.
    pub fn take_notified(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.s.notified)
    }

    /// Whether any watched group got notices since the last
    /// [`take_notified`](Self::take_notified).
    pub fn has_notified(&self) -> bool {
        !self.s.notified.is_empty()
    }

    /// The tasks running now, by task id.
    pub fn assignments(&self) -> Vec<Arc<Assignment>> {
        let mut running: Vec<Arc<Assignment>> = self.s.assignments.values().cloned().collect();
        running.sort_unstable_by_key(|a| a.task.id());
        running
    }

    /// The running task `task`, if it runs.
    pub fn assignment(&self, task: TaskId) -> Option<&Arc<Assignment>> {
        self.s.assignments.get(&task)
    }

    /// Why `task` waits, in words: behind which conflicts, for normal mode, for a
    /// capacity policy, or the placement's explanation (who lacks what, who is
    /// busy). `None` when it does not wait.
    pub fn why_waiting(&self, task: TaskId) -> Option<String> {
        let w = self
            .s
            .waiting_by_task
            .get(&task)
            .and_then(|r| self.s.waiting.get(r))?;
        if let Some(holder) = w.behind {
            let conflicts: Vec<String> = super::claims::open_conflicts_view(&self.s)
                .into_iter()
                .filter(|c| c.waiting == Some(task))
                .map(|c| format!("{} {}", c.conflict.id(), c.state))
                .collect();
            // A wait with no conflict open on it (the claims collided when the queue
            // granted it) names the holder alone: no empty parentheses.
            return Some(if conflicts.is_empty() {
                format!("behind the claims of {holder}")
            } else {
                format!("behind the claims of {holder} ({})", conflicts.join(", "))
            });
        }
        Some(match w.parked {
            Some(super::queue::Parked::Mode) => format!("for normal mode (now {})", self.s.mode),
            Some(super::queue::Parked::Policy) => {
                format!("for capacity a policy allows: {}", w.explanation)
            }
            Some(super::queue::Parked::Agent) => {
                "for an agent that could take it to come back into service".to_owned()
            }
            Some(super::queue::Parked::Held(agent)) => {
                format!("held while {agent} is quarantined, until its release")
            }
            Some(super::queue::Parked::Communications) => match (
                self.s.comms.as_ref(),
                w.task
                    .requirements()
                    .capabilities()
                    .iter()
                    .find(|c| self.parts.external.binary_search(c).is_ok()),
            ) {
                (Some(stop), Some(capability)) => format!(
                    "for external communications to resume: {}",
                    super::comms::refusal_message(stop, capability)
                ),
                // Resumed, and the task is asked for again at the next chance.
                _ => "for external communications to resume".to_owned(),
            },
            None => format!("for an agent with room: {}", w.explanation),
        })
    }

    /// The tasks waiting, in the order of their current requests: in the ledger's
    /// queue, held for normal mode or capacity, or blocked behind a running task's
    /// claim. A task asked for again (handed back by an agent, let out from behind a
    /// claim, or out of a hold) has a new request, later in this list than tasks that
    /// asked after it first; [`WaitingTask::since`] says when it first asked, and
    /// the queue's aging and reservations count from then.
    pub fn waiting(&self) -> Vec<WaitingTask> {
        self.s.waiting.values().cloned().collect()
    }

    /// How many tasks wait (without copying them, as [`waiting`](Self::waiting)
    /// does).
    pub fn waiting_count(&self) -> usize {
        self.s.waiting.len()
    }

    /// How many tasks run.
    pub fn running_count(&self) -> usize {
        self.s.assignments.len()
    }

    /// The open conflicts, each with where it stands on the escalation ladder, in id
    /// order: a read-only view for an operator's screen or the host's approval flow.
    pub fn open_conflicts(&self) -> Vec<super::OpenConflict> {
        super::claims::open_conflicts_view(&self.s)
    }

    /// The conflict manager (read-only): every conflict's record and history.
    pub fn conflict_manager(&self) -> &ConflictManager {
        &self.s.conflicts
    }

    /// The agent registry (read-only).
    pub fn registry(&self) -> &AgentRegistry {
        &self.s.registry
    }

    /// The resource ledger (read-only).
    pub fn ledger(&self) -> &ResourceLedger {
        &self.s.ledger
    }

    /// The resource predictor (read-only): a host that keeps the predictor's learned
    /// state hands it in again on restore through
    /// [`CoordinatorBuilder::predictor`](super::CoordinatorBuilder::predictor).
    pub fn predictor(&self) -> &dyn ResourcePredictor {
        self.parts.predictor.as_ref()
    }

    /// Forgets the conflicts that closed before `closed_before` (see
    /// [`ConflictManager::forget_closed`]). Returns how many were forgotten.
    pub fn forget_closed_conflicts(&mut self, closed_before: Timestamp) -> usize {
        let mark = self.journal_mark();
        let forgot = self.s.conflicts.forget_closed(closed_before);
        let cmd = mark
            .recording
            .then_some(Command::ForgetClosedConflicts { closed_before });
        self.journal(mark, forgot > 0, self.s.last_now, cmd);
        forgot
    }

    /// The tasks running or waiting in `group`, ascending: what an executor checks
    /// before it starts a run under the group's id, without copying any task (as
    /// [`assignments`](Self::assignments) and [`waiting`](Self::waiting) do).
    pub(crate) fn tasks_in_group(&self, group: &str) -> Vec<TaskId> {
        let running = (self.s.assignments.values())
            .filter(|a| a.group.as_deref() == Some(group))
            .map(|a| a.task.id());
        let waiting = (self.s.waiting.values())
            .filter(|w| w.group.as_deref() == Some(group))
            .map(|w| w.task.id());
        let mut tasks: Vec<TaskId> = running.chain(waiting).collect();
        tasks.sort_unstable();
        tasks
    }

    /// Forgets `group` as [`forget_group`](Self::forget_group) does, for a run under
    /// that id that finished at `finished`, unless the id is in use again: a run
    /// under it is live (driven or watched), tasks of it run or wait, or a duty
    /// attempt started in it after `finished`. A run's id is free again once the run
    /// ends, so the daily cleanup of last week's `nightly` must not forget who did
    /// what in tonight's. Returns whether it forgot anything.
    pub fn forget_finished_group(&mut self, group: &str, finished: Timestamp) -> bool {
        let s = &self.s;
        let in_use = s.driven.contains(group)
            || s.watched.contains_key(group)
            || s.duty_started.get(group).is_some_and(|&at| at > finished)
            || !self.tasks_in_group(group).is_empty();
        !in_use && self.forget_group(group)
    }

    /// Forgets who did which duty in `group` (a finished workflow run or batch).
    /// Returns whether anything was recorded for it.
    pub fn forget_group(&mut self, group: &str) -> bool {
        let mark = self.journal_mark();
        let forgot = self.s.duties.forget_group(group)
            | self.s.driven.remove(group)
            | self.s.duty_started.remove(group).is_some();
        let cmd = mark.recording.then(|| Command::ForgetGroup {
            group: Arc::from(group),
        });
        self.journal(mark, forgot, self.s.last_now, cmd);
        forgot
    }

    /// Takes the events made since the last call, in order, for the host to journal.
    ///
    /// The core keeps every event until it is drained: a host that has no use for
    /// them (one that only runs workflows, say) builds the core with
    /// [`keep_events(false)`](super::CoordinatorBuilder::keep_events), or drains them
    /// now and then, or they grow by two or three events a task for as long as the
    /// process lives, each holding its assignment.
    /// [`drain_events_into`](Self::drain_events_into) with a buffer cleared after
    /// each call allocates nothing.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.s.events)
    }

    /// [`drain_events`](Self::drain_events) into the host's buffer: appends the events
    /// made since the last call to `out`, allocating nothing when `out` has room.
    pub fn drain_events_into(&mut self, out: &mut Vec<Event>) {
        let events = &mut self.s.events;
        if out.is_empty() && out.capacity() >= events.len() {
            // The journal and the host's buffer trade storage: nothing is copied.
            std::mem::swap(out, events);
        } else {
            out.append(events);
        }
    }
}

impl State {
    /// The error for a call that takes a running `task`, which does not run: it
    /// waits, or is not known.
    pub(super) fn not_running(&self, task: TaskId) -> CoordinatorError {
        if self.waiting_by_task.contains_key(&task) {
            CoordinatorError::TaskWaiting { task }
        } else {
            CoordinatorError::UnknownTask { task }
        }
    }
}

/// Refuses an empty group name (or one only of whitespace) in a host's call. It would
/// join every task a host forgot to name a run for, and separation of duties would
/// then hold across unrelated work; the executor refuses such a run id for the same
/// reason. A journal or checkpoint written before this check may hold one, so only
/// new calls are refused, not what is replayed or restored.
pub(super) fn check_group_named(group: Option<&str>) -> Result<(), CoordinatorError> {
    match group {
        Some(g) if g.trim().is_empty() => Err(CoordinatorError::InvalidGroup {
            source: NameError::Empty { kind: "group" },
        }),
        _ => Ok(()),
    }
}

/// Refuses a group name or a task's kind, description or claims that are not text
/// the coordinator keeps: each is copied into every event, journal record and snapshot
/// that speaks of it.
pub(super) fn check_texts<'a>(
    group: Option<&str>,
    tasks: impl IntoIterator<Item = &'a Task>,
) -> Result<(), CoordinatorError> {
    if let Some(group) = group {
        check_label("group", group).map_err(|source| CoordinatorError::InvalidGroup { source })?;
    }
    for t in tasks {
        check_label("task kind", t.kind())
            .and_then(|()| check_description(t.description()))
            .and_then(|()| {
                (t.requirements().claims().iter()).try_for_each(|c| check_claim(c.resource()))
            })
            .map_err(|source| CoordinatorError::InvalidTaskText {
                task: t.id(),
                source,
            })?;
    }
    Ok(())
}

/// Why [`AgentRegistry::task_started`] would refuse `agent` a task, asked before the
/// ledger allocates (the same checks, read-only).
pub(super) fn startable(registry: &AgentRegistry, agent: AgentId) -> Result<(), RegistryError> {
    let Some(view) = registry.get(agent) else {
        return Err(RegistryError::UnknownAgent { agent });
    };
    if view.status() != AgentStatus::Available {
        return Err(RegistryError::NotAvailable {
            agent,
            status: view.status(),
        });
    }
    if view.running() >= view.max_tasks() {
        return Err(RegistryError::NoFreeSlot {
            agent,
            running: view.running(),
            max_tasks: view.max_tasks(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ByTask;
    use crate::id::TaskId;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/by_task.txt"))]

        /// Items handed out by task, whatever their order, missing ones and
        /// repeats: each task gets its first item if it comes in order, else an item
        /// of its own, and no item is handed out twice.
        #[test]
        fn each_task_gets_its_own_item_once(
            items in proptest::collection::vec(0u64..12, 0..12),
            asked in proptest::collection::vec(0u64..12, 0..16),
        ) {
            let mut items: Vec<(u64, usize)> = items.into_iter().enumerate().map(|(i, t)| (t, i)).collect();
            let all = items.clone();
            let mut by = ByTask::new(&mut items, |&(t, _)| TaskId::new(t));
            let mut given = Vec::new();
            for &t in &asked {
                if let Some(&mut (task, at)) = by.take(TaskId::new(t)) {
                    prop_assert_eq!(task, t);
                    prop_assert!(!given.contains(&at), "item {} handed out twice", at);
                    given.push(at);
                } else {
                    // None for it: each of its items was handed out already, unless
                    // it has several (an assigner's repeat: one of them is its item).
                    let left = all.iter().filter(|&&(task, at)| task == t && !given.contains(&at)).count();
                    let of_t = all.iter().filter(|&&(task, _)| task == t).count();
                    prop_assert!(left == 0 || of_t > 1, "task {} has an item left", t);
                }
            }
        }
    }

    #[test]
    fn in_order_then_out_of_order() {
        let mut items = vec![(1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')];
        let mut by = ByTask::new(&mut items, |&(t, _)| TaskId::new(t));
        assert_eq!(by.take(TaskId::new(1)).map(|i| i.1), Some('a'));
        assert_eq!(by.take(TaskId::new(3)).map(|i| i.1), Some('c'));
        assert_eq!(by.take(TaskId::new(2)).map(|i| i.1), Some('b'));
        assert_eq!(by.take(TaskId::new(2)), None);
        assert_eq!(by.take(TaskId::new(9)), None);
        assert_eq!(by.take(TaskId::new(4)).map(|i| i.1), Some('d'));
        assert_eq!(by.take(TaskId::new(4)), None);
    }
}
