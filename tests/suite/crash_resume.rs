//! Crash consistency of the workflow executor: a host persists the run's snapshot
//! and the coordinator's snapshot from its `RunObserver` (as the README and
//! `RunObserver` say it may), crashes at an arbitrary point, restores both from JSON
//! (`Coordinator::builder().restore`, `Run::restore`) and `Executor::resume`s.
//!
//! What must hold after the resume: the run ends; no step that had finished at the
//! crash runs again; a step that was running at the crash is made again as the same
//! attempt (the restart rule: an interrupted attempt is not a failure, and uses up
//! nothing); the statuses follow the
//! run conditions; separation of duties still holds across the crash; and the
//! restored coordinator ends with nothing of the run left (no assignment, no ledger
//! allocation, no busy slot, nothing waiting, no open conflict).
//!
//! When these were written, `resume` left the interrupted attempts' tasks in the
//! restored coordinator (their slots, allocations and claims leaked, and a fresh
//! executor's first task id collided with one of them); it now gives them back first.
//! A coordinator snapshot older than the run's is not supported (it has forgotten the
//! duties recorded since; see `Executor::resume`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::coordinator::{Coordinator, CoordinatorBuilder, CoordinatorSnapshot};
use concord::policy::PolicySet;
use concord::workflow::{
    Executor, ExecutorError, RetryPolicy, Run, RunCondition, RunEvent, RunOutcome, RunSnapshot,
    SimulatedTimer, StepChange, StepSpec, StepStatus, Workflow,
};
use concord::{
    AgentId, AgentProfile, Claim, ManualClock, Role, RuleBasedAnalyzer, RuleSet, Timestamp,
};
use futures::executor::block_on;
use parking_lot::Mutex;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::yield_now;
use yield_now::YieldNow;

const RUN_ID: &str = "crashy";

// ----- the plan: a workflow, its agents' scripts and the fleet -----

/// The duty a step's task is of: separation of duties (the default policy set's
/// `deploy` / `verify` pair) applies to the last two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Duty {
    Plain,
    Deploy,
    Verify,
}

/// Step `s{i}`.
#[derive(Debug, Clone)]
struct PlanStep {
    /// Earlier steps it depends on.
    deps: Vec<usize>,
    condition: RunCondition,
    /// Attempts its retry policy allows.
    attempts: u32,
    /// Attempts (1-based) its agents fail, retryably: a later attempt may pass.
    failing: BTreeSet<u32>,
    /// Attempts its agents never answer (they time out).
    hanging: BTreeSet<u32>,
    duty: Duty,
    /// An exclusive claim on `env/staging`.
    claim: bool,
}

#[derive(Debug, Clone)]
struct Plan {
    steps: Vec<PlanStep>,
    /// Task slots of agents 1, 2, ...
    slots: Vec<u32>,
}

impl Plan {
    fn workflow(&self) -> Workflow {
        let ops = Role::new("ops").unwrap();
        let mut b = Workflow::builder("crash");
        for (i, s) in self.steps.iter().enumerate() {
            let mut spec = StepSpec::new(format!("s{i}"))
                .with_role(ops.clone())
                .with_condition(s.condition)
                .with_timeout(Duration::from_secs(60))
                .with_retry(
                    RetryPolicy::exponential(s.attempts)
                        .with_initial_backoff(Duration::from_secs(1)),
                );
            match s.duty {
                Duty::Plain => {}
                Duty::Deploy => spec = spec.with_kind("deploy"),
                Duty::Verify => spec = spec.with_kind("verify"),
            }
            if s.claim {
                spec = spec.with_claim(Claim::exclusive("env/staging"));
            }
            for d in &s.deps {
                spec = spec.after(format!("s{d}"));
            }
            b.push(spec);
        }
        b.build().unwrap()
    }

    /// The coordinator's configuration: kept by the host, the same before and after
    /// the crash.
    fn builder(clock: &ManualClock) -> CoordinatorBuilder {
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
            .policies(PolicySet::default())
    }

    fn fleet(&self, clock: &ManualClock) -> Arc<Coordinator> {
        let coordinator = Plan::builder(clock).build();
        let ops = Role::new("ops").unwrap();
        for (k, &slots) in self.slots.iter().enumerate() {
            let id = k as u64 + 1;
            coordinator
                .register_agent(
                    AgentProfile::new(AgentId::new(id), format!("agent-{id}"))
                        .with_role(ops.clone())
                        .with_max_tasks(slots),
                )
                .unwrap();
        }
        Arc::new(coordinator)
    }

    /// An executor over `coordinator` with a transport to every agent, logging each
    /// execution in `log`.
    fn executor(&self, coordinator: &Arc<Coordinator>, clock: &ManualClock, log: &Log) -> Executor {
        let plan = Arc::new(self.clone());
        let mut executor =
            Executor::new(Arc::clone(coordinator), SimulatedTimer::new(clock.clone()))
                .with_concurrency(4);
        for k in 0..self.slots.len() {
            executor = executor.with_agent(Arc::new(Scripted {
                id: AgentId::new(k as u64 + 1),
                plan: Arc::clone(&plan),
                log: Arc::clone(log),
            }));
        }
        executor
    }
}

/// One execution: step index, attempt, agent.
type Log = Arc<Mutex<Vec<(usize, u32, AgentId)>>>;

/// Fails the attempts its plan lists, after yielding once so that steps overlap (and
/// are running when the observer is called).
#[derive(Debug)]
struct Scripted {
    id: AgentId,
    plan: Arc<Plan>,
    log: Log,
}

#[async_trait::async_trait]
impl Agent for Scripted {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        let i: usize = work.description()[1..].parse().unwrap();
        self.log.lock().push((i, work.attempt(), self.id));
        YieldNow(false).await;
        let step = &self.plan.steps[i];
        if step.hanging.contains(&work.attempt()) {
            return futures::future::pending().await;
        }
        if step.failing.contains(&work.attempt()) {
            Ok(WorkOutput::retryable_failure("scripted failure"))
        } else {
            Ok(WorkOutput::success().with_output("by", self.id.to_string()))
        }
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("scripted"))
    }
}

// ----- the host: persist at every observer call, crash, restore, resume -----

/// What the host persisted at one observer call.
#[derive(Debug, Clone)]
struct Persisted {
    run: String,
    coordinator: String,
    at: Timestamp,
}

/// The host's journal: every observer call's snapshots (as JSON), and every event
/// the observer was handed.
#[derive(Default)]
struct Journal {
    saved: Mutex<Vec<Persisted>>,
    events: Mutex<Vec<RunEvent>>,
}

/// Makes `executor` persist both snapshots at every observer call (after draining
/// the coordinator's journal, as `Coordinator::snapshot` asks) into `journal`.
fn persisting(
    executor: Executor,
    coordinator: &Arc<Coordinator>,
    journal: &Arc<Journal>,
) -> Executor {
    let (journal, coordinator) = (Arc::clone(journal), Arc::clone(coordinator));
    executor.with_observer(move |run: &Run, events: &[RunEvent]| {
        let _coordinator_journal = coordinator.drain_events();
        journal.events.lock().extend_from_slice(events);
        journal.saved.lock().push(Persisted {
            run: serde_json::to_string(&run.snapshot()).unwrap(),
            coordinator: serde_json::to_string(&coordinator.snapshot()).unwrap(),
            at: coordinator.now(),
        });
    })
}

/// Runs `plan` to its end, persisting at every observer call.
fn persisted_run(plan: &Plan) -> (Run, Vec<Persisted>) {
    let workflow = plan.workflow();
    let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    let coordinator = plan.fleet(&clock);
    let journal = Arc::new(Journal::default());
    let executor = persisting(
        plan.executor(&coordinator, &clock, &Log::default()),
        &coordinator,
        &journal,
    );
    let run = block_on(executor.run(&workflow, RUN_ID, 7)).unwrap();
    assert_eq!(journal.events.lock().as_slice(), run.history());
    let saved = journal.saved.lock().clone();
    (run, saved)
}

/// What the host does between restoring and resuming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    /// Restores both snapshots and resumes: all the documentation describes.
    AsDocumented,
    /// Also gives back, as failed, every task of the run the restored coordinator
    /// still holds (the attempts the restart rule has just counted as failed), and
    /// withdraws the run's waiting tasks.
    Reconciling,
}

struct Recovered {
    crashed: RunSnapshot,
    result: Result<Run, ExecutorError>,
    coordinator: Arc<Coordinator>,
    /// Executions after the crash.
    log: Vec<(usize, u32, AgentId)>,
    /// What the observer was handed after the crash.
    journal: Arc<Journal>,
}

/// Restores the run from `run` and the coordinator from `coordinator` (JSON), on a
/// clock a few seconds past the crash, and resumes with a fresh executor.
fn recover(plan: &Plan, run: &Persisted, coordinator: &Persisted, host: Host) -> Recovered {
    recover_with(plan, run, coordinator, host, |e| e)
}

fn recover_with(
    plan: &Plan,
    run: &Persisted,
    coordinator: &Persisted,
    host: Host,
    tune: impl FnOnce(Executor) -> Executor,
) -> Recovered {
    let workflow = plan.workflow();
    let crashed: RunSnapshot = serde_json::from_str(&run.run).unwrap();
    let snapshot: CoordinatorSnapshot = serde_json::from_str(&coordinator.coordinator).unwrap();
    let clock = ManualClock::new(run.at.max(coordinator.at) + Duration::from_secs(5));
    let restored = Arc::new(Plan::builder(&clock).restore(snapshot).unwrap());
    if host == Host::Reconciling {
        for a in restored.assignments() {
            if a.group.as_deref() == Some(RUN_ID) {
                restored.complete(a.task.id(), false, None).unwrap();
            }
        }
        for w in restored.waiting() {
            if w.group.as_deref() == Some(RUN_ID) {
                restored.cancel(w.task.id()).unwrap();
            }
        }
    }
    let log = Log::default();
    let journal = Arc::new(Journal::default());
    let executor = persisting(
        tune(plan.executor(&restored, &clock, &log)),
        &restored,
        &journal,
    );
    let run = Run::restore(&workflow, crashed.clone()).unwrap();
    assert_eq!(run.restored_history(), crashed.history.len());
    let result = block_on(executor.resume(run));
    let log = log.lock().clone();
    Recovered {
        crashed,
        result,
        coordinator: restored,
        log,
        journal,
    }
}

// ----- the checks -----

/// The run ended, nothing finished before the crash ran again, running steps were
/// retried only per the restart rule, and the statuses follow the run conditions.
fn check_run(plan: &Plan, rec: &Recovered) -> Result<Run, TestCaseError> {
    let run = match &rec.result {
        Ok(run) => run.clone(),
        Err(e) => return Err(TestCaseError::fail(format!("resume failed: {e}"))),
    };
    prop_assert!(run.is_finished(), "the resumed run did not end");
    // What was journaled before the crash, then what the observer was handed after
    // it, is the whole history: every event exactly once.
    let mut whole = rec.crashed.history.clone();
    whole.extend(rec.journal.events.lock().iter().cloned());
    prop_assert_eq!(
        whole.as_slice(),
        run.history(),
        "the journal is not the history"
    );
    let mut executed: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for &(i, attempt, _) in &rec.log {
        executed.entry(i).or_default().push(attempt);
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let name = format!("s{i}");
        let at_crash = &rec.crashed.steps[i];
        let again = executed.get(&i).cloned().unwrap_or_default();
        if at_crash.status.is_terminal() {
            prop_assert!(
                again.is_empty(),
                "{} was {:?} at the crash and ran again (attempts {:?})",
                name,
                at_crash.status,
                again
            );
            prop_assert_eq!(run.status(name.as_str()), Some(at_crash.status));
        }
        if at_crash.status == StepStatus::Succeeded {
            prop_assert_eq!(
                run.outputs(name.as_str()).cloned().unwrap_or_default(),
                at_crash.outputs.clone()
            );
        }
        // Each attempt after the crash is numbered on from the snapshot's; the
        // interrupted one (running at the crash) is made again under its own number,
        // as it does not count; none is beyond the policy.
        let interrupted = u32::from(at_crash.status == StepStatus::Running);
        let before = at_crash.attempts - interrupted;
        let expected: Vec<u32> = (1..=again.len() as u32).map(|k| before + k).collect();
        prop_assert_eq!(&again, &expected, "attempts of {} after the crash", name);
        prop_assert_eq!(
            run.attempts(name.as_str()),
            Some(before + again.len() as u32)
        );
        prop_assert!(before + again.len() as u32 <= step.attempts);
    }
    check_conditions(plan, &run)?;
    Ok(run)
}

/// Every step's final status follows its run condition over its dependencies'.
fn check_conditions(plan: &Plan, run: &Run) -> Result<(), TestCaseError> {
    let mut carries = vec![false; plan.steps.len()];
    for (i, step) in plan.steps.iter().enumerate() {
        let name = format!("s{i}");
        let status = run.status(name.as_str()).unwrap();
        let deps: Vec<StepStatus> = step
            .deps
            .iter()
            .map(|d| run.status(format!("s{d}").as_str()).unwrap())
            .collect();
        let holds = match step.condition {
            RunCondition::AllSucceeded => deps.iter().all(|s| *s == StepStatus::Succeeded),
            RunCondition::AnyFailed => step.deps.iter().any(|&d| carries[d]),
            _ => true,
        };
        if holds {
            prop_assert!(
                matches!(status, StepStatus::Succeeded | StepStatus::Failed),
                "{} should have run ({:?}) but is {:?}",
                name,
                step.condition,
                status
            );
        } else {
            prop_assert_eq!(status, StepStatus::Skipped, "{} should be skipped", name);
            prop_assert_eq!(run.attempts(name.as_str()), Some(0));
        }
        carries[i] = status == StepStatus::Failed
            || (status == StepStatus::Skipped
                && step.condition == RunCondition::AllSucceeded
                && step.deps.iter().any(|&d| carries[d]));
        if status == StepStatus::Succeeded {
            // The last attempt is one its agents succeed at.
            let attempts = run.attempts(name.as_str()).unwrap();
            prop_assert!(!step.failing.contains(&attempts) && !step.hanging.contains(&attempts));
        }
    }
    Ok(())
}

/// No agent made attempts of both a `deploy` and a `verify` step of the run, before
/// or after the crash, but for attempts interrupted (they did not count, and the
/// agent did not do the duty).
fn check_duties(plan: &Plan, run: &Run) -> Result<(), TestCaseError> {
    // Each attempt started, by step, and whether it counts.
    let mut attempts: Vec<(usize, AgentId, bool)> = Vec::new();
    for e in run.history() {
        match e.change {
            StepChange::Started => attempts.push((e.step.index(), e.agent.unwrap(), true)),
            StepChange::Interrupted { .. } => {
                if let Some(a) = attempts.iter_mut().rev().find(|a| a.0 == e.step.index()) {
                    a.2 = false;
                }
            }
            _ => {}
        }
    }
    let mut by_duty: BTreeMap<&str, BTreeSet<AgentId>> = BTreeMap::new();
    for (step, agent, counts) in attempts {
        let duty = match plan.steps[step].duty {
            Duty::Plain => continue,
            Duty::Deploy => "deploy",
            Duty::Verify => "verify",
        };
        if counts {
            by_duty.entry(duty).or_default().insert(agent);
        }
    }
    let none = BTreeSet::new();
    let both: Vec<_> = by_duty
        .get("deploy")
        .unwrap_or(&none)
        .intersection(by_duty.get("verify").unwrap_or(&none))
        .collect();
    prop_assert!(both.is_empty(), "{:?} both deployed and verified", both);
    Ok(())
}

/// The coordinator holds nothing for the finished run.
fn check_nothing_leaked(coordinator: &Coordinator) -> Result<(), TestCaseError> {
    let left: Vec<_> = coordinator
        .assignments()
        .iter()
        .map(|a| a.task.id())
        .collect();
    prop_assert!(left.is_empty(), "tasks still assigned: {:?}", left);
    prop_assert!(coordinator.waiting().is_empty(), "tasks still waiting");
    prop_assert_eq!(
        coordinator.with_ledger(|l| l.len()),
        0,
        "allocations left in the ledger"
    );
    let busy: Vec<_> = coordinator.with_registry(|r| {
        r.iter()
            .filter(|a| a.running() > 0)
            .map(|a| (a.id(), a.running()))
            .collect()
    });
    prop_assert!(busy.is_empty(), "slots still taken: {:?}", busy);
    let open: Vec<_> = coordinator
        .snapshot()
        .conflicts
        .entries
        .iter()
        .filter(|(_, r)| !r.state.is_closed())
        .map(|(id, _)| *id)
        .collect();
    prop_assert!(open.is_empty(), "conflicts still open: {:?}", open);
    Ok(())
}

// ----- random plans -----

fn plans() -> impl Strategy<Value = Plan> {
    let step = (
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        prop_oneof![
            6 => Just(RunCondition::AllSucceeded),
            1 => Just(RunCondition::AnyFailed),
            1 => Just(RunCondition::Always),
        ],
        1u32..4,
        prop::collection::btree_set(1u32..4, 0..3),
        prop::collection::btree_set(1u32..4, 0..2),
        prop_oneof![
            6 => Just(Duty::Plain),
            1 => Just(Duty::Deploy),
            1 => Just(Duty::Verify),
        ],
        prop::bool::weighted(0.2),
    );
    let shape = prop_oneof![Just(0u8), Just(1u8), Just(2u8), Just(3u8)];
    (
        prop::collection::vec(step, 2..16),
        shape,
        prop::collection::vec(1u32..3, 2..4),
    )
        .prop_map(|(raw, shape, slots)| {
            let steps = raw
                .into_iter()
                .enumerate()
                .map(
                    |(i, (deps, condition, attempts, failing, hanging, duty, claim))| {
                        let mut deps: Vec<usize> = match (i, shape) {
                            (0, _) => Vec::new(),
                            // A chain.
                            (_, 0) => vec![i - 1],
                            // A fan-out from s0, then a fan-in at the last step.
                            (_, 1) => vec![0],
                            // Random earlier steps.
                            _ => deps.iter().map(|d| d.index(i)).collect(),
                        };
                        deps.sort_unstable();
                        deps.dedup();
                        PlanStep {
                            deps,
                            condition,
                            attempts,
                            failing,
                            hanging,
                            duty,
                            claim,
                        }
                    },
                )
                .collect::<Vec<_>>();
            let mut plan = Plan { steps, slots };
            if shape == 1 {
                let last = plan.steps.len() - 1;
                plan.steps[last].deps = (1..last).collect();
                if plan.steps[last].deps.is_empty() {
                    plan.steps[last].deps = vec![0];
                }
            }
            plan
        })
}

fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[42; 32]))
}

// ----- properties -----

/// A host that restores both snapshots of one observer call (or the coordinator's of
/// the call after) and gives back the run's leftover tasks before resuming: every
/// crash point resumes to a consistent end with nothing leaked, and so does a second
/// crash during the resumed run.
#[test]
fn a_reconciling_host_resumes_from_any_crash_point() {
    let strategy = (
        plans(),
        any::<prop::sample::Index>(),
        any::<bool>(),
        prop::option::of(any::<prop::sample::Index>()),
    );
    runner(96)
        .run(&strategy, |(plan, crash, newer_coordinator, again)| {
            let (_, saved) = persisted_run(&plan);
            prop_assert!(!saved.is_empty());
            let k = crash.index(saved.len());
            let c = if newer_coordinator {
                (k + 1).min(saved.len() - 1)
            } else {
                k
            };
            let rec = recover(&plan, &saved[k], &saved[c], Host::Reconciling);
            let run = check_run(&plan, &rec)?;
            check_duties(&plan, &run)?;
            check_nothing_leaked(&rec.coordinator)?;
            // A second crash, while the resumed run goes on.
            let saved = rec.journal.saved.lock().clone();
            if let (Some(again), false) = (again, saved.is_empty()) {
                let k = again.index(saved.len());
                let rec = recover(&plan, &saved[k], &saved[k], Host::Reconciling);
                let run = check_run(&plan, &rec)?;
                check_duties(&plan, &run)?;
                check_nothing_leaked(&rec.coordinator)?;
            }
            Ok(())
        })
        .unwrap();
}

/// The same crash points, with the host doing only what the documentation says:
/// restore both snapshots of one observer call and resume.
#[test]
fn a_host_following_the_docs_resumes_from_any_crash_point() {
    let strategy = (plans(), any::<prop::sample::Index>());
    runner(64)
        .run(&strategy, |(plan, crash)| {
            let (_, saved) = persisted_run(&plan);
            let k = crash.index(saved.len());
            let rec = recover(&plan, &saved[k], &saved[k], Host::AsDocumented);
            let run = check_run(&plan, &rec)?;
            check_duties(&plan, &run)?;
            check_nothing_leaked(&rec.coordinator)?;
            Ok(())
        })
        .unwrap();
}

// ----- one crash, step by step -----

/// `s0 -> s1`, `s0` allowed `attempts` attempts (and holding an exclusive claim on
/// `env/staging` if `claim`), over agents with `slots`.
fn chain(attempts: u32, claim: bool, slots: Vec<u32>) -> Plan {
    let step = |deps: Vec<usize>, attempts: u32, claim: bool| PlanStep {
        deps,
        condition: RunCondition::AllSucceeded,
        attempts,
        failing: BTreeSet::new(),
        hanging: BTreeSet::new(),
        duty: Duty::Plain,
        claim,
    };
    Plan {
        steps: vec![step(vec![], attempts, claim), step(vec![0], 1, false)],
        slots,
    }
}

/// The first observer call at which step `i` has `status`.
fn first_call(saved: &[Persisted], i: usize, status: StepStatus) -> usize {
    saved
        .iter()
        .position(|p| {
            let run: RunSnapshot = serde_json::from_str(&p.run).unwrap();
            run.steps[i].status == status
        })
        .unwrap_or_else(|| panic!("s{i} was never {status:?} at an observer call"))
}

/// What the history says of step `i`, in order.
fn changes(run: &Run, i: usize) -> Vec<&'static str> {
    run.history()
        .iter()
        .filter(|e| e.step.index() == i)
        .map(|e| match &e.change {
            StepChange::Ready => "ready",
            StepChange::Started => "started",
            StepChange::Succeeded { .. } => "succeeded",
            StepChange::AttemptFailed {
                retry_at: Some(_), ..
            } => "failed+retry",
            StepChange::AttemptFailed { .. } => "failed",
            StepChange::Skipped { .. } => "skipped",
            StepChange::Abandoned { .. } => "abandoned",
            StepChange::Interrupted { .. } => "interrupted",
            _ => "other",
        })
        .collect()
}

/// Fails a plain `#[test]` with the property check's message.
fn ok(result: Result<(), TestCaseError>) {
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The documented restart rule, with a host that gives back the interrupted
/// attempt's task: the step running at the crash is tried once more, the finished
/// ones never, and the restored coordinator ends empty.
#[test]
fn a_reconciling_host_retries_the_interrupted_step_once_and_frees_its_task() {
    let plan = chain(2, false, vec![1]);
    let (_, saved) = persisted_run(&plan);
    let k = first_call(&saved, 0, StepStatus::Running);
    let rec = recover(&plan, &saved[k], &saved[k], Host::Reconciling);
    let run = rec.result.as_ref().unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    let agent = AgentId::new(1);
    assert_eq!(rec.log, [(0, 1, agent), (1, 1, agent)]);
    assert_eq!(
        changes(run, 0),
        [
            "ready",
            "started",
            "interrupted",
            "ready",
            "started",
            "succeeded"
        ]
    );
    ok(check_run(&plan, &rec).map(drop));
    ok(check_nothing_leaked(&rec.coordinator));
}

/// `plan` crashed while `s0` ran, both snapshots from that observer call, restored
/// and resumed as documented by an executor set up by `tune`.
fn resumed_after_s0_crashed(plan: &Plan, tune: impl FnOnce(Executor) -> Executor) -> Recovered {
    let (_, saved) = persisted_run(plan);
    let k = first_call(&saved, 0, StepStatus::Running);
    recover_with(plan, &saved[k], &saved[k], Host::AsDocumented, tune)
}

/// Task ids the restored coordinator does not hold.
fn fresh_ids(e: Executor) -> Executor {
    e.with_task_ids(1 << 50)
}

/// Regression: a crash while `s0` runs, both snapshots from that observer call,
/// restored and resumed as documented. The fresh executor numbered its tasks from its
/// default first id again, which the restored coordinator still held for the
/// interrupted attempt, and the resume failed (the run lost with it).
#[test]
fn resume_does_not_reuse_the_task_id_of_an_interrupted_attempt() {
    let rec = resumed_after_s0_crashed(&chain(2, false, vec![2]), |e| e);
    match &rec.result {
        Ok(run) => assert_eq!(run.outcome(), Some(RunOutcome::Succeeded)),
        Err(e) => panic!("resume failed: {e}"),
    }
}

/// Regression: as above, with task ids the restored coordinator does not hold. The
/// run ended, but the interrupted attempt's task stayed assigned in the restored
/// coordinator for good, with its ledger allocation and its agent's slot.
#[test]
fn resume_frees_the_task_of_an_interrupted_attempt() {
    let rec = resumed_after_s0_crashed(&chain(2, false, vec![2]), fresh_ids);
    let run = rec.result.as_ref().unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    ok(check_nothing_leaked(&rec.coordinator));
}

/// Regression, the leak's consequence: with one slot, the slot the interrupted
/// attempt's task held was the only one, so the retry "found no agent with room" on
/// an idle agent and the step was abandoned.
#[test]
fn the_retry_of_an_interrupted_step_gets_its_agent() {
    let rec = resumed_after_s0_crashed(&chain(2, false, vec![1]), fresh_ids);
    let run = rec.result.as_ref().unwrap();
    assert_eq!(
        changes(run, 0),
        [
            "ready",
            "started",
            "interrupted",
            "ready",
            "started",
            "succeeded"
        ]
    );
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
}

/// Regression, the leak's consequence for claims: the interrupted attempt's task held
/// the step's exclusive claim, so the retry of the same step collided with it, waited
/// out the claim patience and was abandoned, its conflict left open.
#[test]
fn the_retry_of_an_interrupted_step_gets_its_claim() {
    let rec = resumed_after_s0_crashed(&chain(2, true, vec![2]), fresh_ids);
    let run = rec.result.as_ref().unwrap();
    assert_eq!(
        run.outcome(),
        Some(RunOutcome::Succeeded),
        "{:?}",
        changes(run, 0)
    );
    ok(check_nothing_leaked(&rec.coordinator));
}
// ----- snapshots of different moments -----

/// `s0 -> s1 (deploy) -> s2 (verify, two attempts)` over two agents of one slot each.
fn deploy_then_verify() -> Plan {
    let step = |deps: Vec<usize>, attempts: u32, duty: Duty| PlanStep {
        deps,
        condition: RunCondition::AllSucceeded,
        attempts,
        failing: BTreeSet::new(),
        hanging: BTreeSet::new(),
        duty,
        claim: false,
    };
    Plan {
        steps: vec![
            step(vec![], 1, Duty::Plain),
            step(vec![0], 1, Duty::Deploy),
            step(vec![1], 2, Duty::Verify),
        ],
        slots: vec![1, 1],
    }
}

/// Both snapshots of the observer call at which `verify` runs: its retry after the
/// crash goes to an agent other than the one that deployed.
#[test]
fn separation_of_duties_holds_across_a_crash() {
    let plan = deploy_then_verify();
    let (_, saved) = persisted_run(&plan);
    let k = first_call(&saved, 2, StepStatus::Running);
    let rec = recover(&plan, &saved[k], &saved[k], Host::Reconciling);
    let run = ok_run(&plan, &rec);
    // The interrupted attempt is made again, as attempt 1.
    assert_eq!(run.attempts("s2"), Some(1));
    ok(check_duties(&plan, &run));
}

/// [`check_run`] for a plain `#[test]`.
fn ok_run(plan: &Plan, rec: &Recovered) -> Run {
    check_run(plan, rec).unwrap_or_else(|e| panic!("{e}"))
}

/// An agent that records the task id of every piece of work it is given.
#[derive(Debug)]
struct Recorder(AgentId, Arc<Mutex<Vec<u64>>>);

#[async_trait::async_trait]
impl Agent for Recorder {
    fn id(&self) -> AgentId {
        self.0
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        self.1.lock().push(work.task().get());
        Ok(WorkOutput::success())
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("1.0"))
    }
}

/// Regression: a run finished, the host restarted from the coordinator's checkpoint
/// (which holds no task any more), and a new executor numbered its tasks from its
/// first id again: the second run's steps got the finished steps' ids, which the
/// host's own records (and an agent keying its effects by task) already held.
#[test]
fn a_restarted_host_never_issues_a_finished_tasks_id_again() {
    let clock = ManualClock::new(Timestamp::from_secs(1_000));
    let ops = Role::new("ops").unwrap();
    let workflow = Workflow::builder("two")
        .step(StepSpec::new("a").with_role(ops.clone()))
        .step(StepSpec::new("b").with_role(ops.clone()).after("a"))
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let coordinator = Arc::new(Coordinator::builder().clock(clock.clone()).build());
    coordinator
        .register_agent(AgentProfile::new(AgentId::new(1), "ops").with_role(ops))
        .unwrap();
    let first = Executor::new(Arc::clone(&coordinator), SimulatedTimer::new(clock.clone()))
        .with_agent(Arc::new(Recorder(AgentId::new(1), Arc::clone(&seen))));
    block_on(first.run(&workflow, "run-1", 1)).unwrap();
    let checkpoint: CoordinatorSnapshot =
        serde_json::from_str(&serde_json::to_string(&coordinator.snapshot()).unwrap()).unwrap();
    let before: Vec<u64> = seen.lock().clone();

    // The next process.
    let restored = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .restore(checkpoint)
            .unwrap(),
    );
    assert!(restored.assignments().is_empty() && restored.waiting().is_empty());
    let second = Executor::new(Arc::clone(&restored), SimulatedTimer::new(clock))
        .with_agent(Arc::new(Recorder(AgentId::new(1), Arc::clone(&seen))));
    block_on(second.run(&workflow, "run-2", 2)).unwrap();
    let after: Vec<u64> = seen.lock()[before.len()..].to_vec();
    assert_eq!(after.len(), 2);
    let highest = before.iter().max().unwrap();
    assert!(
        after.iter().all(|id| id > highest),
        "{before:?} then {after:?}"
    );
}

/// An agent that records each task it is given, and hangs while `hang` is set (the
/// process dies meanwhile); after a restart it cannot tell whether work finished, or,
/// `mute`, never answers when asked (its host gone for good, say).
#[derive(Debug)]
struct Recording {
    seen: Seen,
    hang: bool,
    mute: bool,
}

type Seen = Arc<Mutex<Vec<(String, concord::TaskId)>>>;

impl Recording {
    fn new(seen: &Seen, hang: bool) -> Arc<Self> {
        Arc::new(Recording {
            seen: Arc::clone(seen),
            hang,
            mute: false,
        })
    }

    fn mute(seen: &Seen, hang: bool) -> Arc<Self> {
        Arc::new(Recording {
            seen: Arc::clone(seen),
            hang,
            mute: true,
        })
    }
}

#[async_trait::async_trait]
impl Agent for Recording {
    fn id(&self) -> AgentId {
        AgentId::new(1)
    }
    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        let run = work.run().unwrap_or_default().to_owned();
        self.seen.lock().push((run, work.task()));
        if self.hang {
            futures::future::pending::<()>().await;
        }
        Ok(WorkOutput::success())
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("1"))
    }
    async fn recover(&self, _: WorkItem) -> Result<Option<WorkOutput>, AgentError> {
        if self.mute {
            futures::future::pending::<()>().await;
        }
        Ok(None)
    }
}

/// A one-step workflow for role `worker`, its step timing out after `timeout`.
fn one_step(timeout: Option<Duration>) -> Workflow {
    let mut step = StepSpec::new("a").with_role(Role::new("worker").unwrap());
    if let Some(after) = timeout {
        step = step.with_timeout(after);
    }
    Workflow::builder("one").step(step).build().unwrap()
}

/// Run `x` of `wf` started on agent 1 (role `worker`, `slots` slots), whose agent
/// hangs at its step, and the process crashed there: the coordinator restored from
/// its checkpoint taken before the run began (`older`) or at the crash, and the run
/// from what its observer saved.
fn crashed_mid_step(
    wf: &Workflow,
    clock: &ManualClock,
    slots: u32,
    older: bool,
    agent: Arc<dyn Agent>,
) -> (Arc<Coordinator>, Run) {
    let c = Arc::new(Coordinator::builder().clock(clock.clone()).build());
    let profile = AgentProfile::new(AgentId::new(1), "w1")
        .with_role(Role::new("worker").unwrap())
        .with_max_tasks(slots);
    c.register_agent(profile).unwrap();
    let before = c.snapshot();
    let saved: Arc<Mutex<Option<RunSnapshot>>> = Arc::default();
    let sink = Arc::clone(&saved);
    let ex = Executor::new(Arc::clone(&c), SimulatedTimer::new(clock.clone()))
        .with_agent(agent)
        .with_observer(move |run: &Run, _: &[RunEvent]| *sink.lock() = Some(run.snapshot()));
    let mut x = ex.run(wf, "x", 1);
    assert!(poll_once(&mut x).is_pending());
    // The coordinator as the crash left it (dropping the run's future would give
    // its tasks back, which a process that dies does not).
    let at_crash = c.snapshot();
    drop(x);
    drop(ex);
    let checkpoint = if older { before } else { at_crash };
    drop(c);
    let c = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .restore(checkpoint)
            .unwrap(),
    );
    let run = Run::restore(wf, saved.lock().clone().unwrap()).unwrap();
    (c, run)
}

/// Polls `f` once, with a waker that does nothing.
fn poll_once<F: Future + Unpin>(f: &mut F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
    std::pin::Pin::new(f).poll(&mut cx)
}

/// The coordinator's checkpoint older than the run's: the restored coordinator never
/// heard of the task the run's step names. The attempt made again gets a new task
/// id, and a run started in the new process (given that same id, as far as the
/// coordinator knew) keeps its task when the old run resumes.
#[test]
fn a_run_resumed_over_an_older_coordinator_checkpoint_reuses_no_task_id() {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let wf = one_step(None);
    let seen = Seen::default();
    for cross in [false, true] {
        seen.lock().clear();
        let (c, run) = crashed_mid_step(&wf, &clock, 1, true, Recording::new(&seen, true));
        let first = run.task(wf.step("a").unwrap()).expect("step a is bound");
        let ex = Executor::new(Arc::clone(&c), SimulatedTimer::new(clock.clone()))
            .with_agent(Recording::new(&seen, cross));
        if cross {
            // Run y starts first, and its task takes the id run x's step names.
            let mut y = ex.run(&wf, "y", 2);
            assert!(poll_once(&mut y).is_pending());
            let y_task = c.assignments()[0].task.id();
            let mut x = ex.resume(run);
            let _ = poll_once(&mut x);
            // Run x's resume left run y's task alone: y still runs on the one slot.
            let running: Vec<(concord::TaskId, Option<String>)> = (c.assignments().iter())
                .map(|a| (a.task.id(), a.group.as_deref().map(str::to_owned)))
                .collect();
            assert_eq!(running, [(y_task, Some("y".to_owned()))]);
            c.with_registry(|r| assert_eq!(r.get(AgentId::new(1)).unwrap().running(), 1));
        } else {
            let run = block_on(ex.resume(run)).unwrap();
            assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
        }
        // Every attempt of run x had a task id of its own.
        let x_tasks: Vec<concord::TaskId> = (seen.lock().iter())
            .filter(|(run, _)| run == "x")
            .map(|(_, t)| *t)
            .collect();
        let distinct: BTreeSet<_> = x_tasks.iter().collect();
        assert_eq!(distinct.len(), x_tasks.len(), "{x_tasks:?}");
        assert_eq!(x_tasks[0], first);
    }
}

/// A run handed to `resume` holds its task ids from that moment: a new run started
/// after it, and polled first, is not given the id of its interrupted attempt (an
/// agent answering `recover` by task id would credit the old step with the new
/// run's work).
#[test]
fn a_resumed_run_holds_its_task_ids_before_it_is_first_polled() {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let wf = one_step(None);
    let seen = Seen::default();
    // The coordinator's checkpoint is older than the run's: it never heard of x.
    let (c, run) = crashed_mid_step(&wf, &clock, 2, true, Recording::new(&seen, true));
    let first = run.task(wf.step("a").unwrap()).expect("step a is bound");
    let ex = Executor::new(Arc::clone(&c), SimulatedTimer::new(clock.clone()))
        .with_agent(Recording::new(&seen, true));
    let mut x = ex.resume(run);
    let mut y = ex.run(&wf, "y", 2);
    assert!(poll_once(&mut y).is_pending());
    let y_task = (c.assignments().iter())
        .find(|a| a.group.as_deref() == Some("y"))
        .map(|a| a.task.id())
        .expect("y runs");
    assert!(y_task > first, "{y_task} after {first}");
    assert!(poll_once(&mut x).is_pending());
    let ids: BTreeSet<concord::TaskId> = c.assignments().iter().map(|a| a.task.id()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
}

/// An agent that answers nothing when asked whether an interrupted attempt finished
/// holds a resumed run no longer than the step's timeout: the attempt is then made
/// again.
#[test]
fn an_agent_that_never_answers_recover_holds_a_resumed_run_only_as_long_as_the_step_timeout() {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let wf = one_step(Some(Duration::from_secs(30)));
    let seen = Seen::default();
    let (c, run) = crashed_mid_step(&wf, &clock, 1, false, Recording::mute(&seen, true));
    let ex = Executor::new(Arc::clone(&c), SimulatedTimer::new(clock.clone()))
        .with_agent(Recording::mute(&seen, false));
    let start = c.now();
    let run = block_on(ex.resume(run)).unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(c.now().duration_since(start), Duration::from_secs(30));
    // Made again after the wait, under a new task id; the slot is free at the end.
    let tasks: Vec<concord::TaskId> = seen.lock().iter().map(|(_, t)| *t).collect();
    assert_eq!(tasks.len(), 2);
    assert_ne!(tasks[0], tasks[1]);
    assert!(c.assignments().is_empty());
}

/// A resumed run cancelled ends cancelled at once, runs nothing again and gives back
/// the task the coordinator held for it: cancelled while its agent is asked about the
/// interrupted attempt and never answers (the step without a timeout), and cancelled
/// before it is first polled (how a host lets go of a restored run it does not want).
#[test]
fn a_resumed_run_cancelled_ends_at_once_and_holds_nothing() {
    for (mute, before_first_poll) in [(true, false), (false, true)] {
        let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
        let wf = one_step(None);
        let seen = Seen::default();
        let agent = |hang| match mute {
            true => Recording::mute(&seen, hang),
            false => Recording::new(&seen, hang),
        };
        let (c, run) = crashed_mid_step(&wf, &clock, 1, false, agent(true));
        assert_eq!(c.assignments().len(), 1, "the interrupted attempt's task");
        let ex = Executor::new(Arc::clone(&c), SimulatedTimer::new(clock.clone()))
            .with_agent(agent(false));
        let mut x = ex.resume(run);
        let handle = x.handle();
        if !before_first_poll {
            assert!(
                poll_once(&mut x).is_pending(),
                "waits for the agent's answer"
            );
        }
        handle.cancel();
        let std::task::Poll::Ready(run) = poll_once(&mut x) else {
            panic!("still waiting for the agent after the cancel");
        };
        let run = run.unwrap();
        assert_eq!(run.outcome(), Some(RunOutcome::Cancelled));
        assert_eq!(
            run.status(wf.step("a").unwrap()),
            Some(StepStatus::Cancelled)
        );
        assert!(c.assignments().is_empty() && c.waiting().is_empty());
        c.with_registry(|r| assert_eq!(r.get(AgentId::new(1)).unwrap().running(), 0));
        assert_eq!(seen.lock().len(), 1, "not made again");
    }
}

// ----- separation of duties after an attempt that did not count -----

/// A worker whose `deploy` hangs (never answers) while `hang_deploy` is set, and
/// which, when asked after a crash, says an interrupted attempt did not happen.
#[derive(Debug)]
struct DutyWorker {
    id: AgentId,
    hang_deploy: bool,
    did: Arc<Mutex<Vec<(String, AgentId)>>>,
}

#[async_trait::async_trait]
impl Agent for DutyWorker {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        let step = work.step().unwrap_or_default().to_owned();
        if step == "deploy" && self.hang_deploy {
            return futures::future::pending().await;
        }
        self.did.lock().push((step, self.id));
        Ok(WorkOutput::success())
    }

    async fn recover(&self, _: WorkItem) -> Result<Option<WorkOutput>, AgentError> {
        Ok(None)
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("duty worker"))
    }
}

/// `deploy -> verify`, which the default policies keep on different agents, for two
/// workers of one slot each.
fn release_of_two() -> (Workflow, impl Fn(&ManualClock) -> Arc<Coordinator>) {
    let worker = Role::new("worker").unwrap();
    let wf = Workflow::builder("release")
        .step(StepSpec::new("deploy").with_role(worker.clone()))
        .step(
            StepSpec::new("verify")
                .with_role(worker.clone())
                .after("deploy"),
        )
        .build()
        .unwrap();
    let fleet = move |clock: &ManualClock| {
        let c = Arc::new(Coordinator::builder().clock(clock.clone()).build());
        for id in 1..=2 {
            let profile = AgentProfile::new(AgentId::new(id), format!("w{id}"))
                .with_role(worker.clone())
                .with_max_tasks(1);
            c.register_agent(profile).unwrap();
        }
        c
    };
    (wf, fleet)
}

fn duty_executor(
    c: &Arc<Coordinator>,
    clock: &ManualClock,
    hanging: Option<AgentId>,
    did: &Arc<Mutex<Vec<(String, AgentId)>>>,
) -> Executor {
    let mut ex = Executor::new(Arc::clone(c), SimulatedTimer::new(clock.clone()));
    for id in 1..=2 {
        let id = AgentId::new(id);
        ex = ex.with_agent(Arc::new(DutyWorker {
            id,
            hang_deploy: hanging == Some(id),
            did: Arc::clone(did),
        }));
    }
    ex
}

/// `run` succeeded, agent 2 deploying (the attempt made again) and agent 1 verifying.
fn deployed_by_2_verified_by_1(run: &Run, did: &Mutex<Vec<(String, AgentId)>>) {
    assert_eq!(
        run.outcome(),
        Some(RunOutcome::Succeeded),
        "{:?}",
        run.history()
    );
    let by = |step: &str, agent| (step.to_owned(), AgentId::new(agent));
    assert_eq!(*did.lock(), [by("deploy", 2), by("verify", 1)]);
}

/// The deploy's first agent left service mid-step: the attempt was handed back and
/// made on the other agent, so the first may verify. It was counted as a deployer
/// too, and with two agents no agent was left to verify: the run failed.
#[test]
fn an_attempt_handed_back_is_no_duty_done() {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let (wf, fleet) = release_of_two();
    let c = fleet(&clock);
    let did = Arc::default();
    let ex = duty_executor(&c, &clock, Some(AgentId::new(1)), &did);
    let mut run = ex.run(&wf, "rel", 1);
    assert!(poll_once(&mut run).is_pending());
    assert_eq!(c.assignments()[0].agent, AgentId::new(1));
    c.set_agent_status(AgentId::new(1), concord::AgentStatus::Offline)
        .unwrap();
    assert!(poll_once(&mut run).is_pending());
    c.set_agent_status(AgentId::new(1), concord::AgentStatus::Available)
        .unwrap();
    deployed_by_2_verified_by_1(&block_on(run).unwrap(), &did);
    assert!(
        c.snapshot().duties.is_empty(),
        "the run's duties are forgotten"
    );
}

/// The process crashed while the first agent deployed, and that agent said the
/// attempt never happened: the deploy is made again on the other agent (the first
/// is drained for a moment), and the first may verify. It was counted as a deployer
/// too, and the run failed for the crash.
#[test]
fn an_attempt_a_crash_interrupted_is_no_duty_done() {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let (wf, fleet) = release_of_two();
    let c = fleet(&clock);
    let did = Arc::default();
    let saved: Arc<Mutex<Option<RunSnapshot>>> = Arc::default();
    let sink = Arc::clone(&saved);
    let ex = duty_executor(&c, &clock, Some(AgentId::new(1)), &did)
        .with_observer(move |run: &Run, _: &[RunEvent]| *sink.lock() = Some(run.snapshot()));
    let mut run = ex.run(&wf, "rel", 1);
    assert!(poll_once(&mut run).is_pending());
    assert_eq!(c.assignments()[0].agent, AgentId::new(1));
    // The process dies: what it last saved is all there is.
    let checkpoint = serde_json::to_string(&c.snapshot()).unwrap();
    std::mem::forget(run);
    drop(ex);
    let c = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .restore(serde_json::from_str(&checkpoint).unwrap())
            .unwrap(),
    );
    let saved = saved.lock().clone().unwrap();
    c.set_agent_status(AgentId::new(1), concord::AgentStatus::Busy)
        .unwrap();
    let ex = duty_executor(&c, &clock, None, &did);
    let mut resumed = ex.resume(Run::restore(&wf, saved).unwrap());
    assert!(poll_once(&mut resumed).is_pending());
    c.set_agent_status(AgentId::new(1), concord::AgentStatus::Available)
        .unwrap();
    deployed_by_2_verified_by_1(&block_on(resumed).unwrap(), &did);
}

// ----- two runs resumed at once on two threads -----

/// Counts the attempts at work on agent#1 at once, and the most.
#[derive(Debug, Default)]
struct AtOnce {
    now: std::sync::atomic::AtomicU32,
    most: std::sync::atomic::AtomicU32,
}

/// Works for ever (until dropped) on agent#1; an interrupted attempt did not finish.
#[derive(Debug)]
struct Forever(Arc<AtOnce>);

struct Leaving(Arc<AtOnce>);

impl Drop for Leaving {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Agent for Forever {
    fn id(&self) -> AgentId {
        AgentId::new(1)
    }

    async fn execute(&self, _: WorkItem) -> Result<WorkOutput, AgentError> {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.0.now.fetch_add(1, SeqCst) + 1;
        self.0.most.fetch_max(n, SeqCst);
        let _leaving = Leaving(Arc::clone(&self.0));
        futures::future::pending().await
    }

    async fn recover(&self, _: WorkItem) -> Result<Option<WorkOutput>, AgentError> {
        Ok(None)
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("forever"))
    }
}

/// Found by a user's crash sweep on a multi-threaded runtime: run A's step ran on
/// the one slot of agent#1 and run B's waited, the process crashed, and both runs
/// were resumed at once on two threads. A's resume released its interrupted task, so
/// the coordinator started B's and told B so; B, between dropping its old notices
/// and looking at the coordinator, saw its task started there and launched it, then
/// read the notice, took the task for another run's and released it under its
/// agent: A's attempt made again got the slot, and agent#1 ran two at once. The
/// window is microseconds wide, so the first polls are staggered over a range of
/// offsets; without the fix about one in a thousand hit it.
#[test]
fn two_runs_resumed_at_once_never_share_a_slot() {
    let worker = Role::new("worker").unwrap();
    let wf = Workflow::builder("one")
        .step(StepSpec::new("work").with_role(worker.clone()))
        .build()
        .unwrap();
    // The crash: A's step running on agent#1, B's waiting for its slot.
    let clock = ManualClock::new(Timestamp::from_secs(1_000));
    let c = Arc::new(Coordinator::builder().clock(clock.clone()).build());
    let profile = AgentProfile::new(AgentId::new(1), "w1")
        .with_role(worker)
        .with_max_tasks(1);
    c.register_agent(profile).unwrap();
    let runs: Arc<Mutex<BTreeMap<String, RunSnapshot>>> = Arc::default();
    let sink = Arc::clone(&runs);
    let ex = Arc::new(
        Executor::new(Arc::clone(&c), SimulatedTimer::new(clock))
            .with_agent(Arc::new(Forever(Arc::default())))
            .with_observer(move |run: &Run, _: &[RunEvent]| {
                sink.lock().insert(run.id().to_owned(), run.snapshot());
            }),
    );
    let mut a = Arc::clone(&ex).run_owned(&wf, "A", 1);
    let mut b = Arc::clone(&ex).run_owned(&wf, "B", 2);
    assert!(poll_once(&mut a).is_pending() && poll_once(&mut b).is_pending());
    let checkpoint = c.snapshot();
    let runs = runs.lock().clone();
    std::mem::forget((a, b));
    for i in 0..1_200u64 {
        let clock = ManualClock::new(Timestamp::from_secs(1_001));
        let c = Coordinator::builder()
            .clock(clock.clone())
            .restore(checkpoint.clone())
            .unwrap();
        let at_once = Arc::new(AtOnce::default());
        let ex = Arc::new(
            Executor::new(Arc::new(c), SimulatedTimer::new(clock))
                .with_agent(Arc::new(Forever(Arc::clone(&at_once)))),
        );
        let resume = |id: &str| {
            let run = Run::restore(&wf, runs[id].clone()).unwrap();
            Arc::clone(&ex).resume_owned(run)
        };
        let (mut a, mut b) = (resume("A"), resume("B"));
        // One of the two first polls starts up to some microseconds after the other.
        let k = i % 400;
        let (wait_a, wait_b) = if k < 200 {
            (k * 10, 0)
        } else {
            (0, (k - 200) * 10)
        };
        let start = Arc::new(std::sync::Barrier::new(2));
        let first_poll = |mut run: concord::workflow::RunFuture<'static>, wait: u64| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                for n in 0..wait {
                    std::hint::black_box(n);
                }
                let _ = poll_once(&mut run);
                run
            })
        };
        let (ta, tb) = (first_poll(a, wait_a), first_poll(b, wait_b));
        (a, b) = (ta.join().unwrap(), tb.join().unwrap());
        for _ in 0..3 {
            let _ = (poll_once(&mut b), poll_once(&mut a));
        }
        let most = at_once.most.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            most <= 1,
            "iteration {i}: agent#1 ran {most} attempts at once"
        );
    }
}
