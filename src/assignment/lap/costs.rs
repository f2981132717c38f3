//! The solvers' inputs: a dense matrix and a sparse (CSR) list of feasible pairs.

use super::{LapError, MAX_COST, MAX_DIM};

/// Refuses a side longer than [`MAX_DIM`], before anything is sized by it.
fn check_dims(rows: usize, cols: usize) -> Result<(), LapError> {
    if rows > MAX_DIM || cols > MAX_DIM {
        return Err(LapError::TooLarge {
            rows,
            cols,
            max: MAX_DIM,
        });
    }
    Ok(())
}

/// Checks one cost.
fn check(row: usize, col: usize, value: f64) -> Result<f64, LapError> {
    if value.is_finite() && value.abs() <= MAX_COST {
        Ok(value)
    } else {
        Err(LapError::InvalidCost { row, col, value })
    }
}

/// A `rows x cols` cost matrix, row-major, where any pair may be infeasible.
///
/// Every feasible cost is finite and at most [`MAX_COST`] in magnitude.
///
/// # Examples
///
/// ```
/// use concord::assignment::lap::DenseCosts;
///
/// let mut costs = DenseCosts::new(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// costs.set_infeasible(1, 2)?;
/// assert_eq!(costs.cost(0, 1), Some(2.0));
/// assert_eq!(costs.cost(1, 2), None);
/// assert_eq!(costs.feasible_count(), 5);
/// # Ok::<(), concord::assignment::lap::LapError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DenseCosts {
    rows: usize,
    cols: usize,
    /// Row-major; `f64::INFINITY` marks an infeasible pair (never a valid cost).
    costs: Vec<f64>,
    feasible: usize,
}

impl DenseCosts {
    /// A matrix with every pair feasible, from `rows * cols` costs in row-major order.
    ///
    /// # Errors
    ///
    /// [`LapError::Shape`] when `costs.len() != rows * cols`, [`LapError::TooLarge`]
    /// when they match but a side exceeds [`MAX_DIM`] (an empty matrix with a huge
    /// side), [`LapError::InvalidCost`] for the first cost (in row-major order) that
    /// is NaN, infinite or beyond [`MAX_COST`].
    pub fn new(rows: usize, cols: usize, costs: Vec<f64>) -> Result<Self, LapError> {
        if rows.checked_mul(cols) != Some(costs.len()) {
            return Err(LapError::Shape {
                rows,
                cols,
                len: costs.len(),
            });
        }
        check_dims(rows, cols)?;
        if let Some(at) = costs
            .iter()
            .position(|c| !(c.is_finite() && c.abs() <= MAX_COST))
        {
            return Err(LapError::InvalidCost {
                row: at / cols,
                col: at % cols,
                value: costs[at],
            });
        }
        Ok(DenseCosts {
            rows,
            cols,
            feasible: costs.len(),
            costs,
        })
    }

    /// A matrix whose cost for `(row, col)` is `cost(row, col)`, `None` for an
    /// infeasible pair. `cost` is called once per pair, in row-major order.
    ///
    /// # Errors
    ///
    /// [`LapError::Shape`] when `rows * cols` overflows, [`LapError::TooLarge`] when a
    /// side exceeds [`MAX_DIM`], [`LapError::InvalidCost`] for the first cost that is
    /// NaN, infinite or beyond [`MAX_COST`]. `cost` is not called when the shape is
    /// refused.
    pub fn from_fn(
        rows: usize,
        cols: usize,
        mut cost: impl FnMut(usize, usize) -> Option<f64>,
    ) -> Result<Self, LapError> {
        let len = rows
            .checked_mul(cols)
            .ok_or(LapError::Shape { rows, cols, len: 0 })?;
        check_dims(rows, cols)?;
        let mut costs = Vec::with_capacity(len);
        let mut feasible = 0;
        for row in 0..rows {
            for col in 0..cols {
                match cost(row, col) {
                    Some(value) => {
                        costs.push(check(row, col, value)?);
                        feasible += 1;
                    }
                    None => costs.push(f64::INFINITY),
                }
            }
        }
        Ok(DenseCosts {
            rows,
            cols,
            costs,
            feasible,
        })
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The number of feasible pairs.
    pub fn feasible_count(&self) -> usize {
        self.feasible
    }

    /// The cost of `(row, col)`, `None` when the pair is infeasible or outside the matrix.
    pub fn cost(&self, row: usize, col: usize) -> Option<f64> {
        let at = self.index(row, col).ok()?;
        self.costs.get(at).copied().filter(|c| c.is_finite())
    }

    /// Whether `(row, col)` is a feasible pair of the matrix.
    pub fn is_feasible(&self, row: usize, col: usize) -> bool {
        self.cost(row, col).is_some()
    }

    /// Marks `(row, col)` infeasible.
    ///
    /// # Errors
    ///
    /// [`LapError::OutOfRange`] when the pair is outside the matrix.
    pub fn set_infeasible(&mut self, row: usize, col: usize) -> Result<(), LapError> {
        let at = self.index(row, col)?;
        if let Some(slot) = self.costs.get_mut(at) {
            if slot.is_finite() {
                self.feasible -= 1;
            }
            *slot = f64::INFINITY;
        }
        Ok(())
    }

    /// Sets the cost of `(row, col)`, making the pair feasible.
    ///
    /// # Errors
    ///
    /// [`LapError::OutOfRange`] when the pair is outside the matrix,
    /// [`LapError::InvalidCost`] when `cost` is NaN, infinite or beyond [`MAX_COST`].
    pub fn set_cost(&mut self, row: usize, col: usize, cost: f64) -> Result<(), LapError> {
        let at = self.index(row, col)?;
        let cost = check(row, col, cost)?;
        if let Some(slot) = self.costs.get_mut(at) {
            if !slot.is_finite() {
                self.feasible += 1;
            }
            *slot = cost;
        }
        Ok(())
    }

    /// The row-major storage, `f64::INFINITY` for infeasible pairs.
    pub(super) fn raw(&self) -> &[f64] {
        &self.costs
    }

    fn index(&self, row: usize, col: usize) -> Result<usize, LapError> {
        if row < self.rows && col < self.cols {
            Ok(row * self.cols + col)
        } else {
            Err(LapError::OutOfRange {
                row,
                col,
                rows: self.rows,
                cols: self.cols,
            })
        }
    }
}

/// The transpose of a row-major `rows x cols` matrix, as a row-major `cols x rows` one.
pub(super) fn transpose(rows: usize, cols: usize, costs: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; costs.len()];
    // Blocks keep both the reads and the writes within a few cache lines.
    const BLOCK: usize = 32;
    for r0 in (0..rows).step_by(BLOCK) {
        for c0 in (0..cols).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(rows) {
                let src = &costs[r * cols..(r + 1) * cols];
                for c in c0..(c0 + BLOCK).min(cols) {
                    out[c * rows + r] = src[c];
                }
            }
        }
    }
    out
}

/// The feasible pairs of a `rows x cols` problem, stored row by row (compressed sparse
/// rows), each row's pairs in increasing column order.
///
/// Every cost is finite and at most [`MAX_COST`] in magnitude; no pair appears twice.
///
/// # Examples
///
/// ```
/// use concord::assignment::lap::SparseCosts;
///
/// let from_triples = SparseCosts::from_triples(2, 3, [(1, 2, 4.0), (0, 1, 1.5)])?;
/// let from_rows = SparseCosts::from_rows(3, [vec![(1, 1.5)], vec![(2, 4.0)]])?;
/// assert_eq!(from_triples, from_rows);
/// assert_eq!(from_rows.cost(1, 2), Some(4.0));
/// assert_eq!(from_rows.row(0).collect::<Vec<_>>(), vec![(1, 1.5)]);
/// # Ok::<(), concord::assignment::lap::LapError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SparseCosts {
    rows: usize,
    cols: usize,
    /// Row `r`'s pairs are `starts[r]..starts[r + 1]` of `cols_of` and `costs`.
    starts: Vec<usize>,
    cols_of: Vec<usize>,
    costs: Vec<f64>,
}

impl SparseCosts {
    /// Builds the pairs from `(row, col, cost)` triples, in any order.
    ///
    /// # Errors
    ///
    /// [`LapError::TooLarge`] when `rows` or `cols` exceeds [`MAX_DIM`] (before any
    /// triple is read), [`LapError::OutOfRange`] for a pair outside `rows x cols`,
    /// [`LapError::InvalidCost`] for a cost that is NaN, infinite or beyond
    /// [`MAX_COST`] (the first such triple, in the order given),
    /// [`LapError::DuplicatePair`] for a pair given twice (the smallest such pair).
    pub fn from_triples(
        rows: usize,
        cols: usize,
        triples: impl IntoIterator<Item = (usize, usize, f64)>,
    ) -> Result<Self, LapError> {
        check_dims(rows, cols)?;
        let mut pairs = Vec::new();
        for (row, col, cost) in triples {
            if row >= rows || col >= cols {
                return Err(LapError::OutOfRange {
                    row,
                    col,
                    rows,
                    cols,
                });
            }
            pairs.push((row, col, check(row, col, cost)?));
        }
        pairs.sort_unstable_by_key(|&(row, col, _)| (row, col));
        if let Some(w) = pairs
            .windows(2)
            .find(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1))
        {
            return Err(LapError::DuplicatePair {
                row: w[0].0,
                col: w[0].1,
            });
        }
        Ok(Self::from_sorted(rows, cols, &pairs))
    }

    /// Builds the pairs from one list of `(col, cost)` per row, each in any order; the
    /// number of lists is the number of rows.
    ///
    /// # Errors
    ///
    /// [`LapError::TooLarge`] when `cols` exceeds [`MAX_DIM`] (before any row is read)
    /// or a row past the [`MAX_DIM`]th is given (before it is read),
    /// [`LapError::InvalidCost`] for a cost that is NaN, infinite or beyond
    /// [`MAX_COST`], [`LapError::DuplicatePair`] for a column listed twice in a row
    /// (both for the first row with such a problem), and otherwise
    /// [`LapError::OutOfRange`] for the first column `>= cols`, reported once every row
    /// has been read so that the error can name the number of rows.
    pub fn from_rows<R>(cols: usize, rows: impl IntoIterator<Item = R>) -> Result<Self, LapError>
    where
        R: IntoIterator<Item = (usize, f64)>,
    {
        check_dims(0, cols)?;
        let mut starts = vec![0];
        let mut cols_of = Vec::new();
        let mut costs = Vec::new();
        let mut row_pairs = Vec::new();
        // The number of rows is known only at the end, and the error names it.
        let mut out_of_range = None;
        for (row, pairs) in rows.into_iter().enumerate() {
            check_dims(row + 1, cols)?;
            row_pairs.clear();
            for (col, cost) in pairs {
                if col >= cols {
                    out_of_range.get_or_insert((row, col));
                } else {
                    row_pairs.push((col, check(row, col, cost)?));
                }
            }
            row_pairs.sort_unstable_by_key(|&(col, _)| col);
            if let Some(w) = row_pairs.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(LapError::DuplicatePair { row, col: w[0].0 });
            }
            cols_of.extend(row_pairs.iter().map(|&(col, _)| col));
            costs.extend(row_pairs.iter().map(|&(_, cost)| cost));
            starts.push(cols_of.len());
        }
        if let Some((row, col)) = out_of_range {
            return Err(LapError::OutOfRange {
                row,
                col,
                rows: starts.len() - 1,
                cols,
            });
        }
        Ok(SparseCosts {
            rows: starts.len() - 1,
            cols,
            starts,
            cols_of,
            costs,
        })
    }

    /// Builds the pairs from triples already known to be in range, finite and distinct.
    pub(super) fn from_valid_triples(
        rows: usize,
        cols: usize,
        triples: impl IntoIterator<Item = (usize, usize, f64)>,
    ) -> Self {
        let mut pairs: Vec<(usize, usize, f64)> = triples
            .into_iter()
            .filter(|&(row, col, _)| row < rows && col < cols)
            .collect();
        pairs.sort_unstable_by_key(|&(row, col, _)| (row, col));
        pairs.dedup_by_key(|&mut (row, col, _)| (row, col));
        Self::from_sorted(rows, cols, &pairs)
    }

    /// The CSR form of pairs sorted by (row, col), all in range and distinct.
    fn from_sorted(rows: usize, cols: usize, pairs: &[(usize, usize, f64)]) -> Self {
        let mut starts = vec![0; rows + 1];
        for &(row, _, _) in pairs {
            starts[row + 1] += 1;
        }
        for r in 0..rows {
            starts[r + 1] += starts[r];
        }
        SparseCosts {
            rows,
            cols,
            starts,
            cols_of: pairs.iter().map(|&(_, col, _)| col).collect(),
            costs: pairs.iter().map(|&(_, _, cost)| cost).collect(),
        }
    }

    /// The feasible pairs of a dense matrix.
    pub fn from_dense(dense: &DenseCosts) -> Self {
        let cols = dense.cols();
        let mut starts = Vec::with_capacity(dense.rows() + 1);
        starts.push(0);
        let mut cols_of = Vec::with_capacity(dense.feasible_count());
        let mut costs = Vec::with_capacity(dense.feasible_count());
        if cols > 0 {
            for row in dense.raw().chunks_exact(cols) {
                for (col, &cost) in row.iter().enumerate() {
                    if cost.is_finite() {
                        cols_of.push(col);
                        costs.push(cost);
                    }
                }
                starts.push(cols_of.len());
            }
        } else {
            starts.resize(dense.rows() + 1, 0);
        }
        SparseCosts {
            rows: dense.rows(),
            cols,
            starts,
            cols_of,
            costs,
        }
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The number of feasible pairs.
    pub fn len(&self) -> usize {
        self.costs.len()
    }

    /// Whether no pair is feasible.
    pub fn is_empty(&self) -> bool {
        self.costs.is_empty()
    }

    /// Row `row`'s feasible pairs as `(col, cost)`, in increasing column order; empty
    /// when `row` is out of range.
    pub fn row(&self, row: usize) -> impl ExactSizeIterator<Item = (usize, f64)> + '_ {
        let (cols, costs) = self.row_slices(row);
        cols.iter().copied().zip(costs.iter().copied())
    }

    /// The cost of `(row, col)`, `None` when the pair is infeasible or out of range.
    pub fn cost(&self, row: usize, col: usize) -> Option<f64> {
        let (cols, costs) = self.row_slices(row);
        let at = cols.binary_search(&col).ok()?;
        costs.get(at).copied()
    }

    /// Row `row`'s columns and costs; empty slices when out of range.
    pub(super) fn row_slices(&self, row: usize) -> (&[usize], &[f64]) {
        let start = self.starts.get(row).copied().unwrap_or(0);
        let end = self.starts.get(row + 1).copied().unwrap_or(start);
        (
            self.cols_of.get(start..end).unwrap_or(&[]),
            self.costs.get(start..end).unwrap_or(&[]),
        )
    }

    /// The transposed problem: rows become columns.
    pub(super) fn transpose(&self) -> SparseCosts {
        let mut starts = vec![0; self.cols + 1];
        for &col in &self.cols_of {
            starts[col + 1] += 1;
        }
        for c in 0..self.cols {
            starts[c + 1] += starts[c];
        }
        let mut next = starts.clone();
        let mut cols_of = vec![0; self.len()];
        let mut costs = vec![0.0; self.len()];
        for row in 0..self.rows {
            let (cols, row_costs) = self.row_slices(row);
            for (&col, &cost) in cols.iter().zip(row_costs) {
                let at = next[col];
                next[col] += 1;
                cols_of[at] = row;
                costs[at] = cost;
            }
        }
        SparseCosts {
            rows: self.cols,
            cols: self.rows,
            starts,
            cols_of,
            costs,
        }
    }
}

impl From<&DenseCosts> for SparseCosts {
    fn from(dense: &DenseCosts) -> Self {
        SparseCosts::from_dense(dense)
    }
}
