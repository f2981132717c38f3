//! The ready-made runbooks: their documented shape, their serde round trip, and runs
//! to completion over scripted agents (retries, rollback, handlers, safe mode).

use std::collections::BTreeMap;
use std::sync::Arc;

use std::sync::atomic::{AtomicU32, Ordering};

use concord::agent::{Agent, AgentError, AgentHealth, Outcome, WorkItem, WorkOutput};
use concord::coordinator::{AssignOutcome, Coordinator, Decider, EventKind};
use concord::memory::{InMemoryStore, Memory, MemoryStore};
use concord::policy::{PolicySet, SafeModeRule};
use concord::workflow::builtins::kinds as builtin_kinds;
use concord::workflow::{
    Builtins, Executor, Restarter, Run, RunCondition, RunOutcome, SimulatedTimer, StepChange,
    StepStatus, Workflow, runbooks,
};
use concord::{
    AgentId, AgentProfile, AgentStatus, Capability, ManualClock, Requirements, Role,
    RuleBasedAnalyzer, RuleSet, SystemMode, Task, TaskId, Timestamp,
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
            (
                "enter_safe_mode",
                "coordinator",
                "enter_safe_mode",
                &[],
                ALL,
            ),
            (
                "diagnose_failure",
                "ops",
                "diagnose",
                &["enter_safe_mode"],
                ALL,
            ),
            (
                "restart_agents_incrementally",
                "coordinator",
                "restart_agents",
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
                "coordinator",
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
            (
                "stop_memory_writes",
                "coordinator",
                "stop_memory_writes",
                &[],
                ALL,
            ),
            (
                "backup_memory_state",
                "coordinator",
                "backup_memory",
                &["stop_memory_writes"],
                ALL,
            ),
            (
                "assess_corruption",
                "coordinator",
                "assess_memory",
                &["backup_memory_state"],
                ALL,
            ),
            (
                "restore_memory_backup",
                "coordinator",
                "restore_memory",
                &["assess_corruption"],
                ALL,
            ),
            (
                "validate_memory_integrity",
                "coordinator",
                "verify_memory",
                &["restore_memory_backup"],
                ALL,
            ),
            (
                "resume_memory_writes",
                "coordinator",
                "resume_memory_writes",
                &["validate_memory_integrity"],
                ALL,
            ),
        ],
    );
    expect(
        &runbooks::security_breach_response(),
        &[
            (
                "isolate_affected_agents",
                "coordinator",
                "isolate_agents",
                &[],
                ALL,
            ),
            (
                "stop_external_comms",
                "coordinator",
                "stop_external_comms",
                &["isolate_affected_agents"],
                ALL,
            ),
            (
                "collect_evidence",
                "coordinator",
                "preserve_evidence",
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
/// outputs it is given, and records the inputs each step received. Its failures are
/// retryable: a later attempt of the step may pass, as the script says.
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
            return Ok(WorkOutput::retryable_failure(format!("{step} failed")));
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
/// The built-in actions' agent.
const BUILTINS: u64 = 100;
/// The fleet the emergencies are about: workers the built-ins watch.
const WORKERS: [u64; 3] = [10, 11, 12];

type Seen = Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>>;

/// A worker whose health check fails while it is sick: `sick` more checks, or for
/// good at `u32::MAX`.
#[derive(Debug)]
struct Worker {
    id: AgentId,
    sick: AtomicU32,
    pinged: AtomicU32,
}

impl Worker {
    fn new(id: u64) -> Self {
        Worker {
            id: AgentId::new(id),
            sick: AtomicU32::new(0),
            pinged: AtomicU32::new(0),
        }
    }

    fn sick_for(&self, checks: u32) {
        self.sick.store(checks, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Agent for Worker {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, _: WorkItem) -> Result<WorkOutput, AgentError> {
        Ok(WorkOutput::success())
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        self.pinged.fetch_add(1, Ordering::SeqCst);
        let sick = self.sick.load(Ordering::SeqCst);
        if sick == 0 {
            return Ok(AgentHealth::new("1.0"));
        }
        if sick != u32::MAX {
            self.sick.store(sick - 1, Ordering::SeqCst);
        }
        Err(AgentError::Unreachable {
            reason: "connection refused".into(),
        })
    }
}

struct World {
    clock: ManualClock,
    coordinator: Arc<Coordinator>,
    seen: Seen,
    builtins: Arc<Builtins>,
    workers: Vec<Arc<Worker>>,
    store: Arc<InMemoryStore>,
    memory: Arc<Memory>,
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
    ]
    .into_iter()
    .chain(WORKERS.map(|id| (id, "worker")))
    {
        let profile = AgentProfile::new(AgentId::new(id), role)
            .with_role(Role::new(role).unwrap())
            .with_capability(Capability::new("email").unwrap())
            .with_max_tasks(4);
        coordinator.register_agent(profile).unwrap();
    }
    let store = Arc::new(InMemoryStore::new());
    let memory = Arc::new(Memory::new(store.clone()));
    let workers: Vec<Arc<Worker>> = WORKERS
        .iter()
        .map(|&id| Arc::new(Worker::new(id)))
        .collect();
    let builtins = Arc::new(
        Builtins::new(Arc::clone(&coordinator), AgentId::new(BUILTINS))
            .with_memory(Arc::clone(&memory))
            .watching(workers.iter().map(|w| Arc::clone(w) as Arc<dyn Agent>)),
    );
    coordinator.register_agent(builtins.profile()).unwrap();
    World {
        clock,
        coordinator,
        seen: Arc::default(),
        builtins,
        workers,
        store,
        memory,
    }
}

fn world() -> World {
    world_with(PolicySet::default())
}

/// The policies a host running the recovery uses: safe mode admits the host's
/// recovery duties (the built-in ones it always admits).
fn recovery_policies() -> PolicySet {
    let mut allow = SafeModeRule::default();
    for duty in ["diagnose", "verify", "notify", "security_scan", "patch"] {
        allow = allow.with_allowed(duty);
    }
    PolicySet::default().with_rule(allow).unwrap()
}

/// Runs `w` with the default scripted agents, `ops` and `qa` replaced as given, and
/// the built-ins.
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
    .with_agent(Arc::new(qa))
    .with_agent(world.builtins.clone());
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

fn status(w: &World, agent: u64) -> AgentStatus {
    w.coordinator
        .with_registry(|r| r.status(AgentId::new(agent)).unwrap())
}

fn output(run: &Run, step: &str, key: &str) -> String {
    run.outputs(step)
        .and_then(|o| o.get(key))
        .cloned()
        .unwrap_or_else(|| panic!("{step} has no output {key}"))
}

#[test]
fn safe_mode_recovery_restarts_in_waves_and_leaves_safe_mode_when_the_gate_passes() {
    let w = world_with(recovery_policies());
    for id in [11, 12] {
        w.coordinator
            .set_agent_status(AgentId::new(id), AgentStatus::Unhealthy)
            .unwrap();
    }
    // The second worker of the first wave is still down at the first gate.
    w.workers[2].sick_for(1);
    let wf = runbooks::safe_mode_recovery();
    let ops = Scripted::new(OPS, &w.seen).output(
        "diagnose_failure",
        "cause",
        "oom in the memory service",
    );
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
    assert_eq!(run.agent("enter_safe_mode"), Some(AgentId::new(BUILTINS)));
    assert_eq!(
        run.agent("restart_agents_incrementally"),
        Some(AgentId::new(BUILTINS))
    );
    // The retry went on from the wave that failed: only agent 12 was left.
    assert_eq!(
        output(&run, "restart_agents_incrementally", "restarted"),
        "agent#12"
    );
    for id in WORKERS {
        assert_eq!(status(&w, id), AgentStatus::Available, "agent-{id}");
    }
    assert_eq!(run.status("exit_safe_mode"), Some(StepStatus::Succeeded));
    assert_eq!(run.status("notify_stakeholders"), Some(StepStatus::Skipped));
    assert_eq!(w.coordinator.mode(), SystemMode::Normal);
    // The retry waited out its back-off on the simulated clock.
    assert!(
        concord::Clock::now(&w.clock).duration_since(start) >= std::time::Duration::from_secs(10)
    );
    let seen = w.seen.lock();
    assert_eq!(seen["validate_recovery"]["restarted"], "agent#12");
    assert!(w.coordinator.assignments().is_empty());
}

#[test]
fn safe_mode_recovery_notifies_stakeholders_and_stays_in_safe_mode_when_the_restart_never_works() {
    let w = world_with(recovery_policies());
    w.coordinator
        .set_agent_status(AgentId::new(10), AgentStatus::Offline)
        .unwrap();
    w.workers[0].sick_for(u32::MAX);
    let run = run(
        &w,
        &runbooks::safe_mode_recovery(),
        Scripted::new(OPS, &w.seen),
        Scripted::new(QA, &w.seen),
    );
    assert_eq!(
        run.status("restart_agents_incrementally"),
        Some(StepStatus::Failed)
    );
    assert_eq!(run.attempts("restart_agents_incrementally"), Some(4));
    assert_eq!(run.status("validate_recovery"), Some(StepStatus::Skipped));
    assert_eq!(run.status("exit_safe_mode"), Some(StepStatus::Skipped));
    assert_eq!(
        run.status("notify_stakeholders"),
        Some(StepStatus::Succeeded)
    );
    assert_eq!(run.agent("notify_stakeholders"), Some(AgentId::new(HUMAN)));
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
    assert_eq!(
        w.coordinator.mode(),
        SystemMode::SafeMode,
        "the gate never passed"
    );
    assert_eq!(status(&w, 10), AgentStatus::Offline);
}

#[test]
fn safe_mode_recovery_runs_from_recovery_mode_too() {
    let w = world_with(recovery_policies());
    w.coordinator.set_mode(SystemMode::Recovery);
    let run = run(
        &w,
        &runbooks::safe_mode_recovery(),
        Scripted::new(OPS, &w.seen),
        Scripted::new(QA, &w.seen),
    );
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(
        output(&run, "restart_agents_incrementally", "restarted"),
        ""
    );
    assert_eq!(w.coordinator.mode(), SystemMode::Normal);
}

#[test]
fn default_policies_admit_the_built_in_steps_but_not_the_hosts_in_safe_mode() {
    // Guards the reason the example allows the host's recovery duties: the default
    // safe-mode rule admits only the coordinator's own work, so the diagnosis waits
    // for normal mode (here past the host's patience).
    let w = world();
    let wf = runbooks::safe_mode_recovery();
    let run = run_with(
        &w,
        &wf,
        Scripted::new(OPS, &w.seen),
        Scripted::new(QA, &w.seen),
        |e| e.with_patience(std::time::Duration::from_secs(3600)),
    );
    assert_eq!(run.status("enter_safe_mode"), Some(StepStatus::Succeeded));
    assert_eq!(run.status("diagnose_failure"), Some(StepStatus::Failed));
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
    let why = crate::history::abandoned_reason(&run);
    assert!(why.contains("for normal mode"), "{why}");
    assert_eq!(w.coordinator.mode(), SystemMode::SafeMode);
}

/// One built-in action, asked directly.
fn act(w: &World, kind: &str) -> WorkOutput {
    let work = WorkItem::new(TaskId::new(9_000), kind, kind);
    block_on(w.builtins.execute(work)).unwrap()
}

#[test]
fn leaving_safe_mode_waits_for_every_watched_agent_to_pass_the_gate() {
    let w = world();
    w.coordinator.set_mode(SystemMode::SafeMode);
    w.coordinator
        .set_agent_status(AgentId::new(11), AgentStatus::Unhealthy)
        .unwrap();
    let out = act(&w, builtin_kinds::EXIT_SAFE_MODE);
    assert!(
        matches!(out.outcome(), Outcome::Failed { retryable: true, reason } if reason.contains("agent#11 is unhealthy")),
        "{:?}",
        out.outcome()
    );
    assert_eq!(w.coordinator.mode(), SystemMode::SafeMode);
    // In service again, but not answering: still kept.
    w.coordinator
        .set_agent_status(AgentId::new(11), AgentStatus::Available)
        .unwrap();
    w.workers[1].sick_for(1);
    assert!(!act(&w, builtin_kinds::EXIT_SAFE_MODE).is_success());
    assert_eq!(w.coordinator.mode(), SystemMode::SafeMode);
    // A quarantined agent is not the gate's to wait for.
    w.coordinator.quarantine(AgentId::new(12), "drill").unwrap();
    w.workers[2].sick_for(u32::MAX);
    assert!(act(&w, builtin_kinds::EXIT_SAFE_MODE).is_success());
    assert_eq!(w.coordinator.mode(), SystemMode::Normal);
    // Every action is idempotent; a kind that is not built in is refused by name.
    assert!(act(&w, builtin_kinds::EXIT_SAFE_MODE).is_success());
    let out = act(&w, "deploy");
    assert!(
        matches!(out.outcome(), Outcome::Failed { retryable: false, reason } if reason.contains("`deploy` is not a built-in action")),
        "{:?}",
        out.outcome()
    );
}

#[test]
fn restart_waves_stop_at_the_first_gate_that_fails_and_go_on_from_there() {
    let w = world();
    let b = Builtins::new(Arc::clone(&w.coordinator), AgentId::new(101))
        .with_wave_size(1)
        .with_restarter(Logbook)
        .watching(w.workers.iter().map(|a| Arc::clone(a) as Arc<dyn Agent>));
    for id in WORKERS {
        w.coordinator
            .set_agent_status(AgentId::new(id), AgentStatus::Offline)
            .unwrap();
    }
    w.workers[1].sick_for(1);
    let work = || WorkItem::new(TaskId::new(9_001), builtin_kinds::RESTART_AGENTS, "restart");
    let first = block_on(b.execute(work())).unwrap();
    assert!(
        matches!(first.outcome(), Outcome::Failed { retryable: true, reason } if reason.contains("wave 2 of 3") && reason.contains("agent#11")),
        "{:?}",
        first.outcome()
    );
    // Wave 1 is back in service; wave 3 was never started.
    assert_eq!(status(&w, 10), AgentStatus::Available);
    assert_eq!(status(&w, 11), AgentStatus::Offline);
    assert_eq!(status(&w, 12), AgentStatus::Offline);
    assert_eq!(w.workers[2].pinged.load(Ordering::SeqCst), 0);
    let second = block_on(b.execute(work())).unwrap();
    assert!(second.is_success());
    assert_eq!(second.output("restarted"), Some("agent#11, agent#12"));
    assert_eq!(second.output("waves"), Some("2"));
    assert_eq!(
        *RESTARTED.lock(),
        vec![
            AgentId::new(10),
            AgentId::new(11),
            AgentId::new(11),
            AgentId::new(12)
        ]
    );
}

static RESTARTED: Mutex<Vec<AgentId>> = Mutex::new(Vec::new());

/// A restarter that writes down whom it restarted.
#[derive(Debug, Default)]
struct Logbook;

#[async_trait::async_trait]
impl Restarter for Logbook {
    async fn restart(&self, agent: AgentId) -> Result<(), AgentError> {
        RESTARTED.lock().push(agent);
        Ok(())
    }
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

fn seed_memory(w: &World) {
    for (key, value) in [("a", "alpha"), ("b", "beta"), ("c", "gamma")] {
        block_on(w.memory.put(key, value.as_bytes().to_vec())).unwrap();
    }
}

#[test]
fn memory_corruption_recovery_fences_keeps_the_evidence_restores_and_resumes() {
    let w = world();
    seed_memory(&w);
    // Last night's backup, then corruption.
    let clean = block_on(w.memory.backup(concord::Clock::now(&w.clock))).unwrap();
    w.builtins.keep_backup(clean.clone());
    w.store.corrupt("a");
    w.store.corrupt("c");
    let run = run(
        &w,
        &runbooks::memory_corruption_recovery(),
        Scripted::new(OPS, &w.seen),
        Scripted::new(QA, &w.seen),
    );
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    for step in [
        "stop_memory_writes",
        "backup_memory_state",
        "assess_corruption",
        "restore_memory_backup",
        "validate_memory_integrity",
        "resume_memory_writes",
    ] {
        assert_eq!(run.agent(step), Some(AgentId::new(BUILTINS)), "{step}");
    }
    assert_eq!(
        output(&run, "assess_corruption", "extent"),
        "2 of 3 entries corrupt: a, c"
    );
    assert_eq!(output(&run, "backup_memory_state", "suspect"), "2");
    assert_eq!(
        output(&run, "restore_memory_backup", "restored_from"),
        format!("backup {}", clean.id())
    );
    // The corrupt state is kept as evidence, never loaded.
    let kept = w.builtins.backups();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[1].suspect(), ["a", "c"]);
    assert_eq!(
        block_on(w.memory.get("a")).unwrap(),
        Some(b"alpha".to_vec())
    );
    assert_eq!(
        block_on(w.memory.get("c")).unwrap(),
        Some(b"gamma".to_vec())
    );
    assert!(w.memory.fenced().is_none(), "writes resumed");
    block_on(w.memory.put("d", b"delta".to_vec())).unwrap();
}

#[test]
fn memory_with_no_clean_backup_stays_fenced_and_the_run_fails() {
    let w = world();
    seed_memory(&w);
    w.store.corrupt("b");
    let run = run(
        &w,
        &runbooks::memory_corruption_recovery(),
        Scripted::new(OPS, &w.seen),
        Scripted::new(QA, &w.seen),
    );
    assert_eq!(
        run.status("restore_memory_backup"),
        Some(StepStatus::Failed)
    );
    assert_eq!(
        run.status("validate_memory_integrity"),
        Some(StepStatus::Skipped)
    );
    assert_eq!(
        run.status("resume_memory_writes"),
        Some(StepStatus::Skipped)
    );
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
    assert!(w.memory.fenced().is_some(), "writes stay stopped");
    assert!(block_on(w.memory.put("d", b"delta".to_vec())).is_err());
}

#[test]
fn memory_fails_over_to_a_sound_standby() {
    let w = world();
    seed_memory(&w);
    let standby = Arc::new(InMemoryStore::new());
    for (key, value) in [("a", "alpha"), ("b", "beta"), ("c", "gamma")] {
        block_on(standby.put(key, value.as_bytes().to_vec())).unwrap();
    }
    let b = Arc::new(
        Builtins::new(Arc::clone(&w.coordinator), AgentId::new(101))
            .with_memory(Arc::clone(&w.memory))
            .with_standby(standby.clone()),
    );
    w.store.corrupt("b");
    let out = block_on(b.execute(WorkItem::new(
        TaskId::new(1),
        builtin_kinds::RESTORE_MEMORY,
        "restore",
    )))
    .unwrap();
    assert_eq!(out.output("restored_from"), Some("standby"));
    assert_eq!(block_on(w.memory.get("b")).unwrap(), Some(b"beta".to_vec()));
}

#[test]
fn security_breach_response_isolates_stops_communications_and_keeps_evidence() {
    let w = world_with(recovery_policies());
    seed_memory(&w);
    // Agent 10 is compromised while it runs a task.
    let running = Task::new(TaskId::new(500), "work", "crunch")
        .with_requirements(Requirements::new().with_role(Role::new("worker").unwrap()));
    w.coordinator.assign(running).unwrap();
    let holder = w.coordinator.assignments()[0].agent;
    w.builtins
        .report_affected(holder, "outbound traffic to an unknown host");
    let wf = runbooks::security_breach_response();
    let run = {
        let executor = Executor::new(
            Arc::clone(&w.coordinator),
            SimulatedTimer::new(w.clock.clone()),
        )
        .with_agent(Arc::new(Scripted::new(OPS, &w.seen)))
        .with_agent(Arc::new(Scripted::new(SECURITY, &w.seen).output(
            "run_security_scan",
            "findings",
            "CVE-2024-0001",
        )))
        .with_agent(Arc::new(Scripted::new(HUMAN, &w.seen)))
        .with_agent(w.builtins.clone());
        block_on(executor.run(&wf, "breach-1", 7)).unwrap()
    };
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(
        run.agent("isolate_affected_agents"),
        Some(AgentId::new(BUILTINS))
    );
    assert_eq!(status(&w, holder.get()), AgentStatus::Quarantined);
    assert_eq!(
        output(&run, "isolate_affected_agents", "isolated"),
        holder.to_string()
    );
    assert!(
        w.coordinator.communications().is_some(),
        "still stopped: resuming is a person's call"
    );
    assert_eq!(
        output(&run, "collect_evidence", "quarantined"),
        holder.to_string()
    );
    assert_eq!(w.builtins.backups().len(), 1, "memory kept as evidence");
    assert_eq!(run.agent("apply_security_patches"), Some(AgentId::new(OPS)));
    assert_eq!(run.agent("notify_security_team"), Some(AgentId::new(HUMAN)));
    {
        let seen = w.seen.lock();
        assert_eq!(seen["notify_security_team"]["isolated"], holder.to_string());
        assert_eq!(seen["apply_security_patches"]["findings"], "CVE-2024-0001");
    }
    // The quarantined agent's task went to another worker; mail waits.
    assert_ne!(w.coordinator.assignments()[0].agent, holder);
    let mail = Task::new(TaskId::new(501), "notify", "mail the customers").with_requirements(
        Requirements::new()
            .with_role(Role::new("worker").unwrap())
            .with_capability(Capability::new("email").unwrap()),
    );
    assert!(matches!(
        w.coordinator.assign(mail).unwrap(),
        AssignOutcome::Queued { .. }
    ));
    let started = w
        .coordinator
        .resume_communications(Decider::Human, "patched and verified")
        .unwrap();
    assert_eq!(started.len(), 1);
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

/// A deployment and a safe-mode recovery on one executor and one fleet, started
/// while safe mode holds (entered by rule, say): the deployment's steps wait for
/// normal mode (none is started in safe mode) while the recovery runs, and it
/// finishes once the recovery leaves safe mode.
#[test]
fn a_deployment_waits_through_a_safe_mode_recovery_and_finishes_after_it() {
    let w = world_with(recovery_policies());
    w.coordinator
        .set_agent_status(AgentId::new(10), AgentStatus::Unhealthy)
        .unwrap();
    w.coordinator.set_mode(SystemMode::SafeMode);
    let executor = Executor::new(
        Arc::clone(&w.coordinator),
        SimulatedTimer::new(w.clock.clone()),
    )
    .with_agent(Arc::new(Scripted::new(OPS, &w.seen)))
    .with_agent(Arc::new(Scripted::new(QA, &w.seen)))
    .with_agent(Arc::new(Scripted::new(FRAMEWORK, &w.seen)))
    .with_agent(Arc::new(Scripted::new(HUMAN, &w.seen)))
    .with_agent(w.builtins.clone());
    let deployment = runbooks::deployment();
    let recovery = runbooks::safe_mode_recovery();
    let (deployed, recovered) = block_on(futures::future::join(
        executor.run(&deployment, "deploy-1", 1),
        executor.run(&recovery, "recovery-1", 2),
    ));
    let (deployed, recovered) = (deployed.unwrap(), recovered.unwrap());
    assert_eq!(recovered.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(deployed.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(w.coordinator.mode(), SystemMode::Normal);
    assert_eq!(status(&w, 10), AgentStatus::Available);
    // Between entering and leaving safe mode, only the recovery's duties started.
    let mut safe = false;
    let mut started_in_safe_mode = Vec::new();
    let mut deployment_after_safe_mode = Vec::new();
    let mut was_safe = false;
    for event in w.coordinator.drain_events() {
        match &event.kind {
            EventKind::ModeChanged { to, .. } => {
                safe = *to != SystemMode::Normal;
                was_safe |= safe;
            }
            EventKind::TaskAssigned { assignment } if safe => {
                started_in_safe_mode.push(assignment.task.kind().to_owned());
            }
            EventKind::TaskAssigned { assignment }
                if was_safe && assignment.group.as_deref() == Some("deploy-1") =>
            {
                deployment_after_safe_mode.push(assignment.task.description().to_owned());
            }
            _ => {}
        }
    }
    assert!(!started_in_safe_mode.is_empty());
    assert!(
        !deployment_after_safe_mode.is_empty(),
        "the deployment ran after safe mode"
    );
    assert_eq!(
        deployment_after_safe_mode.len(),
        5,
        "{deployment_after_safe_mode:?}"
    );
    for kind in &started_in_safe_mode {
        assert!(
            [
                "enter_safe_mode",
                "restart_agents",
                "exit_safe_mode",
                "diagnose",
                "verify",
                "notify"
            ]
            .contains(&kind.as_str()),
            "{kind} started in safe mode: {started_in_safe_mode:?}"
        );
    }
}
