//! Properties of the optimal assigner: on random small instances (up to 6 tasks and 6
//! agents, with slots, infeasible pairs and rectangular shapes) it places as many
//! tasks as a brute-force search and, placing as many, scores as high; it is never
//! worse than greedy; and it never breaks a filter.

use std::collections::BTreeMap;
use std::sync::Arc;

use concord::agent::{AgentProfile, AgentRegistry};
use concord::assignment::{
    Assigner, Fleet, GreedyAssigner, OptimalAssigner, Plan, ScoreWeights, Scorer,
};
use concord::{AgentId, Requirements, Role, Task, TaskId, Timestamp};
use proptest::prelude::*;

/// Scores from a table: the only scorer, so a pair's score is exactly its entry.
#[derive(Debug)]
struct Table(BTreeMap<(u64, u64), f64>);

impl Scorer for Table {
    fn name(&self) -> &str {
        "table"
    }
    fn score(&self, task: &Task, agent: AgentId, _: &Fleet) -> f64 {
        self.0
            .get(&(task.id().get(), agent.get()))
            .copied()
            .unwrap_or(0.0)
    }
}

#[derive(Debug, Clone)]
struct Instance {
    /// Per agent: its role bits (of 3 roles) and slots.
    agents: Vec<(u8, u32)>,
    /// Per task: its required role, if any.
    tasks: Vec<Option<u8>>,
    /// Score per (task, agent), integers so that sums compare exactly.
    scores: Vec<Vec<u8>>,
}

fn instance() -> impl Strategy<Value = Instance> {
    (1usize..=6, 1usize..=6).prop_flat_map(|(a, t)| {
        (
            proptest::collection::vec((1u8..8, 1u32..=2), a),
            proptest::collection::vec(proptest::option::of(0u8..3), t),
            proptest::collection::vec(proptest::collection::vec(0u8..100, a), t),
        )
            .prop_map(|(agents, tasks, scores)| Instance {
                agents,
                tasks,
                scores,
            })
    })
}

const ROLES: [&str; 3] = ["ops", "qa", "dev"];

fn build(inst: &Instance) -> (Fleet, Vec<Task>, Table) {
    let mut registry = AgentRegistry::new();
    for (k, (roles, slots)) in inst.agents.iter().enumerate() {
        let mut p =
            AgentProfile::new(AgentId::new(k as u64), format!("a{k}")).with_max_tasks(*slots);
        for (b, name) in ROLES.iter().enumerate() {
            if roles & (1 << b) != 0 {
                p = p.with_role(Role::new(name).unwrap());
            }
        }
        registry.register(p, Timestamp::EPOCH).unwrap();
    }
    let tasks = inst
        .tasks
        .iter()
        .enumerate()
        .map(|(k, role)| {
            let mut req = Requirements::new();
            if let Some(r) = role {
                req = req.with_role(Role::new(ROLES[*r as usize]).unwrap());
            }
            Task::new(TaskId::new(k as u64), "work", "").with_requirements(req)
        })
        .collect();
    let mut table = BTreeMap::new();
    for (t, row) in inst.scores.iter().enumerate() {
        for (a, s) in row.iter().enumerate() {
            table.insert((t as u64, a as u64), f64::from(*s));
        }
    }
    (Fleet::new(&registry, None), tasks, Table(table))
}

fn feasible(inst: &Instance, t: usize, a: usize) -> bool {
    inst.tasks[t].is_none_or(|r| inst.agents[a].0 & (1 << r) != 0)
}

/// The best (placed, total score) over every assignment that respects slots.
fn brute_force(inst: &Instance) -> (usize, u32) {
    fn go(inst: &Instance, t: usize, slots: &mut Vec<u32>) -> (usize, u32) {
        if t == inst.tasks.len() {
            return (0, 0);
        }
        let mut best = go(inst, t + 1, slots);
        for a in 0..inst.agents.len() {
            if slots[a] > 0 && feasible(inst, t, a) {
                slots[a] -= 1;
                let (n, s) = go(inst, t + 1, slots);
                slots[a] += 1;
                best = best.max((n + 1, s + u32::from(inst.scores[t][a])));
            }
        }
        best
    }
    let mut slots: Vec<u32> = inst.agents.iter().map(|a| a.1).collect();
    go(inst, 0, &mut slots)
}

fn scorer_only(table: Table) -> GreedyAssigner {
    let off = ScoreWeights {
        least_allocated: 0.0,
        most_allocated: 0.0,
        balanced: 0.0,
        affinity: 0.0,
    };
    GreedyAssigner::new()
        .with_weights(off)
        .with_scorer(Arc::new(table), 1.0)
}

fn total(plan: &Plan) -> f64 {
    plan.placements.iter().map(|p| p.score).sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn optimal_matches_brute_force_and_beats_greedy(inst in instance()) {
        let (fleet, tasks, table) = build(&inst);
        let table2 = Table(table.0.clone());
        let optimal = OptimalAssigner::with_scoring(scorer_only(table)).assign_all(&tasks, &fleet).unwrap();
        let greedy = scorer_only(table2).assign_all(&tasks, &fleet).unwrap();
        let (best_n, best_score) = brute_force(&inst);

        prop_assert_eq!(optimal.placements.len() + optimal.unplaced.len(), tasks.len());
        prop_assert_eq!(optimal.placements.len(), best_n, "placed {:?}", optimal.placements);
        prop_assert!((total(&optimal) - f64::from(best_score)).abs() < 1e-6,
            "score {} vs brute force {}", total(&optimal), best_score);
        // Never worse than greedy.
        prop_assert!(optimal.placements.len() >= greedy.placements.len());
        if optimal.placements.len() == greedy.placements.len() {
            prop_assert!(total(&optimal) + 1e-6 >= total(&greedy));
        }
        // Never breaks a filter: roles and slots.
        let mut used: BTreeMap<AgentId, u32> = BTreeMap::new();
        for p in &optimal.placements {
            let (t, a) = (p.task.get() as usize, p.agent.get() as usize);
            prop_assert!(feasible(&inst, t, a), "{} on {} lacks the role", p.task, p.agent);
            *used.entry(p.agent).or_default() += 1;
        }
        for (a, n) in used {
            prop_assert!(n <= inst.agents[a.get() as usize].1, "{} over its slots", a);
        }
        // Deterministic.
        let (fleet2, tasks2, table3) = build(&inst);
        let again = OptimalAssigner::with_scoring(scorer_only(table3)).assign_all(&tasks2, &fleet2).unwrap();
        prop_assert_eq!(again, optimal);
    }
}
