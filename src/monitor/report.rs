//! Reports as data, with Markdown for people: [`DailySummary`] (the key metrics of a
//! window), [`PerformanceReport`] (bottlenecks, agent performance, resource
//! efficiency, coordination overhead, recommendations) and [`DailyReport`] (both, and
//! the capacity trends).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::anomaly::{Anomaly, Subject};
use super::error::MonitorError;
use super::thresholds::{Bottleneck, Finding, Recommendation, Thresholds, percent};
use super::trend::CapacityTrend;
use super::window::{ResourceStats, TaskCounts, Window};
use crate::clock::Timestamp;
use crate::id::AgentId;
use crate::resource::ResourceName;

/// How many agents the Markdown tables list (the busiest first); the data holds all.
pub const MARKDOWN_AGENTS: usize = 20;

/// One agent's key figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentSummary {
    /// The agent.
    pub agent: AgentId,
    /// Busy over available slot-time.
    pub utilization: Option<f64>,
    /// Succeeded over finished.
    pub completion_rate: Option<f64>,
    /// Tasks started on it.
    pub started: u64,
    /// Tasks finished on it (succeeded, failed or lost).
    pub finished: u64,
    /// Its queue (see [`AgentStats::queue_length`](super::AgentStats::queue_length)).
    pub queue_length: f64,
    /// The mean run time of its finished tasks, in seconds.
    pub mean_task_secs: Option<f64>,
}

/// One resource's key figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResourceSummary {
    /// The resource.
    pub resource: ResourceName,
    /// Allocated over capacity, on average.
    pub mean_use: Option<f64>,
    /// Allocated over capacity, at the peak.
    pub peak_use: f64,
    /// The share of the allocation the finished tasks used.
    pub efficiency: Option<f64>,
    /// Used over predicted (allocated).
    pub prediction_ratio: Option<f64>,
    /// Finished tasks that used more than predicted.
    pub under_predicted: u64,
    /// Finished tasks that reported on it.
    pub reports: u64,
}

impl From<&ResourceStats> for ResourceSummary {
    fn from(r: &ResourceStats) -> Self {
        ResourceSummary {
            resource: r.resource.clone(),
            mean_use: r.mean_use(),
            peak_use: r.peak_use,
            efficiency: r.efficiency(),
            prediction_ratio: r.prediction_ratio(),
            under_predicted: r.under_predicted,
            reports: r.reports,
        }
    }
}

/// The conflicts' key figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConflictSummary {
    /// Detected.
    pub detected: u64,
    /// Resolved or decided.
    pub closed: u64,
    /// Escalation actions.
    pub escalated: u64,
    /// Open at the end.
    pub open: u64,
    /// Median resolution time, in seconds.
    pub p50_secs: Option<f64>,
    /// 95th percentile resolution time, in seconds.
    pub p95_secs: Option<f64>,
    /// Longest resolution time, in seconds.
    pub max_secs: Option<f64>,
}

/// The queue's key figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueueSummary {
    /// Waiting at the end.
    pub current: u64,
    /// The most waiting at once.
    pub peak: u64,
    /// Waiting on average.
    pub mean_length: f64,
    /// Tasks that started after waiting.
    pub waited: u64,
    /// Their median wait, in seconds.
    pub wait_p50_secs: Option<f64>,
    /// Their 95th percentile wait, in seconds.
    pub wait_p95_secs: Option<f64>,
}

/// Where the tasks' time went: waiting for capacity, waiting on coordination, or
/// working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CoordinationOverhead {
    /// `blocked / (blocked + working)`: time queued for capacity is not coordination
    /// (see [`Window::coordination_overhead`](super::Window::coordination_overhead)).
    pub overhead: Option<f64>,
    /// Task-seconds queued for a free agent, resources or normal mode.
    pub queued_secs: f64,
    /// Task-seconds blocked behind claims and conflicts.
    pub blocked_secs: f64,
    /// Slot-seconds working.
    pub working_secs: f64,
}

/// The key metrics of a window (with the default window, a day): agent utilization,
/// conflict resolution times, resource efficiency, task completion rates, and the
/// anomalies found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DailySummary {
    /// Where the window starts.
    pub start: Timestamp,
    /// Where it ends.
    pub end: Timestamp,
    /// The fleet's utilization.
    pub utilization: Option<f64>,
    /// The task completion rate.
    pub completion_rate: Option<f64>,
    /// The task counts.
    pub tasks: TaskCounts,
    /// The median task run time, in seconds.
    pub task_p50_secs: Option<f64>,
    /// The 95th percentile task run time, in seconds.
    pub task_p95_secs: Option<f64>,
    /// The conflicts.
    pub conflicts: ConflictSummary,
    /// The resource efficiency (mean over resources).
    pub resource_efficiency: Option<f64>,
    /// Each resource.
    pub resources: Vec<ResourceSummary>,
    /// The coordination overhead.
    pub coordination: CoordinationOverhead,
    /// The queue.
    pub queue: QueueSummary,
    /// Each agent, in id order.
    pub agents: Vec<AgentSummary>,
    /// The anomalies found, in time order.
    pub anomalies: Vec<Anomaly>,
}

impl Window {
    /// The window's key metrics.
    pub fn summary(&self) -> DailySummary {
        DailySummary::from_window(self)
    }
}

impl DailySummary {
    /// The key metrics of `w`.
    ///
    /// # Complexity
    /// O(agents + resources + anomalies + sketch buckets).
    pub fn from_window(w: &Window) -> Self {
        let span = w.span_secs();
        let c = &w.conflicts;
        DailySummary {
            start: w.start,
            end: w.end,
            utilization: w.utilization(),
            completion_rate: w.completion_rate(),
            tasks: w.tasks,
            task_p50_secs: w.durations.quantile(0.5),
            task_p95_secs: w.durations.quantile(0.95),
            conflicts: ConflictSummary {
                detected: c.detected,
                closed: c.resolved.saturating_add(c.decided),
                escalated: c.escalated,
                open: c.open,
                p50_secs: c.resolution.quantile(0.5),
                p95_secs: c.resolution.quantile(0.95),
                max_secs: c.resolution.max(),
            },
            resource_efficiency: w.resource_efficiency(),
            resources: w.resources.iter().map(ResourceSummary::from).collect(),
            coordination: CoordinationOverhead {
                overhead: w.coordination_overhead(),
                queued_secs: w.queue.queued_secs,
                blocked_secs: w.queue.blocked_secs,
                working_secs: w.busy_secs(),
            },
            queue: QueueSummary {
                current: w.queue.current,
                peak: w.queue.peak,
                mean_length: w.mean_queue_length(),
                waited: w.tasks.waited,
                wait_p50_secs: w.queue.waits.quantile(0.5),
                wait_p95_secs: w.queue.waits.quantile(0.95),
            },
            agents: w
                .agents
                .iter()
                .map(|a| AgentSummary {
                    agent: a.agent,
                    utilization: a.utilization(),
                    completion_rate: a.completion_rate(),
                    started: a.started,
                    finished: a.finished(),
                    queue_length: a.queue_length(span),
                    mean_task_secs: a.durations.mean(),
                })
                .collect(),
            anomalies: w.anomalies.clone(),
        }
    }

    /// The summary as Markdown: key metrics, anomalies, the busiest agents and the
    /// resources.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Performance summary, {} to {}\n",
            self.start, self.end
        );
        self.key_metrics(&mut out);
        self.anomalies_section(&mut out);
        agents_table(&mut out, "Agents", &busiest(&self.agents));
        resources_table(&mut out, &self.resources);
        out
    }

    fn key_metrics(&self, out: &mut String) {
        let t = &self.tasks;
        let c = &self.conflicts;
        let q = &self.queue;
        let o = &self.coordination;
        let span = self.end.duration_since(self.start).as_secs_f64();
        let _ = writeln!(out, "## Key metrics\n\n| metric | value |\n|---|---|");
        let _ = writeln!(
            out,
            "| agent utilization (fleet) | {} |",
            opt_percent(self.utilization)
        );
        let _ = writeln!(
            out,
            "| task completion rate | {} ({} succeeded of {} finished; {} started, {} rejected, {} cancelled) |",
            opt_percent(self.completion_rate),
            t.succeeded,
            t.finished(),
            t.assigned,
            t.rejected.saturating_add(t.denied),
            t.cancelled
        );
        let _ = writeln!(
            out,
            "| task run time | p50 {}, p95 {} |",
            opt_secs(self.task_p50_secs),
            opt_secs(self.task_p95_secs)
        );
        let _ = writeln!(
            out,
            "| conflict resolution time | p50 {}, p95 {}, max {} ({} detected, {} closed, {} open, {} escalations) |",
            opt_secs(c.p50_secs),
            opt_secs(c.p95_secs),
            opt_secs(c.max_secs),
            c.detected,
            c.closed,
            c.open,
            c.escalated
        );
        let _ = writeln!(
            out,
            "| resource efficiency | {} |",
            opt_percent(self.resource_efficiency)
        );
        let _ = writeln!(
            out,
            "| coordination overhead | {} (blocked {} against {} working; queued for capacity {}) |",
            opt_percent(o.overhead),
            format_secs(o.blocked_secs),
            format_secs(o.working_secs),
            format_secs(o.queued_secs)
        );
        let _ = writeln!(
            out,
            "| queue | now {}, peak {}, mean {:.1}; wait p50 {}, p95 {} ({} waited) |",
            q.current,
            q.peak,
            q.mean_length,
            opt_secs(q.wait_p50_secs),
            opt_secs(q.wait_p95_secs),
            q.waited
        );
        let _ = writeln!(out, "| window | {} |\n", format_secs(span));
    }

    fn anomalies_section(&self, out: &mut String) {
        let _ = writeln!(out, "## Anomalies\n");
        if self.anomalies.is_empty() {
            let _ = writeln!(out, "None found.\n");
            return;
        }
        for a in &self.anomalies {
            let _ = writeln!(out, "- {a}");
        }
        out.push('\n');
    }
}

/// The agents, busiest first (then by id), at most [`MARKDOWN_AGENTS`] of them.
fn busiest(agents: &[AgentSummary]) -> Vec<&AgentSummary> {
    let mut sorted: Vec<&AgentSummary> = agents.iter().collect();
    sort_busiest(&mut sorted);
    sorted.truncate(MARKDOWN_AGENTS);
    sorted
}

fn sort_busiest<T: std::borrow::Borrow<AgentSummary>>(agents: &mut [T]) {
    agents.sort_by(|a, b| {
        let (a, b) = (a.borrow(), b.borrow());
        let ua = a.utilization.unwrap_or(-1.0);
        let ub = b.utilization.unwrap_or(-1.0);
        ub.total_cmp(&ua).then(a.agent.cmp(&b.agent))
    });
}

fn agents_table(out: &mut String, title: &str, agents: &[&AgentSummary]) {
    let _ = writeln!(out, "## {title}\n");
    if agents.is_empty() {
        let _ = writeln!(out, "No agent was seen.\n");
        return;
    }
    let _ = writeln!(
        out,
        "| agent | utilization | completion rate | started | finished | queue | mean task |\n|---|---|---|---|---|---|---|"
    );
    for a in agents {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.1} | {} |",
            a.agent,
            opt_percent(a.utilization),
            opt_percent(a.completion_rate),
            a.started,
            a.finished,
            a.queue_length,
            opt_secs(a.mean_task_secs)
        );
    }
    out.push('\n');
}

fn resources_table(out: &mut String, resources: &[ResourceSummary]) {
    let _ = writeln!(out, "## Resources\n");
    if resources.is_empty() {
        let _ = writeln!(out, "No resource was declared or allocated.\n");
        return;
    }
    let _ = writeln!(
        out,
        "| resource | mean use | peak use | efficiency | used / predicted | under-predicted |\n|---|---|---|---|---|---|"
    );
    for r in resources {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} of {} |",
            r.resource,
            opt_percent(r.mean_use),
            percent(r.peak_use),
            opt_percent(r.efficiency),
            opt_percent(r.prediction_ratio),
            r.under_predicted,
            r.reports
        );
    }
    out.push('\n');
}

/// The performance report: bottlenecks, agent performance, resource efficiency,
/// coordination overhead, and the recommendations that follow from the thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PerformanceReport {
    /// Where the window starts.
    pub start: Timestamp,
    /// Where it ends.
    pub end: Timestamp,
    /// The bottlenecks: agents' queues longer than the threshold (longest first),
    /// then resources above their use threshold (most used first).
    pub bottlenecks: Vec<Bottleneck>,
    /// Every agent, busiest first.
    pub agent_performance: Vec<AgentSummary>,
    /// Each resource.
    pub resource_efficiency: Vec<ResourceSummary>,
    /// The coordination overhead.
    pub coordination_overhead: CoordinationOverhead,
    /// Every figure past its threshold: the fleet's utilization, the agents'
    /// (highest first), the coordination overhead, the resources' efficiency, then
    /// the bottlenecks.
    pub findings: Vec<Finding>,
    /// What to do, one entry an action, with the findings behind it.
    pub recommendations: Vec<Recommendation>,
}

impl PerformanceReport {
    /// The report on `summary` against `thresholds`.
    ///
    /// # Errors
    /// [`MonitorError::Setting`] naming a threshold out of range.
    ///
    /// # Complexity
    /// O(agents log agents).
    pub fn new(summary: &DailySummary, thresholds: &Thresholds) -> Result<Self, MonitorError> {
        thresholds.validate()?;
        Ok(Self::with_valid(summary, thresholds))
    }

    pub(crate) fn with_valid(summary: &DailySummary, t: &Thresholds) -> Self {
        let mut agents = summary.agents.clone();
        sort_busiest(&mut agents);
        let mut findings = Vec::new();
        if let Some(u) = summary.utilization.filter(|u| *u > t.utilization_high()) {
            findings.push(Finding::HighUtilization {
                subject: Subject::Fleet,
                utilization: u,
                threshold: t.utilization_high(),
            });
        }
        for a in &agents {
            match a.utilization {
                Some(u) if u > t.utilization_high() => findings.push(Finding::HighUtilization {
                    subject: Subject::Agent(a.agent),
                    utilization: u,
                    threshold: t.utilization_high(),
                }),
                // Sorted busiest first: the rest are below.
                _ => break,
            }
        }
        if let Some(o) = summary
            .coordination
            .overhead
            .filter(|o| *o > t.coordination_overhead_high())
        {
            findings.push(Finding::HighCoordinationOverhead {
                overhead: o,
                threshold: t.coordination_overhead_high(),
            });
        }
        for r in &summary.resources {
            if let Some(e) = r.efficiency.filter(|e| *e < t.resource_efficiency_low()) {
                findings.push(Finding::LowResourceEfficiency {
                    resource: r.resource.clone(),
                    efficiency: e,
                    threshold: t.resource_efficiency_low(),
                });
            }
        }
        let mut queues: Vec<&AgentSummary> = agents
            .iter()
            .filter(|a| a.queue_length > t.agent_queue_long())
            .collect();
        queues.sort_by(|a, b| {
            b.queue_length
                .total_cmp(&a.queue_length)
                .then(a.agent.cmp(&b.agent))
        });
        let mut bottlenecks: Vec<Bottleneck> = queues
            .into_iter()
            .map(|a| Bottleneck::AgentQueue {
                agent: a.agent,
                queue_length: a.queue_length,
                threshold: t.agent_queue_long(),
            })
            .collect();
        let mut contended: Vec<(&ResourceSummary, f64)> = summary
            .resources
            .iter()
            .filter_map(|r| Some((r, r.mean_use.filter(|u| *u > t.resource_use_high())?)))
            .collect();
        contended.sort_by(|a, b| b.1.total_cmp(&a.1));
        bottlenecks.extend(contended.into_iter().map(|(r, usage)| {
            Bottleneck::ResourceContention {
                resource: r.resource.clone(),
                usage,
                peak: r.peak_use,
                threshold: t.resource_use_high(),
            }
        }));
        findings.extend(bottlenecks.iter().cloned().map(Finding::Bottleneck));
        let recommendations = Recommendation::from_findings(&findings);
        PerformanceReport {
            start: summary.start,
            end: summary.end,
            bottlenecks,
            agent_performance: agents,
            resource_efficiency: summary.resources.clone(),
            coordination_overhead: summary.coordination.clone(),
            findings,
            recommendations,
        }
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Performance report, {} to {}\n",
            self.start, self.end
        );
        self.sections(&mut out);
        out
    }

    fn sections(&self, out: &mut String) {
        let _ = writeln!(out, "## Bottlenecks\n");
        if self.bottlenecks.is_empty() {
            let _ = writeln!(out, "None found.\n");
        } else {
            for b in &self.bottlenecks {
                let _ = writeln!(out, "- {b}");
            }
            out.push('\n');
        }
        let top: Vec<&AgentSummary> = self
            .agent_performance
            .iter()
            .take(MARKDOWN_AGENTS)
            .collect();
        let title = if self.agent_performance.len() > MARKDOWN_AGENTS {
            format!(
                "Agent performance (the {MARKDOWN_AGENTS} busiest of {})",
                self.agent_performance.len()
            )
        } else {
            "Agent performance".to_owned()
        };
        agents_table(out, &title, &top);
        resources_table(out, &self.resource_efficiency);
        let o = &self.coordination_overhead;
        let _ = writeln!(
            out,
            "## Coordination overhead\n\n{} of the tasks' time outside the queue went to coordination: {} blocked behind claims and conflicts, against {} working. They also waited {} in the queue for capacity (a free agent, resources or normal mode), which is not counted here.\n",
            opt_percent(o.overhead),
            format_secs(o.blocked_secs),
            format_secs(o.working_secs),
            format_secs(o.queued_secs)
        );
        let _ = writeln!(out, "## Recommendations\n");
        if self.recommendations.is_empty() {
            let _ = writeln!(out, "Nothing past its threshold.\n");
            return;
        }
        for r in &self.recommendations {
            let _ = write!(out, "- **{}**: ", r.action);
            for (k, f) in r.because.iter().take(MARKDOWN_AGENTS).enumerate() {
                if k > 0 {
                    out.push_str("; ");
                }
                let _ = write!(out, "{f}");
            }
            if r.because.len() > MARKDOWN_AGENTS {
                let _ = write!(out, "; and {} more", r.because.len() - MARKDOWN_AGENTS);
            }
            out.push('\n');
        }
        out.push('\n');
    }
}

/// The daily review: the key metrics and anomalies, the performance report, and the
/// capacity trends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DailyReport {
    /// The key metrics and anomalies.
    pub summary: DailySummary,
    /// Bottlenecks, performance and recommendations.
    pub performance: PerformanceReport,
    /// Growth projections over the kept windows.
    pub capacity: Vec<CapacityTrend>,
}

impl DailyReport {
    /// The report on `window` against `thresholds`, with `capacity` trends (see
    /// [`Monitor::capacity_trends`](super::Monitor::capacity_trends)).
    ///
    /// # Errors
    /// [`MonitorError::Setting`] naming a threshold out of range.
    pub fn new(
        window: &Window,
        thresholds: &Thresholds,
        capacity: Vec<CapacityTrend>,
    ) -> Result<Self, MonitorError> {
        thresholds.validate()?;
        Ok(Self::with_valid(window, *thresholds, capacity))
    }

    pub(crate) fn with_valid(
        window: &Window,
        thresholds: Thresholds,
        capacity: Vec<CapacityTrend>,
    ) -> Self {
        let summary = window.summary();
        let performance = PerformanceReport::with_valid(&summary, &thresholds);
        DailyReport {
            summary,
            performance,
            capacity,
        }
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Daily performance report, {} to {}\n",
            self.summary.start, self.summary.end
        );
        self.summary.key_metrics(&mut out);
        self.summary.anomalies_section(&mut out);
        self.performance.sections(&mut out);
        let _ = writeln!(out, "## Capacity\n");
        if self.capacity.is_empty() {
            let _ = writeln!(out, "Not enough closed windows for a trend yet.");
        } else {
            for c in &self.capacity {
                let _ = writeln!(out, "- {c}");
            }
        }
        out
    }
}

fn opt_percent(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), percent)
}

fn opt_secs(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), format_secs)
}

/// Seconds for people: `250ms`, `45s`, `4m 10s`, `1h 2m`, `2d 3h`.
pub(crate) fn format_secs(secs: f64) -> String {
    if !secs.is_finite() {
        return "n/a".to_owned();
    }
    let s = secs.abs();
    // What rounds to zero is shown without a sign.
    let sign = if secs < 0.0 && s >= 0.0005 { "-" } else { "" };
    if s < 1.0 {
        return format!("{sign}{}ms", (s * 1000.0).round() as u64);
    }
    if s < 60.0 {
        return format!("{sign}{s:.1}s");
    }
    let whole = s.round() as u64;
    let (d, h, m, sec) = (
        whole / 86_400,
        whole / 3600 % 24,
        whole / 60 % 60,
        whole % 60,
    );
    if d > 0 {
        format!("{sign}{d}d {h}h")
    } else if h > 0 {
        format!("{sign}{h}h {m}m")
    } else {
        format!("{sign}{m}m {sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_as_people_write_them() {
        assert_eq!(format_secs(0.25), "250ms");
        assert_eq!(format_secs(45.0), "45.0s");
        assert_eq!(format_secs(250.0), "4m 10s");
        assert_eq!(format_secs(3720.0), "1h 2m");
        assert_eq!(format_secs(183_600.0), "2d 3h");
        assert_eq!(format_secs(f64::NAN), "n/a");
        assert_eq!(format_secs(-2.0), "-2.0s");
    }
}
