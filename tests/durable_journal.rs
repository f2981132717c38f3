//! The journal in SQLite (`examples/durable_journal`), with real processes killed with
//! SIGKILL: the example's workload runs in a child process (this test binary run
//! again, see [`child_process`]), which is killed at a chosen point: after a few
//! steps, right after a checkpoint, in the middle of an append's transaction, with a
//! step done by its agent but not journaled, and twice in a row. A process restores
//! from the database, and what must hold:
//!
//! - the database the killed process left is consistent: its journal numbered from 1
//!   without a gap, nothing of a half-inserted append in it, and a coordinator
//!   rebuilt from it;
//! - the restored process finishes every run, and the journal replayed from its last
//!   checkpoint rebuilds its live state;
//! - every step took effect exactly once (none lost, none repeated), and no finished
//!   step was dispatched again;
//! - the end state equals a crash-free run's, output for output.
//!
//! And of the journal itself: two connections never both append (compare-and-set,
//! also under two racing threads), a corrupt row or checkpoint is a typed error that
//! builds nothing and changes nothing, misnumbered records are a gap, and it rebuilds
//! the same state as the in-memory journal.
#![cfg(unix)]

#[path = "../examples/durable_journal/sqlite_journal.rs"]
mod sqlite_journal;
#[path = "../examples/durable_journal/workload.rs"]
mod workload;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use concord::coordinator::{
    Coordinator, CoordinatorError, Core, Journal, JournalError, MemoryJournal, Record,
};
use concord::{AgentId, AgentProfile, Role, Task, TaskId, Timestamp};
use rusqlite::{Connection, params};

use sqlite_journal::SqliteJournal;
use workload::{CRASH_MARKER, FinalState, OnCrash, Options, RUNS, Summary};

const CHILD_DB: &str = "CONCORD_DURABLE_JOURNAL_CHILD_DB";
const CHILD_CRASH: &str = "CONCORD_DURABLE_JOURNAL_CHILD_CRASH";

/// Steps in all: five per deployment.
const STEPS: u64 = 5 * RUNS.len() as u64;

/// A fresh database for `name` in Cargo's scratch directory for tests.
fn fresh_db(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("durable_journal");
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let db = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.clone().into_os_string();
        path.push(suffix);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{}: {e}", PathBuf::from(path).display()),
        }
    }
    db
}

// ----- the child process ---------------------------------------------------------------

/// Not a test of its own: the entry point of the child processes the tests below
/// start (this binary, run with `--exact child_process` and the child's variables).
/// Without them it does nothing.
///
/// The child runs the workload until its crash point, prints the marker and blocks
/// there (inside the append's transaction, for `mid-append`) until the parent kills
/// it.
#[test]
fn child_process() {
    let (Some(db), Ok(crash)) = (std::env::var_os(CHILD_DB), std::env::var(CHILD_CRASH)) else {
        return;
    };
    let opts = Options {
        db: PathBuf::from(db),
        crash: Some(crash.parse().expect("a crash point")),
        on_crash: OnCrash::Hang,
        verbose: true,
    };
    let result = workload::run(&opts);
    // Only reached when the crash point was not.
    println!("the child ended without reaching its crash point: {result:?}");
    std::process::exit(3);
}

/// Runs the workload over `db` in a child process, waits until it reaches `point`,
/// kills it with SIGKILL there and returns the marker line it printed.
fn kill_at(db: &Path, point: &str) -> String {
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, db)
        .env(CHILD_CRASH, point)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the child starts");
    let stdout = child.stdout.take().expect("piped");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    let marker = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            // libtest's own `test child_process ... ` may begin the marker's line.
            Ok(Ok(line)) => match line.find(CRASH_MARKER) {
                Some(at) => break line[at..].to_owned(),
                None => seen.push(line),
            },
            other => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "the child did not reach {point} ({other:?}, {status:?}); it printed:\n{}",
                    seen.join("\n")
                );
            }
        }
    };
    // `Child::kill` is SIGKILL on Unix: no handler, no flush, no destructor runs.
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("the child is reaped");
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    marker
}

// ----- the checks ------------------------------------------------------------------------

/// What a crash-free run ends with, and how many appends it made, computed once.
fn crash_free() -> &'static (FinalState, u64) {
    static STATE: OnceLock<(FinalState, u64)> = OnceLock::new();
    STATE.get_or_init(|| {
        let db = fresh_db("crash-free");
        let summary = restore(&db);
        assert!(summary.fresh);
        assert_eq!((summary.finished_before, summary.completed), (0, STEPS));
        let verified = workload::verify(&db).unwrap_or_else(|e| panic!("crash-free: {e}"));
        assert_eq!(verified.dispatched_again, 0);
        (verified.state, summary.appends)
    })
}

/// The database a killed process left: the journal numbered from 1 without a gap,
/// its checkpoint within it, and a coordinator rebuilt from it. Returns the number
/// the next record gets.
fn check_left_behind(db: &Path) -> u64 {
    let journal = SqliteJournal::open(db).expect("the database opens");
    let next = journal.next_seq().expect("next");
    let mut records = Vec::new();
    journal
        .read_from(1, &mut records)
        .expect("every record reads");
    let numbers: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(
        numbers,
        (1..next).collect::<Vec<_>>(),
        "numbered without a gap"
    );
    if let Some(checkpoint) = journal.load_checkpoint().expect("the checkpoint reads") {
        assert!(checkpoint.journal_next <= next);
    }
    Coordinator::builder()
        .recover(&journal)
        .expect("the journal the killed process left replays");
    next
}

/// Runs the workload over `db` in this process, with no crash point, to its end.
fn restore(db: &Path) -> Summary {
    let opts = Options {
        db: db.to_owned(),
        crash: None,
        on_crash: OnCrash::Abort,
        verbose: false,
    };
    let summary = workload::run(&opts).unwrap_or_else(|e| panic!("the restore failed: {e}"));
    for (run, outcome) in &summary.runs {
        assert_eq!(
            *outcome,
            Some(concord::workflow::RunOutcome::Succeeded),
            "{run}"
        );
    }
    assert!(
        summary.replay_matches,
        "the journal rebuilds the live state"
    );
    assert_eq!(
        summary.finished_before + summary.completed,
        STEPS,
        "each step completed once, before or after the crash: {summary:?}"
    );
    summary
}

/// Restores `db` after `processes` killed ones and checks the end against a
/// crash-free run's.
fn restore_and_check(db: &Path, processes: u64) -> Summary {
    check_left_behind(db);
    let summary = restore(db);
    assert_eq!(summary.incarnation, processes + 1);
    let verified = workload::verify(db).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verified.incarnations, processes + 1);
    assert_eq!(
        &verified.state,
        &crash_free().0,
        "the end differs from a crash-free run's"
    );
    summary
}

// ----- killed at chosen points -------------------------------------------------------------

#[test]
fn a_crash_free_run_completes_every_step_once() {
    let state = &crash_free().0;
    assert_eq!(state.effects.len() as u64, STEPS);
    // The flaky screenshot took two attempts, everything else one.
    let attempts: u32 = state
        .runs
        .iter()
        .flat_map(|(_, _, steps)| steps.iter().map(|s| s.2))
        .sum();
    assert_eq!(attempts, STEPS as u32 + 1);
}

#[test]
fn killed_after_a_few_steps_the_next_process_finishes_without_redoing_them() {
    let db = fresh_db("after-step");
    let marker = kill_at(&db, "after-step:4");
    assert!(marker.ends_with("after-step:4"), "{marker}");
    let summary = restore_and_check(&db, 1);
    assert_eq!(summary.finished_before, 4, "{summary:?}");
    assert!(summary.in_flight > 0, "steps were running: {summary:?}");
}

#[test]
fn killed_right_after_a_checkpoint_the_next_process_replays_nothing_before_it() {
    let db = fresh_db("after-checkpoint");
    // The first checkpoint is at the start; the second mid-way through the runs.
    kill_at(&db, "after-checkpoint:2");
    let summary = restore_and_check(&db, 1);
    assert!(summary.checkpoint_at.is_some(), "{summary:?}");
    assert_eq!(summary.replayed, 0, "{summary:?}");
    assert!(summary.finished_before > 0, "{summary:?}");
}

/// Killed inside an append's transaction, half of its records inserted (the marker
/// says which), at every third append of a run and its last: none of the records is
/// in the database after the kill, and the next process finishes as a crash-free run
/// does. (Every append in turn took about 15 s here, mostly the syncs `synchronous =
/// FULL` asks for; a third covers every kind: registration, batches, completions.)
#[test]
fn killed_in_the_middle_of_an_append_nothing_of_it_is_kept() {
    let appends = crash_free().1;
    assert!(appends > 20, "{appends} appends");
    let mut cut_in_two = 0;
    for n in (1..=appends).filter(|n| n % 3 == 1 || *n == appends) {
        let db = fresh_db(&format!("mid-append-{n}"));
        let marker = kill_at(&db, &format!("mid-append:{n}"));
        let range = marker
            .split("(records ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .unwrap_or_else(|| panic!("no record range in `{marker}`"));
        let (first, last) = range.split_once("..=").expect("a range");
        let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
        cut_in_two += u64::from(last > first);
        assert_eq!(
            check_left_behind(&db),
            first,
            "records {first}..={last} were rolled back with the transaction ({marker})"
        );
        restore_and_check(&db, 1);
    }
    assert!(cut_in_two > 0, "some appends held several records");
}

/// An agent did a step's work and recorded it; the process died before the
/// executor heard. The next process asks the agent, which hands back the output:
/// the step is credited and not run again.
#[test]
fn killed_with_a_step_done_but_not_journaled_the_agent_credits_it() {
    // The first step done, one mid-way, and the last (the final handoff).
    for n in [1, 9, STEPS] {
        let db = fresh_db(&format!("after-effect-{n}"));
        let marker = kill_at(&db, &format!("after-effect:{n}"));
        assert!(marker.contains("done, not journaled"), "{marker}");
        let summary = restore_and_check(&db, 1);
        assert!(summary.credited >= 1, "{summary:?}");
    }
}

#[test]
fn killed_twice_the_third_process_finishes() {
    let db = fresh_db("twice");
    kill_at(&db, "after-step:3");
    kill_at(&db, "mid-append:4");
    restore_and_check(&db, 2);
}

// ----- the journal itself --------------------------------------------------------------------

/// A short day on a journaled core: an agent registers, three tasks are assigned
/// and two complete. Its records, numbered 1 to 6.
fn some_records() -> (Vec<Record>, String) {
    let mut core: Core = Coordinator::builder().journaled().build_core();
    let t = |s| Timestamp::from_secs(1_700_000_000 + s);
    core.register_agent(
        AgentProfile::new(AgentId::new(1), "worker")
            .with_role(Role::new("ops").expect("role"))
            .with_max_tasks(2),
        t(0),
    )
    .expect("register");
    for id in 1..=3 {
        core.assign(Task::new(TaskId::new(id), "build", "build it"), t(id))
            .expect("assign");
    }
    core.complete(TaskId::new(1), true, None, t(10))
        .expect("complete");
    core.complete(TaskId::new(2), false, None, t(11))
        .expect("complete");
    let records = core.drain_records();
    assert_eq!(records.len(), 6);
    let state = serde_json::to_string(&core.snapshot()).expect("json");
    (records, state)
}

fn json(core: &Core) -> String {
    serde_json::to_string(&core.snapshot()).expect("json")
}

#[test]
fn the_sqlite_journal_rebuilds_the_state_the_memory_journal_does() {
    let (records, live) = some_records();
    let db = fresh_db("same-as-memory");
    let mut sqlite = SqliteJournal::open(&db).expect("open");
    let mut memory = MemoryJournal::new();
    for journal in [&mut sqlite as &mut dyn Journal, &mut memory] {
        journal.append(1, &records[..2]).expect("append");
        journal.append(3, &records[2..]).expect("append");
    }
    let from_sqlite = Coordinator::builder()
        .recover_core(&sqlite)
        .expect("sqlite");
    let from_memory = Coordinator::builder()
        .recover_core(&memory)
        .expect("memory");
    assert_eq!(json(&from_sqlite), live);
    assert_eq!(json(&from_memory), live);

    // With a checkpoint after record 4, recovery replays the two records after it.
    let core = Coordinator::builder()
        .recover_core_from(None, &records[..4])
        .expect("the first four");
    sqlite
        .store_checkpoint(&core.snapshot())
        .expect("checkpoint");
    let recovered = Coordinator::builder()
        .recover_core(&sqlite)
        .expect("recover");
    assert_eq!(json(&recovered), live);
    let reopened = SqliteJournal::open(&db).expect("reopen");
    assert_eq!(reopened.next_seq().expect("next"), 7);

    // The daily cleanup cuts the journal behind the checkpoint: the four records it
    // counts go, the numbering and the recovered state stay.
    assert_eq!(sqlite.compact().expect("compact"), 4);
    assert_eq!(sqlite.compact().expect("again"), 0);
    assert_eq!(sqlite.next_seq().expect("next"), 7);
    let recovered = Coordinator::builder()
        .recover_core(&sqlite)
        .expect("recover after compaction");
    assert_eq!(json(&recovered), live);
    sqlite
        .append(7, &[])
        .expect("an empty append at the next number");
}

/// Two connections (as two processes would have) each believe they own the journal:
/// the second to append is refused, and nothing of it is kept.
#[test]
fn two_connections_never_both_append() {
    let (records, _) = some_records();
    let db = fresh_db("two-connections");
    let mut first = SqliteJournal::open(&db).expect("first");
    let mut second = SqliteJournal::open(&db).expect("second");
    first.append(1, &records[..2]).expect("first appends");
    assert_eq!(
        second.append(1, &records[..3]),
        Err(JournalError::Conflict {
            expected: 1,
            actual: 3
        })
    );
    second
        .append(3, &records[2..4])
        .expect("second appends after");
    assert_eq!(
        first.append(3, &records[2..]),
        Err(JournalError::Conflict {
            expected: 3,
            actual: 5
        })
    );
    let mut read = Vec::new();
    first.read_from(1, &mut read).expect("read");
    assert_eq!(read, records[..4]);
}

/// Two threads, each with its own connection, race to append numbered records; a
/// refused writer reads where the journal ends and tries again. Every record is
/// in the journal once, in an order of numbers without a gap, and each writer's
/// successes are exactly its records there.
#[test]
fn two_racing_writers_append_without_gap_or_duplicate() {
    let (records, _) = some_records();
    let template = records[5].clone();
    let db = fresh_db("racing");
    drop(SqliteJournal::open(&db).expect("create"));
    const EACH: u64 = 40;
    let writer = |who: u64| {
        let db = db.clone();
        let template = template.clone();
        std::thread::spawn(move || {
            let mut journal = SqliteJournal::open(&db).expect("open");
            let (mut mine, mut refused) = (Vec::new(), 0);
            while (mine.len() as u64) < EACH {
                let next = journal.next_seq().expect("next");
                let mut record = template.clone();
                record.seq = next;
                // Which writer and which of its records, in the record itself.
                record.at = Timestamp::from_secs(who * 1_000 + mine.len() as u64);
                match journal.append(next, std::slice::from_ref(&record)) {
                    Ok(()) => mine.push(record),
                    Err(JournalError::Conflict { .. }) => refused += 1,
                    Err(e) => panic!("writer {who}: {e}"),
                }
            }
            (mine, refused)
        })
    };
    let (a, b) = (writer(1), writer(2));
    let (a, b) = (a.join().expect("writer 1"), b.join().expect("writer 2"));
    let journal = SqliteJournal::open(&db).expect("open");
    let mut read = Vec::new();
    journal.read_from(1, &mut read).expect("read");
    assert_eq!(read.len() as u64, 2 * EACH);
    let mut appended: Vec<Record> = a.0.into_iter().chain(b.0).collect();
    appended.sort_by_key(|r| r.seq);
    assert_eq!(read, appended, "each success is in the journal, once");
}

#[test]
fn misnumbered_records_are_a_gap_and_nothing_is_appended() {
    let (mut records, _) = some_records();
    let db = fresh_db("gap");
    let mut journal = SqliteJournal::open(&db).expect("open");
    records[2].seq = 9;
    assert_eq!(
        journal.append(1, &records[..4]),
        Err(JournalError::Gap {
            expected: 3,
            found: 9
        })
    );
    assert_eq!(journal.next_seq().expect("next"), 1);
    // A checkpoint counting records the journal does not hold is a gap too.
    let core = Coordinator::builder()
        .recover_core_from(None, &some_records().0)
        .expect("replay");
    assert_eq!(
        journal.store_checkpoint(&core.snapshot()),
        Err(JournalError::Gap {
            expected: 1,
            found: 7
        })
    );
    assert!(journal.load_checkpoint().expect("load").is_none());
}

/// The rows of `table` as stored.
fn rows(db: &Path, table: &str) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    let key = if table == "journal_records" {
        "seq"
    } else {
        "journal_next"
    };
    let conn = Connection::open(db).expect("open");
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {key}, bytes, checksum FROM {table} ORDER BY {key}"
        ))
        .expect("select");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// A record whose bytes changed after they were written (a bit flipped on disk):
/// reading stops there with a typed error after the good records before it,
/// recovery builds nothing, and the database is as it was.
#[test]
fn a_corrupt_record_is_a_typed_error_that_builds_and_changes_nothing() {
    let (records, _) = some_records();
    let db = fresh_db("corrupt-record");
    let mut journal = SqliteJournal::open(&db).expect("open");
    journal.append(1, &records).expect("append");
    let conn = Connection::open(&db).expect("open");
    let mut bytes = rows(&db, "journal_records")[3].1.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    conn.execute(
        "UPDATE journal_records SET bytes = ?1 WHERE seq = 4",
        params![bytes],
    )
    .expect("corrupt");
    let before = rows(&db, "journal_records");

    let mut read = Vec::new();
    match journal.read_from(1, &mut read) {
        Err(JournalError::CorruptRecord { seq: 4, reason }) => {
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("not a corrupt record 4: {other:?}"),
    }
    assert_eq!(read, records[..3], "the good records before it");
    match Coordinator::builder().recover_core(&journal) {
        Err(CoordinatorError::Journal(JournalError::CorruptRecord { seq: 4, .. })) => {}
        other => panic!("recovered: {:?}", other.map(|c| c.journal_next())),
    }
    assert_eq!(rows(&db, "journal_records"), before, "nothing changed");
    assert_eq!(journal.next_seq().expect("next"), 7);
    // The journal's end did not move: an append that expects it is still refused.
    assert!(matches!(
        journal.append(1, &records[..1]),
        Err(JournalError::Conflict { .. })
    ));

    // A row that holds another record, its checksum intact (rows swapped), is
    // caught too.
    let second = rows(&db, "journal_records")[1].clone();
    conn.execute(
        "UPDATE journal_records SET bytes = ?1, checksum = ?2 WHERE seq = 1",
        params![second.1, second.2],
    )
    .expect("swap");
    match journal.read_from(1, &mut Vec::new()) {
        Err(JournalError::CorruptRecord { seq: 1, reason }) => {
            assert!(reason.contains("holds record 2"), "{reason}");
        }
        other => panic!("not a corrupt record 1: {other:?}"),
    }
}

#[test]
fn a_corrupt_checkpoint_is_a_typed_error_that_builds_nothing() {
    let (records, _) = some_records();
    let db = fresh_db("corrupt-checkpoint");
    let mut journal = SqliteJournal::open(&db).expect("open");
    let mut core = Coordinator::builder()
        .recover_core_from(None, &records)
        .expect("replay");
    journal.append(1, &records).expect("append");
    core.checkpoint(&mut journal).expect("checkpoint");
    let conn = Connection::open(&db).expect("open");
    let (_, mut bytes, _) = rows(&db, "journal_checkpoint").remove(0);
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    conn.execute("UPDATE journal_checkpoint SET bytes = ?1", params![bytes])
        .expect("corrupt");
    assert!(matches!(
        journal.load_checkpoint(),
        Err(JournalError::CorruptCheckpoint { .. })
    ));
    match Coordinator::builder().recover_core(&journal) {
        Err(CoordinatorError::Journal(JournalError::CorruptCheckpoint { reason })) => {
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("recovered: {:?}", other.map(|c| c.journal_next())),
    }
    // The records are untouched, and recover from the start without the checkpoint.
    let mut read = Vec::new();
    journal.read_from(1, &mut read).expect("records read");
    assert_eq!(read, records);
}

/// Every crash point of a run in turn: each step completion, each effect, each
/// checkpoint and each append: 10 to 45 s here, by the load. Run it with `--ignored` after
/// changing the executor's or the coordinator's recovery.
#[test]
#[ignore = "exhaustive: about a minute of processes killed and restored"]
fn killed_at_every_point_the_next_process_finishes_as_a_crash_free_run() {
    let appends = crash_free().1;
    let points = (1..=STEPS)
        .flat_map(|n| [format!("after-step:{n}"), format!("after-effect:{n}")])
        .chain((1..=appends).map(|n| format!("mid-append:{n}")))
        .chain((1..=5).map(|n| format!("after-checkpoint:{n}")));
    for point in points {
        let db = fresh_db(&point.replace(':', "-"));
        kill_at(&db, &point);
        restore_and_check(&db, 1);
    }
}
