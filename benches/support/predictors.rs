//! Predictor benches (filled in with the predictors).
use criterion::Criterion;

/// Registers the predictor benches.
pub fn bench_predictors(_c: &mut Criterion) {}
