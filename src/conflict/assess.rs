//! [`ConflictAssessor`]: how bad is it, and where does it go.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Conflict, ConflictKind, Route, Severity};
use crate::task::Priority;

/// A conflict's severity and route, with the reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Assessment {
    /// How bad it is.
    pub severity: Severity,
    /// Where it goes next.
    pub route: Route,
    /// Why, one line per rule that fired.
    pub reasons: Vec<String>,
}

impl Assessment {
    /// An assessment routed the procedure's way ([`Route::for_severity`]).
    pub fn new(severity: Severity, reasons: Vec<String>) -> Self {
        Assessment {
            severity,
            route: Route::for_severity(severity),
            reasons,
        }
    }
}

/// Assesses a conflict's severity and impact: the procedure's
/// `conflict_assessor.assess(conflict)`.
///
/// # Contract
/// - Decides without waiting and without side effects; the same conflict gives the
///   same assessment.
/// - Never panics.
///
/// # Examples
/// An assessor that treats everything as critical:
/// ```
/// use concord::conflict::{Assessment, Conflict, ConflictAssessor, Route, Severity};
///
/// #[derive(Debug)]
/// struct Paranoid;
/// impl ConflictAssessor for Paranoid {
///     fn assess(&self, _: &Conflict) -> Assessment {
///         Assessment::new(Severity::Critical, vec!["everything is critical".into()])
///     }
/// }
/// # use concord::conflict::{ConflictId, ConflictKind};
/// # let c = Conflict::new(ConflictId::new(1), ConflictKind::Disagreement, concord::Timestamp::EPOCH);
/// assert_eq!(Paranoid.assess(&c).route, Route::EscalateNow);
/// ```
pub trait ConflictAssessor: fmt::Debug + Send + Sync + 'static {
    /// The conflict's severity and route.
    fn assess(&self, conflict: &Conflict) -> Assessment;
}

/// The data behind [`RuleAssessor`]: a base severity per kind, raised one level when a
/// party's priority reaches `raise_at_priority`, and one more when the conflict touches
/// at least `wide_impact_agents` agents.
///
/// Defaults: security incidents critical; agent failures, resource exhaustion and
/// policy violations high; contention, overlapping claims and disagreements medium;
/// duplicate work low; raised at [`Priority::CRITICAL`] and at 5 agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssessmentRules {
    /// Base severity per kind; a kind missing here is [`Severity::Medium`].
    pub base: Vec<(ConflictKind, Severity)>,
    /// A party at or above this priority raises the severity one level.
    pub raise_at_priority: Priority,
    /// At least this many distinct agents involved raises it one level (0: never).
    pub wide_impact_agents: usize,
}

impl Default for AssessmentRules {
    fn default() -> Self {
        use ConflictKind as K;
        AssessmentRules {
            base: vec![
                (K::SecurityIncident, Severity::Critical),
                (K::AgentFailure, Severity::High),
                (K::ResourceExhaustion, Severity::High),
                (K::PolicyViolation, Severity::High),
                (K::ResourceContention, Severity::Medium),
                (K::OverlappingClaims, Severity::Medium),
                (K::Disagreement, Severity::Medium),
                (K::DuplicateWork, Severity::Low),
            ],
            raise_at_priority: Priority::CRITICAL,
            wide_impact_agents: 5,
        }
    }
}

/// The default, data-driven [`ConflictAssessor`] over [`AssessmentRules`].
///
/// ```
/// use concord::conflict::{
///     Conflict, ConflictAssessor, ConflictId, ConflictKind, Party, Route, RuleAssessor, Severity,
/// };
/// use concord::{Priority, TaskId, Timestamp};
///
/// let c = Conflict::new(ConflictId::new(1), ConflictKind::ResourceContention, Timestamp::EPOCH)
///     .with_party(Party::task(TaskId::new(1)).with_priority(Priority::CRITICAL))
///     .with_party(Party::task(TaskId::new(2)));
/// let a = RuleAssessor::default().assess(&c);
/// assert_eq!(a.severity, Severity::High);
/// assert_eq!(a.route, Route::AutomaticResolution);
/// ```
#[derive(Debug, Clone, Default)]
pub struct RuleAssessor {
    rules: AssessmentRules,
}

impl RuleAssessor {
    /// An assessor over `rules`.
    pub fn new(rules: AssessmentRules) -> Self {
        RuleAssessor { rules }
    }

    /// The rules.
    pub fn rules(&self) -> &AssessmentRules {
        &self.rules
    }
}

impl ConflictAssessor for RuleAssessor {
    fn assess(&self, conflict: &Conflict) -> Assessment {
        let kind = conflict.kind();
        let mut severity = self
            .rules
            .base
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(Severity::Medium, |(_, s)| *s);
        let mut reasons = vec![format!("{kind} is {severity} by default")];
        if let Some(p) = conflict
            .parties()
            .iter()
            .map(|p| p.priority())
            .filter(|p| *p >= self.rules.raise_at_priority)
            .max()
        {
            severity = severity.raised();
            reasons.push(format!("a party has priority {p}: raised to {severity}"));
        }
        let agents = conflict.agents().len();
        if self.rules.wide_impact_agents > 0 && agents >= self.rules.wide_impact_agents {
            severity = severity.raised();
            reasons.push(format!("{agents} agents affected: raised to {severity}"));
        }
        Assessment::new(severity, reasons)
    }
}
