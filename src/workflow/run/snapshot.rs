//! [`RunSnapshot`]: a [`Run`] as plain serde data, and [`Run::restore`], which
//! checks a snapshot against its workflow before continuing the run.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Run, RunEvent, StepStatus};
use crate::clock::Timestamp;
use crate::id::{AgentId, TaskId};
use crate::workflow::Workflow;
use crate::workflow::definition::RunCondition;
use crate::workflow::error::WorkflowError;

/// The version [`Run::snapshot`] writes and [`Run::restore`] reads (it reads version
/// 1 too: it had no task bindings, and its running steps are restored as running).
pub const RUN_SNAPSHOT_VERSION: u32 = 2;

/// One step's state in a [`RunSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepState {
    /// The step's name.
    pub name: String,
    /// Its status.
    pub status: StepStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// The agent of the latest attempt.
    pub agent: Option<AgentId>,
    /// When a running attempt times out, or when a backing-off step is ready again.
    pub deadline: Option<Timestamp>,
    /// The outputs of a succeeded step.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// The coordinator's task of a ready step waiting for an agent, or of a running
    /// attempt ([`Run::bind`]): what a resumed run finds again in the coordinator.
    /// [`Run::restore`] refuses one on a step of any other status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
}

/// Everything a [`Run`] knows, as plain serde data: persist it, and [`Run::restore`]
/// continues the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunSnapshot {
    /// [`RUN_SNAPSHOT_VERSION`] when written.
    pub version: u32,
    /// The workflow's name.
    pub workflow: String,
    /// A hash of the workflow's shape (names, dependencies, conditions, attempts), to
    /// refuse a snapshot of a different workflow with the same name.
    pub fingerprint: u64,
    /// The run's id.
    pub id: String,
    /// The run's seed.
    pub seed: u64,
    /// The latest time the run was told about.
    pub taken_at: Timestamp,
    /// Whether the run was cancelled.
    pub cancelled: bool,
    /// Every step, in definition order.
    pub steps: Vec<StepState>,
    /// The ready steps, in dispatch order.
    pub ready: Vec<String>,
    /// The evidence history.
    pub history: Vec<RunEvent>,
}

impl Run {
    /// The run's state as plain data. O(V + history).
    pub fn snapshot(&self) -> RunSnapshot {
        let inner = self.workflow.inner();
        RunSnapshot {
            version: RUN_SNAPSHOT_VERSION,
            workflow: inner.name.clone(),
            fingerprint: inner.fingerprint,
            id: self.id.clone(),
            seed: self.seed,
            taken_at: self.last_now,
            cancelled: self.cancelled,
            steps: (0..self.status.len())
                .map(|i| StepState {
                    name: inner.names[i].to_string(),
                    status: self.status[i],
                    attempts: self.attempts[i],
                    agent: self.agent[i],
                    // `MAX` means none, but for a back-off or a timed attempt that
                    // saturated there (they have a deadline: the end of time).
                    deadline: (self.deadline[i] != Timestamp::MAX
                        || self.status[i] == StepStatus::BackingOff
                        || (self.status[i] == StepStatus::Running && inner.timeouts[i].is_some()))
                    .then_some(self.deadline[i]),
                    outputs: self.outputs[i].clone().unwrap_or_default(),
                    task: self.task[i],
                })
                .collect(),
            ready: self
                .ready()
                .into_iter()
                .map(|s| inner.names[s.index()].to_string())
                .collect(),
            history: self.history.clone(),
        }
    }

    /// Continues a run from its snapshot.
    ///
    /// # Restart rule
    /// A step that was `Running` in the snapshot is still running, with its agent,
    /// attempt, deadline and task binding: a restart is not a failure of the step or
    /// of its agent. The host settles each of [`running`](Self::running): the
    /// agent's answer if the work finished ([`finish`](Self::finish)), else
    /// [`interrupt`](Self::interrupt), which gives the attempt back without using it
    /// up ([`Executor::resume`](crate::workflow::Executor::resume) asks the agents and does
    /// this). Finished steps are never repeated; ready and backing-off steps keep
    /// their order, deadlines and bindings.
    ///
    /// # Errors
    /// [`WorkflowError::CorruptSnapshot`] naming the problem: another version, another
    /// workflow (name, fingerprint or steps), or a state the engine could not have
    /// reached (a step started before its dependencies finished, a ready list that does
    /// not match the statuses, more attempts than allowed, a deadline past the
    /// snapshot's time plus the step's longest wait, a task bound to a step that
    /// neither waits nor runs, a history event later than the snapshot's time), or a
    /// run id the executor refuses (empty, too long, or with a control or invisible
    /// character).
    ///
    /// What the snapshot cannot tell is taken as written: the task a ready or
    /// running step names is checked against the coordinator by
    /// [`Executor::resume`](crate::workflow::Executor::resume) (a task it does not
    /// hold for the run is unbound, and the step dispatched again), and any time,
    /// [`Timestamp::MAX`] included, is a time the run may have been told.
    pub fn restore(workflow: &Workflow, snapshot: RunSnapshot) -> Result<Run, WorkflowError> {
        let inner = workflow.inner().clone();
        let corrupt = |reason: String| WorkflowError::CorruptSnapshot {
            workflow: inner.name.clone(),
            reason,
        };
        if !(1..=RUN_SNAPSHOT_VERSION).contains(&snapshot.version) {
            return Err(corrupt(format!(
                "version {} (expected {RUN_SNAPSHOT_VERSION})",
                snapshot.version
            )));
        }
        if snapshot.workflow != inner.name {
            return Err(corrupt(format!(
                "it is a run of workflow {:?}",
                snapshot.workflow
            )));
        }
        let n = inner.specs.len();
        if snapshot.steps.len() != n {
            return Err(corrupt(format!(
                "it has {} steps, not {n}",
                snapshot.steps.len()
            )));
        }
        if let Some((i, s)) = snapshot
            .steps
            .iter()
            .enumerate()
            .find(|(i, s)| *s.name != *inner.names[*i])
        {
            return Err(corrupt(format!(
                "step #{i} is {:?}, not {:?}",
                s.name, inner.names[i]
            )));
        }
        if snapshot.fingerprint != inner.fingerprint {
            return Err(corrupt(format!(
                "fingerprint {:#x} (expected {:#x})",
                snapshot.fingerprint, inner.fingerprint
            )));
        }

        // A run the executor would not have started under this id.
        crate::workflow::check_run_id(&snapshot.id).map_err(|e| corrupt(e.to_string()))?;
        let mut run = Run::blank(workflow, snapshot.id, snapshot.seed, snapshot.taken_at);
        run.cancelled = snapshot.cancelled;
        for (i, s) in snapshot.steps.iter().enumerate() {
            // A binding outlives neither the wait nor the attempt it names: the run
            // ends it whenever its step leaves `Ready` or `Running`, so one on another
            // step was written by someone else, and a resume would take the task it
            // names (perhaps another run's) for this run's.
            if let Some(task) = s.task {
                if !matches!(s.status, StepStatus::Ready | StepStatus::Running) {
                    return Err(corrupt(format!(
                        "step {:?} is {} but bound to {task}: only a waiting or running step has a task",
                        s.name, s.status
                    )));
                }
            }
            run.status[i] = s.status;
            run.attempts[i] = s.attempts;
            run.agent[i] = s.agent;
            run.task[i] = s.task;
        }
        // Counters and failure carriers, recomputed in topological order.
        for &i in &inner.topo {
            let u = i as usize;
            let s = &snapshot.steps[u];
            for &d in inner.predecessors(i) {
                let d = d as usize;
                let carries = run.deps[d].carries;
                let deps = &mut run.deps[u];
                if !run.status[d].is_terminal() {
                    deps.waiting += 1;
                } else if run.status[d] != StepStatus::Succeeded {
                    deps.not_ok += 1;
                }
                if carries {
                    deps.failing += 1;
                }
            }
            let condition = inner.conditions[u];
            let holds = run.holds(i);
            let max = inner.specs[u].retry().max_attempts();
            let name = &s.name;
            let decided = run.deps[u].waiting == 0;
            let bad = |what: &str| corrupt(format!("step {name:?} {what}"));
            if s.attempts > max {
                return Err(bad(&format!("has {} attempts (at most {max})", s.attempts)));
            }
            match s.status {
                StepStatus::Pending if decided && !run.cancelled => {
                    return Err(bad("is pending but its dependencies have finished"));
                }
                StepStatus::Pending if s.attempts > 0 => {
                    return Err(bad("has attempts but never started"));
                }
                StepStatus::Pending if run.cancelled => {
                    return Err(bad("is pending in a cancelled run"));
                }
                // Skipped by its condition: no attempt, and the condition did not hold.
                StepStatus::Skipped if s.attempts == 0 && (!decided || holds) => {
                    return Err(bad("is skipped but its condition holds or is undecided"));
                }
                // Skipped by its agent: an attempt, made once the condition held.
                StepStatus::Skipped if s.attempts > 0 && (!decided || !holds) => {
                    return Err(bad("was skipped by its agent before its condition held"));
                }
                StepStatus::Ready
                | StepStatus::Running
                | StepStatus::BackingOff
                | StepStatus::Succeeded
                | StepStatus::Failed
                    if !decided || !holds =>
                {
                    return Err(bad("ran before its run condition held"));
                }
                StepStatus::Ready | StepStatus::BackingOff if s.attempts >= max => {
                    return Err(bad("waits for an attempt it does not have"));
                }
                // (A step failed without an attempt was abandoned: nobody could take it.)
                StepStatus::Running | StepStatus::Succeeded | StepStatus::BackingOff
                    if s.attempts == 0 =>
                {
                    return Err(bad("finished or runs without an attempt"));
                }
                StepStatus::Running if s.agent.is_none() => {
                    return Err(bad("runs without an agent"));
                }
                StepStatus::BackingOff if s.deadline.is_none() => {
                    return Err(bad("backs off without a deadline"));
                }
                StepStatus::Cancelled if !run.cancelled => {
                    return Err(bad("is cancelled in a run that is not"));
                }
                StepStatus::Ready | StepStatus::Running | StepStatus::BackingOff
                    if run.cancelled =>
                {
                    return Err(bad("is still active in a cancelled run"));
                }
                _ => {}
            }
            if !s.outputs.is_empty() && s.status != StepStatus::Succeeded {
                return Err(bad("has outputs but did not succeed"));
            }
            match s.status {
                StepStatus::Failed => {
                    run.deps[u].carries = true;
                    run.failed += 1;
                }
                StepStatus::Skipped => {
                    let deps = &mut run.deps[u];
                    deps.carries = condition == RunCondition::AllSucceeded && deps.failing > 0;
                }
                _ => {}
            }
            if s.status.is_terminal() {
                run.terminal += 1;
            }
            // A deadline is set from a time the run was given, no later than the
            // snapshot's, plus at most the longest wait the step allows: one past
            // that would hold the run until a time the engine never set.
            let latest = match s.status {
                StepStatus::BackingOff => Some(inner.specs[u].retry().max_backoff()),
                StepStatus::Running => inner.timeouts[u],
                _ => None,
            }
            .map(|wait| snapshot.taken_at.saturating_add(wait));
            if let (Some(at), Some(latest)) = (s.deadline, latest) {
                if at > latest {
                    return Err(bad(&format!(
                        "waits until {at}, past {latest}: the snapshot's time and its longest wait"
                    )));
                }
            }
            match (s.status, s.deadline) {
                (StepStatus::BackingOff, Some(at)) => {
                    run.backing_off += 1;
                    run.deadline[u] = at;
                    run.timers.push(Reverse((at, i)));
                }
                // A timed attempt without a deadline was written before the end of
                // time was kept (its timeout had saturated there).
                (StepStatus::Running, at) if inner.timeouts[u].is_some() => {
                    let at = at.unwrap_or(Timestamp::MAX);
                    run.deadline[u] = at;
                    run.timers.push(Reverse((at, i)));
                }
                _ => {}
            }
        }
        let ready_total = run
            .status
            .iter()
            .filter(|&&s| s == StepStatus::Ready)
            .count();
        if snapshot.ready.len() != ready_total {
            return Err(corrupt(format!(
                "its ready list has {} steps but {ready_total} are ready",
                snapshot.ready.len()
            )));
        }
        for name in &snapshot.ready {
            let Some(&i) = inner.by_name.get(name.as_str()) else {
                return Err(corrupt(format!(
                    "its ready list names unknown step {name:?}"
                )));
            };
            if run.status[i as usize] != StepStatus::Ready || run.generation[i as usize] != 0 {
                return Err(corrupt(format!(
                    "its ready list holds step {name:?} twice or while not ready"
                )));
            }
            run.generation[i as usize] = 1;
            run.ready.push_back((i, 1));
        }
        run.ready_count = ready_total;
        for (i, s) in snapshot.steps.into_iter().enumerate() {
            run.outputs[i] = (!s.outputs.is_empty()).then_some(s.outputs);
        }
        if let Some(e) = snapshot.history.iter().find(|e| e.step.index() >= n) {
            return Err(corrupt(format!(
                "its history names {} of {n} steps",
                e.step
            )));
        }
        // Every event is recorded at a time the run was given, and the snapshot's
        // time is the latest of those. (Events may run backwards among themselves:
        // the run records a time that goes back as given, see `Run`'s rules.)
        if let Some((k, e)) =
            (snapshot.history.iter().enumerate()).find(|(_, e)| e.at > snapshot.taken_at)
        {
            return Err(corrupt(format!(
                "its history's event #{k} (step {:?}) is at {}, after the snapshot's time {}",
                inner.names[e.step.index()],
                e.at,
                snapshot.taken_at
            )));
        }
        run.history = snapshot.history;
        run.restored_history = run.history.len();
        run.tidy_timers();
        Ok(run)
    }
}
