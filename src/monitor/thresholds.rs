//! [`Thresholds`] as data, what crossing them means ([`Finding`], [`Bottleneck`]) and
//! what to do about it ([`Recommendation`], [`Action`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::anomaly::Subject;
use super::error::{MonitorError, check_range};
use crate::id::AgentId;
use crate::resource::ResourceName;

/// The performance optimization thresholds, as data.
///
/// | the procedures say | field | default |
/// |---|---|---|
/// | high agent utilization: scale up, queue, balance load | `utilization_high` | 0.95 |
/// | high coordination overhead: review coordination | `coordination_overhead_high` | 0.05 |
/// | low resource efficiency: better prediction and sharing | `resource_efficiency_low` | 0.85 |
/// | bottleneck: an agent's queue longer than 10 | `agent_queue_long` | 10 |
/// | bottleneck: a resource above 90% use | `resource_use_high` | 0.90 |
///
/// A figure must pass its threshold strictly (`> 95%`, `< 85%`) to count.
///
/// ```
/// use concord::monitor::Thresholds;
///
/// let t: Thresholds = serde_json::from_str(r#"{"utilization_high": 0.9}"#)?;
/// assert_eq!(t.utilization_high(), 0.9);
/// assert_eq!(t.agent_queue_long(), 10.0); // the rest are the defaults
/// assert!(Thresholds::default().with_resource_use_high(1.5).validate().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    utilization_high: f64,
    coordination_overhead_high: f64,
    resource_efficiency_low: f64,
    agent_queue_long: f64,
    resource_use_high: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            utilization_high: 0.95,
            coordination_overhead_high: 0.05,
            resource_efficiency_low: 0.85,
            agent_queue_long: 10.0,
            resource_use_high: 0.90,
        }
    }
}

impl Thresholds {
    /// Sets the utilization above which an agent (or the fleet) is overloaded, in
    /// `[0, 1]`.
    pub fn with_utilization_high(mut self, share: f64) -> Self {
        self.utilization_high = share;
        self
    }

    /// Sets the coordination overhead above which coordination needs a review, in
    /// `[0, 1]`.
    pub fn with_coordination_overhead_high(mut self, share: f64) -> Self {
        self.coordination_overhead_high = share;
        self
    }

    /// Sets the resource efficiency below which allocation needs work, in `[0, 1]`.
    pub fn with_resource_efficiency_low(mut self, share: f64) -> Self {
        self.resource_efficiency_low = share;
        self
    }

    /// Sets the queue length above which an agent is a bottleneck, at least 0.
    pub fn with_agent_queue_long(mut self, tasks: f64) -> Self {
        self.agent_queue_long = tasks;
        self
    }

    /// Sets the use above which a resource is a bottleneck, in `[0, 1]`.
    pub fn with_resource_use_high(mut self, share: f64) -> Self {
        self.resource_use_high = share;
        self
    }

    /// The utilization above which an agent is overloaded.
    pub fn utilization_high(&self) -> f64 {
        self.utilization_high
    }

    /// The coordination overhead above which coordination needs a review.
    pub fn coordination_overhead_high(&self) -> f64 {
        self.coordination_overhead_high
    }

    /// The resource efficiency below which allocation needs work.
    pub fn resource_efficiency_low(&self) -> f64 {
        self.resource_efficiency_low
    }

    /// The queue length above which an agent is a bottleneck.
    pub fn agent_queue_long(&self) -> f64 {
        self.agent_queue_long
    }

    /// The use above which a resource is a bottleneck.
    pub fn resource_use_high(&self) -> f64 {
        self.resource_use_high
    }

    /// Checks every threshold.
    ///
    /// # Errors
    /// [`MonitorError::Setting`] naming the first one out of range.
    pub fn validate(&self) -> Result<(), MonitorError> {
        let share = "a share in [0, 1]";
        check_range(
            "thresholds.utilization_high",
            self.utilization_high,
            0.0,
            1.0,
            share,
        )?;
        check_range(
            "thresholds.coordination_overhead_high",
            self.coordination_overhead_high,
            0.0,
            1.0,
            share,
        )?;
        check_range(
            "thresholds.resource_efficiency_low",
            self.resource_efficiency_low,
            0.0,
            1.0,
            share,
        )?;
        check_range(
            "thresholds.agent_queue_long",
            self.agent_queue_long,
            0.0,
            f64::MAX,
            "finite and at least 0",
        )?;
        check_range(
            "thresholds.resource_use_high",
            self.resource_use_high,
            0.0,
            1.0,
            share,
        )
    }
}

/// A figure past its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Finding {
    /// Utilization above `utilization_high`.
    HighUtilization {
        /// The agent, or the fleet.
        subject: Subject,
        /// Its utilization.
        utilization: f64,
        /// The threshold.
        threshold: f64,
    },
    /// Coordination overhead above `coordination_overhead_high`.
    HighCoordinationOverhead {
        /// The overhead.
        overhead: f64,
        /// The threshold.
        threshold: f64,
    },
    /// A resource's efficiency below `resource_efficiency_low`.
    LowResourceEfficiency {
        /// The resource.
        resource: ResourceName,
        /// Its efficiency.
        efficiency: f64,
        /// The threshold.
        threshold: f64,
    },
    /// A bottleneck.
    Bottleneck(Bottleneck),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::HighUtilization {
                subject,
                utilization,
                threshold,
            } => write!(
                f,
                "{subject} utilization {} > {}",
                percent(*utilization),
                percent(*threshold)
            ),
            Finding::HighCoordinationOverhead {
                overhead,
                threshold,
            } => write!(
                f,
                "coordination overhead {} > {}",
                percent(*overhead),
                percent(*threshold)
            ),
            Finding::LowResourceEfficiency {
                resource,
                efficiency,
                threshold,
            } => write!(
                f,
                "{resource} efficiency {} < {}",
                percent(*efficiency),
                percent(*threshold)
            ),
            Finding::Bottleneck(b) => b.fmt(f),
        }
    }
}

/// Where work piles up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "bottleneck", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Bottleneck {
    /// An agent's queue longer than `agent_queue_long` (see
    /// [`AgentStats::queue_length`](super::AgentStats::queue_length)).
    AgentQueue {
        /// The agent.
        agent: AgentId,
        /// Its queue length.
        queue_length: f64,
        /// The threshold.
        threshold: f64,
    },
    /// A resource allocated above `resource_use_high` of the fleet's capacity, on
    /// average over the window.
    ResourceContention {
        /// The resource.
        resource: ResourceName,
        /// Its mean use.
        usage: f64,
        /// Its peak use.
        peak: f64,
        /// The threshold.
        threshold: f64,
    },
}

impl fmt::Display for Bottleneck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bottleneck::AgentQueue {
                agent,
                queue_length,
                threshold,
            } => write!(f, "{agent} queue {queue_length:.1} > {threshold}"),
            Bottleneck::ResourceContention {
                resource,
                usage,
                peak,
                threshold,
            } => write!(
                f,
                "{resource} use {} > {} (peak {})",
                percent(*usage),
                percent(*threshold),
                percent(*peak)
            ),
        }
    }
}

/// An optimization action from the procedures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Scale up agent instances if possible.
    ScaleUp,
    /// Implement task queueing.
    ImplementQueueing,
    /// Consider load balancing improvements.
    ImproveLoadBalancing,
    /// Review coordination algorithms.
    ReviewCoordinationAlgorithms,
    /// Optimize communication protocols.
    OptimizeCommunication,
    /// Consider caching improvements.
    ConsiderCaching,
    /// Analyze resource allocation patterns.
    AnalyzeAllocationPatterns,
    /// Implement better resource prediction.
    ImprovePrediction,
    /// Optimize resource sharing strategies.
    OptimizeSharing,
    /// Add capacity of a contended resource, or move work off its peak.
    AddCapacity,
}

impl Action {
    /// What to do, in the procedures' words.
    pub fn description(self) -> &'static str {
        match self {
            Action::ScaleUp => "Scale up agent instances if possible",
            Action::ImplementQueueing => "Implement task queueing",
            Action::ImproveLoadBalancing => "Consider load balancing improvements",
            Action::ReviewCoordinationAlgorithms => "Review coordination algorithms",
            Action::OptimizeCommunication => "Optimize communication protocols",
            Action::ConsiderCaching => "Consider caching improvements",
            Action::AnalyzeAllocationPatterns => "Analyze resource allocation patterns",
            Action::ImprovePrediction => "Implement better resource prediction",
            Action::OptimizeSharing => "Optimize resource sharing strategies",
            Action::AddCapacity => {
                "Add capacity of the contended resource, or move work off its peak"
            }
        }
    }

    /// The actions a finding calls for.
    pub fn for_finding(finding: &Finding) -> &'static [Action] {
        match finding {
            Finding::HighUtilization { .. } => &[
                Action::ScaleUp,
                Action::ImplementQueueing,
                Action::ImproveLoadBalancing,
            ],
            Finding::HighCoordinationOverhead { .. } => &[
                Action::ReviewCoordinationAlgorithms,
                Action::OptimizeCommunication,
                Action::ConsiderCaching,
            ],
            Finding::LowResourceEfficiency { .. } => &[
                Action::AnalyzeAllocationPatterns,
                Action::ImprovePrediction,
                Action::OptimizeSharing,
            ],
            Finding::Bottleneck(Bottleneck::AgentQueue { .. }) => {
                &[Action::ScaleUp, Action::ImproveLoadBalancing]
            }
            Finding::Bottleneck(Bottleneck::ResourceContention { .. }) => &[Action::AddCapacity],
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// An action and the findings that call for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Recommendation {
    /// What to do.
    pub action: Action,
    /// Why: the findings, each naming the agent or resource and the figure.
    pub because: Vec<Finding>,
}

impl Recommendation {
    /// One recommendation per action the findings call for, in action order, each
    /// with its findings in the order given.
    pub fn from_findings(findings: &[Finding]) -> Vec<Recommendation> {
        let mut out: Vec<Recommendation> = Vec::new();
        for finding in findings {
            for &action in Action::for_finding(finding) {
                match out.iter_mut().find(|r| r.action == action) {
                    Some(r) => r.because.push(finding.clone()),
                    None => out.push(Recommendation {
                        action,
                        because: vec![finding.clone()],
                    }),
                }
            }
        }
        out.sort_by_key(|r| r.action);
        out
    }
}

impl fmt::Display for Recommendation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.action)?;
        for (k, b) in self.because.iter().enumerate() {
            f.write_str(if k == 0 { ": " } else { "; " })?;
            write!(f, "{b}")?;
        }
        Ok(())
    }
}

/// A share as a percentage with one decimal, without a decimal of zero: `97.2%`,
/// `95%`.
pub(crate) fn percent(share: f64) -> String {
    let text = tenths(share * 100.0);
    match text.strip_suffix(".0") {
        Some(whole) => format!("{whole}%"),
        None => format!("{text}%"),
    }
}

/// `value` to one decimal, a value that rounds to zero without a sign: a baseline a
/// hair under zero read "expected -0.0" (and a share "-0%").
pub(crate) fn tenths(value: f64) -> String {
    // Past 2^53 a float has no tenths to round (and ten times the largest is infinite).
    let rounded = if value.abs() < 9e15 {
        (value * 10.0).round() / 10.0
    } else {
        value
    };
    // Adding positive zero turns negative zero positive and leaves the rest alone.
    format!("{:.1}", rounded + 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_name_the_subject_and_the_figure() {
        let f = Finding::HighUtilization {
            subject: Subject::Agent(AgentId::new(3)),
            utilization: 0.972,
            threshold: 0.95,
        };
        assert_eq!(f.to_string(), "agent#3 utilization 97.2% > 95%");
        let b = Finding::Bottleneck(Bottleneck::ResourceContention {
            resource: ResourceName::Cpu,
            usage: 0.93,
            peak: 1.0,
            threshold: 0.9,
        });
        assert_eq!(b.to_string(), "cpu use 93% > 90% (peak 100%)");
        let recs = Recommendation::from_findings(&[f.clone(), b]);
        assert_eq!(
            recs.iter().map(|r| r.action).collect::<Vec<_>>(),
            [
                Action::ScaleUp,
                Action::ImplementQueueing,
                Action::ImproveLoadBalancing,
                Action::AddCapacity
            ]
        );
        assert_eq!(
            recs[0].to_string(),
            "Scale up agent instances if possible: agent#3 utilization 97.2% > 95%"
        );
    }

    #[test]
    fn thresholds_out_of_range_are_named() {
        let err = Thresholds::default()
            .with_coordination_overhead_high(f64::NAN)
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting `thresholds.coordination_overhead_high` is NaN: it must be a share in [0, 1]"
        );
        assert!(
            Thresholds::default()
                .with_agent_queue_long(-1.0)
                .validate()
                .is_err()
        );
        assert!(Thresholds::default().validate().is_ok());
    }
}
