//! STUB: replaced by the predictor work.
/// Stub.
#[derive(Debug, Default)]
pub struct PercentilePredictor;
/// Stub.
#[derive(Debug, Default)]
pub struct PercentileConfig;
