//! Performance monitoring: the daily performance review, anomaly detection, the
//! performance optimization thresholds, bottleneck analysis and the capacity view,
//! as streaming, constant-memory, sans-I/O components. Data in (the coordinator's
//! [`Event`](crate::coordinator::Event)s), reports out.
//!
//! | the procedures say | here |
//! |---|---|
//! | collect the daily performance summary | [`Monitor`] -> [`Window`] -> [`DailySummary`] |
//! | key metrics: agent utilization, conflict resolution times, resource efficiency, task completion rates | [`Window::utilization`], [`ConflictStats`], [`ResourceStats::efficiency`], [`TaskCounts::completion_rate`] |
//! | look for performance anomalies | [`AnomalyDetector`], [`Anomaly`], [`Monitor::drain_anomalies`] |
//! | generate the daily report | [`DailyReport::to_markdown`] |
//! | high utilization (> 95%), coordination overhead (> 5%), low resource efficiency (< 85%) | [`Thresholds`], [`Finding`], [`Recommendation`], [`Action`] |
//! | bottleneck analysis: an agent's queue longer than 10, a resource above 90% use | [`Bottleneck`], [`PerformanceReport`] |
//! | performance report: bottlenecks, agent performance, resource efficiency, coordination overhead, recommendations | [`PerformanceReport`] |
//! | capacity dashboard: usage trends, growth projections | [`CapacityTrend`] |
//!
//! The building blocks stand alone: [`Summary`] (count, mean and variance by
//! Welford's method, merged by Chan's), [`QuantileSketch`] (DDSketch: quantiles within
//! a stated relative accuracy in bounded memory, mergeable) and [`AnomalyDetector`]
//! (a robust EWMA baseline with a MAD-based z-score).
//!
//! A [`Monitor`] takes `&Event`s and time, and hands back data: it reads no clock,
//! keeps no thread, and grows no memory with the length of the stream (see its
//! docs). A host feeds it what it drains from the coordinator (and may journal the
//! same events), calls [`Monitor::advance`] at [`Monitor::next_deadline`] when no
//! event comes, and reads windows and reports when it likes. Windows merge, so a
//! week is seven days merged and a fleet is its shards merged. A restart loses
//! nothing: [`Monitor::snapshot`] stored beside the coordinator's checkpoint, then
//! [`Monitor::restore`] and the events after it.
//!
//! This module reads the events of the coordinator and the types of the domains
//! below it. It never imports `error`: the crate's error wraps [`MonitorError`],
//! and sits above.

mod anomaly;
mod config;
mod engine;
mod error;
mod report;
mod sketch;
mod summary;
mod thresholds;
mod trend;
mod window;

pub use anomaly::{
    Anomaly, AnomalyDetector, AnomalyKind, Detection, DetectorConfig, MAX_HISTORY, MAX_SCORE,
    Metric, Subject,
};
pub use config::MonitorConfig;
pub use engine::{
    MAX_IDLE_INTERVALS, MONITOR_SNAPSHOT_VERSION, Monitor, MonitorSnapshot, MonitorStats,
};
pub use error::MonitorError;
pub use report::{
    AgentSummary, ConflictSummary, CoordinationOverhead, DailyReport, DailySummary,
    MARKDOWN_AGENTS, PerformanceReport, QueueSummary, ResourceSummary,
};
pub use sketch::{QuantileSketch, SketchConfig};
pub use summary::Summary;
pub use thresholds::{Action, Bottleneck, Finding, Recommendation, Thresholds};
pub use trend::{CapacityTrend, TrendSeries};
pub use window::{
    AgentStats, ConflictStats, IngestStats, QueueStats, ResourceStats, TaskCounts, Window,
};
