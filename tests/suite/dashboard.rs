//! Dashboards through the public API: views assembled from a coordinator, a page
//! that stands alone (no script, no file or font from elsewhere), hostile names
//! escaped, and views that travel as JSON.

use std::sync::Arc;

use concord::agent::AgentStatus;
use concord::coordinator::Coordinator;
use concord::dashboard::{AlertLine, Bar, CapacityView, Dashboard, OperationsView, Series};
use concord::task::{Requirements, RuleBasedAnalyzer, RuleSet, Task};
use concord::{AgentId, AgentProfile, ManualClock, Resources, Role, TaskId, Timestamp};

fn fleet() -> (ManualClock, Arc<Coordinator>) {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let c = Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).expect("rules"))
        .build();
    let role = Role::new("worker").expect("role");
    for (id, name) in [(1, "builder-1"), (2, "<img src=x onerror=alert(1)>")] {
        c.register_agent(
            AgentProfile::new(AgentId::new(id), name)
                .with_role(role.clone())
                .with_capacity(Resources::new().with_cpu_millis(2000))
                .with_max_tasks(2),
        )
        .expect("register");
    }
    let task = Task::new(TaskId::new(1), "build", "build").with_requirements(
        Requirements::new()
            .with_role(role)
            .with_resources(Resources::new().with_cpu_millis(1000)),
    );
    c.assign(task).expect("assign");
    c.set_agent_status(AgentId::new(2), AgentStatus::Offline)
        .expect("status");
    (clock, Arc::new(c))
}

#[test]
fn the_operations_view_reads_the_coordinator() {
    let (_, c) = fleet();
    let view = OperationsView::from_coordinator(&c);
    assert_eq!(view.agents.len(), 2);
    assert_eq!(view.running, 1);
    assert_eq!(view.waiting, 0);
    assert_eq!(view.agents[1].status, AgentStatus::Offline);
    let busy: u32 = view.agents.iter().map(|a| a.running).sum();
    assert_eq!(busy, 1);
}

#[test]
fn the_page_stands_alone_and_escapes_every_name() {
    let (clock, c) = fleet();
    let mut d = Dashboard::new("Fleet <prod>", concord::Clock::now(&clock));
    d.operations = OperationsView::from_coordinator(&c);
    d.operations.alerts.push(AlertLine::new(
        "critical",
        "agent failure",
        "agent#2 \"<script>\" is offline",
        Timestamp::from_secs(1_700_000_000),
    ));
    d.performance.utilization.push(Series::new(
        "fleet",
        (0..24).map(|h| (Timestamp::from_secs(1_700_000_000 + h * 3600), 0.5)),
    ));
    d.performance
        .agents
        .push(Bar::share("</svg><script>", 0.97, Some(0.95)));
    d.performance
        .findings
        .push("agent#1 utilization 97% > 95%: scale up".into());
    d.capacity = CapacityView::from_coordinator(&c);
    let html = d.to_html();
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Nothing fetched from elsewhere, nothing run.
    for banned in [
        "<script", "<img", "<link", "<iframe", "http://", "https://", "url(", "@import",
    ] {
        assert!(!html.contains(banned), "{banned} in the page");
    }
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("Fleet &lt;prod&gt;"));
    // Every view drew something.
    assert!(html.contains("<polyline"), "a line chart");
    assert!(html.contains("Task slots in use, per agent"));
    assert!(html.contains("Resource use now"));
    assert!(html.contains("scale up"));
}

#[test]
fn an_empty_dashboard_draws_its_frames_and_says_no_data() {
    let d = Dashboard::new("Empty", Timestamp::from_secs(0));
    let html = d.to_html();
    assert!(html.contains("no data yet"));
    assert!(html.contains("<h2>Operations</h2>"));
    assert!(html.contains("<h2>Capacity</h2>"));
}

#[test]
fn the_views_travel_as_json() {
    let (clock, c) = fleet();
    let mut d = Dashboard::new("Fleet", concord::Clock::now(&clock));
    d.operations = OperationsView::from_coordinator(&c);
    d.capacity = CapacityView::from_coordinator(&c);
    d.performance.completions.push(Series::new(
        "succeeded",
        [
            (Timestamp::from_secs(1), 3.0),
            (Timestamp::from_secs(2), 5.0),
        ],
    ));
    let json = serde_json::to_string(&d).expect("json");
    let back: Dashboard = serde_json::from_str(&json).expect("back");
    assert_eq!(back, d);
    assert_eq!(back.to_html(), d.to_html());
}

/// A view holding what JSON has no number for (a share of nothing, an infinite
/// ratio) comes back from JSON as it went: NaN as `null`, the infinities as
/// `"Infinity"` and `"-Infinity"`; other text is refused, naming it.
#[test]
fn views_with_nan_and_infinite_values_travel_as_json() {
    let (clock, c) = fleet();
    let mut d = Dashboard::new("Fleet", concord::Clock::now(&clock));
    d.operations = OperationsView::from_coordinator(&c);
    d.performance.completions.push(Series::new(
        "rate",
        [
            (Timestamp::from_secs(1), f64::NAN),
            (Timestamp::from_secs(2), f64::INFINITY),
            (Timestamp::from_secs(3), f64::NEG_INFINITY),
            (Timestamp::from_secs(4), 0.5),
        ],
    ));
    let bars = [
        Bar::share("nothing", f64::NAN, None),
        Bar::share("past", f64::INFINITY, Some(0.9)),
    ];
    let json = serde_json::to_string(&d).expect("json");
    assert!(
        json.contains("null") && json.contains("\"-Infinity\""),
        "{json}"
    );
    let back: Dashboard = serde_json::from_str(&json).expect("back");
    let values = |d: &Dashboard| -> Vec<String> {
        d.performance.completions[0]
            .points
            .iter()
            .map(|p| format!("{:?}", p.value))
            .collect()
    };
    assert_eq!(values(&back), ["NaN", "inf", "-inf", "0.5"]);
    assert_eq!(back.to_html(), d.to_html());
    for bar in bars {
        let json = serde_json::to_string(&bar).expect("json");
        let back: Bar = serde_json::from_str(&json).expect("back");
        assert_eq!(
            (format!("{:?}", back.value), back.shown.as_str()),
            (format!("{:?}", bar.value), bar.shown.as_str()),
            "{json}"
        );
    }
    let err = serde_json::from_str::<Bar>(r#"{"label":"x","value":"lots","max":1.0,"shown":"?"}"#)
        .expect_err("text that is no number");
    assert!(err.to_string().contains("\"lots\""), "{err}");
}
