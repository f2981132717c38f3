//! Properties of the linear assignment solvers: on random instances up to 7 x 7, with
//! random infeasible pairs and every shape, each solver assigns as many rows as a
//! brute-force search and at the same least cost, returns a valid matching over
//! feasible pairs only, agrees with the others, and gives the same output for the same
//! input. On larger instances (up to 40 x 40, often with rows competing for too few
//! columns), the dense and sparse solvers agree, also on Machol-Wien-like costs whose
//! searches scan dozens of rows (the dense solver records a long search's path as it
//! goes, and finds a short one's again at the end). A warm re-solve after some rows and
//! columns changed (or from the solve of another problem altogether) finds what a cold
//! solve finds.

use concord::assignment::lap::{
    DenseCosts, LapSolution, SparseCosts, WarmStart, solve, solve_dense, solve_dense_warm,
    solve_sparse,
};
use proptest::prelude::*;

/// A random problem: its shape and each pair's cost, `None` when infeasible.
#[derive(Debug, Clone)]
struct Problem {
    rows: usize,
    cols: usize,
    costs: Vec<Option<f64>>,
}

impl Problem {
    fn cost(&self, row: usize, col: usize) -> Option<f64> {
        self.costs[row * self.cols + col]
    }

    fn dense(&self) -> DenseCosts {
        DenseCosts::from_fn(self.rows, self.cols, |r, c| self.cost(r, c)).unwrap()
    }

    fn sparse(&self) -> SparseCosts {
        let triples = (0..self.rows).flat_map(|r| {
            (0..self.cols).filter_map(move |c| self.cost(r, c).map(|cost| (r, c, cost)))
        });
        SparseCosts::from_triples(self.rows, self.cols, triples).unwrap()
    }

    /// The largest number of assigned rows and the least cost among such matchings,
    /// by enumerating every partial injection of rows into columns.
    fn brute_force(&self) -> (usize, f64) {
        fn go(
            p: &Problem,
            row: usize,
            used: &mut [bool],
            count: usize,
            cost: f64,
            best: &mut (usize, f64),
        ) {
            if row == p.rows {
                if count > best.0 || (count == best.0 && cost < best.1) {
                    *best = (count, cost);
                }
                return;
            }
            go(p, row + 1, used, count, cost, best);
            for col in 0..p.cols {
                if let (false, Some(c)) = (used[col], p.cost(row, col)) {
                    used[col] = true;
                    go(p, row + 1, used, count + 1, cost + c, best);
                    used[col] = false;
                }
            }
        }
        let mut best = (0, 0.0);
        go(self, 0, &mut vec![false; self.cols], 0, 0.0, &mut best);
        best
    }

    /// A tolerance for comparing total costs: 1e-9 relative to the largest possible sum.
    fn tolerance(&self) -> f64 {
        let scale: f64 = self.costs.iter().flatten().map(|c| c.abs()).sum();
        1e-9 * scale.max(1.0)
    }
}

fn problem() -> impl Strategy<Value = Problem> {
    (
        0usize..=7,
        0usize..=7,
        prop_oneof![Just(0.0), Just(0.3), Just(0.7), Just(1.0)],
        any::<bool>(),
    )
        .prop_flat_map(|(rows, cols, infeasible, small)| {
            // Small integers make many ties; wide floats exercise the arithmetic.
            let cost = if small {
                (0i32..4).prop_map(f64::from).boxed()
            } else {
                (-1000.0f64..1000.0).boxed()
            };
            let pair = (proptest::bool::weighted(infeasible), cost)
                .prop_map(|(off, cost)| (!off).then_some(cost));
            proptest::collection::vec(pair, rows * cols).prop_map(move |costs| Problem {
                rows,
                cols,
                costs,
            })
        })
}

/// The solution is a matching over feasible pairs, consistent both ways, whose totals
/// are what its pairs say.
fn check_valid(p: &Problem, s: &LapSolution) -> Result<(), TestCaseError> {
    prop_assert_eq!(s.row_to_col.len(), p.rows);
    prop_assert_eq!(s.col_to_row.len(), p.cols);
    let mut total = 0.0;
    let mut assigned = 0;
    for (row, col) in s.row_to_col.iter().enumerate() {
        if let Some(col) = *col {
            prop_assert!(col < p.cols);
            prop_assert_eq!(s.col_to_row[col], Some(row));
            let cost = p.cost(row, col);
            prop_assert!(cost.is_some(), "infeasible pair ({}, {})", row, col);
            total += cost.unwrap_or(0.0);
            assigned += 1;
        }
    }
    for (col, row) in s.col_to_row.iter().enumerate() {
        if let Some(row) = *row {
            prop_assert_eq!(s.row_to_col[row], Some(col));
        }
    }
    prop_assert_eq!(s.assigned, assigned);
    prop_assert!((s.total_cost - total).abs() <= p.tolerance());
    Ok(())
}

fn check_optimal(p: &Problem, s: &LapSolution, best: (usize, f64)) -> Result<(), TestCaseError> {
    check_valid(p, s)?;
    prop_assert_eq!(s.assigned, best.0, "cardinality of {:?}", s);
    prop_assert!(
        (s.total_cost - best.1).abs() <= p.tolerance(),
        "cost {} vs brute force {} for {:?}",
        s.total_cost,
        best.1,
        s
    );
    Ok(())
}

/// Larger problems where some rows can use only a few columns shared with others, so
/// that not every row can be assigned and the solvers must choose which to leave out.
fn crowded_problem() -> impl Strategy<Value = Problem> {
    (
        1usize..=40,
        1usize..=40,
        0usize..=10,
        0.0f64..0.9,
        any::<u64>(),
    )
        .prop_map(|(rows, cols, narrow, infeasible, seed)| {
            let mut state = seed | 1;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let costs = (0..rows * cols)
                .map(|k| {
                    let (r, c) = (k / cols, k % cols);
                    let roll = next();
                    // The first `narrow` rows may only use the first three columns.
                    let allowed = r >= narrow || c < 3;
                    let feasible = allowed && (roll % 1000) as f64 >= infeasible * 1000.0;
                    feasible.then_some(((roll >> 16) % 100) as f64 - 20.0)
                })
                .collect();
            Problem { rows, cols, costs }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_solver_matches_brute_force(p in problem()) {
        let best = p.brute_force();
        let dense = solve_dense(&p.dense());
        let sparse = solve_sparse(&p.sparse());
        let dispatched = solve(&p.dense());
        check_optimal(&p, &dense, best)?;
        check_optimal(&p, &sparse, best)?;
        check_optimal(&p, &dispatched, best)?;
        // Dense and sparse agree on what matters.
        prop_assert_eq!(dense.assigned, sparse.assigned);
        prop_assert!((dense.total_cost - sparse.total_cost).abs() <= p.tolerance());
    }

    #[test]
    fn same_input_same_output(p in problem()) {
        prop_assert_eq!(solve_dense(&p.dense()), solve_dense(&p.dense()));
        prop_assert_eq!(solve_sparse(&p.sparse()), solve_sparse(&p.sparse()));
        prop_assert_eq!(solve(&p.dense()), solve(&p.dense()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn dense_and_sparse_agree_on_larger_problems(p in crowded_problem()) {
        let dense = solve_dense(&p.dense());
        let sparse = solve_sparse(&p.sparse());
        let dispatched = solve(&p.dense());
        check_valid(&p, &dense)?;
        check_valid(&p, &sparse)?;
        check_valid(&p, &dispatched)?;
        prop_assert_eq!(dense.assigned, sparse.assigned);
        prop_assert_eq!(dense.assigned, dispatched.assigned);
        prop_assert!((dense.total_cost - sparse.total_cost).abs() <= p.tolerance());
        prop_assert!((dense.total_cost - dispatched.total_cost).abs() <= p.tolerance());
    }
}

/// Costs near `(i + 1) * (j + 1)` (Machol and Wien): every row ranks the columns the
/// same way, so each search scans about as many rows as are assigned, long past the
/// point where the dense solver starts recording its path in the pass.
fn long_search_problem() -> impl Strategy<Value = Problem> {
    (
        17usize..=60,
        0usize..=20,
        any::<bool>(),
        0.0f64..0.3,
        any::<u64>(),
    )
        .prop_map(|(n, extra, transposed, infeasible, seed)| {
            let mut state = seed | 1;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let (rows, cols) = if transposed {
                (n + extra, n)
            } else {
                (n, n + extra)
            };
            let costs = (0..rows * cols)
                .map(|k| {
                    let (r, c) = (k / cols, k % cols);
                    let roll = next();
                    let feasible = (roll % 1000) as f64 >= infeasible * 1000.0;
                    feasible.then_some(((r + 1) * (c + 1)) as f64 + ((roll >> 16) % 3) as f64)
                })
                .collect();
            Problem { rows, cols, costs }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn dense_and_sparse_agree_on_long_searches(p in long_search_problem()) {
        let dense = solve_dense(&p.dense());
        let sparse = solve_sparse(&p.sparse());
        check_valid(&p, &dense)?;
        check_valid(&p, &sparse)?;
        prop_assert_eq!(dense.assigned, sparse.assigned);
        prop_assert_eq!(dense.total_cost, sparse.total_cost);
    }
}

/// A problem and a second one of the same shape in which some rows and columns have
/// new costs (and feasibility), as a batch changes between two solves.
fn changed_problem() -> impl Strategy<Value = (Problem, Problem)> {
    (problem(), any::<u64>(), 0usize..=3, 0usize..=3).prop_map(|(p, seed, rows, cols)| {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut q = p.clone();
        if p.rows > 0 && p.cols > 0 {
            let changed_rows: Vec<usize> = (0..rows).map(|_| next() as usize % p.rows).collect();
            let changed_cols: Vec<usize> = (0..cols).map(|_| next() as usize % p.cols).collect();
            for r in 0..p.rows {
                for c in 0..p.cols {
                    if changed_rows.contains(&r) || changed_cols.contains(&c) {
                        let roll = next();
                        q.costs[r * p.cols + c] =
                            (roll % 5 != 0).then_some(((roll >> 8) % 7) as f64 - 2.0);
                    }
                }
            }
        }
        (p, q)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_warm_resolve_matches_a_cold_one((p, q) in changed_problem()) {
        let mut warm = WarmStart::new();
        let first = solve_dense_warm(&p.dense(), &mut warm);
        prop_assert_eq!(&first, &solve_dense(&p.dense()), "a first solve is a cold one");
        let resolved = solve_dense_warm(&q.dense(), &mut warm);
        check_optimal(&q, &resolved, q.brute_force())?;
        // And again from that state, unchanged: the same answer, every time.
        let mut again = warm.clone();
        let twice = solve_dense_warm(&q.dense(), &mut again);
        check_optimal(&q, &twice, q.brute_force())?;
        let mut once_more = warm.clone();
        prop_assert_eq!(solve_dense_warm(&q.dense(), &mut once_more), twice);
    }

    #[test]
    fn a_warm_start_from_another_shape_is_ignored(p in problem(), q in problem()) {
        let mut warm = WarmStart::new();
        solve_dense_warm(&p.dense(), &mut warm);
        let s = solve_dense_warm(&q.dense(), &mut warm);
        check_optimal(&q, &s, q.brute_force())?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_warm_resolve_matches_on_larger_problems(p in crowded_problem(), q in crowded_problem()) {
        // Two unrelated problems cut to one shape: the warm start then starts from
        // potentials that fit nothing, the hardest case for it.
        let (rows, cols) = (p.rows.min(q.rows), p.cols.min(q.cols));
        let cut = |x: &Problem| Problem {
            rows,
            cols,
            costs: (0..rows * cols).map(|k| x.cost(k / cols, k % cols)).collect(),
        };
        let (p, q) = (cut(&p), cut(&q));
        let mut warm = WarmStart::new();
        solve_dense_warm(&p.dense(), &mut warm);
        let warm_solution = solve_dense_warm(&q.dense(), &mut warm);
        let cold = solve_dense(&q.dense());
        check_valid(&q, &warm_solution)?;
        prop_assert_eq!(warm_solution.assigned, cold.assigned);
        prop_assert!((warm_solution.total_cost - cold.total_cost).abs() <= q.tolerance());
    }
}
