//! Several workflow runs at once on a fleet too small for them, as a host's
//! orchestrator runs them: steps wait in the coordinator for room instead of
//! failing, one run's cancellation touches no other, safe mode pauses runs, a step
//! blocked on a claim runs once a human approves, and an agent leaving service hands
//! its step to another without a failure.
//!
//! Everything runs on a simulated clock: agents "work" by sleeping on the
//! [`SimulatedTimer`], so the scenes are deterministic and take no wall-clock time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use concord::agent::{Agent, AgentError, AgentHealth, AgentStatus, WorkItem, WorkOutput};
use concord::conflict::HumanDecision;
use concord::coordinator::{Coordinator, Decider, Driver, OnAgentLoss, SafeModeRules};
use concord::policy::SystemMode;
use concord::workflow::{
    Executor, Run, RunCondition, RunOutcome, SimulatedTimer, StepChange, StepSpec, StepStatus,
    Timer, Workflow,
};
use concord::{
    AgentId, AgentProfile, Claim, Clock, ManualClock, Requirements, Role, RuleBasedAnalyzer,
    RuleSet, Task, TaskId, Timestamp,
};
use futures::channel::oneshot;
use futures::executor::block_on;
use futures::future::join_all;
use parking_lot::Mutex;

use crate::executor::{Deferred, poll_once};
use crate::sim_worker;
use sim_worker::{Books, SimWorker};

fn role(name: &str) -> Role {
    Role::new(name).unwrap()
}

/// A coordinator with `workers` agents of role `worker`, each with `slots` slots, and
/// an executor over them whose agents work `work` per step.
struct Fleet {
    clock: ManualClock,
    coordinator: Arc<Coordinator>,
    executor: Executor,
    books: Arc<Mutex<Books>>,
}

fn fleet(workers: u64, slots: u32, work: Duration) -> Fleet {
    fleet_losing(workers, slots, work, OnAgentLoss::default())
}

/// [`fleet`], with a coordinator that does `on_loss` with the tasks of an agent
/// leaving service.
fn fleet_losing(workers: u64, slots: u32, work: Duration, on_loss: OnAgentLoss) -> Fleet {
    let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    let coordinator = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
            .on_agent_loss(on_loss)
            .safe_mode_rules(SafeModeRules::none())
            .unwrap()
            .build(),
    );
    let timer = SimulatedTimer::new(clock.clone());
    let books = Arc::new(Mutex::new(Books::default()));
    let mut executor = Executor::new(Arc::clone(&coordinator), timer.clone());
    for id in 1..=workers {
        let id = AgentId::new(id);
        coordinator
            .register_agent(
                AgentProfile::new(id, format!("worker-{id}"))
                    .with_role(role("worker"))
                    .with_max_tasks(slots),
            )
            .unwrap();
        executor = executor.with_agent(Arc::new(SimWorker::new(
            id,
            &clock,
            Arc::new(move |_| work),
            &books,
        )));
    }
    Fleet {
        clock,
        coordinator,
        executor,
        books,
    }
}

/// fetch, then three hashes at once, then a join and a publish: six steps, up to
/// three at once.
fn fan_out() -> Workflow {
    let step = |name: &str| StepSpec::new(name).with_role(role("worker"));
    Workflow::builder("fan-out")
        .step(step("fetch"))
        .step(step("hash_a").after("fetch"))
        .step(step("hash_b").after("fetch"))
        .step(step("hash_c").after("fetch"))
        .step(step("join").after("hash_a").after("hash_b").after("hash_c"))
        .step(step("publish").after("join"))
        .build()
        .unwrap()
}

/// Task 1, work outside any run on one worker slot, holding `claim` if any.
fn outside_work(claim: Option<Claim>) -> Task {
    let mut needs = Requirements::new().with_role(role("worker"));
    if let Some(claim) = claim {
        needs = needs.with_claim(claim);
    }
    Task::new(TaskId::new(1), "maintenance", "outside work").with_requirements(needs)
}

/// Outside work (task 1) holds `env/staging` exclusively; the claim, for a step.
fn staging_held_outside(f: &Fleet) -> Claim {
    let env = Claim::exclusive("env/staging");
    let held = f
        .coordinator
        .assign(outside_work(Some(env.clone())))
        .unwrap();
    assert!(held.assignment().is_some());
    env
}

/// A human who, at `at`, gives `decision` on the one open conflict.
async fn human_decides(f: &Fleet, at: Timestamp, decision: HumanDecision) {
    SimulatedTimer::new(f.clock.clone()).sleep_until(at).await;
    let open = f.coordinator.open_conflicts();
    assert_eq!(open.len(), 1, "{open:?}");
    f.coordinator
        .decide(open[0].conflict.id(), decision, Decider::Human)
        .unwrap();
}

/// Nothing of any run is left in the coordinator.
fn assert_idle(coordinator: &Coordinator) {
    assert!(coordinator.assignments().is_empty(), "tasks left running");
    assert!(coordinator.waiting().is_empty(), "tasks left waiting");
    assert!(
        coordinator.open_conflicts().is_empty(),
        "conflicts left open"
    );
}

/// The scene of the issue that made runs wait instead of failing: 4 runs at once,
/// 20 rounds, on 3 workers of 2 slots each. No run fails, every step of every run
/// is executed exactly once, and no worker ever runs more than its 2 slots.
#[test]
fn four_runs_at_once_on_three_workers_all_succeed() {
    let f = fleet(3, 2, Duration::from_millis(500));
    let workflow = fan_out();
    let mut runs: Vec<Run> = Vec::new();
    for round in 0..20 {
        let ids: Vec<String> = (0..4).map(|i| format!("round-{round}-run-{i}")).collect();
        let futures = ids
            .iter()
            .enumerate()
            .map(|(i, id)| f.executor.run(&workflow, id, i as u64));
        for run in block_on(join_all(futures)) {
            runs.push(run.unwrap());
        }
        assert_idle(&f.coordinator);
    }
    assert_eq!(runs.len(), 80);
    for run in &runs {
        assert_eq!(run.outcome(), Some(RunOutcome::Succeeded), "{}", run.id());
        for (step, _) in workflow.steps() {
            assert_eq!(
                run.attempts(step),
                Some(1),
                "{} {:?}",
                run.id(),
                run.name(step)
            );
        }
    }
    let books = f.books.lock();
    // Each step once: 80 runs x 6 steps.
    assert_eq!(books.by_task.len(), 80 * 6);
    assert!(books.by_task.values().all(|&n| n == 1));
    // The fleet was used, and never beyond its slots.
    assert_eq!(books.peak.len(), 3);
    assert!(books.peak.values().all(|&p| p <= 2), "{:?}", books.peak);
    assert!(books.peak.values().any(|&p| p == 2), "{:?}", books.peak);
    // The runs had to wait for each other: 4 runs of up to 3 parallel steps on 6
    // slots cannot all go at full width.
    let waited = runs
        .iter()
        .any(|r| concord::workflow::run_duration(r) > Duration::from_millis(4 * 500));
    assert!(waited, "no run ever waited for a slot");
}

/// A one-step run on a fleet kept busy by other work waits for the slot and runs
/// when it frees, instead of failing at once.
#[test]
fn a_step_waits_for_a_slot_held_by_outside_work() {
    let f = fleet(1, 1, Duration::from_millis(10));
    let held = f.coordinator.assign(outside_work(None)).unwrap();
    assert!(held.assignment().is_some());
    let workflow = Workflow::builder("one")
        .step(StepSpec::new("only").with_role(role("worker")))
        .build()
        .unwrap();
    let coordinator = Arc::clone(&f.coordinator);
    let clock = f.clock.clone();
    let freed_at = clock.now() + Duration::from_millis(500);
    let timer = SimulatedTimer::new(clock.clone());
    // The outside work ends 500 ms later.
    let outside_ends = async {
        timer.sleep_until(freed_at).await;
        coordinator.complete(TaskId::new(1), true, None).unwrap();
    };
    let (run, ()) = block_on(futures::future::join(
        f.executor.run(&workflow, "patient", 1),
        outside_ends,
    ));
    let run = run.unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    let started = run
        .history()
        .iter()
        .find(|e| e.change == StepChange::Started)
        .unwrap();
    assert!(
        started.at >= freed_at,
        "started at {} before {freed_at}",
        started.at
    );
    assert_idle(&f.coordinator);
}

/// Cancelling one run ends it at once and touches no other run of the executor; a
/// run started afterwards is not cancelled.
#[test]
fn cancelling_one_run_leaves_the_others_alone() {
    let f = fleet(3, 2, Duration::from_millis(500));
    let workflow = fan_out();
    let doomed = f.executor.run(&workflow, "doomed", 1);
    let handle = doomed.handle();
    let others: Vec<_> = (0..3)
        .map(|i| f.executor.run(&workflow, &format!("other-{i}"), i))
        .collect();
    let timer = SimulatedTimer::new(f.clock.clone());
    let cancel_at = f.clock.now() + Duration::from_millis(700);
    let canceller = async {
        timer.sleep_until(cancel_at).await;
        handle.cancel();
    };
    let (doomed, others, ()) =
        block_on(futures::future::join3(doomed, join_all(others), canceller));
    let doomed = doomed.unwrap();
    assert_eq!(doomed.outcome(), Some(RunOutcome::Cancelled));
    for run in others {
        assert_eq!(run.unwrap().outcome(), Some(RunOutcome::Succeeded));
    }
    // Nothing stays cancelled.
    let later = block_on(f.executor.run(&workflow, "later", 9)).unwrap();
    assert_eq!(later.outcome(), Some(RunOutcome::Succeeded));
    assert_idle(&f.coordinator);
}

/// Safe mode pauses runs: their steps wait, and go on when normal mode returns. The
/// rollback of a failing run is not abandoned either.
#[test]
fn safe_mode_pauses_runs_until_normal_mode() {
    let f = fleet(2, 2, Duration::from_millis(100));
    let workflow = fan_out();
    f.coordinator.set_mode(SystemMode::SafeMode);
    let timer = SimulatedTimer::new(f.clock.clone());
    let back_at = f.clock.now() + Duration::from_secs(60);
    let coordinator = Arc::clone(&f.coordinator);
    let operator = async {
        timer.sleep_until(back_at).await;
        coordinator.set_mode(SystemMode::Normal);
    };
    let running = f.executor.run(&workflow, "paused", 1);
    let handle = running.handle();
    let (run, ()) = block_on(futures::future::join(running, operator));
    let run = run.unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    let first_start = run
        .history()
        .iter()
        .find(|e| e.change == StepChange::Started)
        .unwrap();
    assert!(first_start.at >= back_at);
    assert_eq!(handle.progress().outcome, Some(RunOutcome::Succeeded));
    assert_eq!(handle.progress().finished, 6);
    assert_idle(&f.coordinator);
}

/// A step whose claim collides with outside work waits on the conflict; a human's
/// approval lets it run beside the holder, and the run succeeds.
#[test]
fn a_step_blocked_on_a_claim_runs_once_a_human_approves() {
    let f = fleet(2, 2, Duration::from_millis(100));
    let env = staging_held_outside(&f);
    let workflow = Workflow::builder("deploy")
        .step(
            StepSpec::new("deploy")
                .with_role(role("worker"))
                .with_claim(env),
        )
        .step(
            StepSpec::new("verify")
                .with_role(role("worker"))
                .after("deploy"),
        )
        .build()
        .unwrap();
    let decide_at = f.clock.now() + Duration::from_secs(120);
    let human = human_decides(&f, decide_at, HumanDecision::Approve);
    let (run, ()) = block_on(futures::future::join(
        f.executor.run(&workflow, "approved", 1),
        human,
    ));
    let run = run.unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(run.attempts("deploy"), Some(1));
    let started = run
        .history()
        .iter()
        .find(|e| e.change == StepChange::Started)
        .unwrap();
    assert!(started.at >= decide_at);
    // The outside work still runs; the run's own tasks are gone.
    assert_eq!(f.coordinator.assignments().len(), 1);
    assert!(f.coordinator.waiting().is_empty());
}

/// A human's denial fails the blocked step with the reason, and the run's failure
/// handler runs.
#[test]
fn a_denied_step_fails_and_its_rollback_runs() {
    let f = fleet(2, 2, Duration::from_millis(100));
    let env = staging_held_outside(&f);
    let workflow = Workflow::builder("deploy")
        .step(
            StepSpec::new("deploy")
                .with_role(role("worker"))
                .with_claim(env),
        )
        .step(
            StepSpec::new("rollback")
                .with_role(role("worker"))
                .after("deploy")
                .with_condition(RunCondition::AnyFailed),
        )
        .build()
        .unwrap();
    let human = human_decides(
        &f,
        f.clock.now() + Duration::from_secs(30),
        HumanDecision::Deny,
    );
    let (run, ()) = block_on(futures::future::join(
        f.executor.run(&workflow, "denied", 1),
        human,
    ));
    let run = run.unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Failed));
    assert_eq!(run.status("deploy"), Some(StepStatus::Failed));
    assert_eq!(run.status("rollback"), Some(StepStatus::Succeeded));
    let why = crate::history::abandoned_reason(&run);
    assert!(why.contains("denied"), "{why}");
}

/// An agent going offline mid-step hands the step back: it runs on another agent as
/// the same attempt (no failure, no retry used), and the run succeeds.
#[test]
fn an_agent_leaving_service_hands_its_step_to_another() {
    let f = fleet(2, 1, Duration::from_secs(10));
    let workflow = Workflow::builder("one")
        .step(StepSpec::new("long").with_role(role("worker")))
        .build()
        .unwrap();
    let timer = SimulatedTimer::new(f.clock.clone());
    let coordinator = Arc::clone(&f.coordinator);
    let leave_at = f.clock.now() + Duration::from_secs(3);
    let outage = async {
        timer.sleep_until(leave_at).await;
        let running = coordinator.assignments();
        assert_eq!(running.len(), 1);
        let agent = running[0].agent;
        coordinator
            .set_agent_status(agent, AgentStatus::Offline)
            .unwrap();
        agent
    };
    let (run, lost) = block_on(futures::future::join(
        f.executor.run(&workflow, "handed-back", 1),
        outage,
    ));
    let run = run.unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(run.attempts("long"), Some(1));
    assert_ne!(run.agent("long"), Some(lost));
    let changes: Vec<String> = run.history().iter().map(|e| e.change.to_string()).collect();
    assert_eq!(
        changes,
        [
            "ready",
            "started",
            &format!("interrupted: {lost} left service"),
            "ready",
            "started",
            "succeeded"
        ]
    );
    assert_idle(&f.coordinator);
}

/// An agent that leaves service and comes straight back (a health check failed
/// once) while a step runs on it: the step's task is interrupted and keeps the
/// agent's one slot until its attempt has stopped, so the run waiting for that slot
/// does not start beside it. Found by an outside trial, where a one-slot agent ran
/// two steps at once: the slot went to the waiting run the moment the agent came
/// back, before the first run had dropped its attempt. With the task requeued, the
/// interrupted step runs again; with it failed, its run fails.
#[test]
fn an_agent_back_at_once_runs_no_second_step_beside_the_first() {
    for on_loss in [OnAgentLoss::Requeue, OnAgentLoss::Fail] {
        let f = fleet_losing(1, 1, Duration::from_secs(10), on_loss);
        let workflow = Workflow::builder("one")
            .step(StepSpec::new("work").with_role(role("worker")))
            .build()
            .unwrap();
        let timer = SimulatedTimer::new(f.clock.clone());
        let coordinator = Arc::clone(&f.coordinator);
        let flap_at = f.clock.now() + Duration::from_secs(3);
        let one = AgentId::new(1);
        let flap = async {
            timer.sleep_until(flap_at).await;
            assert_eq!(coordinator.assignments().len(), 1);
            assert_eq!(coordinator.waiting().len(), 1);
            coordinator
                .set_agent_status(one, AgentStatus::Offline)
                .unwrap();
            coordinator
                .set_agent_status(one, AgentStatus::Available)
                .unwrap();
            // The first run's task still holds the slot.
            assert_eq!(coordinator.assignments().len(), 1);
        };
        // The second run asks a second later, and is polled before the first after
        // the flap: before the fix, with the first run's task failed, it took the
        // slot and started while the first run's attempt still lived.
        let later = f.clock.now() + Duration::from_secs(1);
        let second = async {
            timer.sleep_until(later).await;
            f.executor.run(&workflow, "second", 2).await
        };
        let (_, second, first) = block_on(futures::future::join3(
            flap,
            second,
            f.executor.run(&workflow, "first", 1),
        ));
        let (first, second) = (first.unwrap(), second.unwrap());
        let books = f.books.lock();
        assert_eq!(books.peak.get(&one), Some(&1), "{:?}", books.peak);
        assert_eq!(second.outcome(), Some(RunOutcome::Succeeded));
        match on_loss {
            OnAgentLoss::Requeue => {
                assert_eq!(first.outcome(), Some(RunOutcome::Succeeded));
                let changes: Vec<String> = first
                    .history()
                    .iter()
                    .map(|e| e.change.to_string())
                    .collect();
                assert_eq!(
                    changes,
                    [
                        "ready",
                        "started",
                        &format!("interrupted: {one} left service"),
                        "ready",
                        "started",
                        "succeeded"
                    ]
                );
            }
            _ => assert_eq!(first.outcome(), Some(RunOutcome::Failed)),
        }
        // Each step's work was done once, the interrupted attempt's not at all.
        let done = if on_loss == OnAgentLoss::Requeue {
            2
        } else {
            1
        };
        assert_eq!(books.by_task.len(), done, "{:?}", books.by_task);
        assert!(
            books.by_task.values().all(|&n| n == 1),
            "{:?}",
            books.by_task
        );
        drop(books);
        assert_idle(&f.coordinator);
    }
}

/// Two workers whose health a driver checks every 30 s (5 s to answer), and the
/// switches that make each stop answering.
fn health_checked_pair() -> (ManualClock, Arc<Coordinator>, Driver, Vec<Arc<AtomicBool>>) {
    let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    let coordinator = Arc::new(Coordinator::builder().clock(clock.clone()).build());
    let timer = SimulatedTimer::new(clock.clone());
    let books = Arc::new(Mutex::new(Books::default()));
    let mut agents: Vec<Arc<dyn Agent>> = Vec::new();
    let mut switches = Vec::new();
    for id in 1..=2 {
        let id = AgentId::new(id);
        coordinator
            .register_agent(AgentProfile::new(id, "w").with_role(role("worker")))
            .unwrap();
        let worker = SimWorker::new(id, &clock, Arc::new(|_| Duration::from_secs(1)), &books);
        switches.push(Arc::clone(&worker.up));
        agents.push(Arc::new(worker));
    }
    let driver = Driver::new(Arc::clone(&coordinator), timer).with_health_checks(
        agents,
        Duration::from_secs(30),
        Duration::from_secs(5),
    );
    (clock, coordinator, driver, switches)
}

/// The drain outlives the driver and the coordinator: a drained agent that failed a
/// check before a crash comes back drained (busy, held, no new work) when a driver
/// over the restored coordinator finds it well, not available in the middle of its
/// maintenance window.
#[test]
fn a_drained_agent_taken_out_before_a_crash_comes_back_drained() {
    let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    let books = Arc::new(Mutex::new(Books::default()));
    let one = AgentId::new(1);
    let worker = Arc::new(SimWorker::new(
        one,
        &clock,
        Arc::new(|_| Duration::from_secs(1)),
        &books,
    ));
    let up = Arc::clone(&worker.up);
    let driver_of = |c: &Arc<Coordinator>| {
        Driver::new(Arc::clone(c), SimulatedTimer::new(clock.clone())).with_health_checks(
            [Arc::clone(&worker) as Arc<dyn Agent>],
            Duration::from_secs(30),
            Duration::from_secs(5),
        )
    };
    let c = Arc::new(Coordinator::builder().clock(clock.clone()).build());
    c.register_agent(AgentProfile::new(one, "w").with_role(role("worker")))
        .unwrap();
    c.set_agent_status(one, AgentStatus::Busy).unwrap();
    up.store(false, Ordering::SeqCst);
    block_on(driver_of(&c).turn());
    let drain = |c: &Coordinator| {
        c.with_registry(|r| {
            Ok::<_, concord::agent::RegistryError>((
                r.status(one)?,
                r.is_held_busy(one)?,
                r.is_drained(one)?,
            ))
        })
        .unwrap()
    };
    assert_eq!(drain(&c), (AgentStatus::Unhealthy, false, true));
    // The host crashes; it restores the coordinator and starts a new driver.
    let json = serde_json::to_string(&c.snapshot()).unwrap();
    drop(c);
    let r = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .restore(serde_json::from_str(&json).unwrap())
            .unwrap(),
    );
    assert_eq!(drain(&r), (AgentStatus::Unhealthy, false, true));
    up.store(true, Ordering::SeqCst);
    block_on(driver_of(&r).turn());
    assert_eq!(drain(&r), (AgentStatus::Busy, true, true));
    assert!(r.assign(outside_work(None)).unwrap().assignment().is_none());
    // The host ends the window: the agent takes the waiting work.
    r.set_agent_status(one, AgentStatus::Available).unwrap();
    assert_eq!(r.assignments().len(), 1);
    assert_eq!(drain(&r), (AgentStatus::Busy, false, false));
}

/// The driver checks the agents' health on a schedule: an agent that stops
/// answering becomes unhealthy (its running step is handed to another agent), and
/// comes back when it answers again.
#[test]
fn the_driver_checks_health_and_applies_it() {
    let (clock, coordinator, driver, switches) = health_checked_pair();
    let status = |id: u64| {
        coordinator
            .with_registry(|r| r.status(AgentId::new(id)))
            .unwrap()
    };
    // Agent 1 works on a task when it stops answering.
    let held = coordinator.assign(outside_work(None)).unwrap();
    let on = held.assignment().unwrap().agent;
    switches[on.get() as usize - 1].store(false, Ordering::SeqCst);
    block_on(driver.turn());
    assert_eq!(status(on.get()), AgentStatus::Unhealthy);
    // Its task went to the other agent, which is healthy.
    let running = coordinator.assignments();
    assert_eq!(running.len(), 1);
    assert_ne!(running[0].agent, on);
    // It answers again: at the next check, 30 s later, it is back in service.
    switches[on.get() as usize - 1].store(true, Ordering::SeqCst);
    let before = clock.now();
    block_on(driver.turn()); // sleeps until the next check
    block_on(driver.turn()); // the check
    assert_eq!(clock.now(), before + Duration::from_secs(30));
    assert_eq!(status(on.get()), AgentStatus::Available);
}

#[test]
fn a_drained_agent_that_fails_a_check_comes_back_drained() {
    let (_, coordinator, driver, switches) = health_checked_pair();
    let (one, two) = (AgentId::new(1), AgentId::new(2));
    let status = |id: AgentId| coordinator.with_registry(|r| r.status(id)).unwrap();
    let held = |id: AgentId| coordinator.with_registry(|r| r.is_held_busy(id)).unwrap();
    // Agent 1 is drained for maintenance, and stops answering during the window.
    coordinator
        .set_agent_status(one, AgentStatus::Busy)
        .unwrap();
    switches[0].store(false, Ordering::SeqCst);
    block_on(driver.turn());
    assert_eq!(status(one), AgentStatus::Unhealthy);
    // Agent 2 fails too, undrained.
    switches[1].store(false, Ordering::SeqCst);
    block_on(driver.turn());
    block_on(driver.turn());
    assert_eq!(status(two), AgentStatus::Unhealthy);
    // Both answer again: agent 1 is back drained, agent 2 back at work.
    switches[0].store(true, Ordering::SeqCst);
    switches[1].store(true, Ordering::SeqCst);
    block_on(driver.turn());
    block_on(driver.turn());
    assert_eq!((status(one), held(one)), (AgentStatus::Busy, true));
    assert_eq!(status(two), AgentStatus::Available);
    // New work goes to agent 2 only, and more of it waits for agent 2's slot.
    let first = coordinator.assign(outside_work(None)).unwrap();
    assert_eq!(first.assignment().unwrap().agent, two);
    let more = Task::new(TaskId::new(2), "maintenance", "more outside work")
        .with_requirements(Requirements::new().with_role(role("worker")));
    assert!(coordinator.assign(more).unwrap().assignment().is_none());
    // The host ends the window: agent 1 takes the waiting work.
    coordinator
        .set_agent_status(one, AgentStatus::Available)
        .unwrap();
    let running = coordinator.assignments();
    assert!(
        running
            .iter()
            .any(|a| a.task.id() == TaskId::new(2) && a.agent == one)
    );
}

// ----- an answer ready as its agent leaves ------------------------------------

/// An agent whose first work answers when the test says (a remote job), and whose
/// later works answer at once. Counts the works it was given.
#[derive(Debug)]
struct Remote {
    first: Mutex<Option<oneshot::Receiver<WorkOutput>>>,
    given: Arc<AtomicUsize>,
}

#[concord::async_trait]
impl Agent for Remote {
    fn id(&self) -> AgentId {
        AgentId::new(1)
    }
    async fn execute(&self, _: WorkItem) -> Result<WorkOutput, AgentError> {
        self.given.fetch_add(1, Ordering::SeqCst);
        let rx = self.first.lock().take();
        match rx {
            Some(rx) => rx.await.map_err(|_| AgentError::Unreachable {
                reason: "gone".into(),
            }),
            None => Ok(WorkOutput::success()),
        }
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("1"))
    }
}

/// One `charge` step on one agent whose first work answers when the test says, its
/// run polled once (and the spawned work turned, with `spawner`): the work is under
/// way. Then the answer comes and, at that instant, the agent leaves service, before
/// the executor is polled again; it comes back, and the run is driven to its end.
/// Returns the run and how many works the agent was given.
fn answer_as_the_agent_leaves(spawner: Option<Deferred>) -> (Run, usize) {
    let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    let coordinator = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
            .safe_mode_rules(SafeModeRules::none())
            .unwrap()
            .build(),
    );
    coordinator
        .register_agent(
            AgentProfile::new(AgentId::new(1), "one")
                .with_role(role("ops"))
                .with_max_tasks(1),
        )
        .unwrap();
    let (tx, rx) = oneshot::channel();
    let given = Arc::new(AtomicUsize::new(0));
    let agent = Remote {
        first: Mutex::new(Some(rx)),
        given: Arc::clone(&given),
    };
    let mut executor = Executor::new(Arc::clone(&coordinator), SimulatedTimer::new(clock));
    if let Some(spawner) = &spawner {
        executor = executor.with_spawner(spawner.clone());
    }
    let executor = Arc::new(executor.with_agent(Arc::new(agent)));
    let turn = || spawner.iter().for_each(Deferred::turn);
    let wf = Workflow::builder("pay")
        .step(StepSpec::new("charge").with_role(role("ops")))
        .build()
        .unwrap();
    let mut run = Arc::clone(&executor).run_owned(&wf, "pay-1", 1);
    assert!(poll_once(&mut run).is_none());
    turn();
    assert_eq!(given.load(Ordering::SeqCst), 1, "the work is under way");
    // The remote job finishes (the card is charged) as its agent leaves.
    tx.send(WorkOutput::success().with_output("receipt", "r-1"))
        .unwrap();
    coordinator
        .set_agent_status(AgentId::new(1), AgentStatus::Offline)
        .unwrap();
    let mut done = None;
    for round in 0..24 {
        if round == 4 {
            coordinator
                .set_agent_status(AgentId::new(1), AgentStatus::Available)
                .unwrap();
        }
        done = poll_once(&mut run);
        if done.is_some() {
            break;
        }
        turn();
    }
    (done.expect("the run ends"), given.load(Ordering::SeqCst))
}

/// Work that finished as its agent left wins: its answer completes the step, which
/// is not run again. Here the work has answered (its future is ready) when its agent
/// leaves service, and the executor reads the coordinator's notice before it polls
/// the work again: the stop must not throw the ready answer away.
#[test]
fn an_answer_ready_when_the_agent_leaves_is_not_thrown_away() {
    let (run, given) = answer_as_the_agent_leaves(None);
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(given, 1, "the step ran again: {:#?}", run.history());
    assert_eq!(
        run.outputs("charge").map(|o| o.get("receipt").cloned()),
        Some(Some("r-1".to_owned()))
    );
}

/// The same with spawned work: the agent's answer is ready when its agent leaves,
/// and the runtime has not polled the spawned task since.
#[test]
fn a_spawned_answer_ready_when_the_agent_leaves_is_not_thrown_away() {
    let (run, given) = answer_as_the_agent_leaves(Some(Deferred::default()));
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(given, 1, "the step ran again: {:#?}", run.history());
}
