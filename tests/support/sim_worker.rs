//! A simulated worker for scenes of several runs on one fleet: it "works" by
//! sleeping on a `SimulatedTimer`, answers health checks while `up`, and keeps
//! books shared by the whole fleet: attempts at once per agent (now and at most),
//! and work finished per task and per step name. Shared by the shared-fleet tests
//! and properties.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::workflow::{SimulatedTimer, Timer};
use concord::{AgentId, Clock, ManualClock, TaskId};
use parking_lot::Mutex;

/// What the fleet did.
#[derive(Debug, Default)]
pub struct Books {
    /// Attempts each agent works on now.
    pub busy: BTreeMap<AgentId, u32>,
    /// The most attempts each agent ever worked on at once.
    pub peak: BTreeMap<AgentId, u32>,
    /// Work finished, per task.
    pub by_task: BTreeMap<TaskId, u32>,
    /// Work finished, per step name (the task's description).
    pub by_name: BTreeMap<String, u32>,
}

/// How long a piece of work takes.
pub type WorkTime = Arc<dyn Fn(&WorkItem) -> Duration + Send + Sync>;

/// One simulated worker.
pub struct SimWorker {
    pub id: AgentId,
    pub clock: ManualClock,
    pub timer: SimulatedTimer,
    pub work: WorkTime,
    pub books: Arc<Mutex<Books>>,
    /// Whether it answers health checks.
    pub up: Arc<AtomicBool>,
}

impl SimWorker {
    /// Worker `id` on `clock`, taking `work` per piece, keeping `books`.
    pub fn new(
        id: AgentId,
        clock: &ManualClock,
        work: WorkTime,
        books: &Arc<Mutex<Books>>,
    ) -> Self {
        SimWorker {
            id,
            clock: clock.clone(),
            timer: SimulatedTimer::new(clock.clone()),
            work,
            books: Arc::clone(books),
            up: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl std::fmt::Debug for SimWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimWorker").field("id", &self.id).finish()
    }
}

/// Ends a worker's attempt in its books, even when the attempt is dropped.
struct Busy<'a>(&'a SimWorker);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *self.0.books.lock().busy.entry(self.0.id).or_default() -= 1;
    }
}

#[concord::async_trait]
impl Agent for SimWorker {
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
        let took = (self.work)(&work);
        self.timer.sleep_until(self.clock.now() + took).await;
        // Recorded once the work is done: an attempt dropped midway did nothing.
        let mut books = self.books.lock();
        *books.by_task.entry(work.task()).or_default() += 1;
        *books
            .by_name
            .entry(work.description().to_owned())
            .or_default() += 1;
        Ok(WorkOutput::success())
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        if self.up.load(Ordering::SeqCst) {
            Ok(AgentHealth::new("1.0"))
        } else {
            Err(AgentError::Unreachable {
                reason: "no answer".to_owned(),
            })
        }
    }
}
