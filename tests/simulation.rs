//! The deterministic simulation of the coordinator core and its host's memory and
//! audit log (see `tests/sim/mod.rs`): a fixed set of seeds in safety mode and in
//! liveness mode, each checking the named invariants after every step.
//!
//! - `SIM_SEED=n` replays one seed (in both modes) and prints its trace hash.
//! - `SIM_SEEDS=n` runs `n` seeds of each mode instead of the default.
//! - `SIM_STEPS=n` sets the steps per seed.

mod sim;

use sim::runs::run_workflows;
use sim::{Failure, Mode, Report, run_seed, run_seed_with_admission};

/// Seeds per mode when `SIM_SEEDS` is not set: sized for CI on two cores, where
/// the two halves of the safety seeds are the suite's longest tests (5,000 seeds
/// took five minutes of a twenty-minute CI run on a slow machine). Deeper runs set
/// `SIM_SEEDS`: the defects the world found lately showed at a few thousand seeds.
const SAFETY_SEEDS: u64 = 3_000;
const LIVENESS_SEEDS: u64 = 1_000;
const STEPS: u64 = 400;
/// Seeds of workflows per mode: each runs 2 to 5 workflows at once.
const WORKFLOW_SEEDS: u64 = 300;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs every seed of `seeds`; fails with the first failure in full and the seeds
/// and invariants of the others.
fn run(mode: Mode, seeds: std::ops::Range<u64>, steps: u64) -> Report {
    run_with(seeds, |seed| run_seed(seed, mode, steps))
}

fn run_with(seeds: std::ops::Range<u64>, one: impl Fn(u64) -> Result<Report, Failure>) -> Report {
    let mut total = Report::default();
    let mut failures = Vec::new();
    for seed in seeds {
        match one(seed) {
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
    // The workflow world has no memory or audit log of its own.
    let host = if r.memory_writes + r.audit_entries_verified > 0 {
        format!(
            "{} memory writes ({} values corrupted, {} corruption procedures, {} restores, \
             {} writes refused under the fence, {} tampered backups refused, {} memory \
             restarts), {} audit entries verified ({} lost unsynced, {} events audited \
             again, {} tampers located), ",
            r.memory_writes,
            r.memory_corruptions,
            r.memory_corruptions_found,
            r.memory_restores,
            r.fenced_writes_refused,
            r.corrupt_backups_refused,
            r.memory_restarts,
            r.audit_entries_verified,
            r.audit_entries_lost,
            r.audit_events_again,
            r.tampers_located,
        )
    } else {
        String::new()
    };
    // The workflow world reports no emergencies of its own.
    let emergencies = if r.breaches + r.quarantines + r.communications_stops > 0 {
        format!(
            "{} breaches reported, {} quarantines, {} communications stops, {} safe modes \
             entered by rule, ",
            r.breaches, r.quarantines, r.communications_stops, r.safe_mode_by_rule
        )
    } else {
        String::new()
    };
    println!(
        "{mode:?}: {seeds} seeds, {} steps, {:.1} simulated hours, {} tasks ({} unplaceable), {} agent faults, \
         {} crashes and restores ({} journal records replayed, {} lost unsynced, {} torn), \
         {} conflicts decided, {} pages and {} escalations ({} made again after a crash and folded), {} runs cancelled, {} given up, \
         {} clock readings past the horizon refused, {emergencies}{host}{} invariant checks; trace {:016x}",
        r.steps,
        r.simulated.as_secs_f64() / 3600.0,
        r.tasks,
        r.unplaceable,
        r.agent_faults,
        r.crashes,
        r.records_replayed,
        r.records_lost,
        r.torn_records,
        r.conflicts_decided,
        r.pages,
        r.escalations,
        r.pages_folded,
        r.cancelled,
        r.given_up,
        r.clock_glitches,
        r.checks,
        r.trace_hash
    );
}

/// Safety seeds `from..to` (of the default set), or `SIM_SEED`, or `SIM_SEEDS` more.
fn safety(half: u64) {
    let steps = env("SIM_STEPS").unwrap_or(STEPS);
    if let Some(seed) = env("SIM_SEED") {
        if half == 0 {
            let r = run(Mode::Safety, seed..seed + 1, steps);
            print(Mode::Safety, 1, &r);
        }
        return;
    }
    // Two halves, so that both of CI's cores run safety seeds.
    let seeds = env("SIM_SEEDS").unwrap_or(SAFETY_SEEDS);
    let range = half * seeds / 2..(half + 1) * seeds / 2;
    let count = range.end - range.start;
    let r = run(Mode::Safety, range, steps);
    print(Mode::Safety, count, &r);
    assert!(
        r.crashes > 0
            && r.conflicts_decided > 0
            && r.agent_faults > 0
            && r.records_replayed > 0
            && r.torn_records > 0
            && r.pages > 0
            && r.escalations > 0
            && r.memory_corruptions_found > 0
            && r.fenced_writes_refused > 0
            && r.corrupt_backups_refused > 0
            && r.memory_restarts > 0
            && r.audit_entries_lost > 0
            && r.audit_events_again > 0
            && r.tampers_located > 0,
        "{r:?}"
    );
}

#[test]
fn safety_every_invariant_holds_at_every_step() {
    safety(0);
}

#[test]
fn safety_every_invariant_holds_at_every_step_second_half() {
    safety(1);
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

/// The simulated agents panic on purpose (the executor must catch it): keep those
/// panics out of the test output, and every other one in.
fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let deliberate = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.ends_with("panicked on purpose"));
            if !deliberate {
                default(info);
            }
        }));
    });
}

/// Workflows through the executor on a shared faulty fleet: the runs end, steps in
/// order, attempts within their policy, one attempt of a step at a time, no agent
/// over its slots, nothing left in the coordinator.
#[test]
fn workflows_on_a_faulty_fleet_keep_every_invariant() {
    quiet_deliberate_panics();
    for mode in [Mode::Safety, Mode::Liveness] {
        if let Some(seed) = env("SIM_SEED") {
            let r = run_with(seed..seed + 1, |s| run_workflows(s, mode));
            print(mode, 1, &r);
            continue;
        }
        let seeds = env("SIM_SEEDS").unwrap_or(WORKFLOW_SEEDS);
        let base = if mode == Mode::Safety { 0 } else { 1_000_000 };
        let r = run_with(base..base + seeds, |s| run_workflows(s, mode));
        print(mode, seeds, &r);
    }
}

/// Found by the simulation (workflow seeds 3 and 5): an agent going offline while it
/// worked on a step handed the task back; the coordinator started it on another
/// agent at once, and the executor launched the new attempt before it dropped the
/// aborted one, so two attempts of the step were in flight together. Seed 1002267:
/// the same, when the set of running attempts had two timers woken ahead of the
/// aborted one and yielded before it reached it.
#[test]
fn a_step_handed_back_never_has_two_attempts_in_flight() {
    quiet_deliberate_panics();
    for seed in [3, 5, 1_002_267] {
        if let Err(f) = run_workflows(seed, Mode::Safety) {
            panic!("{f}");
        }
    }
}

/// Found by a deeper run (16,000 safety seeds, past the 3,000 CI runs): a task the
/// utilization cap held for capacity was asked for again at every tick, queued with
/// its age and so due for its reservation at once, then granted, refused and held
/// again; two such tasks took turns and a deadline was always due, so a host
/// ticking when told would never have stopped (`deadlines_met_on_time`).
#[test]
fn ticks_leave_no_deadline_due_for_tasks_held_for_capacity() {
    let steps = env("SIM_STEPS").unwrap_or(STEPS);
    for seed in [4556, 6219, 8722, 9739, 12142, 13375, 13908, 13989, 14333] {
        if let Err(f) = run_seed(seed, Mode::Safety, steps) {
            panic!("{f}");
        }
    }
}

/// A month of simulated time on one seed, faults all along, under a host that holds
/// new work back while the fleet is behind: the host's monitor follows exactly the
/// tasks the core holds and keeps its windows within their number, and the
/// alerting keeps its history within retention, at every step of it (the
/// invariants `monitor_memory_bounded` and `alert_history_bounded`); the monitor's
/// snapshot, stored at each checkpoint, stays the size of its kept windows
/// (`monitor_state_bounded`).
///
/// The host runs its daily cleanup (closed conflicts forgotten, the journal cut
/// behind its checkpoint), and the core's state stays a day's size (the invariant
/// `core_state_bounded`): a step on the month's last day costs what one on its first
/// does. So does the host's memory (its last results and backups, within retention)
/// and its audit log (its head, and a tracker of bounded size): only the audit store
/// grows, as an audit trail must, and it verifies from genesis at the end.
#[test]
fn a_simulated_month_keeps_the_monitor_and_the_alerting_bounded() {
    if env("SIM_SEED").is_some() {
        return;
    }
    let month = std::time::Duration::from_secs(30 * 24 * 3600);
    let r = run_with(0..1, |s| run_seed_with_admission(s + 77, 100_000));
    print(Mode::Safety, 1, &r);
    assert!(r.simulated >= month, "{:?} simulated", r.simulated);
}
