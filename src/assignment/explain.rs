//! Explanations: why an agent won a task, and why every other agent did not.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::agent::AgentStatus;
use crate::id::{AgentId, Capability, Role};
use crate::resource::ResourceName;

/// Why one agent could not take a task, as counted in an [`Explanation`].
///
/// Each rejected agent is counted once, under the first filter it fails, in this
/// order: status, free slots, role, capability, resources, host filters, policy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rejection {
    /// The agent is not available (unhealthy, quarantined, offline or busy).
    Status {
        /// Its status.
        status: AgentStatus,
    },
    /// Every task slot of the agent is taken.
    NoFreeSlot,
    /// The agent lacks a required role (the first missing one, by catalog order).
    MissingRole {
        /// The role.
        role: Role,
    },
    /// The agent lacks a required capability (the first missing one).
    MissingCapability {
        /// The capability.
        capability: Capability,
    },
    /// The agent has too little of a resource free (the first one short).
    Insufficient {
        /// The resource.
        resource: ResourceName,
    },
    /// A host filter refused the agent.
    Filter {
        /// The filter's name.
        filter: String,
    },
    /// A policy refused the agent (see the violations on the plan).
    Policy {
        /// The rule that refused.
        rule: String,
    },
}

impl Rejection {
    /// The phrase after a count: "lack capability `qa`", "are offline".
    fn phrase(&self, one: bool) -> String {
        let (is, lack, has) = if one {
            ("is", "lacks", "has")
        } else {
            ("are", "lack", "have")
        };
        match self {
            Rejection::Status { status } => format!("{is} {status}"),
            Rejection::NoFreeSlot => format!("{has} no free slot"),
            Rejection::MissingRole { role } => format!("{lack} role `{role}`"),
            Rejection::MissingCapability { capability } => {
                format!("{lack} capability `{capability}`")
            }
            Rejection::Insufficient { resource } => format!("{lack} {resource}"),
            Rejection::Filter { filter } => format!("{are} refused by filter `{filter}`", are = is),
            Rejection::Policy { rule } => format!("{are} refused by policy `{rule}`", are = is),
        }
    }
}

/// One reason and how many agents it ruled out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionCount {
    /// The reason.
    pub reason: Rejection,
    /// How many agents it ruled out.
    pub count: usize,
}

/// One scorer's part in an agent's total score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginScore {
    /// The scorer (`least_allocated`, `most_allocated`, `balanced`, `affinity`, or a
    /// host scorer's name). Borrowed for the built-in scorers, so that explaining a
    /// placement allocates no names.
    pub plugin: Cow<'static, str>,
    /// Its score, in `[0, 100]` for the built-in scorers.
    pub score: f64,
    /// Its weight.
    pub weight: f64,
}

/// Why a task went where it went, in the manner of the Kubernetes scheduler's
/// messages: `4 of 5 agents fit: 1 lacks capability `qa`; agent#3 won with 87.5
/// (least_allocated 90.0 x1, balanced 85.0 x1)`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Explanation {
    /// Agents considered.
    pub considered: usize,
    /// Agents that passed every filter.
    pub fit: usize,
    /// Agents ruled out, grouped by reason, most first (then by reason).
    pub rejected: Vec<RejectionCount>,
    /// The winner and its score breakdown, if there was one.
    pub winner: Option<(AgentId, f64)>,
    /// The winner's score per scorer.
    pub scores: Vec<PluginScore>,
    /// The best other agent and its score, if any.
    pub runner_up: Option<(AgentId, f64)>,
    /// The analyzer's rules that added to the task's requirements (each with the
    /// word or kind that made it fire), when the task was refused or made to wait:
    /// what in the task's words asked for what no agent had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyzed: Vec<crate::task::FiredRule>,
}

impl Explanation {
    /// Empties it for a new decision among `considered` agents, keeping its lists'
    /// capacity: the one-task path writes each explanation over a finished one, so
    /// that explaining a decision allocates nothing once the lists have grown.
    pub(crate) fn reset(&mut self, considered: usize) {
        // Every field by name: one added later must be reset here too.
        let Explanation {
            considered: c,
            fit,
            rejected,
            winner,
            scores,
            runner_up,
            analyzed,
        } = self;
        *c = considered;
        *fit = 0;
        rejected.clear();
        *winner = None;
        scores.clear();
        *runner_up = None;
        analyzed.clear();
    }

    /// Sorts and stores rejection counts.
    pub(crate) fn set_rejections(&mut self, mut counts: Vec<RejectionCount>) {
        counts.retain(|c| c.count > 0);
        counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        self.rejected = counts;
    }

    /// Adds one agent ruled out for `reason`.
    pub(crate) fn reject(&mut self, reason: Rejection) {
        match self.rejected.iter_mut().find(|c| c.reason == reason) {
            Some(c) => c.count += 1,
            None => self.rejected.push(RejectionCount { reason, count: 1 }),
        }
        self.rejected
            .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.considered == 1 {
            "agent"
        } else {
            "agents"
        };
        write!(f, "{} of {} {noun} fit", self.fit, self.considered)?;
        for (k, r) in self.rejected.iter().enumerate() {
            f.write_str(if k == 0 { ": " } else { ", " })?;
            write!(f, "{} {}", r.count, r.reason.phrase(r.count == 1))?;
        }
        if let Some((agent, score)) = self.winner {
            write!(f, "; {agent} won with {score:.1}")?;
            if !self.scores.is_empty() {
                f.write_str(" (")?;
                for (k, s) in self.scores.iter().enumerate() {
                    if k > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{} {:.1} x{}", s.plugin, s.score, s.weight)?;
                }
                f.write_str(")")?;
            }
            if let Some((other, score)) = self.runner_up {
                write!(f, "; next best {other} with {score:.1}")?;
            }
        }
        for (k, fired) in self.analyzed.iter().enumerate() {
            let lead = if k == 0 {
                "; the task's words asked for it: rule "
            } else {
                ", rule "
            };
            write!(f, "{lead}{fired}")?;
        }
        Ok(())
    }
}
