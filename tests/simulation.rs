//! The deterministic simulation of the coordinator core (see `tests/sim/mod.rs`):
//! a fixed set of seeds in safety mode and in liveness mode, each checking the named
//! invariants after every step.
//!
//! - `SIM_SEED=n` replays one seed (in both modes) and prints its trace hash.
//! - `SIM_SEEDS=n` runs `n` seeds of each mode instead of the default.
//! - `SIM_STEPS=n` sets the steps per seed.

mod sim;

use sim::{Mode, Report, run_seed};

/// Seeds per mode when `SIM_SEEDS` is not set: sized for CI on two cores.
const SAFETY_SEEDS: u64 = 400;
const LIVENESS_SEEDS: u64 = 150;
const STEPS: u64 = 400;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs every seed of `seeds`; fails with the first failure in full and the seeds
/// and invariants of the others.
fn run(mode: Mode, seeds: std::ops::Range<u64>, steps: u64) -> Report {
    let mut total = Report::default();
    let mut failures = Vec::new();
    for seed in seeds {
        match run_seed(seed, mode, steps) {
            Ok(r) => total.add(&r),
            Err(f) => failures.push(f),
        }
    }
    if let Some(first) = failures.first() {
        let others: Vec<String> = failures[1..]
            .iter()
            .map(|f| format!("{} ({})", f.seed, f.invariant))
            .collect();
        panic!(
            "{} seeds failed; the first:\n{first}\nthe others: {}",
            failures.len(),
            others.join(", ")
        );
    }
    total
}

fn print(mode: Mode, seeds: u64, r: &Report) {
    println!(
        "{mode:?}: {seeds} seeds, {} steps, {:.1} simulated hours, {} tasks, {} agent faults, \
         {} crashes and restores, {} conflicts decided, {} invariant checks; trace {:016x}",
        r.steps,
        r.simulated.as_secs_f64() / 3600.0,
        r.tasks,
        r.agent_faults,
        r.crashes,
        r.conflicts_decided,
        r.checks,
        r.trace_hash
    );
}

#[test]
fn safety_every_invariant_holds_at_every_step() {
    let steps = env("SIM_STEPS").unwrap_or(STEPS);
    if let Some(seed) = env("SIM_SEED") {
        let r = run(Mode::Safety, seed..seed + 1, steps);
        print(Mode::Safety, 1, &r);
        return;
    }
    let seeds = env("SIM_SEEDS").unwrap_or(SAFETY_SEEDS);
    let r = run(Mode::Safety, 0..seeds, steps);
    print(Mode::Safety, seeds, &r);
    assert!(
        r.crashes > 0 && r.conflicts_decided > 0 && r.agent_faults > 0,
        "{r:?}"
    );
}

#[test]
fn liveness_everything_finishes_once_faults_stop() {
    let steps = env("SIM_STEPS").unwrap_or(STEPS);
    if let Some(seed) = env("SIM_SEED") {
        let r = run(Mode::Liveness, seed..seed + 1, steps);
        print(Mode::Liveness, 1, &r);
        return;
    }
    let seeds = env("SIM_SEEDS").unwrap_or(LIVENESS_SEEDS);
    // Liveness seeds start where safety seeds end: other worlds.
    let r = run(Mode::Liveness, 1_000_000..1_000_000 + seeds, steps);
    print(Mode::Liveness, seeds, &r);
}

/// One seed, the same trace: a world is a function of its seed.
#[test]
fn the_same_seed_gives_the_same_trace() {
    for mode in [Mode::Safety, Mode::Liveness] {
        let a = run_seed(7, mode, 200).expect("seed 7");
        let b = run_seed(7, mode, 200).expect("seed 7 again");
        assert_eq!(a.trace_hash, b.trace_hash, "{mode:?}");
        assert_eq!(a.steps, b.steps);
        let c = run_seed(8, mode, 200).expect("seed 8");
        assert_ne!(a.trace_hash, c.trace_hash, "{mode:?}: seeds differ");
    }
}
