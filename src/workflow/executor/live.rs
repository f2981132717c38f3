//! The ids of the runs an executor drives now: a run under an id already live is
//! refused ([`ExecutorError::RunInProgress`]), since the id is the run's group in the
//! coordinator and two live runs under one id would take each other's notices. The
//! coordinator's watch on the group is what holds the id, so that a second executor
//! over the same coordinator refuses it too. A new run is refused, too, under an id
//! whose group the coordinator still holds tasks in ([`ExecutorError::UnfinishedRun`]).
//! Apart because it is bookkeeping across runs, where everything else is one run's.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::coordinator::Coordinator;

use super::{Executor, ExecutorError};

/// The ids of the runs an executor drives now (see [`ExecutorError::RunInProgress`]).
pub(super) type LiveRuns = parking_lot::Mutex<BTreeSet<Arc<str>>>;

/// A run's id held among its executor's live runs, from the call that starts or
/// resumes the run until its future finishes or is dropped, whichever comes first,
/// with the coordinator watching its group: dropping this unwatches the group and
/// frees the id.
pub(super) struct LiveId {
    live: Arc<LiveRuns>,
    coordinator: Arc<Coordinator>,
    id: Arc<str>,
}

impl Drop for LiveId {
    fn drop(&mut self) {
        self.coordinator.unwatch(&self.id);
        self.live.lock().remove(&self.id);
    }
}

impl LiveId {
    /// Tells the coordinator that the executor says when an attempt's work has
    /// stopped: a task whose agent leaves service keeps its slot until then (see
    /// [`Coordinator::drive`]). Once the run is admitted, so that a refused run
    /// changes nothing; the group is forgotten when the run ends.
    fn drive(self) -> Self {
        if let Err(e) = self.coordinator.drive(&self.id) {
            // The id was checked on admission: not reached.
            tracing::error!(workflow.run = &*self.id, error = %e, "run's group not driven");
        }
        self
    }
}

impl Executor {
    /// Holds `id` among the live runs, or says why a run under it may not start.
    fn admit_unsettled(&self, id: &str) -> Result<LiveId, ExecutorError> {
        crate::workflow::check_run_id(id)?;
        let id: Arc<str> = Arc::from(id);
        if !self.live.lock().insert(Arc::clone(&id)) {
            return Err(ExecutorError::RunInProgress {
                run: id.to_string(),
            });
        }
        // Live on the coordinator through another executor (or watched by the host).
        if !self.coordinator.watch(&id) {
            self.live.lock().remove(&id);
            return Err(ExecutorError::RunInProgress {
                run: id.to_string(),
            });
        }
        Ok(LiveId {
            live: Arc::clone(&self.live),
            coordinator: Arc::clone(&self.coordinator),
            id,
        })
    }

    /// As [`admit_unsettled`](Self::admit_unsettled), for a run resumed: its group
    /// driven.
    pub(super) fn admit(&self, id: &str) -> Result<LiveId, ExecutorError> {
        self.admit_unsettled(id).map(LiveId::drive)
    }

    /// As [`admit_unsettled`](Self::admit_unsettled), for a new run: refused, too, when the coordinator
    /// still holds tasks in the id's group (see [`ExecutorError::UnfinishedRun`]).
    /// Checked once the id is held, so that no run starts under it meanwhile, and
    /// the hold is let go on refusal, leaving everything as it was.
    ///
    /// # Complexity
    /// O(running + waiting tasks) in the coordinator, once per run started.
    pub(super) fn admit_fresh(&self, id: &str) -> Result<LiveId, ExecutorError> {
        let live = self.admit_unsettled(id)?;
        let tasks = self.coordinator.with_core(|core| core.tasks_in_group(id));
        if tasks.is_empty() {
            return Ok(live.drive());
        }
        tracing::info!(
            workflow.run = id,
            tasks = tasks.len(),
            "run refused: its group still holds tasks; resume it"
        );
        Err(ExecutorError::UnfinishedRun {
            run: id.to_owned(),
            tasks,
        })
    }
}
