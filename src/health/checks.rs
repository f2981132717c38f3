//! The built-in health checks: the agents, the resources and the coordination.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::Either;

use super::{CheckError, CheckOutcome, HealthCheck, HealthStatus, human};
use crate::agent::{Agent, AgentExt};
use crate::clock::Clock;
use crate::coordinator::Coordinator;
use crate::text::plural;
use crate::timer::Timer;

/// Pings every agent at once ([`AgentExt::ping`]) and reports each one's response
/// time and version: degraded if one answers slower than `slow_after` or some do not
/// answer, unhealthy if at least `down_fraction` of them do not (default: half).
///
/// The agent connectivity part of the morning checklist.
#[derive(Debug, Clone)]
pub struct AgentsCheck {
    agents: Vec<Arc<dyn Agent>>,
    clock: Arc<dyn Clock>,
    timer: Arc<dyn Timer>,
    patience: Duration,
    slow_after: Duration,
    down_fraction: f64,
}

impl AgentsCheck {
    /// A check of `agents`, each given 5 s to answer, slow past 1 s.
    pub fn new(
        agents: impl IntoIterator<Item = Arc<dyn Agent>>,
        clock: impl Clock,
        timer: impl Timer + 'static,
    ) -> Self {
        AgentsCheck {
            agents: agents.into_iter().collect(),
            clock: Arc::new(clock),
            timer: Arc::new(timer),
            patience: Duration::from_secs(5),
            slow_after: Duration::from_secs(1),
            down_fraction: 0.5,
        }
    }

    /// How long each agent is given to answer (default 5 s).
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// An answer slower than this makes the check degraded (default 1 s).
    pub fn with_slow_after(mut self, slow_after: Duration) -> Self {
        self.slow_after = slow_after;
        self
    }

    /// The share of agents down (in `[0, 1]`) from which the check is unhealthy
    /// (default 0.5); a value out of range is clamped into it.
    pub fn with_down_fraction(mut self, fraction: f64) -> Self {
        self.down_fraction = if fraction.is_nan() {
            0.5
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }
}

#[async_trait::async_trait]
impl HealthCheck for AgentsCheck {
    fn name(&self) -> &str {
        "agents"
    }

    async fn check(&self) -> Result<CheckOutcome, CheckError> {
        if self.agents.is_empty() {
            return Ok(CheckOutcome::unhealthy("no agents to check"));
        }
        let deadline = self.clock.now() + self.patience;
        let pings = self.agents.iter().map(|agent| async move {
            let ask = std::panic::AssertUnwindSafe(agent.ping(self.clock.as_ref()));
            let ask = futures::FutureExt::catch_unwind(ask);
            let sleep = self.timer.sleep_until(deadline);
            futures::pin_mut!(ask, sleep);
            let answer = match futures::future::select(ask, sleep).await {
                Either::Left((Ok(Ok(ping)), _)) => Ok(ping),
                Either::Left((Ok(Err(e)), _)) => Err(e.to_string()),
                Either::Left((Err(_), _)) => Err("panicked".to_owned()),
                Either::Right(((), _)) => Err(format!("no answer within {}", human(self.patience))),
            };
            (agent.id(), answer)
        });
        let answers = futures::future::join_all(pings).await;
        let mut outcome = CheckOutcome::healthy("");
        let (mut down, mut slow) = (Vec::new(), Vec::new());
        for (agent, answer) in &answers {
            match answer {
                Ok(ping) => {
                    let ms = ping.response_time.as_millis();
                    outcome = outcome
                        .with_detail(format!("{agent}.response_ms"), ms)
                        .with_detail(format!("{agent}.version"), &ping.version);
                    if ping.response_time > self.slow_after {
                        slow.push(format!("{agent} ({ms} ms)"));
                    }
                }
                Err(why) => {
                    outcome = outcome.with_detail(format!("{agent}.down"), why);
                    down.push(format!("{agent} ({why})"));
                }
            }
        }
        let n = answers.len();
        #[allow(clippy::cast_precision_loss)] // agent counts are far below 2^52
        let down_share = down.len() as f64 / n as f64;
        outcome.status = if !down.is_empty() && down_share >= self.down_fraction {
            HealthStatus::Unhealthy
        } else if !down.is_empty() || !slow.is_empty() {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        };
        let mut reason = format!("{} of {n} agents answered", n - down.len());
        if !down.is_empty() {
            reason.push_str(&format!("; down: {}", down.join(", ")));
        }
        if !slow.is_empty() {
            reason.push_str(&format!(
                "; slower than {}: {}",
                human(self.slow_after),
                slow.join(", ")
            ));
        }
        outcome.reason = reason;
        Ok(outcome)
    }
}

/// Reads the coordinator's ledger: degraded when a resource is in use above
/// `busy_above` of its capacity (default 90%, the bottleneck line), unhealthy when
/// requests wait while one is (the policies' utilization cap keeps use below 100%:
/// a resource that busy with work waiting is as exhausted as it gets).
///
/// The resource status part of the morning checklist.
#[derive(Clone)]
pub struct ResourcesCheck {
    coordinator: Arc<Coordinator>,
    busy_above: f64,
}

impl fmt::Debug for ResourcesCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourcesCheck")
            .field("busy_above", &self.busy_above)
            .finish_non_exhaustive()
    }
}

impl ResourcesCheck {
    /// A check of `coordinator`'s resources.
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        ResourcesCheck {
            coordinator,
            busy_above: 0.9,
        }
    }

    /// The use (in `[0, 1]`) above which a resource makes the check degraded
    /// (default 0.9); a value out of range is clamped into it.
    pub fn with_busy_above(mut self, share: f64) -> Self {
        self.busy_above = if share.is_nan() {
            0.9
        } else {
            share.clamp(0.0, 1.0)
        };
        self
    }
}

#[async_trait::async_trait]
impl HealthCheck for ResourcesCheck {
    fn name(&self) -> &str {
        "resources"
    }

    async fn check(&self) -> Result<CheckOutcome, CheckError> {
        let report = self.coordinator.with_ledger(|l| l.usage_report());
        let mut outcome = CheckOutcome::healthy("")
            .with_detail("allocations", report.allocations)
            .with_detail("waiting", report.waiting);
        let (mut busy, mut exhausted) = (Vec::new(), Vec::new());
        for r in &report.resources {
            let pct = r.utilization * 100.0;
            outcome = outcome.with_detail(format!("{}.used_pct", r.resource), format!("{pct:.1}"));
            let line = format!("{} {pct:.1}%", r.resource);
            if r.utilization > self.busy_above {
                if report.waiting > 0 {
                    exhausted.push(line);
                } else {
                    busy.push(line);
                }
            }
        }
        outcome.status = if !exhausted.is_empty() {
            HealthStatus::Unhealthy
        } else if !busy.is_empty() {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        };
        outcome.reason = match (exhausted.is_empty(), busy.is_empty()) {
            (true, true) => format!(
                "{} resources below {:.0}% use, {} requests waiting",
                report.resources.len(),
                self.busy_above * 100.0,
                report.waiting
            ),
            _ => {
                let mut parts = Vec::new();
                if !exhausted.is_empty() {
                    parts.push(format!(
                        "above {:.0}% with {} requests waiting: {}",
                        self.busy_above * 100.0,
                        report.waiting,
                        exhausted.join(", ")
                    ));
                }
                if !busy.is_empty() {
                    parts.push(format!(
                        "above {:.0}%: {}",
                        self.busy_above * 100.0,
                        busy.join(", ")
                    ));
                }
                parts.join("; ")
            }
        };
        Ok(outcome)
    }
}

/// Reads the coordinator's conflicts and waiting tasks: degraded when a conflict has
/// been open longer than `conflict_limit` (default 2 h, when the default escalation
/// ladder hands a conflict to a human: neither automatic resolution nor the
/// orchestrator closed it) or a task has waited longer than `wait_limit` (default
/// 1 h); unhealthy when ten or more are.
///
/// Stuck workflow runs show here as their steps' tasks waiting too long.
#[derive(Clone)]
pub struct CoordinationCheck {
    coordinator: Arc<Coordinator>,
    conflict_limit: Duration,
    wait_limit: Duration,
}

impl fmt::Debug for CoordinationCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinationCheck")
            .field("conflict_limit", &self.conflict_limit)
            .field("wait_limit", &self.wait_limit)
            .finish_non_exhaustive()
    }
}

/// How many overdue conflicts or tasks make coordination unhealthy rather than
/// degraded: the procedures' bottleneck line for a queue.
const UNHEALTHY_OVERDUE: usize = 10;

impl CoordinationCheck {
    /// A check of `coordinator`'s conflicts and queue.
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        CoordinationCheck {
            coordinator,
            // The ladder's default closes a conflict at 3 h (a human asked at 2 h,
            // an hour to answer): a longer limit could never be passed.
            conflict_limit: Duration::from_secs(2 * 3600),
            wait_limit: Duration::from_secs(3600),
        }
    }

    /// How long a conflict may stay open (default 2 h). Under the escalation ladder
    /// in use, a limit at or past the time its default decision closes a conflict
    /// is never passed.
    pub fn with_conflict_limit(mut self, limit: Duration) -> Self {
        self.conflict_limit = limit;
        self
    }

    /// How long a task may wait (default 1 h).
    pub fn with_wait_limit(mut self, limit: Duration) -> Self {
        self.wait_limit = limit;
        self
    }
}

#[async_trait::async_trait]
impl HealthCheck for CoordinationCheck {
    fn name(&self) -> &str {
        "coordination"
    }

    async fn check(&self) -> Result<CheckOutcome, CheckError> {
        let now = self.coordinator.now();
        let conflicts = self.coordinator.open_conflicts();
        let waiting = self.coordinator.waiting();
        let old_conflicts: Vec<String> = conflicts
            .iter()
            .filter(|c| now.duration_since(c.opened_at) > self.conflict_limit)
            .map(|c| {
                format!(
                    "{} ({})",
                    c.conflict.id(),
                    human(now.duration_since(c.opened_at))
                )
            })
            .collect();
        let long_waits: Vec<String> = waiting
            .iter()
            .filter_map(|w| {
                let waited = now.duration_since(w.since?);
                (waited > self.wait_limit).then(|| format!("{} ({})", w.task.id(), human(waited)))
            })
            .collect();
        let overdue = old_conflicts.len() + long_waits.len();
        let status = match overdue {
            0 => HealthStatus::Healthy,
            n if n >= UNHEALTHY_OVERDUE => HealthStatus::Unhealthy,
            _ => HealthStatus::Degraded,
        };
        let mut reason = format!(
            "{} open, {} waiting",
            plural(conflicts.len(), "conflict", "conflicts"),
            plural(waiting.len(), "task", "tasks")
        );
        let show = |v: &[String]| {
            let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            if v.len() > 5 {
                s.push_str(&format!(" and {} more", v.len() - 5));
            }
            s
        };
        if !old_conflicts.is_empty() {
            reason.push_str(&format!(
                "; open longer than {}: {}",
                human(self.conflict_limit),
                show(&old_conflicts)
            ));
        }
        if !long_waits.is_empty() {
            reason.push_str(&format!(
                "; waiting longer than {}: {}",
                human(self.wait_limit),
                show(&long_waits)
            ));
        }
        Ok(CheckOutcome::new(status, reason)
            .with_detail("conflicts_open", conflicts.len())
            .with_detail("conflicts_overdue", old_conflicts.len())
            .with_detail("tasks_waiting", waiting.len())
            .with_detail("tasks_overdue", long_waits.len()))
    }
}
