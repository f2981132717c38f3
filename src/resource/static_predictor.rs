//! STUB: replaced by the predictor work.
use super::{Observation, Prediction, ResourcePredictor, Resources};
/// Stub.
#[derive(Debug, Default)]
pub struct StaticPredictor;
impl ResourcePredictor for StaticPredictor {
    fn predict(&self, _kind: &str, requested: &Resources) -> Prediction {
        Prediction::new(requested.clone(), 0)
    }
    fn observe(&mut self, _kind: &str, _observation: &Observation) {}
}
