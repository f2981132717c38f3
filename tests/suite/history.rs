//! Reading a run's history in the tests: the entries several domains look for.

use concord::workflow::{Run, RunEvent, StepChange};

/// The reason the run gave up its first abandoned step ("no agent can take step
/// ...", a wait past its patience).
pub fn abandoned_reason(run: &Run) -> String {
    run.history()
        .iter()
        .find_map(|e| match &e.change {
            StepChange::Abandoned { reason } => Some(reason.clone()),
            _ => None,
        })
        .expect("a step was abandoned")
}

/// The run's first failed attempt.
pub fn first_attempt_failed(run: &Run) -> &RunEvent {
    run.history()
        .iter()
        .find(|e| matches!(e.change, StepChange::AttemptFailed { .. }))
        .expect("an attempt failed")
}

/// The run's last failed attempt.
pub fn last_attempt_failed(run: &Run) -> &RunEvent {
    run.history()
        .iter()
        .rev()
        .find(|e| matches!(e.change, StepChange::AttemptFailed { .. }))
        .expect("an attempt failed")
}
