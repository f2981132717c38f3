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
/// Sleeps on one clock (from any of its timers) wake in deadline order: a sleep
/// moves the clock only once it has been the earliest pending sleep for a number of
/// turns in a row (its patience, default 64), so that parties which are making
/// progress (ready to be polled again) register their own sleeps first, and a scene
/// with several parties (agents at work, an operator acting at a set time) plays out
/// in the order of its times, as it would on a real clock. Only agents that are
/// really stuck time out.
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

    /// Yields `n` turns in a row as the earliest sleep before moving the clock
    /// (default 64).
    pub fn with_patience(mut self, n: u32) -> Self {
        self.patience = n;
        self
    }
}

#[async_trait::async_trait]
impl Timer for SimulatedTimer {
    async fn sleep_until(&self, deadline: Timestamp) {
        struct Asleep<'a>(&'a ManualClock, (Timestamp, u64));
        impl Drop for Asleep<'_> {
            fn drop(&mut self) {
                self.0.wake(self.1);
            }
        }
        let asleep = Asleep(&self.clock, self.clock.sleep_on(deadline));
        // The clock moves only after this sleep has been the earliest for `patience`
        // turns in a row: a turn in which one party acts (a task completes) may wake
        // another (the run whose step that started) whose sleep is not registered
        // until its next turn, and would otherwise be skipped over. An earlier sleep
        // goes first; one whose future is never polled again (parked elsewhere) is
        // given up on in the end, rather than hang the simulation.
        let (mut settled, mut turns) = (0u32, 0u32);
        while crate::clock::Clock::now(&self.clock) < deadline
            && settled < self.patience
            && turns < SIMULATED_TURNS
        {
            YieldNow(false).await;
            turns += 1;
            if self.clock.is_next_sleeper(asleep.1) {
                settled += 1;
            } else {
                settled = 0;
            }
        }
        self.clock.set(deadline);
        drop(asleep);
    }
}

/// How many times a simulated sleep yields to an earlier one before it moves the
/// clock anyway.
const SIMULATED_TURNS: u32 = 100_000;

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
/// wanted; the spawner only has to poll it to completion (or drop it, when the
/// runtime shuts down). The executor waits for a future it no longer wants to be
/// dropped before it gives the agent's slot to another step, so a spawner must not
/// keep one unpolled forever.
pub trait Spawn: fmt::Debug + Send + Sync {
    /// Starts `work` on the runtime.
    fn spawn(&self, work: futures::future::BoxFuture<'static, ()>);
}

#[cfg(feature = "tokio")]
pub use self::tokio_seams::{TokioClock, TokioSpawner, TokioTimer};

/// The runtime seams on tokio (feature `tokio`).
#[cfg(feature = "tokio")]
mod tokio_seams {
    use std::fmt;
    use std::sync::Arc;

    use futures::future::BoxFuture;

    use std::sync::atomic::AtomicU64;

    use super::{Spawn, Timer};
    use crate::clock::{Clock, SystemClock, Timestamp, never_back};

    /// A [`Clock`] on tokio's time: the wall-clock time it was made at, moved on by
    /// the time `tokio::time::Instant` says has passed since.
    ///
    /// On a real runtime it reads what the system clock reads (less any step the
    /// system clock took since). Under tokio's paused time
    /// (`#[tokio::test(start_paused = true)]`, or a runtime built with
    /// `start_paused`) it moves only as tokio's time does, and jumps when the
    /// runtime, idle, advances to its next timer: a coordinator and a
    /// [`TokioTimer`] on one such clock play a run with hour-long back-offs or an
    /// escalation ladder in milliseconds, with the host's own `tokio::time` sleeps
    /// in step with them.
    ///
    /// Read outside the runtime whose time is paused, tokio's time is the real one,
    /// which may be behind what the paused runtime read: the clock then says the
    /// latest time it said (its clones share it), as the [`Clock`] contract asks.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use concord::{Clock, Timer, TokioClock, TokioTimer};
    ///
    /// let clock = TokioClock::new();
    /// let timer = TokioTimer::new(clock.clone());
    /// let start = clock.now();
    /// // An hour on tokio's paused time: no real hour passes.
    /// timer.sleep_until(start + Duration::from_secs(3600)).await;
    /// assert!(clock.now() >= start + Duration::from_secs(3600));
    /// # }
    /// ```
    #[derive(Debug, Clone)]
    pub struct TokioClock {
        start: tokio::time::Instant,
        at_start: Timestamp,
        said: Arc<AtomicU64>,
    }

    impl TokioClock {
        /// A clock that reads the system clock's time now, and moves with tokio's.
        pub fn new() -> Self {
            TokioClock::starting_at(SystemClock.now())
        }

        /// A clock that reads `at` now, and moves with tokio's time: for a test that
        /// wants the same times on every run.
        pub fn starting_at(at: Timestamp) -> Self {
            TokioClock {
                start: tokio::time::Instant::now(),
                at_start: at,
                said: Arc::new(AtomicU64::new(at.as_nanos())),
            }
        }
    }

    impl Default for TokioClock {
        fn default() -> Self {
            TokioClock::new()
        }
    }

    impl Clock for TokioClock {
        fn now(&self) -> Timestamp {
            let passed = tokio::time::Instant::now().saturating_duration_since(self.start);
            never_back(&self.said, self.at_start.saturating_add(passed))
        }
    }

    /// A [`Timer`] on tokio's clock: sleeps until a deadline of the coordinator's
    /// [`Clock`] (the system clock, usually), however far that clock is from tokio's
    /// own. A clock stepped back by the host only makes the sleep longer; the sleep
    /// ends once the clock reads the deadline.
    ///
    /// The deadline is the clock's, so the clock must move with tokio's time. Under
    /// tokio's paused time (`#[tokio::test(start_paused = true)]`) the system clock
    /// does not: each sleep ends at once, and this timer would sleep again until the
    /// system clock gets there, busy for the whole wait. There, give the coordinator
    /// and this timer a [`TokioClock`], which reads tokio's time, and hour-long
    /// waits end at once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use concord::{Clock, SystemClock, Timer, TokioTimer};
    ///
    /// let timer = TokioTimer::new(SystemClock);
    /// let deadline = SystemClock.now() + Duration::from_millis(5);
    /// timer.sleep_until(deadline).await;
    /// assert!(SystemClock.now() >= deadline);
    /// # }
    /// ```
    #[derive(Debug, Clone)]
    pub struct TokioTimer {
        clock: Arc<dyn Clock>,
    }

    impl TokioTimer {
        /// A timer for deadlines read on `clock`.
        pub fn new(clock: impl Clock) -> Self {
            TokioTimer {
                clock: Arc::new(clock),
            }
        }
    }

    #[async_trait::async_trait]
    impl Timer for TokioTimer {
        async fn sleep_until(&self, deadline: Timestamp) {
            loop {
                let now = self.clock.now();
                if now >= deadline {
                    return;
                }
                tokio::time::sleep(deadline.duration_since(now)).await;
            }
        }
    }

    /// A [`Spawn`] on a tokio runtime: each attempt of a workflow step runs as a
    /// task of its own, so CPU work in one agent does not stall the others.
    #[derive(Clone)]
    pub struct TokioSpawner(tokio::runtime::Handle);

    impl TokioSpawner {
        /// Spawns on the runtime behind `handle`.
        pub fn new(handle: tokio::runtime::Handle) -> Self {
            TokioSpawner(handle)
        }

        /// Spawns on the runtime this is called from; `None` outside a runtime.
        pub fn current() -> Option<Self> {
            tokio::runtime::Handle::try_current().ok().map(TokioSpawner)
        }
    }

    impl fmt::Debug for TokioSpawner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("TokioSpawner")
        }
    }

    impl Spawn for TokioSpawner {
        fn spawn(&self, work: BoxFuture<'static, ()>) {
            // Detached: the work ends itself when its result is no longer wanted.
            drop(self.0.spawn(work));
        }
    }
}
