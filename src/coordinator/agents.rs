//! The agents' side of the core: agents registered, deregistered, rescaled and
//! changing status; the running tasks an agent leaving service hands back (per
//! [`OnAgentLoss`]); and the waiting work offered to an agent that gains room.
//!
//! Separate from `core.rs` because these commands change the fleet under the tasks
//! rather than the tasks themselves: each ends by handing work back to the queue
//! (`queue.rs`) or offering it room there.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::agent::{AgentProfile, AgentStatus, RegistryError};
use crate::assignment::Explanation;
use crate::clock::Timestamp;
use crate::id::{AgentId, RequestId, TaskId};
use crate::resource::{LedgerError, Resources};

use super::core::{Core, OnAgentLoss};
use super::error::CoordinatorError;
use super::event::{Assignment, EventKind, HandedBack, Notice};
use super::journal::Command;
use super::queue::WaitingTask;

/// The running tasks taken from an agent that left service, with the approvals that
/// let them run beside a holder.
struct Lost {
    tasks: Vec<Arc<Assignment>>,
    approved: Vec<(TaskId, TaskId)>,
}

/// The approvals (holder, waiter) naming one of `tasks` (in order), as the holder or
/// as the task approved to run beside it. A decision that let two tasks share a claim
/// still stands when either is only moved to another agent: they are kept before
/// the task is freed, which drops them.
fn approvals_of(approved: &BTreeSet<(TaskId, TaskId)>, tasks: &[TaskId]) -> Vec<(TaskId, TaskId)> {
    let named = |t: &TaskId| tasks.binary_search(t).is_ok();
    approved
        .iter()
        .filter(|(holder, waiter)| named(holder) || named(waiter))
        .copied()
        .collect()
}

impl Core {
    /// Registers an agent (and its declared capacity and task slots in the ledger).
    ///
    /// # Errors
    /// The registry's or the ledger's refusal (a duplicate id, an invalid profile);
    /// [`CoordinatorError::TimeWentBack`]; nothing changes.
    pub fn register_agent(
        &mut self,
        profile: AgentProfile,
        now: Timestamp,
    ) -> Result<(), CoordinatorError> {
        let cmd = self.recording().then(|| Command::RegisterAgent {
            profile: profile.clone(),
        });
        self.journaled(now, cmd, |c| c.register_agent_inner(profile, now))
    }

    fn register_agent_inner(
        &mut self,
        profile: AgentProfile,
        now: Timestamp,
    ) -> Result<(), CoordinatorError> {
        self.check_time(now)?;
        let s = &mut self.s;
        let capacity = profile.capacity().cloned().unwrap_or_default();
        // A taken id is the registry's error, whichever book would refuse it first:
        // a host matches one variant for "already registered".
        if s.registry.contains(profile.id()) {
            return Err(RegistryError::DuplicateAgent {
                agent: profile.id(),
            }
            .into());
        }
        if s.ledger.capacity(profile.id()).is_ok() {
            return Err(LedgerError::DuplicateAgent {
                agent: profile.id(),
            }
            .into());
        }
        let profile_id = profile.id();
        s.registry.register(profile.clone(), now)?;
        // The ledger counts the agent's tasks against its slots: a task waiting in
        // its queue is granted only where there is both room and a free slot.
        if let Err(e) = s.ledger.add_agent(profile.id(), &capacity).and_then(|()| {
            s.ledger
                .set_task_slots(profile.id(), Some(profile.max_tasks()))
        }) {
            // Keep the two in step: undo the registration (and the ledger's half).
            let _ = s.registry.deregister(profile.id());
            let _ = s.ledger.remove_agent(profile.id());
            return Err(e.into());
        }
        s.last_now = now;
        tracing::info!(agent.id = %profile.id(), agent.name = profile.name(), "agent registered");
        s.push(
            now,
            EventKind::AgentRegistered {
                profile: Box::new(profile),
            },
        );
        self.offer_room_on(profile_id, now);
        Ok(())
    }

    /// Removes an agent for good. Its running tasks are handed back first (waiting
    /// again, or failed, per [`OnAgentLoss`]); tasks waiting in the queue for it wait
    /// for the other agents, or are rejected when no other agent could ever take
    /// them. Returns its profile.
    ///
    /// # Errors
    /// [`CoordinatorError::UnknownAgent`]; [`CoordinatorError::TimeWentBack`]; nothing
    /// changes.
    pub fn deregister_agent(
        &mut self,
        agent: AgentId,
        now: Timestamp,
    ) -> Result<AgentProfile, CoordinatorError> {
        let cmd = self
            .recording()
            .then_some(Command::DeregisterAgent { agent });
        self.journaled(now, cmd, |c| c.deregister_agent_inner(agent, now))
    }

    fn deregister_agent_inner(
        &mut self,
        agent: AgentId,
        now: Timestamp,
    ) -> Result<AgentProfile, CoordinatorError> {
        self.check_time(now)?;
        if !self.s.registry.contains(agent) {
            return Err(CoordinatorError::UnknownAgent { agent });
        }
        self.s.last_now = now;
        // Waiting requests that name it leave the queue first (so that nothing it
        // frees is granted to it again), and are asked again, for the agents that
        // stay, once it is gone.
        let again = self.take_queued(agent, true, now);
        let mut grants = Vec::new();
        // Interrupted tasks too: with the agent gone, nothing is left to stop.
        let lost = self.take_tasks_of(agent, true, now, &mut grants);
        let profile = self.s.registry.deregister(agent)?;
        if let Err(e) = self.s.ledger.remove_agent(agent) {
            tracing::error!(agent.id = %agent, error = %e, "ledger kept a deregistered agent");
        }
        // What it did is no use once it is gone (an agent that comes back is
        // registered anew, under its own record from then on).
        self.s.fleet.affinity_mut().forget_agent(agent);
        tracing::info!(agent.id = %agent, "agent deregistered");
        self.s.push(now, EventKind::AgentDeregistered { agent });
        // Only now, with the agent gone, is its work handed to the others, the
        // tasks held for its release from quarantine included.
        let mut granted = Vec::new();
        self.give_back(lost, agent, false, true, now, &mut granted);
        self.requeue_held(agent, now, &mut granted);
        for w in again {
            self.requeue(w, now, &mut granted);
        }
        grants.extend(self.s.ledger.drain(now));
        self.serve(grants, granted, now);
        Ok(profile)
    }

    /// Changes an agent's capacity (its host scaled it up or down), in the registry
    /// and the ledger together. Waiting tasks that now fit start.
    ///
    /// # Errors
    /// [`RegistryError::UnknownAgent`] (as [`CoordinatorError::Registry`]);
    /// [`LedgerError::CapacityBelowAllocated`] if it holds more now than the new
    /// capacity; [`CoordinatorError::TimeWentBack`]; nothing changes.
    pub fn set_agent_capacity(
        &mut self,
        agent: AgentId,
        capacity: Resources,
        now: Timestamp,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        let cmd = self.recording().then(|| Command::SetAgentCapacity {
            agent,
            capacity: capacity.clone(),
        });
        self.journaled(now, cmd, |c| {
            c.set_agent_capacity_inner(agent, capacity, now)
        })
    }

    fn set_agent_capacity_inner(
        &mut self,
        agent: AgentId,
        capacity: Resources,
        now: Timestamp,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        self.check_time(now)?;
        if !self.s.registry.contains(agent) {
            return Err(RegistryError::UnknownAgent { agent }.into());
        }
        // The ledger refuses a capacity below the holdings: asked first, so that a
        // refusal changes nothing.
        self.s.ledger.set_capacity(agent, &capacity)?;
        self.s.registry.set_capacity(agent, capacity.clone())?;
        self.s.last_now = now;
        tracing::info!(agent.id = %agent, capacity = %capacity, "agent capacity changed");
        self.s
            .push(now, EventKind::AgentCapacityChanged { agent, capacity });
        Ok(self.offer_room_on(agent, now))
    }

    /// Changes an agent's status (it must be a legal transition). Returns whether it
    /// changed: setting the status it already has (quarantine twice) changes nothing
    /// and says so with `false`. An agent leaving service (offline, unhealthy or
    /// quarantined) hands its running tasks back ([`OnAgentLoss`],
    /// [`EventKind::TaskHandedBack`]).
    ///
    /// `busy` set by the host is a drain: the agent's running tasks go on, and it
    /// takes no new work, also when a slot frees, until the host sets it available
    /// (or another status). Setting busy an agent already busy because every slot is
    /// taken holds it so (`true`, with no event: its status does not change); setting
    /// available a held agent whose slots are still all taken lets go of the hold
    /// (`true`, no event), and it is available again when a slot frees.
    ///
    /// Quarantine by status is [`quarantine`](Self::quarantine) (its evidence kept,
    /// its running tasks handed back per [`OnQuarantine`](super::OnQuarantine)), and
    /// only [`release_quarantine`](Self::release_quarantine), an audited decision,
    /// takes an agent out of quarantine.
    ///
    /// # Errors
    /// The registry's refusal; [`CoordinatorError::StillQuarantined`] for an agent in
    /// quarantine; [`CoordinatorError::TimeWentBack`]; nothing changes.
    pub fn set_agent_status(
        &mut self,
        agent: AgentId,
        status: AgentStatus,
        now: Timestamp,
    ) -> Result<bool, CoordinatorError> {
        let cmd = self
            .recording()
            .then_some(Command::SetAgentStatus { agent, status });
        self.journaled(now, cmd, |c| c.set_agent_status_inner(agent, status, now))
    }

    fn set_agent_status_inner(
        &mut self,
        agent: AgentId,
        status: AgentStatus,
        now: Timestamp,
    ) -> Result<bool, CoordinatorError> {
        self.check_time(now)?;
        let from = self.s.registry.status(agent)?;
        if from == AgentStatus::Busy {
            // The host's busy is a hold (a drain): setting a busy agent busy holds it
            // as the host's, and setting a held one available while its slots are all
            // taken lets go of it, busy from its slots until one frees. Neither is a
            // change of status, so neither makes an event.
            let full = self
                .s
                .registry
                .get(agent)
                .is_some_and(|v| v.running() >= v.max_tasks());
            let hold = match status {
                AgentStatus::Busy => Some(true),
                AgentStatus::Available if full && self.s.registry.is_held_busy(agent)? => {
                    Some(false)
                }
                _ => None,
            };
            if let Some(hold) = hold {
                self.s.last_now = now;
                return Ok(self.s.registry.hold_busy(agent, hold, now)?);
            }
        }
        if from == status {
            return Ok(false);
        }
        // Out of quarantine only by a decision on record: a status set by hand would
        // put the agent back to work (or offline, and from there back) with none.
        if from == AgentStatus::Quarantined {
            return Err(CoordinatorError::StillQuarantined { agent, to: status });
        }
        if status == AgentStatus::Quarantined {
            self.quarantine_inner(agent, "quarantined by status", now)?;
            return Ok(true);
        }
        // Offline, unhealthy and quarantined agents are all out of service: their
        // running tasks are handed back (a quarantined agent is cut off from work it
        // already had as well as from new work).
        if status.is_in_service() {
            // Set available by the host: that ends a drain.
            self.set_status_in_service(agent, status, false, now)?;
        } else {
            // A drained agent taken offline is maintenance, not a failure.
            let planned = self.leave_service(agent, status, false, now)?;
            if matches!(status, AgentStatus::Offline | AgentStatus::Unhealthy) && !planned {
                self.note_agent_failure(agent, now);
            }
        }
        Ok(true)
    }

    /// Sets `agent`'s status to one in service, offering it the waiting work when
    /// it is available; with `keep_drain`, an agent the host drained before it left
    /// service comes back drained (see [`AgentRegistry::return_to_service`]).
    ///
    /// [`AgentRegistry::return_to_service`]: crate::agent::AgentRegistry::return_to_service
    pub(super) fn set_status_in_service(
        &mut self,
        agent: AgentId,
        status: AgentStatus,
        keep_drain: bool,
        now: Timestamp,
    ) -> Result<(), CoordinatorError> {
        self.change_status(agent, status, keep_drain, now)?;
        if status == AgentStatus::Available {
            self.offer_room_on(agent, now);
        }
        Ok(())
    }

    /// Takes `agent` out of service (`status`) and every running task from it:
    /// frees what each holds and, per [`OnAgentLoss`], queues it again or ends it as
    /// a failure, or (`hold`) holds it until the agent's quarantine is released. The
    /// agent's loss is not held against it or the task (no affinity or prediction
    /// is learned from it). Returns whether it was a planned outage (see
    /// [`change_status`](Self::change_status)).
    pub(super) fn leave_service(
        &mut self,
        agent: AgentId,
        status: AgentStatus,
        hold: bool,
        now: Timestamp,
    ) -> Result<bool, CoordinatorError> {
        let planned = self.change_status(agent, status, false, now)?;
        self.interrupt_driven(agent, now);
        let mut grants = Vec::new();
        let lost = self.take_tasks_of(agent, false, now, &mut grants);
        let mut unblocked = Vec::new();
        self.give_back(lost, agent, hold, true, now, &mut unblocked);
        self.serve(grants, unblocked, now);
        Ok(planned)
    }

    /// Interrupts the running tasks of driven groups on `agent`, which left service
    /// (see [`drive`](Self::drive)): each keeps what it holds, and its driver is told.
    fn interrupt_driven(&mut self, agent: AgentId, now: Timestamp) {
        if self.s.driven.is_empty() {
            return;
        }
        for task in self.s.tasks_on(agent) {
            let Some(a) = self.s.assignments.get(&task) else {
                continue;
            };
            let driven = (a.group.as_ref()).filter(|g| self.s.driven.contains(&***g));
            let Some(group) = driven.cloned() else {
                continue;
            };
            if !self.s.interrupted.insert(task) {
                // Interrupted already (offline, then quarantined): told once.
                continue;
            }
            tracing::info!(task.id = %task, agent.id = %agent, "task interrupted");
            self.s.push(now, EventKind::TaskInterrupted { task, agent });
            self.s
                .notify(Some(&group), Notice::Interrupted { task, agent });
        }
    }

    /// Hands back interrupted `task` once its driver has stopped its work (see
    /// [`drive`](Self::drive)): what it holds is freed, and it waits again or ends
    /// as a failure per [`OnAgentLoss`] (held for its agent's release if the agent
    /// is quarantined now), as a task taken from an agent that leaves service is.
    /// No notice is left for the driver, which has the answer.
    ///
    /// # Errors
    /// [`CoordinatorError::NotInterrupted`] if it runs and was not interrupted,
    /// [`CoordinatorError::TaskWaiting`] if it waits,
    /// [`CoordinatorError::UnknownTask`] if it neither runs nor waits;
    /// [`CoordinatorError::TimeWentBack`]; nothing changes.
    pub fn hand_back(
        &mut self,
        task: TaskId,
        now: Timestamp,
    ) -> Result<HandedBack, CoordinatorError> {
        let cmd = self.recording().then_some(Command::HandBack { task });
        self.journaled(now, cmd, |c| c.hand_back_inner(task, now))
    }

    fn hand_back_inner(
        &mut self,
        task: TaskId,
        now: Timestamp,
    ) -> Result<HandedBack, CoordinatorError> {
        self.check_time(now)?;
        let Some(agent) = self.s.assignments.get(&task).map(|a| a.agent) else {
            return Err(self.s.not_running(task));
        };
        if !self.s.interrupted.contains(&task) {
            return Err(CoordinatorError::NotInterrupted { task, agent });
        }
        self.s.last_now = now;
        let hold = self.s.registry.status(agent)? == AgentStatus::Quarantined;
        let approved = approvals_of(&self.s.approved, &[task]);
        let Some(a) = self.take_running_but_resources(task, now) else {
            return Err(self.s.not_running(task));
        };
        let allocation = a.allocation;
        let requeued = hold || self.parts.on_agent_loss == OnAgentLoss::Requeue;
        let mut unblocked = Vec::new();
        let lost = Lost {
            tasks: vec![a],
            approved,
        };
        self.give_back(lost, agent, hold, false, now, &mut unblocked);
        // Freed once it waits again, as old as it was: the slot goes to the oldest.
        let grants = self.s.ledger.release(allocation, now).unwrap_or_default();
        self.serve(grants, unblocked, now);
        Ok(if requeued {
            HandedBack::Requeued
        } else {
            HandedBack::Failed
        })
    }

    /// Sets `agent`'s status and says so in an event; returns whether the change
    /// is a planned outage (offline from a drain: busy, held by the host, the way
    /// a maintenance window takes an agent out). `keep_drain`: as
    /// [`set_status_in_service`](Self::set_status_in_service).
    fn change_status(
        &mut self,
        agent: AgentId,
        status: AgentStatus,
        keep_drain: bool,
        now: Timestamp,
    ) -> Result<bool, CoordinatorError> {
        let planned = status == AgentStatus::Offline
            && self.s.registry.status(agent)? == AgentStatus::Busy
            && self.s.registry.is_held_busy(agent)?;
        let back = !self.s.registry.status(agent)?.is_in_service();
        let from = if status == AgentStatus::Available && back {
            // Back into service: busy instead while interrupted work still holds
            // every slot. An agent in service stays refused with its slots full.
            self.s.registry.return_to_service(agent, keep_drain, now)?
        } else {
            self.s.registry.set_status(agent, status, now)?
        };
        let status = self.s.registry.status(agent)?;
        self.s.last_now = now;
        tracing::info!(agent.id = %agent, from = %from, to = %status, planned, "agent status changed");
        self.s.push(
            now,
            EventKind::AgentStatusChanged {
                agent,
                from,
                to: status,
                planned,
            },
        );
        Ok(planned)
    }

    /// Takes every running task off `agent`, freeing what each holds (see
    /// [`take_running`](Self::take_running)), in task order.
    fn take_tasks_of(
        &mut self,
        agent: AgentId,
        interrupted_too: bool,
        now: Timestamp,
        grants: &mut Vec<crate::resource::Grant>,
    ) -> Lost {
        let mut lost = self.s.tasks_on(agent);
        if !interrupted_too {
            lost.retain(|t| !self.s.interrupted.contains(t));
        }
        let approved = approvals_of(&self.s.approved, &lost);
        let tasks = lost
            .into_iter()
            .filter_map(|task| self.take_running(task, now, grants))
            .collect();
        Lost { tasks, approved }
    }

    /// Hands back the tasks taken from `agent`, which left service: the tasks
    /// blocked behind their claims queue again, and each queues again or ends as a
    /// failure per [`OnAgentLoss`], with an event, and with a notice to its group if
    /// `notify`.
    #[allow(clippy::too_many_arguments)]
    fn give_back(
        &mut self,
        lost: Lost,
        agent: AgentId,
        hold: bool,
        notify: bool,
        now: Timestamp,
        unblocked: &mut Vec<(crate::resource::Grant, RequestId)>,
    ) {
        let Lost { tasks, approved } = lost;
        for a in tasks {
            let task = a.task.id();
            unblocked.extend(self.s.unblock(task, now));
            let requeued = hold || self.parts.on_agent_loss == OnAgentLoss::Requeue;
            tracing::info!(task.id = %task, agent.id = %agent, requeued, "task handed back");
            self.s.push(
                now,
                EventKind::TaskHandedBack {
                    task,
                    agent,
                    requeued,
                },
            );
            if requeued {
                // The pairs it shares a claim in, with the other still running.
                for &(holder, waiter) in &approved {
                    let other = match task {
                        t if t == waiter => holder,
                        t if t == holder => waiter,
                        _ => continue,
                    };
                    if self.s.assignments.contains_key(&other) {
                        self.s.approved.insert((holder, waiter));
                    }
                }
                if notify {
                    self.s
                        .notify(a.group.as_ref(), Notice::Requeued { task, agent });
                }
                let a = Arc::unwrap_or_clone(a);
                let w = WaitingTask {
                    explanation: Explanation {
                        considered: 0,
                        ..Explanation::default()
                    },
                    task: a.task,
                    group: a.group,
                    behind: None,
                    // Its age in the queue: from when it first asked.
                    since: Some(a.waiting_since.unwrap_or(a.assigned_at)),
                    parked: None,
                    barred: Vec::new(),
                    barred_by: Vec::new(),
                };
                if hold {
                    // Held for the agent's release, off the queue: nothing else
                    // picks it up meanwhile.
                    let key = self.s.ledger.mint_request_id();
                    self.s.wait(
                        key,
                        WaitingTask {
                            parked: Some(super::queue::Parked::Held(agent)),
                            ..w
                        },
                    );
                } else {
                    self.requeue(w, now, unblocked);
                }
            } else if notify {
                self.s
                    .notify(a.group.as_ref(), Notice::Lost { task, agent });
            }
        }
    }

    /// `agent` has room it did not have (it joined, came back into service or was
    /// scaled up): the tasks queued for the others, those waiting in the ledger's
    /// queue, and those held off because no agent had room are offered it. Returns
    /// the tasks that started.
    fn offer_room_on(&mut self, agent: AgentId, now: Timestamp) -> Vec<Arc<Assignment>> {
        let granted = self.reoffer_queued(agent, now);
        let grants = self.s.ledger.drain(now);
        let mut assigned = self.serve(grants, granted, now);
        assigned.extend(self.retry_parked(now));
        assigned
    }

    /// Asks again, for an agent that came into service, the tasks waiting in the
    /// ledger's queue that do not name it (they were queued while it was away): each
    /// keeps its age, so it goes before the tasks queued after it.
    fn reoffer_queued(
        &mut self,
        agent: AgentId,
        now: Timestamp,
    ) -> Vec<(crate::resource::Grant, RequestId)> {
        let mut granted = Vec::new();
        for w in self.take_queued(agent, false, now) {
            self.requeue(w, now, &mut granted);
        }
        granted
    }

    /// Takes out of the ledger's queue, in its order, the waiting tasks whose
    /// requests name `agent` among their candidates (with `naming` false: those that
    /// do not), to be asked for again.
    fn take_queued(&mut self, agent: AgentId, naming: bool, now: Timestamp) -> Vec<WaitingTask> {
        let requests: Vec<RequestId> = self
            .s
            .ledger
            .waiting(now)
            .into_iter()
            .filter(|w| w.request.candidates().contains(&agent) == naming)
            .map(|w| w.id)
            .collect();
        let mut taken = Vec::new();
        for request in requests {
            if self.s.ledger.cancel(request).is_ok() {
                taken.extend(self.s.unwait(request));
            }
        }
        taken
    }
}
