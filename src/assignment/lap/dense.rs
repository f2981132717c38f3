//! LAPJV on a dense row-major `f64` matrix with `rows <= cols`.
//!
//! Infeasible pairs are stored as `f64::INFINITY`, which the arithmetic carries
//! through without a special case (`inf - v = inf` never wins a minimum); the few
//! places where an infinite difference could poison a potential are guarded, so
//! potentials stay finite.
//!
//! When not every row can be assigned, a row with no finite cost, or whose search
//! reaches no free column, is deferred: no augmenting path starts from it, now or
//! after later augmentations (the classic argument behind Kuhn's algorithm), so the
//! matching at the end has the greatest number of pairs. The caller then splits the
//! problem (see `deficient`), as the potentials of such a run do not certify the
//! least cost.
//!
//! Column potentials `v` are kept so that every reduced cost `c[i][j] - v[j]` of a
//! row is at least that of its assigned column (the implicit row potential `u[i]`).
//! A square problem starts from column reduction and reduction transfer. A rectangular
//! one starts from `v = 0` and only ever lowers the potentials of assigned columns, so
//! the free columns keep the highest potential: the optimality condition for
//! rectangular problems (Crouse 2016), with no dummy rows.
//!
//! The searches keep their working arrays by column and park settled columns behind
//! sentinels (distance `+inf`, potential `-inf`), so that relaxing a row is one
//! branch-free pass over three contiguous arrays, which the compiler vectorizes. The
//! pass also leaves the smallest distance of each block of columns, so that settling
//! the next columns reads only the blocks that hold them. A short search finds its
//! path's rows again at the end instead of writing them in that pass; a long one
//! writes them (see [`RECORD_AFTER`]).

use super::NONE;

/// Steps of augmenting row reduction allowed per free row, on average, before evicted
/// rows are left to the shortest path phase. The original allows `n` steps per row;
/// on random problems its long eviction chains cost several times more than the
/// searches they save, while a few steps per row settle most rows cheaply.
const REDUCTION_STEPS: usize = 4;

/// Lanes of the branch-free loops (the compiler maps them to vector registers).
const LANES: usize = 8;

/// Columns per block of a search's distances. The relax pass keeps each block's
/// smallest distance, so that finding the columns at the next distance reads the
/// blocks' minima and then only the blocks that hold it, rather than every column.
const BLOCK: usize = 8 * LANES;

/// Rows a search scans before its pass starts recording each column's row. Short
/// searches (most of them on random costs) then keep the cheaper pass and find their
/// path's rows again at the end among these few; long ones (Machol-Wien settles about
/// half the columns in every search) would pay for that recomputation with the square
/// of their length.
const RECORD_AFTER: usize = 32;

/// The result of [`solve`]: each row's column, `NONE` for a row left free.
pub(super) enum Outcome {
    /// Every row is assigned, at least cost.
    Optimal(Vec<usize>),
    /// Not every row can be assigned. The matching has the greatest number of pairs but
    /// not necessarily the least cost; its free rows are those no search could place.
    Deficient(Vec<usize>),
}

/// Assigns the rows of a `rows x cols` problem (`rows <= cols`) to columns over finite
/// costs: at least cost when every row can be assigned, otherwise as many as can be
/// (see [`Outcome`]).
pub(super) fn solve(rows: usize, cols: usize, costs: &[f64]) -> Outcome {
    solve_from(rows, cols, costs, None).0
}

/// As [`solve`], starting from `warm` when given: the column potentials and each row's
/// column (`NONE` when free) left by an earlier solve of a problem of the same shape,
/// whose costs may since have changed anywhere. Returns the outcome and the column
/// potentials it ends with, to start the next solve from.
///
/// A warm start keeps every pair that is still a least reduced cost of its row under
/// the old potentials (the invariant the searches need), and frees the others. In a
/// rectangular problem the free columns must also keep the highest potential: a
/// column freed below it is raised to it, which frees every row for which that column
/// became cheaper than its own, and so on. What is left runs as a cold solve does after
/// its initial reductions (augmenting row reduction, then the searches), so a re-solve
/// after a few rows or columns changed does a few searches instead of all of them.
/// Potentials or a matching that do not fit (wrong lengths, a non-finite potential, a
/// column used twice) are dropped for a cold start.
pub(super) fn solve_from(
    rows: usize,
    cols: usize,
    costs: &[f64],
    warm: Option<(Vec<f64>, Vec<usize>)>,
) -> (Outcome, Vec<f64>) {
    if rows > cols || rows.checked_mul(cols) != Some(costs.len()) {
        // Unreachable through the module's callers; assign nothing rather than panic.
        return (Outcome::Deficient(vec![NONE; rows]), vec![0.0; cols]);
    }
    if rows == 0 {
        return (Outcome::Optimal(Vec::new()), vec![0.0; cols]);
    }
    let mut solver = Solver {
        rows,
        cols,
        costs,
        v: vec![0.0; cols],
        col_of: vec![NONE; rows],
        row_of: vec![NONE; cols],
        deferred: Vec::new(),
        dead: Vec::new(),
    };
    let fits = |(v, col_of): &(Vec<f64>, Vec<usize>)| {
        v.len() == cols && col_of.len() == rows && v.iter().all(|x| x.is_finite())
    };
    let mut free = match warm.filter(fits) {
        Some((v, col_of)) => solver.restart(v, &col_of),
        None if rows == cols => solver.reduce_columns(),
        None => (0..rows).collect(),
    };
    solver.reduce_rows(&mut free);
    solver.augment(&free);
    let outcome = if solver.deferred.is_empty() {
        Outcome::Optimal(solver.col_of)
    } else {
        Outcome::Deficient(solver.col_of)
    };
    (outcome, solver.v)
}

struct Solver<'a> {
    rows: usize,
    cols: usize,
    costs: &'a [f64],
    /// Column potentials (always finite).
    v: Vec<f64>,
    /// Each row's column, `NONE` when free.
    col_of: Vec<usize>,
    /// Each column's row, `NONE` when free.
    row_of: Vec<usize>,
    /// Rows that cannot be assigned with the current matching, nor ever after: a row
    /// with no finite cost, or whose search found no free column.
    deferred: Vec<usize>,
    /// Columns settled by a search that failed. Their rows can only reach each other
    /// (the search relaxed all their pairs), so no augmenting path passes through them
    /// and later searches skip them.
    dead: Vec<usize>,
}

impl<'a> Solver<'a> {
    #[inline(always)]
    fn row(&self, i: usize) -> &'a [f64] {
        let costs: &'a [f64] = self.costs;
        &costs[i * self.cols..(i + 1) * self.cols]
    }

    /// Takes the potentials `v` and the matching `col_of` of an earlier solve (see
    /// [`solve_from`]), keeps the pairs that still satisfy the invariants and returns
    /// the rows left free, in increasing order.
    fn restart(&mut self, v: Vec<f64>, col_of: &[usize]) -> Vec<usize> {
        self.v = v;
        // The reduced cost of each kept pair, to compare with raised columns below.
        let mut own = vec![f64::INFINITY; self.rows];
        for (i, &j) in col_of.iter().enumerate() {
            if j >= self.cols || self.row_of[j] != NONE {
                continue;
            }
            let row = self.row(i);
            let (least, _) = two_smallest_values(row, &self.v);
            let reduced = row[j] - self.v[j];
            if reduced.is_finite() && reduced <= least {
                self.col_of[i] = j;
                self.row_of[j] = i;
                own[i] = reduced;
            }
        }
        if self.rows < self.cols {
            // Free columns must keep the highest potential: raise those below it, and
            // free the rows the raise makes prefer a free column to their own.
            let top = self.v.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let mut raise: Vec<usize> = (0..self.cols)
                .filter(|&j| self.row_of[j] == NONE && self.v[j] < top)
                .collect();
            while let Some(k) = raise.pop() {
                self.v[k] = top;
                for (i, &own) in own.iter().enumerate() {
                    let j = self.col_of[i];
                    if j != NONE && self.row(i)[k] - top < own {
                        self.col_of[i] = NONE;
                        self.row_of[j] = NONE;
                        if self.v[j] < top {
                            raise.push(j);
                        }
                    }
                }
            }
        }
        (0..self.rows).filter(|&i| self.col_of[i] == NONE).collect()
    }

    /// Column reduction and reduction transfer (square problems only). Returns the rows
    /// left free.
    fn reduce_columns(&mut self) -> Vec<usize> {
        let n = self.cols;
        // v[j] = min over rows of c[i][j]; the first such row wins.
        let mut argmin = vec![0usize; n];
        let first = self.row(0);
        self.v.copy_from_slice(first);
        for i in 1..self.rows {
            let row = self.row(i);
            for ((v, arg), &c) in self.v.iter_mut().zip(argmin.iter_mut()).zip(row) {
                if c < *v {
                    *v = c;
                    *arg = i;
                }
            }
        }
        // Each row takes the last column it is the minimum of (as in the original). A
        // column with no finite cost gets potential zero and no row.
        let mut matches = vec![0u32; self.rows];
        for j in (0..n).rev() {
            if !self.v[j].is_finite() {
                self.v[j] = 0.0;
                continue;
            }
            let i = argmin[j];
            matches[i] += 1;
            if matches[i] == 1 {
                self.col_of[i] = j;
                self.row_of[j] = i;
            }
        }
        // Reduction transfer: a row that is the minimum of exactly one column hands
        // that column the slack to its second-best column. Its reduced cost is zero
        // there and at least zero elsewhere, so the second smallest reduced cost is
        // the smallest over the other columns.
        let mut free = Vec::new();
        for (i, &count) in matches.iter().enumerate() {
            if count == 0 {
                free.push(i);
            } else if count == 1 {
                let j1 = self.col_of[i];
                let (_, second) = two_smallest_values(self.row(i), &self.v);
                if second.is_finite() {
                    self.v[j1] -= second;
                }
            }
        }
        free
    }

    /// Augmenting row reduction, two passes: each free row takes its cheapest column,
    /// lowering that column's potential to the row's second-best reduced cost and
    /// evicting its previous row, which is processed next. Leaves the rows still free
    /// in `free`; defers a row with no finite cost.
    fn reduce_rows(&mut self, free: &mut Vec<usize>) {
        for _ in 0..2 {
            if free.is_empty() {
                break;
            }
            let count = free.len();
            let mut current = 0;
            let mut kept = 0;
            let mut steps = 0usize;
            while current < count {
                steps += 1;
                let i = free[current];
                current += 1;
                let (u1, mut j1, second) = two_smallest(self.row(i), &self.v);
                if !u1.is_finite() {
                    self.deferred.push(i);
                    continue;
                }
                let mut i0 = self.row_of[j1];
                // Lowering v[j1] by (u2 - u1) makes j1 tie with the second-best column
                // (not when there is none, or it is infeasible).
                let (lowered, lowers) = match second {
                    Some((u2, _)) if u2.is_finite() => {
                        let lowered = self.v[j1] - (u2 - u1);
                        (lowered, lowered < self.v[j1])
                    }
                    _ => (self.v[j1], false),
                };
                // Bound the work: once `steps` reaches REDUCTION_STEPS per row taken
                // from the list, evicted rows wait for the next phase.
                if steps < current.saturating_mul(REDUCTION_STEPS) {
                    if lowers {
                        self.v[j1] = lowered;
                    } else if let (true, Some((u2, j2))) = (i0 != NONE, second) {
                        // The minimum is tied (u2 == u1) and j1 is taken: take j2
                        // instead, which may be free.
                        if u2 == u1 {
                            j1 = j2;
                            i0 = self.row_of[j1];
                        }
                    }
                    if i0 != NONE {
                        if lowers {
                            // Continue the augmenting path with the evicted row.
                            current -= 1;
                            free[current] = i0;
                        } else {
                            free[kept] = i0;
                            kept += 1;
                        }
                    }
                } else if i0 != NONE {
                    free[kept] = i0;
                    kept += 1;
                }
                if i0 != NONE {
                    self.col_of[i0] = NONE;
                }
                self.col_of[i] = j1;
                self.row_of[j1] = i;
            }
            free.truncate(kept);
        }
    }

    /// Shortest augmenting paths, one Dijkstra-like search per free row. A row whose
    /// search reaches no free column is deferred, and the columns it settled are dead.
    fn augment(&mut self, free: &[usize]) {
        let m = self.cols;
        let mut s = Search {
            d: vec![0.0; m],
            block_min: vec![f64::INFINITY; m.div_ceil(BLOCK)],
            block_left: vec![0; m.div_ceil(BLOCK)],
            level: Vec::new(),
            vs: vec![0.0; m],
            settled: Vec::new(),
            dist: vec![0.0; m],
            pred: vec![0.0; m],
            scanned: Vec::new(),
        };
        let mut path = Vec::new();
        for &start in free {
            s.vs.copy_from_slice(&self.v);
            for &j in &self.dead {
                s.vs[j] = f64::NEG_INFINITY;
            }
            // The start row's reduced costs, as a relaxation from nothing.
            s.d.fill(f64::INFINITY);
            for (b, left) in s.block_left.iter_mut().enumerate() {
                *left = (m - b * BLOCK).min(BLOCK);
            }
            let (d, pred, block_min) = (&mut s.d, &mut s.pred, &mut s.block_min);
            let row = self.row(start);
            relax::<false>(row, &s.vs, 0.0, 0.0, d, pred, block_min, &s.block_left);
            s.settled.clear();
            s.scanned.clear();
            s.scanned.push((start, 0.0));
            let Some((end, ready, mind)) = self.search(&mut s) else {
                self.deferred.push(start);
                self.dead.extend_from_slice(&s.settled);
                continue;
            };
            // Trace the path back to the start, then flip it.
            path.clear();
            let mut j = end;
            let traced = loop {
                let i = self.pred(&s, j);
                if i == NONE || path.len() > self.rows {
                    // Unreachable: every column on the path was reached from a row.
                    break false;
                }
                path.push((i, j));
                if i == start {
                    break true;
                }
                j = self.col_of[i];
            };
            if !traced {
                self.deferred.push(start);
                continue;
            }
            for &(i, j) in &path {
                self.row_of[j] = i;
                self.col_of[i] = j;
            }
            // Update the potentials of the columns settled before the final distance.
            for &j in &s.settled[..ready] {
                self.v[j] += s.dist[j] - mind;
            }
        }
    }

    /// The row column `j` was reached from. Once a search has scanned more than
    /// [`RECORD_AFTER`] rows, the pass records it (`pred`, reset to `-1` when the
    /// recording starts); otherwise it is the first of the first rows scanned whose
    /// relaxation gives exactly `j`'s distance: the search kept the first strict
    /// improvement, and this recomputation repeats the same operations on the same
    /// values, so it finds that row.
    fn pred(&self, s: &Search, j: usize) -> usize {
        if s.scanned.len() > RECORD_AFTER && s.pred[j] >= 0.0 {
            return s.scanned.get(s.pred[j] as usize).map_or(NONE, |&(i, _)| i);
        }
        let target = s.dist[j];
        let v = self.v[j];
        s.scanned[..s.scanned.len().min(RECORD_AFTER)]
            .iter()
            .find(|&&(i, h)| self.row(i)[j] - v - h == target)
            .map_or(NONE, |&(i, _)| i)
    }

    /// Runs a search from the distances set in `s`, until a free column is reached.
    /// Returns it, the number of columns settled before the final distance and that
    /// distance; `None` when no free column can be reached.
    fn search(&self, s: &mut Search) -> Option<(usize, usize, f64)> {
        // settled[..ready] are done, settled[ready..lo] scanned at the current
        // distance, settled[lo..] wait to be scanned at it.
        let mut lo = 0;
        let mut ready = 0;
        let mut mind = 0.0;
        // The smallest distance to do, when the last pass found it.
        let mut least = None;
        loop {
            if lo == s.settled.len() {
                // Everything at the previous distance is scanned: settle the columns at
                // the next smallest distance.
                ready = lo;
                mind = least.unwrap_or_else(|| min_of(&s.block_min));
                if !mind.is_finite() {
                    return None;
                }
                if let Some(end) = self.settle_at_most(s, mind) {
                    return Some((end, ready, mind));
                }
            }
            // Scan one column at the current distance through its row.
            let j = s.settled[lo];
            lo += 1;
            let i = self.row_of[j];
            let row = self.row(i);
            let h = row[j] - self.v[j] - mind;
            let from = s.scanned.len();
            s.scanned.push((i, h));
            if from == RECORD_AFTER {
                s.pred.fill(-1.0);
            }
            let (d, pred, block_min) = (&mut s.d, &mut s.pred, &mut s.block_min);
            let left = &s.block_left;
            let smallest = if from < RECORD_AFTER {
                relax::<false>(row, &s.vs, h, 0.0, d, pred, block_min, left)
            } else {
                relax::<true>(row, &s.vs, h, from as f64, d, pred, block_min, left)
            };
            least = Some(smallest);
            if smallest <= mind {
                // The columns settled now leave `least` behind; the next pass finds it.
                least = None;
                if let Some(end) = self.settle_at_most(s, mind) {
                    return Some((end, ready, mind));
                }
            }
        }
    }

    /// Settles the columns still to do at distance `mind` or below (below only by
    /// rounding), in column order; returns the first free one, which ends the search.
    /// Only the blocks whose smallest distance is at most `mind` are read. When a free
    /// column is among them, the assigned ones before it are left as they are: settled
    /// at the final distance they would be neither scanned nor repriced, and with many
    /// ties (two-cost problems) settling them was most of a search.
    fn settle_at_most(&self, s: &mut Search, mind: f64) -> Option<usize> {
        let m = s.d.len();
        s.level.clear();
        let mut end = None;
        'blocks: for (b, &least) in s.block_min.iter().enumerate() {
            if least > mind {
                continue;
            }
            let first = b * BLOCK;
            let block = &s.d[first..(first + BLOCK).min(m)];
            let chunks = block.chunks_exact(LANES);
            let rest = chunks.remainder();
            let masks = chunks
                .map(|chunk| lanes_at_most(chunk, mind))
                .chain((!rest.is_empty()).then(|| lanes_at_most(rest, mind)));
            for (k, mut mask) in masks.enumerate() {
                while mask != 0 {
                    let j = first + k * LANES + mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    if self.row_of[j] == NONE {
                        end = Some(j);
                        break 'blocks;
                    }
                    s.level.push(j);
                }
            }
        }
        if let Some(j) = end {
            s.settle(j);
            return end;
        }
        // No free column at this distance: settle every column there. Their blocks'
        // minima are left stale (too low): the next step scans a row, whose pass
        // rewrites every block's minimum before anything reads them.
        for k in 0..s.level.len() {
            let j = s.level[k];
            s.settle(j);
        }
        None
    }
}

/// A bit per value of `chunk` (at most [`LANES`]) that is at most `mind`: one mask
/// per chunk, then only its set bits are visited.
#[inline(always)]
fn lanes_at_most(chunk: &[f64], mind: f64) -> u32 {
    chunk
        .iter()
        .enumerate()
        .fold(0, |mask, (l, &d)| mask | (u32::from(d <= mind) << l))
}

/// The working arrays of the searches, by column. A settled column's distance moves
/// from `d` to `dist`, and `d`, `vs` get `+inf` and `-inf`: relaxing through it then
/// gives `c + inf - h = +inf` (whatever `c`, even an infeasible `+inf`), which neither
/// wins a minimum nor ties.
struct Search {
    /// Distances of the columns to do (`+inf` once settled).
    d: Vec<f64>,
    /// The smallest of `d` in each block of [`BLOCK`] columns, as the last pass left
    /// it: columns settled since may have raised it (see `settle_at_most`).
    block_min: Vec<f64>,
    /// The columns to do in each block: a block with none is not relaxed at all.
    block_left: Vec<usize>,
    /// The assigned columns found at the current distance, to settle together.
    level: Vec<usize>,
    /// Potentials of the columns to do (`-inf` once settled).
    vs: Vec<f64>,
    /// Settled columns, in the order settled.
    settled: Vec<usize>,
    /// Distances of the settled columns.
    dist: Vec<f64>,
    /// Once a search scans more than [`RECORD_AFTER`] rows: the row each column was
    /// last improved from, as its position in `scanned` (`-1` when before that), an
    /// `f64` so that the pass that writes it stays in one vector type.
    pred: Vec<f64>,
    /// The rows scanned, in order, with their potential minus the distance then; the
    /// start row first, with zero.
    scanned: Vec<(usize, f64)>,
}

impl Search {
    /// Moves column `j` from the columns to do to the settled ones.
    #[inline(always)]
    fn settle(&mut self, j: usize) {
        self.dist[j] = self.d[j];
        self.d[j] = f64::INFINITY;
        self.vs[j] = f64::NEG_INFINITY;
        self.block_left[j / BLOCK] -= 1;
        self.settled.push(j);
    }
}

/// Relaxes distances `d` through a row with costs `row`, column potentials `v` and
/// offset `h`: `d[j] = min(d[j], row[j] - v[j] - h)`, without branches. Writes each
/// block's smallest new distance to `block_min` and returns the smallest of all. Skips
/// the blocks with no column left to do (`block_left`): on Machol-Wien the settled
/// columns gather in whole blocks, and a long search would pass over them every time.
///
/// With `RECORD` (long searches), also records `from` (the row's position among those
/// scanned) in `pred` where a distance strictly improves, so that the path needs no
/// recomputation at the end (which grows with the square of the search); `pred` is
/// written through a bit mask rather than a select, which the compiler turns into
/// branches. Never inlined: as a function of its own its slices are known not to
/// overlap and the compiler vectorizes it; inlined into the search, it did not.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn relax<const RECORD: bool>(
    row: &[f64],
    v: &[f64],
    h: f64,
    from: f64,
    d: &mut [f64],
    pred: &mut [f64],
    block_min: &mut [f64],
    block_left: &[usize],
) -> f64 {
    let n = d.len().min(row.len()).min(v.len()).min(pred.len());
    let whole = n - n % BLOCK;
    let mut least = f64::INFINITY;
    for ((((d, p), c), v), (block_min, &left)) in d[..whole]
        .chunks_exact_mut(BLOCK)
        .zip(pred[..whole].chunks_exact_mut(BLOCK))
        .zip(row[..whole].chunks_exact(BLOCK))
        .zip(v[..whole].chunks_exact(BLOCK))
        .zip(block_min.iter_mut().zip(block_left))
    {
        // A block whose columns are all settled has nothing to relax.
        *block_min = if left == 0 {
            f64::INFINITY
        } else {
            relax_block::<RECORD>(c, v, h, from, d, p)
        };
        least = if *block_min < least {
            *block_min
        } else {
            least
        };
    }
    if whole < n {
        let (c, v) = (&row[whole..n], &v[whole..n]);
        let smallest = relax_block::<RECORD>(c, v, h, from, &mut d[whole..n], &mut pred[whole..n]);
        if let Some(slot) = block_min.get_mut(whole / BLOCK) {
            *slot = smallest;
        }
        least = if smallest < least { smallest } else { least };
    }
    least
}

/// [`relax`] over the columns of one block; returns their smallest new distance.
#[inline(always)]
fn relax_block<const RECORD: bool>(
    row: &[f64],
    v: &[f64],
    h: f64,
    from: f64,
    d: &mut [f64],
    pred: &mut [f64],
) -> f64 {
    let whole = d.len() - d.len() % LANES;
    let mut lanes = [f64::INFINITY; LANES];
    for (((d, p), c), v) in d[..whole]
        .chunks_exact_mut(LANES)
        .zip(pred[..whole].chunks_exact_mut(LANES))
        .zip(row[..whole].chunks_exact(LANES))
        .zip(v[..whole].chunks_exact(LANES))
    {
        for l in 0..LANES {
            let reduced = c[l] - v[l] - h;
            if RECORD {
                let better = 0u64.wrapping_sub((reduced < d[l]) as u64);
                p[l] = f64::from_bits((from.to_bits() & better) | (p[l].to_bits() & !better));
            }
            let x = if reduced < d[l] { reduced } else { d[l] };
            d[l] = x;
            lanes[l] = if x < lanes[l] { x } else { lanes[l] };
        }
    }
    let mut least = min_of_lanes(lanes);
    for (((d, p), &c), &v) in d[whole..]
        .iter_mut()
        .zip(&mut pred[whole..])
        .zip(&row[whole..])
        .zip(&v[whole..])
    {
        let reduced = c - v - h;
        if reduced < *d {
            *d = reduced;
            if RECORD {
                *p = from;
            }
        }
        least = if *d < least { *d } else { least };
    }
    least
}

/// The smallest of `lanes`, halving them pairwise: folded in order, or with the tail
/// of a block written into one lane, the compiler kept the lanes split across
/// registers and shuffled them on every chunk of the pass.
#[inline(always)]
fn min_of_lanes(lanes: [f64; LANES]) -> f64 {
    let mut lanes = lanes;
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            let (a, b) = (lanes[l], lanes[l + width]);
            lanes[l] = if b < a { b } else { a };
        }
    }
    lanes[0]
}

/// The smallest of `values` (`+inf` when empty): [`LANES`] running minima, with `<`
/// rather than `f64::min` (no value is NaN) so that the compiler vectorizes it.
#[inline(always)]
fn min_of(values: &[f64]) -> f64 {
    let mut lanes = [f64::INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = if x < *lane { x } else { *lane };
        }
    }
    for &x in rest {
        lanes[0] = if x < lanes[0] { x } else { lanes[0] };
    }
    lanes
        .iter()
        .fold(f64::INFINITY, |min, &x| if x < min { x } else { min })
}

/// Keeps `m1 <= m2` the two smallest values seen, given one more, without branches.
#[inline(always)]
fn push_two_smallest(m1: &mut f64, m2: &mut f64, h: f64) {
    let high = if h > *m1 { h } else { *m1 };
    *m2 = if high < *m2 { high } else { *m2 };
    *m1 = if h < *m1 { h } else { *m1 };
}

/// The two smallest reduced costs `row[j] - v[j]` of a row, equal when the minimum is
/// tied (`+inf` for a missing one), from [`LANES`] branch-free running pairs.
#[inline(always)]
fn two_smallest_values(row: &[f64], v: &[f64]) -> (f64, f64) {
    let mut m1 = [f64::INFINITY; LANES];
    let mut m2 = [f64::INFINITY; LANES];
    let rows = row.chunks_exact(LANES);
    let vs = v.chunks_exact(LANES);
    let (row_rest, v_rest) = (rows.remainder(), vs.remainder());
    for (c, v) in rows.zip(vs) {
        for l in 0..LANES {
            push_two_smallest(&mut m1[l], &mut m2[l], c[l] - v[l]);
        }
    }
    for (&c, &v) in row_rest.iter().zip(v_rest) {
        push_two_smallest(&mut m1[0], &mut m2[0], c - v);
    }
    let (mut u1, mut u2) = (f64::INFINITY, f64::INFINITY);
    for h in m1.into_iter().chain(m2) {
        push_two_smallest(&mut u1, &mut u2, h);
    }
    (u1, u2)
}

/// The smallest reduced cost of a non-empty row and its first column, and the second
/// smallest with its column when there is one: the lowest column wins a tie, so a tied
/// minimum makes the second smallest equal to the smallest, at the next such column.
/// The values first, branch-free, then a pass that stops at the columns holding them.
#[inline(always)]
fn two_smallest(row: &[f64], v: &[f64]) -> (f64, usize, Option<(f64, usize)>) {
    let (u1, u2) = two_smallest_values(row, v);
    let (mut j1, mut j2) = (NONE, NONE);
    let mut base = 0;
    for (c, v) in row.chunks(LANES).zip(v.chunks(LANES)) {
        let hit = c
            .iter()
            .zip(v)
            .fold(false, |hit, (&c, &v)| hit | (c - v == u1) | (c - v == u2));
        if hit {
            for (k, (&c, &v)) in c.iter().zip(v).enumerate() {
                let h = c - v;
                if j1 == NONE && h == u1 {
                    j1 = base + k;
                } else if j2 == NONE && h == u2 {
                    j2 = base + k;
                }
            }
            if j1 != NONE && j2 != NONE {
                break;
            }
        }
        base += c.len();
    }
    if j1 == NONE {
        // Only for an empty row, or one whose minimum is infinite.
        return (f64::INFINITY, 0, None);
    }
    (u1, j1, (j2 != NONE).then_some((u2, j2)))
}
