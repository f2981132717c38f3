//! The async executor over real `Agent` implementations: assignment through the
//! coordinator, retries, timeouts, skips, unassignable steps, separation of duties,
//! the concurrency limit, cancellation and panicking agents.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::coordinator::{Coordinator, Event, EventKind};
use concord::workflow::{
    Executor, ExecutorError, RetryPolicy, Run, RunCondition, RunHandle, RunOutcome, SimulatedTimer,
    StepChange, StepSpec, StepStatus, Workflow, WorkflowError,
};
use concord::{
    AgentId, AgentProfile, ManualClock, NameError, Requirements, Role, RuleBasedAnalyzer, RuleSet,
    Task, TaskId, Timestamp,
};
use futures::executor::block_on;
use parking_lot::Mutex;

use crate::yield_now;
use yield_now::YieldNow;

/// What a scripted agent does for one attempt of one step kind.
#[derive(Debug, Clone)]
enum Act {
    Succeed,
    /// A failure that may pass on another try (`WorkOutput::retryable_failure`).
    Fail,
    /// A failure that will repeat (`WorkOutput::failure`): the step ends at it.
    FailFinal,
    /// The agent refuses the work (`Err(AgentError::Rejected)`).
    Reject,
    Hang,
    Skip,
    Panic,
    Cancel,
}

/// An agent that follows a script per (kind, attempt), and counts concurrency.
#[derive(Debug)]
struct Scripted {
    id: AgentId,
    script: BTreeMap<(String, u32), Act>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    cancel: Mutex<Option<RunHandle>>,
}

impl Scripted {
    fn new(id: u64) -> Self {
        Scripted {
            id: AgentId::new(id),
            script: BTreeMap::new(),
            running: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
            cancel: Mutex::new(None),
        }
    }

    fn on(mut self, kind: &str, attempt: u32, act: Act) -> Self {
        self.script.insert((kind.to_owned(), attempt), act);
        self
    }
}

#[async_trait::async_trait]
impl Agent for Scripted {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        let act = self
            .script
            .get(&(work.kind().to_owned(), work.attempt()))
            .cloned()
            .unwrap_or(Act::Succeed);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        // Let other steps start before this one ends.
        YieldNow(false).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        match act {
            Act::Succeed => Ok(WorkOutput::success()
                .with_output("by", self.id.to_string())
                .with_output("seen", work.inputs().len().to_string())),
            Act::Fail => Ok(WorkOutput::retryable_failure("scripted failure")),
            Act::FailFinal => Ok(WorkOutput::failure("compile error in main.rs")),
            Act::Reject => Err(AgentError::Rejected {
                reason: "over its own limits".into(),
            }),
            Act::Hang => futures::future::pending().await,
            Act::Skip => Ok(WorkOutput::skipped("no browser on this machine")),
            Act::Panic => panic!("scripted panic"),
            Act::Cancel => {
                if let Some(c) = self.cancel.lock().as_ref() {
                    c.cancel();
                }
                Ok(WorkOutput::success())
            }
        }
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("test"))
    }
}

fn role(name: &str) -> Role {
    Role::new(name).unwrap()
}

struct World {
    clock: ManualClock,
    coordinator: Arc<Coordinator>,
}

fn world(agents: &[(u64, &[&str], u32)]) -> World {
    let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    let coordinator = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
            .build(),
    );
    for (id, roles, slots) in agents {
        let mut p =
            AgentProfile::new(AgentId::new(*id), format!("agent-{id}")).with_max_tasks(*slots);
        for r in *roles {
            p = p.with_role(role(r));
        }
        coordinator.register_agent(p).unwrap();
    }
    World { clock, coordinator }
}

fn executor(w: &World, agents: Vec<Arc<dyn Agent>>) -> Executor {
    let mut e = Executor::new(
        Arc::clone(&w.coordinator),
        SimulatedTimer::new(w.clock.clone()),
    );
    for a in agents {
        e = e.with_agent(a);
    }
    e
}

fn changes(run: &Run, step: &str) -> Vec<String> {
    run.history()
        .iter()
        .filter(|e| run.name(e.step) == Some(step))
        .map(|e| match &e.change {
            StepChange::Ready => "ready".to_owned(),
            StepChange::Started => "started".to_owned(),
            StepChange::Succeeded { .. } => "succeeded".to_owned(),
            StepChange::AttemptFailed { retry_at, .. } => {
                format!("failed{}", if retry_at.is_some() { "+retry" } else { "" })
            }
            StepChange::Skipped { .. } => "skipped".to_owned(),
            StepChange::SkippedByAgent { .. } => "skipped-by-agent".to_owned(),
            StepChange::Abandoned { .. } => "abandoned".to_owned(),
            StepChange::Cancelled => "cancelled".to_owned(),
            StepChange::Interrupted { .. } => "interrupted".to_owned(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn runs_a_chain_passing_outputs_downstream() {
    let w = world(&[(1, &["ops"], 1)]);
    let wf = Workflow::builder("chain")
        .step(StepSpec::new("build").with_role(role("ops")))
        .step(
            StepSpec::new("ship")
                .with_role(role("ops"))
                .after("build")
                .with_input("build", "by", "built_by"),
        )
        .build()
        .unwrap();
    let run = block_on(executor(&w, vec![Arc::new(Scripted::new(1))]).run(&wf, "r1", 1)).unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(run.outputs("ship").unwrap()["seen"], "1");
    let events = w.coordinator.drain_events();
    let assigned = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::TaskAssigned { assignment, .. } if assignment.group.as_deref() == Some("r1")))
        .count();
    assert_eq!(assigned, 2);
    // Every task was completed: nothing left running in the coordinator.
    assert!(w.coordinator.assignments().is_empty());
}

/// Each step of a chain is a one-task batch whose task is written over the last
/// step's: steps that alternate roles, some with a claim, must each go to the agent
/// of their own role.
#[test]
fn each_step_is_assigned_by_its_own_requirements() {
    let w = world(&[(1, &["ops"], 1), (2, &["qa"], 1)]);
    let mut b = Workflow::builder("alternating");
    for i in 0..12 {
        let mut spec =
            StepSpec::new(format!("s{i}")).with_role(role(if i % 3 == 0 { "qa" } else { "ops" }));
        if i % 5 == 2 {
            spec = spec.with_claim(concord::Claim::exclusive("env/staging"));
        }
        if i > 0 {
            spec = spec.after(format!("s{}", i - 1));
        }
        b.push(spec);
    }
    let wf = b.build().unwrap();
    let agents: Vec<Arc<dyn Agent>> = vec![Arc::new(Scripted::new(1)), Arc::new(Scripted::new(2))];
    let run = block_on(executor(&w, agents).run(&wf, "r", 3)).unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    for i in 0..12 {
        let expected = if i % 3 == 0 { "agent#2" } else { "agent#1" };
        assert_eq!(
            run.outputs(&*format!("s{i}")).unwrap()["by"],
            expected,
            "step s{i}"
        );
    }
    assert!(w.coordinator.assignments().is_empty());
}

#[test]
fn a_failed_attempt_is_retried_after_its_backoff() {
    let w = world(&[(1, &["ops"], 1)]);
    let wf =
        Workflow::builder("retry")
            .step(StepSpec::new("deploy").with_role(role("ops")).with_retry(
                RetryPolicy::exponential(3).with_initial_backoff(Duration::from_secs(30)),
            ))
            .build()
            .unwrap();
    let agent = Scripted::new(1).on("deploy", 1, Act::Fail);
    let start = w.clock.now_ts();
    let run = block_on(executor(&w, vec![Arc::new(agent)]).run(&wf, "r", 9)).unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(
        changes(&run, "deploy"),
        [
            "ready",
            "started",
            "failed+retry",
            "ready",
            "started",
            "succeeded"
        ]
    );
    assert_eq!(run.attempts("deploy"), Some(2));
    // The simulated timer moved the clock through the back-off.
    assert!(w.clock.now_ts().duration_since(start) >= Duration::from_secs(30));
}

/// A step whose agent fails on every attempt, with up to 4 attempts and a
/// `notify` handler and a `package` dependent after it.
fn failing_build(act: Act) -> (Workflow, Scripted) {
    let wf =
        Workflow::builder("build")
            .step(StepSpec::new("compile").with_role(role("ops")).with_retry(
                RetryPolicy::exponential(4).with_initial_backoff(Duration::from_secs(30)),
            ))
            .step(
                StepSpec::new("package")
                    .with_role(role("ops"))
                    .after("compile"),
            )
            .step(
                StepSpec::new("notify")
                    .with_role(role("ops"))
                    .after("compile")
                    .with_condition(RunCondition::AnyFailed),
            )
            .build()
            .unwrap();
    let agent = (1..=4).fold(Scripted::new(1), |a, k| a.on("compile", k, act.clone()));
    (wf, agent)
}

/// Regression (an outside user trial): a failure the agent reports final
/// (`WorkOutput::failure`, "trying again will not help") was retried as often as
/// the step's policy allowed, with back-offs, before the step failed. It must end
/// the step at its first attempt, and the step's handler and dependents go on as
/// after any failed step.
#[test]
fn a_final_failure_ends_its_step_at_the_first_attempt() {
    let w = world(&[(1, &["ops"], 1)]);
    let (wf, agent) = failing_build(Act::FailFinal);
    let start = w.clock.now_ts();
    let run = block_on(executor(&w, vec![Arc::new(agent)]).run(&wf, "r", 9)).unwrap();
    assert_eq!(run.attempts("compile"), Some(1));
    assert_eq!(run.status("compile"), Some(StepStatus::Failed));
    assert_eq!(changes(&run, "compile"), ["ready", "started", "failed"]);
    assert_eq!(run.status("package"), Some(StepStatus::Skipped));
    assert_eq!(run.status("notify"), Some(StepStatus::Succeeded));
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
    let failed = crate::history::first_attempt_failed(&run);
    assert_eq!(
        failed.change,
        StepChange::AttemptFailed {
            reason: "compile error in main.rs".into(),
            retry_at: None,
            retryable: false,
        }
    );
    assert_eq!(
        failed.change.to_string(),
        "attempt failed: compile error in main.rs; not retryable"
    );
    // No back-off was waited out.
    assert!(w.clock.now_ts().duration_since(start) < Duration::from_secs(30));
    assert!(w.coordinator.assignments().is_empty());
}

/// The other side of the rule: a retryable failure is tried again per the policy,
/// until the attempts run out.
#[test]
fn a_retryable_failure_is_retried_until_its_attempts_run_out() {
    let w = world(&[(1, &["ops"], 1)]);
    let (wf, agent) = failing_build(Act::Fail);
    let run = block_on(executor(&w, vec![Arc::new(agent)]).run(&wf, "r", 9)).unwrap();
    assert_eq!(run.attempts("compile"), Some(4));
    assert_eq!(run.status("compile"), Some(StepStatus::Failed));
    let failures: Vec<String> = changes(&run, "compile")
        .into_iter()
        .filter(|c| c.starts_with("failed"))
        .collect();
    assert_eq!(
        failures,
        ["failed+retry", "failed+retry", "failed+retry", "failed"]
    );
    let last = crate::history::last_attempt_failed(&run);
    assert_eq!(
        last.change.to_string(),
        "attempt failed: scripted failure; no attempt left"
    );
    assert_eq!(run.status("notify"), Some(StepStatus::Succeeded));
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
}

/// An agent's error is about the agent, not the work (the retry may go to another
/// agent, or find this one mended): it is tried again per the step's policy, as the
/// `RetryPolicy` docs say, even when it is not transient.
#[test]
fn an_agent_error_is_retried_per_the_policy() {
    let w = world(&[(1, &["ops"], 1)]);
    let (wf, _) = failing_build(Act::Reject);
    let agent = Scripted::new(1).on("compile", 1, Act::Reject);
    let run = block_on(executor(&w, vec![Arc::new(agent)]).run(&wf, "r", 9)).unwrap();
    assert_eq!(run.attempts("compile"), Some(2));
    assert_eq!(
        changes(&run, "compile"),
        [
            "ready",
            "started",
            "failed+retry",
            "ready",
            "started",
            "succeeded"
        ]
    );
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
}

#[test]
fn a_hanging_agent_times_out_and_the_retry_succeeds() {
    let w = world(&[(1, &["ops"], 1)]);
    let wf = Workflow::builder("timeout")
        .step(
            StepSpec::new("check")
                .with_role(role("ops"))
                .with_timeout(Duration::from_secs(10))
                .with_retry(
                    RetryPolicy::exponential(2).with_initial_backoff(Duration::from_secs(1)),
                ),
        )
        .build()
        .unwrap();
    let agent = Scripted::new(1).on("check", 1, Act::Hang);
    let run = block_on(executor(&w, vec![Arc::new(agent)]).run(&wf, "r", 1)).unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(run.attempts("check"), Some(2));
    let failed = run
        .history()
        .iter()
        .find_map(|e| match &e.change {
            StepChange::AttemptFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        failed.contains("timed out") || failed.contains("10s"),
        "{failed}"
    );
}

#[test]
fn a_panicking_agent_fails_its_attempt_only() {
    let w = world(&[(1, &["ops"], 1)]);
    let wf = Workflow::builder("panic")
        .step(StepSpec::new("work").with_role(role("ops")))
        .step(
            StepSpec::new("rollback")
                .with_role(role("ops"))
                .after("work")
                .with_condition(RunCondition::AnyFailed),
        )
        .build()
        .unwrap();
    let agent = Scripted::new(1).on("work", 1, Act::Panic);
    let run = block_on(executor(&w, vec![Arc::new(agent)]).run(&wf, "r", 1)).unwrap();
    assert_eq!(run.status("work"), Some(StepStatus::Failed));
    assert_eq!(run.status("rollback"), Some(StepStatus::Succeeded));
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
}

#[test]
fn a_skipped_step_is_recorded_with_its_reason_and_survives_a_snapshot() {
    let w = world(&[(1, &["ops"], 1), (2, &["qa"], 1)]);
    let wf = Workflow::builder("skip")
        .step(StepSpec::new("browser").with_role(role("ops")))
        .step(
            StepSpec::new("screenshot")
                .with_role(role("qa"))
                .after("browser"),
        )
        .step(
            StepSpec::new("report")
                .with_role(role("qa"))
                .after("screenshot")
                .with_condition(RunCondition::Always),
        )
        .build()
        .unwrap();
    let ops = Scripted::new(1).on("browser", 1, Act::Skip);
    let run =
        block_on(executor(&w, vec![Arc::new(ops), Arc::new(Scripted::new(2))]).run(&wf, "r", 1))
            .unwrap();
    assert_eq!(run.status("browser"), Some(StepStatus::Skipped));
    assert_eq!(
        changes(&run, "browser"),
        ["ready", "started", "skipped-by-agent"]
    );
    assert_eq!(run.status("screenshot"), Some(StepStatus::Skipped));
    assert_eq!(run.status("report"), Some(StepStatus::Succeeded));
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    let json = serde_json::to_string(&run.snapshot()).unwrap();
    let restored = Run::restore(&wf, serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(restored.snapshot(), run.snapshot());
}

#[test]
fn a_step_nobody_can_take_is_abandoned_and_handlers_run() {
    let w = world(&[(1, &["ops"], 1)]);
    let wf = Workflow::builder("unassignable")
        .step(StepSpec::new("audit").with_role(role("security")))
        .step(
            StepSpec::new("notify")
                .with_role(role("ops"))
                .after("audit")
                .with_condition(RunCondition::AnyFailed),
        )
        .build()
        .unwrap();
    let run = block_on(executor(&w, vec![Arc::new(Scripted::new(1))]).run(&wf, "r", 1)).unwrap();
    assert_eq!(changes(&run, "audit"), ["ready", "abandoned"]);
    // The reason is the coordinator's explanation, naming the missing role.
    let why = crate::history::abandoned_reason(&run);
    assert!(why.contains("audit") && why.contains("security"), "{why}");
    assert_eq!(run.status("notify"), Some(StepStatus::Succeeded));
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
    let json = serde_json::to_string(&run.snapshot()).unwrap();
    assert!(Run::restore(&wf, serde_json::from_str(&json).unwrap()).is_ok());
}

#[test]
fn separation_of_duties_holds_within_a_run() {
    // Agent 1 can deploy and verify; the policy sends verify to agent 2.
    let w = world(&[(1, &["ops", "qa"], 4), (2, &["qa"], 1)]);
    let wf = Workflow::builder("sod")
        .step(StepSpec::new("deploy").with_role(role("ops")))
        .step(
            StepSpec::new("verify")
                .with_role(role("qa"))
                .after("deploy"),
        )
        .build()
        .unwrap();
    let run = block_on(
        executor(
            &w,
            vec![Arc::new(Scripted::new(1)), Arc::new(Scripted::new(2))],
        )
        .run(&wf, "run-7", 1),
    )
    .unwrap();
    assert_eq!(run.agent("deploy"), Some(AgentId::new(1)));
    assert_eq!(run.agent("verify"), Some(AgentId::new(2)));
}

#[test]
fn the_concurrency_limit_holds() {
    let w = world(&[(1, &["ops"], 16)]);
    let mut b = Workflow::builder("wide");
    for k in 0..10 {
        b = b.step(StepSpec::new(format!("s{k}")).with_role(role("ops")));
    }
    let wf = b.build().unwrap();
    let agent = Scripted::new(1);
    let peak = Arc::clone(&agent.peak);
    let run = block_on(
        executor(&w, vec![Arc::new(agent)])
            .with_concurrency(3)
            .run(&wf, "r", 1),
    )
    .unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    let peak = peak.load(Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "peak concurrency {peak}");
}

#[test]
fn cancellation_stops_the_run() {
    let w = world(&[(1, &["ops"], 1)]);
    let wf = Workflow::builder("cancel")
        .step(StepSpec::new("first").with_role(role("ops")))
        .step(
            StepSpec::new("second")
                .with_role(role("ops"))
                .after("first"),
        )
        .build()
        .unwrap();
    let agent = Arc::new(Scripted::new(1).on("first", 1, Act::Cancel));
    let e = executor(&w, vec![]).with_agent(agent.clone());
    let running = e.run(&wf, "r", 1);
    *agent.cancel.lock() = Some(running.handle());
    let run = block_on(running).unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Cancelled));
    assert_eq!(run.status("second"), Some(StepStatus::Cancelled));
    assert!(w.coordinator.assignments().is_empty());
}

trait NowTs {
    fn now_ts(&self) -> Timestamp;
}

impl NowTs for ManualClock {
    fn now_ts(&self) -> Timestamp {
        concord::Clock::now(self)
    }
}

/// An agent that counts how often it ran each step, and was asked about each, under
/// the key a host's agent keeps a step's effect by: the run and the step, taken from
/// the work item alone.
#[derive(Debug)]
struct Counting {
    id: AgentId,
    runs: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Counting {
    /// Agent 1, counting into `runs`.
    fn new(runs: &Arc<Mutex<BTreeMap<String, u32>>>) -> Self {
        Counting {
            id: AgentId::new(1),
            runs: Arc::clone(runs),
        }
    }
}

#[async_trait::async_trait]
impl Agent for Counting {
    fn id(&self) -> AgentId {
        self.id
    }
    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        *self.runs.lock().entry(step_key(&work)).or_default() += 1;
        YieldNow(false).await;
        Ok(WorkOutput::success().with_output("by", self.id.to_string()))
    }
    async fn recover(&self, work: WorkItem) -> Result<Option<WorkOutput>, AgentError> {
        let key = format!("recover {}", step_key(&work));
        *self.runs.lock().entry(key).or_default() += 1;
        Ok(None)
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("counting"))
    }
}

/// `run/step`, from what the work item says; a work item of a step that names no run
/// (or no step) would show as `?`.
fn step_key(work: &WorkItem) -> String {
    format!(
        "{}/{}",
        work.run().unwrap_or("?"),
        work.step().unwrap_or("?")
    )
}

fn five_steps() -> Workflow {
    let mut b = Workflow::builder("five");
    for i in 0..5 {
        let mut s = StepSpec::new(format!("s{i}"))
            .with_role(role("ops"))
            .with_retry(RetryPolicy::exponential(2).with_initial_backoff(Duration::from_secs(1)));
        if i > 0 {
            s = s.after(format!("s{}", i - 1));
        }
        b.push(s);
    }
    b.build().unwrap()
}

#[test]
fn the_observer_sees_every_event_once_in_order() {
    let w = world(&[(1, &["ops"], 2)]);
    let runs = Arc::new(Mutex::new(BTreeMap::new()));
    let seen: Arc<Mutex<Vec<concord::workflow::RunEvent>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let (sink, count) = (Arc::clone(&seen), Arc::clone(&calls));
    let agent = Counting::new(&runs);
    let run = block_on(
        executor(&w, vec![Arc::new(agent)])
            .with_observer(move |_: &Run, events: &[concord::workflow::RunEvent]| {
                assert!(!events.is_empty(), "called without news");
                count.fetch_add(1, Ordering::SeqCst);
                sink.lock().extend_from_slice(events);
            })
            .run(&five_steps(), "observed", 3),
    )
    .unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(seen.lock().as_slice(), run.history());
    // Delivered as the run went, not once at the end.
    assert!(calls.load(Ordering::SeqCst) >= 5);
}

/// A host that persists a snapshot from the observer, "crashes", restores it into a
/// fresh coordinator and resumes: the run ends as before, no finished step runs
/// again, and the two journals together are the resumed run's whole history.
#[test]
fn a_run_persisted_by_the_observer_resumes_after_a_crash() {
    let wf = five_steps();
    let runs = Arc::new(Mutex::new(BTreeMap::new()));
    let journal: Arc<Mutex<Vec<concord::workflow::RunEvent>>> = Arc::default();
    let saved: Arc<Mutex<Option<String>>> = Arc::default();
    {
        let w = world(&[(1, &["ops"], 2)]);
        let (sink, save) = (Arc::clone(&journal), Arc::clone(&saved));
        let agent = Counting::new(&runs);
        let _ = block_on(
            executor(&w, vec![Arc::new(agent)])
                .with_observer(move |run: &Run, events: &[concord::workflow::RunEvent]| {
                    let mut save = save.lock();
                    if save.is_some() {
                        return; // crashed: nothing after this point was persisted
                    }
                    sink.lock().extend_from_slice(events);
                    if run.status("s2") == Some(StepStatus::Running) {
                        *save = Some(serde_json::to_string(&run.snapshot()).unwrap());
                    }
                })
                .run(&wf, "crashy", 3),
        )
        .unwrap();
    }
    let snapshot = saved.lock().clone().expect("a snapshot was taken mid-run");
    let before: BTreeMap<String, u32> = runs.lock().clone();
    runs.lock().clear();

    let restored = Run::restore(&wf, serde_json::from_str(&snapshot).unwrap()).unwrap();
    assert_eq!(restored.restored_history(), journal.lock().len());
    let w = world(&[(1, &["ops"], 2)]);
    let more: Arc<Mutex<Vec<concord::workflow::RunEvent>>> = Arc::default();
    let sink = Arc::clone(&more);
    let agent = Counting::new(&runs);
    let run = block_on(
        executor(&w, vec![Arc::new(agent)])
            .with_observer(move |_: &Run, events: &[concord::workflow::RunEvent]| {
                sink.lock().extend_from_slice(events);
            })
            .resume(restored),
    )
    .unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    // s0 and s1 had finished: never again. s2 was interrupted: run once more, as
    // the same attempt (a restart is no failure).
    let again = runs.lock().clone();
    assert_eq!(again.get("crashy/s0"), None);
    assert_eq!(again.get("crashy/s1"), None);
    assert_eq!(again.get("crashy/s2"), Some(&1));
    assert_eq!(before.get("crashy/s0"), Some(&1));
    // The agent was asked about the interrupted attempt by the same key: the work
    // item of a resumed run names it too.
    assert_eq!(again.get("recover crashy/s2"), Some(&1));
    assert_eq!(again.len(), 4, "{again:?}");
    let mut whole = journal.lock().clone();
    whole.extend(more.lock().iter().cloned());
    assert_eq!(whole.as_slice(), run.history());
    assert_eq!(
        changes(&run, "s2")[..5],
        ["ready", "started", "interrupted", "ready", "started"]
    );
}

/// Two steps of one run that claim the same environment exclusively never run at
/// once: the second is caught at assignment, the conflict goes to the coordinator's
/// manager, and the step starts once the holder has finished (which resolves it).
#[test]
fn steps_with_colliding_claims_run_one_after_the_other() {
    let w = world(&[(1, &["ops"], 2), (2, &["ops"], 2)]);
    let staging = concord::Claim::exclusive("env/staging");
    let wf = Workflow::builder("claims")
        .step(
            StepSpec::new("migrate")
                .with_role(role("ops"))
                .with_claim(staging.clone()),
        )
        .step(
            StepSpec::new("seed")
                .with_role(role("ops"))
                .with_claim(staging),
        )
        .step(
            StepSpec::new("report")
                .with_role(role("ops"))
                .with_claim(concord::Claim::shared("env/prod"))
                .after("migrate")
                .after("seed"),
        )
        .build()
        .unwrap();
    let run = block_on(
        executor(
            &w,
            vec![Arc::new(Scripted::new(1)), Arc::new(Scripted::new(2))],
        )
        .run(&wf, "claims-1", 5),
    )
    .unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    // One after the other, in the order of the evidence (the simulated clock does not
    // move while agents work, so positions, not times, tell).
    let pos = |step: &str, change: fn(&StepChange) -> bool| {
        run.history()
            .iter()
            .position(|e| run.name(e.step) == Some(step) && change(&e.change))
            .unwrap()
    };
    let started = |c: &StepChange| matches!(c, StepChange::Started);
    let succeeded = |c: &StepChange| matches!(c, StepChange::Succeeded { .. });
    let (m0, m1) = (pos("migrate", started), pos("migrate", succeeded));
    let (s0, s1) = (pos("seed", started), pos("seed", succeeded));
    assert!(
        m1 < s0 || s1 < m0,
        "overlap: migrate {m0}..{m1}, seed {s0}..{s1}"
    );
    let events = w.coordinator.drain_events();
    let detected = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::ConflictDetected { .. }))
        .count();
    let resolved = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::ConflictResolved { .. }))
        .count();
    assert!(detected >= 1, "the collision went through the manager");
    assert_eq!(
        detected, resolved,
        "every conflict was closed by the holder's end"
    );
    assert!(w.coordinator.assignments().is_empty());
}

/// Task 7, outside any run, assigned now and holding `claim`.
fn hold_outside_the_run(w: &World, claim: &concord::Claim) {
    let holder = concord::Task::new(concord::TaskId::new(7), "deploy", "another deployment")
        .with_requirements(
            concord::Requirements::new()
                .with_role(role("ops"))
                .with_claim(claim.clone()),
        );
    assert!(w.coordinator.assign(holder).unwrap().assignment().is_some());
}

/// A step whose claim is held outside its run waits for the holder (the conflict is
/// opened once, however often the step looks again) and runs once the holder ends.
#[test]
fn a_step_waits_for_an_outside_holder_of_its_claim() {
    let w = world(&[(1, &["ops"], 4)]);
    let staging = concord::Claim::exclusive("env/staging");
    hold_outside_the_run(&w, &staging);
    let wf = Workflow::builder("waits")
        .step(
            StepSpec::new("deploy")
                .with_role(role("ops"))
                .with_claim(staging),
        )
        .build()
        .unwrap();
    let t0 = w.coordinator.now();
    let release_at = t0 + Duration::from_secs(10);
    let coordinator = Arc::clone(&w.coordinator);
    // The other deployment ends ten (simulated) seconds later.
    let host = async move {
        while coordinator.now() < release_at {
            YieldNow(false).await;
        }
        coordinator
            .complete(concord::TaskId::new(7), true, None)
            .unwrap();
    };
    let exec = executor(&w, vec![Arc::new(Scripted::new(1))]);
    let (run, ()) = block_on(futures::future::join(exec.run(&wf, "waits-1", 1), host));
    let run = run.unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    let events = w.coordinator.drain_events();
    let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
    assert_eq!(
        count(|e| matches!(&e.kind, EventKind::ConflictDetected { .. })),
        1
    );
    assert_eq!(
        count(|e| matches!(&e.kind, EventKind::ConflictResolved { .. })),
        1
    );
}

/// Past its patience, a step still blocked by an outside holder is abandoned with
/// the conflict named, and the run goes on to its handlers.
#[test]
fn a_step_blocked_past_its_patience_is_abandoned() {
    let w = world(&[(1, &["ops"], 4)]);
    let staging = concord::Claim::exclusive("env/staging");
    hold_outside_the_run(&w, &staging);
    let wf = Workflow::builder("gives-up")
        .step(
            StepSpec::new("deploy")
                .with_role(role("ops"))
                .with_claim(staging),
        )
        .step(
            StepSpec::new("page-someone")
                .with_role(role("ops"))
                .after("deploy")
                .with_condition(RunCondition::AnyFailed),
        )
        .build()
        .unwrap();
    let t0 = w.coordinator.now();
    let exec =
        executor(&w, vec![Arc::new(Scripted::new(1))]).with_patience(Duration::from_secs(60));
    let run = block_on(exec.run(&wf, "gives-up-1", 1)).unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
    assert_eq!(changes(&run, "deploy"), ["ready", "abandoned"]);
    assert_eq!(run.status("page-someone"), Some(StepStatus::Succeeded));
    let why = crate::history::abandoned_reason(&run);
    assert!(why.contains("conflict#1"), "{why}");
    // It waited its patience, no more.
    let waited = w.coordinator.now().duration_since(t0);
    assert!(
        waited >= Duration::from_secs(60) && waited <= Duration::from_secs(70),
        "{waited:?}"
    );
    let detected = w
        .coordinator
        .drain_events()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::ConflictDetected { .. }))
        .count();
    assert_eq!(detected, 1, "the step waited on one conflict");
}

/// A run is one `Send` future, so a host can spawn it on a multi-threaded runtime.
#[test]
fn a_run_can_be_spawned_on_another_thread() {
    fn spawnable<F: std::future::Future + Send>(f: F) -> F {
        f
    }
    let clock = ManualClock::new(Timestamp::from_secs(1));
    let coordinator = Arc::new(Coordinator::builder().clock(clock.clone()).build());
    coordinator
        .register_agent(AgentProfile::new(AgentId::new(1), "ops"))
        .unwrap();
    let executor = Executor::new(Arc::clone(&coordinator), SimulatedTimer::new(clock))
        .with_agent(Arc::new(Scripted::new(1)));
    let workflow = Workflow::builder("w")
        .step(StepSpec::new("a").with_timeout(Duration::from_secs(5)))
        .step(StepSpec::new("b").after("a"))
        .build()
        .unwrap();
    let run = std::thread::scope(|scope| {
        scope
            .spawn(|| block_on(spawnable(executor.run(&workflow, "r", 1))))
            .join()
            .unwrap()
    })
    .unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
}

/// Answers at once, without ever yielding (an in-process agent).
#[derive(Debug)]
struct Instant(AgentId);

#[async_trait::async_trait]
impl Agent for Instant {
    fn id(&self) -> AgentId {
        self.0
    }
    async fn execute(&self, _: WorkItem) -> Result<WorkOutput, AgentError> {
        Ok(WorkOutput::success())
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("test"))
    }
}

/// An agent that answers when handed the work is settled at once; an agent still
/// working meanwhile is polled between those steps, not only when they run out.
#[test]
fn instant_agents_do_not_starve_a_working_one() {
    let w = world(&[(1, &["ops"], 4), (2, &["qa"], 4)]);
    let mut b = Workflow::builder("mixed").step(StepSpec::new("check").with_role(role("qa")));
    for i in 0..50 {
        let mut spec = StepSpec::new(format!("s{i}")).with_role(role("ops"));
        if i > 0 {
            spec = spec.after(format!("s{}", i - 1));
        }
        b = b.step(spec);
    }
    let workflow = b.build().unwrap();
    let e = executor(
        &w,
        vec![
            Arc::new(Instant(AgentId::new(1))),
            Arc::new(Scripted::new(2)),
        ],
    );
    let run = block_on(e.run(&workflow, "r", 1)).unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    let finished = |name: &str| {
        run.history()
            .iter()
            .position(|ev| {
                run.name(ev.step) == Some(name) && matches!(ev.change, StepChange::Succeeded { .. })
            })
            .unwrap()
    };
    assert!(
        finished("check") < finished("s10"),
        "{:?}",
        changes(&run, "check")
    );
}

/// Checks, when it gets the work, that the host was told the attempt started.
#[derive(Debug)]
struct Witness {
    id: AgentId,
    started: Arc<Mutex<Vec<String>>>,
    unseen: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Agent for Witness {
    fn id(&self) -> AgentId {
        self.id
    }
    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        if !self.started.lock().iter().any(|s| s == work.kind()) {
            self.unseen.fetch_add(1, Ordering::SeqCst);
        }
        Ok(WorkOutput::success())
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("test"))
    }
}

/// A host that journals as the run goes has the start of every attempt before the
/// agent gets the work (write-ahead), even from an agent that answers at once.
#[test]
fn the_host_hears_of_a_start_before_the_agent_works() {
    let w = world(&[(1, &["ops"], 4)]);
    let started = Arc::new(Mutex::new(Vec::new()));
    let unseen = Arc::new(AtomicUsize::new(0));
    let sink = Arc::clone(&started);
    let e = executor(
        &w,
        vec![Arc::new(Witness {
            id: AgentId::new(1),
            started: Arc::clone(&started),
            unseen: Arc::clone(&unseen),
        })],
    )
    .with_observer(move |run: &Run, events: &[concord::workflow::RunEvent]| {
        for ev in events {
            if matches!(ev.change, StepChange::Started) {
                sink.lock()
                    .push(run.name(ev.step).unwrap_or("?").to_owned());
            }
        }
    });
    let workflow = Workflow::builder("w")
        .step(StepSpec::new("a").with_role(role("ops")))
        .step(StepSpec::new("b").with_role(role("ops")))
        .step(StepSpec::new("c").with_role(role("ops")).after("a"))
        .build()
        .unwrap();
    let run = block_on(e.run(&workflow, "r", 1)).unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(started.lock().len(), 3);
    assert_eq!(unseen.load(Ordering::SeqCst), 0);
}

/// Skips its work after yielding twice: slower than a timer with no patience.
#[derive(Debug)]
struct SlowSkip(AgentId);

#[async_trait::async_trait]
impl Agent for SlowSkip {
    fn id(&self) -> AgentId {
        self.0
    }
    async fn execute(&self, _: WorkItem) -> Result<WorkOutput, AgentError> {
        YieldNow(false).await;
        YieldNow(false).await;
        Ok(WorkOutput::skipped("no browser on this machine"))
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("test"))
    }
}

/// An agent slower than the step's timeout fails the attempt by the timeout, even if
/// it would have skipped the work: the skip never reaches the run.
#[test]
fn a_timeout_beats_a_late_skip() {
    let w = world(&[(1, &["ops"], 4)]);
    let e = Executor::new(
        Arc::clone(&w.coordinator),
        SimulatedTimer::new(w.clock.clone()).with_patience(0),
    )
    .with_agent(Arc::new(SlowSkip(AgentId::new(1))));
    let workflow = Workflow::builder("w")
        .step(
            StepSpec::new("shot")
                .with_role(role("ops"))
                .with_timeout(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let run = block_on(e.run(&workflow, "r", 1)).unwrap();
    assert_eq!(run.status("shot"), Some(StepStatus::Failed));
    assert_eq!(changes(&run, "shot"), ["ready", "started", "failed"]);
}

/// A step that states no requirements goes through the keyword analyzer; when that
/// makes it untakeable, the refusal names the rule and the word that fired.
#[test]
fn an_analyzer_refusal_names_the_rule_and_the_word() {
    let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    // The default rule table: "deploy" asks for role ops and capability deploy.
    let coordinator = Arc::new(Coordinator::builder().clock(clock.clone()).build());
    coordinator
        .register_agent(AgentProfile::new(AgentId::new(1), "qa").with_role(role("qa")))
        .unwrap();
    let wf = Workflow::builder("words")
        .step(StepSpec::new("deploy the site"))
        .build()
        .unwrap();
    let executor = Executor::new(Arc::clone(&coordinator), SimulatedTimer::new(clock))
        .with_agent(Arc::new(Scripted::new(1)));
    let run = block_on(executor.run(&wf, "words-1", 1)).unwrap();
    let why = crate::history::abandoned_reason(&run);
    assert!(why.contains(r#"rule deploy (keyword "deploy")"#), "{why}");
}

// ===== Run ids: unique among live runs ================================================

/// Runs `f` on a thread of its own and returns what it returns, or panics if it has
/// not returned within a minute: a run that waits forever fails its test, rather
/// than hang the suite.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("hung for a minute")
}

/// Two steps, then one after both: with one slot, the steps wait for each other in
/// the coordinator (the trial's scene that hung).
fn fan_in() -> Workflow {
    Workflow::builder("fan-in")
        .step(StepSpec::new("a").with_role(role("ops")))
        .step(StepSpec::new("b").with_role(role("ops")))
        .step(
            StepSpec::new("c")
                .with_role(role("ops"))
                .after("a")
                .after("b"),
        )
        .build()
        .unwrap()
}

fn refused_as_live(result: Result<Run, ExecutorError>, id: &str) {
    match result {
        Err(ExecutorError::RunInProgress { run }) => assert_eq!(run, id),
        other => panic!("expected RunInProgress {{ run: {id:?} }}, got {other:?}"),
    }
}

#[test]
fn a_second_live_run_under_one_id_is_refused_not_left_waiting() {
    let (outcomes, again, waiting, held) = within_a_minute(|| {
        let w = world(&[(1, &["ops"], 1)]);
        let e = Arc::new(executor(&w, vec![Arc::new(Scripted::new(1))]));
        let wf = fan_in();
        // All four are made (and so started) before any is polled, as a host
        // spawning them would.
        let runs: Vec<_> = (0..4)
            .map(|i| Arc::clone(&e).run_owned(&wf, "same", i))
            .collect();
        let outcomes = block_on(futures::future::join_all(runs));
        // The id is free again once its run has ended.
        let again = block_on(e.run(&wf, "same", 9)).map(|r| r.outcome());
        let held = w.coordinator.assignments().len();
        (outcomes, again, w.coordinator.waiting_count(), held)
    });
    let mut outcomes = outcomes.into_iter();
    let first = outcomes.next().unwrap().unwrap();
    assert_eq!(first.outcome(), Some(RunOutcome::Succeeded));
    for refused in outcomes {
        refused_as_live(refused, "same");
    }
    assert_eq!(again.unwrap(), Some(RunOutcome::Succeeded));
    assert_eq!((waiting, held), (0, 0));
}

/// Regression (user trial 4, D2): a coordinator restored from a checkpoint that still
/// holds tasks of run `r1` (its executor died, and the run's own checkpoint was lost)
/// took a new `run` under `r1`, whose step then waited behind the dead run's task,
/// holding the only slot, forever. `run` refuses the id, naming it and the tasks and
/// pointing to `resume`, and changes nothing; `resume` of a fresh start cleans up.
#[test]
fn a_new_run_under_an_id_the_coordinator_still_holds_tasks_for_is_refused() {
    let (refused, owned, unchanged, resumed, idle) = within_a_minute(|| {
        let w = world(&[(1, &["ops"], 1)]);
        // What a dead executor left: one task running, one waiting behind it.
        let (running, waiting) = (TaskId::new(1 << 40), TaskId::new((1 << 40) + 1));
        for id in [running, waiting] {
            w.coordinator
                .assign_in_group("r1", Task::new(id, "a", "a"))
                .unwrap();
        }
        let snapshot = serde_json::to_string(&w.coordinator.snapshot()).unwrap();
        let restored = Arc::new(
            Coordinator::builder()
                .clock(w.clock.clone())
                .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
                .restore(serde_json::from_str(&snapshot).unwrap())
                .unwrap(),
        );
        let w = World {
            clock: w.clock,
            coordinator: restored,
        };
        let before = serde_json::to_value(w.coordinator.snapshot()).unwrap();
        let e = Arc::new(executor(&w, vec![Arc::new(Scripted::new(1))]));
        let wf = Workflow::builder("w")
            .step(StepSpec::new("a").with_role(role("ops")))
            .build()
            .unwrap();
        let refused = block_on(e.run(&wf, "r1", 1));
        let owned = block_on(Arc::clone(&e).run_owned(&wf, "r1", 1));
        let unchanged = serde_json::to_value(w.coordinator.snapshot()).unwrap() == before;
        // The id is not held by the refusals: resuming a fresh start of the run
        // gives the tasks back and runs it.
        let resumed =
            block_on(e.resume(wf.start_run("r1", 1, w.coordinator.now()))).map(|r| r.outcome());
        let idle = w.coordinator.assignments().is_empty() && w.coordinator.waiting_count() == 0;
        (
            refused.map(|r| r.outcome()),
            owned.map(|r| r.outcome()),
            unchanged,
            resumed,
            idle,
        )
    });
    let tasks = vec![TaskId::new(1 << 40), TaskId::new((1 << 40) + 1)];
    for result in [refused, owned] {
        match result {
            Err(ExecutorError::UnfinishedRun { run, tasks: held }) => {
                assert_eq!((run.as_str(), &held), ("r1", &tasks));
                let message = ExecutorError::UnfinishedRun { run, tasks: held }.to_string();
                for word in ["\"r1\"", "2 tasks", "task#1099511627776", "resume"] {
                    assert!(message.contains(word), "{message}");
                }
            }
            other => panic!("expected UnfinishedRun, got {other:?}"),
        }
    }
    assert!(unchanged, "a refused run changed the coordinator");
    assert_eq!(resumed.unwrap(), Some(RunOutcome::Succeeded));
    assert!(idle);
}

/// Two executors over one coordinator, one run id: the coordinator keeps one mailbox
/// per id, so the second run took the first one's notices, and when the second
/// future was dropped it unwatched the id under the first: both hung. The second
/// executor must refuse the id while it is live on the coordinator.
#[test]
fn a_live_id_is_refused_by_a_second_executor_over_the_same_coordinator() {
    let (first, second, again) = within_a_minute(|| {
        let w = world(&[(1, &["ops"], 1)]);
        let a = Arc::new(executor(&w, vec![Arc::new(Scripted::new(1))]));
        let b = Arc::new(executor(&w, vec![Arc::new(Scripted::new(1))]));
        let wf = fan_in();
        let first = Arc::clone(&a).run_owned(&wf, "same", 1);
        let second = Arc::clone(&b).run_owned(&wf, "same", 2);
        let (first, second) = block_on(futures::future::join(first, second));
        // Free again on both once the run has ended.
        let again = block_on(b.run(&wf, "same", 3)).map(|r| r.outcome());
        (first, second, again)
    });
    assert_eq!(first.unwrap().outcome(), Some(RunOutcome::Succeeded));
    refused_as_live(second, "same");
    assert_eq!(again.unwrap(), Some(RunOutcome::Succeeded));
}

/// A host that makes one executor per run over one shared coordinator: each
/// executor started its task ids at the same place, so the second run's first step
/// was refused as a duplicate of the first run's (or, once that one had finished,
/// took the id of a different, finished task). Executors over one coordinator draw
/// their task ids from one sequence.
#[test]
fn executors_over_one_coordinator_never_issue_the_same_task_id() {
    let (outcomes, started) = within_a_minute(|| {
        let w = world(&[(1, &["ops"], 2), (2, &["ops"], 2)]);
        let agents: Vec<Arc<dyn Agent>> =
            vec![Arc::new(Scripted::new(1)), Arc::new(Scripted::new(2))];
        let executors: Vec<_> = (0..3)
            .map(|_| Arc::new(executor(&w, agents.clone())))
            .collect();
        let wf = fan_in();
        let runs: Vec<_> = executors
            .iter()
            .enumerate()
            .map(|(i, e)| Arc::clone(e).run_owned(&wf, &format!("run-{i}"), i as u64))
            .collect();
        let outcomes = block_on(futures::future::join_all(runs));
        // And an executor made after they ran goes on past them.
        let late = executor(&w, agents);
        let last = block_on(late.run(&wf, "late", 9));
        let started: Vec<_> = w
            .coordinator
            .drain_events()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::TaskAssigned { assignment } => Some(assignment.task.id()),
                _ => None,
            })
            .collect();
        (
            outcomes.into_iter().chain([last]).collect::<Vec<_>>(),
            started,
        )
    });
    for outcome in outcomes {
        assert_eq!(outcome.unwrap().outcome(), Some(RunOutcome::Succeeded));
    }
    let distinct: std::collections::BTreeSet<_> = started.iter().collect();
    assert_eq!(started.len(), 4 * 3);
    assert_eq!(
        distinct.len(),
        started.len(),
        "ids issued twice: {started:?}"
    );
}

#[test]
fn distinct_live_ids_all_finish_on_one_slot() {
    let outcomes = within_a_minute(|| {
        let w = world(&[(1, &["ops"], 1)]);
        let e = executor(&w, vec![Arc::new(Scripted::new(1))]);
        let wf = fan_in();
        let runs: Vec<_> = (0..4).map(|i| e.run(&wf, &format!("r{i}"), i)).collect();
        block_on(futures::future::join_all(runs))
            .into_iter()
            .map(|r| r.unwrap().outcome())
            .collect::<Vec<_>>()
    });
    assert_eq!(outcomes, [Some(RunOutcome::Succeeded); 4]);
}

#[test]
fn a_run_id_is_free_again_however_its_run_ended() {
    let w = world(&[(1, &["ops"], 2)]);
    let wf = Workflow::builder("one")
        .step(StepSpec::new("work").with_role(role("ops")))
        .build()
        .unwrap();
    let hangs = Workflow::builder("hangs")
        .step(StepSpec::new("hang").with_role(role("ops")))
        .build()
        .unwrap();
    let agent = Arc::new(
        Scripted::new(1)
            .on("work", 1, Act::Fail)
            .on("hang", 1, Act::Hang),
    );
    let e = executor(&w, vec![]).with_agent(agent);
    // Failed.
    let failed = block_on(e.run(&wf, "id", 1)).unwrap();
    assert_eq!(failed.outcome(), Some(RunOutcome::Failed));
    // Cancelled.
    let cancelled = e.run(&wf, "id", 2);
    cancelled.handle().cancel();
    assert_eq!(
        block_on(cancelled).unwrap().outcome(),
        Some(RunOutcome::Cancelled)
    );
    // Dropped before it was ever polled.
    drop(e.run(&wf, "id", 3));
    // Dropped mid-run: its agent was at work on the step, and has its slot back.
    let mut dropped = e.run(&hangs, "id", 4);
    assert!(futures::FutureExt::now_or_never(&mut dropped).is_none());
    assert_eq!(w.coordinator.assignments().len(), 1);
    drop(dropped);
    assert!(w.coordinator.assignments().is_empty());
    // Succeeded, and then free for the next run.
    let ok = Workflow::builder("ok")
        .step(StepSpec::new("fine").with_role(role("ops")))
        .build()
        .unwrap();
    let done = block_on(e.run(&ok, "id", 5)).unwrap();
    assert_eq!(done.outcome(), Some(RunOutcome::Succeeded));
    let again = block_on(e.run(&ok, "id", 6)).unwrap();
    assert_eq!(again.outcome(), Some(RunOutcome::Succeeded));
}

/// A run whose future is dropped mid-run (a host's timeout around it, a `select!`)
/// gives back what the coordinator holds for it: the task its agent was at, and the
/// task waiting behind it, which would otherwise have been assigned later to an
/// agent nobody sends it to. The fleet's one slot then serves the next run. The
/// dropped run can still be resumed, as after a crash.
#[test]
fn a_run_whose_future_is_dropped_gives_back_its_tasks() {
    let w = world(&[(1, &["ops"], 1)]);
    let agent = Arc::new(Scripted::new(1).on("a", 1, Act::Hang));
    let saved: Arc<Mutex<Option<concord::workflow::RunSnapshot>>> = Arc::default();
    let sink = Arc::clone(&saved);
    let e = executor(&w, vec![agent]).with_observer(
        move |run: &Run, _: &[concord::workflow::RunEvent]| *sink.lock() = Some(run.snapshot()),
    );
    let wf = fan_in();
    let mut given_up = e.run(&wf, "given-up", 1);
    assert!(futures::FutureExt::now_or_never(&mut given_up).is_none());
    assert_eq!(w.coordinator.assignments().len(), 1, "a runs");
    assert_eq!(w.coordinator.waiting().len(), 1, "b waits");
    drop(given_up);
    assert!(w.coordinator.assignments().is_empty());
    assert!(w.coordinator.waiting().is_empty());
    let ok = Workflow::builder("ok")
        .step(StepSpec::new("fine").with_role(role("ops")))
        .build()
        .unwrap();
    let next = within_a_minute({
        let e = Arc::new(executor(&w, vec![Arc::new(Scripted::new(1))]));
        move || block_on(e.run(&ok, "next", 2)).map(|r| r.outcome())
    });
    assert_eq!(next.unwrap(), Some(RunOutcome::Succeeded));
    // Resumed, the run asks its agent about `a` and finishes.
    let run = Run::restore(&wf, saved.lock().clone().unwrap()).unwrap();
    let e = executor(&w, vec![Arc::new(Scripted::new(1))]);
    let resumed = within_a_minute(move || block_on(e.resume(run)).map(|r| r.outcome()));
    assert_eq!(resumed.unwrap(), Some(RunOutcome::Succeeded));
    assert!(w.coordinator.assignments().is_empty());
}

/// Found by the simulation (workflow seed 1002759): an agent leaving service handed
/// its task back to the coordinator's queue, and the run was cancelled before it
/// heard of it. The cancel released the task as running, which it no longer was, so
/// the task stayed queued for a run nobody drove, started on the next agent with
/// room and held its slot for good. It is withdrawn now. A run's tasks are handed
/// back at once only when their agent is deregistered (an agent that only leaves
/// service interrupts them, below).
#[test]
fn a_run_cancelled_before_it_hears_its_task_was_handed_back_leaves_nothing_queued() {
    let w = world(&[(1, &["ops"], 1), (2, &["ops"], 1)]);
    let e = executor(&w, vec![Arc::new(Scripted::new(1).on("a", 1, Act::Hang))]);
    let wf = Workflow::builder("one")
        .step(StepSpec::new("a").with_role(role("ops")))
        .build()
        .unwrap();
    // Agent 2 busy with outside work, so the handed-back task waits.
    let outside = Task::new(TaskId::new(1), "outside", "outside work")
        .with_requirements(Requirements::new().with_role(role("ops")));
    w.coordinator
        .set_agent_status(AgentId::new(2), concord::AgentStatus::Offline)
        .unwrap();
    let mut run = e.run(&wf, "handed-back", 1);
    assert!(futures::FutureExt::now_or_never(&mut run).is_none());
    assert_eq!(w.coordinator.assignments().len(), 1);
    w.coordinator
        .set_agent_status(AgentId::new(2), concord::AgentStatus::Available)
        .unwrap();
    assert!(
        w.coordinator
            .assign(outside)
            .unwrap()
            .assignment()
            .is_some()
    );
    w.coordinator.deregister_agent(AgentId::new(1)).unwrap();
    assert_eq!(w.coordinator.waiting().len(), 1, "handed back to the queue");
    run.handle().cancel();
    let run = block_on(run).unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Cancelled));
    assert!(w.coordinator.waiting().is_empty());
    w.coordinator.complete(TaskId::new(1), true, None).unwrap();
    w.coordinator.tick();
    assert!(w.coordinator.assignments().is_empty());
}

/// The same scene with the agent only going offline: the run's task is interrupted,
/// not handed back, and keeps the agent's one slot, so the agent back at once is
/// busy and takes nothing else while the hung attempt lives. The cancel ends it.
#[test]
fn a_run_cancelled_while_its_task_is_interrupted_leaves_nothing_held() {
    let w = world(&[(1, &["ops"], 1)]);
    let e = executor(&w, vec![Arc::new(Scripted::new(1).on("a", 1, Act::Hang))]);
    let wf = Workflow::builder("one")
        .step(StepSpec::new("a").with_role(role("ops")))
        .build()
        .unwrap();
    let mut run = e.run(&wf, "interrupted", 1);
    assert!(futures::FutureExt::now_or_never(&mut run).is_none());
    let one = AgentId::new(1);
    w.coordinator
        .set_agent_status(one, concord::AgentStatus::Offline)
        .unwrap();
    w.coordinator
        .set_agent_status(one, concord::AgentStatus::Available)
        .unwrap();
    assert_eq!(w.coordinator.assignments().len(), 1, "still its agent's");
    let status = w
        .coordinator
        .with_core(|c| c.registry().status(one).unwrap());
    assert_eq!(status, concord::AgentStatus::Busy, "busy from its slot");
    let outside = Task::new(TaskId::new(1), "outside", "outside work")
        .with_requirements(Requirements::new().with_role(role("ops")));
    assert!(
        w.coordinator
            .assign(outside)
            .unwrap()
            .assignment()
            .is_none(),
        "no room"
    );
    run.handle().cancel();
    let run = block_on(run).unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Cancelled));
    // The outside task got the slot the cancel freed; nothing of the run is left.
    let running = w.coordinator.assignments();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].task.id(), TaskId::new(1));
    assert!(w.coordinator.waiting().is_empty());
}

/// Counts its attempts by run and step, as [`Counting`]; holds its first attempt
/// until the test opens the gate, so that the run is surely live meanwhile.
#[derive(Debug)]
struct Gated {
    runs: Arc<Mutex<BTreeMap<String, u32>>>,
    gate: Mutex<Option<futures::channel::oneshot::Receiver<()>>>,
}

#[async_trait::async_trait]
impl Agent for Gated {
    fn id(&self) -> AgentId {
        AgentId::new(1)
    }
    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        *self.runs.lock().entry(step_key(&work)).or_default() += 1;
        let gate = self.gate.lock().take();
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        Ok(WorkOutput::success())
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("gated"))
    }
}

#[test]
fn resuming_a_live_run_is_refused_and_the_run_goes_on_unharmed() {
    let w = world(&[(1, &["ops"], 1)]);
    let runs = Arc::new(Mutex::new(BTreeMap::new()));
    let (open, gate) = futures::channel::oneshot::channel();
    let agent = Gated {
        runs: Arc::clone(&runs),
        gate: Mutex::new(Some(gate)),
    };
    let e = Arc::new(executor(&w, vec![Arc::new(agent)]));
    let wf = five_steps();
    let mut live = e.run(&wf, "live", 1);
    // Under way: its first step is with the agent, behind the gate.
    assert!(futures::FutureExt::now_or_never(&mut live).is_none());
    assert_eq!(runs.lock().get("live/s0"), Some(&1));
    let held = w.coordinator.assignments().len();
    // The same run, as a host would restore it from a snapshot taken at its start.
    refused_as_live(
        block_on(e.resume(wf.start_run("live", 2, w.clock.now_ts()))),
        "live",
    );
    refused_as_live(
        block_on(Arc::clone(&e).resume_owned(wf.start_run("live", 3, w.clock.now_ts()))),
        "live",
    );
    refused_as_live(block_on(e.run(&wf, "live", 4)), "live");
    refused_as_live(block_on(Arc::clone(&e).run_owned(&wf, "live", 5)), "live");
    // Nothing changed in the coordinator.
    assert_eq!(w.coordinator.assignments().len(), held);
    assert_eq!(w.coordinator.waiting_count(), 0);
    open.send(()).unwrap();
    let run = block_on(live).unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    // Every step ran exactly once.
    let counts = runs.lock().clone();
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[test]
fn an_empty_run_id_is_refused_before_anything_starts() {
    let w = world(&[(1, &["ops"], 1)]);
    let e = Arc::new(executor(&w, vec![Arc::new(Scripted::new(1))]));
    let wf = fan_in();
    let _ = w.coordinator.drain_events();
    for id in ["", "  ", "\t\n"] {
        let empty = |r: Result<Run, ExecutorError>| match r {
            Err(ExecutorError::Workflow(WorkflowError::EmptyRunId { run })) => {
                assert_eq!(run, id)
            }
            other => panic!("expected EmptyRunId for {id:?}, got {other:?}"),
        };
        empty(block_on(e.run(&wf, id, 1)));
        empty(block_on(Arc::clone(&e).run_owned(&wf, id, 1)));
        empty(block_on(e.resume(wf.start_run(id, 1, w.clock.now_ts()))));
        empty(block_on(Arc::clone(&e).resume_owned(wf.start_run(
            id,
            1,
            w.clock.now_ts(),
        ))));
    }
    assert!(w.coordinator.assignments().is_empty());
    assert_eq!(w.coordinator.waiting_count(), 0);
    assert!(w.coordinator.drain_events().is_empty());
}

#[test]
fn a_run_id_too_long_or_with_a_control_character_is_refused_before_anything_starts() {
    let w = world(&[(1, &["ops"], 1)]);
    let e = Arc::new(executor(&w, vec![Arc::new(Scripted::new(1))]));
    let wf = fan_in();
    let _ = w.coordinator.drain_events();
    let long = "r".repeat(concord::id::MAX_LABEL_LEN + 1);
    for id in [long.as_str(), "run\n1", "run\u{7}", "run\u{85}"] {
        let refused = |r: Result<Run, ExecutorError>| match r {
            Err(ExecutorError::Workflow(WorkflowError::InvalidText { step: None, source })) => {
                assert!(
                    matches!(
                        source,
                        NameError::TooLong { kind: "run id", .. }
                            | NameError::ControlChar { kind: "run id", .. }
                    ),
                    "{source:?}"
                )
            }
            other => panic!("expected InvalidText for {id:?}, got {other:?}"),
        };
        refused(block_on(e.run(&wf, id, 1)));
        refused(block_on(Arc::clone(&e).run_owned(&wf, id, 1)));
        refused(block_on(e.resume(wf.start_run(id, 1, w.clock.now_ts()))));
    }
    // At the limit, and outside ASCII, an id is fine.
    let longest = "r".repeat(concord::id::MAX_LABEL_LEN);
    for id in [longest.as_str(), "déploiement-1", "run 1"] {
        let run = block_on(e.run(&wf, id, 1)).unwrap();
        assert_eq!(run.outcome(), Some(RunOutcome::Succeeded), "{id}");
    }
}

#[test]
fn a_resumed_run_can_be_spawned_with_its_handle() {
    let w = world(&[(1, &["ops"], 1)]);
    let runs = Arc::new(Mutex::new(BTreeMap::new()));
    let e = Arc::new(executor(&w, vec![Arc::new(Counting::new(&runs))]));
    let wf = five_steps();
    let snapshot = wf.start_run("restored", 7, w.clock.now_ts()).snapshot();
    let run = Run::restore(&wf, snapshot).unwrap();
    let resumed = Arc::clone(&e).resume_owned(run);
    let handle = resumed.handle();
    let run = std::thread::spawn(move || block_on(resumed))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    let progress = handle.progress();
    assert_eq!(progress.outcome, Some(RunOutcome::Succeeded));
    assert_eq!((progress.finished, progress.steps), (5, 5));
    assert_eq!(runs.lock().get("restored/s4"), Some(&1));
    // And a resumed run is cancelled through its handle like any other.
    let snapshot = wf.start_run("restored", 8, w.clock.now_ts()).snapshot();
    let resumed = Arc::clone(&e).resume_owned(Run::restore(&wf, snapshot).unwrap());
    resumed.handle().cancel();
    assert_eq!(
        block_on(resumed).unwrap().outcome(),
        Some(RunOutcome::Cancelled)
    );
}

#[test]
fn progress_counts_the_steps_backing_off() {
    let w = world(&[(1, &["ops"], 1)]);
    let wf =
        Workflow::builder("retry")
            .step(StepSpec::new("deploy").with_role(role("ops")).with_retry(
                RetryPolicy::exponential(3).with_initial_backoff(Duration::from_secs(30)),
            ))
            .build()
            .unwrap();
    let agent = Scripted::new(1).on("deploy", 1, Act::Fail);
    let e = executor(&w, vec![Arc::new(agent)]);
    let running = e.run(&wf, "r", 9);
    let handle = running.handle();
    // Looks at the handle on every turn while the run waits out its back-off (the
    // simulated timer lets other parties take turns before it moves the clock).
    let watch = async {
        let mut seen = Vec::new();
        loop {
            let p = handle.progress();
            if seen.last() != Some(&p.backing_off) {
                seen.push(p.backing_off);
            }
            if p.outcome.is_some() {
                return seen;
            }
            YieldNow(false).await;
        }
    };
    let (run, seen) = block_on(futures::future::join(running, watch));
    assert_eq!(run.unwrap().outcome(), Some(RunOutcome::Succeeded));
    // Seen backing off while it waited (the first report may already be one), and
    // not once it had finished.
    assert_eq!(seen[seen.len() - 2..], [1, 0], "{seen:?}");
}

/// Agent 2: brings agent 1 back into service when it is done.
#[derive(Debug)]
struct Reviver(Arc<Coordinator>);

#[async_trait::async_trait]
impl Agent for Reviver {
    fn id(&self) -> AgentId {
        AgentId::new(2)
    }
    async fn execute(&self, _: WorkItem) -> Result<WorkOutput, AgentError> {
        let back = self
            .0
            .set_agent_status(AgentId::new(1), concord::agent::AgentStatus::Available);
        assert!(back.is_ok(), "{back:?}");
        Ok(WorkOutput::success())
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("reviver"))
    }
}

#[test]
fn a_reused_run_id_starts_with_no_duties_of_the_run_before() {
    // Two agents that can each deploy and verify; the policy keeps the deployer
    // from verifying within a run. The first run: 1 deploys, 2 verifies. The
    // second, under the same id, while 1 is out: 2 deploys and brings 1 back, and
    // 1 must be free to verify: the first run's duties are not the second's.
    let (first, second) = within_a_minute(|| {
        let w = world(&[(1, &["ops", "qa"], 1), (2, &["ops", "qa"], 1)]);
        let wf = Workflow::builder("sod")
            .step(StepSpec::new("deploy").with_role(role("ops")))
            .step(
                StepSpec::new("verify")
                    .with_role(role("qa"))
                    .after("deploy"),
            )
            .build()
            .unwrap();
        let e = executor(
            &w,
            vec![
                Arc::new(Scripted::new(1)),
                Arc::new(Reviver(Arc::clone(&w.coordinator))),
            ],
        );
        let first = block_on(e.run(&wf, "deploy-api", 1)).unwrap();
        w.coordinator
            .set_agent_status(AgentId::new(1), concord::agent::AgentStatus::Offline)
            .unwrap();
        let second = block_on(e.run(&wf, "deploy-api", 2)).unwrap();
        let who = |r: &Run| (r.outcome(), r.agent("deploy"), r.agent("verify"));
        (
            who(&first),
            (
                who(&second),
                second
                    .history()
                    .iter()
                    .map(|e| e.change.to_string())
                    .collect::<Vec<_>>(),
            ),
        )
    });
    let ok = Some(RunOutcome::Succeeded);
    assert_eq!(first, (ok, Some(AgentId::new(1)), Some(AgentId::new(2))));
    assert_eq!(
        second.0,
        (ok, Some(AgentId::new(2)), Some(AgentId::new(1))),
        "{:?}",
        second.1
    );
}

/// A spawner that keeps what it is handed until the test turns it: a runtime that has
/// not polled a spawned task yet (its worker threads busy elsewhere), made explicit.
#[derive(Default, Clone)]
pub(crate) struct Deferred(Arc<Mutex<Vec<futures::future::BoxFuture<'static, ()>>>>);

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Deferred({} spawned)", self.len())
    }
}

impl concord::workflow::Spawn for Deferred {
    fn spawn(&self, work: futures::future::BoxFuture<'static, ()>) {
        self.0.lock().push(work);
    }
}

impl Deferred {
    /// Polls each spawned future once, dropping those that end.
    pub(crate) fn turn(&self) {
        let mut work = std::mem::take(&mut *self.0.lock());
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        work.retain_mut(|w| w.as_mut().poll(&mut cx).is_pending());
        self.0.lock().extend(work);
    }

    fn len(&self) -> usize {
        self.0.lock().len()
    }
}

/// An agent whose work never ends, counting the works alive (begun and not yet
/// dropped) and the most at once.
#[derive(Debug)]
struct Endless {
    id: AgentId,
    alive: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Endless {
    /// Agent `id`, counting into `alive` and `peak`.
    fn new(id: u64, alive: &Arc<AtomicUsize>, peak: &Arc<AtomicUsize>) -> Self {
        Endless {
            id: AgentId::new(id),
            alive: Arc::clone(alive),
            peak: Arc::clone(peak),
        }
    }
}

struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Agent for Endless {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, _: WorkItem) -> Result<WorkOutput, AgentError> {
        let now = self.alive.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let _alive = Alive(Arc::clone(&self.alive));
        futures::future::pending().await
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("test"))
    }
}

/// Polls `run` once.
pub(crate) fn poll_once(run: &mut concord::workflow::RunFuture<'static>) -> Option<Run> {
    let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
    match std::pin::Pin::new(run).poll(&mut cx) {
        std::task::Poll::Ready(done) => Some(done.unwrap()),
        std::task::Poll::Pending => None,
    }
}

/// Run `a` holds the one slot of agent#1 with work spawned on a runtime that has not
/// polled it since `a` let go of it (cancelled, or timed out); run `b` waits for the
/// slot. Checks that `b` gets the slot only once `a`'s work has been dropped, then
/// cancels `b`.
fn slot_held_until_spawned_work_stops(step: StepSpec, let_go: impl FnOnce(&World, &RunHandle)) {
    let w = world(&[(1, &["ops"], 1)]);
    let (alive, peak) = (Arc::default(), Arc::default());
    let agent = Endless::new(1, &alive, &peak);
    let spawner = Deferred::default();
    let ex = Arc::new(executor(&w, vec![Arc::new(agent)]).with_spawner(spawner.clone()));
    let wf = Workflow::builder("one").step(step).build().unwrap();
    let mut a = Arc::clone(&ex).run_owned(&wf, "a", 1);
    let mut b = Arc::clone(&ex).run_owned(&wf, "b", 2);
    let a_handle = a.handle();
    assert!(poll_once(&mut a).is_none());
    spawner.turn();
    assert_eq!(alive.load(Ordering::SeqCst), 1, "a's work has begun");
    assert!(poll_once(&mut b).is_none());
    let_go(&w, &a_handle);
    // `a` lets go; its spawned work stops only when the runtime polls it next.
    assert!(
        poll_once(&mut a).is_none(),
        "a waits for its agent to let go"
    );
    assert!(poll_once(&mut b).is_none());
    assert_eq!(
        (w.coordinator.assignments().len(), spawner.len()),
        (1, 1),
        "the slot went to b while a's work was alive"
    );
    spawner.turn();
    assert_eq!(alive.load(Ordering::SeqCst), 0, "a's work is dropped");
    let a = poll_once(&mut a).expect("a ends once its agent let go");
    assert!(matches!(
        a.outcome(),
        Some(RunOutcome::Cancelled | RunOutcome::Failed)
    ));
    assert!(poll_once(&mut b).is_none());
    spawner.turn();
    assert_eq!(alive.load(Ordering::SeqCst), 1, "b's work has begun");
    assert_eq!(
        peak.load(Ordering::SeqCst),
        1,
        "never two works on one slot"
    );
    let b_handle = b.handle();
    b_handle.cancel();
    assert!(poll_once(&mut b).is_none());
    spawner.turn();
    let b = poll_once(&mut b).expect("b ends once its agent let go");
    assert_eq!(b.outcome(), Some(RunOutcome::Cancelled));
    assert!(w.coordinator.assignments().is_empty());
}

#[test]
fn a_cancelled_run_keeps_its_slot_until_its_spawned_work_stops() {
    slot_held_until_spawned_work_stops(StepSpec::new("s").with_role(role("ops")), |_, a| {
        a.cancel()
    });
}

#[test]
fn a_timed_out_attempt_keeps_its_slot_until_its_spawned_work_stops() {
    slot_held_until_spawned_work_stops(
        StepSpec::new("s")
            .with_role(role("ops"))
            .with_timeout(Duration::from_secs(30)),
        |w, _| w.clock.advance(Duration::from_secs(31)),
    );
}

/// A run whose step was handed back (its agent went offline) and started again on
/// another agent, while the first attempt's spawned work has not stopped: the new
/// attempt waits for it, and cancelling the run then releases the new task too.
#[test]
fn a_cancel_while_a_handed_back_step_waits_for_its_old_attempt_releases_both() {
    let w = world(&[(1, &["ops"], 1), (2, &["ops"], 1)]);
    let (alive, peak) = (Arc::default(), Arc::default());
    let spawner = Deferred::default();
    let agents: Vec<Arc<dyn Agent>> = vec![
        Arc::new(Endless::new(1, &alive, &peak)),
        Arc::new(Endless::new(2, &alive, &peak)),
    ];
    let ex = Arc::new(executor(&w, agents).with_spawner(spawner.clone()));
    let wf = Workflow::builder("one")
        .step(StepSpec::new("s").with_role(role("ops")))
        .build()
        .unwrap();
    let mut a = Arc::clone(&ex).run_owned(&wf, "a", 1);
    assert!(poll_once(&mut a).is_none());
    spawner.turn();
    assert_eq!(alive.load(Ordering::SeqCst), 1);
    // Agent#1 leaves service: its task is handed back and given to agent#2.
    w.coordinator
        .set_agent_status(AgentId::new(1), concord::agent::AgentStatus::Offline)
        .unwrap();
    assert!(poll_once(&mut a).is_none());
    assert_eq!(
        (spawner.len(), w.coordinator.assignments().len()),
        (1, 1),
        "the new attempt waits for the old one's work to stop"
    );
    a.handle().cancel();
    assert!(
        poll_once(&mut a).is_none(),
        "the old attempt's work lives on"
    );
    spawner.turn();
    let a = poll_once(&mut a).expect("cancelled once the old work stopped");
    assert_eq!(a.outcome(), Some(RunOutcome::Cancelled));
    assert_eq!(peak.load(Ordering::SeqCst), 1, "never two attempts at once");
    assert!(
        w.coordinator.assignments().is_empty(),
        "the task started for the new attempt is released"
    );
}

/// Found by the simulation world: a step's task was started from the queue and, in
/// the same instant, its agent left service (the task handed back and queued
/// again). The executor read both notices in one batch, launched the attempt anyway
/// and cancelled the queued task, so the agent worked on a step the coordinator no
/// longer counted against its slot. The launch must be dropped, the attempt void,
/// and the same task left waiting for the agent's return.
#[test]
fn a_step_started_and_handed_back_at_once_is_never_handed_to_its_agent() {
    let w = world(&[(1, &["ops"], 1)]);
    let runs = Arc::default();
    let ex = Arc::new(executor(&w, vec![Arc::new(Counting::new(&runs))]));
    // A host's own task holds the agent's one slot, so the step queues.
    let held = concord::Task::new(concord::TaskId::new(1), "hold", "the host's own work")
        .with_requirements(concord::Requirements::new().with_role(role("ops")));
    w.coordinator.assign(held).unwrap();
    let wf = Workflow::builder("one")
        .step(StepSpec::new("a").with_role(role("ops")))
        .build()
        .unwrap();
    let mut run = Arc::clone(&ex).run_owned(&wf, "r", 1);
    assert!(poll_once(&mut run).is_none());
    // The slot frees (the queued step starts) and the agent leaves, before the run
    // is polled again.
    w.coordinator
        .complete(concord::TaskId::new(1), true, None)
        .unwrap();
    w.coordinator
        .set_agent_status(AgentId::new(1), concord::AgentStatus::Offline)
        .unwrap();
    assert!(poll_once(&mut run).is_none());
    assert!(runs.lock().is_empty(), "handed to an agent out of service");
    assert_eq!(w.coordinator.waiting().len(), 1, "the step's task waits");
    w.coordinator
        .set_agent_status(AgentId::new(1), concord::AgentStatus::Available)
        .unwrap();
    let run = block_on(run).unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(
        run.attempts("a"),
        Some(1),
        "the void attempt counts for nothing"
    );
    assert_eq!(*runs.lock(), BTreeMap::from([("r/a".to_owned(), 1)]));
}

/// The steps nobody could take, asked before the run: exactly the ones the run then
/// gives up ("no agent can take step"), with the coordinator's reason; agents away
/// count as able, stated resources beyond every agent's capacity do not; nothing in
/// the coordinator changes.
#[test]
fn unstaffed_names_the_steps_the_run_would_give_up() {
    let w = world(&[(1, &["ops"], 1), (2, &["qa"], 1)]);
    let wf = Workflow::builder("release")
        .step(StepSpec::new("build").with_role(role("ops")))
        .step(StepSpec::new("test").with_role(role("qa")).after("build"))
        .step(
            StepSpec::new("audit")
                .with_role(role("security"))
                .after("test"),
        )
        .step(
            StepSpec::new("bake")
                .with_role(role("ops"))
                .with_resources("gpu=1".parse().unwrap()),
        )
        .build()
        .unwrap();
    let e = executor(
        &w,
        vec![Arc::new(Scripted::new(1)), Arc::new(Scripted::new(2))],
    );
    w.coordinator.drain_events();
    let before = serde_json::to_string(&w.coordinator.snapshot()).unwrap();
    let missing = e.unstaffed(&wf).unwrap();
    let steps: Vec<&str> = missing.iter().map(|u| u.step.as_str()).collect();
    assert_eq!(steps, ["audit", "bake"]);
    assert_eq!(
        missing[0].to_string(),
        "no agent can take step `audit`: 0 of 2 agents fit: 2 lack role `security`"
    );
    assert!(missing[1].to_string().contains("gpu"), "{}", missing[1]);
    assert_eq!(
        serde_json::to_string(&w.coordinator.snapshot()).unwrap(),
        before
    );
    assert!(w.coordinator.drain_events().is_empty());

    let run = block_on(e.run(&wf, "r", 1)).unwrap();
    for step in ["audit", "bake"] {
        assert_eq!(run.status(step), Some(StepStatus::Failed), "{step}");
        assert_eq!(
            changes(&run, step).last().map(String::as_str),
            Some("abandoned")
        );
    }
    for step in ["build", "test"] {
        assert_eq!(run.status(step), Some(StepStatus::Succeeded), "{step}");
    }

    // An agent away from service could take its steps when it comes back.
    w.coordinator
        .set_agent_status(AgentId::new(2), concord::AgentStatus::Offline)
        .unwrap();
    let steps: Vec<String> = e
        .unstaffed(&wf)
        .unwrap()
        .into_iter()
        .map(|u| u.step)
        .collect();
    assert_eq!(steps, ["audit", "bake"]);
}

/// The analyzer reads a step that states no role, as the run would: `deploy` needs
/// an `ops` agent able to deploy, with room for what the rule asks, by the default rules,
/// and the reason names the rule.
#[test]
fn unstaffed_reads_a_step_through_the_analyzer() {
    let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    let coordinator = Arc::new(Coordinator::builder().clock(clock.clone()).build());
    let qa = AgentProfile::new(AgentId::new(1), "qa-1").with_role(role("qa"));
    coordinator.register_agent(qa).unwrap();
    let wf = Workflow::builder("ship")
        .step(StepSpec::new("deploy"))
        .build()
        .unwrap();
    let e = Executor::new(Arc::clone(&coordinator), SimulatedTimer::new(clock));
    let missing = e.unstaffed(&wf).unwrap();
    assert_eq!(missing.len(), 1);
    let why = missing[0].to_string();
    assert!(
        why.contains("role `ops`") && why.contains("`deploy`"),
        "{why}"
    );
    assert!(!missing[0].explanation.analyzed.is_empty(), "{why}");
    let ops = AgentProfile::new(AgentId::new(2), "ops-1")
        .with_role(role("ops"))
        .with_capability(concord::Capability::new("deploy").unwrap())
        .with_capacity("cpu=16,memory=64Gi".parse().unwrap());
    coordinator.register_agent(ops).unwrap();
    let left = e.unstaffed(&wf).unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// Bad input to the check a host makes itself: refused with the error `assign`
/// gives, and nothing changes.
#[test]
fn unplaceable_refuses_a_task_assign_would_refuse() {
    let w = world(&[(1, &["ops"], 1)]);
    let before = serde_json::to_string(&w.coordinator.snapshot()).unwrap();
    let bad = Task::new(TaskId::new(1), "dep\u{200B}loy", "x");
    let e = w.coordinator.unplaceable(&bad).unwrap_err();
    assert!(
        matches!(
            e,
            concord::coordinator::CoordinatorError::InvalidTaskText { .. }
        ),
        "{e}"
    );
    assert!(w.coordinator.assign(bad).is_err());
    // A claim that names nothing (it would collide with every claim), as assign
    // refuses it.
    let everything = Task::new(TaskId::new(3), "deploy", "x").with_requirements(
        Requirements::new()
            .with_role(role("ops"))
            .with_claim(concord::Claim::exclusive("/")),
    );
    for e in [
        w.coordinator.unplaceable(&everything).unwrap_err(),
        w.coordinator.assign(everything).unwrap_err(),
    ] {
        assert!(
            matches!(
                e,
                concord::coordinator::CoordinatorError::InvalidTaskText { .. }
            ),
            "{e}"
        );
    }
    assert_eq!(
        serde_json::to_string(&w.coordinator.snapshot()).unwrap(),
        before
    );
    let fine = Task::new(TaskId::new(2), "deploy", "x")
        .with_requirements(Requirements::new().with_role(role("ops")));
    assert_eq!(w.coordinator.unplaceable(&fine).unwrap(), None);
}
