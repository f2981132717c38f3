//! Retry policies: how often a step is attempted and how long it waits in between.
//!
//! A [`RetryPolicy`] is plain serde data. Backoff is exponential with an optional
//! jitter drawn from a seeded generator, so the same seed always gives the same
//! delays. This module does no I/O and keeps no state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::MAX_STEP_WAIT;
use crate::serde_util::duration_ms;

/// How a failed step is retried.
///
/// Attempt `n` (1-based) that fails waits
/// `min(initial_backoff * multiplier^(n-1), max_backoff) * (1 - jitter * u)` before
/// attempt `n + 1`, where `u` in `[0, 1)` is drawn from a generator seeded by the run's
/// seed, the step and `n`: the same seed gives the same delays, whatever order the
/// steps fail in, and jitter only ever shortens a delay.
///
/// The default makes one attempt (no retries); when retries are enabled the backoff
/// starts at one second, doubles, and stops growing at one minute.
///
/// # Which failures are retried
/// A failure the work reports as final
/// ([`WorkOutput::failure`](crate::agent::WorkOutput::failure),
/// [`StepOutcome::final_failure`](super::StepOutcome::final_failure)) ends the step at
/// its first attempt: another would fail the same way. A retryable one
/// ([`WorkOutput::retryable_failure`](crate::agent::WorkOutput::retryable_failure),
/// [`StepOutcome::failure`](super::StepOutcome::failure)), an attempt that timed out
/// or whose agent left service, and an agent's error
/// ([`AgentError`](crate::agent::AgentError), transient or not: the retry may go to
/// another agent, or find this one mended) are tried again per this policy.
///
/// ```
/// use std::time::Duration;
/// use concord::workflow::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(4)
///     .with_initial_backoff(Duration::from_secs(1))
///     .with_multiplier(2.0)
///     .with_max_backoff(Duration::from_secs(3));
/// assert_eq!(policy.backoff(1, 7), Duration::from_secs(1));
/// assert_eq!(policy.backoff(2, 7), Duration::from_secs(2));
/// assert_eq!(policy.backoff(3, 7), Duration::from_secs(3)); // capped
///
/// let jittered = policy.with_jitter(0.5);
/// assert_eq!(jittered.backoff(2, 7), jittered.backoff(2, 7)); // same seed, same delay
/// assert!(jittered.backoff(2, 7) <= Duration::from_secs(2));
/// assert!(jittered.backoff(2, 7) >= Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    max_attempts: u32,
    #[serde(with = "duration_ms")]
    initial_backoff: Duration,
    multiplier: f64,
    #[serde(with = "duration_ms")]
    max_backoff: Duration,
    jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            initial_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(60),
            jitter: 0.0,
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn none() -> Self {
        Self::default()
    }

    /// Up to `max_attempts` attempts with the default exponential backoff.
    pub fn exponential(max_attempts: u32) -> Self {
        Self::default().with_max_attempts(max_attempts)
    }

    /// Sets the number of attempts, the first included (at least 1).
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the wait after the first failed attempt: at most
    /// [`max_backoff`](Self::max_backoff) and at most
    /// [`MAX_STEP_WAIT`](super::MAX_STEP_WAIT), or building a workflow with the policy
    /// fails with [`WorkflowError::InvalidRetryPolicy`](super::WorkflowError::InvalidRetryPolicy).
    pub fn with_initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// Sets the factor the wait grows by after each failed attempt (finite, at least 1).
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the longest wait: at least [`initial_backoff`](Self::initial_backoff)
    /// and at most [`MAX_STEP_WAIT`](super::MAX_STEP_WAIT), or building a workflow
    /// with the policy fails with
    /// [`WorkflowError::InvalidRetryPolicy`](super::WorkflowError::InvalidRetryPolicy)
    /// (the default's one minute is below a first wait longer than a minute: set
    /// both).
    pub fn with_max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Sets the jitter fraction in `[0, 1]`: each wait is shortened by up to this
    /// fraction, drawn from the seeded generator.
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The number of attempts, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The wait after the first failed attempt.
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// The growth factor.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The longest wait.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// The jitter fraction.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Why the policy is invalid, if it is.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.max_attempts == 0 {
            return Some("max_attempts is 0 (must be at least 1)".to_owned());
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Some(format!(
                "multiplier {} is not a finite number of at least 1",
                self.multiplier
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Some(format!("jitter {} is not within [0, 1]", self.jitter));
        }
        // A wait past a year never comes (see `MAX_STEP_WAIT`); and a cap below the
        // first wait would silently shorten it to the cap.
        for (field, wait) in [
            ("initial_backoff", self.initial_backoff),
            ("max_backoff", self.max_backoff),
        ] {
            if wait > MAX_STEP_WAIT {
                return Some(format!(
                    "{field} {wait:?} is longer than {MAX_STEP_WAIT:?} (a year)"
                ));
            }
        }
        if self.max_backoff < self.initial_backoff {
            return Some(format!(
                "max_backoff {:?} is shorter than initial_backoff {:?}",
                self.max_backoff, self.initial_backoff
            ));
        }
        None
    }

    /// The wait after failed attempt `attempt` (1-based), with jitter drawn from
    /// `seed`. Never longer than [`max_backoff`](Self::max_backoff); never panics.
    pub fn backoff(&self, attempt: u32, seed: u64) -> Duration {
        let max = self.max_backoff.as_secs_f64();
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let mut secs = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        if !secs.is_finite() || secs > max {
            secs = max;
        }
        if self.jitter > 0.0 {
            let draw = splitmix64(seed ^ splitmix64(u64::from(attempt)));
            // The top 53 bits as a fraction in [0, 1).
            let u = (draw >> 11) as f64 / (1u64 << 53) as f64;
            secs *= 1.0 - self.jitter * u;
        }
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// One step of the SplitMix64 generator (Steele, Lea and Flood, "Fast splittable
/// pseudorandom number generators", OOPSLA 2014): a bijective mix of a 64-bit word.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
