//! A model test of the coordinator's public API (proptest-state-machine): random
//! sequences of assign, complete and cancel on one agent of 2 cpus and 2 task slots,
//! against a reference model of a dozen lines: a task starts at once when a slot
//! and its cpu are free, waits otherwise (or is rejected if it could never fit), and
//! when capacity frees the waiting tasks are started in the order they came, any
//! that fits (backfilling past one that does not). After every step the coordinator
//! runs exactly the tasks the model runs, and keeps waiting exactly those it keeps.

use std::collections::BTreeSet;

use concord::coordinator::{AssignOutcome, Coordinator};
use concord::policy::{PolicySet, UtilizationCap};
use concord::{
    AgentId, AgentProfile, ManualClock, Requirements, Role, RuleBasedAnalyzer, RuleSet, Task,
    TaskId, Timestamp,
};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

const CPU: u64 = 2000;
const SLOTS: usize = 2;

#[derive(Debug, Clone, Default)]
struct Model {
    next: u64,
    /// Running: (task, millicores).
    running: Vec<(u64, u64)>,
    /// Waiting, in the order they came.
    waiting: Vec<(u64, u64)>,
}

impl Model {
    fn held(&self) -> u64 {
        self.running.iter().map(|(_, m)| m).sum()
    }

    fn fits(&self, millis: u64) -> bool {
        self.running.len() < SLOTS && self.held() + millis <= CPU
    }

    /// Starts waiting tasks in the order they came, each that fits.
    fn serve(&mut self) {
        let mut k = 0;
        while k < self.waiting.len() {
            let (id, m) = self.waiting[k];
            if self.fits(m) {
                self.waiting.remove(k);
                self.running.push((id, m));
            } else {
                k += 1;
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Assign(u64),
    Complete(usize, bool),
    Cancel(usize),
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            next: 1,
            ..Model::default()
        })
        .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Step> {
        // Sizes up to more than the agent has, so that some are rejected.
        let assign = (1u64..10).prop_map(|q| Step::Assign(q * 250));
        let mut options = vec![assign.boxed()];
        if !state.running.is_empty() {
            let n = state.running.len();
            options.push(
                (0..n, any::<bool>())
                    .prop_map(|(k, ok)| Step::Complete(k, ok))
                    .boxed(),
            );
        }
        if !state.waiting.is_empty() {
            options.push((0..state.waiting.len()).prop_map(Step::Cancel).boxed());
        }
        proptest::strategy::Union::new(options).boxed()
    }

    fn apply(mut state: Model, step: &Step) -> Model {
        match *step {
            Step::Assign(m) => {
                let id = state.next;
                state.next += 1;
                if m > CPU {
                    // Rejected: it could never fit.
                } else if state.fits(m) {
                    state.running.push((id, m));
                } else {
                    state.waiting.push((id, m));
                }
            }
            Step::Complete(k, _) => {
                state.running.remove(k);
                state.serve();
            }
            Step::Cancel(k) => {
                state.waiting.remove(k);
            }
        }
        state
    }

    fn preconditions(state: &Model, step: &Step) -> bool {
        match *step {
            Step::Assign(_) => true,
            Step::Complete(k, _) => k < state.running.len(),
            Step::Cancel(k) => k < state.waiting.len(),
        }
    }
}

struct Sut {
    coordinator: Coordinator,
    /// The model's state before the step, to find the task a step names.
    before: Model,
}

struct CoordinatorTest;

impl StateMachineTest for CoordinatorTest {
    type SystemUnderTest = Sut;
    type Reference = Reference;

    fn init_test(model: &Model) -> Sut {
        // The utilization cap is a policy, not part of this model.
        let policies = PolicySet::default().without(UtilizationCap::NAME);
        let coordinator = Coordinator::builder()
            .clock(ManualClock::new(Timestamp::from_secs(1_000_000)))
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).expect("rules"))
            .policies(policies)
            .build();
        coordinator
            .register_agent(
                AgentProfile::new(AgentId::new(1), "only")
                    .with_role(Role::new("ops").expect("role"))
                    .with_capacity(format!("cpu={CPU}m").parse().expect("cpu"))
                    .with_max_tasks(SLOTS as u32),
            )
            .expect("register");
        Sut {
            coordinator,
            before: model.clone(),
        }
    }

    fn apply(mut sut: Sut, model: &Model, step: Step) -> Sut {
        let c = &sut.coordinator;
        match step {
            Step::Assign(m) => {
                let id = sut.before.next;
                let task = Task::new(TaskId::new(id), "work", format!("task {id}"))
                    .with_requirements(
                        Requirements::new()
                            .with_role(Role::new("ops").expect("role"))
                            .with_resources(format!("cpu={m}m").parse().expect("cpu")),
                    );
                let out = c.assign(task).expect("assign");
                let expected = if model.running.iter().any(|(t, _)| *t == id) {
                    "assigned"
                } else if model.waiting.iter().any(|(t, _)| *t == id) {
                    "queued"
                } else {
                    "rejected"
                };
                let got = match out {
                    AssignOutcome::Assigned(_) => "assigned",
                    AssignOutcome::Queued { .. } => "queued",
                    AssignOutcome::Rejected { .. } => "rejected",
                    other => panic!("unexpected {other:?}"),
                };
                assert_eq!(got, expected, "task {id} of {m}m");
            }
            Step::Complete(k, ok) => {
                let (id, _) = sut.before.running[k];
                c.complete(TaskId::new(id), ok, None).expect("complete");
            }
            Step::Cancel(k) => {
                let (id, _) = sut.before.waiting[k];
                c.cancel(TaskId::new(id)).expect("cancel");
            }
        }
        sut.before = model.clone();
        sut
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        let running: BTreeSet<u64> = sut
            .coordinator
            .assignments()
            .iter()
            .map(|a| a.task.id().get())
            .collect();
        let waiting: BTreeSet<u64> = sut
            .coordinator
            .waiting()
            .iter()
            .map(|w| w.task.id().get())
            .collect();
        assert_eq!(running, model.running.iter().map(|(t, _)| *t).collect());
        assert_eq!(waiting, model.waiting.iter().map(|(t, _)| *t).collect());
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_coordinator_runs_and_queues_as_the_model_does(sequential 1..60 => CoordinatorTest);
}
