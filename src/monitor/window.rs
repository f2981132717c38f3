//! [`Window`]: what happened over one stretch of time, as mergeable aggregates.

use std::cmp::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::anomaly::Anomaly;
use super::error::MonitorError;
use super::sketch::QuantileSketch;
use super::summary::Summary;
use crate::clock::Timestamp;
use crate::id::AgentId;
use crate::resource::ResourceName;

/// What happened to tasks in a window, counted.
///
/// Sums of counts ([`finished`](Self::finished), [`Window::merge`]) saturate at
/// `u64::MAX` rather than overflow: no stream counts that far, but a window is plain
/// data and may come from anywhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TaskCounts {
    /// Started on an agent.
    pub assigned: u64,
    /// Of those, started after waiting (queued or blocked).
    pub waited: u64,
    /// Began to wait in the coordinator's queue (for resources, a slot, an agent or
    /// normal mode).
    pub queued: u64,
    /// Began to wait behind a running task's claims.
    pub blocked: u64,
    /// Finished and succeeded.
    pub succeeded: u64,
    /// Finished and failed.
    pub failed: u64,
    /// Taken from an agent that left service, and failed.
    pub lost: u64,
    /// Taken from an agent that left service, and waiting again.
    pub requeued: u64,
    /// Ended without an outcome (cancelled run, interrupted attempt).
    pub released: u64,
    /// Refused: no agent could ever take it.
    pub rejected: u64,
    /// Withdrawn: the conflict it waited on was denied.
    pub denied: u64,
    /// Withdrawn while waiting.
    pub cancelled: u64,
    /// Policy refusals of an agent for a task.
    pub policy_refusals: u64,
}

impl TaskCounts {
    /// Tasks that finished with an outcome: succeeded, failed, or lost with their agent.
    pub fn finished(&self) -> u64 {
        self.succeeded
            .saturating_add(self.failed)
            .saturating_add(self.lost)
    }

    /// Succeeded over finished, when any finished.
    pub fn completion_rate(&self) -> Option<f64> {
        ratio(self.succeeded as f64, self.finished() as f64)
    }

    fn merge(&mut self, o: &TaskCounts) {
        add(&mut self.assigned, o.assigned);
        add(&mut self.waited, o.waited);
        add(&mut self.queued, o.queued);
        add(&mut self.blocked, o.blocked);
        add(&mut self.succeeded, o.succeeded);
        add(&mut self.failed, o.failed);
        add(&mut self.lost, o.lost);
        add(&mut self.requeued, o.requeued);
        add(&mut self.released, o.released);
        add(&mut self.rejected, o.rejected);
        add(&mut self.denied, o.denied);
        add(&mut self.cancelled, o.cancelled);
        add(&mut self.policy_refusals, o.policy_refusals);
    }
}

/// The tasks waiting to start: how many, for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueueStats {
    /// Tasks waiting at the window's end (for the window in progress: now).
    pub current: u64,
    /// The most waiting at once.
    pub peak: u64,
    /// Task-seconds spent waiting in the coordinator's queue (for resources, a slot,
    /// an agent, or normal mode).
    pub queued_secs: f64,
    /// Task-seconds spent blocked behind running tasks' claims and the conflicts they
    /// opened.
    pub blocked_secs: f64,
    /// How long the tasks that started after waiting had waited, in seconds.
    pub waits: QuantileSketch,
}

/// The conflicts opened and closed in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConflictStats {
    /// Detected.
    pub detected: u64,
    /// Resolved: the task holding the contested claim finished.
    pub resolved: u64,
    /// Decided: approved or denied by the orchestrator, a human, or the ladder's
    /// default.
    pub decided: u64,
    /// Of those decided, by the escalation ladder's default (nobody answered in time).
    pub decided_by_default: u64,
    /// Escalation actions taken.
    pub escalated: u64,
    /// Open at the window's end.
    pub open: u64,
    /// Time from detection to resolution or decision, in seconds.
    pub resolution: QuantileSketch,
    /// The same times' mean and spread.
    pub resolution_summary: Summary,
}

/// One resource across the fleet: how much of it was held, and how well the held
/// amounts matched what the tasks used.
///
/// The coordinator allocates what the predictor predicted, so "allocated" and
/// "predicted" are the same amounts: [`efficiency`](Self::efficiency) says how much
/// of the allocation was used, [`prediction_ratio`](Self::prediction_ratio) and
/// `under_predicted` say how far and how often the prediction missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResourceStats {
    /// The resource.
    pub resource: ResourceName,
    /// The fleet's capacity integrated over the window (unit-seconds: cpu
    /// millicore-seconds, memory byte-seconds, ...).
    pub capacity_secs: f64,
    /// The amount allocated to running tasks, integrated over the window.
    pub allocated_secs: f64,
    /// The highest share of the capacity allocated at once.
    pub peak_use: f64,
    /// What the finished tasks that reported their usage had been allocated.
    pub allocated: f64,
    /// What they used.
    pub used: f64,
    /// What they used up to their allocation: `Σ min(used, allocated)`.
    pub used_within: f64,
    /// How many of them used more than they were allocated.
    pub under_predicted: u64,
    /// How many of them reported a usage or held an allocation of this resource.
    pub reports: u64,
}

impl ResourceStats {
    /// Allocated over capacity, on average over the window.
    pub fn mean_use(&self) -> Option<f64> {
        ratio(self.allocated_secs, self.capacity_secs)
    }

    /// The share of the allocation the finished tasks used (at most 1).
    pub fn efficiency(&self) -> Option<f64> {
        ratio(self.used_within, self.allocated)
    }

    /// Used over predicted (allocated): above 1, the predictions fell short.
    pub fn prediction_ratio(&self) -> Option<f64> {
        ratio(self.used, self.allocated)
    }

    fn merge(&mut self, o: &ResourceStats) {
        self.capacity_secs += o.capacity_secs;
        self.allocated_secs += o.allocated_secs;
        self.peak_use = self.peak_use.max(o.peak_use);
        self.allocated += o.allocated;
        self.used += o.used;
        self.used_within += o.used_within;
        add(&mut self.under_predicted, o.under_predicted);
        add(&mut self.reports, o.reports);
    }
}

/// One agent's figures in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentStats {
    /// The agent.
    pub agent: AgentId,
    /// Slot-seconds its tasks ran.
    pub busy_secs: f64,
    /// Slot-seconds it offered: its task slots while in service (available or busy),
    /// and never less than its running tasks.
    pub available_secs: f64,
    /// Tasks started on it.
    pub started: u64,
    /// Of those, started after waiting.
    pub waited: u64,
    /// How long those had waited, in total (seconds).
    pub waited_secs: f64,
    /// Tasks that succeeded on it.
    pub succeeded: u64,
    /// Tasks that failed on it.
    pub failed: u64,
    /// Tasks lost when it left service.
    pub lost: u64,
    /// Tasks released from it without an outcome.
    pub released: u64,
    /// The most tasks blocked at once behind its running tasks' claims.
    pub blocked_peak: u64,
    /// How long its finished tasks ran, in seconds.
    pub durations: Summary,
}

impl AgentStats {
    /// Busy over available slot-time.
    pub fn utilization(&self) -> Option<f64> {
        ratio(self.busy_secs, self.available_secs)
    }

    /// Tasks finished with an outcome (saturating at `u64::MAX`).
    pub fn finished(&self) -> u64 {
        self.succeeded
            .saturating_add(self.failed)
            .saturating_add(self.lost)
    }

    /// Succeeded over finished.
    pub fn completion_rate(&self) -> Option<f64> {
        ratio(self.succeeded as f64, self.finished() as f64)
    }

    /// Its queue over a span of `span_secs`: the tasks waiting for it, the larger of
    /// the mean number waiting for it (their waits over the span, by Little's law;
    /// the coordinator's queue is shared, so a task is known to have waited for this
    /// agent when it starts here) and the most blocked at once behind its tasks.
    pub fn queue_length(&self, span_secs: f64) -> f64 {
        let mean = if span_secs > 0.0 {
            self.waited_secs / span_secs
        } else {
            0.0
        };
        mean.max(self.blocked_peak as f64)
    }

    fn merge(&mut self, o: &AgentStats) {
        self.busy_secs += o.busy_secs;
        self.available_secs += o.available_secs;
        add(&mut self.started, o.started);
        add(&mut self.waited, o.waited);
        self.waited_secs += o.waited_secs;
        add(&mut self.succeeded, o.succeeded);
        add(&mut self.failed, o.failed);
        add(&mut self.lost, o.lost);
        add(&mut self.released, o.released);
        self.blocked_peak = self.blocked_peak.max(o.blocked_peak);
        self.durations.merge(&o.durations);
    }
}

/// How the events of a window were taken in, and what bounded memory left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct IngestStats {
    /// Events taken in.
    pub events: u64,
    /// Events skipped as replays: a sequence number at or below one already seen.
    pub duplicates: u64,
    /// Events stamped before one already seen: counted at the latest time seen.
    pub late: u64,
    /// Times a task could not be followed (as it began to wait or run) because
    /// `max_tasks_in_flight` were already followed; its outcome still counts.
    pub untracked_tasks: u64,
    /// Events about a task in a state it was not known to be in (a completion of a
    /// task never seen started, a second completion): counted where they can be.
    pub unknown_tasks: u64,
    /// Conflicts not followed because `max_open_conflicts` were already open.
    pub untracked_conflicts: u64,
    /// Events about an agent not followed because `max_agents` were already
    /// followed.
    pub untracked_agents: u64,
    /// Resource amounts not followed because `max_resources` kinds already were.
    pub untracked_resources: u64,
    /// Anomalies left out of the window because `max_anomalies` were already in it.
    pub dropped_anomalies: u64,
    /// Windows never built because the events jumped further ahead than the kept
    /// windows reach.
    pub skipped_windows: u64,
}

impl IngestStats {
    fn merge(&mut self, o: &IngestStats) {
        add(&mut self.events, o.events);
        add(&mut self.duplicates, o.duplicates);
        add(&mut self.late, o.late);
        add(&mut self.untracked_tasks, o.untracked_tasks);
        add(&mut self.unknown_tasks, o.unknown_tasks);
        add(&mut self.untracked_conflicts, o.untracked_conflicts);
        add(&mut self.untracked_agents, o.untracked_agents);
        add(&mut self.untracked_resources, o.untracked_resources);
        add(&mut self.dropped_anomalies, o.dropped_anomalies);
        add(&mut self.skipped_windows, o.skipped_windows);
    }
}

/// What happened over one stretch of time: every aggregate the reports are made of.
///
/// A [`Monitor`](super::Monitor) closes one window per window length (a day by
/// default), aligned to it. Windows merge: the windows of a stream, merged, equal
/// the one window of the whole stream (counts, peaks and sketch buckets exactly,
/// float sums up to rounding), so a week is seven days merged, and the windows of
/// several shards' monitors merge into the fleet's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Window {
    /// Where it starts.
    pub start: Timestamp,
    /// Where it ends (for the window in progress: now).
    pub end: Timestamp,
    /// Whether it is the window in progress (or a merge of windows that includes it),
    /// whose gauges (`queue.current`, `conflicts.open`) count the events stamped at
    /// `end`. A closed window's gauges are read just before its end: the events
    /// stamped at the boundary belong to the next window. [`merge`](Self::merge)
    /// orders gauges by this when two windows end at the same instant.
    #[serde(default)]
    pub in_progress: bool,
    /// Tasks, counted.
    pub tasks: TaskCounts,
    /// How long the finished tasks ran, in seconds.
    pub durations: QuantileSketch,
    /// The waiting tasks.
    pub queue: QueueStats,
    /// The conflicts.
    pub conflicts: ConflictStats,
    /// Each resource, in name order (cpu, memory, storage, then the others).
    pub resources: Vec<ResourceStats>,
    /// Each agent seen in service or at work, in id order.
    pub agents: Vec<AgentStats>,
    /// The anomalies found in it, in time order.
    pub anomalies: Vec<Anomaly>,
    /// How its events were taken in.
    pub ingest: IngestStats,
}

impl Window {
    /// Its length.
    pub fn span(&self) -> Duration {
        self.end.duration_since(self.start)
    }

    /// Its length in seconds.
    pub fn span_secs(&self) -> f64 {
        self.span().as_secs_f64()
    }

    /// Slot-seconds the fleet's tasks ran.
    pub fn busy_secs(&self) -> f64 {
        self.agents.iter().map(|a| a.busy_secs).sum()
    }

    /// Slot-seconds the fleet offered.
    pub fn available_secs(&self) -> f64 {
        self.agents.iter().map(|a| a.available_secs).sum()
    }

    /// The fleet's utilization: busy over available slot-time.
    pub fn utilization(&self) -> Option<f64> {
        ratio(self.busy_secs(), self.available_secs())
    }

    /// Succeeded over finished tasks.
    pub fn completion_rate(&self) -> Option<f64> {
        self.tasks.completion_rate()
    }

    /// The share of the tasks' time spent waiting on coordination (blocked behind
    /// running tasks' claims and the conflicts they opened) against the time they
    /// worked: `blocked / (blocked + busy)`.
    ///
    /// Time queued for a free agent, resources or normal mode is not counted: it is
    /// capacity, which utilization and the queue's bottlenecks report, and the
    /// recommendations for high coordination overhead (review the coordination
    /// algorithms, the communication, caching) would not shorten it.
    pub fn coordination_overhead(&self) -> Option<f64> {
        let blocked = self.queue.blocked_secs;
        ratio(blocked, blocked + self.busy_secs())
    }

    /// Tasks waiting, on average over the window.
    pub fn mean_queue_length(&self) -> f64 {
        ratio(
            self.queue.queued_secs + self.queue.blocked_secs,
            self.span_secs(),
        )
        .unwrap_or(0.0)
    }

    /// The resource efficiency: the mean, over the resources the finished tasks were
    /// allocated, of the share of the allocation they used.
    pub fn resource_efficiency(&self) -> Option<f64> {
        let (sum, n) = self
            .resources
            .iter()
            .filter_map(ResourceStats::efficiency)
            .fold((0.0, 0u32), |(s, n), e| (s + e, n + 1));
        ratio(sum, f64::from(n))
    }

    /// One agent's figures.
    pub fn agent(&self, agent: AgentId) -> Option<&AgentStats> {
        self.agents
            .binary_search_by_key(&agent, |a| a.agent)
            .ok()
            .map(|i| &self.agents[i])
    }

    /// One resource's figures.
    pub fn resource(&self, resource: &ResourceName) -> Option<&ResourceStats> {
        self.resources.iter().find(|r| &r.resource == resource)
    }

    /// Adds `other` to this window: it then covers both (from the earlier start to
    /// the later end), with every count and integral summed, every peak the higher,
    /// every sketch and summary merged, agents and resources matched by name, and the
    /// gauges (`queue.current`, `conflicts.open`) those of the window that ends later.
    /// Of two windows that end at the same instant, one [`in_progress`](Self::in_progress)
    /// (or merged with the window in progress) holds the gauges: it has taken in the
    /// events stamped at that instant, which a closed window, whose gauges are read
    /// just before its end, has not. The result is the same in either order, but for
    /// two windows alike in both, where `other`'s gauges are taken.
    ///
    /// Counts saturate at `u64::MAX` rather than overflow: a window is plain data, a
    /// host may have written it, and nothing in it makes this panic (no monitor
    /// counts that far; its snapshots refuse counts from 2^60 on).
    ///
    /// # Errors
    /// [`MonitorError::SketchMismatch`] if the windows' sketches have different
    /// settings; `self` is unchanged.
    ///
    /// # Complexity
    /// O(agents + resources + anomalies + sketch buckets).
    pub fn merge(&mut self, other: &Window) -> Result<(), MonitorError> {
        self.durations.check_mergeable(&other.durations)?;
        self.queue.waits.check_mergeable(&other.queue.waits)?;
        self.conflicts
            .resolution
            .check_mergeable(&other.conflicts.resolution)?;
        // Whose gauges were read later (see above).
        let later = (other.end, other.in_progress) >= (self.end, self.in_progress);
        self.start = self.start.min(other.start);
        self.end = self.end.max(other.end);
        if later {
            self.in_progress = other.in_progress;
        }
        self.tasks.merge(&other.tasks);
        self.durations.merge_unchecked(&other.durations);

        let q = &mut self.queue;
        if later {
            q.current = other.queue.current;
        }
        q.peak = q.peak.max(other.queue.peak);
        q.queued_secs += other.queue.queued_secs;
        q.blocked_secs += other.queue.blocked_secs;
        q.waits.merge_unchecked(&other.queue.waits);

        let c = &mut self.conflicts;
        let o = &other.conflicts;
        add(&mut c.detected, o.detected);
        add(&mut c.resolved, o.resolved);
        add(&mut c.decided, o.decided);
        add(&mut c.decided_by_default, o.decided_by_default);
        add(&mut c.escalated, o.escalated);
        if later {
            c.open = o.open;
        }
        c.resolution.merge_unchecked(&o.resolution);
        c.resolution_summary.merge(&o.resolution_summary);

        merge_sorted(
            &mut self.resources,
            &other.resources,
            |a, b| a.resource.cmp(&b.resource),
            ResourceStats::merge,
        );
        merge_sorted(
            &mut self.agents,
            &other.agents,
            |a, b| a.agent.cmp(&b.agent),
            AgentStats::merge,
        );
        // A stable sort: anomalies of the same instant keep their order.
        self.anomalies.extend(other.anomalies.iter().cloned());
        self.anomalies.sort_by_key(|a| a.at);
        self.ingest.merge(&other.ingest);
        Ok(())
    }
}

/// Merges `other` into `mine`, both sorted by `cmp` without repeats: matching entries
/// are combined with `combine`, the others kept; the result is sorted.
fn merge_sorted<T: Clone>(
    mine: &mut Vec<T>,
    other: &[T],
    cmp: impl Fn(&T, &T) -> Ordering,
    combine: impl Fn(&mut T, &T),
) {
    let mut out = Vec::with_capacity(mine.len().max(other.len()));
    let mut theirs = other.iter().peekable();
    for mut m in mine.drain(..) {
        while let Some(t) = theirs.next_if(|t| cmp(t, &m) == Ordering::Less) {
            out.push(t.clone());
        }
        if let Some(t) = theirs.next_if(|t| cmp(t, &m) == Ordering::Equal) {
            combine(&mut m, t);
        }
        out.push(m);
    }
    out.extend(theirs.cloned());
    *mine = out;
}

/// `*count += n`, saturating at `u64::MAX`: the counts are plain data a host may
/// have written, and merging must not panic on them.
#[inline]
fn add(count: &mut u64, n: u64) {
    *count = count.saturating_add(n);
}

/// `num / den`, when `den` is positive.
pub(crate) fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0 && num.is_finite() && den.is_finite()).then(|| num / den)
}
