//! [`OptimalAssigner`]: the whole batch at once, at minimum total cost.

use super::fleet::CompiledTask;
use super::greedy::{Buffers, Engine, Outcome, collect_plan};
use super::lap::{self, DenseCosts, SparseCosts};
use super::{
    Admission, Assigner, AssignmentError, Explanation, GreedyAssigner, Placement, Plan, Refusal,
    ScoreWeights, Unplaced, check_batch, placement_order,
};
use crate::task::Task;

/// Above this many (task, slot) cells the cost matrix is always built sparse.
const DENSE_CELLS: usize = 4_000_000;

/// Assigns a batch of tasks together so that the total score is the best possible: a
/// minimum-cost linear assignment of tasks (rows) to agent task slots (columns), where
/// a pair's cost is minus the agent's score for the task and pairs that fail a filter
/// are infeasible.
///
/// It places as many tasks as slots and filters allow, then maximizes their total
/// score. Filters and scores are the [`GreedyAssigner`]'s (the same weights, host
/// filters and scorers), so the two are comparable.
///
/// # What "optimal" covers
/// Slots are columns, so slot limits are exact. Resources are a knapsack across the
/// batch (several tasks on one agent must fit together), which no linear assignment
/// expresses; each pair is checked alone, then the solution is committed in placement
/// order and any task whose agent has run out of room (or whose [`Admission`] refuses)
/// is placed greedily on what is left. The assigner also computes the greedy plan and
/// returns it instead whenever it places more tasks or, placing as many, scores
/// higher: the result is never worse than greedy's.
///
/// # Complexity
/// Building the costs is O(t · a · d) like a greedy pass; the solve is
/// [`lap::solve`] on t rows and s columns (s: the free slots, capped at t per agent):
/// O(t² · s) in the worst case for the dense solver, much less on sparse problems.
///
/// # Examples
/// ```
/// use concord::assignment::{Assigner, Fleet, OptimalAssigner};
/// use concord::agent::{AgentProfile, AgentRegistry};
/// use concord::{AgentId, Requirements, Role, Task, TaskId, Timestamp};
///
/// let now = Timestamp::from_secs(0);
/// let mut registry = AgentRegistry::new();
/// registry.register(AgentProfile::new(AgentId::new(1), "generalist")
///     .with_role(Role::new("ops")?).with_role(Role::new("qa")?), now)?;
/// registry.register(AgentProfile::new(AgentId::new(2), "qa-only").with_role(Role::new("qa")?), now)?;
/// let fleet = Fleet::new(&registry, None);
/// let qa = Task::new(TaskId::new(1), "verify", "")
///     .with_requirements(Requirements::new().with_role(Role::new("qa")?));
/// let ops = Task::new(TaskId::new(2), "deploy", "")
///     .with_requirements(Requirements::new().with_role(Role::new("ops")?));
/// // Greedy, taking the qa task first, could give it the generalist and leave the ops
/// // task nobody; the optimal assigner places both.
/// let plan = OptimalAssigner::default().assign_all(&[qa, ops], &fleet)?;
/// assert_eq!(plan.placements.len(), 2);
/// assert_eq!(plan.placement(TaskId::new(2)).unwrap().agent, AgentId::new(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct OptimalAssigner {
    greedy: GreedyAssigner,
}

impl OptimalAssigner {
    /// An optimal assigner with the default weights.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `greedy`'s weights, host filters and scorers for the pair costs.
    pub fn with_scoring(greedy: GreedyAssigner) -> Self {
        OptimalAssigner { greedy }
    }

    /// Sets the built-in scorers' weights.
    pub fn with_weights(mut self, weights: ScoreWeights) -> Self {
        self.greedy = self.greedy.with_weights(weights);
        self
    }

    /// The linear assignment of the batch, committed through the engine, with greedy
    /// placement for what it could not commit.
    fn solve(
        &self,
        tasks: &[Task],
        fleet: &super::Fleet,
        admission: &mut dyn Admission,
    ) -> Result<Plan, AssignmentError> {
        // Fresh buffers: unlike the greedy pass, this one keeps none between calls.
        let mut order = Vec::new();
        placement_order(tasks, &mut order);
        let mut buffers = Buffers::default();
        let mut engine = Engine::new(&self.greedy, fleet, tasks, &mut buffers)?;
        // Rows in placement order; per row, the feasible agents and scores.
        let mut compiled: Vec<CompiledTask> = Vec::with_capacity(tasks.len());
        let mut rows: Vec<Vec<(usize, f64)>> = Vec::with_capacity(tasks.len());
        let mut explanations = Vec::with_capacity(tasks.len());
        for &k in &order {
            let mut t = CompiledTask::default();
            engine.compile_into(&tasks[k], &mut t);
            let mut e = Explanation::default();
            match engine.evaluate(&tasks[k], &t, true, &mut e)? {
                Some(_) => {
                    rows.push(engine.take_fits());
                    explanations.push(Some(e));
                }
                None => {
                    rows.push(Vec::new());
                    explanations.push(None);
                }
            }
            compiled.push(t);
        }
        // Columns: each agent's free slots, at most one per row that can use it.
        let mut uses = vec![0usize; fleet.len()];
        for row in &rows {
            for &(i, _) in row {
                uses[i] += 1;
            }
        }
        let mut first_col = vec![0usize; fleet.len() + 1];
        for i in 0..fleet.len() {
            first_col[i + 1] = first_col[i] + uses[i].min(fleet.slots[i] as usize);
        }
        let cols = first_col[fleet.len()];
        let edges: usize = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|&(i, _)| first_col[i + 1] - first_col[i])
                    .sum::<usize>()
            })
            .sum();
        let cells = rows.len().saturating_mul(cols);
        let weight = engine.weight_sum;
        let solution = if cells <= DENSE_CELLS && edges * 3 >= cells {
            let mut costs = DenseCosts::from_fn(rows.len(), cols, |_, _| None)?;
            for (r, row) in rows.iter().enumerate() {
                for &(i, score) in row {
                    for c in first_col[i]..first_col[i + 1] {
                        costs.set_cost(r, c, -score / weight)?;
                    }
                }
            }
            lap::solve(&costs)
        } else {
            let triples = rows.iter().enumerate().flat_map(|(r, row)| {
                let first_col = &first_col;
                row.iter().flat_map(move |&(i, score)| {
                    (first_col[i]..first_col[i + 1]).map(move |c| (r, c, -score / weight))
                })
            });
            lap::solve_sparse(&SparseCosts::from_triples(rows.len(), cols, triples)?)
        };
        // Column -> agent.
        let mut agent_of = vec![0usize; cols];
        for i in 0..fleet.len() {
            agent_of[first_col[i]..first_col[i + 1]].fill(i);
        }

        // Commit in placement order; what cannot be committed goes greedy.
        let mut accepted: Vec<Placement> = Vec::new();
        let mut outcome: Vec<Outcome> = vec![None; tasks.len()];
        let mut refusals: Vec<Refusal> = Vec::new();
        let mut leftovers = Vec::new();
        for (r, &k) in order.iter().enumerate() {
            let task = &tasks[k];
            let t = &compiled[r];
            let chosen = solution.row_to_col[r].map(|c| agent_of[c]);
            let committed = match (chosen, explanations[r].take()) {
                (Some(i), Some(mut e)) if engine.reject_code(i, t).is_none() => {
                    match admission.admit(task, fleet.ids[i], &accepted) {
                        Ok(()) => {
                            e.runner_up = rows[r]
                                .iter()
                                .filter(|(j, _)| *j != i)
                                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                                .map(|&(j, s)| (fleet.ids[j], s / weight));
                            let (agent, score) = engine.commit(i, task, t, &mut e);
                            Some(Placement::new(task.id(), agent, score, e))
                        }
                        Err(refusal) => {
                            refusals.push(refusal);
                            None
                        }
                    }
                }
                _ => None,
            };
            match committed {
                Some(p) => {
                    outcome[k] = Some(Ok(accepted.len()));
                    accepted.push(p);
                }
                None => leftovers.push(k),
            }
        }
        let mut t = CompiledTask::default();
        for k in leftovers {
            let mut explanation = Explanation::default();
            let placed = engine.place(
                &tasks[k],
                &mut t,
                admission,
                &accepted,
                &mut refusals,
                &mut explanation,
            )?;
            match placed {
                Some((agent, score)) => {
                    outcome[k] = Some(Ok(accepted.len()));
                    accepted.push(Placement::new(tasks[k].id(), agent, score, explanation));
                }
                None => {
                    outcome[k] = Some(Err(Unplaced {
                        task: tasks[k].id(),
                        explanation,
                    }))
                }
            }
        }
        Ok(collect_plan(
            accepted,
            &mut outcome,
            refusals,
            &mut Vec::new(),
        ))
    }
}

impl Assigner for OptimalAssigner {
    fn assign(
        &self,
        tasks: &[Task],
        fleet: &super::Fleet,
        admission: &mut dyn Admission,
    ) -> Result<Plan, AssignmentError> {
        check_batch(tasks, fleet, &mut Vec::new())?;
        let optimal = self.solve(tasks, fleet, admission)?;
        let greedy = self.greedy.assign(tasks, fleet, admission)?;
        let better = |a: &Plan, b: &Plan| {
            a.placements.len() > b.placements.len()
                || (a.placements.len() == b.placements.len()
                    && a.total_score() > b.total_score() + 1e-9)
        };
        let plan = if better(&greedy, &optimal) {
            greedy
        } else {
            optimal
        };
        tracing::debug!(
            tasks = tasks.len(),
            placed = plan.placements.len(),
            score = plan.total_score(),
            "batch assigned optimally"
        );
        Ok(plan)
    }
}
