//! Properties of the async executor on random DAGs, over agents that fail at random
//! and steps with colliding claims: every run ends; no step starts before its
//! dependencies have finished; steps whose exclusive claims collide never run at
//! once; and nothing leaks: every assignment the coordinator made is completed, the
//! ledger holds nothing, and every conflict opened on the way is closed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use concord::Timestamp;
use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::coordinator::{Coordinator, EventKind};
use concord::workflow::{Executor, RetryPolicy, SimulatedTimer, StepChange, StepSpec, Workflow};
use concord::{AgentId, AgentProfile, Claim, ManualClock, Role, RuleBasedAnalyzer, RuleSet};
use proptest::prelude::*;

/// Step `i`: its dependencies (earlier steps), its claim (none, or an index into
/// `NAMES`, exclusive or shared), its attempts, and which attempts fail.
#[derive(Debug, Clone)]
struct Step {
    deps: Vec<usize>,
    claim: Option<(usize, bool)>,
    attempts: u32,
    failing: BTreeSet<u32>,
}

const NAMES: [&str; 4] = ["env/staging", "env", "repo/src", "repo/src/lib.rs"];

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            prop::collection::vec(any::<prop::sample::Index>(), 0..3),
            prop::option::weighted(0.6, (0..NAMES.len(), any::<bool>())),
            1u32..3,
            prop::collection::btree_set(1u32..3, 0..2),
        ),
        1..16,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (deps, claim, attempts, failing))| {
                let mut deps: Vec<usize> = if i == 0 {
                    Vec::new()
                } else {
                    deps.iter().map(|d| d.index(i)).collect()
                };
                deps.sort_unstable();
                deps.dedup();
                Step {
                    deps,
                    claim,
                    attempts,
                    failing,
                }
            })
            .collect()
    })
}

fn claim(step: &Step) -> Option<Claim> {
    step.claim.map(|(n, exclusive)| {
        if exclusive {
            Claim::exclusive(NAMES[n])
        } else {
            Claim::shared(NAMES[n])
        }
    })
}

use super::reference::collide;
use crate::yield_now::YieldNow;

/// Fails the attempts its step lists (retryably: the next attempt may pass), after
/// yielding once so that steps overlap.
#[derive(Debug)]
struct Flaky {
    id: AgentId,
    steps: Arc<Vec<Step>>,
}

#[async_trait::async_trait]
impl Agent for Flaky {
    fn id(&self) -> AgentId {
        self.id
    }
    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        YieldNow(false).await;
        let i: usize = work.kind()[1..].parse().unwrap_or(0);
        if self.steps[i].failing.contains(&work.attempt()) {
            Ok(WorkOutput::retryable_failure("scripted"))
        } else {
            Ok(WorkOutput::success())
        }
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("flaky"))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn runs_end_in_order_without_collisions_or_leaks(steps in steps(), slots in 1u32..3) {
        let ops = Role::new("ops").unwrap();
        let mut b = Workflow::builder("random");
        for (i, s) in steps.iter().enumerate() {
            let mut spec = StepSpec::new(format!("s{i}"))
                .with_role(ops.clone())
                .with_retry(
                    RetryPolicy::exponential(s.attempts)
                        .with_initial_backoff(Duration::from_secs(1)),
                );
            if let Some(c) = claim(s) {
                spec = spec.with_claim(c);
            }
            for d in &s.deps {
                spec = spec.after(format!("s{d}"));
            }
            b.push(spec);
        }
        let workflow = b.build().unwrap();

        let clock = ManualClock::new(Timestamp::from_secs(1_000));
        let coordinator = Arc::new(
            Coordinator::builder()
                .clock(clock.clone())
                .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).unwrap())
                .build(),
        );
        let shared = Arc::new(steps.clone());
        let mut executor = Executor::new(Arc::clone(&coordinator), SimulatedTimer::new(clock))
            .with_concurrency(4);
        for id in 1..=3 {
            coordinator
                .register_agent(
                    AgentProfile::new(AgentId::new(id), format!("a{id}"))
                        .with_role(ops.clone())
                        .with_max_tasks(slots),
                )
                .unwrap();
            executor = executor.with_agent(Arc::new(Flaky {
                id: AgentId::new(id),
                steps: Arc::clone(&shared),
            }));
        }
        let run = futures::executor::block_on(executor.run(&workflow, "prop", 9)).unwrap();
        prop_assert!(run.is_finished());

        // Order: a step starts only after each dependency's final event.
        let history = run.history();
        let index = |e: &concord::workflow::RunEvent| e.step.index();
        let mut last_final = vec![None; steps.len()];
        for (k, e) in history.iter().enumerate() {
            let terminal = matches!(
                e.change,
                StepChange::Succeeded { .. }
                    | StepChange::Skipped { .. }
                    | StepChange::SkippedByAgent { .. }
                    | StepChange::Abandoned { .. }
                    | StepChange::AttemptFailed { retry_at: None, .. }
            );
            if terminal {
                last_final[index(e)] = Some(k);
            }
            if matches!(e.change, StepChange::Started) {
                for &d in &steps[index(e)].deps {
                    prop_assert!(
                        last_final[d].is_some_and(|f| f < k),
                        "s{} started before its dependency s{d} finished",
                        index(e)
                    );
                }
            }
        }

        // Collisions: intervals (start .. end of attempt) of colliding steps never
        // overlap.
        let mut open: Vec<(usize, usize)> = Vec::new(); // (step, started at)
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        for (k, e) in history.iter().enumerate() {
            match e.change {
                StepChange::Started => open.push((index(e), k)),
                StepChange::Succeeded { .. }
                | StepChange::AttemptFailed { .. }
                | StepChange::SkippedByAgent { .. } => {
                    if let Some(p) = open.iter().position(|(s, _)| *s == index(e)) {
                        let (s, from) = open.remove(p);
                        spans.push((s, from, k));
                    }
                }
                _ => {}
            }
        }
        for (x, &(a, a0, a1)) in spans.iter().enumerate() {
            for &(b, b0, b1) in &spans[x + 1..] {
                if let (Some(ca), Some(cb)) = (claim(&steps[a]), claim(&steps[b])) {
                    if a != b && collide(&ca, &cb) {
                        prop_assert!(
                            a1 < b0 || b1 < a0,
                            "s{a} ({ca:?}) and s{b} ({cb:?}) ran at once"
                        );
                    }
                }
            }
        }

        // Leaks: nothing left assigned or allocated, every conflict closed.
        prop_assert!(coordinator.assignments().is_empty());
        prop_assert!(coordinator.with_ledger(|l| l.is_empty()));
        let events = coordinator.drain_events();
        let opened: BTreeSet<_> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::ConflictDetected { conflict, .. } => Some(conflict.id()),
                _ => None,
            })
            .collect();
        let closed: BTreeSet<_> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::ConflictResolved { conflict, .. } => Some(*conflict),
                _ => None,
            })
            .collect();
        prop_assert_eq!(opened, closed);
    }
}
