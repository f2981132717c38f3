//! Properties of several workflow runs at once on a random, too-small fleet, with
//! exclusive claims shared between the runs, safe mode switched on and off, and
//! agents going offline and coming back while they work: every run succeeds (its
//! steps wait, they do not fail), every step is done exactly once (a step taken from
//! an agent that left is done by another, not twice), no step starts before its
//! dependencies succeeded, no agent ever runs more than its slots, and the
//! coordinator ends with nothing running, waiting or open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use concord::agent::{Agent, AgentError, AgentHealth, AgentStatus, WorkItem, WorkOutput};
use concord::coordinator::Coordinator;
use concord::policy::SystemMode;
use concord::workflow::{
    Executor, RunOutcome, SimulatedTimer, StepChange, StepSpec, Timer, Workflow,
};
use concord::{
    AgentId, AgentProfile, Claim, Clock, ManualClock, Role, RuleBasedAnalyzer, RuleSet, TaskId,
    Timestamp,
};
use futures::future::join_all;
use parking_lot::Mutex;
use proptest::prelude::*;

/// Step `i`: its dependencies (earlier steps), an exclusive claim (index into
/// `NAMES`) or none, and its work in simulated seconds.
#[derive(Debug, Clone)]
struct Step {
    deps: Vec<usize>,
    claim: Option<usize>,
    secs: u64,
}

const NAMES: [&str; 2] = ["env/staging", "db/main"];

/// Something the operator does at a simulated second.
#[derive(Debug, Clone)]
enum Act {
    SafeMode(bool),
    Offline(usize),
    Online(usize),
}

#[derive(Debug, Clone)]
struct Scene {
    steps: Vec<Step>,
    runs: usize,
    slots: Vec<u32>,
    acts: Vec<(u64, Act)>,
}

fn scene() -> impl Strategy<Value = Scene> {
    let steps = prop::collection::vec(
        (
            prop::collection::vec(any::<prop::sample::Index>(), 0..3),
            prop::option::weighted(0.3, 0..NAMES.len()),
            1u64..5,
        ),
        1..8,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (deps, claim, secs))| {
                let mut deps: Vec<usize> = if i == 0 {
                    Vec::new()
                } else {
                    deps.iter().map(|d| d.index(i)).collect()
                };
                deps.sort_unstable();
                deps.dedup();
                Step { deps, claim, secs }
            })
            .collect()
    });
    let act = prop_oneof![
        any::<bool>().prop_map(Act::SafeMode),
        (0usize..3).prop_map(Act::Offline),
        (0usize..3).prop_map(Act::Online),
    ];
    (
        steps,
        2usize..5,
        prop::collection::vec(1u32..3, 1..4),
        prop::collection::vec((0u64..40, act), 0..8),
    )
        .prop_map(|(steps, runs, slots, mut acts)| {
            acts.sort_by_key(|(at, _)| *at);
            Scene {
                steps,
                runs,
                slots,
                acts,
            }
        })
}

/// What the workers did: attempts at once (now and at most) per agent, and work
/// finished per task.
#[derive(Debug, Default)]
struct Books {
    busy: BTreeMap<AgentId, u32>,
    peak: BTreeMap<AgentId, u32>,
    done: BTreeMap<TaskId, u32>,
}

#[derive(Debug)]
struct Worker {
    id: AgentId,
    clock: ManualClock,
    timer: SimulatedTimer,
    steps: Arc<Vec<Step>>,
    books: Arc<Mutex<Books>>,
}

struct Busy<'a>(&'a Worker);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *self.0.books.lock().busy.entry(self.0.id).or_default() -= 1;
    }
}

#[async_trait::async_trait]
impl Agent for Worker {
    fn id(&self) -> AgentId {
        self.id
    }
    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        {
            let mut books = self.books.lock();
            let busy = books.busy.entry(self.id).or_default();
            *busy += 1;
            let now = *busy;
            let peak = books.peak.entry(self.id).or_default();
            *peak = (*peak).max(now);
        }
        let _busy = Busy(self);
        let i: usize = work.description()[1..].parse().unwrap_or(0);
        let secs = self.steps.get(i).map_or(1, |s| s.secs);
        self.timer
            .sleep_until(self.clock.now() + Duration::from_secs(secs))
            .await;
        *self.books.lock().done.entry(work.task()).or_default() += 1;
        Ok(WorkOutput::success())
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("1"))
    }
}

fn workflow(steps: &[Step]) -> Workflow {
    let role = Role::new("worker").unwrap();
    let mut b = Workflow::builder("shared");
    for (i, step) in steps.iter().enumerate() {
        let mut spec = StepSpec::new(format!("s{i}")).with_role(role.clone());
        for d in &step.deps {
            spec = spec.after(format!("s{d}"));
        }
        if let Some(n) = step.claim {
            spec = spec.with_claim(Claim::exclusive(NAMES[n]));
        }
        b = b.step(spec);
    }
    b.build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn runs_on_a_shared_fleet_all_succeed_and_do_each_step_once(scene in scene()) {
        let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
        let coordinator = Arc::new(
            Coordinator::builder()
                .clock(clock.clone())
                .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
                .build(),
        );
        let timer = SimulatedTimer::new(clock.clone());
        let books = Arc::new(Mutex::new(Books::default()));
        let steps = Arc::new(scene.steps.clone());
        let mut executor = Executor::new(Arc::clone(&coordinator), timer.clone());
        let agents: Vec<AgentId> = (1..=scene.slots.len() as u64).map(AgentId::new).collect();
        for (&id, &slots) in agents.iter().zip(&scene.slots) {
            coordinator
                .register_agent(
                    AgentProfile::new(id, "w")
                        .with_role(Role::new("worker").unwrap())
                        .with_max_tasks(slots),
                )
                .unwrap();
            executor = executor.with_agent(Arc::new(Worker {
                id,
                clock: clock.clone(),
                timer: timer.clone(),
                steps: Arc::clone(&steps),
                books: Arc::clone(&books),
            }));
        }
        let wf = workflow(&scene.steps);
        let start = clock.now();
        // The operator: the scene's acts at their times, then everything back.
        let operator = async {
            for (at, act) in &scene.acts {
                timer.sleep_until(start + Duration::from_secs(*at)).await;
                match act {
                    Act::SafeMode(on) => {
                        let mode = if *on { SystemMode::SafeMode } else { SystemMode::Normal };
                        coordinator.set_mode(mode);
                    }
                    Act::Offline(k) | Act::Online(k) => {
                        let Some(&agent) = agents.get(*k) else { continue };
                        let to = if matches!(act, Act::Offline(_)) {
                            AgentStatus::Offline
                        } else {
                            AgentStatus::Available
                        };
                        // An illegal transition (offline twice) is the registry's to
                        // refuse; the scene goes on.
                        let _ = coordinator.set_agent_status(agent, to);
                    }
                }
            }
            timer.sleep_until(start + Duration::from_secs(41)).await;
            coordinator.set_mode(SystemMode::Normal);
            for &agent in &agents {
                let _ = coordinator.set_agent_status(agent, AgentStatus::Available);
            }
        };
        let runs = join_all((0..scene.runs).map(|i| executor.run(&wf, &format!("run-{i}"), i as u64)));
        let (runs, ()) = futures::executor::block_on(futures::future::join(runs, operator));
        let mut started = 0;
        for run in runs {
            let run = run.unwrap();
            prop_assert_eq!(run.outcome(), Some(RunOutcome::Succeeded), "{:?}", run.history());
            // No step before its dependencies succeeded.
            let mut succeeded = vec![false; scene.steps.len()];
            for e in run.history() {
                match e.change {
                    StepChange::Started => {
                        started += 1;
                        for &d in &scene.steps[e.step.index()].deps {
                            prop_assert!(succeeded[d], "s{} started before s{}", e.step.index(), d);
                        }
                    }
                    StepChange::Succeeded { .. } => succeeded[e.step.index()] = true,
                    _ => {}
                }
            }
            for (step, _) in wf.steps() {
                prop_assert_eq!(run.attempts(step), Some(1));
            }
        }
        let books = books.lock();
        // Each step of each run done once: one finished piece of work per step.
        prop_assert_eq!(books.done.len(), scene.runs * scene.steps.len());
        prop_assert!(books.done.values().all(|&n| n == 1));
        prop_assert!(started >= scene.runs * scene.steps.len());
        for (agent, peak) in &books.peak {
            let slots = scene.slots[agent.get() as usize - 1];
            prop_assert!(*peak <= slots, "{} ran {} at once on {} slots", agent, peak, slots);
        }
        prop_assert!(coordinator.assignments().is_empty());
        prop_assert!(coordinator.waiting().is_empty());
        prop_assert!(coordinator.open_conflicts().is_empty());
    }
}
