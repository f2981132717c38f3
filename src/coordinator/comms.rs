//! "Stop external communications": the security breach procedure's mode in which
//! every task that needs an external capability (sending mail, calling a webhook,
//! reaching the internet) waits, with the reason, until a person or the orchestrator
//! resumes communications.
//!
//! It is a gate of the core's, beside the policies rather than one of them: a host's
//! policy set is its own to replace, and a breach must not find the gate removed with
//! it. A gated task is not refused for good; it waits, held off the ledger's queue
//! ([`Parked::Communications`]), and is asked for again when communications resume.
//! Which capabilities are external is the host's setting
//! ([`CoordinatorBuilder::external_capabilities`](super::CoordinatorBuilder::external_capabilities)).
//! Tasks already running are not interrupted: cutting their connections is the
//! host's part of the procedure.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::id::{Capability, RequestId, TaskId};
use crate::task::Task;

use super::core::{Core, State};
use super::error::CoordinatorError;
use super::event::{AssignOutcome, Assignment, Decider, EventKind};
use super::journal::Command;
use super::queue::{Parked, WaitingTask};

/// The name the gate's refusals carry, as a policy's would ([`Refusal::rule`](crate::assignment::Refusal)).
pub const COMMUNICATIONS_GATE: &str = "external_communications";

/// The capabilities that count as external by default: `email`, `external`,
/// `internet`, `network`, `webhook`.
pub const DEFAULT_EXTERNAL_CAPABILITIES: [&str; 5] =
    ["email", "external", "internet", "network", "webhook"];

/// External communications are stopped: since when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CommunicationsStop {
    /// Why, as given to [`Core::stop_communications`].
    pub reason: String,
    /// When they stopped.
    pub since: Timestamp,
}

/// The default external capabilities, parsed.
pub(super) fn default_external() -> Vec<Capability> {
    DEFAULT_EXTERNAL_CAPABILITIES
        .iter()
        .map(|c| Capability::new(c).unwrap_or_else(|_| unreachable!("valid capability {c}")))
        .collect()
}

/// The capability of `task` that the stop holds back, if communications are stopped
/// and it needs one (`external` sorted, as the task's capabilities are).
pub(super) fn gated<'a>(
    stop: Option<&CommunicationsStop>,
    external: &[Capability],
    task: &'a Task,
) -> Option<&'a Capability> {
    stop?;
    task.requirements()
        .capabilities()
        .iter()
        .find(|c| external.binary_search(c).is_ok())
}

/// Why a task held by the stop waits, in words.
pub(super) fn refusal_message(stop: &CommunicationsStop, capability: &Capability) -> String {
    format!(
        "external communications are stopped ({}); the task needs `{capability}`",
        stop.reason
    )
}

impl Core {
    /// Whether external communications are stopped, and since when and why.
    pub fn communications(&self) -> Option<&CommunicationsStop> {
        self.s.comms.as_ref()
    }

    /// The capabilities that count as external, sorted.
    pub fn external_capabilities(&self) -> &[Capability] {
        &self.parts.external
    }

    /// The capability of `task` the stop holds back, if any.
    pub(super) fn comms_gate<'a>(&self, task: &'a Task) -> Option<&'a Capability> {
        gated(self.s.comms.as_ref(), &self.parts.external, task)
    }

    /// Stops external communications, as `by` decided and why: from now on, every task that needs an
    /// external capability waits ([`Parked::Communications`]) until
    /// [`resume_communications`](Self::resume_communications). Returns `false` when
    /// they were already stopped (the first reason stands).
    ///
    /// # Errors
    /// [`CoordinatorError::TimeWentBack`]; nothing changes.
    pub fn stop_communications(
        &mut self,
        by: Decider,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, CoordinatorError> {
        // Kept as a note: one line, bounded (see `MAX_NOTE_LEN`), as recorded.
        let reason = &crate::id::note(reason);
        let cmd = self.recording().then(|| Command::StopCommunications {
            by,
            reason: reason.to_owned(),
        });
        self.journaled(now, cmd, |c| c.stop_communications_inner(by, reason, now))
    }

    fn stop_communications_inner(
        &mut self,
        by: Decider,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, CoordinatorError> {
        self.check_time(now)?;
        if self.s.comms.is_some() {
            return Ok(false);
        }
        self.s.last_now = now;
        tracing::warn!(%by, reason, "external communications stopped");
        self.s.comms = Some(CommunicationsStop {
            reason: reason.to_owned(),
            since: now,
        });
        self.s.push(
            now,
            EventKind::CommunicationsStopped {
                by,
                reason: reason.to_owned(),
            },
        );
        Ok(true)
    }

    /// Resumes external communications, as `by` decided and why (an audited
    /// decision, like a quarantine's release): the tasks that waited for them are
    /// asked for again, and those that can start now are returned.
    ///
    /// # Errors
    /// [`CoordinatorError::CommunicationsNotStopped`];
    /// [`CoordinatorError::TimeWentBack`]. Then nothing changes.
    pub fn resume_communications(
        &mut self,
        by: Decider,
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        // Kept as a note: one line, bounded (see `MAX_NOTE_LEN`), as recorded.
        let reason = &crate::id::note(reason);
        let cmd = self.recording().then(|| Command::ResumeCommunications {
            by,
            reason: reason.to_owned(),
        });
        self.journaled(now, cmd, |c| c.resume_communications_inner(by, reason, now))
    }

    fn resume_communications_inner(
        &mut self,
        by: Decider,
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<Arc<Assignment>>, CoordinatorError> {
        self.check_time(now)?;
        if self.s.comms.is_none() {
            return Err(CoordinatorError::CommunicationsNotStopped);
        }
        self.s.last_now = now;
        self.s.comms = None;
        let held = self.s.held_for_communications();
        tracing::info!(%by, reason, tasks = held.len(), "external communications resumed");
        self.s.push(
            now,
            EventKind::CommunicationsResumed {
                by,
                reason: reason.to_owned(),
                tasks: held.iter().map(|(_, t)| *t).collect(),
            },
        );
        Ok(self.retry_parked_keys(held.into_iter().map(|(k, _)| k).collect(), now))
    }

    /// Holds `task`, which needs external `capability` while communications are
    /// stopped: it waits, off the ledger's queue, for them to resume; or, when no
    /// registered agent could ever take it, it is rejected as any such task is.
    pub(super) fn wait_for_communications(
        &mut self,
        task: Task,
        mut explanation: crate::assignment::Explanation,
        group: Option<&Arc<str>>,
        since: Option<Timestamp>,
        now: Timestamp,
    ) -> AssignOutcome {
        let id = task.id();
        if !self.s.could_ever_take(&task) {
            self.s.reject(id, None, explanation.clone(), now);
            return AssignOutcome::Rejected {
                task: id,
                explanation: Box::new(explanation),
                refusals: Vec::new(),
            };
        }
        // No agent was weighed: the gate held the task before any could be.
        explanation.winner = None;
        let key = self.s.ledger.mint_request_id();
        tracing::debug!(task.id = %id, "task waits for external communications");
        self.s.push(
            now,
            EventKind::TaskQueued {
                task: id,
                request: key,
                explanation: Box::new(explanation.clone()),
            },
        );
        self.s.wait(
            key,
            WaitingTask {
                task,
                group: group.cloned(),
                explanation: explanation.clone(),
                behind: None,
                since: Some(since.unwrap_or(now)),
                parked: Some(Parked::Communications),
                barred: Vec::new(),
                barred_by: Vec::new(),
            },
        );
        AssignOutcome::Queued {
            task: id,
            request: key,
            explanation: Box::new(explanation),
        }
    }
}

impl State {
    /// The tasks waiting for communications to resume, with their keys, in key order.
    pub(super) fn held_for_communications(&self) -> Vec<(RequestId, TaskId)> {
        self.waiting
            .iter()
            .filter(|(_, w)| w.parked == Some(Parked::Communications))
            .map(|(k, w)| (*k, w.task.id()))
            .collect()
    }
}
