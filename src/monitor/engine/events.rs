//! One coordinator [`Event`](crate::coordinator::Event) applied to the monitor: which
//! rows each kind of event changes. Apart from the rows themselves ([`tracking`]) so
//! that the mapping from the coordinator's events reads as one table.
//!
//! [`tracking`]: super::tracking

use crate::agent::AgentStatus;
use crate::clock::Timestamp;
use crate::coordinator::{Decider, EventKind};
use crate::id::TaskId;
use crate::resource::Resources;

use super::{Monitor, Phase};

impl Monitor {
    pub(super) fn apply(&mut self, kind: &EventKind, t: Timestamp) {
        match kind {
            EventKind::TaskAssigned { assignment: a } => {
                self.assigned(a.task.id(), a.agent, &a.resources, t);
            }
            EventKind::TaskCompleted {
                task,
                agent,
                success,
                usage,
            } => {
                let row = match self.stop(*task, t) {
                    Some((i, since, allocated)) => {
                        let took = t.as_nanos().saturating_sub(since.as_nanos()) as f64 / 1e9;
                        self.agents[i].durations.add(took);
                        self.win.durations.add(took);
                        if let Some(used) = usage {
                            self.record_usage(&allocated, used);
                        }
                        Some(i)
                    }
                    None => self.agent_row(*agent),
                };
                if *success {
                    self.win.tasks.succeeded += 1;
                } else {
                    self.win.tasks.failed += 1;
                }
                if let Some(i) = row {
                    let a = &mut self.agents[i];
                    a.present = true;
                    if *success {
                        a.succeeded += 1;
                    } else {
                        a.failed += 1;
                    }
                }
            }
            EventKind::TaskQueued { task, .. } => self.begin_wait(*task, Phase::Queued, true, t),
            EventKind::TaskBlocked { task, behind, .. } => {
                let holder = match self.tasks.get(behind).map(|l| l.phase) {
                    Some(Phase::Running(i)) => Some(i),
                    _ => None,
                };
                self.begin_wait(*task, Phase::Blocked(holder), true, t);
            }
            // Still its agent's until completed or handed back: nothing ends here.
            EventKind::TaskInterrupted { .. } => {}
            EventKind::TaskHandedBack {
                task,
                agent,
                requeued,
            } => {
                let row = match self.stop(*task, t) {
                    Some((i, ..)) => Some(i),
                    None => self.agent_row(*agent),
                };
                if *requeued {
                    // Counted as requeued, not as newly queued.
                    self.win.tasks.requeued += 1;
                    self.begin_wait(*task, Phase::Queued, false, t);
                } else {
                    self.win.tasks.lost += 1;
                    if let Some(i) = row {
                        self.agents[i].lost += 1;
                    }
                }
            }
            EventKind::TaskReleased { task, agent } => {
                let row = match self.stop(*task, t) {
                    Some((i, ..)) => Some(i),
                    None => self.agent_row(*agent),
                };
                self.win.tasks.released += 1;
                if let Some(i) = row {
                    self.agents[i].released += 1;
                }
            }
            EventKind::TaskRejected { task, .. } => {
                self.end_if_known(*task, t);
                self.win.tasks.rejected += 1;
            }
            EventKind::TaskDenied { task, .. } => {
                self.end_waiting(*task, t);
                self.win.tasks.denied += 1;
            }
            EventKind::TaskCancelled { task } => {
                self.end_waiting(*task, t);
                self.win.tasks.cancelled += 1;
            }
            EventKind::PolicyRefused { .. } => self.win.tasks.policy_refusals += 1,
            // What they change shows in the status changes and hand-backs that follow.
            EventKind::AgentQuarantined { .. }
            | EventKind::QuarantineReleased { .. }
            | EventKind::SafeModeTriggered { .. }
            | EventKind::SecurityBreachReported { .. }
            | EventKind::CommunicationsStopped { .. }
            | EventKind::CommunicationsResumed { .. } => {}
            EventKind::AgentRegistered { profile } => {
                let Some(i) = self.agent_row(profile.id()) else {
                    return;
                };
                let slots = profile.max_tasks();
                self.change_agent(i, t, |a| {
                    a.alive = true;
                    a.in_service = true;
                    a.slots = slots;
                });
                let capacity = profile.capacity().cloned().unwrap_or_default();
                self.set_capacity(i, capacity, t);
            }
            EventKind::AgentDeregistered { agent } => {
                let Some(i) = self.agent_row(*agent) else {
                    return;
                };
                self.change_agent(i, t, |a| {
                    a.alive = false;
                    a.in_service = false;
                });
                self.set_capacity(i, Resources::new(), t);
            }
            EventKind::AgentCapacityChanged { agent, capacity } => {
                if let Some(i) = self.agent_row(*agent) {
                    self.set_capacity(i, capacity.clone(), t);
                }
            }
            EventKind::AgentStatusChanged { agent, to, .. } => {
                if let Some(i) = self.agent_row(*agent) {
                    let to_service = matches!(to, AgentStatus::Available | AgentStatus::Busy);
                    // An agent that left (or was never seen to join) offers nothing,
                    // whatever its status says.
                    self.change_agent(i, t, |a| a.in_service = to_service && a.alive);
                }
            }
            EventKind::ModeChanged { .. } => {}
            EventKind::ConflictDetected { conflict, .. } => {
                let id = conflict.id();
                if self.conflicts.contains_key(&id) {
                    return;
                }
                self.win.detected += 1;
                if self.conflicts.len() < self.config.max_open_conflicts() {
                    self.conflicts.insert(id, t);
                } else {
                    self.win.ingest.untracked_conflicts += 1;
                }
            }
            EventKind::ConflictEscalated { .. } => self.win.escalated += 1,
            EventKind::ConflictDecided { conflict, by, .. } => {
                self.close_conflict(*conflict, t);
                self.win.decided += 1;
                if *by == Decider::Default {
                    self.win.decided_by_default += 1;
                }
            }
            EventKind::ConflictResolved { conflict } => {
                self.close_conflict(*conflict, t);
                self.win.resolved += 1;
            }
        }
    }

    /// A rejection may come for a task never seen waiting (refused at once).
    fn end_if_known(&mut self, task: TaskId, t: Timestamp) {
        if self.tasks.contains_key(&task) {
            self.end_waiting(task, t);
        }
    }
}
