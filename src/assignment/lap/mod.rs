//! Linear assignment: minimum-cost matching of rows (tasks) to columns (agent slots).
//!
//! Owns the cost inputs ([`DenseCosts`], [`SparseCosts`]), the result
//! ([`LapSolution`]), the input errors ([`LapError`]) and three solvers:
//!
//! - [`solve_dense`]: the shortest augmenting path algorithm of Jonker and Volgenant
//!   (LAPJV) on a row-major matrix: column reduction with reduction transfer,
//!   augmenting row reduction (two passes, bounded), then a Dijkstra-like search per
//!   row still free, settling columns by distance and scanning their rows.
//! - [`solve_sparse`]: the same scheme over the feasible pairs only, stored row by row
//!   (CSR), with a binary heap in the searches. It wins when most pairs are
//!   infeasible.
//! - [`solve`]: takes a [`DenseCosts`] and runs [`solve_sparse`] when fewer than
//!   [`SPARSE_DENSITY`] of the pairs are feasible, [`solve_dense`] otherwise.
//!
//! This module is pure computation: no I/O, no randomness, no allocation beyond the
//! solver's working arrays. It must never import anything from the rest of the crate.
//!
//! # What is solved
//!
//! Any shape: more rows than columns, more columns than rows, square, zero rows or
//! zero columns, each side at most [`MAX_DIM`]. A pair may be *infeasible* (it has no
//! cost). The solvers return the
//! matching that
//!
//! 1. assigns as many rows as possible (maximum cardinality over the feasible pairs),
//! 2. and, among those, has the least total cost.
//!
//! Costs may be negative; to maximize scores, negate them. Rows left without a column
//! are `None` in [`LapSolution::row_to_col`] (see [`LapSolution::unassigned_rows`]);
//! nothing is dropped silently.
//!
//! # How
//!
//! A problem with more rows than columns is solved transposed, so the solvers always
//! see `rows <= cols`. A square problem starts from column reduction; a rectangular
//! one from zero potentials, which it only ever lowers on assigned columns, so that
//! free columns keep the highest potential: the optimality condition for rectangular
//! problems (Crouse 2016), with no padding. A square problem with every pair feasible
//! runs on the caller's matrix with no copy.
//!
//! Infeasible pairs are exact, not a large stand-in cost: the dense solver stores them
//! as `+inf`, which its arithmetic carries through without ever choosing one, and the
//! sparse solver never sees them. When not every row can be assigned, a search finds no
//! free column; the solver defers that row and finishes with a *maximum* matching. The
//! Dulmage-Mendelsohn decomposition of that matching then splits the problem in two in
//! which every row can be assigned (the rows that compete for too few columns, with
//! those columns; and the rest), each solved exactly by the same solver. So there is no
//! "big M" that real costs could outweigh or drown in rounding, and no slow path.
//!
//! Two departures from the 1987 code, both measured: augmenting row reduction stops
//! after a few steps per free row on average (the original allows `n`; on random
//! problems its eviction chains cost more than the searches they save), and the dense
//! search keeps its arrays in column order with settled columns behind `±inf`
//! sentinels, so that scanning a row is one branch-free, vectorized pass. That pass
//! also leaves the smallest distance of each block of 64 columns and skips blocks with
//! every column settled, so that a long search (Machol-Wien costs settle about half the
//! columns in each) makes one pass per scanned row, over the blocks that still hold
//! columns to do, rather than two over all the columns.
//!
//! # Determinism and ties
//!
//! The solvers use no randomness, hashing or parallelism, and every floating-point
//! operation happens in a fixed order, so the same input gives the same output, bit
//! for bit, on every platform. When several matchings are optimal, the one returned is
//! fixed by the algorithm's scan order: columns in increasing index order, the lowest
//! index winning a tie, and rows in increasing order (those of the transpose when
//! there are more rows than columns). [`solve_dense`] and [`solve_sparse`] always agree
//! on the number of assigned rows and on the total cost (up to rounding), but may pick
//! different optimal matchings when there are ties.
//!
//! # Complexity
//!
//! With `n = min(rows, cols)`, `m = max(rows, cols)` and `e` feasible pairs:
//!
//! - [`solve_dense`]: `O(n² m)` time in the worst case (at most `n` searches, each
//!   scanning up to `n` rows of length `m`); random problems need far fewer scans.
//!   Extra space `O(m)`, plus a transposed copy (`O(n m)`) when there are more rows
//!   than columns and copies of the two parts when not every row can be assigned.
//! - [`solve_sparse`]: `O(n e log e)` time in the worst case (each search is a
//!   Dijkstra with a binary heap over the pairs it reaches); extra space `O(m + e)`.
//! - Building the inputs: `O(rows · cols)` for [`DenseCosts`], `O(e log e)` for
//!   [`SparseCosts`].
//!
//! Measured on two cores (criterion, `benches/assignment.rs`), random costs: n = 1000
//! in about half the time of the `lapjv` crate and a tenth of
//! `pathfinding::kuhn_munkres`; n = 2000 in half of `lapjv`'s time; 1000 x 1000 with 5%
//! of pairs feasible in a few milliseconds, faster than the dense case.
//!
//! # References
//!
//! - R. Jonker and A. Volgenant, "A shortest augmenting path algorithm for dense and
//!   sparse linear assignment problems", *Computing* 38, 325–340 (1987).
//! - D. F. Crouse, "On implementing 2D rectangular assignment algorithms", *IEEE
//!   Transactions on Aerospace and Electronic Systems* 52(4), 1679–1696 (2016): the
//!   rectangular shortest augmenting path behind `scipy.optimize.linear_sum_assignment`.
//! - A. L. Dulmage and N. S. Mendelsohn, "Coverings of bipartite graphs", *Canadian
//!   Journal of Mathematics* 10, 517–534 (1958).
//!
//! # Examples
//!
//! ```
//! use concord::assignment::lap::{DenseCosts, solve};
//!
//! // Three tasks, two agents; task 2 cannot run on agent 0.
//! let table = [[1.0, 4.0], [2.0, 6.0], [f64::NAN, 3.0]];
//! let costs = DenseCosts::from_fn(3, 2, |task, agent| match (task, agent) {
//!     (2, 0) => None,
//!     _ => Some(table[task][agent]),
//! })?;
//! let solution = solve(&costs);
//! assert_eq!(solution.assigned, 2);
//! assert_eq!(solution.row_to_col, vec![Some(0), None, Some(1)]);
//! assert_eq!(solution.total_cost, 4.0);
//! assert_eq!(solution.unassigned_rows().collect::<Vec<_>>(), vec![1]);
//! # Ok::<(), concord::assignment::lap::LapError>(())
//! ```

mod costs;
mod deficient;
mod dense;
mod sparse;

pub use costs::{DenseCosts, SparseCosts};

use serde::{Deserialize, Serialize};

use dense::Outcome;

/// The largest magnitude a cost may have: `1e100`.
///
/// The solvers add and subtract costs (potentials are sums of up to `n` of them);
/// bounding them keeps every intermediate value finite for any realistic size.
pub const MAX_COST: f64 = 1e100;

/// The most rows, and the most columns, a problem may have: 2^24 (16,777,216).
///
/// The solvers and their [`LapSolution`] keep arrays as long as the rows and as the
/// columns (the solution alone 16 bytes a row and 16 a column), whatever the number of
/// pairs: without a bound, a problem of two pairs and `2^40` columns would ask for
/// terabytes, and one of `usize::MAX` columns could not even be sized. At this bound
/// those arrays take about 1 GB at most, and every size they need fits in `isize`,
/// on 32-bit targets too. [`DenseCosts`] and [`SparseCosts`] refuse larger sides with
/// [`LapError::TooLarge`].
pub const MAX_DIM: usize = 1 << 24;

/// The share of feasible pairs below which [`solve`] takes the sparse path.
///
/// Measured on random square problems: the two solvers take about the same time near
/// 25% at n = 1000 (the sparse one wins further up as n grows); at 5% the sparse one is
/// several times faster.
pub const SPARSE_DENSITY: f64 = 0.25;

/// Marks "no row" / "no column" inside the solvers.
const NONE: usize = usize::MAX;

/// Input that a solver cannot accept. Nothing is solved when one is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LapError {
    /// A cost is NaN, infinite, or larger in magnitude than [`MAX_COST`].
    #[error("cost {value} at row {row}, column {col} is not finite or exceeds 1e100 in magnitude")]
    InvalidCost {
        /// The row of the cost.
        row: usize,
        /// The column of the cost.
        col: usize,
        /// The offending cost.
        value: f64,
    },
    /// The number of costs does not fill a `rows x cols` matrix (or `rows x cols`
    /// overflows `usize`).
    #[error("{len} costs do not fill a {rows} x {cols} matrix")]
    Shape {
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
        /// Costs given.
        len: usize,
    },
    /// The problem has more than [`MAX_DIM`] rows or columns: the solvers' working
    /// arrays, as long as its rows and columns, could not be allocated.
    #[error("a {rows} x {cols} problem has more than {max} rows or columns")]
    TooLarge {
        /// Rows asked for (for [`SparseCosts::from_rows`], the rows read when the
        /// bound was passed).
        rows: usize,
        /// Columns asked for.
        cols: usize,
        /// The bound, [`MAX_DIM`].
        max: usize,
    },
    /// A pair lies outside the matrix.
    #[error("pair ({row}, {col}) is outside the {rows} x {cols} matrix")]
    OutOfRange {
        /// The offending row.
        row: usize,
        /// The offending column.
        col: usize,
        /// Rows of the matrix.
        rows: usize,
        /// Columns of the matrix.
        cols: usize,
    },
    /// The same pair is given twice.
    #[error("pair ({row}, {col}) is given twice")]
    DuplicatePair {
        /// The row of the pair.
        row: usize,
        /// The column of the pair.
        col: usize,
    },
}

/// A matching of rows to columns with the greatest number of assigned rows and, among
/// those, the least total cost.
///
/// `row_to_col[r] == Some(c)` exactly when `col_to_row[c] == Some(r)`; every assigned
/// pair is feasible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LapSolution {
    /// The column of each row, `None` when the row could not be assigned.
    pub row_to_col: Vec<Option<usize>>,
    /// The row of each column, `None` when the column is unused.
    pub col_to_row: Vec<Option<usize>>,
    /// The sum of the costs of the assigned pairs (in row order); `0.0` when none.
    pub total_cost: f64,
    /// The number of assigned rows.
    pub assigned: usize,
}

impl LapSolution {
    /// Builds a solution from each row's column (`NONE` when unassigned), summing the
    /// costs given by `cost` in row order. A pair without a cost (infeasible; the
    /// solvers never return one) or with a column out of range is left out.
    fn from_rows(
        cols: usize,
        row_to_col: &[usize],
        mut cost: impl FnMut(usize, usize) -> Option<f64>,
    ) -> Self {
        let mut col_to_row = vec![None; cols];
        let mut total_cost = 0.0;
        let mut assigned = 0;
        let row_to_col = row_to_col
            .iter()
            .enumerate()
            .map(|(row, &col)| {
                let slot = col_to_row.get_mut(col)?;
                let pair_cost = cost(row, col)?;
                *slot = Some(row);
                total_cost += pair_cost;
                assigned += 1;
                Some(col)
            })
            .collect();
        LapSolution {
            row_to_col,
            col_to_row,
            total_cost,
            assigned,
        }
    }

    /// The solution of a problem with no pair assigned.
    fn empty(rows: usize, cols: usize) -> Self {
        LapSolution {
            row_to_col: vec![None; rows],
            col_to_row: vec![None; cols],
            total_cost: 0.0,
            assigned: 0,
        }
    }

    /// The assigned `(row, col)` pairs, in row order.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.row_to_col
            .iter()
            .enumerate()
            .filter_map(|(row, col)| col.map(|col| (row, col)))
    }

    /// The rows left without a column, in increasing order.
    pub fn unassigned_rows(&self) -> impl Iterator<Item = usize> + '_ {
        self.row_to_col
            .iter()
            .enumerate()
            .filter_map(|(row, col)| col.is_none().then_some(row))
    }

    /// The columns no row was assigned to, in increasing order.
    pub fn unassigned_cols(&self) -> impl Iterator<Item = usize> + '_ {
        self.col_to_row
            .iter()
            .enumerate()
            .filter_map(|(col, row)| row.is_none().then_some(col))
    }
}

/// Solves a dense problem with the Jonker-Volgenant shortest augmenting path algorithm:
/// as many rows assigned as possible, then least total cost.
///
/// See the [module docs](self) for what is solved, ties and complexity. Never panics.
///
/// # Examples
///
/// ```
/// use concord::assignment::lap::{DenseCosts, solve_dense};
///
/// let costs = DenseCosts::new(3, 3, vec![
///     4.0, 1.0, 3.0,
///     2.0, 0.0, 5.0,
///     3.0, 2.0, 2.0,
/// ])?;
/// let solution = solve_dense(&costs);
/// assert_eq!(solution.row_to_col, vec![Some(1), Some(0), Some(2)]);
/// assert_eq!(solution.total_cost, 5.0);
/// # Ok::<(), concord::assignment::lap::LapError>(())
/// ```
pub fn solve_dense(costs: &DenseCosts) -> LapSolution {
    let (rows, cols) = (costs.rows(), costs.cols());
    if rows == 0 || cols == 0 || costs.feasible_count() == 0 {
        return LapSolution::empty(rows, cols);
    }
    let raw = costs.raw();
    let row_to_col = if rows <= cols {
        dense_rows(rows, cols, raw)
    } else {
        // Solve the transpose so that rows <= cols, then map back.
        invert(
            rows,
            &dense_rows(cols, rows, &costs::transpose(rows, cols, raw)),
        )
    };
    LapSolution::from_rows(cols, &row_to_col, |row, col| costs.cost(row, col))
}

/// Each row's column in a dense problem with `rows <= cols`.
fn dense_rows(rows: usize, cols: usize, raw: &[f64]) -> Vec<usize> {
    dense_rows_from(rows, cols, raw, None).0
}

/// Each row's column in a dense problem with `rows <= cols`, starting from `warm`
/// when given (see [`WarmStart`]), with the column potentials reached.
fn dense_rows_from(
    rows: usize,
    cols: usize,
    raw: &[f64],
    warm: Option<(Vec<f64>, Vec<usize>)>,
) -> (Vec<usize>, Vec<f64>) {
    match dense::solve_from(rows, cols, raw, warm) {
        (Outcome::Optimal(row_to_col), v) => (row_to_col, v),
        (Outcome::Deficient(matching), v) => (deficient::solve_dense(rows, cols, raw, matching), v),
    }
}

/// What a dense solve leaves for the next solve of a problem of the same shape: the
/// column potentials (the dual solution) and the matching, so that a batch in which
/// only a few rows or columns changed re-solves from them instead of from scratch.
///
/// Empty when created; [`solve_dense_warm`] fills it and, on the next call with the
/// same number of rows and columns, starts from it. Any costs may have changed in
/// between: the result is exactly what a cold solve would return in the number of
/// assigned rows and the total cost (ties may pick another optimal matching); only the
/// time depends on how much changed.
///
/// # Examples
///
/// ```
/// use concord::assignment::lap::{DenseCosts, WarmStart, solve_dense, solve_dense_warm};
///
/// let mut costs = DenseCosts::from_fn(3, 3, |r, c| Some(((r * 7 + c * 5) % 9) as f64))?;
/// let mut warm = WarmStart::new();
/// let first = solve_dense_warm(&costs, &mut warm);
/// assert_eq!(first, solve_dense(&costs));
/// // One task's costs change: the re-solve starts from the last one's duals.
/// costs.set_cost(1, 0, 0.0)?;
/// let second = solve_dense_warm(&costs, &mut warm);
/// assert_eq!(second.total_cost, solve_dense(&costs).total_cost);
/// # Ok::<(), concord::assignment::lap::LapError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct WarmStart {
    /// The shape of the problem last solved, as the caller gave it.
    rows: usize,
    cols: usize,
    /// The column potentials and each row's column (`NONE` when free) of the last
    /// solve, in the orientation solved (the transpose when there are more rows than
    /// columns); `None` before the first solve.
    state: Option<(Vec<f64>, Vec<usize>)>,
}

impl WarmStart {
    /// An empty start: the next solve runs from scratch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a solve has been recorded.
    pub fn is_empty(&self) -> bool {
        self.state.is_none()
    }

    /// Forgets the recorded solve.
    pub fn clear(&mut self) {
        self.state = None;
    }
}

/// Solves a dense problem as [`solve_dense`] does, starting from the potentials and
/// matching in `warm` when it holds a solve of a problem of the same shape, and leaves
/// this solve's there for the next call.
///
/// Same result as [`solve_dense`] in the number of assigned rows and the total cost
/// (up to rounding), whatever `warm` holds; deterministic for the same costs and the
/// same `warm`. A re-solve after a few rows or columns changed runs a few shortest
/// path searches (one per row whose pair is no longer a least reduced cost) instead of
/// the initial reductions and all of them. Never panics.
///
/// # Complexity
///
/// As [`solve_dense`] in the worst case. Starting costs `O(n m)` to check the kept
/// pairs, plus `O(n)` per column freed in a rectangular problem.
pub fn solve_dense_warm(costs: &DenseCosts, warm: &mut WarmStart) -> LapSolution {
    let (rows, cols) = (costs.rows(), costs.cols());
    if rows == 0 || cols == 0 || costs.feasible_count() == 0 {
        warm.clear();
        return LapSolution::empty(rows, cols);
    }
    let state = warm
        .state
        .take()
        .filter(|_| (warm.rows, warm.cols) == (rows, cols));
    (warm.rows, warm.cols) = (rows, cols);
    let raw = costs.raw();
    let row_to_col = if rows <= cols {
        let (row_to_col, v) = dense_rows_from(rows, cols, raw, state);
        warm.state = Some((v, row_to_col.clone()));
        row_to_col
    } else {
        let (col_to_row, v) =
            dense_rows_from(cols, rows, &costs::transpose(rows, cols, raw), state);
        let row_to_col = invert(rows, &col_to_row);
        warm.state = Some((v, col_to_row));
        row_to_col
    };
    LapSolution::from_rows(cols, &row_to_col, |row, col| costs.cost(row, col))
}

/// Solves a sparse problem by shortest augmenting paths over the feasible pairs only:
/// as many rows assigned as possible, then least total cost.
///
/// See the [module docs](self) for what is solved, ties and complexity. Never panics.
///
/// # Examples
///
/// ```
/// use concord::assignment::lap::{SparseCosts, solve_sparse};
///
/// // Row 0 can only use column 1; row 1 can use either.
/// let costs = SparseCosts::from_triples(2, 2, [(0, 1, 5.0), (1, 0, 7.0), (1, 1, 1.0)])?;
/// let solution = solve_sparse(&costs);
/// assert_eq!(solution.row_to_col, vec![Some(1), Some(0)]);
/// assert_eq!(solution.total_cost, 12.0);
/// # Ok::<(), concord::assignment::lap::LapError>(())
/// ```
pub fn solve_sparse(costs: &SparseCosts) -> LapSolution {
    sparse_solution(costs)
}

/// Runs the sparse solver on `costs` or its transpose, whichever has `rows <= cols`.
fn sparse_solution(costs: &SparseCosts) -> LapSolution {
    let (rows, cols) = (costs.rows(), costs.cols());
    if rows == 0 || cols == 0 || costs.is_empty() {
        return LapSolution::empty(rows, cols);
    }
    let row_to_col = if rows <= cols {
        sparse_rows(costs)
    } else {
        invert(rows, &sparse_rows(&costs.transpose()))
    };
    LapSolution::from_rows(cols, &row_to_col, |row, col| costs.cost(row, col))
}

/// Each row's column in a sparse problem with `rows <= cols`.
fn sparse_rows(costs: &SparseCosts) -> Vec<usize> {
    match sparse::solve(costs) {
        Outcome::Optimal(row_to_col) => row_to_col,
        Outcome::Deficient(matching) => deficient::solve_sparse(costs, matching),
    }
}

/// Turns each column's row (`NONE` when free) into each of `rows` rows' column.
fn invert(rows: usize, col_to_row: &[usize]) -> Vec<usize> {
    let mut row_to_col = vec![NONE; rows];
    for (col, &row) in col_to_row.iter().enumerate() {
        if let Some(slot) = row_to_col.get_mut(row) {
            *slot = col;
        }
    }
    row_to_col
}

/// Solves a dense problem, on the sparse path when fewer than [`SPARSE_DENSITY`] of the
/// pairs are feasible, on the dense path otherwise.
///
/// The result has the same number of assigned rows and the same total cost either way
/// (see the [module docs](self)). Never panics.
///
/// # Examples
///
/// ```
/// use concord::assignment::lap::{DenseCosts, solve};
///
/// // A 4 x 4 problem where each row can use only its own column and the next one.
/// let costs = DenseCosts::from_fn(4, 4, |r, c| (c == r || c == (r + 1) % 4).then(|| (r + c) as f64))?;
/// let solution = solve(&costs);
/// assert_eq!(solution.assigned, 4);
/// assert_eq!(solution.total_cost, 12.0);
/// # Ok::<(), concord::assignment::lap::LapError>(())
/// ```
pub fn solve(costs: &DenseCosts) -> LapSolution {
    let pairs = costs.rows() * costs.cols();
    if pairs > 0 && (costs.feasible_count() as f64) < SPARSE_DENSITY * pairs as f64 {
        solve_sparse(&SparseCosts::from_dense(costs))
    } else {
        solve_dense(costs)
    }
}
