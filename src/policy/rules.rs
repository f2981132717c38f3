//! The built-in rules, as serde data: [`PolicyRule`] and one struct per rule.
//!
//! Each rule has its parameters (with the operating procedures' numbers as defaults), an `enabled`
//! switch (on by default) and an optional `severity` that replaces the rule's own
//! severity on every violation it reports. Rules read the [`PolicyContext`] and never
//! change anything.

use serde::{Deserialize, Serialize};

use super::duties::{DutyRecord, duty_key, same_duty};
use super::error::PolicyError;
use super::violation::share;
use super::{PolicyContext, PolicyEnforcer, Proposal, Severity, Violation, ViolationDetail};
use crate::agent::AgentStatus;

/// Serde's test for a setting written only when it is off.
fn is_true(b: &bool) -> bool {
    *b
}

/// Adds the `enabled` and `severity` setters and getters every rule has.
macro_rules! common_options {
    ($rule:ident) => {
        impl $rule {
            /// Turns the rule on or off (on by default). A disabled rule reports
            /// nothing.
            pub fn with_enabled(mut self, enabled: bool) -> Self {
                self.enabled = enabled;
                self
            }

            /// Reports every violation of the rule at `severity`, in place of the
            /// rule's own.
            pub fn with_severity(mut self, severity: Severity) -> Self {
                self.severity = Some(severity);
                self
            }

            /// Whether the rule is on.
            pub fn enabled(&self) -> bool {
                self.enabled
            }

            /// The severity that replaces the rule's own, if set.
            pub fn severity(&self) -> Option<Severity> {
                self.severity
            }

            /// The severity to report: the override if set, else `own`.
            fn at(&self, own: Severity) -> Severity {
                self.severity.unwrap_or(own)
            }
        }
    };
}

/// The task goes only to an agent that plays every role and has every capability its
/// [`Requirements`](crate::Requirements) list.
///
/// One violation per missing role, then one per missing capability, in name order;
/// severity `error`. An agent that is not registered has no role and no capability.
///
/// ```
/// use concord::policy::{PolicyRule, RoleAndCapability};
/// let rule: PolicyRule = serde_json::from_str(r#"{ "rule": "role_and_capability" }"#)?;
/// assert_eq!(rule, RoleAndCapability::default().into());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleAndCapability {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
}

impl RoleAndCapability {
    /// The rule's name, as in violations and JSON.
    pub const NAME: &'static str = "role_and_capability";

    fn check(&self, proposal: &Proposal, ctx: &PolicyContext<'_>, out: &mut Vec<Violation>) {
        let requirements = proposal.requirements();
        if requirements.roles().is_empty() && requirements.capabilities().is_empty() {
            return;
        }
        let (agent, task) = (proposal.agent(), proposal.task());
        let profile = ctx.agent(agent).map(|a| a.profile());
        for role in requirements.roles() {
            if !profile.is_some_and(|p| p.has_role(role)) {
                out.push(
                    Violation::new(
                        Self::NAME,
                        self.at(Severity::Error),
                        agent,
                        task,
                        format!("{agent} lacks role `{role}` for {task}"),
                    )
                    .with_detail(ViolationDetail::MissingRole { role: role.clone() }),
                );
            }
        }
        for capability in requirements.capabilities() {
            if !profile.is_some_and(|p| p.has_capability(capability)) {
                out.push(
                    Violation::new(
                        Self::NAME,
                        self.at(Severity::Error),
                        agent,
                        task,
                        format!("{agent} lacks capability `{capability}` for {task}"),
                    )
                    .with_detail(ViolationDetail::MissingCapability {
                        capability: capability.clone(),
                    }),
                );
            }
        }
    }
}

impl Default for RoleAndCapability {
    fn default() -> Self {
        RoleAndCapability {
            enabled: true,
            severity: None,
        }
    }
}

common_options!(RoleAndCapability);

/// No resource of an agent may be taken above a share of its capacity: 95% by
/// default, the optimization thresholds' "high agent utilization (>95%)".
///
/// For every resource the proposal needs (its [`resources`](Proposal::resources)),
/// with the agent's capacity and holdings read from the
/// [`ResourceLedger`](crate::ResourceLedger) (holdings through
/// [`PolicyContext::allocated`], so less anything the context counts as released):
///
/// `(allocated + pending in the batch + this proposal) / capacity <= max`
///
/// so exactly 95% passes and anything above fails, with one exception: a proposal
/// alone on an agent (nothing held there, nothing pending in the batch) passes up to
/// the whole capacity ([`allow_sole_task`](Self::allow_sole_task), on by default). The
/// cap keeps headroom between tasks that share an agent; a task sized to its agent
/// would otherwise never run anywhere, and now waits for the agent to be free instead.
/// An agent with no capacity for a
/// needed resource (none declared in the ledger, or not in the ledger at all) violates
/// the rule whatever the cap. A proposal that needs nothing passes. Severity `error`;
/// one violation per resource, in [`Resources::iter`](crate::Resources::iter) order.
///
/// Shares are compared as `f64`, which is exact for amounts below 2^53 (8 PiB of
/// memory).
///
/// ```
/// use concord::policy::{PolicyRule, UtilizationCap};
/// let rule: PolicyRule = serde_json::from_str(r#"{ "rule": "utilization_cap", "max": 0.8 }"#)?;
/// assert_eq!(rule, UtilizationCap::new(0.8).into());
/// assert_eq!(UtilizationCap::default().max(), 0.95);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UtilizationCap {
    max: f64,
    allow_sole_task: bool,
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
}

impl UtilizationCap {
    /// The rule's name, as in violations and JSON.
    pub const NAME: &'static str = "utilization_cap";
    /// The optimization thresholds' cap: 95% of capacity.
    pub const DEFAULT_MAX: f64 = 0.95;

    /// A cap of `max` (a share of capacity, in (0, 1]; checked when the rule joins a
    /// [`PolicySet`](super::PolicySet)).
    pub fn new(max: f64) -> Self {
        UtilizationCap {
            max,
            ..Self::default()
        }
    }

    /// The cap, as a share of capacity.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// Whether a task alone on an agent may use it whole (the default), or is held to
    /// the cap like any other.
    pub fn allow_sole_task(&self) -> bool {
        self.allow_sole_task
    }

    /// Sets [`allow_sole_task`](Self::allow_sole_task): `false` holds every task to the
    /// cap, so one needing more than the cap of every agent never runs (a warning tier
    /// that should speak up for it too, say).
    pub fn with_sole_task_allowed(mut self, allowed: bool) -> Self {
        self.allow_sole_task = allowed;
        self
    }

    fn check_config(&self) -> Result<(), PolicyError> {
        if self.max > 0.0 && self.max <= 1.0 {
            Ok(())
        } else {
            Err(PolicyError::InvalidUtilizationCap { max: self.max })
        }
    }

    fn check(&self, proposal: &Proposal, ctx: &PolicyContext<'_>, out: &mut Vec<Violation>) {
        let needs = proposal.resources();
        if needs.is_zero() {
            return;
        }
        let (agent, task) = (proposal.agent(), proposal.task());
        // Whether the agent holds nothing, asked once and only if it decides.
        let mut holds_nothing = None;
        for (resource, requested) in needs.iter() {
            let (cap, held) = ctx.capacity_and_allocated(agent, &resource);
            if cap == 0 {
                out.push(
                    Violation::new(
                        Self::NAME,
                        self.at(Severity::Error),
                        agent,
                        task,
                        format!("{agent} has no {resource} capacity for {task}"),
                    )
                    .with_detail(ViolationDetail::NoCapacity { resource }),
                );
                continue;
            }
            let pending = ctx.pending_amount_for(proposal, &resource);
            let reached = share(u128::from(held) + pending + u128::from(requested), cap);
            if reached <= self.max {
                continue;
            }
            // Alone: nothing held on the agent, and no other proposal of the batch
            // for it (whatever it asks for).
            let alone = self.allow_sole_task
                && *holds_nothing.get_or_insert_with(|| ctx.holds_nothing(agent))
                && ctx.pending_tasks_for(proposal) == 0
                && requested <= cap;
            if !alone {
                let (reached, max) = percents(reached, self.max);
                out.push(
                    Violation::new(
                        Self::NAME,
                        self.at(Severity::Error),
                        agent,
                        task,
                        format!("{agent} would reach {reached} {resource} with {task} (cap {max})"),
                    )
                    .with_detail(ViolationDetail::Utilization {
                        resource,
                        allocated: held,
                        pending: u64::try_from(pending).unwrap_or(u64::MAX),
                        requested,
                        capacity: cap,
                        max: self.max,
                    }),
                );
            }
        }
    }
}

/// `reached` and `max` as percentages, with enough decimals to tell them apart.
fn percents(reached: f64, max: f64) -> (String, String) {
    let show = |x: f64, decimals: usize| {
        let mut s = format!("{:.*}", decimals, x * 100.0);
        if s.contains('.') {
            let trimmed = s.trim_end_matches('0').trim_end_matches('.').len();
            s.truncate(trimmed);
        }
        s.push('%');
        s
    };
    let decimals = (1..=6)
        .find(|&d| show(reached, d) != show(max, d))
        .unwrap_or(6);
    (show(reached, decimals), show(max, decimals))
}

impl Default for UtilizationCap {
    fn default() -> Self {
        UtilizationCap {
            max: Self::DEFAULT_MAX,
            allow_sole_task: true,
            enabled: true,
            severity: None,
        }
    }
}

common_options!(UtilizationCap);

/// An agent runs at most as many tasks as it has slots
/// ([`max_tasks`](crate::AgentProfile::max_tasks)), and at most `max` if set:
///
/// `running + pending in the batch + 1 <= min(agent's max_tasks, max)`
///
/// An agent that is not registered has no slot. Severity `error`. No `max` by default:
/// each agent's own slots are the limit.
///
/// ```
/// use concord::policy::{MaxTasksPerAgent, PolicyRule};
/// let rule: PolicyRule =
///     serde_json::from_str(r#"{ "rule": "max_tasks_per_agent", "max": 3 }"#)?;
/// assert_eq!(rule, MaxTasksPerAgent::new(3).into());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaxTasksPerAgent {
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<u32>,
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
}

impl MaxTasksPerAgent {
    /// The rule's name, as in violations and JSON.
    pub const NAME: &'static str = "max_tasks_per_agent";

    /// At most `max` tasks per agent, and never more than its slots (`max` must not be
    /// 0; checked when the rule joins a [`PolicySet`](super::PolicySet)).
    pub fn new(max: u32) -> Self {
        MaxTasksPerAgent {
            max: Some(max),
            ..Self::default()
        }
    }

    /// The limit on top of each agent's slots, if any.
    pub fn max(&self) -> Option<u32> {
        self.max
    }

    fn check_config(&self) -> Result<(), PolicyError> {
        match self.max {
            Some(0) => Err(PolicyError::ZeroMaxTasks),
            _ => Ok(()),
        }
    }

    fn check(&self, proposal: &Proposal, ctx: &PolicyContext<'_>, out: &mut Vec<Violation>) {
        let (agent, task) = (proposal.agent(), proposal.task());
        let pending = ctx.pending_tasks_for(proposal);
        let (running, own) = ctx
            .agent(agent)
            .map_or((0, 0), |a| (a.running(), a.max_tasks()));
        let limit = self.max.map_or(own, |m| m.min(own));
        let after = u64::from(running) + pending as u64 + 1;
        if after <= u64::from(limit) {
            return;
        }
        let pending = u32::try_from(pending).unwrap_or(u32::MAX);
        let message = if ctx.agent(agent).is_none() {
            format!("{agent} has no task slot for {task}: it is not registered")
        } else {
            format!(
                "{agent} has no task slot for {task}: {running} running and {pending} pending, at most {limit}"
            )
        };
        out.push(
            Violation::new(Self::NAME, self.at(Severity::Error), agent, task, message).with_detail(
                ViolationDetail::TaskSlots {
                    running,
                    pending,
                    limit,
                },
            ),
        );
    }
}

impl Default for MaxTasksPerAgent {
    fn default() -> Self {
        MaxTasksPerAgent {
            max: None,
            enabled: true,
            severity: None,
        }
    }
}

common_options!(MaxTasksPerAgent);

/// Within one group (a workflow run, a batch), the two duties of each `exclusive`
/// pair never go to the same agent: by default the agent that deploys is not the
/// agent that verifies (the deployment workflow: ops deploys, QA verifies).
///
/// A proposal with a [`group`](Proposal::group) and [`duty`](Proposal::duty) `d`
/// violates the rule when, for a pair `[d, e]` or `[e, d]`, its agent already
/// performs `e` in that group: by the [`DutyLog`](super::DutyLog), or by a proposal
/// accepted earlier in the batch. A proposal without a group is not checked. Duties
/// are compared trimmed and ASCII-case-insensitively. A pair naming one duty twice
/// (`["approve", "approve"]`) means no agent does that duty twice in a group (two
/// approvers); a task retried on the same agent after its duty was recorded then
/// violates it too. Severity `error`; one violation per conflicting duty, in pair
/// order.
///
/// An attempt in progress counts, and so, by default, does one that failed: the
/// agent acted, and a deploy that failed half way may have changed what the
/// verifier looks at. Where a failed attempt leaves nothing behind, `count_failed:
/// false` ([`counting_failed`](Self::counting_failed)) counts only duties performed
/// and attempts in progress: then on two agents, a deploy that failed on one and succeeded on the other can
/// still be verified by the first, where by default no agent may verify it and the
/// step is given up. An attempt that ended without an outcome (interrupted, handed
/// back, cancelled) never counts.
///
/// ```
/// use concord::policy::{PolicyRule, SeparationOfDuties};
/// let json = r#"{ "rule": "separation_of_duties", "exclusive": [["deploy", "qa"]] }"#;
/// let rule: PolicyRule = serde_json::from_str(json)?;
/// assert_eq!(rule, SeparationOfDuties::empty().with_pair("deploy", "qa").into());
/// assert_eq!(SeparationOfDuties::default().pairs(), [["deploy", "verify"]]);
///
/// let json = r#"{ "rule": "separation_of_duties", "count_failed": false }"#;
/// let rule: PolicyRule = serde_json::from_str(json)?;
/// assert_eq!(rule, SeparationOfDuties::default().counting_failed(false).into());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeparationOfDuties {
    exclusive: Vec<[String; 2]>,
    /// Whether a failed attempt counts as the duty done; written only when off, so
    /// the rule's JSON stays as it was for every rule that keeps the default.
    #[serde(skip_serializing_if = "is_true")]
    count_failed: bool,
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
}

impl SeparationOfDuties {
    /// The rule's name, as in violations and JSON.
    pub const NAME: &'static str = "separation_of_duties";

    /// The rule with no pair (add some with [`with_pair`](Self::with_pair)).
    pub fn empty() -> Self {
        SeparationOfDuties {
            exclusive: Vec::new(),
            ..Self::default()
        }
    }

    /// Adds a pair of duties that never go to the same agent within a group.
    pub fn with_pair(mut self, a: impl Into<String>, b: impl Into<String>) -> Self {
        self.exclusive.push([a.into(), b.into()]);
        self
    }

    /// The pairs, as written.
    pub fn pairs(&self) -> &[[String; 2]] {
        &self.exclusive
    }

    /// Whether an attempt of a duty that failed counts as the duty done (`true`, the
    /// default) or only one that succeeded does (`false`).
    pub fn counting_failed(mut self, count: bool) -> Self {
        self.count_failed = count;
        self
    }

    /// Whether a failed attempt counts as the duty done: see
    /// [`counting_failed`](Self::counting_failed).
    pub fn counts_failed(&self) -> bool {
        self.count_failed
    }

    fn check_config(&self) -> Result<(), PolicyError> {
        match self
            .exclusive
            .iter()
            .find(|pair| pair.iter().any(|d| d.trim().is_empty()))
        {
            Some(pair) => Err(PolicyError::EmptyDuty { pair: pair.clone() }),
            None => Ok(()),
        }
    }

    fn check(&self, proposal: &Proposal, ctx: &PolicyContext<'_>, out: &mut Vec<Violation>) {
        let Some(group) = proposal.group() else {
            return;
        };
        let (agent, task, duty) = (proposal.agent(), proposal.task(), proposal.duty());
        let mut reported: Vec<&str> = Vec::new();
        for [a, b] in &self.exclusive {
            let other = if same_duty(a, duty) {
                b
            } else if same_duty(b, duty) {
                a
            } else {
                continue;
            };
            if reported.iter().any(|r| same_duty(r, other)) {
                continue;
            }
            let counts =
                |r: DutyRecord| r.in_progress > 0 || r.succeeded || (r.failed && self.count_failed);
            let done = ctx
                .duties()
                .record_of(group, other, agent)
                .is_some_and(counts)
                || ctx
                    .pending_for(proposal)
                    .any(|p| p.group() == Some(group) && same_duty(p.duty(), other));
            if !done {
                continue;
            }
            reported.push(other);
            let (duty, other) = (duty_key(duty).into_owned(), duty_key(other).into_owned());
            out.push(
                Violation::new(
                    Self::NAME,
                    self.at(Severity::Error),
                    agent,
                    task,
                    format!(
                        "{agent} may not do `{duty}` for {task}: it does `{other}` in group `{group}`"
                    ),
                )
                .with_detail(ViolationDetail::DutyConflict {
                    group: group.to_owned(),
                    duty,
                    conflicting: other,
                }),
            );
        }
    }
}

impl Default for SeparationOfDuties {
    fn default() -> Self {
        SeparationOfDuties {
            exclusive: vec![["deploy".to_owned(), "verify".to_owned()]],
            count_failed: true,
            enabled: true,
            severity: None,
        }
    }
}

common_options!(SeparationOfDuties);

/// Only an [`available`](AgentStatus::Available) agent takes new work: never a
/// quarantined, offline, unhealthy or busy one (busy: its slots are full, or the host
/// paused it), as [`AgentRegistry::task_started`](crate::AgentRegistry::task_started)
/// requires.
///
/// Severity `critical` for a quarantined agent and for an agent that is not
/// registered (both mean something upstream is wrong), `error` otherwise.
///
/// ```
/// use concord::policy::{AgentStatusRule, PolicyRule, Severity};
/// let rule: PolicyRule =
///     serde_json::from_str(r#"{ "rule": "agent_status", "severity": "warning" }"#)?;
/// assert_eq!(rule, AgentStatusRule::default().with_severity(Severity::Warning).into());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentStatusRule {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
}

impl AgentStatusRule {
    /// The rule's name, as in violations and JSON.
    pub const NAME: &'static str = "agent_status";

    fn check(&self, proposal: &Proposal, ctx: &PolicyContext<'_>, out: &mut Vec<Violation>) {
        let (agent, task) = (proposal.agent(), proposal.task());
        let violation = match ctx.agent(agent).map(|a| a.status()) {
            Some(AgentStatus::Available) => return,
            None => Violation::new(
                Self::NAME,
                self.at(Severity::Critical),
                agent,
                task,
                format!("{task} cannot go to {agent}: it is not registered"),
            )
            .with_detail(ViolationDetail::UnknownAgent),
            Some(status) => {
                let own = if status == AgentStatus::Quarantined {
                    Severity::Critical
                } else {
                    Severity::Error
                };
                Violation::new(
                    Self::NAME,
                    self.at(own),
                    agent,
                    task,
                    format!("{task} cannot go to {agent}: it is {status}"),
                )
                .with_detail(ViolationDetail::Status { status })
            }
        };
        out.push(violation);
    }
}

impl Default for AgentStatusRule {
    fn default() -> Self {
        AgentStatusRule {
            enabled: true,
            severity: None,
        }
    }
}

common_options!(AgentStatusRule);

/// Outside [`Normal`](super::SystemMode::Normal) mode no new work is assigned (the
/// system-wide agent failure procedure's "activate safe mode, stop new task
/// assignments"), except duties
/// on the `allow` list, which apply in safe mode and recovery alike (the recovery
/// steps themselves: diagnose, restart, validate), and the coordinator's own work:
/// a task for role [`BUILTIN_ROLE`] (the emergency procedures' built-in actions,
/// which enter and leave safe mode themselves). The list is empty by default, so
/// safe mode admits nothing else.
///
/// Severity `critical`.
///
/// ```
/// use concord::policy::{PolicyRule, SafeModeRule};
/// let json = r#"{ "rule": "safe_mode", "allow": ["diagnose", "restart"] }"#;
/// let rule: PolicyRule = serde_json::from_str(json)?;
/// let expected = SafeModeRule::default().with_allowed("diagnose").with_allowed("restart");
/// assert_eq!(rule, expected.into());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafeModeRule {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allow: Vec<String>,
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
}

impl SafeModeRule {
    /// The rule's name, as in violations and JSON.
    pub const NAME: &'static str = "safe_mode";

    /// Admits `duty` outside normal mode too.
    pub fn with_allowed(mut self, duty: impl Into<String>) -> Self {
        self.allow.push(duty.into());
        self
    }

    /// The duties admitted outside normal mode, as written.
    pub fn allowed(&self) -> &[String] {
        &self.allow
    }

    fn check_config(&self) -> Result<(), PolicyError> {
        match self
            .allow
            .iter()
            .enumerate()
            .find(|(_, d)| d.trim().is_empty())
        {
            Some((index, duty)) => Err(PolicyError::EmptyAllowedDuty {
                index,
                duty: duty.clone(),
            }),
            None => Ok(()),
        }
    }

    fn check(&self, proposal: &Proposal, ctx: &PolicyContext<'_>, out: &mut Vec<Violation>) {
        let mode = ctx.mode();
        if mode.admits_new_assignments()
            || self.allow.iter().any(|d| same_duty(d, proposal.duty()))
            || is_builtin(proposal)
        {
            return;
        }
        let (agent, task) = (proposal.agent(), proposal.task());
        out.push(
            Violation::new(
                Self::NAME,
                self.at(Severity::Critical),
                agent,
                task,
                format!("{task} cannot go to {agent}: the system is in {mode}"),
            )
            .with_detail(ViolationDetail::Mode { mode }),
        );
    }
}

/// The role of the coordinator's own work: the emergency procedures' built-in
/// actions (entering and leaving safe mode, quarantine, stopping communications,
/// fencing and restoring memory), carried out by the agent that plays it
/// (`workflow::Builtins`). Safe mode admits its tasks: they are how the system gets
/// out of it.
pub const BUILTIN_ROLE: &str = "coordinator";

/// Whether `proposal` is the coordinator's own work.
fn is_builtin(proposal: &Proposal) -> bool {
    proposal
        .requirements()
        .roles()
        .iter()
        .any(|r| r.as_str() == BUILTIN_ROLE)
}

impl Default for SafeModeRule {
    fn default() -> Self {
        SafeModeRule {
            allow: Vec::new(),
            enabled: true,
            severity: None,
        }
    }
}

common_options!(SafeModeRule);

/// One built-in rule, as serde data tagged by its name:
/// `{ "rule": "utilization_cap", "max": 0.9 }`.
///
/// Every field but `rule` may be left out and takes the procedures' default; unknown fields
/// are refused, so a typo in a host's file is an error rather than a silently ignored
/// setting. Every rule also takes `"enabled": false` and `"severity": "warning"` (or
/// `info`, `error`, `critical`).
///
/// A `PolicyRule` is itself a [`PolicyEnforcer`]; a disabled one reports nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PolicyRule {
    /// [`SafeModeRule`].
    SafeMode(SafeModeRule),
    /// [`AgentStatusRule`].
    AgentStatus(AgentStatusRule),
    /// [`RoleAndCapability`].
    RoleAndCapability(RoleAndCapability),
    /// [`MaxTasksPerAgent`].
    MaxTasksPerAgent(MaxTasksPerAgent),
    /// [`UtilizationCap`].
    UtilizationCap(UtilizationCap),
    /// [`SeparationOfDuties`].
    SeparationOfDuties(SeparationOfDuties),
}

impl PolicyRule {
    /// The rule's name, as in violations and JSON (`utilization_cap`).
    pub const fn name(&self) -> &'static str {
        match self {
            PolicyRule::SafeMode(_) => SafeModeRule::NAME,
            PolicyRule::AgentStatus(_) => AgentStatusRule::NAME,
            PolicyRule::RoleAndCapability(_) => RoleAndCapability::NAME,
            PolicyRule::MaxTasksPerAgent(_) => MaxTasksPerAgent::NAME,
            PolicyRule::UtilizationCap(_) => UtilizationCap::NAME,
            PolicyRule::SeparationOfDuties(_) => SeparationOfDuties::NAME,
        }
    }

    /// Whether the rule reads `duty` from the duty log: an enabled separation of
    /// duties whose pairs name it; no other built-in rule reads the log.
    pub fn reads_duty(&self, duty: &str) -> bool {
        match self {
            PolicyRule::SeparationOfDuties(r) => {
                r.enabled && r.exclusive.iter().flatten().any(|d| same_duty(d, duty))
            }
            _ => false,
        }
    }

    /// Whether the rule is on.
    pub fn enabled(&self) -> bool {
        match self {
            PolicyRule::SafeMode(r) => r.enabled,
            PolicyRule::AgentStatus(r) => r.enabled,
            PolicyRule::RoleAndCapability(r) => r.enabled,
            PolicyRule::MaxTasksPerAgent(r) => r.enabled,
            PolicyRule::UtilizationCap(r) => r.enabled,
            PolicyRule::SeparationOfDuties(r) => r.enabled,
        }
    }

    /// Checks the rule's parameters.
    ///
    /// # Errors
    /// [`PolicyError::InvalidUtilizationCap`], [`PolicyError::ZeroMaxTasks`],
    /// [`PolicyError::EmptyDuty`] or [`PolicyError::EmptyAllowedDuty`], naming the
    /// offending value.
    pub fn check_config(&self) -> Result<(), PolicyError> {
        match self {
            PolicyRule::SafeMode(r) => r.check_config(),
            PolicyRule::MaxTasksPerAgent(r) => r.check_config(),
            PolicyRule::UtilizationCap(r) => r.check_config(),
            PolicyRule::SeparationOfDuties(r) => r.check_config(),
            PolicyRule::AgentStatus(_) | PolicyRule::RoleAndCapability(_) => Ok(()),
        }
    }

    /// Whether the rule finds nothing wrong with an agent that passed an assigner's
    /// filters (available, a free slot counting the batch, every role and capability;
    /// see [`Admission::admit_filtered`](crate::assignment::Admission::admit_filtered)),
    /// whatever else the proposal holds: agent status, roles and capabilities, and
    /// the task slots when no limit below the agent's own is set. Such a rule need not
    /// be checked for it.
    pub(crate) fn passed_by_filtered(&self) -> bool {
        match self {
            PolicyRule::AgentStatus(_) | PolicyRule::RoleAndCapability(_) => true,
            PolicyRule::MaxTasksPerAgent(r) => r.max.is_none(),
            PolicyRule::SafeMode(_)
            | PolicyRule::UtilizationCap(_)
            | PolicyRule::SeparationOfDuties(_) => false,
        }
    }

    /// Appends the rule's violations of `proposal` to `out`; nothing when disabled.
    pub(crate) fn check_into(
        &self,
        proposal: &Proposal,
        ctx: &PolicyContext<'_>,
        out: &mut Vec<Violation>,
    ) {
        if !self.enabled() {
            return;
        }
        match self {
            PolicyRule::SafeMode(r) => r.check(proposal, ctx, out),
            PolicyRule::AgentStatus(r) => r.check(proposal, ctx, out),
            PolicyRule::RoleAndCapability(r) => r.check(proposal, ctx, out),
            PolicyRule::MaxTasksPerAgent(r) => r.check(proposal, ctx, out),
            PolicyRule::UtilizationCap(r) => r.check(proposal, ctx, out),
            PolicyRule::SeparationOfDuties(r) => r.check(proposal, ctx, out),
        }
    }
}

impl PolicyEnforcer for PolicyRule {
    fn validate(&self, proposal: &Proposal, ctx: &PolicyContext<'_>) -> Vec<Violation> {
        let mut out = Vec::new();
        self.check_into(proposal, ctx, &mut out);
        out
    }
}

macro_rules! into_rule {
    ($($rule:ident => $variant:ident),* $(,)?) => {
        $(
            impl From<$rule> for PolicyRule {
                fn from(rule: $rule) -> Self {
                    PolicyRule::$variant(rule)
                }
            }
        )*
    };
}

into_rule!(
    SafeModeRule => SafeMode,
    AgentStatusRule => AgentStatus,
    RoleAndCapability => RoleAndCapability,
    MaxTasksPerAgent => MaxTasksPerAgent,
    UtilizationCap => UtilizationCap,
    SeparationOfDuties => SeparationOfDuties,
);
