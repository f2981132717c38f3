//! [`Driver`]: ticks a [`Coordinator`] on the host's timer, so that the escalation
//! ladder climbs, leases expire and reservations are made with no host loop.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::Either;

use super::Coordinator;
use super::event::Assignment;
use crate::agent::{Agent, AgentStatus, RegistryError};
use crate::clock::Timestamp;
use crate::timer::Timer;

/// Ticks a [`Coordinator`] when it needs it: sleeps on the host [`Timer`] until
/// [`Coordinator::poll_timeout`] and calls [`Coordinator::tick`]; a change that
/// brings a nearer deadline (a new conflict, a queued task) wakes it early.
///
/// What runs at a tick: the escalation ladder's next rungs (orchestrator, human, and
/// at a human's deadline the default decision, carried out as a decision by hand
/// would be), lease expiry, reservations for long-waiting tasks, and the assignment
/// of waiting tasks that fit then. The workflow executor ticks the coordinator too,
/// while its runs wait; a host that assigns tasks itself runs a driver beside them.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use concord::coordinator::{Coordinator, Driver};
/// use concord::{ManualClock, SimulatedTimer, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_secs(0));
/// let coordinator = Arc::new(Coordinator::builder().clock(clock.clone()).build());
/// let driver = Driver::new(Arc::clone(&coordinator), SimulatedTimer::new(clock));
/// // Nothing is timed: a turn waits for a change. Spawn `driver.run()` on your
/// // runtime; here, one turn with nothing to do is polled once and dropped.
/// let turn = driver.turn();
/// futures::pin_mut!(turn);
/// assert!(futures::FutureExt::now_or_never(turn).is_none());
/// ```
#[derive(Debug, Clone)]
pub struct Driver {
    coordinator: Arc<Coordinator>,
    timer: Arc<dyn Timer>,
    health: Option<Arc<HealthSchedule>>,
    timed: Vec<Arc<dyn Timed>>,
}

/// Something beside the coordinator with deadlines of its own (an alert manager's
/// response deadlines and re-pages), which a [`Driver`] wakes for: sans-I/O, like
/// the core, behind the host's lock.
///
/// After changing it outside the driver (firing an alert), call
/// [`Coordinator::nudge`] so that a driver asleep until a later deadline looks again.
pub trait Timed: fmt::Debug + Send + Sync {
    /// When it next needs [`handle_timeout`](Self::handle_timeout), if ever.
    fn poll_timeout(&self) -> Option<Timestamp>;

    /// Does what fell due by `now`.
    fn handle_timeout(&self, now: Timestamp);
}

/// The agents a driver checks, how often, and when next.
#[derive(Debug)]
struct HealthSchedule {
    agents: Vec<Arc<dyn Agent>>,
    every: Duration,
    patience: Duration,
    /// The next check, in nanoseconds since the epoch (0: at the first turn).
    next: AtomicU64,
}

impl Driver {
    /// A driver of `coordinator` that waits through `timer`.
    pub fn new(coordinator: Arc<Coordinator>, timer: impl Timer + 'static) -> Self {
        Driver {
            coordinator,
            timer: Arc::new(timer),
            health: None,
            timed: Vec::new(),
        }
    }

    /// Wakes for `timed`'s deadlines too, and handles them when they come.
    pub fn with_timed(mut self, timed: Arc<dyn Timed>) -> Self {
        self.timed.push(timed);
        self
    }

    /// Handles every timed source that fell due by `now`; returns whether one did.
    fn handle_timed(&self, now: Timestamp) -> bool {
        let mut any = false;
        for t in &self.timed {
            if t.poll_timeout().is_some_and(|at| at <= now) {
                t.handle_timeout(now);
                any = true;
            }
        }
        any
    }

    /// Ticks the coordinator if its deadline came (what a timed source's wake-up
    /// does not need).
    fn tick_if_due(&self, now: Timestamp) -> Vec<Arc<Assignment>> {
        if self.coordinator.poll_timeout().is_some_and(|at| at <= now) {
            self.coordinator.tick()
        } else {
            Vec::new()
        }
    }

    /// Checks `agents` every `every` ([`Agent::health`], all at once, each given
    /// `patience` to answer) and applies the answers: an agent in service that fails
    /// or does not answer in time becomes [`AgentStatus::Unhealthy`] (its running
    /// tasks are handed back), and an unhealthy agent that answers is
    /// [`AgentStatus::Available`] again, or busy and held again if the host had
    /// drained it (set it busy) when the check took it out
    /// ([`AgentRegistry::is_drained`](crate::agent::AgentRegistry::is_drained): the
    /// coordinator keeps that, so a driver started again after a crash knows it
    /// too). Quarantined and offline agents are the host's to bring back, and are
    /// left as they are. The first check is at the first turn.
    pub fn with_health_checks(
        mut self,
        agents: impl IntoIterator<Item = Arc<dyn Agent>>,
        every: Duration,
        patience: Duration,
    ) -> Self {
        self.health = Some(Arc::new(HealthSchedule {
            agents: agents.into_iter().collect(),
            every: every.max(Duration::from_millis(1)),
            patience,
            next: AtomicU64::new(0),
        }));
        self
    }

    /// When the next health check is due, if the driver checks health.
    fn next_check(&self) -> Option<Timestamp> {
        let schedule = self.health.as_ref()?;
        Some(Timestamp::from_nanos(schedule.next.load(Ordering::SeqCst)))
    }

    /// Asks every scheduled agent for its health and applies the answers.
    async fn check_health(&self, schedule: &HealthSchedule) {
        let now = self.coordinator.now();
        let next = now + schedule.every;
        schedule.next.store(next.as_nanos(), Ordering::SeqCst);
        let deadline = now + schedule.patience;
        let asks = schedule.agents.iter().map(|agent| async move {
            let ask = std::panic::AssertUnwindSafe(agent.health());
            let ask = futures::FutureExt::catch_unwind(ask);
            let sleep = self.timer.sleep_until(deadline);
            futures::pin_mut!(ask);
            let healthy = match futures::future::select(ask, sleep).await {
                Either::Left((Ok(Ok(_)), _)) => true,
                // An error, a panic, or no answer in time.
                _ => false,
            };
            (agent.id(), healthy)
        });
        for (agent, healthy) in futures::future::join_all(asks).await {
            let Ok((status, drained)) = self.coordinator.with_registry(|r| {
                Ok::<_, RegistryError>((r.status(agent)?, r.is_drained(agent)?))
            }) else {
                continue;
            };
            let to = match (status, healthy) {
                (AgentStatus::Available | AgentStatus::Busy, false) => AgentStatus::Unhealthy,
                // Back to the drain, not to work: a failed check during a maintenance
                // window does not end the window.
                (AgentStatus::Unhealthy, true) if drained => AgentStatus::Busy,
                (AgentStatus::Unhealthy, true) => AgentStatus::Available,
                _ => continue,
            };
            tracing::info!(agent.id = %agent, from = %status, to = %to, "health check");
            if let Err(e) = self.coordinator.set_agent_status(agent, to) {
                tracing::warn!(agent.id = %agent, error = %e, "health check not applied");
            }
        }
    }

    /// Ticks the coordinator whenever it needs it, for ever: spawn it on the host's
    /// runtime, and drop it to stop.
    pub async fn run(&self) {
        loop {
            self.turn().await;
        }
    }

    /// One turn: waits until the coordinator's next deadline or health check (or a
    /// change that may bring a nearer one), then ticks it or checks health if one
    /// came. Returns the tasks the tick assigned.
    pub async fn turn(&self) -> Vec<Arc<Assignment>> {
        let seen = self.coordinator.change_count();
        let now = self.coordinator.now();
        if let Some(schedule) = self.health.as_ref() {
            if self.next_check().is_some_and(|at| at <= now) {
                self.check_health(schedule).await;
                return Vec::new();
            }
        }
        if self.handle_timed(now) {
            return self.tick_if_due(now);
        }
        let due = [self.coordinator.poll_timeout(), self.next_check()]
            .into_iter()
            .chain(self.timed.iter().map(|t| t.poll_timeout()))
            .flatten()
            .min();
        match due {
            Some(deadline) if deadline <= self.coordinator.now() => self.coordinator.tick(),
            Some(deadline) => {
                let sleep = self.timer.sleep_until(deadline);
                let changed = Changed {
                    coordinator: &self.coordinator,
                    seen,
                };
                match futures::future::select(sleep, changed).await {
                    Either::Left(((), _)) if self.next_check() == Some(deadline) => Vec::new(),
                    Either::Left(((), _)) => {
                        let now = self.coordinator.now();
                        self.handle_timed(now);
                        self.tick_if_due(now)
                    }
                    Either::Right(((), _)) => Vec::new(),
                }
            }
            None => {
                Changed {
                    coordinator: &self.coordinator,
                    seen,
                }
                .await;
                Vec::new()
            }
        }
    }
}

/// Completes once the coordinator changed since `seen`.
pub(crate) struct Changed<'a> {
    pub(crate) coordinator: &'a Coordinator,
    pub(crate) seen: u64,
}

impl Future for Changed<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.coordinator.change_count() != self.seen {
            return Poll::Ready(());
        }
        self.coordinator.wake_on_change(cx);
        // A change between the look and the registration would be missed: look again.
        if self.coordinator.change_count() != self.seen {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
