//! Shortest augmenting paths over the feasible pairs only (`rows <= cols`).
//!
//! The scheme is that of the dense solver (column reduction for square problems,
//! bounded augmenting row reduction, then one Dijkstra search per free row with column
//! potentials, deferring the rows that cannot be assigned), with the searches driven
//! by a binary heap over the pairs of the rows they reach instead of scans of whole
//! rows.
//!
//! Without column reduction, potentials start at zero and only assigned columns'
//! potentials are lowered, so free columns keep the highest potential, as the
//! rectangular optimality condition requires.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::dense::Outcome;
use super::{NONE, SparseCosts};

/// Steps of augmenting row reduction allowed per free row, on average (see the dense
/// solver). Sparse rows are short, so more steps pay off than in the dense case.
const REDUCTION_STEPS: usize = 8;

/// Assigns the rows (`rows <= cols`) to columns over the feasible pairs: at least
/// cost when every row can be assigned, otherwise as many as can be (see
/// [`Outcome`]).
pub(super) fn solve(costs: &SparseCosts) -> Outcome {
    let (rows, cols) = (costs.rows(), costs.cols());
    if rows > cols {
        // Unreachable through the module's callers; assign nothing rather than panic.
        return Outcome::Deficient(vec![NONE; rows]);
    }
    let mut solver = Solver {
        rows,
        cols,
        costs,
        v: vec![0.0; cols],
        row_of: vec![NONE; cols],
        col_of: vec![NONE; rows],
        assigned_cost: vec![0.0; rows],
        deferred: Vec::new(),
        dead: vec![false; cols],
    };
    let mut free = if rows == cols {
        solver.reduce_columns()
    } else {
        (0..rows).collect()
    };
    solver.reduce_rows(&mut free);
    solver.augment(&free);
    if solver.deferred.is_empty() {
        Outcome::Optimal(solver.col_of)
    } else {
        Outcome::Deficient(solver.col_of)
    }
}

/// A pair offered to a row: (reduced cost, column, cost).
type Candidate = (f64, usize, f64);

/// A column's state in a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unseen,
    Seen,
    Done,
}

struct Solver<'a> {
    rows: usize,
    cols: usize,
    costs: &'a SparseCosts,
    /// Column potentials.
    v: Vec<f64>,
    /// Each column's row, `NONE` when free.
    row_of: Vec<usize>,
    /// Each row's column, `NONE` when free.
    col_of: Vec<usize>,
    /// The cost of each row's current pair.
    assigned_cost: Vec<f64>,
    /// Rows that cannot be assigned with the current matching, nor ever after.
    deferred: Vec<usize>,
    /// Columns settled by a failed search, which later searches skip (see the dense
    /// solver).
    dead: Vec<bool>,
}

impl<'a> Solver<'a> {
    /// Row `i`'s pairs as `(col, cost)`, in column order.
    #[inline(always)]
    fn pairs(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + 'a {
        let (cols, costs) = self.costs.row_slices(i);
        cols.iter().copied().zip(costs.iter().copied())
    }

    fn assign(&mut self, i: usize, j: usize, cost: f64) {
        self.col_of[i] = j;
        self.row_of[j] = i;
        self.assigned_cost[i] = cost;
    }

    /// Column reduction and reduction transfer (square problems). Returns the rows left
    /// free.
    fn reduce_columns(&mut self) -> Vec<usize> {
        let n = self.cols;
        let mut argmin = vec![NONE; n];
        self.v.fill(f64::INFINITY);
        for i in 0..self.rows {
            for (j, c) in self.pairs(i) {
                if c < self.v[j] {
                    self.v[j] = c;
                    argmin[j] = i;
                }
            }
        }
        // Each row takes the last column it is the minimum of; a column with no pair
        // gets potential zero and no row.
        let mut matches = vec![0u32; self.rows];
        for j in (0..n).rev() {
            let Some(count) = matches.get_mut(argmin[j]) else {
                self.v[j] = 0.0;
                continue;
            };
            *count += 1;
            if *count == 1 {
                self.assign(argmin[j], j, self.v[j]);
            }
        }
        let mut free = Vec::new();
        for (i, &count) in matches.iter().enumerate() {
            if count == 0 {
                free.push(i);
            } else if count == 1 {
                // Hand the column the slack to the row's second-best column.
                let j1 = self.col_of[i];
                let second = self
                    .pairs(i)
                    .filter(|&(j, _)| j != j1)
                    .map(|(j, c)| c - self.v[j])
                    .fold(f64::INFINITY, f64::min);
                if second.is_finite() {
                    self.v[j1] -= second;
                }
            }
        }
        free
    }

    /// Row `i`'s smallest reduced cost with its column and cost, and its second
    /// smallest when it has a second pair; `None` when it has no pair. The first column
    /// wins a tie.
    #[inline(always)]
    fn two_smallest(&self, i: usize) -> Option<(Candidate, Option<Candidate>)> {
        let mut pairs = self.pairs(i);
        let (j, c) = pairs.next()?;
        let mut first = (c - self.v[j], j, c);
        let mut second = (f64::INFINITY, NONE, 0.0);
        for (j, c) in pairs {
            let h = c - self.v[j];
            if h < second.0 {
                if h >= first.0 {
                    second = (h, j, c);
                } else {
                    second = first;
                    first = (h, j, c);
                }
            }
        }
        Some((first, (second.1 != NONE).then_some(second)))
    }

    /// Augmenting row reduction, two bounded passes (see the dense solver); defers a
    /// row with no pair.
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
                let Some(((u1, mut j1, mut cost), second)) = self.two_smallest(i) else {
                    self.deferred.push(i);
                    continue;
                };
                let mut i0 = self.row_of[j1];
                let (lowered, lowers) = match second {
                    Some((u2, _, _)) => {
                        let lowered = self.v[j1] - (u2 - u1);
                        (lowered, lowered < self.v[j1])
                    }
                    None => (self.v[j1], false),
                };
                if steps < current.saturating_mul(REDUCTION_STEPS) {
                    if lowers {
                        self.v[j1] = lowered;
                    } else if let (true, Some((u2, j2, c2))) = (i0 != NONE, second) {
                        if u2 == u1 {
                            j1 = j2;
                            cost = c2;
                            i0 = self.row_of[j1];
                        }
                    }
                    if i0 != NONE {
                        if lowers {
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
                self.assign(i, j1, cost);
            }
            free.truncate(kept);
        }
    }

    /// Shortest augmenting paths, one Dijkstra search per free row; a row whose search
    /// reaches no free column is deferred, and the columns it settled are dead.
    fn augment(&mut self, free: &[usize]) {
        let m = self.cols;
        let mut search = Search {
            d: vec![0.0; m],
            pred: vec![NONE; m],
            pred_cost: vec![0.0; m],
            state: vec![State::Unseen; m],
            touched: Vec::new(),
            done: Vec::new(),
            heap: BinaryHeap::new(),
            bound: f64::INFINITY,
        };
        let mut path = Vec::new();
        for &start in free {
            match self.search(start, &mut search) {
                Some((end, mind)) => {
                    // Trace the path back to the start, then flip it.
                    path.clear();
                    let mut j = end;
                    let traced = loop {
                        let i = search.pred[j];
                        if i >= self.rows || path.len() > self.rows {
                            // Unreachable: every column on the path was reached.
                            break false;
                        }
                        path.push((i, j, search.pred_cost[j]));
                        if i == start {
                            break true;
                        }
                        j = self.col_of[i];
                    };
                    if traced {
                        for &(i, j, cost) in &path {
                            self.assign(i, j, cost);
                        }
                        for &j in &search.done {
                            self.v[j] += search.d[j] - mind;
                        }
                    } else {
                        self.deferred.push(start);
                    }
                }
                None => {
                    self.deferred.push(start);
                    for &j in &search.done {
                        self.dead[j] = true;
                    }
                }
            }
            for &j in &search.touched {
                search.state[j] = State::Unseen;
            }
            search.touched.clear();
            search.done.clear();
            search.heap.clear();
        }
    }

    /// Dijkstra from free row `start` until a free column is settled; returns it and its
    /// distance, or `None` when none can be reached. Settled columns are listed in
    /// `search.done`.
    fn search(&self, start: usize, search: &mut Search) -> Option<(usize, f64)> {
        search.bound = f64::INFINITY;
        self.relax(start, 0.0, search);
        while let Some(Reverse((_, _, j))) = search.heap.pop() {
            if search.state[j] == State::Done {
                continue;
            }
            let dist = search.d[j];
            if self.row_of[j] == NONE {
                return Some((j, dist));
            }
            search.state[j] = State::Done;
            search.done.push(j);
            let i = self.row_of[j];
            // Row i's potential, relative to the distance of the column reaching it.
            let h = self.assigned_cost[i] - self.v[j] - dist;
            self.relax(i, h, search);
        }
        None
    }

    /// Offers row `i`'s pairs to the search, at reduced cost minus `h`.
    #[inline(always)]
    fn relax(&self, i: usize, h: f64, search: &mut Search) {
        for (j, c) in self.pairs(i) {
            let state = search.state[j];
            if state == State::Done || self.dead[j] {
                continue;
            }
            let reduced = c - self.v[j] - h;
            let free = self.row_of[j] == NONE;
            // A column no nearer than the nearest free column seen will not be settled
            // before that one ends the search (free columns win ties).
            if reduced >= search.bound && !free {
                continue;
            }
            if state == State::Unseen || reduced < search.d[j] {
                if state == State::Unseen {
                    search.state[j] = State::Seen;
                    search.touched.push(j);
                }
                if free && reduced < search.bound {
                    search.bound = reduced;
                }
                search.d[j] = reduced;
                search.pred[j] = i;
                search.pred_cost[j] = c;
                // Nearest first, then free columns (a search ends sooner), then the
                // lowest column.
                search.heap.push(Reverse((key(reduced), !free, j)));
            }
        }
    }
}

/// An order-preserving integer for a finite `f64` (as `f64::total_cmp`), for the heap.
#[inline(always)]
fn key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// The working arrays of the searches, allocated once per solve.
struct Search {
    d: Vec<f64>,
    pred: Vec<usize>,
    pred_cost: Vec<f64>,
    state: Vec<State>,
    touched: Vec<usize>,
    done: Vec<usize>,
    heap: BinaryHeap<Reverse<(u64, bool, usize)>>,
    /// The distance of the nearest free column seen in the current search.
    bound: f64,
}
