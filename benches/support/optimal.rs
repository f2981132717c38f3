//! Optimal assignment benches: concord's linear assignment solvers against the
//! `lapjv` crate and `pathfinding::kuhn_munkres`, on the same seeded matrices.
//!
//! - `optimal_dense/{concord,lapjv,kuhn_munkres}/{100,500,1000,2000}`: square, every
//!   pair feasible, costs uniform in [0, 1000).
//! - `optimal_sparse/{concord,lapjv,kuhn_munkres}/1000`: each pair feasible with
//!   probability 5%. concord gets the feasible pairs only ([`SparseCosts`]); the peers,
//!   which have no notion of an infeasible pair, get the dense matrix with a large
//!   finite cost there (large enough that their optimum uses no such pair).
//!
//! - `optimal_warm/{cold,warm}/{rows,cols}`: 1000 x 1000 uniform, solved once; then
//!   10 rows (or 10 columns) get new costs and the problem is solved again, from
//!   scratch (`solve_dense`) or from the first solve's duals (`solve_dense_warm`).
//!
//! `kuhn_munkres` maximizes integer weights: it gets the negated costs in thousandths.
//! Sizes from 500 take fewer samples (flat sampling, ten of them) to keep the whole run to
//! a couple of minutes on two cores; `kuhn_munkres` at 2000 takes about half a second
//! per solve and is kept.

use std::hint::black_box;
use std::time::Duration;

use concord::assignment::lap::{
    DenseCosts, SparseCosts, WarmStart, solve_dense, solve_dense_warm, solve_sparse,
};
use criterion::{
    BatchSize, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput,
    measurement::WallTime,
};
use ndarray::Array2;
use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

/// The dense sizes.
const SIZES: [usize; 4] = [100, 500, 1000, 2000];
/// The sparse size and the share of feasible pairs.
const SPARSE_SIZE: usize = 1000;
const SPARSE_DENSITY: f64 = 0.05;
/// The peers' cost for an infeasible pair: above any total of real costs (n * 1000).
const PEER_INFEASIBLE: f64 = 1e7;

/// A small seeded xorshift generator, so that every run solves the same problems.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// An `n x n` row-major matrix of costs uniform in [0, 1000); `None` for an infeasible
/// pair (each pair is feasible with probability `density`).
fn matrix(n: usize, density: f64, seed: u64) -> Vec<Option<f64>> {
    let mut rng = XorShift(seed);
    (0..n * n)
        .map(|_| {
            let feasible = density >= 1.0 || rng.unit() < density;
            let cost = rng.unit() * 1000.0;
            feasible.then_some(cost)
        })
        .collect()
}

/// The peers' inputs: `lapjv`'s float matrix and `kuhn_munkres`'s integer weights.
fn peer_inputs(n: usize, costs: &[Option<f64>]) -> (Array2<f64>, Matrix<i64>) {
    let floats: Vec<f64> = costs.iter().map(|c| c.unwrap_or(PEER_INFEASIBLE)).collect();
    let weights = floats
        .iter()
        .map(|&c| -(c * 1000.0).round() as i64)
        .collect();
    (
        Array2::from_shape_vec((n, n), floats).expect("n * n costs"),
        Matrix::from_vec(n, n, weights).expect("n * n weights"),
    )
}

/// Fewer, flat samples for the slow solves (`kuhn_munkres` takes 17 ms at 500).
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    if n >= 500 {
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(if n >= 2000 { 5 } else { 2 }));
    } else {
        group
            .sampling_mode(SamplingMode::Auto)
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
    }
}

/// Registers the optimal assignment benches.
pub fn bench_optimal(c: &mut Criterion) {
    let mut group = c.benchmark_group("optimal_dense");
    for (k, n) in SIZES.into_iter().enumerate() {
        let costs = matrix(n, 1.0, 0x9E37_79B9_7F4A_7C15 ^ k as u64);
        let ours = DenseCosts::from_fn(n, n, |r, c| costs[r * n + c]).expect("finite costs");
        let (floats, weights) = peer_inputs(n, &costs);
        configure(&mut group, n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("concord", n), &ours, |b, m| {
            b.iter(|| solve_dense(black_box(m)))
        });
        group.bench_with_input(BenchmarkId::new("lapjv", n), &floats, |b, m| {
            b.iter(|| lapjv::lapjv(black_box(m)).expect("square matrix"))
        });
        group.bench_with_input(BenchmarkId::new("kuhn_munkres", n), &weights, |b, m| {
            b.iter(|| kuhn_munkres(black_box(m)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("optimal_sparse");
    let n = SPARSE_SIZE;
    let costs = matrix(n, SPARSE_DENSITY, 0x5EED_5A5E_u64);
    let ours = SparseCosts::from_rows(
        n,
        (0..n).map(|r| {
            (0..n)
                .filter_map(|c| costs[r * n + c].map(|cost| (c, cost)))
                .collect::<Vec<_>>()
        }),
    )
    .expect("finite costs");
    let (floats, weights) = peer_inputs(n, &costs);
    configure(&mut group, n);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_with_input(BenchmarkId::new("concord", n), &ours, |b, m| {
        b.iter(|| solve_sparse(black_box(m)))
    });
    group.bench_with_input(BenchmarkId::new("lapjv", n), &floats, |b, m| {
        b.iter(|| lapjv::lapjv(black_box(m)).expect("square matrix"))
    });
    group.bench_with_input(BenchmarkId::new("kuhn_munkres", n), &weights, |b, m| {
        b.iter(|| kuhn_munkres(black_box(m)))
    });
    group.finish();
}

/// The warm start size and how many rows or columns change between the two solves.
const WARM_SIZE: usize = 1000;
const WARM_CHANGED: usize = 10;

/// Registers the warm start benches: a re-solve after a few rows or columns changed,
/// from scratch and from the previous solve's duals.
pub fn bench_warm(c: &mut Criterion) {
    let mut group = c.benchmark_group("optimal_warm");
    let n = WARM_SIZE;
    let before = matrix(n, 1.0, 0x3A11_7E57);
    let fresh = matrix(n, 1.0, 0x3A11_7E58);
    let original = DenseCosts::from_fn(n, n, |r, c| before[r * n + c]).expect("finite costs");
    let mut warm = WarmStart::new();
    solve_dense_warm(&original, &mut warm);
    configure(&mut group, n);
    group.throughput(Throughput::Elements(n as u64));
    // Spread over the matrix, as tasks and agents that changed would be.
    let changed: Vec<usize> = (0..WARM_CHANGED)
        .map(|k| k * n / WARM_CHANGED + 7)
        .collect();
    for what in ["rows", "cols"] {
        let costs = DenseCosts::from_fn(n, n, |r, c| {
            let moved = if what == "rows" { r } else { c };
            if changed.contains(&moved) {
                fresh[r * n + c]
            } else {
                before[r * n + c]
            }
        })
        .expect("finite costs");
        let cold = solve_dense(&costs);
        let warm_solution = solve_dense_warm(&costs, &mut warm.clone());
        assert_eq!(cold.assigned, warm_solution.assigned);
        assert!((cold.total_cost - warm_solution.total_cost).abs() < 1e-6);
        group.bench_with_input(BenchmarkId::new("cold", what), &costs, |b, m| {
            b.iter(|| solve_dense(black_box(m)))
        });
        group.bench_with_input(BenchmarkId::new("warm", what), &costs, |b, m| {
            b.iter_batched(
                || warm.clone(),
                |mut start| solve_dense_warm(black_box(m), &mut start),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}
