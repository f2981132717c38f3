//! [`Proposal`]: a task offered to an agent, the thing policies validate.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::id::{AgentId, TaskId};
use crate::resource::Resources;
use crate::task::{KeptShares, Requirements, Task};

/// "Give this task to this agent, with these resources": what an assigner proposes
/// and a [`PolicyEnforcer`](super::PolicyEnforcer) validates before anything is
/// allocated.
///
/// It carries what the rules look at: the task's id, kind and [`Requirements`]; the
/// agent; the resources to be allocated (the requirements' resources unless set
/// otherwise, for example to a predictor's estimate); and, for separation of duties,
/// the `group` the task belongs to (a workflow run, a batch) and the `duty` it
/// performs there (the task's kind unless set otherwise).
///
/// Defined in `policy` rather than `assignment` because policies sit below the
/// assigners that use them. Plain serde data.
///
/// ```
/// use concord::policy::Proposal;
/// use concord::{AgentId, Requirements, Task, TaskId};
///
/// let task = Task::new(TaskId::new(9), "screenshot", "capture the landing page")
///     .with_requirements(Requirements::new().with_resources("cpu=500m".parse()?));
/// let proposal = Proposal::for_task(&task, AgentId::new(3))
///     .with_resources("cpu=700m".parse()?) // the predicted need
///     .with_group("deploy-run-42")
///     .with_duty("verify");
/// assert_eq!(proposal.kind(), "screenshot");
/// assert_eq!(proposal.duty(), "verify");
/// assert_eq!(proposal.resources().cpu_millis(), 700);
/// assert_eq!(proposal.requirements().resources().cpu_millis(), 500);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    task: TaskId,
    kind: Arc<str>,
    agent: AgentId,
    #[serde(default)]
    requirements: Requirements,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duty: Option<String>,
}

impl Proposal {
    /// Task `task` of `kind` to `agent`, with no requirements, no group, and the kind as
    /// its duty.
    pub fn new(task: TaskId, kind: impl Into<Arc<str>>, agent: AgentId) -> Self {
        Proposal {
            task,
            kind: kind.into(),
            agent,
            requirements: Requirements::new(),
            resources: None,
            group: None,
            duty: None,
        }
    }

    /// `task` to `agent`: its id, kind and requirements.
    pub fn for_task(task: &Task, agent: AgentId) -> Self {
        Proposal::new(task.id(), task.shared_kind(), agent)
            .with_requirements(task.requirements().clone())
    }

    /// [`for_task`](Self::for_task) in `group`: what the coordinator asks the policies
    /// about, for a direct assignment and for a grant served from the queue alike
    /// (the task's requirements hold the predicted resources, so they are the ones to
    /// be allocated); built in place (the builder steps each moved the whole
    /// proposal).
    pub(crate) fn for_admission(task: &Task, agent: AgentId, group: Option<Arc<str>>) -> Self {
        Proposal {
            task: task.id(),
            kind: task.shared_kind(),
            agent,
            requirements: task.requirements().clone(),
            resources: None,
            group,
            duty: None,
        }
    }

    /// Makes this proposal what [`for_admission`](Self::for_admission) would make,
    /// reusing what it holds: the kind is kept when it is the same text and the group
    /// when it is the same name (no reference count to move); the kind and the
    /// requirements' lists written over trade places with those in `kept`.
    pub(crate) fn refill_for_admission(
        &mut self,
        task: &Task,
        agent: AgentId,
        group: Option<&Arc<str>>,
        kept: &mut KeptShares,
    ) {
        self.task = task.id();
        kept.share_kind(&mut self.kind, task.kind_arc());
        self.agent = agent;
        (self.requirements).clone_from_kept(task.requirements(), Some(kept));
        self.resources = None;
        crate::task::share_from(&mut self.group, group);
        self.duty = None;
    }

    /// Sets the task's requirements.
    pub fn with_requirements(mut self, requirements: Requirements) -> Self {
        self.requirements = requirements;
        self
    }

    /// Sets the resources to be allocated, in place of the requirements' own (a
    /// predictor's estimate, say).
    pub fn with_resources(mut self, resources: Resources) -> Self {
        self.resources = Some(resources);
        self
    }

    /// Sets the group the task belongs to (a workflow run, a batch), within which
    /// separation of duties applies.
    pub fn with_group(mut self, group: impl Into<Arc<str>>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Sets the duty the task performs in its group, in place of its kind.
    pub fn with_duty(mut self, duty: impl Into<String>) -> Self {
        self.duty = Some(duty.into());
        self
    }

    /// The task.
    pub fn task(&self) -> TaskId {
        self.task
    }

    /// The task's kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The agent.
    pub fn agent(&self) -> AgentId {
        self.agent
    }

    /// The task's requirements.
    pub fn requirements(&self) -> &Requirements {
        &self.requirements
    }

    /// The resources to be allocated: those set by
    /// [`with_resources`](Self::with_resources), else the requirements'.
    pub fn resources(&self) -> &Resources {
        self.resources
            .as_ref()
            .unwrap_or_else(|| self.requirements.resources())
    }

    /// The group, if any.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// The duty: the one set by [`with_duty`](Self::with_duty), else the task's kind.
    pub fn duty(&self) -> &str {
        self.duty.as_deref().unwrap_or(&self.kind)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::id::{Capability, Role};

    proptest! {
        /// A proposal written over, again and again, is what a new one would be,
        /// whatever it held: shared or equal-but-distinct names and lists, groups or
        /// none.
        #[test]
        fn a_refilled_proposal_is_a_new_one(
            picks in proptest::collection::vec((0usize..4, 0usize..4, 0usize..4, 0u64..3), 1..12),
        ) {
            let kinds: [Arc<str>; 4] = ["deploy".into(), "deploy".into(), "check".into(), "".into()];
            let groups: [Option<Arc<str>>; 4] = [None, Some("run-1".into()), Some("run-1".into()), Some("run-2".into())];
            let ops = Requirements::new().with_role(Role::new("ops").unwrap());
            let needs = [
                Requirements::new(),
                ops.clone(),
                ops.clone().with_capability(Capability::new("browser").unwrap()),
                Requirements::new()
                    .with_role(Role::new("ops").unwrap())
                    .with_resources("cpu=1,gpu=2,tpu=1".parse().unwrap()),
            ];
            let mut kept: Option<Proposal> = None;
            let mut kept_shares = KeptShares::default();
            for (i, (k, g, r, agent)) in picks.into_iter().enumerate() {
                let task = Task::new(TaskId::new(i as u64), Arc::clone(&kinds[k]), "work")
                    .with_requirements(needs[r].clone());
                let agent = AgentId::new(agent);
                let fresh = Proposal::for_admission(&task, agent, groups[g].clone());
                match kept.as_mut() {
                    Some(p) => p.refill_for_admission(&task, agent, groups[g].as_ref(), &mut kept_shares),
                    None => kept = Some(fresh.clone()),
                }
                prop_assert_eq!(kept.as_ref(), Some(&fresh));
            }
        }
    }
}
