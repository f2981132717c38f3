//! [`PolicySet`]: the default [`PolicyEnforcer`], an ordered list of rules.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::PolicyError;
use super::rules::{
    AgentStatusRule, MaxTasksPerAgent, PolicyRule, RoleAndCapability, SafeModeRule,
    SeparationOfDuties, UtilizationCap,
};
use super::{PolicyContext, PolicyEnforcer, Proposal, Severity, Violation};

/// The default [`PolicyEnforcer`]: built-in rules as serde data, in order, followed by
/// any rules the host wrote as code. The coordination procedure's "validate the
/// assignment meets policies" step.
///
/// [`PolicySet::default`] holds every built-in rule, enabled, with the operating procedures'
/// numbers,
/// in this order (violations come out in rule order, then in each rule's own order):
///
/// | rule | refuses | severity |
/// |---|---|---|
/// | [`safe_mode`](SafeModeRule) | any new assignment outside normal mode | critical |
/// | [`agent_status`](AgentStatusRule) | an agent that is not available; an unknown agent | error; critical when quarantined or unknown |
/// | [`role_and_capability`](RoleAndCapability) | an agent lacking a required role or capability | error |
/// | [`max_tasks_per_agent`](MaxTasksPerAgent) | an agent with no free slot, counting the batch | error |
/// | [`utilization_cap`](UtilizationCap) | taking any resource of an agent above 95% of its capacity, counting the batch | error |
/// | [`separation_of_duties`](SeparationOfDuties) | one agent doing both `deploy` and `verify` in one group | error |
///
/// Every way into a set checks the rules ([`new`](Self::new),
/// [`with_rule`](Self::with_rule), deserializing), so a `PolicySet` is always valid.
///
/// # Host rules
///
/// Rules that data cannot express are code: a [`PolicyEnforcer`] given to
/// [`with_custom`](Self::with_custom), or a closure given to
/// [`with_fn`](Self::with_fn). They run after the data rules, in the order added.
/// Code does not serialize: a set written out holds only its data rules, and a set
/// read back has no host rules until they are added again.
///
/// # Loading from a host's configuration
///
/// ```
/// use concord::policy::{PolicySet, UtilizationCap};
///
/// let json = r#"{ "rules": [
///     { "rule": "safe_mode", "allow": ["diagnose"] },
///     { "rule": "agent_status" },
///     { "rule": "utilization_cap", "max": 0.8, "severity": "warning" },
///     { "rule": "utilization_cap" },
///     { "rule": "separation_of_duties", "exclusive": [["deploy", "verify"], ["deploy", "qa"]] },
///     { "rule": "max_tasks_per_agent", "enabled": false }
/// ] }"#;
/// let policies: PolicySet = serde_json::from_str(json)?;
/// assert_eq!(policies.rules().len(), 6);
///
/// // A bad value is refused, naming it.
/// let bad = r#"{ "rules": [{ "rule": "utilization_cap", "max": 1.2 }] }"#;
/// let err = serde_json::from_str::<PolicySet>(bad).unwrap_err();
/// assert!(err.to_string().contains("utilization cap 1.2 is outside (0, 1]"));
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// # Validating
///
/// ```
/// use concord::agent::{AgentProfile, AgentRegistry};
/// use concord::policy::{PolicyContext, PolicyEnforcer, PolicySet, Proposal, SystemMode};
/// use concord::{AgentId, ResourceLedger, Role, Requirements, TaskId, Timestamp};
///
/// let qa = AgentId::new(2);
/// let mut registry = AgentRegistry::new();
/// registry.register(AgentProfile::new(qa, "qa-1").with_role(Role::new("qa")?), Timestamp::EPOCH)?;
/// let mut ledger = ResourceLedger::new();
/// ledger.add_agent(qa, &"cpu=1,memory=1Gi".parse()?)?;
/// ledger.allocate(qa, &"cpu=100m".parse()?, Timestamp::EPOCH)?; // not alone on it
///
/// let policies = PolicySet::default();
/// let proposal = Proposal::new(TaskId::new(9), "deploy", qa)
///     .with_requirements(Requirements::new().with_role(Role::new("ops")?))
///     .with_resources("memory=1000Mi".parse()?);
/// let ctx = PolicyContext::new(&registry, &ledger);
/// let found: Vec<String> = policies.validate(&proposal, &ctx).iter().map(|v| v.to_string()).collect();
/// assert_eq!(found, [
///     "role_and_capability (error): agent#2 lacks role `ops` for task#9",
///     "utilization_cap (error): agent#2 would reach 97.7% memory with task#9 (cap 95%)",
/// ]);
///
/// // In safe mode, nothing new goes out.
/// let ok = Proposal::new(TaskId::new(10), "verify", qa);
/// let safe = ctx.with_mode(SystemMode::SafeMode);
/// assert_eq!(policies.validate(&ok, &ctx), []);
/// assert_eq!(policies.validate(&ok, &safe)[0].rule, "safe_mode");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Inside the coordinator, a placement the assigner proposes through
/// [`Admission::admit_filtered`](crate::assignment::Admission::admit_filtered) (as
/// [`GreedyAssigner`](crate::assignment::GreedyAssigner) does) on the fleet the
/// coordinator handed it is not checked again by the rules that check only what the
/// assigner's filters passed: agent status, roles and capabilities, and task slots
/// unless [`MaxTasksPerAgent`] sets a lower limit. Their verdict would be the same;
/// debug builds ask them anyway and assert that it is. Host rules are always asked,
/// and a context marked so for one proposal skips nothing for another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "PolicySetData")]
pub struct PolicySet {
    rules: Vec<PolicyRule>,
    #[serde(skip)]
    custom: Vec<CustomRule>,
}

/// The serialized form, checked into a [`PolicySet`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySetData {
    rules: Vec<PolicyRule>,
}

impl TryFrom<PolicySetData> for PolicySet {
    type Error = PolicyError;
    fn try_from(data: PolicySetData) -> Result<Self, PolicyError> {
        PolicySet::new(data.rules)
    }
}

/// A host rule: code, kept beside the data and skipped by serde.
#[derive(Debug, Clone)]
struct CustomRule {
    name: String,
    enforcer: Arc<dyn PolicyEnforcer>,
}

impl PolicySet {
    /// A set of `rules`, in order (a rule may appear more than once: say a warning at
    /// 80% utilization and an error at 95%).
    ///
    /// # Errors
    /// The first rule's [`PolicyError`], from [`PolicyRule::check_config`].
    pub fn new(rules: impl IntoIterator<Item = PolicyRule>) -> Result<Self, PolicyError> {
        let rules: Vec<PolicyRule> = rules.into_iter().collect();
        rules.iter().try_for_each(PolicyRule::check_config)?;
        Ok(PolicySet {
            rules,
            custom: Vec::new(),
        })
    }

    /// A set with no rule: it permits everything.
    pub fn empty() -> Self {
        PolicySet {
            rules: Vec::new(),
            custom: Vec::new(),
        }
    }

    /// Puts `rule` in the set: in place of the rules with the same name (at the first
    /// one's position), or at the end if there is none.
    ///
    /// ```
    /// use concord::policy::{PolicyRule, PolicySet, UtilizationCap};
    ///
    /// let policies = PolicySet::default().with_rule(UtilizationCap::new(0.9))?;
    /// assert!(policies.rules().contains(&PolicyRule::from(UtilizationCap::new(0.9))));
    /// assert_eq!(policies.rules().len(), PolicySet::default().rules().len());
    /// # Ok::<(), concord::policy::PolicyError>(())
    /// ```
    ///
    /// # Errors
    /// The rule's [`PolicyError`], from [`PolicyRule::check_config`]; the set is
    /// dropped.
    pub fn with_rule(mut self, rule: impl Into<PolicyRule>) -> Result<Self, PolicyError> {
        let rule = rule.into();
        rule.check_config()?;
        let name = rule.name();
        match self.rules.iter().position(|r| r.name() == name) {
            Some(at) => {
                let mut i = 0;
                self.rules.retain(|r| {
                    let keep = i <= at || r.name() != name;
                    i += 1;
                    keep
                });
                self.rules[at] = rule;
            }
            None => self.rules.push(rule),
        }
        Ok(self)
    }

    /// Adds a host rule called `name`, in place of a host rule with the same name if
    /// there is one, else after the others. Its violations are reported as it writes
    /// them.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use concord::policy::{PolicyContext, PolicyEnforcer, PolicySet, Proposal, Severity, Violation};
    ///
    /// /// Warns about tasks of kinds the host has never seen.
    /// #[derive(Debug)]
    /// struct KnownKinds(Vec<String>);
    /// impl PolicyEnforcer for KnownKinds {
    ///     fn validate(&self, p: &Proposal, _: &PolicyContext<'_>) -> Vec<Violation> {
    ///         if self.0.iter().any(|k| k == p.kind()) {
    ///             return Vec::new();
    ///         }
    ///         let message = format!("{} is of unknown kind `{}`", p.task(), p.kind());
    ///         vec![Violation::new("known_kinds", Severity::Warning, p.agent(), p.task(), message)]
    ///     }
    /// }
    ///
    /// let policies = PolicySet::default()
    ///     .with_custom("known_kinds", Arc::new(KnownKinds(vec!["deploy".into()])))?;
    /// assert_eq!(policies.custom_names().collect::<Vec<_>>(), ["known_kinds"]);
    /// # Ok::<(), concord::policy::PolicyError>(())
    /// ```
    ///
    /// # Errors
    /// [`PolicyError::EmptyRuleName`] if `name` is empty or only whitespace.
    pub fn with_custom(
        mut self,
        name: impl Into<String>,
        enforcer: Arc<dyn PolicyEnforcer>,
    ) -> Result<Self, PolicyError> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(PolicyError::EmptyRuleName { name });
        }
        let rule = CustomRule { name, enforcer };
        match self.custom.iter_mut().find(|c| c.name == rule.name) {
            Some(slot) => *slot = rule,
            None => self.custom.push(rule),
        }
        Ok(self)
    }

    /// Adds a host rule called `name` written as a closure: it returns why the
    /// proposal is refused, or `None` to allow it. A refusal is reported as a
    /// violation of `name` at severity [`Error`](Severity::Error); for other
    /// severities, or several violations at once, implement [`PolicyEnforcer`] and use
    /// [`with_custom`](Self::with_custom). Replaces a host rule with the same name.
    ///
    /// The closure must keep the [`PolicyEnforcer`] contract: pure, deterministic,
    /// never panicking.
    ///
    /// ```
    /// use concord::policy::{PolicyContext, PolicySet, Proposal};
    ///
    /// let policies = PolicySet::default().with_fn("no_prod_from_ci", |p: &Proposal, _: &PolicyContext<'_>| {
    ///     (p.kind() == "deploy" && p.group() == Some("ci"))
    ///         .then(|| format!("{} would deploy to production from ci", p.task()))
    /// })?;
    /// # Ok::<(), concord::policy::PolicyError>(())
    /// ```
    ///
    /// # Errors
    /// [`PolicyError::EmptyRuleName`] if `name` is empty or only whitespace.
    pub fn with_fn<F>(self, name: impl Into<String>, f: F) -> Result<Self, PolicyError>
    where
        F: Fn(&Proposal, &PolicyContext<'_>) -> Option<String> + Send + Sync + 'static,
    {
        let name = name.into();
        let rule = FnRule {
            name: name.clone(),
            f: Box::new(f),
        };
        self.with_custom(name, Arc::new(rule))
    }

    /// The set without any rule, data or host, called `name`.
    pub fn without(mut self, name: &str) -> Self {
        self.rules.retain(|r| r.name() != name);
        self.custom.retain(|c| c.name != name);
        self
    }

    /// The data rules, in order.
    pub fn rules(&self) -> &[PolicyRule] {
        &self.rules
    }

    /// The host rules' names, in order.
    pub fn custom_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.custom.iter().map(|c| c.name.as_str())
    }

    /// The data rules' names, then the host rules', in the order they run.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> + '_ {
        fn name_of(rule: &PolicyRule) -> &str {
            rule.name()
        }
        self.rules.iter().map(name_of).chain(self.custom_names())
    }
}

impl Default for PolicySet {
    /// Every built-in rule, enabled, with the operating procedures' numbers (see
    /// [`PolicySet`]).
    fn default() -> Self {
        PolicySet {
            rules: vec![
                SafeModeRule::default().into(),
                AgentStatusRule::default().into(),
                RoleAndCapability::default().into(),
                MaxTasksPerAgent::default().into(),
                UtilizationCap::default().into(),
                SeparationOfDuties::default().into(),
            ],
            custom: Vec::new(),
        }
    }
}

impl PolicyEnforcer for PolicySet {
    fn validate(&self, proposal: &Proposal, ctx: &PolicyContext<'_>) -> Vec<Violation> {
        let mut out = Vec::new();
        let filtered = ctx.filtered_for(proposal);
        for rule in &self.rules {
            // What the assigner's filters proved is not checked again: the rules
            // that read names and statuses were most of a one-task validation.
            if filtered && rule.passed_by_filtered() {
                #[cfg(debug_assertions)]
                {
                    let mut found = Vec::new();
                    rule.check_into(proposal, ctx, &mut found);
                    debug_assert!(
                        found.is_empty(),
                        "an agent that passed the filters violates {found:?}"
                    );
                }
                continue;
            }
            rule.check_into(proposal, ctx, &mut out);
        }
        for rule in &self.custom {
            out.extend(rule.enforcer.validate(proposal, ctx));
        }
        tracing::debug!(
            task.id = %proposal.task(),
            agent.id = %proposal.agent(),
            violations = out.len(),
            "assignment validated"
        );
        out
    }

    /// Only separation of duties reads the duty log among the built-in rules, and
    /// only the duties of its pairs; a host rule may read any.
    fn reads_duty(&self, duty: &str) -> bool {
        !self.custom.is_empty() || self.rules.iter().any(|r| r.reads_duty(duty))
    }
}

type RuleFn = dyn Fn(&Proposal, &PolicyContext<'_>) -> Option<String> + Send + Sync;

/// A closure rule from [`PolicySet::with_fn`].
struct FnRule {
    name: String,
    f: Box<RuleFn>,
}

impl fmt::Debug for FnRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnRule")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PolicyEnforcer for FnRule {
    fn validate(&self, proposal: &Proposal, ctx: &PolicyContext<'_>) -> Vec<Violation> {
        (self.f)(proposal, ctx)
            .map(|message| {
                Violation::new(
                    self.name.clone(),
                    Severity::Error,
                    proposal.agent(),
                    proposal.task(),
                    message,
                )
            })
            .into_iter()
            .collect()
    }
}
