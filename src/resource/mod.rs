//! Resources: amounts, prediction and the ledger.
//!
//! Owns [`Resources`] (integer units: cpu millicores, memory and storage bytes, named
//! extended resources), the [`ResourcePredictor`] trait with its defaults
//! ([`StaticPredictor`], [`EwmaPredictor`], [`PercentilePredictor`]) and the
//! [`ResourceLedger`]: the resource allocation process (predict, check availability,
//! allocate or queue, release) and the resource exhaustion procedures (usage report,
//! heavy users, leaks, idle agents). The ledger's books are integers only: no floats,
//! no silent overflow. This module sits just above the base modules (`clock`, `id`,
//! the task priority its queue orders by) and must never import `task`, `agent`,
//! `assignment` or anything above them.

mod amount;
mod bump;
mod error;
mod ewma;
mod ledger;
mod percentile;
mod resources;
mod static_predictor;

pub use error::{AmountError, LedgerError, PredictorError, ResourceError};
pub use ewma::{EwmaConfig, EwmaPredictor, EwmaSnapshot};
pub use ledger::{
    AgentAvailability, AgentCapacity, AgentUsage, Allocation, AllocationRequest, Grant, HeavyUser,
    LEDGER_SNAPSHOT_VERSION, Leak, LeakReason, LedgerConfig, LedgerSnapshot, Released,
    RequestOutcome, ResourceLedger, ResourceUsage, UsageReport, WaitingRequest,
};
pub use percentile::{PercentileConfig, PercentilePredictor, PercentileSnapshot};
pub use resources::{ExtendedName, ResourceName, Resources};
pub use static_predictor::StaticPredictor;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// What one finished task actually used: the input a [`ResourcePredictor`] learns from.
///
/// `exhausted` lists the resources the task ran out of (killed for memory, throttled to
/// its cpu limit, out of tokens): its `usage` of those is a lower bound on the real
/// need, so predictors bump them up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// Peak usage of each resource.
    pub usage: Resources,
    /// Resources the task ran out of.
    #[serde(default)]
    pub exhausted: Vec<ResourceName>,
    /// When the task finished.
    pub at: Timestamp,
}

impl Observation {
    /// An observation of a task that finished within its resources.
    pub fn new(usage: Resources, at: Timestamp) -> Self {
        Observation {
            usage,
            exhausted: Vec::new(),
            at,
        }
    }

    /// Marks `resource` as exhausted.
    pub fn with_exhausted(mut self, resource: ResourceName) -> Self {
        if !self.exhausted.contains(&resource) {
            self.exhausted.push(resource);
        }
        self
    }
}

/// A predictor's estimate of what a task needs, and what it rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Prediction {
    /// The predicted needs.
    pub resources: Resources,
    /// How many observations of this kind of task the estimate rests on; zero when the
    /// predictor fell back to the requested resources.
    pub samples: u64,
}

impl Prediction {
    /// A prediction of `resources` resting on `samples` observations.
    pub fn new(resources: Resources, samples: u64) -> Self {
        Prediction { resources, samples }
    }
}

/// Predicts what a task will need, and learns from what tasks actually used: the
/// resource allocation process's `resource_predictor.predict_resource_needs(task)`.
///
/// Predictions are per task *kind* (the host's label such as `deploy`), seeded by the
/// resources the task asked for.
///
/// # Contract
/// - `predict` is pure: the same state and inputs give the same prediction.
/// - `predict` never returns less than zero or overflows; with no observations for a
///   kind it returns `requested` (a predictor may add a margin).
/// - `observe` never panics, whatever the observation holds.
///
/// # Examples
/// A predictor that always asks for double:
/// ```
/// use concord::resource::{Observation, Prediction, ResourcePredictor};
/// use concord::Resources;
///
/// #[derive(Debug)]
/// struct Double;
/// impl ResourcePredictor for Double {
///     fn predict(&self, _kind: &str, requested: &Resources) -> Prediction {
///         Prediction::new(requested.saturating_add(requested), 0)
///     }
///     fn observe(&mut self, _kind: &str, _observation: &Observation) {}
/// }
/// let p = Double.predict("build", &"cpu=1".parse().unwrap());
/// assert_eq!(p.resources.cpu_millis(), 2000);
/// ```
pub trait ResourcePredictor: fmt::Debug + Send + Sync {
    /// Predicts the needs of a task of `kind` that asked for `requested`.
    fn predict(&self, kind: &str, requested: &Resources) -> Prediction;

    /// [`predict`](Self::predict), written over `resources` (the requested amounts,
    /// which become the predicted ones).
    ///
    /// The coordinator predicts every task this way. The default calls `predict` and
    /// moves the result in; a predictor that mostly keeps what was asked for (the
    /// built-in ones, for a kind they have not learned yet or without a margin)
    /// overrides it to spare a copy per task.
    fn predict_in_place(&self, kind: &str, resources: &mut Resources) {
        *resources = self.predict(kind, resources).resources;
    }

    /// Learns from one finished task of `kind`.
    fn observe(&mut self, kind: &str, observation: &Observation);

    /// What the predictor has learned, for the coordinator's checkpoint: a
    /// coordinator rebuilt from the checkpoint then predicts exactly as the one that
    /// took it, which replaying its journal relies on. `None` (the default) for a
    /// predictor that learns nothing, or whose host keeps its state itself.
    fn learned(&self) -> Option<Learned> {
        None
    }

    /// Takes back what [`learned`](Self::learned) returned, in place of what it holds.
    /// Returns `false`, changing nothing, if `learned` is another predictor's kind
    /// (the default: a predictor that learns nothing takes nothing back).
    fn relearn(&mut self, learned: &Learned) -> bool {
        let _ = learned;
        false
    }
}

/// What a built-in predictor has learned, as serde data: kept in the coordinator's
/// checkpoint (see [`ResourcePredictor::learned`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "predictor", content = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Learned {
    /// A [`PercentilePredictor`]'s.
    Percentile(PercentileSnapshot),
    /// An [`EwmaPredictor`]'s.
    Ewma(EwmaSnapshot),
}

impl Learned {
    /// The predictor it belongs to, by name (`percentile`, `ewma`).
    pub fn predictor(&self) -> &'static str {
        match self {
            Learned::Percentile(_) => "percentile",
            Learned::Ewma(_) => "ewma",
        }
    }
}

/// A predictor the host keeps a handle to: the coordinator owns what it is given, so
/// to checkpoint what a predictor has learned (the coordinator's snapshot does not
/// hold it), hand the builder an `Arc<Mutex<_>>` and keep a clone. Each prediction
/// then takes the lock, which nothing else holds but the host's checkpoint.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use concord::coordinator::Coordinator;
/// use concord::resource::PercentilePredictor;
///
/// let learned = Arc::new(Mutex::new(PercentilePredictor::default()));
/// let coordinator = Coordinator::builder().predictor(Arc::clone(&learned)).build();
/// // ... tasks complete and the predictor learns; at a checkpoint:
/// let snapshot = learned.lock().unwrap().snapshot();
/// // After a restart: the predictor from its snapshot, with the coordinator's.
/// let restored = Coordinator::builder()
///     .predictor(PercentilePredictor::restore(snapshot))
///     .build();
/// # drop((coordinator, restored));
/// ```
impl<P: ResourcePredictor> ResourcePredictor for std::sync::Arc<std::sync::Mutex<P>> {
    fn predict(&self, kind: &str, requested: &Resources) -> Prediction {
        let predictor = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        predictor.predict(kind, requested)
    }

    fn predict_in_place(&self, kind: &str, resources: &mut Resources) {
        let predictor = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        predictor.predict_in_place(kind, resources);
    }

    fn observe(&mut self, kind: &str, observation: &Observation) {
        let mut predictor = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        predictor.observe(kind, observation);
    }

    fn learned(&self) -> Option<Learned> {
        let predictor = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        predictor.learned()
    }

    fn relearn(&mut self, learned: &Learned) -> bool {
        let mut predictor = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        predictor.relearn(learned)
    }
}

#[cfg(test)]
fn _object_safe(_: &dyn ResourcePredictor) {}
