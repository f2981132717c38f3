//! Several workflow runs sharing a small fleet on tokio: steps wait for room instead
//! of failing, one run is cancelled, one waits on a claim until the escalation ladder
//! (shortened to milliseconds) hands the conflict to a human, who approves, and a host crash in the middle of a run is resumed without re-running
//! finished steps or counting the interrupted attempt as a failure.
//!
//! Run with `cargo run --example concurrent_runs --features tokio`. It prints what
//! waited, why, and for how long.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::conflict::{ConflictState, EscalationLevel, EscalationPolicy, HumanDecision};
use concord::coordinator::{Coordinator, CoordinatorSnapshot, Decider};
use concord::workflow::{Executor, Run, RunEvent, RunSnapshot, StepChange, StepSpec, Workflow};
use concord::{
    AgentId, AgentProfile, Claim, Requirements, Role, RuleBasedAnalyzer, RuleSet, SystemClock,
    Task, TaskId, Timestamp, TokioSpawner, TokioTimer,
};

/// A worker that takes `work` of wall-clock time per step.
#[derive(Debug)]
struct Worker {
    id: AgentId,
    work: Duration,
}

#[concord::async_trait]
impl Agent for Worker {
    fn id(&self) -> AgentId {
        self.id
    }
    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        tokio::time::sleep(self.work).await;
        Ok(WorkOutput::success().with_output("done", work.description()))
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("1.0"))
    }
}

fn worker() -> Role {
    Role::new("worker").expect("a valid role")
}

/// A coordinator with three workers of two slots each, and an executor over them.
/// Its escalation ladder runs in milliseconds instead of hours: a conflict goes to
/// the orchestrator after 30 ms and to a human after 60 ms, who has 10 s to answer.
fn fleet(work: Duration) -> (Arc<Coordinator>, Executor) {
    let ms = Duration::from_millis;
    let ladder = EscalationPolicy::default()
        .with_orchestrator_after(ms(30))
        .with_human_after(ms(60))
        .with_decision_within(Duration::from_secs(10));
    let coordinator = Arc::new(
        Coordinator::builder()
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).expect("an empty rule set"))
            .escalation_policy(ladder)
            .expect("a valid ladder")
            .build(),
    );
    let mut executor = Executor::new(Arc::clone(&coordinator), TokioTimer::new(SystemClock))
        .with_spawner(TokioSpawner::current().expect("inside tokio"));
    for id in 1..=3 {
        let id = AgentId::new(id);
        coordinator
            .register_agent(
                AgentProfile::new(id, format!("worker-{}", id.get()))
                    .with_role(worker())
                    .with_max_tasks(2),
            )
            .expect("a fresh agent");
        executor = executor.with_agent(Arc::new(Worker { id, work }));
    }
    (coordinator, executor)
}

/// fetch, three hashes at once, a join and a publish.
fn fan_out() -> Workflow {
    let step = |name: &str| StepSpec::new(name).with_role(worker());
    Workflow::builder("build")
        .step(step("fetch"))
        .step(step("hash_a").after("fetch"))
        .step(step("hash_b").after("fetch"))
        .step(step("hash_c").after("fetch"))
        .step(step("join").after("hash_a").after("hash_b").after("hash_c"))
        .step(step("publish").after("join"))
        .build()
        .expect("a valid workflow")
}

/// Why each waiting task waited, the first time it was seen waiting: by run, then
/// step (the task's description is its step's name).
type Reasons = Arc<Mutex<BTreeMap<(String, String), String>>>;

/// Looks at what waits in the coordinator every few milliseconds, as a dashboard
/// would.
fn watch_waits(coordinator: Arc<Coordinator>, reasons: Reasons) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for w in coordinator.waiting() {
                let run = w.group.as_deref().unwrap_or("-").to_owned();
                let step = w.task.description().to_owned();
                if let Some(why) = coordinator.why_waiting(w.task.id()) {
                    reasons
                        .lock()
                        .expect("not poisoned")
                        .entry((run, step))
                        .or_insert(why);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// Prints how long each step of `run` waited between ready and started, and why.
fn report(run: &Run, reasons: &Reasons) {
    println!(
        "run {:<10} {:<9} in {:>4} ms",
        run.id(),
        run.outcome()
            .map_or("unfinished".to_owned(), |o| o.to_string()),
        concord::workflow::run_duration(run).as_millis()
    );
    let mut ready: BTreeMap<usize, Timestamp> = BTreeMap::new();
    for e in run.history() {
        match e.change {
            StepChange::Ready => {
                ready.insert(e.step.index(), e.at);
            }
            StepChange::Started => {
                let since = ready.get(&e.step.index()).copied().unwrap_or(e.at);
                let waited = e.at.duration_since(since);
                if waited >= Duration::from_millis(5) {
                    let name = run.name(e.step).unwrap_or("?");
                    let why = reasons
                        .lock()
                        .expect("not poisoned")
                        .get(&(run.id().to_owned(), name.to_owned()))
                        .cloned()
                        .unwrap_or_else(|| "(not seen waiting)".to_owned());
                    println!("    {name:<8} waited {:>4} ms {why}", waited.as_millis());
                }
            }
            _ => {}
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // ----- Part 1: five runs on three two-slot workers -----
    let (coordinator, executor) = fleet(Duration::from_millis(40));
    let executor = Arc::new(executor);
    let reasons: Reasons = Arc::default();
    let watcher = watch_waits(Arc::clone(&coordinator), Arc::clone(&reasons));

    // Maintenance outside any run holds the staging environment.
    let staging = Claim::exclusive("env/staging");
    let maintenance = Task::new(TaskId::new(1), "maintenance", "maintenance").with_requirements(
        Requirements::new()
            .with_role(worker())
            .with_claim(staging.clone()),
    );
    coordinator
        .assign(maintenance)
        .expect("the maintenance task");

    let deploy = Workflow::builder("deploy")
        .step(
            StepSpec::new("deploy")
                .with_role(worker())
                .with_claim(staging),
        )
        .step(StepSpec::new("verify").with_role(worker()).after("deploy"))
        .build()
        .expect("a valid workflow");
    let builds = fan_out();

    let mut runs = Vec::new();
    for i in 1..=3 {
        let run = Arc::clone(&executor).run_owned(&builds, &format!("build-{i}"), i);
        runs.push(tokio::spawn(run));
    }
    let doomed = Arc::clone(&executor).run_owned(&builds, "doomed", 9);
    let doomed_handle = doomed.handle();
    runs.push(tokio::spawn(doomed));
    runs.push(tokio::spawn(
        Arc::clone(&executor).run_owned(&deploy, "deploy", 7),
    ));

    // The operator cancels `doomed` after 60 ms; the others go on.
    tokio::time::sleep(Duration::from_millis(60)).await;
    doomed_handle.cancel();
    println!("cancelled run `doomed`: {:?}", doomed_handle.progress());

    // A person at a desk answers what the ladder hands a human. The coordinator says
    // so in `open_conflicts` (and in a `RequestHumanApproval` event), with the run
    // and step that wait.
    let desk = {
        let coordinator = Arc::clone(&coordinator);
        tokio::spawn(async move {
            loop {
                for open in coordinator.open_conflicts() {
                    if open.state != ConflictState::Escalated(EscalationLevel::Human) {
                        continue;
                    }
                    let who = format!(
                        "run `{}`, step `{}`",
                        open.waiting_group.as_deref().unwrap_or("-"),
                        open.waiting_description.as_deref().unwrap_or("-")
                    );
                    println!(
                        "a human is asked about {who} ({} on {:?}, open since {}); approves",
                        open.conflict.id(),
                        open.conflict.resources(),
                        open.opened_at
                    );
                    coordinator
                        .decide(open.conflict.id(), HumanDecision::Approve, Decider::Human)
                        .expect("an open conflict");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let mut finished = Vec::new();
    for run in runs {
        finished.push(run.await.expect("the run's task").expect("the run"));
    }
    coordinator
        .complete(TaskId::new(1), true, None)
        .expect("the maintenance task ends");
    watcher.abort();
    desk.abort();
    println!();
    for run in &finished {
        report(run, &reasons);
    }

    // ----- Part 2: a crash in the middle of a run, and its resume -----
    println!();
    let (coordinator, executor) = fleet(Duration::from_millis(20));
    let checkpoint: Arc<Mutex<Option<(String, String)>>> = Arc::default();
    let sink = Arc::clone(&checkpoint);
    let journal = Arc::clone(&coordinator);
    let chain = Workflow::builder("nightly")
        .step(StepSpec::new("s1").with_role(worker()))
        .step(StepSpec::new("s2").with_role(worker()).after("s1"))
        .step(StepSpec::new("s3").with_role(worker()).after("s2"))
        .step(StepSpec::new("s4").with_role(worker()).after("s3"))
        .step(StepSpec::new("s5").with_role(worker()).after("s4"))
        .build()
        .expect("a valid workflow");
    // The host checkpoints the run and the coordinator at every change.
    let executor = Arc::new(executor.with_observer(move |run: &Run, _: &[RunEvent]| {
        let run = serde_json::to_string(&run.snapshot()).expect("serializable");
        let coordinator = serde_json::to_string(&journal.snapshot()).expect("serializable");
        *sink.lock().expect("not poisoned") = Some((run, coordinator));
    }));
    let crashing = tokio::spawn(Arc::clone(&executor).run_owned(&chain, "nightly", 1));
    // The host dies while s3 runs (about 50 ms in).
    tokio::time::sleep(Duration::from_millis(50)).await;
    crashing.abort();
    let _ = crashing.await;
    let (run, coordinator) = checkpoint
        .lock()
        .expect("not poisoned")
        .clone()
        .expect("a checkpoint");
    let run: RunSnapshot = serde_json::from_str(&run).expect("a run snapshot");
    let running: Vec<&str> = run
        .steps
        .iter()
        .filter(|s| s.status == concord::workflow::StepStatus::Running)
        .map(|s| s.name.as_str())
        .collect();
    println!("crash while {running:?} ran; restoring from the last checkpoint");

    // A new process: the coordinator and the run from their checkpoints.
    let snapshot: CoordinatorSnapshot = serde_json::from_str(&coordinator).expect("a snapshot");
    let restored = Arc::new(
        Coordinator::builder()
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).expect("an empty rule set"))
            .restore(snapshot)
            .expect("a consistent checkpoint"),
    );
    let mut executor = Executor::new(Arc::clone(&restored), TokioTimer::new(SystemClock))
        .with_spawner(TokioSpawner::current().expect("inside tokio"));
    for id in 1..=3 {
        executor = executor.with_agent(Arc::new(Worker {
            id: AgentId::new(id),
            work: Duration::from_millis(20),
        }));
    }
    let run = Run::restore(&chain, run).expect("a run of this workflow");
    let resumed = executor.resume(run).await.expect("the resumed run");
    for e in &resumed.history()[resumed.restored_history()..] {
        println!("    {}", e.display_in(&chain));
    }
    println!(
        "resumed run {}: attempts per step {:?} (the interrupted one not counted); coordinator idle: {}",
        resumed
            .outcome()
            .map_or("unfinished".to_owned(), |o| o.to_string()),
        chain
            .steps()
            .map(|(s, _)| resumed.attempts(s).unwrap_or(0))
            .collect::<Vec<_>>(),
        restored.assignments().is_empty() && restored.waiting().is_empty()
    );
}
