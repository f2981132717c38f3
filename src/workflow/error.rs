//! The workflow domain's error enum.

use std::fmt;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::id::{AgentId, Role};

use super::run::StepStatus;

/// Why a workflow definition, a run operation or a run snapshot was refused.
///
/// Every variant names the offending values. An operation that returns an error has
/// changed nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// A step's name is empty or only whitespace.
    #[error("step #{position} has an empty name")]
    EmptyName {
        /// The step's position in the definition (0-based).
        position: usize,
    },
    /// The workflow has no steps: a run of it would have nothing to do, and a
    /// definition that lost its steps (a config file cut short) is refused rather
    /// than "succeeding" at once.
    #[error("workflow {workflow:?} has no steps")]
    NoSteps {
        /// The workflow's name.
        workflow: String,
    },
    /// A step's timeout is zero, so no attempt could ever finish in time, or longer
    /// than [`MAX_STEP_WAIT`](super::MAX_STEP_WAIT) (a year), so it would never
    /// come.
    #[error(
        "step {step:?} has a timeout of {timeout:?}; a timeout must be longer than zero and at most {:?}",
        super::MAX_STEP_WAIT
    )]
    InvalidTimeout {
        /// The step.
        step: String,
        /// The timeout given.
        timeout: Duration,
    },
    /// A run id is empty or only whitespace. The id names the run to the host, to the
    /// agents ([`WorkItem::run`](crate::agent::WorkItem::run)) and, as its group, to
    /// the coordinator.
    #[error("run id {run:?} is empty or only whitespace")]
    EmptyRunId {
        /// The id given (its first 64 characters when it is longer).
        run: String,
    },
    /// A workflow's name, a step's name or kind, or a run id is longer than
    /// [`MAX_LABEL_LEN`](crate::id::MAX_LABEL_LEN) bytes or holds a control or invisible
    /// character; or a step's claim is longer than
    /// [`MAX_CLAIM_LEN`](crate::id::MAX_CLAIM_LEN) bytes, holds a control or invisible
    /// character or names nothing
    /// ([`NameError::NamesNothing`](crate::id::NameError::NamesNothing)).
    #[error("{}{source}", .step.map(|i| format!("step #{i}: ")).unwrap_or_default())]
    InvalidText {
        /// The step's position in the definition (0-based), for a step's name, kind or
        /// claim.
        step: Option<usize>,
        /// What is wrong, naming the text.
        source: crate::id::NameError,
    },
    /// Two steps share a name.
    #[error("step name {step:?} is used more than once")]
    DuplicateStep {
        /// The repeated name.
        step: String,
    },
    /// A step depends on (or takes an input from) a step that does not exist.
    #[error("step {step:?} depends on unknown step {dependency:?}")]
    UnknownDependency {
        /// The step that names the dependency.
        step: String,
        /// The unknown name (its first 64 characters when it is longer).
        dependency: String,
    },
    /// The dependencies form a cycle. Each step on `path` depends on the one before it,
    /// and the first depends on the last.
    ///
    /// `path` holds every step on the cycle. The message shows the first ten of them,
    /// then how many there are in all, so that a cycle through a huge definition does
    /// not make a huge message:
    /// `steps ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", … (100000 steps)] form a cycle`.
    #[error("steps {} form a cycle", ShownPath(path))]
    Cycle {
        /// The steps on the cycle, in dependency order, starting from the one that
        /// comes first in the definition.
        path: Vec<String>,
    },
    /// A step takes an input from a step that is not one of its ancestors, so the
    /// output could not exist when the step starts.
    #[error("step {step:?} takes input {input:?} from {from:?}, which is not one of its ancestors")]
    InputFromNonAncestor {
        /// The step taking the input.
        step: String,
        /// The step the input would come from.
        from: String,
        /// The input's name (its first 64 characters when it is longer).
        input: String,
    },
    /// Two inputs of one step have the same name.
    #[error("step {step:?} has input {input:?} more than once")]
    DuplicateInput {
        /// The step.
        step: String,
        /// The repeated input name (its first 64 characters when it is longer).
        input: String,
    },
    /// The workflow has more steps than a run can index.
    #[error("{count} steps is more than the supported {max}")]
    TooManySteps {
        /// The number of steps given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A step's retry policy is invalid: no attempt at all, a multiplier that is not
    /// a finite number of at least 1, a jitter outside `[0, 1]`, a backoff longer
    /// than [`MAX_STEP_WAIT`](super::MAX_STEP_WAIT), or a longest backoff shorter
    /// than the first. `reason` names the field and its value.
    #[error("step {step:?} has an invalid retry policy: {reason}")]
    InvalidRetryPolicy {
        /// The step.
        step: String,
        /// What is wrong.
        reason: String,
    },
    /// No registered role can serve a step (from [`Workflow::validate_roles`]).
    ///
    /// [`Workflow::validate_roles`]: super::Workflow::validate_roles
    #[error("step {step:?} needs role {role}, which no registered role serves")]
    UnservableStep {
        /// The step.
        step: String,
        /// The role it needs.
        role: Role,
    },
    /// A step reference or name does not belong to this workflow.
    #[error("unknown step {step:?}")]
    UnknownStep {
        /// The name, or `#index` for a handle.
        step: String,
    },
    /// A step was started that is not ready.
    #[error("step {step:?} is {status}, not ready")]
    NotReady {
        /// The step.
        step: String,
        /// Its status.
        status: StepStatus,
    },
    /// An outcome was reported for a step that is not running.
    #[error("step {step:?} is {status}, not running")]
    NotRunning {
        /// The step.
        step: String,
        /// Its status.
        status: StepStatus,
    },
    /// An outcome was reported by an agent other than the one running the step.
    #[error("step {step:?} is run by {expected}, not {got}")]
    WrongAgent {
        /// The step.
        step: String,
        /// The agent that runs it.
        expected: AgentId,
        /// The agent that reported.
        got: AgentId,
    },
    /// An outcome was reported for an attempt that is not the step's current one
    /// (a late answer of a timed-out or failed attempt, after a retry started).
    #[error("step {step:?} runs attempt {current}, not attempt {attempt}")]
    StaleAttempt {
        /// The step.
        step: String,
        /// The attempt the outcome names.
        attempt: u32,
        /// The attempt running now.
        current: u32,
    },
    /// An outcome was reported at or after the attempt's deadline: the attempt timed
    /// out, whether or not a `tick` said so yet.
    #[error("step {step:?} attempt {attempt} answered at {at}, past its deadline {deadline}")]
    Late {
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
        /// Its deadline.
        deadline: Timestamp,
        /// When the outcome was reported.
        at: Timestamp,
    },
    /// A snapshot does not belong to this workflow or contradicts itself.
    #[error("run snapshot does not fit workflow {workflow:?}: {reason}")]
    CorruptSnapshot {
        /// The workflow it was restored against.
        workflow: String,
        /// What is wrong.
        reason: String,
    },
}

/// How many step names a [`WorkflowError::Cycle`] message shows before it gives the
/// count instead.
const CYCLE_NAMES_SHOWN: usize = 10;

/// A cycle's path as its message shows it: every name when there are at most
/// [`CYCLE_NAMES_SHOWN`], else the first of them and the count.
struct ShownPath<'a>(&'a [String]);

impl fmt::Display for ShownPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() <= CYCLE_NAMES_SHOWN {
            return write!(f, "{:?}", self.0);
        }
        f.write_str("[")?;
        for name in &self.0[..CYCLE_NAMES_SHOWN] {
            write!(f, "{name:?}, ")?;
        }
        write!(f, "… ({} steps)]", self.0.len())
    }
}
