//! Diagnostics: the system health checks, run together, each within its own time
//! limit, into one report that is always whole.
//!
//! Owns the [`HealthCheck`] trait (a check a host or the crate supplies), the
//! [`Diagnostics`] runner, the built-in checks ([`AgentsCheck`]: every agent pinged,
//! with its response time and version; [`ResourcesCheck`]: the ledger's use of each
//! resource; [`CoordinationCheck`]: conflicts open and tasks waiting too long;
//! [`MemoryCheck`]: the agents' shared memory intact and taking writes) and
//! [`check_fn`] for a host's own (the network check, a database ping); and the
//! morning startup checklist in one call ([`Diagnostics::morning_checklist`]).
//!
//! A check that errors, panics or does not answer in time is reported as
//! [`HealthStatus::Failed`] with the reason; it never takes the runner or the other
//! checks down, and the report lists every check, always. Waiting goes through the
//! host's [`Timer`], time through its [`Clock`]: the module does no I/O of its own.
//! It sits above the coordinator (its built-in checks read it) and below alerting;
//! it must never import `alert` or `error`.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use concord::health::{check_fn, CheckOutcome, Diagnostics, HealthStatus};
//! use concord::{ManualClock, SimulatedTimer, Timestamp};
//!
//! let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
//! let diagnostics = Diagnostics::new(clock.clone(), SimulatedTimer::new(clock))
//!     .with_check(check_fn("network", || async { Ok(CheckOutcome::healthy("gateway answers")) }))
//!     .with_check(check_fn("disk", || async { panic!("driver bug") }));
//! let report = futures::executor::block_on(diagnostics.run());
//! assert_eq!(report.checks.len(), 2); // a panicking check is reported, not lost
//! assert_eq!(report.check("disk").map(|c| c.status), Some(HealthStatus::Failed));
//! assert_eq!(report.overall(), HealthStatus::Failed);
//! ```

mod checklist;
mod checks;
mod memory;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::Either;
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, Timestamp};
use crate::text::markdown_line;
use crate::timer::Timer;

pub use checklist::{ChecklistItem, MorningReport};
pub use checks::{AgentsCheck, CoordinationCheck, ResourcesCheck};
pub use memory::MemoryCheck;

/// How a check found what it looked at, best first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthStatus {
    /// All is well.
    #[default]
    Healthy,
    /// Working, but something needs attention (a slow agent, a resource near full).
    Degraded,
    /// Not working as it should (agents down, a resource exhausted).
    Unhealthy,
    /// The check itself could not tell: it errored, panicked or did not answer in
    /// time.
    Failed,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Failed => "failed",
        })
    }
}

/// What a check found: a status, the reason in words, and figures by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CheckOutcome {
    /// How it found it.
    pub status: HealthStatus,
    /// Why, in words ("3 of 4 agents answered; agent#2 is down").
    pub reason: String,
    /// Figures by name ("agent#1.response_ms" = "12").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl CheckOutcome {
    /// An outcome of `status`, for `reason`.
    pub fn new(status: HealthStatus, reason: impl Into<String>) -> Self {
        CheckOutcome {
            status,
            reason: reason.into(),
            details: BTreeMap::new(),
        }
    }

    /// [`HealthStatus::Healthy`], for `reason`.
    pub fn healthy(reason: impl Into<String>) -> Self {
        Self::new(HealthStatus::Healthy, reason)
    }

    /// [`HealthStatus::Degraded`], for `reason`.
    pub fn degraded(reason: impl Into<String>) -> Self {
        Self::new(HealthStatus::Degraded, reason)
    }

    /// [`HealthStatus::Unhealthy`], for `reason`.
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        Self::new(HealthStatus::Unhealthy, reason)
    }

    /// With a figure.
    pub fn with_detail(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.details.insert(name.into(), value.to_string());
        self
    }
}

/// Why a check could not tell: reported as [`HealthStatus::Failed`] with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct CheckError {
    /// What went wrong.
    pub reason: String,
}

impl CheckError {
    /// An error for `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        CheckError {
            reason: reason.into(),
        }
    }
}

/// One system health check: the crate's built-in ones, or a host's (the network, a
/// database, a queue).
///
/// # Contract
/// - `name` is short, stable and unique among the checks of one [`Diagnostics`].
/// - `check` must not block the calling thread: await the host's I/O. It may take as
///   long as it likes: the runner gives up on it at its timeout and reports it
///   failed. It may error or even panic: that is reported too, and the other checks
///   go on.
#[async_trait::async_trait]
pub trait HealthCheck: fmt::Debug + Send + Sync {
    /// The check's name, as the report shows it.
    fn name(&self) -> &str;

    /// Looks, and says what it found.
    async fn check(&self) -> Result<CheckOutcome, CheckError>;
}

/// A check made from a name and an async closure: the host's network check, in one
/// line.
pub fn check_fn<F, Fut>(name: impl Into<String>, f: F) -> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<CheckOutcome, CheckError>> + Send,
{
    FnCheck {
        name: name.into(),
        f,
    }
}

/// A [`HealthCheck`] from a closure: see [`check_fn`].
pub struct FnCheck<F> {
    name: String,
    f: F,
}

impl<F> fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnCheck").field("name", &self.name).finish()
    }
}

#[async_trait::async_trait]
impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<CheckOutcome, CheckError>> + Send,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<CheckOutcome, CheckError> {
        (self.f)().await
    }
}

/// One check's line in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// The check.
    pub name: String,
    /// What it found ([`HealthStatus::Failed`] if it errored, panicked or timed out).
    pub status: HealthStatus,
    /// Why.
    pub reason: String,
    /// Its figures.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took (its timeout, if it did not answer).
    pub took: Duration,
}

/// Every check's finding, in the order the checks were added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// When the run started.
    pub at: Timestamp,
    /// One line per check.
    pub checks: Vec<CheckReport>,
}

impl HealthReport {
    /// The worst status of any check ([`HealthStatus::Healthy`] with none).
    pub fn overall(&self) -> HealthStatus {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or_default()
    }

    /// The line of the check named `name`; of several checks of that name, the
    /// worst (the first of those, on a tie), so that a host gating on a name sees a
    /// failure whichever of them found it.
    pub fn check(&self, name: &str) -> Option<&CheckReport> {
        // `max_by_key` keeps the last of equals: reversed, that is the first.
        (self.checks.iter().rev())
            .filter(|c| c.name == name)
            .max_by_key(|c| c.status)
    }

    /// The checks that are not healthy, worst first.
    pub fn problems(&self) -> Vec<&CheckReport> {
        let mut out: Vec<&CheckReport> = self
            .checks
            .iter()
            .filter(|c| c.status != HealthStatus::Healthy)
            .collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.status));
        out
    }

    /// The report as a Markdown table.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "### System health at {}: {}\n\n| check | status | took | reason |\n|---|---|---|---|\n",
            self.at,
            self.overall()
        );
        for c in &self.checks {
            out.push_str(&format!(
                "| {} | {} | {} ms | {} |\n",
                markdown_line(&c.name),
                c.status,
                c.took.as_millis(),
                markdown_line(&c.reason)
            ));
        }
        out
    }
}

/// How long a check may take unless it is given its own limit.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs health checks concurrently, each within its own timeout, and always returns
/// a whole report.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    clock: Arc<dyn Clock>,
    timer: Arc<dyn Timer>,
    checks: Vec<(Arc<dyn HealthCheck>, Duration)>,
    timeout: Duration,
}

impl Diagnostics {
    /// A runner with no checks, timing with `clock` and waiting on `timer`.
    pub fn new(clock: impl Clock, timer: impl Timer + 'static) -> Self {
        Diagnostics {
            clock: Arc::new(clock),
            timer: Arc::new(timer),
            checks: Vec::new(),
            timeout: DEFAULT_CHECK_TIMEOUT,
        }
    }

    /// Sets the timeout of checks added without their own (default
    /// [`DEFAULT_CHECK_TIMEOUT`]); checks already added keep theirs.
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a check with the default timeout.
    pub fn with_check(self, check: impl HealthCheck + 'static) -> Self {
        let timeout = self.timeout;
        self.with_check_timeout(check, timeout)
    }

    /// Adds a check that is given `timeout` to answer.
    pub fn with_check_timeout(
        mut self,
        check: impl HealthCheck + 'static,
        timeout: Duration,
    ) -> Self {
        self.checks.push((Arc::new(check), timeout));
        self
    }

    /// Adds a shared check with the default timeout.
    pub fn with_shared_check(mut self, check: Arc<dyn HealthCheck>) -> Self {
        self.checks.push((check, self.timeout));
        self
    }

    /// The checks' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.checks.iter().map(|(c, _)| c.name()).collect()
    }

    /// Runs every check at once and waits for all of them (each at most its
    /// timeout).
    pub async fn run(&self) -> HealthReport {
        let at = self.clock.now();
        let runs = self
            .checks
            .iter()
            .map(|(check, timeout)| self.run_one(check.as_ref(), *timeout));
        HealthReport {
            at,
            checks: futures::future::join_all(runs).await,
        }
    }

    /// Runs one check, turning an error, a panic or no answer in time into a failed
    /// line.
    async fn run_one(&self, check: &dyn HealthCheck, timeout: Duration) -> CheckReport {
        let started_at = self.clock.now();
        let ask = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(check.check()));
        let sleep = self.timer.sleep_until(started_at + timeout);
        futures::pin_mut!(ask, sleep);
        let outcome = match futures::future::select(ask, sleep).await {
            Either::Left((Ok(Ok(outcome)), _)) => outcome,
            Either::Left((Ok(Err(e)), _)) => {
                CheckOutcome::new(HealthStatus::Failed, format!("the check failed: {e}"))
            }
            Either::Left((Err(panic), _)) => CheckOutcome::new(
                HealthStatus::Failed,
                format!("the check panicked: {}", panic_message(panic.as_ref())),
            ),
            Either::Right(((), _)) => CheckOutcome::new(
                HealthStatus::Failed,
                format!("no answer within {}", human(timeout)),
            ),
        };
        let took = self.clock.now().duration_since(started_at).min(timeout);
        tracing::debug!(check = check.name(), status = %outcome.status, ?took, "health check");
        CheckReport {
            name: check.name().to_owned(),
            status: outcome.status,
            // A note: a check's reason may quote whatever its probe answered.
            reason: crate::id::note(outcome.reason),
            details: outcome.details,
            started_at,
            took,
        }
    }
}

/// What a panic carried, if it was a message.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// A duration as people write it: "250 ms", "10 s", "5 min", "2 h 30 min".
pub(crate) fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{} ms", d.as_millis()),
        1..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ if secs % 3600 < 60 => format!("{} h", secs / 3600),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}
