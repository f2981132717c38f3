//! [`StaticPredictor`]: trusts what the task asked for.

use super::bump::{check_margin, to_units};
use super::error::PredictorError;
use super::{Observation, Prediction, ResourcePredictor, Resources};

/// Predicts that a task needs what it asked for, optionally times a fixed safety
/// margin. It learns nothing: [`observe`](ResourcePredictor::observe) is a no-op, and
/// every prediction rests on zero samples.
///
/// The baseline the learning predictors ([`EwmaPredictor`](super::EwmaPredictor),
/// [`PercentilePredictor`](super::PercentilePredictor)) are measured against, and the
/// right choice when requests are trusted or tasks are too rare to learn from.
///
/// # Examples
/// ```
/// use concord::resource::{Observation, ResourcePredictor, StaticPredictor};
/// use concord::{Resources, Timestamp};
///
/// let requested: Resources = "cpu=2,memory=1Gi,gpu=1".parse()?;
/// let mut exact = StaticPredictor::new();
/// assert_eq!(exact.predict("build", &requested).resources, requested);
///
/// // Observations change nothing.
/// let used: Resources = "cpu=8,memory=4Gi".parse()?;
/// exact.observe("build", &Observation::new(used, Timestamp::from_secs(1)));
/// assert_eq!(exact.predict("build", &requested).samples, 0);
///
/// // A 10% margin, rounded up to whole base units.
/// let padded = StaticPredictor::new().with_margin(0.10)?;
/// let p = padded.predict("build", &requested);
/// assert_eq!(p.resources.to_string(), "cpu=2200m,memory=1181116007B,gpu=2");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StaticPredictor {
    margin: f64,
}

impl StaticPredictor {
    /// A predictor that returns requests unchanged.
    pub fn new() -> Self {
        StaticPredictor { margin: 0.0 }
    }

    /// Multiplies every requested amount by `1 + margin`, rounded up.
    ///
    /// # Errors
    /// [`PredictorError::InvalidConfig`] naming `margin` if it is negative or not
    /// finite.
    pub fn with_margin(mut self, margin: f64) -> Result<Self, PredictorError> {
        check_margin(margin)?;
        self.margin = margin;
        Ok(self)
    }

    /// The safety margin (zero by default).
    pub fn margin(&self) -> f64 {
        self.margin
    }
}

impl ResourcePredictor for StaticPredictor {
    fn predict(&self, _kind: &str, requested: &Resources) -> Prediction {
        if self.margin == 0.0 {
            return Prediction::new(requested.clone(), 0);
        }
        let scale = 1.0 + self.margin;
        let mut out = Resources::new();
        for (name, amount) in requested.iter() {
            // `max` keeps an amount too large for an f64 to hold exactly from
            // rounding below the request.
            out.set(&name, to_units(amount as f64 * scale).max(amount));
        }
        Prediction::new(out, 0)
    }

    fn predict_in_place(&self, kind: &str, resources: &mut Resources) {
        // Without a margin the prediction is the request.
        if self.margin != 0.0 {
            *resources = self.predict(kind, resources).resources;
        }
    }

    fn observe(&mut self, _kind: &str, _observation: &Observation) {}
}
