//! [`Timer`]: how the crate's async drivers wait until a point in time, through the
//! host's runtime (tokio's `sleep_until`, a thread, a simulated clock); and
//! [`SimulatedTimer`], which moves a [`ManualClock`] instead of waiting.

use std::fmt;

use crate::clock::{ManualClock, Timestamp};

/// Waits until a point in time: the host's timer (tokio's `sleep_until`, a thread, a
/// simulated clock).
///
/// # Contract
/// - `sleep_until` completes at or after `deadline` by the coordinator's clock; it may
///   complete at once if `deadline` has passed.
/// - It never blocks the calling thread.
#[async_trait::async_trait]
pub trait Timer: fmt::Debug + Send + Sync {
    /// Completes once `deadline` has come.
    async fn sleep_until(&self, deadline: Timestamp);
}

/// A timer for simulation and tests: it moves a [`ManualClock`] straight to the
/// deadline, so a run with hour-long back-offs finishes at once, deterministically.
///
/// Before it moves the clock, a sleep yields to the executor a number of times
/// (default 64), so that agents which are making progress (ready to be polled again)
/// finish before their deadline comes; only agents that are really stuck time out.
#[derive(Debug, Clone)]
pub struct SimulatedTimer {
    clock: ManualClock,
    patience: u32,
}

impl SimulatedTimer {
    /// A timer that advances `clock`.
    pub fn new(clock: ManualClock) -> Self {
        SimulatedTimer {
            clock,
            patience: 64,
        }
    }

    /// Yields `n` times before moving the clock (default 64).
    pub fn with_patience(mut self, n: u32) -> Self {
        self.patience = n;
        self
    }
}

#[async_trait::async_trait]
impl Timer for SimulatedTimer {
    async fn sleep_until(&self, deadline: Timestamp) {
        for _ in 0..self.patience {
            YieldNow(false).await;
        }
        self.clock.set(deadline);
    }
}

/// Yields once: wakes itself and returns `Pending`, then `Ready`.
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Runs a future on the host's runtime: how the executor hands each attempt to a
/// task of its own (`tokio::spawn`), so that CPU work in one agent does not stall the
/// others. The future catches its own panics and ends when its result is no longer
/// wanted; the spawner only has to poll it to completion.
pub trait Spawn: fmt::Debug + Send + Sync {
    /// Starts `work` on the runtime.
    fn spawn(&self, work: futures::future::BoxFuture<'static, ()>);
}
