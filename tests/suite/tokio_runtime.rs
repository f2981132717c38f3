//! The tokio seams (feature `tokio`): runs on a multi-threaded runtime with
//! `TokioTimer` on the system clock and every attempt spawned by `TokioSpawner`, and
//! on tokio's paused time with `TokioClock`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::coordinator::Coordinator;
use concord::workflow::{Executor, RunOutcome, StepSpec, Workflow};
use concord::{
    AgentId, AgentProfile, Clock, Role, RuleBasedAnalyzer, RuleSet, SystemClock, TokioClock,
    TokioSpawner, TokioTimer,
};

/// Works `work` of wall-clock time per step, on tokio's timer; counts the attempts
/// whose futures were dropped before they finished.
#[derive(Debug)]
struct Sleeper {
    id: AgentId,
    work: Duration,
    dropped: Arc<AtomicUsize>,
}

struct Unfinished(Arc<AtomicUsize>, bool);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[concord::async_trait]
impl Agent for Sleeper {
    fn id(&self) -> AgentId {
        self.id
    }
    async fn execute(&self, _: WorkItem) -> Result<WorkOutput, AgentError> {
        let mut guard = Unfinished(Arc::clone(&self.dropped), false);
        tokio::time::sleep(self.work).await;
        guard.1 = true;
        Ok(WorkOutput::success())
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("1.0"))
    }
}

fn setup(work: Duration) -> (Arc<Executor>, Arc<AtomicUsize>) {
    setup_on(SystemClock, work)
}

/// [`setup`] with the coordinator and the executor's timer on `clock`.
fn setup_on(clock: impl Clock + Clone, work: Duration) -> (Arc<Executor>, Arc<AtomicUsize>) {
    let coordinator = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
            .build(),
    );
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut executor = Executor::new(Arc::clone(&coordinator), TokioTimer::new(clock))
        .with_spawner(TokioSpawner::current().expect("inside a runtime"));
    for id in 1..=2 {
        let id = AgentId::new(id);
        coordinator
            .register_agent(
                AgentProfile::new(id, format!("w{id}"))
                    .with_role(Role::new("worker").unwrap())
                    .with_max_tasks(1),
            )
            .unwrap();
        executor = executor.with_agent(Arc::new(Sleeper {
            id,
            work,
            dropped: Arc::clone(&dropped),
        }));
    }
    (Arc::new(executor), dropped)
}

fn workflow() -> Workflow {
    let step = |name: &str| StepSpec::new(name).with_role(Role::new("worker").unwrap());
    Workflow::builder("pair")
        .step(step("a"))
        .step(step("b"))
        .step(step("c").after("a").after("b"))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_runs_share_two_agents_and_succeed() {
    let (executor, dropped) = setup(Duration::from_millis(5));
    let wf = workflow();
    let runs: Vec<_> = (0..3)
        .map(|i| tokio::spawn(Arc::clone(&executor).run_owned(&wf, &format!("run-{i}"), i)))
        .collect();
    for run in runs {
        let run = run.await.unwrap().unwrap();
        assert_eq!(run.outcome(), Some(RunOutcome::Succeeded), "{}", run.id());
    }
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    assert!(executor.coordinator().assignments().is_empty());
    assert!(executor.coordinator().waiting().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_stops_its_spawned_attempts() {
    let (executor, dropped) = setup(Duration::from_secs(3600));
    let wf = workflow();
    let running = Arc::clone(&executor).run_owned(&wf, "cancelled", 1);
    let handle = running.handle();
    let task = tokio::spawn(running);
    // Both agents are at work on `a` and `b` (their hour-long sleeps).
    while handle.progress().running < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    handle.cancel();
    let run = task.await.unwrap().unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Cancelled));
    // The spawned work notices it is no longer wanted and drops its future.
    while dropped.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(executor.coordinator().assignments().is_empty());
}

/// A host that gives up on a run by dropping its future (`tokio::time::timeout`,
/// `select!`, aborting its task) gets its agents back: the spawned attempts stop,
/// their tasks are released once they have, and the next run on the fleet starts
/// at once instead of waiting for slots nobody holds any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_future_is_dropped_gives_its_agents_back() {
    let (executor, dropped) = setup(Duration::from_secs(3600));
    let coordinator = Arc::clone(executor.coordinator());
    let wf = workflow();
    let running = Arc::clone(&executor).run_owned(&wf, "given-up", 1);
    let handle = running.handle();
    let given_up = tokio::time::timeout(Duration::from_millis(20), running);
    // Both agents are at work on `a` and `b` (hour-long sleeps) when the host gives up.
    assert!(given_up.await.is_err());
    assert_eq!(handle.progress().running, 2);
    let freed = async {
        while dropped.load(Ordering::SeqCst) < 2 || !coordinator.assignments().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), freed)
        .await
        .expect("the dropped run's tasks were never released");
    // The next run's steps go to the agents at once.
    let next = tokio::spawn(Arc::clone(&executor).run_owned(&wf, "next", 2));
    let started = async {
        while coordinator.assignments().len() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), started)
        .await
        .expect("the next run waited for slots the dropped run held");
    assert!(coordinator.waiting().is_empty());
    next.abort();
}

/// On tokio's paused time, a coordinator and its timer on a `TokioClock` move with
/// tokio's time: a run of hour-long steps plays out without an hour passing, and
/// nothing spins waiting for the system clock to get there.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_run_on_paused_time_jumps_with_tokio() {
    let clock = TokioClock::new();
    let (executor, dropped) = setup_on(clock.clone(), Duration::from_secs(3600));
    let (start, wall) = (clock.now(), SystemClock.now());
    let run = Arc::clone(&executor)
        .run_owned(&workflow(), "paused", 1)
        .await
        .unwrap();
    assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    // `a` and `b` side by side, then `c`: two hours on the clock.
    let end = clock.now();
    assert!(end >= start + Duration::from_secs(7200), "{start} -> {end}");
    assert!(end < start + Duration::from_secs(7300), "{start} -> {end}");
    // The system clock did not have to get there.
    assert!(SystemClock.now() < wall + Duration::from_secs(600));
    // Read off the runtime, where tokio's time is the real one, the clock does not go
    // back to it.
    let elsewhere = std::thread::spawn(move || clock.now()).join().unwrap();
    assert!(elsewhere >= end, "{elsewhere} < {end}");
}

/// One agent with one slot whose attempts record how many run on it at once (the
/// most ever, in `peak`) and how many finished their work (`effects`). Its work is
/// `chunks` pieces of `chunk` each, blocking the thread (as CPU work does) with a
/// yield between them, or sleeping on tokio's timer. With `flap`, the first attempt
/// marks its agent offline just before it answers, as a health check failing at
/// that instant would, and a monitor brings it back 5 ms later.
#[derive(Debug)]
struct Slot {
    coordinator: Arc<Coordinator>,
    at_once: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    effects: Arc<AtomicUsize>,
    chunks: u32,
    chunk: Duration,
    blocking: bool,
    flap: bool,
}

struct Leaving(Arc<AtomicUsize>);

impl Drop for Leaving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[concord::async_trait]
impl Agent for Slot {
    fn id(&self) -> AgentId {
        AgentId::new(1)
    }
    async fn execute(&self, _: WorkItem) -> Result<WorkOutput, AgentError> {
        let now = self.at_once.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let _leaving = Leaving(Arc::clone(&self.at_once));
        for _ in 0..self.chunks {
            if self.blocking {
                std::thread::sleep(self.chunk);
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(self.chunk).await;
            }
        }
        if self.effects.fetch_add(1, Ordering::SeqCst) == 0 && self.flap {
            let one = AgentId::new(1);
            self.coordinator
                .set_agent_status(one, concord::AgentStatus::Offline)
                .unwrap();
            let c = Arc::clone(&self.coordinator);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                c.set_agent_status(one, concord::AgentStatus::Available)
                    .unwrap();
            });
        }
        Ok(WorkOutput::success())
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("1.0"))
    }
}

/// A coordinator with the one agent of [`Slot`], losing its tasks per `on_loss`, and
/// an executor over it that spawns every attempt.
fn one_slot(
    on_loss: concord::coordinator::OnAgentLoss,
    make: impl FnOnce(Arc<Coordinator>) -> Slot,
) -> (Arc<Coordinator>, Arc<Executor>) {
    let coordinator = Arc::new(
        Coordinator::builder()
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
            .on_agent_loss(on_loss)
            .safe_mode_rules(concord::coordinator::SafeModeRules::none())
            .unwrap()
            .build(),
    );
    coordinator
        .register_agent(
            AgentProfile::new(AgentId::new(1), "one")
                .with_role(Role::new("worker").unwrap())
                .with_max_tasks(1),
        )
        .unwrap();
    let executor = Executor::new(Arc::clone(&coordinator), TokioTimer::new(SystemClock))
        .with_spawner(TokioSpawner::current().unwrap())
        .with_agent(Arc::new(make(Arc::clone(&coordinator))));
    (coordinator, Arc::new(executor))
}

fn one_step() -> Workflow {
    Workflow::builder("one")
        .step(StepSpec::new("work").with_role(Role::new("worker").unwrap()))
        .build()
        .unwrap()
}

/// Found by an outside trial: a one-slot agent that left service and came straight
/// back while a step's spawned work ran on it (blocking CPU work, stopped only at its
/// next yield) was given another run's step at once, and ran both. The interrupted
/// task now keeps the slot until the spawned work has stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_back_at_once_runs_no_second_spawned_step_beside_the_first() {
    for on_loss in [
        concord::coordinator::OnAgentLoss::Fail,
        concord::coordinator::OnAgentLoss::Requeue,
    ] {
        let (at_once, peak) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
        let (coordinator, executor) = one_slot(on_loss, |coordinator| Slot {
            coordinator,
            at_once: Arc::clone(&at_once),
            peak: Arc::clone(&peak),
            effects: Arc::default(),
            chunks: 10,
            chunk: Duration::from_millis(10),
            blocking: true,
            flap: false,
        });
        let wf = one_step();
        let a = tokio::spawn(Arc::clone(&executor).run_owned(&wf, "a", 1));
        while at_once.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let b = tokio::spawn(Arc::clone(&executor).run_owned(&wf, "b", 2));
        while coordinator.waiting_count() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let one = AgentId::new(1);
        coordinator
            .set_agent_status(one, concord::AgentStatus::Offline)
            .unwrap();
        coordinator
            .set_agent_status(one, concord::AgentStatus::Available)
            .unwrap();
        let both = async { (a.await.unwrap().unwrap(), b.await.unwrap().unwrap()) };
        let (a, b) = tokio::time::timeout(Duration::from_secs(20), both)
            .await
            .expect("both runs end");
        assert_eq!(peak.load(Ordering::SeqCst), 1, "{on_loss:?}");
        assert_eq!(b.outcome(), Some(RunOutcome::Succeeded));
        assert!(a.is_finished());
        assert!(coordinator.assignments().is_empty() && coordinator.waiting_count() == 0);
    }
}

/// Found by an outside trial: an agent that finished a step's work (the payment
/// charged) and left service at that instant lost its answer to the hand-back, and
/// the step ran again, charging twice. The answer in hand wins: the work is done once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_finished_as_its_agent_leaves_is_not_done_twice() {
    for _ in 0..5 {
        let effects = Arc::new(AtomicUsize::new(0));
        let (coordinator, executor) =
            one_slot(concord::coordinator::OnAgentLoss::Requeue, |coordinator| {
                Slot {
                    coordinator,
                    at_once: Arc::default(),
                    peak: Arc::default(),
                    effects: Arc::clone(&effects),
                    chunks: 1,
                    chunk: Duration::from_millis(2),
                    blocking: false,
                    flap: true,
                }
            });
        let run =
            tokio::time::timeout(Duration::from_secs(10), executor.run(&one_step(), "pay", 1))
                .await
                .expect("the run ends")
                .unwrap();
        assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
        assert_eq!(effects.load(Ordering::SeqCst), 1, "{:#?}", run.history());
        assert!(coordinator.assignments().is_empty() && coordinator.waiting_count() == 0);
    }
}
