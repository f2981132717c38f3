//! The policies' say in an assignment: `PolicyAdmission`, the [`Admission`] the core
//! hands the assigner. It asks the host's policies about each (task, agent) pair,
//! with the placements the batch accepted so far counted as pending, and holds back
//! what the communications stop gates before any policy is asked.
//!
//! Separate from the batch procedure in `core.rs` because it is the one seam between
//! the assigner and the policies: what a placement must pass lives here; how a batch
//! is analyzed, predicted and committed lives there.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::agent::AgentRegistry;
use crate::assignment::{Admission, Fleet, Placement, Refusal};
use crate::clock::Timestamp;
use crate::id::{AgentId, TaskId};
use crate::policy::{DutyLog, PendingBatch, PolicyContext, PolicyEnforcer, SystemMode, Violation};
use crate::resource::ResourceLedger;
use crate::task::Task;

use super::comms::CommunicationsStop;

/// Asks the policies about each (task, agent) pair, counting the batch's accepted
/// placements as pending.
///
/// It borrows the parts of the core's state the policies read, not the whole state:
/// the core lends it the batch's proposals (kept between batches for their capacity)
/// beside them, where taking them out of the state and putting them back moved the
/// whole list's header twice per batch.
pub(super) struct PolicyAdmission<'a> {
    pub(super) policies: &'a dyn PolicyEnforcer,
    pub(super) registry: &'a AgentRegistry,
    pub(super) ledger: &'a ResourceLedger,
    pub(super) mode: SystemMode,
    pub(super) duties: &'a DutyLog,
    pub(super) comms: Option<&'a CommunicationsStop>,
    /// The fleet handed to the assigner, refreshed from `registry` for the batch.
    pub(super) fleet: &'a Fleet,
    /// The external capabilities, for the communications stop.
    pub(super) external: &'a [crate::id::Capability],
    pub(super) group: Option<&'a Arc<str>>,
    /// Proposals accepted so far.
    pub(super) pending: &'a mut PendingBatch,
    /// Warnings per task.
    pub(super) warnings: BTreeMap<TaskId, Vec<Violation>>,
    pub(super) now: Timestamp,
}

impl Admission for PolicyAdmission<'_> {
    fn admit(
        &mut self,
        task: &Task,
        agent: AgentId,
        accepted: &[Placement],
    ) -> Result<(), Refusal> {
        self.admit_as(task, agent, accepted, false)
    }

    /// The assigner's filters read the fleet the core refreshed from the registry
    /// the policies read, just before the batch: what they passed there holds for
    /// the policies too. Only of that fleet: a host's assigner may filter a fleet of
    /// its own making.
    fn admit_filtered(
        &mut self,
        task: &Task,
        agent: AgentId,
        accepted: &[Placement],
        fleet: &Fleet,
    ) -> Result<(), Refusal> {
        let ours = std::ptr::eq(fleet, self.fleet);
        self.admit_as(task, agent, accepted, ours)
    }
}

impl PolicyAdmission<'_> {
    /// [`Admission::admit`], or with `filtered`, [`Admission::admit_filtered`].
    fn admit_as(
        &mut self,
        task: &Task,
        agent: AgentId,
        accepted: &[Placement],
        filtered: bool,
    ) -> Result<(), Refusal> {
        // Placements the assigner accepted since we last looked were admitted by us.
        self.pending.truncate(accepted.len());
        // The communications stop holds the task back before any policy is asked:
        // it is the core's gate, whatever the host's policies say.
        if let Some(stop) = self.comms {
            if let Some(capability) = super::comms::gated(Some(stop), self.external, task) {
                return Err(Refusal::new(
                    task.id(),
                    agent,
                    super::comms::COMMUNICATIONS_GATE,
                    super::comms::refusal_message(stop, capability),
                ));
            }
        }
        // Made where it stays if admitted, and checked against the placements before
        // it.
        self.pending.propose(task, agent, self.group);
        let Some((proposal, before)) = self.pending.split_last() else {
            unreachable!("a proposal was just pushed");
        };
        let ctx = PolicyContext::new(self.registry, self.ledger)
            .with_mode(self.mode)
            .with_duties(self.duties)
            .with_pending_batch(before, self.pending)
            .with_now(self.now);
        let ctx = if filtered {
            ctx.with_filtered(task.id(), agent)
        } else {
            ctx
        };
        let violations = self.policies.validate(proposal, &ctx);
        if let Some(v) = violations.iter().find(|v| v.is_blocking()) {
            self.pending.retract_last();
            return Err(Refusal::new(
                task.id(),
                agent,
                v.rule.clone(),
                v.message.clone(),
            ));
        }
        // Only findings are kept (an empty entry would cost an allocation per task);
        // a task admitted again (an assigner that backtracks) keeps its last ones.
        if violations.is_empty() {
            self.warnings.remove(&task.id());
        } else {
            self.warnings.insert(task.id(), violations);
        }
        Ok(())
    }
}
