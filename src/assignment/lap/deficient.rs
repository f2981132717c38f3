//! Problems where not every row (of the smaller side) can be assigned.
//!
//! Given a maximum matching `M`, let `D` be the rows reachable from the rows `M`
//! leaves free by alternating paths (a pair to a column, then that column's row in
//! `M`), and `A` the columns so reached. Every row of `D` has its pairs in `A`, and
//! every column of `A` is matched to a row of `D`. By the Dulmage-Mendelsohn
//! decomposition, in *every* maximum matching the columns of `A` are matched to rows
//! of `D` and every row outside `D` is matched to a column outside `A`. So a maximum
//! matching of least cost is the union of
//!
//! 1. a least-cost matching covering every column of `A` with rows of `D`, and
//! 2. a least-cost matching covering every row outside `D` with columns outside `A`,
//!
//! two problems in which every row (after transposing the first) can be assigned,
//! which the plain solvers handle exactly and at full speed: no "big M", no dummy
//! columns.

use super::dense::{self, Outcome};
use super::{NONE, SparseCosts, sparse};

/// The decomposition of a problem with a maximum matching: which rows are in `D` and
/// which columns are in `A` (see the module docs).
struct Split {
    in_d: Vec<bool>,
    in_a: Vec<bool>,
}

impl Split {
    /// Finds `D` and `A` from `matching` (each row's column, `NONE` when free) by a
    /// breadth-first search from the free rows; `pairs(r)` lists row `r`'s feasible
    /// columns.
    fn new<I>(
        rows: usize,
        cols: usize,
        matching: &[usize],
        mut pairs: impl FnMut(usize) -> I,
    ) -> Self
    where
        I: Iterator<Item = usize>,
    {
        let mut row_of = vec![NONE; cols];
        for (r, &c) in matching.iter().enumerate() {
            if let Some(slot) = row_of.get_mut(c) {
                *slot = r;
            }
        }
        let mut in_d = vec![false; rows];
        let mut in_a = vec![false; cols];
        let mut queue: Vec<usize> = matching
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c == NONE)
            .map(|(r, _)| r)
            .collect();
        for &r in &queue {
            in_d[r] = true;
        }
        let mut next = 0;
        while let Some(&r) = queue.get(next) {
            next += 1;
            for c in pairs(r) {
                if c >= cols || in_a[c] {
                    continue;
                }
                in_a[c] = true;
                // Matched, or the matching would not be maximum.
                if let Some(&mate) = row_of.get(c) {
                    if mate != NONE && !in_d[mate] {
                        in_d[mate] = true;
                        queue.push(mate);
                    }
                }
            }
        }
        Split { in_d, in_a }
    }

    /// The rows in `D` and the others; the columns in `A` and the others.
    fn parts(&self) -> (Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>) {
        let (d, rest_rows) = (0..self.in_d.len()).partition(|&r| self.in_d[r]);
        let (a, rest_cols) = (0..self.in_a.len()).partition(|&c| self.in_a[c]);
        (d, rest_rows, a, rest_cols)
    }
}

/// A least-cost maximum matching of a dense `rows x cols` problem (`rows <= cols`,
/// infeasible pairs `f64::INFINITY`), given a maximum `matching`. Each row's column,
/// `NONE` when free.
pub(super) fn solve_dense(
    rows: usize,
    cols: usize,
    costs: &[f64],
    matching: Vec<usize>,
) -> Vec<usize> {
    if rows.checked_mul(cols) != Some(costs.len()) || matching.len() != rows {
        // Unreachable through the module's callers.
        return matching;
    }
    let split = Split::new(rows, cols, &matching, |r| {
        costs[r * cols..(r + 1) * cols]
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_finite())
            .map(|(c, _)| c)
    });
    let (d, rest_rows, a, rest_cols) = split.parts();
    let mut row_to_col = vec![NONE; rows];
    // 1. The columns of A as rows, the rows of D as columns.
    let sub: Vec<f64> = a
        .iter()
        .flat_map(|&c| d.iter().map(move |&r| costs[r * cols + c]))
        .collect();
    match dense::solve(a.len(), d.len(), &sub) {
        Outcome::Optimal(pairs) => {
            for (&c, &p) in a.iter().zip(&pairs) {
                if let Some(&r) = d.get(p) {
                    row_to_col[r] = c;
                }
            }
        }
        // Unreachable by the decomposition; keep the maximum matching found.
        Outcome::Deficient(_) => return matching,
    }
    // 2. The other rows and columns.
    let sub: Vec<f64> = rest_rows
        .iter()
        .flat_map(|&r| rest_cols.iter().map(move |&c| costs[r * cols + c]))
        .collect();
    match dense::solve(rest_rows.len(), rest_cols.len(), &sub) {
        Outcome::Optimal(pairs) => {
            for (&r, &p) in rest_rows.iter().zip(&pairs) {
                if let Some(&c) = rest_cols.get(p) {
                    row_to_col[r] = c;
                }
            }
        }
        Outcome::Deficient(_) => return matching,
    }
    row_to_col
}

/// A least-cost maximum matching of a sparse problem (`rows <= cols`), given a
/// maximum `matching`. Each row's column, `NONE` when free.
pub(super) fn solve_sparse(costs: &SparseCosts, matching: Vec<usize>) -> Vec<usize> {
    let (rows, cols) = (costs.rows(), costs.cols());
    if matching.len() != rows {
        // Unreachable through the module's callers.
        return matching;
    }
    let split = Split::new(rows, cols, &matching, |r| {
        costs.row_slices(r).0.iter().copied()
    });
    let (d, rest_rows, a, rest_cols) = split.parts();
    // Each original row's or column's index in its part.
    let mut row_index = vec![0; rows];
    for (k, &r) in d.iter().enumerate().chain(rest_rows.iter().enumerate()) {
        row_index[r] = k;
    }
    let mut col_index = vec![0; cols];
    for (k, &c) in a.iter().enumerate().chain(rest_cols.iter().enumerate()) {
        col_index[c] = k;
    }
    let (row_index, col_index, in_a) = (&row_index, &col_index, &split.in_a);
    let mut row_to_col = vec![NONE; rows];
    // 1. The columns of A as rows, the rows of D as columns: the transpose of D's pairs
    // (all of which lie in A).
    let triples = d.iter().flat_map(|&r| {
        let (cs, costs) = costs.row_slices(r);
        cs.iter()
            .zip(costs)
            .filter(|&(&c, _)| in_a[c])
            .map(move |(&c, &cost)| (col_index[c], row_index[r], cost))
    });
    let sub = SparseCosts::from_valid_triples(a.len(), d.len(), triples);
    match sparse::solve(&sub) {
        Outcome::Optimal(pairs) => {
            for (&c, &p) in a.iter().zip(&pairs) {
                if let Some(&r) = d.get(p) {
                    row_to_col[r] = c;
                }
            }
        }
        // Unreachable by the decomposition; keep the maximum matching found.
        Outcome::Deficient(_) => return matching,
    }
    // 2. The other rows with their pairs outside A.
    let triples = rest_rows.iter().flat_map(|&r| {
        let (cs, costs) = costs.row_slices(r);
        cs.iter()
            .zip(costs)
            .filter(|&(&c, _)| !in_a[c])
            .map(move |(&c, &cost)| (row_index[r], col_index[c], cost))
    });
    let sub = SparseCosts::from_valid_triples(rest_rows.len(), rest_cols.len(), triples);
    match sparse::solve(&sub) {
        Outcome::Optimal(pairs) => {
            for (&r, &p) in rest_rows.iter().zip(&pairs) {
                if let Some(&c) = rest_cols.get(p) {
                    row_to_col[r] = c;
                }
            }
        }
        Outcome::Deficient(_) => return matching,
    }
    row_to_col
}
