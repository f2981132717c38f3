//! [`Driver`]: ticks a [`Coordinator`] on the host's timer, so that the escalation
//! ladder climbs, leases expire and reservations are made with no host loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;

use super::Coordinator;
use super::event::Assignment;
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
}

impl Driver {
    /// A driver of `coordinator` that waits through `timer`.
    pub fn new(coordinator: Arc<Coordinator>, timer: impl Timer + 'static) -> Self {
        Driver {
            coordinator,
            timer: Arc::new(timer),
        }
    }

    /// Ticks the coordinator whenever it needs it, for ever: spawn it on the host's
    /// runtime, and drop it to stop.
    pub async fn run(&self) {
        loop {
            self.turn().await;
        }
    }

    /// One turn: waits until the coordinator's next deadline (or a change that may
    /// bring a nearer one), then ticks it if the deadline came. Returns the tasks the
    /// tick assigned.
    pub async fn turn(&self) -> Vec<Arc<Assignment>> {
        let seen = self.coordinator.change_count();
        match self.coordinator.poll_timeout() {
            Some(deadline) if deadline <= self.coordinator.now() => self.coordinator.tick(),
            Some(deadline) => {
                let sleep = self.timer.sleep_until(deadline);
                let changed = Changed {
                    coordinator: &self.coordinator,
                    seen,
                };
                match futures::future::select(sleep, changed).await {
                    Either::Left(((), _)) => self.coordinator.tick(),
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
