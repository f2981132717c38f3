//! The memory health check: the agents' shared memory answers, is intact, and takes
//! writes.

use std::sync::Arc;

use super::{CheckError, CheckOutcome, HealthCheck, HealthStatus};
use crate::memory::Memory;

/// Checks the agents' shared memory through its [`Memory`] guard: the system health
/// checks' memory check.
///
/// - **failed** when the store does not answer (or cannot be validated);
/// - **unhealthy** when validation finds a corrupt entry (named in the reason);
/// - **degraded** while memory writes are stopped (the fence's reason, since when,
///   and how many writes it refused), or when the store warns (near capacity);
/// - **healthy** otherwise.
///
/// Each run validates the whole store (O(total size), see [`Memory::validate`]); for a
/// store too big for that at every run, [`with_validation(false)`](Self::with_validation)
/// reports the last validation the host ran instead.
///
/// ```
/// use std::sync::Arc;
/// use concord::health::{Diagnostics, HealthStatus, MemoryCheck};
/// use concord::memory::{InMemoryStore, Memory};
/// use concord::{ManualClock, SimulatedTimer, Timestamp};
/// use futures::executor::block_on;
///
/// let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
/// let store = Arc::new(InMemoryStore::new());
/// let memory = Arc::new(Memory::new(store.clone()));
/// block_on(memory.put("plan", b"ship it".to_vec()))?;
/// let diagnostics = Diagnostics::new(clock.clone(), SimulatedTimer::new(clock))
///     .with_check(MemoryCheck::new(Arc::clone(&memory)));
/// assert_eq!(block_on(diagnostics.run()).overall(), HealthStatus::Healthy);
///
/// store.corrupt("plan");
/// let report = block_on(diagnostics.run());
/// assert_eq!(report.check("memory").unwrap().status, HealthStatus::Unhealthy);
/// assert!(report.check("memory").unwrap().reason.contains("`plan` is altered"));
/// # Ok::<(), concord::memory::MemoryError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MemoryCheck {
    memory: Arc<Memory>,
    validate: bool,
}

impl MemoryCheck {
    /// A check of `memory`, validating it at every run.
    #[must_use]
    pub fn new(memory: Arc<Memory>) -> Self {
        MemoryCheck {
            memory,
            validate: true,
        }
    }

    /// Whether each run validates the whole store (default); with `false`, the check
    /// reports the guard's last validation ([`Memory::last_validation`]).
    #[must_use]
    pub fn with_validation(mut self, validate: bool) -> Self {
        self.validate = validate;
        self
    }
}

#[async_trait::async_trait]
impl HealthCheck for MemoryCheck {
    fn name(&self) -> &str {
        "memory"
    }

    async fn check(&self) -> Result<CheckOutcome, CheckError> {
        let store = self
            .memory
            .health()
            .await
            .map_err(|e| CheckError::new(format!("the memory store does not answer: {e}")))?;
        let report = if self.validate {
            Some(
                self.memory
                    .validate()
                    .await
                    .map_err(|e| CheckError::new(format!("memory could not be validated: {e}")))?,
            )
        } else {
            self.memory.last_validation()
        };
        let mut outcome = CheckOutcome::healthy("")
            .with_detail("tracked_keys", self.memory.tracked_keys())
            .with_detail("refused_writes", self.memory.refused_writes());
        if let Some(n) = store.entries {
            outcome = outcome.with_detail("entries", n);
        }
        if let Some(n) = store.bytes {
            outcome = outcome.with_detail("bytes", n);
        }
        let mut reasons = Vec::new();
        let mut status = HealthStatus::Healthy;
        match &report {
            Some(r) if !r.is_clean() => {
                outcome = outcome.with_detail("corrupt", r.corrupt().len());
                status = HealthStatus::Unhealthy;
                reasons.push(r.to_string());
            }
            Some(r) => reasons.push(r.to_string()),
            None => reasons.push("not validated yet".to_owned()),
        }
        if let Some(fence) = self.memory.fenced() {
            status = status.max(HealthStatus::Degraded);
            reasons.push(format!(
                "writes stopped since {} ({}); {} refused",
                fence.since, fence.reason, fence.refused
            ));
        }
        if let Some(warning) = &store.warning {
            status = status.max(HealthStatus::Degraded);
            reasons.push(format!("the store warns: {warning}"));
        }
        outcome.status = status;
        outcome.reason = reasons.join("; ");
        Ok(outcome)
    }
}
