//! Diagnostics through the public API: checks that answer, fail, panic and hang,
//! the built-in checks of agents, resources and coordination, and a property over
//! any mix of them: the report is always whole, in order, and each line says what
//! its check did.

use std::sync::Arc;
use std::time::Duration;

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::coordinator::{AssignOutcome, Coordinator};
use concord::health::{
    AgentsCheck, CheckError, CheckOutcome, CoordinationCheck, Diagnostics, HealthCheck,
    HealthStatus, ResourcesCheck, check_fn,
};
use concord::task::{Requirements, RuleBasedAnalyzer, RuleSet, Task};
use concord::{
    AgentId, AgentProfile, ManualClock, Resources, Role, SimulatedTimer, TaskId, Timer, Timestamp,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_secs(1_700_000_000))
}

fn run(d: &Diagnostics) -> concord::health::HealthReport {
    futures::executor::block_on(d.run())
}

/// What a test check does when asked.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Answer(HealthStatus),
    Error,
    Panic,
    /// Answers after this long (by the simulated clock).
    Slow(Duration),
    Hang,
}

#[derive(Debug)]
struct Scripted {
    name: String,
    act: Act,
    timer: SimulatedTimer,
    clock: ManualClock,
}

#[async_trait::async_trait]
impl HealthCheck for Scripted {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<CheckOutcome, CheckError> {
        match self.act {
            Act::Answer(s) => Ok(CheckOutcome::new(s, "as scripted")),
            Act::Error => Err(CheckError::new("disk not mounted")),
            Act::Panic => panic!("a check panicked on purpose"),
            Act::Slow(d) => {
                let now = concord::Clock::now(&self.clock);
                self.timer.sleep_until(now + d).await;
                Ok(CheckOutcome::healthy("late but fine"))
            }
            Act::Hang => futures::future::pending().await,
        }
    }
}

fn scripted(clock: &ManualClock, name: &str, act: Act) -> Scripted {
    Scripted {
        name: name.to_owned(),
        act,
        timer: SimulatedTimer::new(clock.clone()),
        clock: clock.clone(),
    }
}

/// Keeps the test output clean of the panics the checks make on purpose.
fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let deliberate = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.ends_with("on purpose"));
            if !deliberate {
                default(info);
            }
        }));
    });
}

#[test]
fn a_hanging_a_panicking_and_a_failing_check_are_each_reported_and_the_rest_go_on() {
    quiet_deliberate_panics();
    let clock = clock();
    let d = Diagnostics::new(clock.clone(), SimulatedTimer::new(clock.clone()))
        .with_check(scripted(&clock, "fine", Act::Answer(HealthStatus::Healthy)))
        .with_check_timeout(scripted(&clock, "hangs", Act::Hang), Duration::from_secs(3))
        .with_check(scripted(&clock, "panics", Act::Panic))
        .with_check(scripted(&clock, "errors", Act::Error))
        .with_check(scripted(
            &clock,
            "degraded",
            Act::Answer(HealthStatus::Degraded),
        ));
    let report = run(&d);
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["fine", "hangs", "panics", "errors", "degraded"]);
    let line = |n: &str| report.check(n).expect("every check has a line");
    assert_eq!(line("fine").status, HealthStatus::Healthy);
    assert_eq!(line("hangs").status, HealthStatus::Failed);
    assert_eq!(line("hangs").reason, "no answer within 3 s");
    assert_eq!(line("hangs").took, Duration::from_secs(3));
    assert_eq!(line("panics").status, HealthStatus::Failed);
    assert!(
        line("panics").reason.contains("panicked on purpose"),
        "{}",
        line("panics").reason
    );
    assert_eq!(line("errors").reason, "the check failed: disk not mounted");
    assert_eq!(line("degraded").status, HealthStatus::Degraded);
    assert_eq!(report.overall(), HealthStatus::Failed);
    let problems: Vec<&str> = report.problems().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(problems, ["hangs", "panics", "errors", "degraded"]);
    let md = report.to_markdown();
    for n in names {
        assert!(md.contains(&format!("| {n} |")), "{md}");
    }
}

#[test]
fn an_empty_runner_reports_healthy_with_no_lines() {
    let clock = clock();
    let report = run(&Diagnostics::new(clock.clone(), SimulatedTimer::new(clock)));
    assert!(report.checks.is_empty());
    assert_eq!(report.overall(), HealthStatus::Healthy);
}

#[test]
fn a_host_check_from_a_closure_reports_its_figures() {
    let clock = clock();
    let d = Diagnostics::new(clock.clone(), SimulatedTimer::new(clock))
        .with_check(check_fn("network", || async {
            Ok(CheckOutcome::degraded("packet loss 3%").with_detail("loss_pct", 3))
        }));
    let report = run(&d);
    let line = report.check("network").expect("line");
    assert_eq!(line.status, HealthStatus::Degraded);
    assert_eq!(line.details.get("loss_pct").map(String::as_str), Some("3"));
}

/// An agent whose health answer is scripted.
#[derive(Debug)]
struct Pinged {
    id: AgentId,
    act: Act,
    timer: SimulatedTimer,
    clock: ManualClock,
}

#[async_trait::async_trait]
impl Agent for Pinged {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, _: WorkItem) -> Result<WorkOutput, AgentError> {
        Ok(WorkOutput::success())
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        match self.act {
            Act::Answer(_) => Ok(AgentHealth::new("1.4.2")),
            Act::Error | Act::Panic => Err(AgentError::Unreachable {
                reason: "connection refused".into(),
            }),
            Act::Slow(d) => {
                let now = concord::Clock::now(&self.clock);
                self.timer.sleep_until(now + d).await;
                Ok(AgentHealth::new("1.3.0"))
            }
            Act::Hang => futures::future::pending().await,
        }
    }
}

fn fleet(clock: &ManualClock, acts: &[Act]) -> Vec<Arc<dyn Agent>> {
    acts.iter()
        .enumerate()
        .map(|(i, act)| {
            Arc::new(Pinged {
                id: AgentId::new(i as u64 + 1),
                act: *act,
                timer: SimulatedTimer::new(clock.clone()),
                clock: clock.clone(),
            }) as Arc<dyn Agent>
        })
        .collect()
}

#[test]
fn the_agents_check_names_the_slow_and_the_down_with_their_figures() {
    let clock = clock();
    let agents = fleet(
        &clock,
        &[
            Act::Answer(HealthStatus::Healthy),
            Act::Slow(Duration::from_secs(2)),
            Act::Error,
            Act::Answer(HealthStatus::Healthy),
        ],
    );
    let check = AgentsCheck::new(agents, clock.clone(), SimulatedTimer::new(clock.clone()));
    let d = Diagnostics::new(clock.clone(), SimulatedTimer::new(clock)).with_check(check);
    let report = run(&d);
    let line = report.check("agents").expect("line");
    assert_eq!(line.status, HealthStatus::Degraded, "{}", line.reason);
    assert!(
        line.reason.starts_with("3 of 4 agents answered"),
        "{}",
        line.reason
    );
    assert!(
        line.reason
            .contains("agent#3 (agent is unreachable: connection refused)")
    );
    assert!(
        line.reason.contains("slower than 1 s: agent#2 (2000 ms)"),
        "{}",
        line.reason
    );
    assert_eq!(line.details["agent#1.version"], "1.4.2");
    assert_eq!(line.details["agent#2.response_ms"], "2000");
}

#[test]
fn the_agents_check_is_unhealthy_when_half_the_fleet_is_down_and_waits_no_longer_than_its_patience()
{
    let clock = clock();
    let agents = fleet(
        &clock,
        &[Act::Hang, Act::Error, Act::Answer(HealthStatus::Healthy)],
    );
    let check = AgentsCheck::new(agents, clock.clone(), SimulatedTimer::new(clock.clone()))
        .with_patience(Duration::from_secs(2))
        .with_down_fraction(0.5);
    let d = Diagnostics::new(clock.clone(), SimulatedTimer::new(clock)).with_check(check);
    let report = run(&d);
    let line = report.check("agents").expect("line");
    assert_eq!(line.status, HealthStatus::Unhealthy, "{}", line.reason);
    assert!(
        line.reason.contains("agent#1 (no answer within 2 s)"),
        "{}",
        line.reason
    );
    assert_eq!(line.took, Duration::from_secs(2));
}

fn worker() -> Role {
    Role::new("worker").expect("role")
}

fn coordinator(clock: &ManualClock) -> Arc<Coordinator> {
    let c = Coordinator::builder()
        .clock(clock.clone())
        .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).expect("rules"))
        .build();
    c.register_agent(
        AgentProfile::new(AgentId::new(1), "w1")
            .with_role(worker())
            .with_capacity(Resources::new().with_cpu_millis(4000))
            .with_max_tasks(8),
    )
    .expect("register");
    Arc::new(c)
}

fn cpu_task(id: u64, cpu: u64) -> Task {
    Task::new(TaskId::new(id), "work", "work").with_requirements(
        Requirements::new()
            .with_role(worker())
            .with_resources(Resources::new().with_cpu_millis(cpu)),
    )
}

#[test]
fn the_resources_check_names_a_resource_above_ninety_percent_and_is_unhealthy_when_work_waits_for_it()
 {
    let clock = clock();
    let c = coordinator(&clock);
    let d = Diagnostics::new(clock.clone(), SimulatedTimer::new(clock.clone()))
        .with_check(ResourcesCheck::new(Arc::clone(&c)));
    assert_eq!(run(&d).overall(), HealthStatus::Healthy);

    assert!(matches!(
        c.assign(cpu_task(1, 3700)),
        Ok(AssignOutcome::Assigned(_))
    ));
    let report = run(&d);
    let line = report.check("resources").expect("line");
    assert_eq!(line.status, HealthStatus::Degraded, "{}", line.reason);
    assert_eq!(line.reason, "above 90%: cpu 92.5%");

    assert!(matches!(
        c.assign(cpu_task(2, 1000)),
        Ok(AssignOutcome::Queued { .. })
    ));
    let report = run(&d);
    let line = report.check("resources").expect("line");
    assert_eq!(line.status, HealthStatus::Unhealthy, "{}", line.reason);
    assert_eq!(line.reason, "above 90% with 1 requests waiting: cpu 92.5%");
}

/// Under the default escalation ladder a conflict is closed by its default decision
/// at 3 h; the default limit is passed once the ladder has handed it to a human.
#[test]
fn the_coordination_check_names_a_conflict_open_past_its_default_limit() {
    let clock = clock();
    let c = coordinator(&clock);
    let d = Diagnostics::new(clock.clone(), SimulatedTimer::new(clock.clone())).with_check(
        CoordinationCheck::new(Arc::clone(&c)).with_wait_limit(Duration::from_secs(24 * 3600)),
    );
    let claiming = |id| {
        Task::new(TaskId::new(id), "migrate", "migrate").with_requirements(
            Requirements::new()
                .with_role(worker())
                .with_resources(Resources::new().with_cpu_millis(100))
                .with_claim(concord::Claim::exclusive("db/main")),
        )
    };
    assert!(matches!(
        c.assign(claiming(1)),
        Ok(AssignOutcome::Assigned(_))
    ));
    assert!(matches!(
        c.assign(claiming(2)),
        Ok(AssignOutcome::Conflicted { .. })
    ));
    assert_eq!(c.open_conflicts().len(), 1);
    let mut degraded_at = None;
    for minutes in (10..=170).step_by(10) {
        clock.advance(Duration::from_secs(600));
        c.tick();
        let report = run(&d);
        let line = report.check("coordination").expect("line");
        if line.status == HealthStatus::Degraded && degraded_at.is_none() {
            degraded_at = Some(minutes);
            assert!(
                line.reason.contains("open longer than 2 h"),
                "{}",
                line.reason
            );
        }
    }
    assert_eq!(degraded_at, Some(130));
}

#[test]
fn the_coordination_check_names_a_task_waiting_past_its_limit() {
    let clock = clock();
    let c = coordinator(&clock);
    let d = Diagnostics::new(clock.clone(), SimulatedTimer::new(clock.clone())).with_check(
        CoordinationCheck::new(Arc::clone(&c)).with_wait_limit(Duration::from_secs(1800)),
    );
    assert!(matches!(
        c.assign(cpu_task(1, 4000)),
        Ok(AssignOutcome::Assigned(_))
    ));
    assert!(matches!(
        c.assign(cpu_task(2, 1000)),
        Ok(AssignOutcome::Queued { .. })
    ));
    // The counts without copying the queue.
    assert_eq!((c.running_count(), c.waiting_count()), (1, 1));
    assert_eq!(run(&d).overall(), HealthStatus::Healthy);
    clock.advance(Duration::from_secs(3600));
    let report = run(&d);
    let line = report.check("coordination").expect("line");
    assert_eq!(line.status, HealthStatus::Degraded, "{}", line.reason);
    assert_eq!(
        line.reason,
        "0 conflicts open, 1 task waiting; waiting longer than 30 min: task#2 (60 min)"
    );
    assert_eq!(line.details["tasks_overdue"], "1");
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        prop_oneof![
            Just(HealthStatus::Healthy),
            Just(HealthStatus::Degraded),
            Just(HealthStatus::Unhealthy)
        ]
        .prop_map(Act::Answer),
        Just(Act::Error),
        Just(Act::Panic),
        (0u64..20).prop_map(|s| Act::Slow(Duration::from_secs(s))),
        Just(Act::Hang),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/health.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// Whatever the checks do, the report has one line per check, in order; each
    /// says what its check did; none took longer than its timeout.
    #[test]
    fn the_report_is_always_whole_and_each_line_tells_what_its_check_did(
        plan in proptest::collection::vec((act(), 1u64..15), 0..8)
    ) {
        quiet_deliberate_panics();
        let clock = clock();
        let mut d = Diagnostics::new(clock.clone(), SimulatedTimer::new(clock.clone()));
        for (i, (a, timeout)) in plan.iter().enumerate() {
            d = d.with_check_timeout(
                scripted(&clock, &format!("c{i}"), *a),
                Duration::from_secs(*timeout),
            );
        }
        let report = run(&d);
        prop_assert_eq!(report.checks.len(), plan.len());
        let mut worst = HealthStatus::Healthy;
        for (i, ((a, timeout), line)) in plan.iter().zip(&report.checks).enumerate() {
            let timeout = Duration::from_secs(*timeout);
            prop_assert_eq!(&line.name, &format!("c{i}"));
            prop_assert!(line.took <= timeout);
            let expected = match a {
                Act::Answer(s) => *s,
                // An answer at the timeout counts: it is asked before the timer.
                Act::Slow(d) if *d <= timeout => HealthStatus::Healthy,
                _ => HealthStatus::Failed,
            };
            prop_assert_eq!(line.status, expected, "{:?}: {}", a, &line.reason);
            worst = worst.max(expected);
        }
        prop_assert_eq!(report.overall(), worst);
    }
}

/// The overnight review counts the monitor's windows whole: with daily windows, a
/// failure in the morning before `since` is in the window that holds `since`, and
/// the review's note says from when its figures count rather than "since" then.
#[test]
fn the_overnight_review_says_from_when_its_figures_count() {
    use concord::monitor::{Monitor, MonitorConfig};

    for window_hours in [24, 1] {
        let clock = ManualClock::new(Timestamp::from_secs(1_700_006_400)); // 00:00
        let midnight = concord::Clock::now(&clock);
        let c = coordinator(&clock);
        let config = MonitorConfig::default().with_window(Duration::from_secs(3600 * window_hours));
        let mut monitor = Monitor::new(config).expect("monitor");
        // A failure at 08:00, the review from 18:00, a success at 20:00.
        clock.advance(Duration::from_secs(8 * 3600));
        assert!(matches!(
            c.assign(cpu_task(1, 500)),
            Ok(AssignOutcome::Assigned(_))
        ));
        c.complete(TaskId::new(1), false, None).expect("complete");
        let evening = midnight + Duration::from_secs(18 * 3600);
        clock.advance(Duration::from_secs(12 * 3600));
        assert!(matches!(
            c.assign(cpu_task(2, 500)),
            Ok(AssignOutcome::Assigned(_))
        ));
        c.complete(TaskId::new(2), true, None).expect("complete");
        for e in c.drain_events() {
            monitor.ingest(&e);
        }
        clock.advance(Duration::from_secs(11 * 3600)); // 07:00 the next day
        monitor.advance(concord::Clock::now(&clock));
        let timer = SimulatedTimer::new(clock.clone());
        let d = Diagnostics::new(clock.clone(), timer);
        let report = futures::executor::block_on(d.morning_checklist(&monitor, evening));
        let night = &report.items[1].note;
        let counted = report.overnight.as_ref().map(|n| (n.start, n.tasks.failed));
        if window_hours == 24 {
            assert_eq!(counted, Some((midnight, 1)), "{night}");
            assert!(
                night.starts_with(&format!(
                    "1 task succeeded since {midnight} (the monitor's window holding {evening} starts then)"
                )) && night.contains("1 task failed"),
                "{night}"
            );
        } else {
            assert_eq!(counted, Some((evening, 0)), "{night}");
            assert!(
                night.starts_with(&format!("1 task succeeded since {evening}"))
                    && !night.contains("failed")
                    && !night.contains("-0.0"),
                "{night}"
            );
        }
    }
}

/// The morning checklist in one call: four items in the procedure's order, the
/// overnight review from the monitor's windows, and a missing check said plainly.
#[test]
fn the_morning_checklist_reports_its_four_items_from_the_checks_and_the_night() {
    use concord::monitor::{Monitor, MonitorConfig};

    let clock = clock();
    let evening = concord::Clock::now(&clock);
    let c = coordinator(&clock);
    let mut monitor = Monitor::new(MonitorConfig::default().with_window(Duration::from_secs(3600)))
        .expect("monitor");
    for n in 1..=4 {
        assert!(matches!(
            c.assign(cpu_task(n, 500)),
            Ok(AssignOutcome::Assigned(_))
        ));
        clock.advance(Duration::from_secs(1800));
        c.complete(TaskId::new(n), n != 3, None).expect("complete");
    }
    for e in c.drain_events() {
        monitor.ingest(&e);
    }
    monitor.advance(concord::Clock::now(&clock));
    let agents = fleet(&clock, &[Act::Answer(HealthStatus::Healthy), Act::Error]);
    let timer = SimulatedTimer::new(clock.clone());
    let d = Diagnostics::new(clock.clone(), timer.clone())
        .with_check(AgentsCheck::new(agents, clock.clone(), timer))
        .with_check(CoordinationCheck::new(Arc::clone(&c)));
    let report = futures::executor::block_on(d.morning_checklist(&monitor, evening));
    let items: Vec<(&str, HealthStatus)> = report
        .items
        .iter()
        .map(|i| (i.item.as_str(), i.status))
        .collect();
    assert_eq!(
        items,
        [
            // One agent of two is down: half the fleet.
            ("System health check", HealthStatus::Unhealthy),
            ("Overnight review", HealthStatus::Degraded),
            ("Resource status", HealthStatus::Failed),
            ("Agent connectivity", HealthStatus::Unhealthy),
        ]
    );
    let night = &report.items[1].note;
    assert!(
        night.contains("3 tasks succeeded") && night.contains("1 task failed"),
        "{night}"
    );
    assert_eq!(report.items[2].note, "no `resources` check is configured");
    assert_eq!(report.overall(), HealthStatus::Failed);
    let md = report.to_markdown();
    assert!(md.contains("| Overnight review | degraded |"), "{md}");
    assert_eq!(report.overnight.as_ref().map(|n| n.tasks.failed), Some(1));
}

/// Regression: the health report's and the morning checklist's Markdown wrote a
/// check's reason as it was but for its line breaks, so a right-to-left override
/// in it showed the rest of the row reversed, and a zero-width space, a line
/// separator or a variation selector hid in it. Each is a space, as in the
/// dashboard's charts and the maintenance checklist.
#[test]
fn the_markdown_shows_control_and_invisible_characters_as_spaces() {
    use concord::monitor::{Monitor, MonitorConfig};

    const REASON: &str = "disk\tfull\u{1b}[2J\u{202e}sdrawkcab\u{200b}\u{2028}x\u{fe0f}";
    const SHOWN: &str = "disk full [2J sdrawkcab  x ";
    let clock = clock();
    let d =
        Diagnostics::new(clock.clone(), SimulatedTimer::new(clock.clone()))
            .with_check(check_fn("resources", || async {
                Ok(CheckOutcome::degraded(REASON))
            }));
    let monitor = Monitor::new(MonitorConfig::default()).expect("monitor");
    let report =
        futures::executor::block_on(d.morning_checklist(&monitor, concord::Clock::now(&clock)));
    // The reason is a note: its control characters are spaces already, and its
    // invisible ones are kept in the data.
    assert_eq!(
        report.health.checks[0].reason,
        "disk full [2J\u{202e}sdrawkcab\u{200b}\u{2028}x\u{fe0f}"
    );
    let health = report.health.to_markdown();
    assert!(health.contains(&format!(" | {SHOWN} |\n")), "{health}");
    let morning = report.to_markdown();
    assert!(
        morning.contains(&format!("| Resource status | degraded | {SHOWN} |\n")),
        "{morning}"
    );
    for md in [health, morning] {
        assert!(
            !md.chars()
                .any(|c| c != '\n' && (c.is_control() || REASON.contains(c) && !SHOWN.contains(c))),
            "{md:?}"
        );
    }
}
