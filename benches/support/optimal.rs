//! Optimal assignment benches (being written).
use criterion::Criterion;

/// Registers the optimal assignment benches.
pub fn bench_optimal(_c: &mut Criterion) {}
