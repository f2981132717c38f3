//! Linear assignment through the public API: hand-checked instances of every shape,
//! infeasible pairs, every error path, determinism, and the dense and sparse solvers
//! agreeing.

use concord::assignment::lap::{
    DenseCosts, LapError, LapSolution, MAX_COST, MAX_DIM, SparseCosts, solve, solve_dense,
    solve_sparse,
};

/// Runs the three solvers on a dense problem, checks that they agree on the number of
/// assigned rows and the total cost, and returns the dense solver's answer.
fn all_solvers(costs: &DenseCosts) -> LapSolution {
    let dense = solve_dense(costs);
    let sparse = solve_sparse(&SparseCosts::from_dense(costs));
    let dispatched = solve(costs);
    for other in [&sparse, &dispatched] {
        assert_eq!(other.assigned, dense.assigned, "{dense:?} vs {other:?}");
        assert!(
            (other.total_cost - dense.total_cost).abs() <= 1e-9 * dense.total_cost.abs().max(1.0),
            "{dense:?} vs {other:?}"
        );
        assert_valid(costs, other);
    }
    assert_valid(costs, &dense);
    dense
}

/// The solution is a matching over feasible pairs whose totals are right.
fn assert_valid(costs: &DenseCosts, s: &LapSolution) {
    assert_eq!(s.row_to_col.len(), costs.rows());
    assert_eq!(s.col_to_row.len(), costs.cols());
    let mut total = 0.0;
    for (row, col) in s.pairs() {
        assert_eq!(s.col_to_row[col], Some(row));
        total += costs
            .cost(row, col)
            .expect("only feasible pairs are assigned");
    }
    assert_eq!(s.pairs().count(), s.assigned);
    assert_eq!(s.col_to_row.iter().flatten().count(), s.assigned);
    assert!((s.total_cost - total).abs() <= 1e-9 * total.abs().max(1.0));
}

fn dense(rows: usize, cols: usize, costs: &[f64]) -> DenseCosts {
    DenseCosts::new(rows, cols, costs.to_vec()).unwrap()
}

#[test]
fn square_instance() {
    // Optimum: (0,1) + (1,0) + (2,2) = 1 + 2 + 2.
    let costs = dense(3, 3, &[4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0]);
    let s = all_solvers(&costs);
    assert_eq!(s.row_to_col, vec![Some(1), Some(0), Some(2)]);
    assert_eq!(s.col_to_row, vec![Some(1), Some(0), Some(2)]);
    assert_eq!(s.total_cost, 5.0);
    assert_eq!(s.assigned, 3);
}

#[test]
fn more_columns_than_rows() {
    // Two tasks, four agents: each task takes its cheapest distinct agent.
    let costs = dense(2, 4, &[9.0, 2.0, 7.0, 8.0, 6.0, 4.0, 3.0, 7.0]);
    let s = all_solvers(&costs);
    assert_eq!(s.row_to_col, vec![Some(1), Some(2)]);
    assert_eq!(s.total_cost, 5.0);
    assert_eq!(s.unassigned_cols().collect::<Vec<_>>(), vec![0, 3]);
    assert_eq!(s.unassigned_rows().count(), 0);
}

#[test]
fn more_rows_than_columns() {
    // Four tasks, two agents: the two tasks that save the most get them.
    let costs = dense(4, 2, &[9.0, 6.0, 2.0, 4.0, 7.0, 3.0, 8.0, 7.0]);
    let s = all_solvers(&costs);
    assert_eq!(s.row_to_col, vec![None, Some(0), Some(1), None]);
    assert_eq!(s.total_cost, 5.0);
    assert_eq!(s.unassigned_rows().collect::<Vec<_>>(), vec![0, 3]);
}

#[test]
fn a_row_with_no_feasible_pair_is_left_out() {
    let costs = DenseCosts::from_fn(3, 3, |r, c| (r != 1).then_some((r + c) as f64)).unwrap();
    let s = all_solvers(&costs);
    assert_eq!(s.assigned, 2);
    assert_eq!(s.row_to_col[1], None);
    assert_eq!(s.row_to_col, vec![Some(0), None, Some(1)]);
    assert_eq!(s.total_cost, 3.0);
}

#[test]
fn cardinality_comes_before_cost() {
    // Row 0 alone would take column 0 for 1, but then row 1 (which can only use column
    // 0) is left out: assigning both is worth the higher cost.
    let costs = DenseCosts::from_fn(2, 2, |r, c| match (r, c) {
        (0, 0) => Some(1.0),
        (0, 1) => Some(100.0),
        (1, 0) => Some(1.0),
        _ => None,
    })
    .unwrap();
    let s = all_solvers(&costs);
    assert_eq!(s.row_to_col, vec![Some(1), Some(0)]);
    assert_eq!(s.total_cost, 101.0);
}

#[test]
fn the_cheaper_row_wins_a_contested_column_whatever_the_order() {
    // Guards against solving row by row and keeping whichever row came first: both
    // rows can only use column 0, and row 1 is much cheaper there.
    for (first, second) in [(100.0, 1.0), (1.0, 100.0)] {
        let costs = DenseCosts::from_fn(2, 2, |r, c| {
            (c == 0).then_some(if r == 0 { first } else { second })
        })
        .unwrap();
        let s = all_solvers(&costs);
        assert_eq!(s.assigned, 1);
        assert_eq!(s.total_cost, 1.0);
    }
    // The same with more rows than columns and a longer chain of displacements.
    let costs = DenseCosts::from_fn(4, 3, |r, c| match (r, c) {
        (0, 0) | (0, 1) => Some(50.0),
        (1, 1) | (1, 2) => Some(60.0),
        (2, 2) => Some(40.0),
        (3, 0) => Some(1.0),
        _ => None,
    })
    .unwrap();
    let s = all_solvers(&costs);
    assert_eq!(s.assigned, 3);
    assert_eq!(s.total_cost, 91.0);
    assert_eq!(s.row_to_col, vec![Some(1), None, Some(2), Some(0)]);
}

#[test]
fn all_infeasible_assigns_nothing() {
    let costs = DenseCosts::from_fn(3, 4, |_, _| None).unwrap();
    let s = all_solvers(&costs);
    assert_eq!(s.assigned, 0);
    assert_eq!(s.total_cost, 0.0);
    assert_eq!(s.row_to_col, vec![None; 3]);
    assert_eq!(s.col_to_row, vec![None; 4]);
}

#[test]
fn negative_costs() {
    // Scores negated: the largest total score wins.
    let costs = dense(2, 2, &[-5.0, -1.0, -4.0, -3.0]);
    let s = all_solvers(&costs);
    assert_eq!(s.row_to_col, vec![Some(0), Some(1)]);
    assert_eq!(s.total_cost, -8.0);
}

#[test]
fn empty_shapes() {
    for (rows, cols) in [(0, 0), (0, 5), (5, 0)] {
        let costs = dense(rows, cols, &[]);
        let s = all_solvers(&costs);
        assert_eq!(s.row_to_col, vec![None; rows]);
        assert_eq!(s.col_to_row, vec![None; cols]);
        assert_eq!(s.assigned, 0);
        assert_eq!(s.total_cost, 0.0);
        let sparse = SparseCosts::from_triples(rows, cols, []).unwrap();
        assert_eq!(solve_sparse(&sparse), s);
    }
}

#[test]
fn one_by_one() {
    let s = all_solvers(&dense(1, 1, &[7.5]));
    assert_eq!(s.row_to_col, vec![Some(0)]);
    assert_eq!(s.total_cost, 7.5);
    let s = all_solvers(&DenseCosts::from_fn(1, 1, |_, _| None).unwrap());
    assert_eq!(s.row_to_col, vec![None]);
}

#[test]
fn agent_slots_are_columns() {
    // Three tasks; agent A has two slots (columns 0 and 1), agent B one (column 2).
    // Every task prefers A, but only two fit there.
    let per_agent = [[1.0, 5.0], [2.0, 3.0], [1.5, 9.0]];
    let costs = DenseCosts::from_fn(3, 3, |task, slot| {
        Some(per_agent[task][if slot < 2 { 0 } else { 1 }])
    })
    .unwrap();
    let s = all_solvers(&costs);
    assert_eq!(s.total_cost, 1.0 + 3.0 + 1.5);
    assert_eq!(s.row_to_col[1], Some(2));
}

#[test]
fn extreme_but_valid_costs() {
    let costs = dense(2, 2, &[MAX_COST, -MAX_COST, -MAX_COST, MAX_COST]);
    let s = all_solvers(&costs);
    assert_eq!(s.row_to_col, vec![Some(1), Some(0)]);
    assert_eq!(s.total_cost, -2.0 * MAX_COST);
}

#[test]
fn the_dense_solver_handles_infeasible_pairs_on_every_path() {
    // Square with every row assignable (the fast path), square where a search must
    // give up, and both rectangular orientations.
    let shapes = [(6, 6, 3), (6, 6, 1), (4, 7, 2), (7, 4, 2)];
    for (rows, cols, keep) in shapes {
        let costs = DenseCosts::from_fn(rows, cols, |r, c| {
            ((r * 5 + c * 3) % 7 < keep * 2 || (r == c && keep > 1))
                .then_some(((r * 31 + c * 17) % 11) as f64)
        })
        .unwrap();
        all_solvers(&costs);
    }
}

#[test]
fn dense_and_sparse_agree_on_larger_random_problems() {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..40 {
        let rows = 1 + (next() % 60) as usize;
        let cols = 1 + (next() % 60) as usize;
        let keep = [100, 90, 50, 20, 5][round % 5];
        let costs = DenseCosts::from_fn(rows, cols, |_, _| {
            let roll = next();
            ((roll % 100) < keep).then(|| ((roll >> 20) % 1000) as f64 / 7.0 - 40.0)
        })
        .unwrap();
        all_solvers(&costs);
    }
}

#[test]
fn same_input_same_output() {
    let costs = DenseCosts::from_fn(30, 20, |r, c| {
        ((r * 7 + c * 13) % 5 != 0).then_some(((r * 3 + c * 11) % 4) as f64)
    })
    .unwrap();
    let first = solve_dense(&costs);
    for _ in 0..3 {
        assert_eq!(solve_dense(&costs.clone()), first);
    }
    let sparse = SparseCosts::from_dense(&costs);
    let first = solve_sparse(&sparse);
    assert_eq!(solve_sparse(&sparse.clone()), first);
    assert_eq!(solve(&costs), solve(&costs));
}

#[test]
fn dense_costs_accessors() {
    let mut costs = dense(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(
        (costs.rows(), costs.cols(), costs.feasible_count()),
        (2, 3, 6)
    );
    costs.set_infeasible(0, 1).unwrap();
    costs.set_infeasible(0, 1).unwrap();
    assert_eq!(costs.feasible_count(), 5);
    assert!(!costs.is_feasible(0, 1));
    assert_eq!(costs.cost(0, 1), None);
    costs.set_cost(0, 1, -2.5).unwrap();
    assert_eq!(costs.cost(0, 1), Some(-2.5));
    assert_eq!(costs.feasible_count(), 6);
    assert_eq!(costs.cost(2, 0), None);
    assert_eq!(costs.cost(0, 3), None);
}

#[test]
fn sparse_costs_accessors() {
    let sparse = SparseCosts::from_triples(3, 4, [(2, 3, 1.0), (0, 2, 2.0), (0, 0, 3.0)]).unwrap();
    assert_eq!((sparse.rows(), sparse.cols(), sparse.len()), (3, 4, 3));
    assert!(!sparse.is_empty());
    assert_eq!(sparse.row(0).collect::<Vec<_>>(), vec![(0, 3.0), (2, 2.0)]);
    assert_eq!(sparse.row(1).count(), 0);
    assert_eq!(sparse.row(7).count(), 0);
    assert_eq!(sparse.cost(2, 3), Some(1.0));
    assert_eq!(sparse.cost(1, 3), None);
    assert_eq!(sparse.cost(9, 9), None);
    let rows =
        SparseCosts::from_rows(4, [vec![(2, 2.0), (0, 3.0)], vec![], vec![(3, 1.0)]]).unwrap();
    assert_eq!(rows, sparse);
    let dense = DenseCosts::from_fn(3, 4, |r, c| sparse.cost(r, c)).unwrap();
    assert_eq!(SparseCosts::from_dense(&dense), sparse);
    assert_eq!(SparseCosts::from(&dense), sparse);
}

#[test]
fn solution_round_trips_through_serde() {
    let s = all_solvers(&dense(2, 3, &[1.0, 2.0, 3.0, 3.0, 1.0, 2.0]));
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<LapSolution>(&json).unwrap(), s);
}

// Errors.

#[test]
fn non_finite_costs_are_rejected_with_their_place() {
    for bad in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        2.0 * MAX_COST,
        -1e300,
    ] {
        let err = DenseCosts::new(2, 2, vec![0.0, 1.0, bad, 3.0]).unwrap_err();
        match err {
            LapError::InvalidCost { row, col, value } => {
                assert_eq!((row, col), (1, 0));
                assert!(value.is_nan() && bad.is_nan() || value == bad);
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = DenseCosts::from_fn(2, 3, |r, c| Some(if (r, c) == (1, 2) { bad } else { 0.0 }))
            .unwrap_err();
        assert!(matches!(err, LapError::InvalidCost { row: 1, col: 2, .. }));
        let err = SparseCosts::from_triples(2, 2, [(0, 0, 1.0), (1, 1, bad)]).unwrap_err();
        assert!(matches!(err, LapError::InvalidCost { row: 1, col: 1, .. }));
        let err = SparseCosts::from_rows(2, [vec![(1, bad)]]).unwrap_err();
        assert!(matches!(err, LapError::InvalidCost { row: 0, col: 1, .. }));
        let mut costs = dense(1, 1, &[0.0]);
        let err = costs.set_cost(0, 0, bad).unwrap_err();
        assert!(matches!(err, LapError::InvalidCost { row: 0, col: 0, .. }));
        assert_eq!(costs.cost(0, 0), Some(0.0), "a failed set changes nothing");
    }
    let err = DenseCosts::new(1, 2, vec![0.0, f64::INFINITY]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cost inf at row 0, column 1 is not finite or exceeds 1e100 in magnitude"
    );
}

#[test]
fn wrong_shapes_are_rejected() {
    assert_eq!(
        DenseCosts::new(2, 3, vec![0.0; 5]).unwrap_err(),
        LapError::Shape {
            rows: 2,
            cols: 3,
            len: 5
        }
    );
    assert!(matches!(
        DenseCosts::new(usize::MAX, 2, vec![]).unwrap_err(),
        LapError::Shape { .. }
    ));
    assert!(matches!(
        DenseCosts::from_fn(usize::MAX, 3, |_, _| None).unwrap_err(),
        LapError::Shape { .. }
    ));
    assert_eq!(
        DenseCosts::new(2, 3, vec![0.0; 5]).unwrap_err().to_string(),
        "5 costs do not fill a 2 x 3 matrix"
    );
}

/// Regression: shapes the constructors accepted made the solvers, documented never to
/// panic, panic: `0 x usize::MAX` (capacity overflow sizing the solution), a sparse
/// `usize::MAX x 2` (`rows + 1` overflowed) and `2 x usize::MAX` with two pairs
/// (capacity overflow in the solver's column arrays). A side past [`MAX_DIM`] is
/// refused by name instead; the bound itself is accepted.
#[test]
fn sides_past_the_bound_are_refused() {
    let too_large = |rows, cols| LapError::TooLarge {
        rows,
        cols,
        max: MAX_DIM,
    };
    let (huge, over) = (usize::MAX, MAX_DIM + 1);
    assert_eq!(
        DenseCosts::new(0, huge, vec![]).unwrap_err(),
        too_large(0, huge)
    );
    assert_eq!(
        DenseCosts::new(over, 0, vec![]).unwrap_err(),
        too_large(over, 0)
    );
    assert_eq!(
        DenseCosts::from_fn(0, huge, |_, _| None).unwrap_err(),
        too_large(0, huge)
    );
    assert_eq!(
        SparseCosts::from_triples(huge, 2, [(0, 0, 1.0)]).unwrap_err(),
        too_large(huge, 2)
    );
    assert_eq!(
        SparseCosts::from_triples(2, huge, [(0, 0, 1.0), (1, 5, 2.0)]).unwrap_err(),
        too_large(2, huge)
    );
    assert_eq!(
        SparseCosts::from_rows(over, [vec![(0, 1.0)]]).unwrap_err(),
        too_large(0, over)
    );
    assert_eq!(
        too_large(2, over).to_string(),
        "a 2 x 16777217 problem has more than 16777216 rows or columns"
    );
    // At the bound: accepted (solving it would size arrays of 2^24 entries, which
    // is allowed but too slow for a test).
    assert_eq!(DenseCosts::new(0, MAX_DIM, vec![]).unwrap().cols(), MAX_DIM);
    let edge = SparseCosts::from_triples(1, MAX_DIM, [(0, MAX_DIM - 1, 1.0)]).unwrap();
    assert_eq!(edge.cost(0, MAX_DIM - 1), Some(1.0));
}

#[test]
fn out_of_range_pairs_are_rejected() {
    let mut costs = dense(2, 2, &[0.0; 4]);
    let expected = LapError::OutOfRange {
        row: 2,
        col: 0,
        rows: 2,
        cols: 2,
    };
    assert_eq!(costs.set_infeasible(2, 0).unwrap_err(), expected);
    assert_eq!(costs.set_cost(2, 0, 1.0).unwrap_err(), expected);
    assert_eq!(
        SparseCosts::from_triples(2, 2, [(2, 0, 1.0)]).unwrap_err(),
        expected
    );
    assert_eq!(
        SparseCosts::from_triples(2, 2, [(0, 5, 1.0)]).unwrap_err(),
        LapError::OutOfRange {
            row: 0,
            col: 5,
            rows: 2,
            cols: 2
        }
    );
    assert_eq!(
        SparseCosts::from_rows(2, [vec![], vec![(2, 1.0)], vec![]]).unwrap_err(),
        LapError::OutOfRange {
            row: 1,
            col: 2,
            rows: 3,
            cols: 2
        }
    );
    assert_eq!(
        expected.to_string(),
        "pair (2, 0) is outside the 2 x 2 matrix"
    );
}

#[test]
fn duplicate_pairs_are_rejected() {
    assert_eq!(
        SparseCosts::from_triples(3, 3, [(1, 2, 1.0), (0, 0, 1.0), (1, 2, 5.0)]).unwrap_err(),
        LapError::DuplicatePair { row: 1, col: 2 }
    );
    assert_eq!(
        SparseCosts::from_rows(3, [vec![(0, 1.0)], vec![(2, 1.0), (2, 1.0)]]).unwrap_err(),
        LapError::DuplicatePair { row: 1, col: 2 }
    );
    assert_eq!(
        LapError::DuplicatePair { row: 1, col: 2 }.to_string(),
        "pair (1, 2) is given twice"
    );
}
