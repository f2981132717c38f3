//! The durable journal's workload: four deployments (the standardized 5-step
//! deployment workflow, [`runbooks::deployment`]) run at once over three simulated
//! agents, with every change journaled in SQLite, and the process liable to die at a
//! chosen point. A later process over the same database picks up where it died.
//!
//! Shared by `examples/durable_journal` and `tests/durable_journal.rs` (which includes
//! this file with `#[path]`).
//!
//! # What is kept, and when
//!
//! At every change of a run (the executor's [`RunObserver`](concord::workflow::RunObserver)
//! call) the host writes the coordinator's pending records to the journal (every
//! [`CHECKPOINT_EVERY`]th time, a checkpoint too), then the run's own checkpoint. The
//! coordinator's journal goes first: a run's checkpoint is never ahead of it, which is
//! what `Executor::resume` reconciles from. The executor calls the observer before
//! it hands the new attempts to their agents, so an agent never works on a step whose
//! start is not on disk.
//!
//! # No step repeated, none lost
//!
//! Each agent does a step's work (its *effect*) and records it, with the step's
//! attempt and task, in one transaction of its own books. A step can be in flight at
//! the crash: dispatched, its completion not journaled yet. The restarted process
//! asks the step's agent about it ([`Agent::recover`], with the task of the
//! interrupted attempt): an agent whose books hold the effect hands back its output,
//! and the step is credited without being run again; an agent whose books do not
//! (the work died with the process) has the attempt made again, as the same attempt.
//! As a second line, an agent asked to do a step whose effect it already holds does
//! not do it again (its idempotency key is the run and the step, which the work item
//! names) and notes the repeat: [`verify`] fails on any. So every step's effect
//! happens exactly once, whatever the crash point; an interrupted step is dispatched
//! twice but takes effect once, which counts as neither repeated nor lost.
//!
//! The agents' books live in the same database file for convenience: a real agent
//! keeps them wherever its work lands (the same transaction as the work itself is
//! what makes the effect and its key agree).
//!
//! # Determinism
//!
//! Time is simulated ([`ManualClock`] and [`SimulatedTimer`]): a run is the same every
//! time, so a crash point names one exact moment. The agents' outputs are functions
//! of the run and the step alone (no clock readings), so a crashed-and-restored
//! history and a crash-free one can be compared output for output ([`FinalState`]).

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use concord::agent::{Agent, AgentError, AgentHealth, AgentStatus, WorkItem, WorkOutput};
use concord::coordinator::{Coordinator, CoordinatorBuilder, Journal};
use concord::policy::SystemMode;
use concord::workflow::{
    Executor, Run, RunEvent, RunOutcome, SimulatedTimer, StepChange, StepStatus, Timer, Workflow,
    runbooks,
};
use concord::{AgentId, AgentProfile, Capability, Clock, ManualClock, Role, TaskId, Timestamp};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use crate::sqlite_journal::{AppendProgress, SqliteJournal};

/// The runs: one deployment per service, all at once.
pub const RUNS: [&str; 4] = [
    "deploy-api",
    "deploy-web",
    "deploy-worker",
    "deploy-billing",
];

/// A checkpoint at every this many observer calls (and one at each start and end).
pub const CHECKPOINT_EVERY: u64 = 8;

/// What a process in hang mode prints when it reaches its crash point, before it
/// blocks there for a supervisor to kill it.
pub const CRASH_MARKER: &str = "CRASH POINT REACHED";

/// When the first process starts, on the simulated clock.
const START: Timestamp = Timestamp::from_secs(1_700_000_000);

/// How long a restart takes, on the simulated clock: the restarted process resumes
/// this long after the last moment the journal or a run checkpoint recorded.
const RESTART_DELAY: Duration = Duration::from_secs(30);

/// Where a process dies (each counted within the process: the Nth since it started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Right after the Nth step completion is on disk (journal and run checkpoint).
    AfterStep(u64),
    /// Inside the Nth append's transaction, after half of its records (at least one)
    /// are inserted and before the commit.
    MidAppend(u64),
    /// Right after the Nth checkpoint is stored.
    AfterCheckpoint(u64),
    /// Right after an agent recorded the Nth step's effect, before the executor hears
    /// of it: the step is in flight, done but not journaled.
    AfterEffect(u64),
}

impl FromStr for CrashPoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (what, n) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: expected POINT:N, e.g. after-step:7"))?;
        let n: u64 = n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{s}`: N must be a number from 1"))?;
        match what {
            "after-step" => Ok(CrashPoint::AfterStep(n)),
            "mid-append" => Ok(CrashPoint::MidAppend(n)),
            "after-checkpoint" => Ok(CrashPoint::AfterCheckpoint(n)),
            "after-effect" => Ok(CrashPoint::AfterEffect(n)),
            _ => Err(format!(
                "`{what}`: the crash points are after-step, mid-append, after-checkpoint \
                 and after-effect"
            )),
        }
    }
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashPoint::AfterStep(n) => write!(f, "after-step:{n}"),
            CrashPoint::MidAppend(n) => write!(f, "mid-append:{n}"),
            CrashPoint::AfterCheckpoint(n) => write!(f, "after-checkpoint:{n}"),
            CrashPoint::AfterEffect(n) => write!(f, "after-effect:{n}"),
        }
    }
}

/// How a process dies at its crash point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCrash {
    /// `std::process::abort()`: no destructor, no flush, no cleanup of any kind.
    Abort,
    /// Prints [`CRASH_MARKER`] and blocks where it is (inside the append's
    /// transaction, for `mid-append`) until a supervisor kills it with SIGKILL.
    Hang,
}

/// What a process is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The database.
    pub db: std::path::PathBuf,
    /// Where to die, if anywhere.
    pub crash: Option<CrashPoint>,
    /// How.
    pub on_crash: OnCrash,
    /// Print the steps as they finish.
    pub verbose: bool,
}

/// Dies at `point`, as `how` says; `detail` says where exactly.
fn crash(point: CrashPoint, how: OnCrash, detail: &str) -> ! {
    let mut out = std::io::stdout().lock();
    match how {
        OnCrash::Abort => {
            let _ = writeln!(
                out,
                "crash point {point} reached{detail}: the process aborts now, without cleanup"
            );
            let _ = out.flush();
            std::process::abort()
        }
        OnCrash::Hang => {
            let _ = writeln!(out, "{CRASH_MARKER} {point}{detail}");
            let _ = out.flush();
            drop(out);
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

// ----- the coordinator's configuration and the fleet ---------------------------------

/// The coordinator's configuration: the same in every process, as recovery requires
/// (another would be caught as a divergence of the journal's records).
fn builder(clock: &ManualClock) -> CoordinatorBuilder {
    Coordinator::builder().clock(clock.clone()).journaled()
}

fn profile(id: u64, name: &str, role: &str, caps: &[&str]) -> AgentProfile {
    let mut p = AgentProfile::new(AgentId::new(id), name)
        .with_role(Role::new(role).expect("valid role"))
        .with_capacity("cpu=4,memory=8Gi".parse().expect("valid capacity"))
        .with_max_tasks(2);
    for c in caps {
        p = p.with_capability(Capability::new(c).expect("valid capability"));
    }
    p
}

/// Two slots each: four deployments at once make steps wait in the coordinator's
/// queue, so a crash also finds steps waiting for an agent.
fn profiles() -> [AgentProfile; 3] {
    [
        profile(
            1,
            "ops-agent",
            "ops",
            &["deploy", "health_check", "browser"],
        ),
        profile(2, "qa-agent", "qa", &["screenshot", "documentation"]),
        profile(3, "framework", "framework", &["handoff"]),
    ]
}

// ----- the agents and their books ----------------------------------------------------

/// What the host and its agents keep beside the journal, on a connection of their
/// own: the processes started (incarnations), and the agents' record of each
/// dispatch, each effect (the step's work, done once), each step credited by
/// `recover`, and each repeat refused.
#[derive(Debug)]
struct Books {
    conn: Connection,
}

const BOOKS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS host_incarnations (n INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS agent_dispatches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incarnation INTEGER NOT NULL, run TEXT NOT NULL, step TEXT NOT NULL,
    attempt INTEGER NOT NULL, task INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_effects (
    task INTEGER PRIMARY KEY,
    incarnation INTEGER NOT NULL, run TEXT NOT NULL, step TEXT NOT NULL,
    attempt INTEGER NOT NULL, outputs TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_credited (task INTEGER PRIMARY KEY, incarnation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS agent_repeats (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incarnation INTEGER NOT NULL, run TEXT NOT NULL, step TEXT NOT NULL,
    attempt INTEGER NOT NULL, task INTEGER NOT NULL
);
";

type Outputs = BTreeMap<String, String>;

fn task_sql(task: TaskId) -> i64 {
    i64::try_from(task.get()).expect("task ids fit SQLite's integers")
}

impl Books {
    fn open(path: &Path) -> rusqlite::Result<Books> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // The journal's connection set WAL mode for the file; FULL syncs for the
        // agents' effects too, for the same reason as the journal's.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(BOOKS_SCHEMA)?;
        Ok(Books { conn })
    }

    /// Starts a process: its number, from 1.
    fn begin_incarnation(&self) -> rusqlite::Result<u64> {
        self.conn.execute(
            "INSERT INTO host_incarnations (n)
             SELECT COALESCE(MAX(n), 0) + 1 FROM host_incarnations",
            [],
        )?;
        let n: i64 = self
            .conn
            .query_row("SELECT MAX(n) FROM host_incarnations", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn dispatched(&self, inc: u64, run: &str, work: &WorkItem) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO agent_dispatches (incarnation, run, step, attempt, task)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                inc as i64,
                run,
                work.description(),
                work.attempt(),
                task_sql(work.task())
            ],
        )?;
        Ok(())
    }

    fn repeated(&self, inc: u64, run: &str, work: &WorkItem) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO agent_repeats (incarnation, run, step, attempt, task)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                inc as i64,
                run,
                work.description(),
                work.attempt(),
                task_sql(work.task())
            ],
        )?;
        Ok(())
    }

    /// The effect of `run`'s `step`, if it was done.
    fn effect_of(&self, run: &str, step: &str) -> rusqlite::Result<Option<Outputs>> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT outputs FROM agent_effects WHERE run = ?1 AND step = ?2",
                params![run, step],
                |r| r.get(0),
            )
            .optional()?;
        Ok(json.map(|j| serde_json::from_str(&j).expect("the agents' own json")))
    }

    /// The effect of the attempt that had `task`, if it was done.
    fn effect_of_task(&self, task: TaskId) -> rusqlite::Result<Option<Outputs>> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT outputs FROM agent_effects WHERE task = ?1",
                params![task_sql(task)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(json.map(|j| serde_json::from_str(&j).expect("the agents' own json")))
    }

    /// Records the effect of `work` for `run` (the work and its key in one
    /// transaction).
    fn did(&self, inc: u64, run: &str, work: &WorkItem, outputs: &Outputs) -> rusqlite::Result<()> {
        let json = serde_json::to_string(outputs).expect("strings serialize");
        self.conn.execute(
            "INSERT INTO agent_effects (task, incarnation, run, step, attempt, outputs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                task_sql(work.task()),
                inc as i64,
                run,
                work.description(),
                work.attempt(),
                json
            ],
        )?;
        Ok(())
    }

    fn credited(&self, inc: u64, task: TaskId) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO agent_credited (task, incarnation) VALUES (?1, ?2)",
            params![task_sql(task), inc as i64],
        )?;
        Ok(())
    }
}

/// What the agents of one process share: their books, the process's incarnation,
/// and its crash point.
#[derive(Debug)]
struct Fleet {
    books: Mutex<Books>,
    incarnation: u64,
    crash: Option<CrashPoint>,
    on_crash: OnCrash,
    /// Effects recorded by this process.
    effects: AtomicU64,
}

/// A simulated agent: it takes simulated time for each step and records the step's
/// effect in its books.
#[derive(Debug)]
struct SimAgent {
    id: AgentId,
    clock: ManualClock,
    timer: SimulatedTimer,
    fleet: Arc<Fleet>,
}

fn books_failed(e: rusqlite::Error) -> AgentError {
    AgentError::Failed {
        reason: format!("the agent's books: {e}"),
    }
}

/// How long a step of `kind` takes: staggered by run, so that the runs interleave.
fn work_time(kind: &str, run: &str) -> Duration {
    let base = match kind {
        "deploy" => 20,
        "browser" => 5,
        "screenshot" => 8,
        "documentation" => 4,
        _ => 2,
    };
    let stagger = RUNS.iter().position(|r| *r == run).unwrap_or(0) as u64 * 3;
    Duration::from_secs(base + stagger)
}

/// The outputs of a step: functions of the run and the step's inputs alone.
fn outputs_of(kind: &str, run: &str, work: &WorkItem) -> Outputs {
    let service = run.strip_prefix("deploy-").unwrap_or(run);
    let input = |k: &str| work.input(k).unwrap_or("(missing)").to_owned();
    let pairs: Vec<(&str, String)> = match kind {
        "deploy" => vec![
            ("url", format!("https://{service}.staging.internal/")),
            ("health", "200 ok".to_owned()),
        ],
        "browser" => vec![
            ("url", input("url")),
            ("browser", "simulated-chromium".to_owned()),
        ],
        "screenshot" => vec![
            ("screenshot", format!("evidence/{service}.png")),
            ("verification", format!("PNG 1280x900 of {}", input("url"))),
        ],
        "documentation" => vec![("report", format!("evidence/{service}-report.md"))],
        _ => vec![
            ("handed_off_to", "development agents".to_owned()),
            ("report", input("report")),
        ],
    };
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn success(outputs: Outputs) -> WorkOutput {
    outputs
        .into_iter()
        .fold(WorkOutput::success(), |out, (k, v)| out.with_output(k, v))
}

#[concord::async_trait]
impl Agent for SimAgent {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        // The work item names the run and the step: the idempotency key, from the
        // work alone. Every work item here is a workflow step's.
        let (Some(run), Some(step)) = (work.run(), work.step()) else {
            return Err(AgentError::Failed {
                reason: format!("{} is not a workflow step's work", work.task()),
            });
        };
        let (run, step) = (run.to_owned(), step.to_owned());
        let inc = self.fleet.incarnation;
        {
            let books = self.fleet.books.lock();
            books.dispatched(inc, &run, &work).map_err(books_failed)?;
            // The idempotency key: a step whose effect is in the books is not done
            // again. `recover` keeps the executor from asking; this notes it if it
            // ever does.
            if let Some(done) = books.effect_of(&run, &step).map_err(books_failed)? {
                books.repeated(inc, &run, &work).map_err(books_failed)?;
                return Ok(success(done));
            }
        }
        let kind = work.kind().to_owned();
        self.timer
            .sleep_until(self.clock.now() + work_time(&kind, &run))
            .await;
        // One flaky step: the first screenshot of the web deployment fails, and the
        // step is retried after its back-off.
        if run == "deploy-web" && step == "screenshot" && work.attempt() == 1 {
            return Ok(WorkOutput::retryable_failure("the page was still loading"));
        }
        let outputs = outputs_of(&kind, &run, &work);
        self.fleet
            .books
            .lock()
            .did(inc, &run, &work, &outputs)
            .map_err(books_failed)?;
        let n = self.fleet.effects.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fleet.crash == Some(CrashPoint::AfterEffect(n)) {
            let detail = format!(" ({run} {step} done, not journaled)");
            crash(CrashPoint::AfterEffect(n), self.fleet.on_crash, &detail);
        }
        Ok(success(outputs))
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("sim-1.0"))
    }

    /// The attempt that had `work`'s task was running when the host died: done if
    /// its effect is in the books.
    async fn recover(&self, work: WorkItem) -> Result<Option<WorkOutput>, AgentError> {
        let books = self.fleet.books.lock();
        let Some(done) = books.effect_of_task(work.task()).map_err(books_failed)? else {
            return Ok(None);
        };
        books
            .credited(self.fleet.incarnation, work.task())
            .map_err(books_failed)?;
        Ok(Some(success(done)))
    }
}

// ----- the host: persist at every change ---------------------------------------------

/// What the host keeps while the runs go: the journal, and its counts for the crash
/// points.
struct Host {
    journal: SqliteJournal,
    coordinator: Arc<Coordinator>,
    crash: Option<CrashPoint>,
    on_crash: OnCrash,
    verbose: bool,
    calls: u64,
    checkpoints: u64,
    completed: u64,
}

impl Host {
    fn checkpoint(&mut self) {
        self.coordinator
            .checkpoint(&mut self.journal)
            .expect("this process is the journal's only writer");
        self.checkpoints += 1;
        if self.crash == Some(CrashPoint::AfterCheckpoint(self.checkpoints)) {
            crash(
                CrashPoint::AfterCheckpoint(self.checkpoints),
                self.on_crash,
                "",
            );
        }
    }

    /// The observer: the coordinator's records, then the run's checkpoint.
    fn persist(&mut self, run: &Run, events: &[RunEvent]) {
        self.calls += 1;
        // A write that fails leaves nothing to acknowledge, and the next run of the
        // process recovers from what is on disk: panicking here is the honest end.
        if self.calls % CHECKPOINT_EVERY == 0 {
            self.checkpoint();
        } else {
            self.coordinator
                .write_journal(&mut self.journal)
                .expect("this process is the journal's only writer");
        }
        self.journal
            .store_run(run.id(), &run.snapshot())
            .expect("the run's checkpoint is stored");
        for e in events {
            let what = match &e.change {
                StepChange::Succeeded { .. } => {
                    self.completed += 1;
                    "succeeded".to_owned()
                }
                StepChange::AttemptFailed { reason, .. } => format!("failed: {reason}"),
                StepChange::Interrupted { reason } if reason.starts_with("interrupted") => {
                    reason.clone()
                }
                StepChange::Interrupted { reason } => format!("interrupted: {reason}"),
                _ => continue,
            };
            if self.verbose {
                println!(
                    "  t+{:>4}s  {:<15} {:<15} attempt {}  {what}",
                    e.at.duration_since(START).as_secs(),
                    run.id(),
                    run.name(e.step).unwrap_or("?"),
                    e.attempt
                );
            }
            if self.crash == Some(CrashPoint::AfterStep(self.completed))
                && matches!(e.change, StepChange::Succeeded { .. })
            {
                crash(CrashPoint::AfterStep(self.completed), self.on_crash, "");
            }
        }
    }
}

/// What one process did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Which process this was, from 1.
    pub incarnation: u64,
    /// Whether it found nothing on disk.
    pub fresh: bool,
    /// The checkpoint it recovered from (its `journal_next`), if any.
    pub checkpoint_at: Option<u64>,
    /// Records replayed after that checkpoint.
    pub replayed: u64,
    /// Steps the run checkpoints held as finished: not run again.
    pub finished_before: u64,
    /// Steps running at the crash.
    pub in_flight: u64,
    /// Of those, the steps whose agents' books held the effect: credited, not run
    /// again.
    pub credited: u64,
    /// Steps completed in this process (the credited ones included).
    pub completed: u64,
    /// Each run and how it ended.
    pub runs: Vec<(String, Option<RunOutcome>)>,
    /// Records in the journal at the end.
    pub records: u64,
    /// Appends this process made.
    pub appends: u64,
    /// Checkpoints this process stored.
    pub checkpoints: u64,
    /// Whether the journal, replayed from its last checkpoint, rebuilt the live
    /// coordinator's state exactly (as JSON) at the end.
    pub replay_matches: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let succeeded = self
            .runs
            .iter()
            .filter(|(_, o)| *o == Some(RunOutcome::Succeeded))
            .count();
        let finished = self.runs.iter().filter(|(_, o)| o.is_some()).count();
        writeln!(
            f,
            "runs finished: {finished} of {} ({succeeded} succeeded)",
            self.runs.len()
        )?;
        writeln!(
            f,
            "steps completed: {} = {} recovered from the journal as finished (not run again) \
             + {} completed by this process",
            self.finished_before + self.completed,
            self.finished_before,
            self.completed
        )?;
        if !self.fresh {
            writeln!(
                f,
                "steps running when the last process stopped: {}: {} had been done (credited \
                 from the agent's books, not run again), {} started again as the same attempt",
                self.in_flight,
                self.credited,
                self.in_flight - self.credited
            )?;
        }
        write!(
            f,
            "journal: {} records; this process made {} appends and stored {} checkpoints; \
             replayed from its last checkpoint it rebuilds the live state: {}",
            self.records,
            self.appends,
            self.checkpoints,
            if self.replay_matches { "yes" } else { "NO" }
        )
    }
}

/// Runs (or resumes) the deployments over the database at `opts.db` until they all
/// end, or until the crash point.
///
/// # Errors
/// The journal's or the database's, a recovery that fails (a corrupt row, a record
/// that diverges), a run checkpoint that does not restore, or the executor's.
pub fn run(opts: &Options) -> Result<Summary, Box<dyn Error>> {
    let workflow = runbooks::deployment();
    let mut journal = SqliteJournal::open(&opts.db)?;
    let books = Books::open(&opts.db)?;
    let incarnation = books.begin_incarnation()?;
    if let Some(CrashPoint::MidAppend(n)) = opts.crash {
        let how = opts.on_crash;
        journal.set_append_hook(move |at: AppendProgress| {
            if at.append == n && at.inserted == at.total.div_ceil(2) {
                let last = at.first + at.total as u64 - 1;
                let detail = format!(
                    " (records {}..={last}, {} of {} inserted)",
                    at.first, at.inserted, at.total
                );
                crash(CrashPoint::MidAppend(n), how, &detail);
            }
        });
    }

    // Recovery: the last checkpoint and the records after it, carried out again.
    let checkpoint_at = journal.load_checkpoint()?.map(|c| c.journal_next);
    let next = journal.next_seq()?;
    let fresh = checkpoint_at.is_none() && next == 1;
    let clock = ManualClock::new(START);
    let coordinator = Arc::new(builder(&clock).recover(&journal)?);
    let replayed = next - checkpoint_at.unwrap_or(1);
    let saved = journal.load_runs()?;
    if !fresh {
        // The restart comes after everything on disk, never before: the coordinator
        // refuses time that goes back.
        let latest = saved
            .values()
            .map(|s| s.taken_at)
            .chain([coordinator.now()])
            .max()
            .unwrap_or(START);
        clock.set(latest + RESTART_DELAY);
    }
    // Agents the journal does not hold (a crash before their registration was
    // written) are registered again.
    for profile in profiles() {
        let known = coordinator.with_registry(|r| r.get(profile.id()).is_some());
        if !known {
            coordinator.register_agent(profile)?;
        }
    }

    let fleet = Arc::new(Fleet {
        books: Mutex::new(books),
        incarnation,
        crash: opts.crash,
        on_crash: opts.on_crash,
        effects: AtomicU64::new(0),
    });
    let host = Arc::new(Mutex::new(Host {
        journal,
        coordinator: Arc::clone(&coordinator),
        crash: opts.crash,
        on_crash: opts.on_crash,
        verbose: opts.verbose,
        calls: 0,
        checkpoints: 0,
        completed: 0,
    }));
    // The registrations, and a fresh checkpoint after a recovery (the next one then
    // replays only what happens from here on).
    host.lock().checkpoint();

    let timer = SimulatedTimer::new(clock.clone());
    let sink = Arc::clone(&host);
    // Task ids of each process in a range of its own: ids stay unique across
    // restarts, as a journal read by people (and a host's own tables) expects.
    let first_task = (1u64 << 40) + (incarnation << 24);
    let mut executor = Executor::new(Arc::clone(&coordinator), timer.clone())
        .with_task_ids(first_task)
        .with_observer(move |run: &Run, events: &[RunEvent]| sink.lock().persist(run, events));
    for profile in profiles() {
        executor = executor.with_agent(Arc::new(SimAgent {
            id: profile.id(),
            clock: clock.clone(),
            timer: timer.clone(),
            fleet: Arc::clone(&fleet),
        }));
    }

    let (mut finished_before, mut in_flight) = (0, 0);
    let mut futures = Vec::new();
    for (i, id) in RUNS.iter().enumerate() {
        let seed = 42 + i as u64;
        let future = match saved.get(*id) {
            Some(snapshot) => {
                for step in &snapshot.steps {
                    finished_before += u64::from(step.status == StepStatus::Succeeded);
                    in_flight += u64::from(step.status == StepStatus::Running);
                }
                executor.resume(Run::restore(&workflow, snapshot.clone())?)
            }
            None if fresh => executor.run(&workflow, id, seed),
            // The crash came before the run's first checkpoint: an earlier process
            // may have left its first steps in the coordinator, which `resume` gives
            // back.
            None => executor.resume(workflow.start_run(*id, seed, coordinator.now())),
        };
        futures.push(future);
    }
    let results = futures::executor::block_on(futures::future::join_all(futures));
    let mut runs = Vec::new();
    for (id, result) in RUNS.iter().zip(results) {
        runs.push((id.to_string(), result?.outcome()));
    }
    drop(executor);

    // The end: everything written, then checked against a recovery from the
    // journal's last checkpoint and the records after it, then a last checkpoint.
    let mut host = Arc::into_inner(host)
        .expect("the executor and its observer are gone")
        .into_inner();
    coordinator.write_journal(&mut host.journal)?;
    let replay = builder(&ManualClock::new(START)).recover(&host.journal)?;
    let json = |c: &Coordinator| serde_json::to_string(&c.snapshot()).expect("json");
    let replay_matches = json(&replay) == json(&coordinator);
    host.checkpoint();
    let credited = fleet.books.lock().conn.query_row(
        "SELECT COUNT(*) FROM agent_credited WHERE incarnation = ?1",
        params![incarnation as i64],
        |r| r.get::<_, i64>(0),
    )? as u64;
    Ok(Summary {
        incarnation,
        fresh,
        checkpoint_at,
        replayed,
        finished_before,
        in_flight,
        credited,
        completed: host.completed,
        runs,
        records: host.journal.next_seq()? - 1,
        appends: host.journal.appends(),
        checkpoints: host.checkpoints,
        replay_matches,
    })
}

// ----- the checks ----------------------------------------------------------------------

/// The end state, as far as it does not depend on when things happened: what a
/// crash-free history and a crashed-and-restored one must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalState {
    /// Each run: its outcome and each step's status, attempts and outputs.
    pub runs: Vec<(String, Option<RunOutcome>, Vec<StepEnd>)>,
    /// Each effect the agents recorded: run, step, outputs.
    pub effects: Vec<(String, String, Outputs)>,
    /// Each agent: status and tasks running, in the coordinator rebuilt from the
    /// journal.
    pub agents: Vec<(AgentId, AgentStatus, u32)>,
    /// The rebuilt coordinator's mode, tasks running and waiting, and allocations.
    pub coordinator: (SystemMode, usize, usize, usize),
}

/// One step's end: name, status, attempts, outputs.
pub type StepEnd = (String, StepStatus, u32, Outputs);

/// What [`verify`] found.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The end state.
    pub state: FinalState,
    /// Records in the journal, numbered 1 to this without a gap.
    pub records: u64,
    /// Processes that ran over the database.
    pub incarnations: u64,
    /// Dispatches in all.
    pub dispatches: u64,
    /// Steps dispatched in more than one process (in flight at a crash).
    pub dispatched_again: u64,
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: usize = self.state.runs.iter().map(|(_, _, s)| s.len()).sum();
        writeln!(
            f,
            "check: every step took effect exactly once: {} effects for {steps} steps \
             over {} process(es)",
            self.state.effects.len(),
            self.incarnations
        )?;
        writeln!(
            f,
            "check: no finished step was dispatched again; {} dispatches in all, {} of them \
             again to a step whose first dispatch died with its process",
            self.dispatches, self.dispatched_again
        )?;
        write!(
            f,
            "check: journal contiguous, records 1..={}; rebuilt from it, the coordinator \
             holds nothing running, waiting or allocated",
            self.records
        )
    }
}

/// Checks the database after the runs ended: the journal numbered without a gap and
/// replaying to a coordinator that holds nothing; every run finished and succeeded;
/// every step's effect recorded exactly once, with the outputs the run credited; no
/// repeat refused by an agent.
///
/// # Errors
/// The first check that fails, in words.
pub fn verify(db: &Path) -> Result<Verified, Box<dyn Error>> {
    let journal = SqliteJournal::open(db)?;
    let books = Books::open(db)?;
    let workflow: Workflow = runbooks::deployment();

    let next = journal.next_seq()?;
    let mut records = Vec::new();
    journal.read_from(1, &mut records)?;
    let numbers: Vec<u64> = records.iter().map(|r| r.seq).collect();
    if numbers != (1..next).collect::<Vec<_>>() {
        return Err(format!("the journal is not numbered 1..{next} without a gap").into());
    }
    let coordinator = builder(&ManualClock::new(START)).recover(&journal)?;
    let agents: Vec<(AgentId, AgentStatus, u32)> = coordinator.with_registry(|r| {
        r.iter()
            .map(|a| (a.id(), a.status(), a.running()))
            .collect()
    });
    let state_of_coordinator = (
        coordinator.mode(),
        coordinator.running_count(),
        coordinator.waiting_count(),
        coordinator.with_ledger(|l| l.len()),
    );
    if state_of_coordinator.1 + state_of_coordinator.2 + state_of_coordinator.3 > 0 {
        return Err(format!(
            "the coordinator rebuilt from the journal still holds work: {state_of_coordinator:?}"
        )
        .into());
    }

    let saved = journal.load_runs()?;
    let mut runs = Vec::new();
    let mut effects = Vec::new();
    for id in RUNS {
        let snapshot = saved
            .get(id)
            .ok_or_else(|| format!("run {id} has no checkpoint"))?;
        let run = Run::restore(&workflow, snapshot.clone())?;
        if run.outcome() != Some(RunOutcome::Succeeded) {
            return Err(format!("run {id} ended {:?}", run.outcome()).into());
        }
        let mut steps = Vec::new();
        for (step, spec) in workflow.steps() {
            let name = spec.name().to_owned();
            let status = run.status(step).unwrap_or(StepStatus::Pending);
            let outputs = run.outputs(step).cloned().unwrap_or_default();
            let mut stmt = books
                .conn
                .prepare("SELECT outputs FROM agent_effects WHERE run = ?1 AND step = ?2")?;
            let done: Vec<String> = stmt
                .query_map(params![id, name], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            match done.as_slice() {
                [] => return Err(format!("{id} {name}: lost, no effect recorded").into()),
                [one] => {
                    let recorded: Outputs = serde_json::from_str(one)?;
                    if recorded != outputs {
                        return Err(format!(
                            "{id} {name}: the run credited {outputs:?}, the agent did {recorded:?}"
                        )
                        .into());
                    }
                    effects.push((id.to_owned(), name.clone(), recorded));
                }
                more => {
                    return Err(
                        format!("{id} {name}: repeated, {} effects recorded", more.len()).into(),
                    );
                }
            }
            steps.push((name, status, run.attempts(step).unwrap_or(0), outputs));
        }
        runs.push((id.to_owned(), run.outcome(), steps));
    }
    let count = |sql: &str| -> rusqlite::Result<u64> {
        books
            .conn
            .query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
    };
    let all_effects = count("SELECT COUNT(*) FROM agent_effects")?;
    if all_effects != effects.len() as u64 {
        return Err(format!("{all_effects} effects recorded for {} steps", effects.len()).into());
    }
    let repeats = count("SELECT COUNT(*) FROM agent_repeats")?;
    if repeats > 0 {
        return Err(format!("{repeats} dispatches of a step already done").into());
    }
    Ok(Verified {
        state: FinalState {
            runs,
            effects,
            agents,
            coordinator: state_of_coordinator,
        },
        records: next - 1,
        incarnations: count("SELECT COUNT(*) FROM host_incarnations")?,
        dispatches: count("SELECT COUNT(*) FROM agent_dispatches")?,
        dispatched_again: count(
            "SELECT COUNT(*) FROM (SELECT run, step FROM agent_dispatches
             GROUP BY run, step HAVING COUNT(DISTINCT incarnation) > 1)",
        )?,
    })
}
