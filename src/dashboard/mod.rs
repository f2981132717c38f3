//! Dashboards: the operations, performance and capacity views as serde snapshots,
//! and a renderer to one self-contained HTML page a host can serve.
//!
//! Owns [`Dashboard`] and its three views. Each view is plain data, assembled from
//! the parts ([`OperationsView::from_coordinator`] reads the coordinator; the host's
//! [`HealthReport`] and its firing alerts go beside it; the performance and capacity
//! views take series over time from the host's metrics), so a host can also send it
//! as JSON to a front end of its own. [`Dashboard::to_html`] draws it with inline
//! SVG charts: no script, font or file from elsewhere, every name escaped. The module
//! sits at the top of the operations layers and imports from any layer below;
//! nothing imports it.
//!
//! ```
//! use std::sync::Arc;
//! use concord::coordinator::Coordinator;
//! use concord::dashboard::{Dashboard, OperationsView};
//! use concord::{AgentId, AgentProfile, ManualClock, Timestamp};
//!
//! let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
//! let coordinator = Coordinator::builder().clock(clock).build();
//! coordinator.register_agent(AgentProfile::new(AgentId::new(1), "builder-1"))?;
//! let mut dashboard = Dashboard::new("Fleet", coordinator.now());
//! dashboard.operations = OperationsView::from_coordinator(&coordinator);
//! let html = dashboard.to_html();
//! assert!(html.starts_with("<!DOCTYPE html>") && html.contains("builder-1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod svg;

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::agent::AgentStatus;
use crate::alert::AlertManager;
use crate::clock::Timestamp;
use crate::coordinator::Coordinator;
use crate::health::HealthReport;
use crate::monitor::{Monitor, TrendSeries, Window};
use crate::policy::SystemMode;

/// A value at a time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// When.
    pub at: Timestamp,
    /// The value (in JSON, NaN is `null` and the infinities `"Infinity"` and
    /// `"-Infinity"`, read back so).
    #[serde(with = "crate::serde_util::any_f64")]
    pub value: f64,
}

/// A named line of values over time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Series {
    /// Its name, as the legend shows it.
    pub name: String,
    /// Its values, oldest first.
    pub points: Vec<Point>,
}

impl Series {
    /// A series named `name`, from `(time, value)` pairs.
    pub fn new(
        name: impl Into<String>,
        points: impl IntoIterator<Item = (Timestamp, f64)>,
    ) -> Self {
        Series {
            name: name.into(),
            points: points
                .into_iter()
                .map(|(at, value)| Point { at, value })
                .collect(),
        }
    }
}

/// One bar: a value against its maximum, with an optional limit marked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// What it measures (an agent, a resource).
    pub label: String,
    /// The value (NaN and the infinities in JSON as for [`Point::value`]).
    #[serde(with = "crate::serde_util::any_f64")]
    pub value: f64,
    /// The value of a full bar.
    #[serde(with = "crate::serde_util::any_f64")]
    pub max: f64,
    /// A limit marked on the bar; a value above it is drawn red.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// The value as shown beside the bar ("97%").
    pub shown: String,
}

impl Bar {
    /// A share (in `[0, 1]`) shown as a percentage, with a limit. A share that is
    /// not a number (a ratio over nothing) is shown as `n/a`, and one too large
    /// for a percentage (infinite, or near the largest float) as `>100%` or `<0%`,
    /// as the bar draws them.
    pub fn share(label: impl Into<String>, share: f64, limit: Option<f64>) -> Self {
        let percent = share * 100.0;
        let shown = if share.is_nan() {
            "n/a".to_owned()
        } else if percent == f64::INFINITY {
            ">100%".to_owned()
        } else if percent == f64::NEG_INFINITY {
            "<0%".to_owned()
        } else {
            format!("{percent:.0}%")
        };
        Bar {
            label: label.into(),
            value: share,
            max: 1.0,
            limit,
            shown,
        }
    }
}

/// One agent's line in the operations view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentLine {
    /// The agent.
    pub id: crate::id::AgentId,
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: AgentStatus,
    /// Tasks it runs.
    pub running: u32,
    /// Tasks it may run at once.
    pub max_tasks: u32,
}

/// A firing alert, as the operations view lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AlertLine {
    /// Its severity, in words ("critical").
    pub severity: String,
    /// Its name.
    pub name: String,
    /// What it says.
    pub summary: String,
    /// Since when it fires.
    pub since: Timestamp,
    /// Whether someone acknowledged it.
    pub acknowledged: bool,
}

impl AlertLine {
    /// A line for an alert.
    pub fn new(
        severity: impl Into<String>,
        name: impl Into<String>,
        summary: impl Into<String>,
        since: Timestamp,
    ) -> Self {
        AlertLine {
            severity: severity.into(),
            name: name.into(),
            summary: summary.into(),
            since,
            acknowledged: false,
        }
    }

    /// Marked acknowledged.
    pub fn acknowledged(mut self) -> Self {
        self.acknowledged = true;
        self
    }
}

/// What runs now: the mode, the agents, the work, the conflicts, health and alerts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OperationsView {
    /// The system mode.
    pub mode: SystemMode,
    /// Every agent, by id.
    pub agents: Vec<AgentLine>,
    /// Tasks running.
    pub running: usize,
    /// Tasks waiting.
    pub waiting: usize,
    /// Conflicts open.
    pub conflicts_open: usize,
    /// The last health report, if the host ran one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthReport>,
    /// Alerts firing, worst first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertLine>,
}

impl OperationsView {
    /// The view of `coordinator` now (health and alerts empty: add the host's).
    pub fn from_coordinator(coordinator: &Coordinator) -> Self {
        let agents = coordinator.with_registry(|r| {
            r.iter()
                .map(|v| AgentLine {
                    id: v.id(),
                    name: v.profile().name().to_owned(),
                    status: v.status(),
                    running: v.running(),
                    max_tasks: v.max_tasks(),
                })
                .collect()
        });
        OperationsView {
            mode: coordinator.mode(),
            agents,
            running: coordinator.running_count(),
            waiting: coordinator.waiting_count(),
            conflicts_open: coordinator.open_conflicts().len(),
            health: None,
            alerts: Vec::new(),
        }
    }
}

impl OperationsView {
    /// With `alerts`' firing alerts, worst first, then oldest first.
    pub fn with_alerts(mut self, alerts: &AlertManager) -> Self {
        let mut firing: Vec<_> = alerts.firing().map(|(_, r)| r).collect();
        firing.sort_by_key(|r| (std::cmp::Reverse(r.alert.severity()), r.started_at));
        self.alerts = firing
            .into_iter()
            .map(|r| {
                let line = AlertLine::new(
                    r.alert.severity().to_string(),
                    r.alert.name(),
                    r.alert.summary(),
                    r.started_at,
                );
                if r.acknowledged.is_some() {
                    line.acknowledged()
                } else {
                    line
                }
            })
            .collect();
        self
    }

    /// With the host's last health report.
    pub fn with_health(mut self, report: HealthReport) -> Self {
        self.health = Some(report);
        self
    }
}

/// How well the work went, over time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PerformanceView {
    /// Agent utilization over time (shares in `[0, 1]`): the fleet's, or per agent.
    pub utilization: Vec<Series>,
    /// Each agent's utilization in the last window.
    pub agents: Vec<Bar>,
    /// Tasks completed per window, succeeded and failed.
    pub completions: Vec<Series>,
    /// Conflict resolution time (seconds), as quantiles over time.
    pub conflict_resolution: Vec<Series>,
    /// Coordination overhead over time (a share in `[0, 1]`).
    pub coordination_overhead: Vec<Series>,
    /// Findings in words: bottlenecks, anomalies and recommendations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
}

impl PerformanceView {
    /// The view of `monitor`'s windows (kept and in progress): utilization, tasks
    /// finished, conflict resolution time (median and 95th percentile), coordination
    /// overhead, each agent's utilization in the latest window, and the latest
    /// report's bottlenecks, anomalies and recommendations.
    pub fn from_monitor(monitor: &Monitor) -> Self {
        let windows: Vec<Window> = monitor
            .windows()
            .cloned()
            .chain(monitor.current_window())
            .collect();
        let series = |name: &str, f: &dyn Fn(&Window) -> Option<f64>| {
            Series::new(name, windows.iter().filter_map(|w| Some((w.end, f(w)?))))
        };
        #[allow(clippy::cast_precision_loss)] // task counts per window are far below 2^52
        let completions = vec![
            series("succeeded", &|w| Some(w.tasks.succeeded as f64)),
            series("failed", &|w| Some(w.tasks.failed as f64)),
        ];
        let agents = windows
            .last()
            .map(|w| {
                w.agents
                    .iter()
                    .filter_map(|a| {
                        Some(Bar::share(
                            a.agent.to_string(),
                            a.utilization()?,
                            Some(0.95),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let findings = monitor
            .daily_report()
            .map(|r| {
                let p = &r.performance;
                p.bottlenecks
                    .iter()
                    .map(ToString::to_string)
                    .chain(r.summary.anomalies.iter().map(|a| format!("anomaly: {a}")))
                    .chain(p.recommendations.iter().map(ToString::to_string))
                    .collect()
            })
            .unwrap_or_default();
        PerformanceView {
            utilization: vec![series("fleet", &|w| w.utilization())],
            agents,
            completions,
            conflict_resolution: vec![
                series("median", &|w| w.conflicts.resolution.quantile(0.5)),
                series("95th percentile", &|w| {
                    w.conflicts.resolution.quantile(0.95)
                }),
            ],
            coordination_overhead: vec![series("overhead", &|w| w.coordination_overhead())],
            findings,
        }
    }
}

/// One resource in the capacity view.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResourceCapacity {
    /// The resource.
    pub name: String,
    /// Its use over time, in its unit, with its capacity as the limit.
    pub used: Series,
    /// Its capacity, in the same unit.
    #[serde(with = "crate::serde_util::any_f64")]
    pub capacity: f64,
    /// When the trend reaches the capacity, if it grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_at: Option<Timestamp>,
    /// The unit ("millicores", "bytes").
    pub unit: String,
}

/// What the fleet holds and where the trend goes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CapacityView {
    /// Each resource, by name.
    pub resources: Vec<ResourceCapacity>,
    /// Each resource's use now.
    pub now: Vec<Bar>,
}

impl CapacityView {
    /// The current use of each of `coordinator`'s resources, and from `monitor` each
    /// resource's mean use per window with the least-squares projection of when it
    /// reaches full use (over the next `horizon` windows).
    pub fn from_parts(coordinator: &Coordinator, monitor: &Monitor, horizon: u32) -> Self {
        let mut view = Self::from_coordinator(coordinator);
        let windows: Vec<Window> = monitor
            .windows()
            .cloned()
            .chain(monitor.current_window())
            .collect();
        let trends = monitor.capacity_trends(horizon);
        let names: Vec<String> = windows
            .iter()
            .flat_map(|w| w.resources.iter().map(|r| r.resource.to_string()))
            .fold(Vec::new(), |mut names, n| {
                if !names.contains(&n) {
                    names.push(n);
                }
                names
            });
        for name in names {
            let used = Series::new(
                format!("{name} mean use"),
                windows.iter().filter_map(|w| {
                    let r = w
                        .resources
                        .iter()
                        .find(|r| r.resource.to_string() == name)?;
                    Some((w.end, r.mean_use()?))
                }),
            );
            let full_at = trends.iter().find_map(|t| match &t.series {
                TrendSeries::ResourceUse { resource } if resource.to_string() == name => t.limit_at,
                _ => None,
            });
            view.resources.push(ResourceCapacity {
                name,
                used,
                capacity: 1.0,
                full_at,
                unit: "share of capacity".to_owned(),
            });
        }
        view
    }

    /// The current use of each of `coordinator`'s resources (no trends: see
    /// [`from_parts`](Self::from_parts)).
    pub fn from_coordinator(coordinator: &Coordinator) -> Self {
        let report = coordinator.with_ledger(|l| l.usage_report());
        CapacityView {
            resources: Vec::new(),
            now: report
                .resources
                .iter()
                .map(|r| Bar::share(r.resource.to_string(), r.utilization, Some(0.9)))
                .collect(),
        }
    }
}

/// The three views, as one page.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Dashboard {
    /// The page's title.
    pub title: String,
    /// When it was made.
    pub generated_at: Timestamp,
    /// What runs now.
    pub operations: OperationsView,
    /// How well the work went.
    pub performance: PerformanceView,
    /// What the fleet holds.
    pub capacity: CapacityView,
}

/// The page's style: inline, so the page stands alone.
const STYLE: &str = "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;background:#fafafa}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}\
.sub{color:#666}.tiles{display:flex;flex-wrap:wrap;gap:10px}.tile{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:110px}\
.tile b{display:block;font-size:22px}.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #ddd;border-radius:6px}\
.ct{font-size:13px;font-weight:600;fill:#222}.tick{font-size:10px;fill:#555}.empty{font-size:12px;fill:#999}\
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}\
.healthy{color:#2ca02c}.degraded{color:#ff7f0e}.unhealthy,.failed,.critical{color:#d62728;font-weight:600}.high{color:#d62728}.medium{color:#ff7f0e}\
ul.findings li{margin:2px 0}";

impl Dashboard {
    /// An empty dashboard titled `title`, made at `at`.
    pub fn new(title: impl Into<String>, at: Timestamp) -> Self {
        Dashboard {
            title: title.into(),
            generated_at: at,
            ..Dashboard::default()
        }
    }

    /// The page: self-contained HTML with inline SVG charts.
    pub fn to_html(&self) -> String {
        let e = svg::escape;
        let mut h = String::with_capacity(32 * 1024);
        let _ = write!(
            h,
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1><div class=\"sub\">generated {at}</div>",
            t = e(&self.title),
            at = self.generated_at
        );
        self.operations_html(&mut h);
        self.performance_html(&mut h);
        self.capacity_html(&mut h);
        h.push_str("</body></html>\n");
        h
    }

    fn operations_html(&self, h: &mut String) {
        let e = svg::escape;
        let o = &self.operations;
        let in_service = o.agents.iter().filter(|a| a.status.is_in_service()).count();
        let health = o
            .health
            .as_ref()
            .map_or_else(|| "not run".to_owned(), |r| r.overall().to_string());
        let _ = write!(
            h,
            "<h2>Operations</h2><div class=\"tiles\">{}{}{}{}{}{}</div>",
            tile("mode", &o.mode.to_string()),
            tile(
                "agents in service",
                &format!("{in_service} / {}", o.agents.len())
            ),
            tile("tasks running", &o.running.to_string()),
            tile("tasks waiting", &o.waiting.to_string()),
            tile("conflicts open", &o.conflicts_open.to_string()),
            tile("health", &health),
        );
        if !o.alerts.is_empty() {
            h.push_str("<h3>Alerts firing</h3><table><tr><th>severity</th><th>alert</th><th>since</th><th>acknowledged</th><th>summary</th></tr>");
            for a in &o.alerts {
                let _ = write!(
                    h,
                    "<tr><td class=\"{s}\">{s}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    e(&a.name),
                    a.since,
                    if a.acknowledged { "yes" } else { "no" },
                    e(&a.summary),
                    s = e(&a.severity)
                );
            }
            h.push_str("</table>");
        }
        if let Some(report) = &o.health {
            h.push_str("<h3>Health checks</h3><table><tr><th>check</th><th>status</th><th>took</th><th>reason</th></tr>");
            for c in &report.checks {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td class=\"{s}\">{s}</td><td>{} ms</td><td>{}</td></tr>",
                    e(&c.name),
                    c.took.as_millis(),
                    e(&c.reason),
                    s = c.status
                );
            }
            h.push_str("</table>");
        }
        if !o.agents.is_empty() {
            let bars: Vec<Bar> = o
                .agents
                .iter()
                .map(|a| {
                    let share = if a.max_tasks == 0 {
                        0.0
                    } else {
                        f64::from(a.running) / f64::from(a.max_tasks)
                    };
                    let mut b = Bar::share(format!("{} ({})", a.name, a.status), share, None);
                    b.shown = format!("{} / {}", a.running, a.max_tasks);
                    b
                })
                .collect();
            let _ = write!(
                h,
                "<div class=\"charts\">{}</div>",
                svg::bar_chart("Task slots in use, per agent", &bars)
            );
        }
    }

    fn performance_html(&self, h: &mut String) {
        let p = &self.performance;
        h.push_str("<h2>Performance</h2><div class=\"charts\">");
        h.push_str(&svg::line_chart(
            "Agent utilization",
            "share",
            &p.utilization,
            Some(0.95),
        ));
        h.push_str(&svg::line_chart(
            "Tasks completed",
            "per window",
            &p.completions,
            None,
        ));
        h.push_str(&svg::line_chart(
            "Conflict resolution time",
            "seconds",
            &p.conflict_resolution,
            None,
        ));
        h.push_str(&svg::line_chart(
            "Coordination overhead",
            "share",
            &p.coordination_overhead,
            Some(0.05),
        ));
        if !p.agents.is_empty() {
            h.push_str(&svg::bar_chart(
                "Utilization per agent, last window",
                &p.agents,
            ));
        }
        h.push_str("</div>");
        if !p.findings.is_empty() {
            h.push_str("<h3>Findings</h3><ul class=\"findings\">");
            for f in &p.findings {
                let _ = write!(h, "<li>{}</li>", svg::escape(f));
            }
            h.push_str("</ul>");
        }
    }

    fn capacity_html(&self, h: &mut String) {
        let c = &self.capacity;
        h.push_str("<h2>Capacity</h2><div class=\"charts\">");
        if !c.now.is_empty() {
            h.push_str(&svg::bar_chart("Resource use now", &c.now));
        }
        for r in &c.resources {
            let title = match r.full_at {
                Some(at) => format!(
                    "{}: full by {} at this trend",
                    r.name,
                    svg::short_time(at.as_nanos())
                ),
                None => r.name.clone(),
            };
            h.push_str(&svg::line_chart(
                &title,
                &r.unit,
                std::slice::from_ref(&r.used),
                Some(r.capacity),
            ));
        }
        h.push_str("</div>");
    }
}

/// A figure with its caption.
fn tile(caption: &str, value: &str) -> String {
    format!(
        "<div class=\"tile\"><b>{}</b>{}</div>",
        svg::escape(value),
        svg::escape(caption)
    )
}
