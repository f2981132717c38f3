//! Dashboards through the public API: views assembled from a coordinator, a page
//! that stands alone (no script, no file or font from elsewhere), hostile names
//! escaped, and views that travel as JSON.

use std::sync::Arc;

use concord::agent::AgentStatus;
use concord::coordinator::Coordinator;
use concord::dashboard::{
    AlertLine, Bar, CapacityView, Dashboard, OperationsView, ResourceCapacity, Series,
};
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

/// A dashboard with one series per chart holding `series`, in every chart that
/// draws lines (performance and capacity).
fn dashboard_of(series: &[Series]) -> Dashboard {
    let mut d = Dashboard::new("Fleet", Timestamp::from_secs(100));
    d.performance.utilization = series.to_vec();
    d.performance.completions = series.to_vec();
    d.performance.conflict_resolution = series.to_vec();
    d.performance.coordination_overhead = series.to_vec();
    for s in series {
        let mut r = ResourceCapacity::default();
        r.name.clone_from(&s.name);
        r.used = s.clone();
        r.capacity = 1.0;
        d.capacity.resources.push(r);
    }
    d
}

/// What in a page is a coordinate or label that is not a number.
fn not_a_number(html: &str) -> Vec<&str> {
    ["NaN", "inf\"", "\"inf", "-inf"]
        .iter()
        .flat_map(|bad| html.match_indices(bad))
        .map(|(i, _)| &html[i.saturating_sub(40)..(i + 10).min(html.len())])
        .collect()
}

/// Regression: a series whose only point is not a number (a ratio over nothing),
/// earlier than every other series' data, panicked in `to_html` ("attempt to
/// subtract with overflow": the lone point skipped the finiteness filter, and the x
/// axis starts at the earliest *finite* point). Later than the data, it drew
/// `cy="NaN"`. The same held for a dashboard read back from its own JSON, where NaN
/// is `null`.
#[test]
fn a_series_whose_only_point_is_not_a_number_is_not_drawn() {
    for at in [1, 30] {
        for lone in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let d = dashboard_of(&[
                Series::new(
                    "fleet",
                    [
                        (Timestamp::from_secs(10), 0.5),
                        (Timestamp::from_secs(20), 0.6),
                    ],
                ),
                Series::new("shard-b", [(Timestamp::from_secs(at), lone)]),
            ]);
            let json = serde_json::to_string(&d).expect("json");
            let back: Dashboard = serde_json::from_str(&json).expect("back");
            for d in [&d, &back] {
                let html = d.to_html();
                assert!(
                    not_a_number(&html).is_empty(),
                    "{lone} at {at}s: {:?}",
                    not_a_number(&html)
                );
                // The lone point is not drawn, as a dot or otherwise; the other
                // series' line is, from the left edge of the plot.
                assert!(!html.contains("<circle"), "{lone} at {at}s drawn as a dot");
                assert!(html.contains(r#"points="52.0,"#), "{html}");
            }
        }
    }
}

/// A series with one finite point among points that are not numbers draws that
/// point as a dot, as a series of one point does.
#[test]
fn a_series_with_one_drawable_point_draws_it_as_a_dot() {
    let d = dashboard_of(&[Series::new(
        "s",
        [
            (Timestamp::from_secs(1), f64::NAN),
            (Timestamp::from_secs(2), 0.5),
            (Timestamp::from_secs(3), f64::INFINITY),
        ],
    )]);
    let html = d.to_html();
    assert!(html.contains("<circle"), "{html}");
    assert!(not_a_number(&html).is_empty(), "{:?}", not_a_number(&html));
}

fn arb_value() -> impl proptest::strategy::Strategy<Value = f64> {
    use proptest::prelude::*;
    prop_oneof![
        proptest::num::f64::ANY,
        proptest::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            -0.0,
            1e308,
        ]),
        0.0..1.0,
    ]
}

fn arb_series() -> impl proptest::strategy::Strategy<Value = Series> {
    use proptest::prelude::*;
    let at = prop_oneof![
        any::<u64>(),
        0..100u64,
        proptest::sample::select(vec![0, u64::MAX]),
    ];
    proptest::collection::vec((at, arb_value()), 0..5).prop_map(|points| {
        Series::new(
            "s",
            points
                .into_iter()
                .map(|(at, v)| (Timestamp::from_nanos(at), v)),
        )
    })
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/dashboard.txt",
            ),
        )),
        ..proptest::test_runner::Config::default()
    })]

    /// Whatever series a host puts in a dashboard (any times, in any order, overlapping
    /// or not; NaN, infinities, the largest floats), `to_html` does not panic and
    /// draws no coordinate that is not a number, before and after a round trip
    /// through JSON.
    #[test]
    fn any_series_draw_without_panic_or_nan(
        series in proptest::collection::vec(arb_series(), 0..4),
    ) {
        let d = dashboard_of(&series);
        let json = serde_json::to_string(&d).expect("json");
        let back: Dashboard = serde_json::from_str(&json).expect("back");
        for d in [&d, &back] {
            let html = d.to_html();
            proptest::prop_assert!(not_a_number(&html).is_empty(), "{:?}", not_a_number(&html));
        }
    }
}
