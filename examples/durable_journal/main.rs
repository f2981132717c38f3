//! The coordinator's journal and checkpoints kept in SQLite, through a process that
//! dies hard and one that picks up after it.
//!
//! Four deployments (the standardized 5-step deployment workflow) run at once over an
//! ops, a QA and a framework agent, on a simulated clock. Every change is journaled
//! ([`SqliteJournal`](sqlite_journal::SqliteJournal): WAL mode, `synchronous = FULL`,
//! one transaction per append) with a checkpoint now and then, and each run's own
//! checkpoint is stored beside it. `--crash-at` makes the process abort at an exact
//! point; run it again with the same `--db` and it restores from SQLite and finishes
//! every deployment, with no step done twice and none lost. The library itself does
//! no I/O: the journal is this example's, behind the library's `Journal` trait.
//!
//! ```text
//! cargo run --example durable_journal -- --fresh --crash-at after-step:6
//! cargo run --example durable_journal            # restores and finishes
//! ```
//!
//! Flags:
//! - `--db PATH`: the database (default `durable_journal.db` in Cargo's target
//!   directory: `$CARGO_TARGET_DIR` when set, else `target/`);
//! - `--fresh`: delete the database first;
//! - `--crash-at POINT:N`: abort at the Nth such point of this process:
//!   `after-step` (a step's completion is on disk), `mid-append` (inside an append's
//!   transaction, half of its records inserted), `after-checkpoint`, `after-effect`
//!   (an agent did a step's work and recorded it, and the executor has not heard);
//! - `--hang`: at the crash point, print a marker and block instead of aborting, for
//!   a supervisor to kill the process (what the crash test does, with SIGKILL);
//! - `--quiet`: do not list the steps as they finish.
//!
//! The run checks itself at the end (every step's effect recorded exactly once, no
//! finished step dispatched again, the journal numbered without a gap and replaying
//! to the live state) and exits non-zero if a check fails. See `workload.rs` for how
//! a step in flight at the crash is made safe.

mod sqlite_journal;
mod workload;

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

use workload::{OnCrash, Options};

const USAGE: &str =
    "usage: durable_journal [--db PATH] [--fresh] [--crash-at POINT:N] [--hang] [--quiet]
  POINT: after-step | mid-append | after-checkpoint | after-effect";

/// The database's default place: Cargo's target directory, as Cargo itself finds it.
fn default_db() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("durable_journal.db")
}

fn parse(args: impl Iterator<Item = String>) -> Result<(Options, bool), String> {
    let mut opts = Options {
        db: default_db(),
        crash: None,
        on_crash: OnCrash::Abort,
        verbose: true,
    };
    let mut fresh = false;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--db" => opts.db = PathBuf::from(value()?),
            "--crash-at" => opts.crash = Some(value()?.parse()?),
            "--fresh" => fresh = true,
            "--hang" => opts.on_crash = OnCrash::Hang,
            "--quiet" => opts.verbose = false,
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok((opts, fresh))
}

fn main() -> ExitCode {
    let (opts, fresh) = match parse(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts, fresh) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Options, fresh: bool) -> Result<(), Box<dyn Error>> {
    if fresh {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = opts.db.clone().into_os_string();
            path.push(suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", PathBuf::from(path).display()).into()),
            }
        }
    }
    if let Some(parent) = opts.db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    println!("database: {}", opts.db.display());
    if let Some(point) = opts.crash {
        println!("this process dies at {point}");
    }
    let summary = workload::run(opts)?;
    println!();
    if summary.fresh {
        println!(
            "process {}: started on a fresh database",
            summary.incarnation
        );
    } else {
        println!(
            "process {}: restored from SQLite: {}, {} records replayed after it",
            summary.incarnation,
            summary
                .checkpoint_at
                .map_or("no checkpoint".to_owned(), |n| format!(
                    "the checkpoint taken after record {}",
                    n - 1
                )),
            summary.replayed
        );
    }
    if let Some(point) = opts.crash {
        println!("(crash point {point} was not reached: the runs ended first)");
    }
    println!("{summary}");
    println!("{}", workload::verify(&opts.db)?);
    if !summary.replay_matches {
        return Err("the journal did not rebuild the live coordinator".into());
    }
    Ok(())
}
