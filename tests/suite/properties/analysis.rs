//! Properties of the analysis a coordinator makes of each task: a task it cannot
//! place is explained with the rules that fired for it, named as the analyzer names
//! them, whether the coordinator runs the built-in analyzer (which it asks for the
//! rules by number, naming them only for a refused task) or a host's, and whichever
//! place the task has in its batch.

use concord::coordinator::{AssignOutcome, Coordinator};
use concord::task::FiredRule;
use concord::{
    AgentId, AgentProfile, Analyzed, ManualClock, Role, RuleBasedAnalyzer, Task, TaskAnalyzer,
    TaskError, TaskId, Timestamp,
};
use proptest::prelude::*;

/// Words of the built-in rule table (kinds and keywords of several rules, phrases
/// among them) and words of none.
const WORDS: [&str; 16] = [
    "deploy",
    "release",
    "screenshot",
    "visual",
    "verification",
    "backup",
    "restore",
    "breach",
    "hand",
    "off",
    "report",
    "the",
    "service",
    "browser",
    "open",
    "url",
];

/// The built-in analyzer behind a type of the host's: the coordinator asks it as
/// it asks any host analyzer.
#[derive(Debug, Default)]
struct HostAnalyzer(RuleBasedAnalyzer);

impl TaskAnalyzer for HostAnalyzer {
    fn analyze(&self, task: &Task) -> Result<Analyzed, TaskError> {
        self.0.analyze(task)
    }

    fn analyze_in_place_into(
        &self,
        task: &mut Task,
        fired: &mut Vec<FiredRule>,
    ) -> Result<(), TaskError> {
        self.0.analyze_in_place_into(task, fired)
    }
}

/// A task of kind `kind` whose description is `words`.
fn task(id: u64, kind: usize, words: &[usize]) -> Task {
    let description: Vec<&str> = words.iter().map(|&w| WORDS[w]).collect();
    Task::new(TaskId::new(id), WORDS[kind], description.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// On a fleet of one agent that plays no role the rules ask for, every task that
    /// fires a rule is refused, and its explanation names the rules the analyzer
    /// finds for it, in table order with what made each fire.
    #[test]
    fn a_refused_task_names_the_rules_that_fired_for_it(
        batch in prop::collection::vec(
            (0..WORDS.len(), prop::collection::vec(0..WORDS.len(), 0..8)),
            1..5,
        ),
        host in any::<bool>(),
    ) {
        let builder = Coordinator::builder()
            .clock(ManualClock::new(Timestamp::from_secs(1_700_000_000)));
        let coordinator = if host {
            builder.analyzer(HostAnalyzer::default()).build()
        } else {
            builder.analyzer(RuleBasedAnalyzer::default()).build()
        };
        let nobody = AgentProfile::new(AgentId::new(1), "bystander")
            .with_role(Role::new("bystander").unwrap());
        coordinator.register_agent(nobody).unwrap();
        let tasks: Vec<Task> = (batch.iter().enumerate())
            .map(|(i, (kind, words))| task(i as u64, *kind, words))
            .collect();
        let reference = RuleBasedAnalyzer::default();
        let expected: Vec<Vec<FiredRule>> = tasks
            .iter()
            .map(|t| reference.analyze(t).unwrap().fired)
            .collect();
        let outcomes = coordinator.assign_batch(None, tasks).unwrap();
        prop_assert_eq!(outcomes.len(), expected.len());
        for (outcome, fired) in outcomes.iter().zip(&expected) {
            match outcome {
                AssignOutcome::Rejected { explanation, .. }
                | AssignOutcome::Queued { explanation, .. } => {
                    prop_assert_eq!(&explanation.analyzed, fired, "{}", outcome);
                }
                // Only a task that fired nothing asks for no role: the bystander
                // takes it.
                AssignOutcome::Assigned(_) => prop_assert!(fired.is_empty(), "{}", outcome),
                other => prop_assert!(false, "unexpected outcome {}", other),
            }
        }
    }
}
