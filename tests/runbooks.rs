//! The ready-made runbooks: their documented shape, their serde round trip, and runs
//! to completion over scripted agents (retries, rollback, handlers, safe mode).

use std::collections::BTreeMap;
use std::sync::Arc;

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::coordinator::Coordinator;
use concord::policy::{PolicySet, SafeModeRule};
use concord::workflow::{
    Executor, Run, RunCondition, RunOutcome, SimulatedTimer, StepChange, StepStatus, Workflow,
    runbooks,
};
use concord::{
    AgentId, AgentProfile, ManualClock, Role, RuleBasedAnalyzer, RuleSet, SystemMode, Timestamp,
};
use futures::executor::block_on;
use parking_lot::Mutex;

/// One documented step: name, role, kind, dependencies, condition.
type Shape = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    RunCondition,
);

const ALL: RunCondition = RunCondition::AllSucceeded;
const ANY_FAILED: RunCondition = RunCondition::AnyFailed;

fn shape_of(w: &Workflow) -> Vec<(String, String, String, Vec<String>, RunCondition)> {
    w.steps()
        .map(|(_, s)| {
            (
                s.name().to_owned(),
                s.role().map(|r| r.to_string()).unwrap_or_default(),
                s.kind().to_owned(),
                s.dependencies().to_vec(),
                s.condition(),
            )
        })
        .collect()
}

fn expect(w: &Workflow, shape: &[Shape]) {
    let want: Vec<_> = shape
        .iter()
        .map(|(n, r, k, d, c)| {
            (
                n.to_string(),
                r.to_string(),
                k.to_string(),
                d.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                *c,
            )
        })
        .collect();
    assert_eq!(shape_of(w), want, "{}", w.name());
}

/// Every step comes after its dependencies in the topological order.
fn assert_topological(w: &Workflow) {
    let order = w.topological_order();
    assert_eq!(order.len(), w.len());
    let pos = |s| order.iter().position(|&o| o == s).unwrap();
    for (step, _) in w.steps() {
        for dep in w.dependencies(step) {
            assert!(pos(dep) < pos(step), "{:?} before {:?}", dep, step);
        }
    }
}

fn all_runbooks() -> Vec<Workflow> {
    vec![
        runbooks::deployment(),
        runbooks::safe_mode_recovery(),
        runbooks::memory_corruption_recovery(),
        runbooks::security_breach_response(),
        runbooks::system_update(),
    ]
}

#[test]
fn each_runbook_has_its_documented_steps_roles_and_gates() {
    expect(
        &runbooks::safe_mode_recovery(),
        &[
            ("enter_safe_mode", "ops", "enter_safe_mode", &[], ALL),
            (
                "diagnose_failure",
                "ops",
                "diagnose",
                &["enter_safe_mode"],
                ALL,
            ),
            (
                "restart_agents_incrementally",
                "ops",
                "restart",
                &["diagnose_failure"],
                ALL,
            ),
            (
                "validate_recovery",
                "qa",
                "verify",
                &["restart_agents_incrementally"],
                ALL,
            ),
            (
                "exit_safe_mode",
                "ops",
                "exit_safe_mode",
                &["validate_recovery"],
                ALL,
            ),
            (
                "notify_stakeholders",
                "human",
                "notify",
                &["validate_recovery"],
                ANY_FAILED,
            ),
        ],
    );
    expect(
        &runbooks::memory_corruption_recovery(),
        &[
            ("stop_memory_writes", "ops", "stop_writes", &[], ALL),
            (
                "backup_memory_state",
                "ops",
                "backup",
                &["stop_memory_writes"],
                ALL,
            ),
            (
                "assess_corruption",
                "ops",
                "assess",
                &["backup_memory_state"],
                ALL,
            ),
            (
                "restore_memory_backup",
                "ops",
                "restore",
                &["assess_corruption"],
                ALL,
            ),
            (
                "validate_memory_integrity",
                "ops",
                "verify",
                &["restore_memory_backup"],
                ALL,
            ),
        ],
    );
    expect(
        &runbooks::security_breach_response(),
        &[
            ("isolate_affected_agents", "security", "isolate", &[], ALL),
            (
                "stop_external_comms",
                "security",
                "stop_comms",
                &["isolate_affected_agents"],
                ALL,
            ),
            (
                "collect_evidence",
                "security",
                "evidence",
                &["stop_external_comms"],
                ALL,
            ),
            (
                "run_security_scan",
                "security",
                "security_scan",
                &["collect_evidence"],
                ALL,
            ),
            (
                "apply_security_patches",
                "ops",
                "patch",
                &["run_security_scan"],
                ALL,
            ),
            (
                "notify_security_team",
                "human",
                "notify",
                &["isolate_affected_agents"],
                ALL,
            ),
        ],
    );
    expect(
        &runbooks::system_update(),
        &[
            ("backup_configuration", "ops", "backup", &[], ALL),
            (
                "stop_services",
                "ops",
                "stop_services",
                &["backup_configuration"],
                ALL,
            ),
            ("backup_state", "ops", "backup", &["stop_services"], ALL),
            ("apply_updates", "ops", "deploy", &["backup_state"], ALL),
            (
                "start_services",
                "ops",
                "start_services",
                &["apply_updates"],
                ALL,
            ),
            ("validate_update", "qa", "verify", &["start_services"], ALL),
            (
                "rollback",
                "ops",
                "rollback",
                &["validate_update"],
                ANY_FAILED,
            ),
            (
                "run_health_checks",
                "ops",
                "health_check",
                &["validate_update"],
                ALL,
            ),
            (
                "verify_agents_responsive",
                "ops",
                "agent_check",
                &["validate_update"],
                ALL,
            ),
        ],
    );
}

#[test]
fn the_restart_step_retries_with_backoff() {
    let w = runbooks::safe_mode_recovery();
    let spec = w
        .spec(w.step("restart_agents_incrementally").unwrap())
        .unwrap();
    assert!(spec.retry().max_attempts() >= 3);
    assert!(spec.retry().backoff(1, 0) > std::time::Duration::ZERO);
    assert!(spec.retry().backoff(2, 0) > spec.retry().backoff(1, 0));
}

#[test]
fn each_runbook_is_topologically_ordered() {
    for w in all_runbooks() {
        assert_topological(&w);
    }
}

#[test]
fn each_runbook_round_trips_through_its_definition() {
    for w in all_runbooks() {
        let json = serde_json::to_string(&w.definition()).unwrap();
        let back = Workflow::from_definition(serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(back, w, "{}", w.name());
        assert_eq!(back.definition(), w.definition());
    }
}

/// An agent that fails the (step, attempt) pairs it is told to, answers with the
/// outputs it is given, and records the inputs each step received.
#[derive(Debug)]
struct Scripted {
    id: AgentId,
    fail: Vec<(&'static str, u32)>,
    outputs: BTreeMap<&'static str, Vec<(&'static str, &'static str)>>,
    seen: Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>>,
}

impl Scripted {
    fn new(id: u64, seen: &Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>>) -> Self {
        Scripted {
            id: AgentId::new(id),
            fail: Vec::new(),
            outputs: BTreeMap::new(),
            seen: Arc::clone(seen),
        }
    }

    fn failing(mut self, step: &'static str, attempt: u32) -> Self {
        self.fail.push((step, attempt));
        self
    }

    fn output(mut self, step: &'static str, key: &'static str, value: &'static str) -> Self {
        self.outputs.entry(step).or_default().push((key, value));
        self
    }
}

#[async_trait::async_trait]
impl Agent for Scripted {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        let step = work.description();
        self.seen
            .lock()
            .insert(step.to_owned(), work.inputs().clone());
        if self.fail.contains(&(step, work.attempt())) {
            return Ok(WorkOutput::failure(format!("{step} failed")));
        }
        let mut out = WorkOutput::success().with_output("by", self.id.to_string());
        for (k, v) in self.outputs.get(step).into_iter().flatten() {
            out = out.with_output(*k, *v);
        }
        Ok(out)
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("test"))
    }
}

const OPS: u64 = 1;
const QA: u64 = 2;
const FRAMEWORK: u64 = 3;
const SECURITY: u64 = 4;
const HUMAN: u64 = 5;

type Seen = Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>>;

struct World {
    clock: ManualClock,
    coordinator: Arc<Coordinator>,
    seen: Seen,
}

fn world_with(policies: PolicySet) -> World {
    let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    let coordinator = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
            .policies(policies)
            .build(),
    );
    for (id, role) in [
        (OPS, "ops"),
        (QA, "qa"),
        (FRAMEWORK, "framework"),
        (SECURITY, "security"),
        (HUMAN, "human"),
    ] {
        let profile = AgentProfile::new(AgentId::new(id), role)
            .with_role(Role::new(role).unwrap())
            .with_max_tasks(4);
        coordinator.register_agent(profile).unwrap();
    }
    World {
        clock,
        coordinator,
        seen: Arc::default(),
    }
}

fn world() -> World {
    world_with(PolicySet::default())
}

/// Runs `w` with the default scripted agents, `ops` and `qa` replaced as given.
fn run(world: &World, w: &Workflow, ops: Scripted, qa: Scripted) -> Run {
    run_with(world, w, ops, qa, |e| e)
}

fn run_with(
    world: &World,
    w: &Workflow,
    ops: Scripted,
    qa: Scripted,
    tune: impl FnOnce(Executor) -> Executor,
) -> Run {
    let mut executor = Executor::new(
        Arc::clone(&world.coordinator),
        SimulatedTimer::new(world.clock.clone()),
    )
    .with_agent(Arc::new(ops))
    .with_agent(Arc::new(qa));
    for id in [FRAMEWORK, SECURITY, HUMAN] {
        executor = executor.with_agent(Arc::new(Scripted::new(id, &world.seen)));
    }
    block_on(tune(executor).run(w, "run-1", 7)).unwrap()
}

fn changes(run: &Run, step: &str) -> Vec<&'static str> {
    run.history()
        .iter()
        .filter(|e| run.name(e.step) == Some(step))
        .map(|e| match &e.change {
            StepChange::Ready => "ready",
            StepChange::Started => "started",
            StepChange::Succeeded { .. } => "succeeded",
            StepChange::AttemptFailed {
                retry_at: Some(_), ..
            } => "failed+retry",
            StepChange::AttemptFailed { .. } => "failed",
            StepChange::Skipped { .. } => "skipped",
            _ => "other",
        })
        .collect()
}

#[test]
fn safe_mode_recovery_retries_the_restart_and_recovers() {
    let w = world();
    let wf = runbooks::safe_mode_recovery();
    let ops = Scripted::new(OPS, &w.seen)
        .failing("restart_agents_incrementally", 1)
        .output("diagnose_failure", "cause", "oom in the memory service")
        .output("restart_agents_incrementally", "restarted", "7/7");
    let start = concord::Clock::now(&w.clock);
    let run = run(&w, &wf, ops, Scripted::new(QA, &w.seen));

    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(
        changes(&run, "restart_agents_incrementally"),
        [
            "ready",
            "started",
            "failed+retry",
            "ready",
            "started",
            "succeeded"
        ]
    );
    assert_eq!(run.attempts("restart_agents_incrementally"), Some(2));
    assert_eq!(run.status("exit_safe_mode"), Some(StepStatus::Succeeded));
    assert_eq!(run.status("notify_stakeholders"), Some(StepStatus::Skipped));
    assert_eq!(run.agent("validate_recovery"), Some(AgentId::new(QA)));
    // The retry waited out its back-off on the simulated clock.
    assert!(
        concord::Clock::now(&w.clock).duration_since(start) >= std::time::Duration::from_secs(10)
    );
    let seen = w.seen.lock();
    assert_eq!(
        seen["restart_agents_incrementally"]["cause"],
        "oom in the memory service"
    );
    assert_eq!(seen["validate_recovery"]["restarted"], "7/7");
    assert!(w.coordinator.assignments().is_empty());
}

#[test]
fn safe_mode_recovery_notifies_stakeholders_when_the_restart_never_works() {
    let w = world();
    let wf = runbooks::safe_mode_recovery();
    let mut ops = Scripted::new(OPS, &w.seen);
    for attempt in 1..=4 {
        ops = ops.failing("restart_agents_incrementally", attempt);
    }
    let run = run(&w, &wf, ops, Scripted::new(QA, &w.seen));
    assert_eq!(
        run.status("restart_agents_incrementally"),
        Some(StepStatus::Failed)
    );
    assert_eq!(run.status("validate_recovery"), Some(StepStatus::Skipped));
    assert_eq!(run.status("exit_safe_mode"), Some(StepStatus::Skipped));
    assert_eq!(
        run.status("notify_stakeholders"),
        Some(StepStatus::Succeeded)
    );
    assert_eq!(run.agent("notify_stakeholders"), Some(AgentId::new(HUMAN)));
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
}

#[test]
fn safe_mode_recovery_runs_out_of_normal_mode_when_its_duties_are_allowed() {
    let wf = runbooks::safe_mode_recovery();
    let mut allow = SafeModeRule::default();
    for (_, spec) in wf.steps() {
        allow = allow.with_allowed(spec.kind());
    }
    let w = world_with(PolicySet::default().with_rule(allow).unwrap());
    w.coordinator.set_mode(SystemMode::Recovery);
    let run = run(
        &w,
        &wf,
        Scripted::new(OPS, &w.seen),
        Scripted::new(QA, &w.seen),
    );
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
}

#[test]
fn default_policies_refuse_the_recovery_in_safe_mode() {
    // Guards the reason the example allows the recovery duties: the default safe-mode
    // rule admits nothing, so the recovery's first step waits for normal mode (here
    // past the host's patience).
    let w = world();
    w.coordinator.set_mode(SystemMode::SafeMode);
    let wf = runbooks::safe_mode_recovery();
    let run = run_with(
        &w,
        &wf,
        Scripted::new(OPS, &w.seen),
        Scripted::new(QA, &w.seen),
        |e| e.with_patience(std::time::Duration::from_secs(3600)),
    );
    assert_eq!(run.status("enter_safe_mode"), Some(StepStatus::Failed));
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
    let why = run
        .history()
        .iter()
        .find_map(|e| match &e.change {
            StepChange::Abandoned { reason } => Some(reason.clone()),
            _ => None,
        })
        .unwrap();
    assert!(why.contains("for normal mode"), "{why}");
}

#[test]
fn system_update_rolls_back_when_validation_fails() {
    let w = world();
    let wf = runbooks::system_update();
    let ops = Scripted::new(OPS, &w.seen)
        .output("backup_configuration", "backup", "cfg-0001")
        .output("backup_state", "backup", "state-0001")
        .output("apply_updates", "version", "2.4.0");
    let qa = Scripted::new(QA, &w.seen).failing("validate_update", 1);
    let run = run(&w, &wf, ops, qa);

    assert_eq!(run.status("validate_update"), Some(StepStatus::Failed));
    assert_eq!(run.status("rollback"), Some(StepStatus::Succeeded));
    assert_eq!(run.status("run_health_checks"), Some(StepStatus::Skipped));
    assert_eq!(
        run.status("verify_agents_responsive"),
        Some(StepStatus::Skipped)
    );
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
    let seen = w.seen.lock();
    assert_eq!(seen["validate_update"]["version"], "2.4.0");
    assert_eq!(seen["rollback"]["configuration_backup"], "cfg-0001");
    assert_eq!(seen["rollback"]["state_backup"], "state-0001");
}

#[test]
fn system_update_succeeds_and_runs_the_post_update_checks() {
    let w = world();
    let wf = runbooks::system_update();
    let run = run(
        &w,
        &wf,
        Scripted::new(OPS, &w.seen),
        Scripted::new(QA, &w.seen),
    );
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(run.status("rollback"), Some(StepStatus::Skipped));
    assert_eq!(run.status("run_health_checks"), Some(StepStatus::Succeeded));
    assert_eq!(
        run.status("verify_agents_responsive"),
        Some(StepStatus::Succeeded)
    );
}

#[test]
fn a_failure_early_in_the_update_skips_the_rest_and_rolls_back() {
    let w = world();
    let wf = runbooks::system_update();
    let ops = Scripted::new(OPS, &w.seen)
        .output("backup_configuration", "backup", "cfg-0001")
        .failing("stop_services", 1);
    let run = run(&w, &wf, ops, Scripted::new(QA, &w.seen));
    assert_eq!(run.status("apply_updates"), Some(StepStatus::Skipped));
    assert_eq!(run.status("validate_update"), Some(StepStatus::Skipped));
    assert_eq!(run.status("rollback"), Some(StepStatus::Succeeded));
    // Only the backups that were made reach the rollback.
    let seen = w.seen.lock();
    assert_eq!(
        seen["rollback"],
        BTreeMap::from([("configuration_backup".to_owned(), "cfg-0001".to_owned())])
    );
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
}

#[test]
fn memory_corruption_recovery_runs_in_order() {
    let w = world();
    let wf = runbooks::memory_corruption_recovery();
    let ops = Scripted::new(OPS, &w.seen)
        .output("backup_memory_state", "backup", "mem-0042")
        .output("assess_corruption", "extent", "3 segments")
        .failing("restore_memory_backup", 1);
    let run = run(&w, &wf, ops, Scripted::new(QA, &w.seen));
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(run.attempts("restore_memory_backup"), Some(2));
    let seen = w.seen.lock();
    assert_eq!(seen["restore_memory_backup"]["backup"], "mem-0042");
    assert_eq!(seen["restore_memory_backup"]["extent"], "3 segments");
}

#[test]
fn security_breach_response_notifies_the_team_beside_the_chain() {
    let w = world();
    let wf = runbooks::security_breach_response();
    let run = {
        let executor = Executor::new(
            Arc::clone(&w.coordinator),
            SimulatedTimer::new(w.clock.clone()),
        )
        .with_agent(Arc::new(Scripted::new(OPS, &w.seen)))
        .with_agent(Arc::new(
            Scripted::new(SECURITY, &w.seen)
                .output("isolate_affected_agents", "isolated", "agent-7")
                .output("run_security_scan", "findings", "CVE-2024-0001"),
        ))
        .with_agent(Arc::new(Scripted::new(HUMAN, &w.seen)));
        block_on(executor.run(&wf, "breach-1", 7)).unwrap()
    };
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(run.agent("apply_security_patches"), Some(AgentId::new(OPS)));
    assert_eq!(run.agent("notify_security_team"), Some(AgentId::new(HUMAN)));
    let seen = w.seen.lock();
    assert_eq!(seen["notify_security_team"]["isolated"], "agent-7");
    assert_eq!(seen["apply_security_patches"]["findings"], "CVE-2024-0001");
}

#[test]
fn deployment_succeeds_end_to_end_and_documents_the_evidence() {
    let w = world();
    let wf = runbooks::deployment();
    let ops = Scripted::new(OPS, &w.seen)
        .output("deploy", "url", "http://localhost:3000")
        .output("deploy", "health", "ok")
        .output("launch_browser", "url", "http://localhost:3000")
        .output("launch_browser", "browser", "Microsoft Edge")
        .output("launch_browser", "launched_at", "1000000");
    let qa = Scripted::new(QA, &w.seen)
        .output("screenshot", "screenshot", "shots/home.png")
        .output("screenshot", "verification", "no visual errors")
        .output("document", "report", "reports/deploy.md");
    let run = run(&w, &wf, ops, qa);

    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    for step in [
        "deploy",
        "launch_browser",
        "screenshot",
        "document",
        "handoff",
    ] {
        assert_eq!(run.status(step), Some(StepStatus::Succeeded), "{step}");
    }
    assert_eq!(run.agent("handoff"), Some(AgentId::new(FRAMEWORK)));
    let seen = w.seen.lock();
    let document = &seen["document"];
    assert_eq!(document["url"], "http://localhost:3000");
    assert_eq!(document["screenshot"], "shots/home.png");
    assert_eq!(document["verification"], "no visual errors");
    assert_eq!(document["health"], "ok");
    assert_eq!(seen["screenshot"]["browser"], "Microsoft Edge");
    assert_eq!(seen["handoff"]["report"], "reports/deploy.md");
}
