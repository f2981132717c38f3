//! STUB: replaced by the predictor work.
/// Stub.
#[derive(Debug, Default)]
pub struct EwmaPredictor;
/// Stub.
#[derive(Debug, Default)]
pub struct EwmaConfig;
