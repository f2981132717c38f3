//! Policies: whether a proposed assignment may go ahead.
//!
//! Owns the [`PolicyEnforcer`] trait, the thing it validates ([`Proposal`]), what it
//! may look at ([`PolicyContext`], [`SystemMode`], [`DutyLog`]), what it reports
//! ([`Violation`], [`Severity`]) and the default enforcer, [`PolicySet`]: the built-in
//! rules as serde data (role and capability match, the 95% utilization cap, tasks per
//! agent, separation of duties, agent status, safe mode) plus any rules the host
//! writes as code. This is the "validate assignment" step of the agent assignment
//! procedure: `violations = policy_enforcer.validate_agent_assignment(assignment)`.
//!
//! Validation is pure: it reads the registry, the ledger and the duty log through
//! shared references and changes nothing, so the same inputs always give the same
//! violations, in the same order. Deciding what to do about them (refuse, try another
//! agent, alert) is the caller's business.
//!
//! This module sits below `assignment` and `coordinator`, which use it: it may import
//! `agent`, `task`, `resource` and the base modules (`clock`, `id`, ...), and must never
//! import `assignment`, `conflict`, `workflow` or `coordinator`.

mod context;
mod duties;
mod error;
mod proposal;
mod rules;
mod set;
mod violation;

pub(crate) use context::PendingBatch;
pub use context::{PolicyContext, SystemMode};
pub(crate) use duties::duty_key;
pub use duties::{AttemptEnd, DutyLog, DutyRecord};
pub use error::PolicyError;
pub use proposal::Proposal;
pub use rules::{
    AgentStatusRule, BUILTIN_ROLE, MaxTasksPerAgent, PolicyRule, RoleAndCapability, SafeModeRule,
    SeparationOfDuties, UtilizationCap,
};
pub use set::PolicySet;
pub use violation::{Severity, Violation, ViolationDetail};

use std::fmt;
use std::sync::Arc;

/// Decides whether a [`Proposal`] may go ahead, and if not, why.
///
/// [`PolicySet`] is the default. A host implements this trait for rules its data
/// cannot express, and adds them with [`PolicySet::with_custom`] or uses them alone.
///
/// # Contract
/// - `validate` is pure: it reads `proposal` and `ctx` and nothing else (no I/O, no
///   clock, no interior mutability that changes its answer).
/// - `validate` is deterministic: the same proposal and context give the same
///   violations, in the same order.
/// - An empty vector means the proposal is allowed. Violations below
///   [`Severity::Error`] are reported but do not block
///   ([`PolicyEnforcerExt::permits`]).
/// - Each violation names the proposal's agent and task.
/// - `validate` never panics, whatever the proposal and context hold (an agent
///   missing from the registry or the ledger is a violation or nothing, never a
///   panic).
///
/// # Examples
/// A rule that keeps a maintenance window free of deploys:
/// ```
/// use concord::agent::AgentRegistry;
/// use concord::policy::{
///     PolicyContext, PolicyEnforcer, PolicyEnforcerExt, Proposal, Severity, Violation,
/// };
/// use concord::{AgentId, ResourceLedger, TaskId};
///
/// #[derive(Debug)]
/// struct Freeze {
///     frozen: Vec<String>,
/// }
///
/// impl PolicyEnforcer for Freeze {
///     fn validate(&self, proposal: &Proposal, _: &PolicyContext<'_>) -> Vec<Violation> {
///         if !self.frozen.iter().any(|k| k == proposal.kind()) {
///             return Vec::new();
///         }
///         vec![Violation::new(
///             "freeze",
///             Severity::Error,
///             proposal.agent(),
///             proposal.task(),
///             format!("{} is a {} during the freeze", proposal.task(), proposal.kind()),
///         )]
///     }
///
///     // A freeze ends: a deploy waits for it instead of being rejected (the
///     // coordinator tries it again at its next tick).
///     fn refusal_waits(&self, rule: &str) -> bool {
///         rule == "freeze"
///     }
/// }
///
/// let freeze = Freeze { frozen: vec!["deploy".into()] };
/// let (registry, ledger) = (AgentRegistry::new(), ResourceLedger::new());
/// let ctx = PolicyContext::new(&registry, &ledger);
/// let deploy = Proposal::new(TaskId::new(1), "deploy", AgentId::new(1));
/// let docs = Proposal::new(TaskId::new(2), "documentation", AgentId::new(1));
/// assert_eq!(
///     freeze.validate(&deploy, &ctx)[0].to_string(),
///     "freeze (error): task#1 is a deploy during the freeze"
/// );
/// assert!(freeze.permits(&docs, &ctx));
/// assert!(freeze.refusal_waits("freeze"));
/// ```
pub trait PolicyEnforcer: fmt::Debug + Send + Sync {
    /// Every violation of the enforcer's policies by `proposal`, in a stable order;
    /// empty when it is allowed.
    fn validate(&self, proposal: &Proposal, ctx: &PolicyContext<'_>) -> Vec<Violation>;

    /// Whether the enforcer ever reads `duty` from the [`DutyLog`]: the coordinator
    /// records only the duties its policies read, which keeps the log (and the
    /// coordinator's snapshot) to what separation of duties needs, however many kinds
    /// of task a long run makes. The default, `true` for every duty, is always
    /// correct; [`PolicySet`] answers for its rules.
    ///
    /// A duty not recorded is not in the log a restored coordinator starts from
    /// either: restoring with policies that read more duties sees only what is
    /// recorded from then on.
    fn reads_duty(&self, duty: &str) -> bool {
        let _ = duty;
        true
    }

    /// Whether a refusal by `rule` means "not now" rather than "never": the task
    /// waits for capacity or for normal mode instead of being rejected. True by
    /// default for the rules about capacity and mode ([`UtilizationCap`],
    /// [`MaxTasksPerAgent`], [`SafeModeRule`]); a host's own rules say here if they
    /// are of that kind. Such a task is tried again at the coordinator's next
    /// completion or [`tick`](crate::coordinator::Coordinator::tick): a host whose
    /// rule reads something of its own (a drain, a freeze) ticks once that changes.
    ///
    /// A refusal that does not wait is about the task and that agent for good
    /// (separation of duties: the agent that deployed may never verify): the agent
    /// is barred for the task, which waits for the other agents and is rejected only
    /// once every agent that could take it is barred. The built-in agent-status rule
    /// is the exception: it speaks of the agent at the moment (busy, away), which
    /// the coordinator follows itself.
    fn refusal_waits(&self, rule: &str) -> bool {
        matches!(
            rule,
            UtilizationCap::NAME | MaxTasksPerAgent::NAME | SafeModeRule::NAME
        )
    }
}

#[cfg(test)]
fn _obj_safe(_: &dyn PolicyEnforcer, _: Arc<dyn PolicyEnforcer>) {}

impl<T: PolicyEnforcer + ?Sized> PolicyEnforcer for Arc<T> {
    fn validate(&self, proposal: &Proposal, ctx: &PolicyContext<'_>) -> Vec<Violation> {
        (**self).validate(proposal, ctx)
    }

    fn reads_duty(&self, duty: &str) -> bool {
        (**self).reads_duty(duty)
    }

    fn refusal_waits(&self, rule: &str) -> bool {
        (**self).refusal_waits(rule)
    }
}

impl<T: PolicyEnforcer + ?Sized> PolicyEnforcer for Box<T> {
    fn validate(&self, proposal: &Proposal, ctx: &PolicyContext<'_>) -> Vec<Violation> {
        (**self).validate(proposal, ctx)
    }

    fn reads_duty(&self, duty: &str) -> bool {
        (**self).reads_duty(duty)
    }

    fn refusal_waits(&self, rule: &str) -> bool {
        (**self).refusal_waits(rule)
    }
}

/// Conveniences for every [`PolicyEnforcer`], `dyn PolicyEnforcer` included.
pub trait PolicyEnforcerExt: PolicyEnforcer {
    /// Whether `proposal` may go ahead: no violation of severity
    /// [`Error`](Severity::Error) or above.
    fn permits(&self, proposal: &Proposal, ctx: &PolicyContext<'_>) -> bool;

    /// Only the violations that block `proposal` (severity
    /// [`Error`](Severity::Error) or above), in order.
    fn blocking(&self, proposal: &Proposal, ctx: &PolicyContext<'_>) -> Vec<Violation>;
}

impl<P: PolicyEnforcer + ?Sized> PolicyEnforcerExt for P {
    fn permits(&self, proposal: &Proposal, ctx: &PolicyContext<'_>) -> bool {
        !self
            .validate(proposal, ctx)
            .iter()
            .any(Violation::is_blocking)
    }

    fn blocking(&self, proposal: &Proposal, ctx: &PolicyContext<'_>) -> Vec<Violation> {
        let mut violations = self.validate(proposal, ctx);
        violations.retain(Violation::is_blocking);
        violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enforcers_are_send_sync() {
        fn f<T: Send + Sync>() {}
        f::<PolicySet>();
        f::<PolicyRule>();
        f::<PolicyContext<'static>>();
    }
}
