//! The morning startup checklist, in one call: the system health check, the
//! overnight review, the resource status and the agent connectivity, as one report.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{CheckReport, Diagnostics, HealthReport, HealthStatus};
use crate::clock::Timestamp;
use crate::monitor::{DailySummary, Monitor, Window};
use crate::text::{markdown_line, plural};

/// One item of the morning checklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChecklistItem {
    /// The item, as the checklist names it.
    pub item: String,
    /// How it stands.
    pub status: HealthStatus,
    /// What was found.
    pub note: String,
}

/// The morning checklist's report: each item, and the reports behind them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MorningReport {
    /// When it was made.
    pub at: Timestamp,
    /// The four items, in the checklist's order.
    pub items: Vec<ChecklistItem>,
    /// Every health check's line.
    pub health: HealthReport,
    /// The overnight figures: the monitor's windows that end after the review's
    /// start, merged (none if the monitor holds no such window). The monitor counts
    /// by window, so the first may start before the review's start: the summary's
    /// `start` says from when the figures count, and the review's note says so too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overnight: Option<DailySummary>,
}

impl MorningReport {
    /// The worst status of any item.
    pub fn overall(&self) -> HealthStatus {
        self.items
            .iter()
            .map(|i| i.status)
            .max()
            .unwrap_or_default()
    }

    /// The report as Markdown: the checklist, then the health checks, then the
    /// overnight figures.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "## Morning checklist, {}: {}\n\n| item | status | found |\n|---|---|---|\n",
            self.at,
            self.overall()
        );
        for i in &self.items {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                markdown_line(&i.item),
                i.status,
                markdown_line(&i.note)
            );
        }
        out.push('\n');
        out.push_str(&self.health.to_markdown());
        if let Some(night) = &self.overnight {
            out.push('\n');
            out.push_str(&night.to_markdown());
        }
        out
    }
}

impl Diagnostics {
    /// The morning startup checklist: runs every health check, reviews what the
    /// monitor saw since `since` (failed and rejected tasks, conflicts escalated or
    /// still open, anomalies) in the windows that end after it (all of the window
    /// holding `since`, which the review's note names when it starts earlier: with
    /// the monitor's default daily windows, from midnight before `since`; with
    /// hourly windows, from the hour), and reads the resource status and agent
    /// connectivity from the checks named `resources` and `agents` (the built-in
    /// [`ResourcesCheck`](super::ResourcesCheck) and [`AgentsCheck`](super::AgentsCheck)).
    pub async fn morning_checklist(&self, monitor: &Monitor, since: Timestamp) -> MorningReport {
        let overnight = overnight(monitor, since);
        let health = self.run().await;
        let from_check = |item: &str, name: &str| match health.check(name) {
            Some(c) => line(item, c),
            None => ChecklistItem {
                item: item.to_owned(),
                status: HealthStatus::Failed,
                note: format!("no `{name}` check is configured"),
            },
        };
        let items = vec![
            ChecklistItem {
                item: "System health check".to_owned(),
                status: health.overall(),
                note: health_note(&health),
            },
            review(overnight.as_ref(), since),
            from_check("Resource status", "resources"),
            from_check("Agent connectivity", "agents"),
        ];
        MorningReport {
            at: health.at,
            items,
            health,
            overnight,
        }
    }
}

/// The windows of `monitor` that end after `since` (the window in progress among
/// them), merged into one summary: a window is counted whole, so the summary starts
/// when the window holding `since` does.
fn overnight(monitor: &Monitor, since: Timestamp) -> Option<DailySummary> {
    let mut merged: Option<Window> = None;
    for w in monitor
        .windows()
        .cloned()
        .chain(monitor.current_window())
        .filter(|w| w.end > since)
    {
        match merged.as_mut() {
            None => merged = Some(w),
            // Windows of one monitor share its sketch settings: they always merge.
            Some(m) => {
                if let Err(e) = m.merge(&w) {
                    tracing::warn!(error = %e, "overnight windows did not merge");
                }
            }
        }
    }
    merged.map(|w| DailySummary::from_window(&w))
}

fn line(item: &str, c: &CheckReport) -> ChecklistItem {
    ChecklistItem {
        item: item.to_owned(),
        status: c.status,
        note: c.reason.clone(),
    }
}

fn health_note(health: &HealthReport) -> String {
    let problems = health.problems();
    if problems.is_empty() {
        return format!("all {} checks healthy", health.checks.len());
    }
    problems
        .iter()
        .map(|c| format!("{} {}", c.name, c.status))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The overnight review: degraded when tasks failed or were refused, conflicts went
/// to a human or stay open, or anything was anomalous; healthy on a quiet night.
fn review(night: Option<&DailySummary>, since: Timestamp) -> ChecklistItem {
    let item = "Overnight review".to_owned();
    let Some(n) = night else {
        return ChecklistItem {
            item,
            status: HealthStatus::Healthy,
            note: format!("nothing recorded since {since}"),
        };
    };
    let mut concerns = Vec::new();
    let t = &n.tasks;
    if t.failed > 0 {
        concerns.push(format!(
            "{} failed",
            plural(t.failed as usize, "task", "tasks")
        ));
    }
    if t.rejected + t.denied > 0 {
        concerns.push(format!(
            "{} refused",
            plural((t.rejected + t.denied) as usize, "task", "tasks")
        ));
    }
    if n.conflicts.escalated > 0 {
        concerns.push(plural(
            n.conflicts.escalated as usize,
            "conflict escalation",
            "conflict escalations",
        ));
    }
    if n.conflicts.open > 0 {
        concerns.push(format!(
            "{} still open",
            plural(n.conflicts.open as usize, "conflict", "conflicts")
        ));
    }
    for a in &n.anomalies {
        concerns.push(format!("anomaly: {a}"));
    }
    // The figures count from the start of the window that holds `since`: said, so
    // that a failure from before `since` is not read as one of the night's.
    let done = if n.start < since {
        format!(
            "{} succeeded since {} (the monitor's window holding {since} starts then)",
            plural(t.succeeded as usize, "task", "tasks"),
            n.start
        )
    } else {
        format!(
            "{} succeeded since {since}",
            plural(t.succeeded as usize, "task", "tasks")
        )
    };
    if concerns.is_empty() {
        ChecklistItem {
            item,
            status: HealthStatus::Healthy,
            note: done,
        }
    } else {
        ChecklistItem {
            item,
            status: HealthStatus::Degraded,
            note: format!("{done}; {}", concerns.join("; ")),
        }
    }
}
