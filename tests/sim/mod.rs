//! The simulation world: one seed drives the sans-I/O coordinator core through a
//! random, too-small, faulty fleet on simulated time, single-threaded and
//! deterministic, checking named invariants after every step (in the manner of
//! FoundationDB's simulation tests and TigerBeetle's VOPR).
//!
//! What the world does at random: tasks arrive (some with exclusive claims, so
//! conflicts arise, and some first with a kind or description over its limits,
//! which must be refused with nothing changed); agents join, leave, go offline, unhealthy or into quarantine and
//! come back; agents answer right, fail, hang (the host gives up on them), answer late
//! (after the host gave up) or twice, and report usage above their prediction; a
//! simulated orchestrator and human approve, deny or never answer conflicts, and
//! operators withdraw waiting tasks (those behind a claim, too); the host's clock
//! now and then reads past the horizon, and the command must be refused with nothing
//! changed; safe mode
//! comes and goes, by hand and by its rules; security breaches are reported, agents
//! quarantined and released, external communications stopped and resumed
//! (`emergency.rs`, with the world's model of the safe-mode rules and the emergency
//! invariants); the coordinator crashes and is rebuilt from its last checkpoint
//! and the journal after it, on a simulated disk that loses what it had not synced
//! and can tear the last record it kept.
//!
//! The host beside the core: agents write their results to shared memory and read
//! it back, while bits flip in it behind the guard's back and the memory service
//! restarts now and then; the host validates and backs memory up, and runs the memory
//! corruption procedure when it finds damage (`memory.rs`: fence, evidence,
//! assessment, restore from the last good backup, resume). It seals the core's
//! decisions, the alerting's pages and its own memory decisions into an audit log,
//! stores the entries (losing the unsynced ones at a crash, auditing again those the
//! journal kept) and verifies the chain after every step, locating tampering in a
//! copy of it (`audit.rs`). Memory and the audit draw their own random numbers: the
//! core's world plays the same with them or without.
//!
//! Two modes: *safety* (faults never stop; the invariants hold at every step) and
//! *liveness* (faults stop at a random step; then every task must end within a bound
//! of simulated time, or the seed fails as stuck, naming the tasks and why they
//! wait).
//!
//! After a crash the host (the world) reconciles its agents' work with what the
//! recovered core says runs: the commands lost with the disk's unsynced tail are
//! lost to the core too. Its alerting and its performance monitor are restored from
//! the snapshots it stored beside the checkpoint (the monitor's as JSON, checked to
//! restore to itself) and take the journal's events after it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use concord::agent::{AgentProfile, AgentStatus};
use concord::alert::{
    Alert, AlertConfig, AlertError, AlertManager, AlertManagerSnapshot, DedupKey, Fingerprint,
    Notification, NotificationKind, Severity, alerts_from_event, names,
};
use concord::conflict::{
    ConflictError, ConflictId, EscalationAction, EscalationPolicy, HumanDecision,
};
use concord::coordinator::{
    AssignOutcome, Coordinator, CoordinatorBuilder, CoordinatorError, CoordinatorSnapshot, Core,
    Decider, Event, EventKind, Journal, JournalError,
};
use concord::id::{MAX_CLAIM_LEN, MAX_DESCRIPTION_LEN, MAX_LABEL_LEN};
use concord::monitor::{Monitor, MonitorConfig, MonitorSnapshot};
use concord::policy::SystemMode;
use concord::task::{Claim, Requirements, RuleBasedAnalyzer, RuleSet, Task};
use concord::{AgentId, Resources, Role, TaskId, Timestamp};

mod audit;
mod emergency;
mod memory;
pub mod runs;
mod storage;
use audit::SimAudit;
use emergency::SimEmergency;
use memory::SimMemory;
use storage::SimStorage;

#[path = "../support/rng.rs"]
mod rng;
pub use rng::Rng;

/// FNV-1a, 64 bits: the trace hash, stable across runs, machines and Rust versions.
#[derive(Debug, Clone)]
pub struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Which mode a seed runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Faults never stop; the invariants hold at every step.
    Safety,
    /// Faults stop at a random step; then everything must finish in time.
    Liveness,
}

/// How long, after faults stop, every task has to end in liveness mode: past the
/// escalation ladder's human deadline (2 h plus its 4 h default deadline) with room.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(8 * 3600);

/// What one seed did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: u64,
    pub simulated: Duration,
    pub tasks: u64,
    /// Tasks no agent could ever take, named so by `unplaceable` and rejected.
    pub unplaceable: u64,
    pub agent_faults: u64,
    pub crashes: u64,
    pub records_replayed: u64,
    pub pages: u64,
    pub escalations: u64,
    /// Pages a restored alerting made again, which the receivers folded by key.
    pub pages_folded: u64,
    pub records_lost: u64,
    pub torn_records: u64,
    pub conflicts_decided: u64,
    pub cancelled: u64,
    /// Commands given a time past the horizon (a host clock's bad reading), refused.
    pub clock_glitches: u64,
    /// Runs whose futures the host dropped (and did not resume before the end).
    pub given_up: u64,
    pub memory_writes: u64,
    pub memory_corruptions: u64,
    pub memory_corruptions_found: u64,
    pub memory_restores: u64,
    pub memory_restarts: u64,
    pub fenced_writes_refused: u64,
    pub corrupt_backups_refused: u64,
    pub audit_entries_verified: u64,
    pub audit_entries_lost: u64,
    pub audit_events_again: u64,
    pub tampers_located: u64,
    pub breaches: u64,
    pub quarantines: u64,
    pub communications_stops: u64,
    pub safe_mode_by_rule: u64,
    pub checks: u64,
    pub trace_hash: u64,
}

impl Report {
    pub fn add(&mut self, other: &Report) {
        self.steps += other.steps;
        self.simulated += other.simulated;
        self.tasks += other.tasks;
        self.unplaceable += other.unplaceable;
        self.breaches += other.breaches;
        self.quarantines += other.quarantines;
        self.communications_stops += other.communications_stops;
        self.safe_mode_by_rule += other.safe_mode_by_rule;
        self.agent_faults += other.agent_faults;
        self.crashes += other.crashes;
        self.records_replayed += other.records_replayed;
        self.pages += other.pages;
        self.escalations += other.escalations;
        self.pages_folded += other.pages_folded;
        self.records_lost += other.records_lost;
        self.torn_records += other.torn_records;
        self.conflicts_decided += other.conflicts_decided;
        self.cancelled += other.cancelled;
        self.clock_glitches += other.clock_glitches;
        self.given_up += other.given_up;
        self.memory_writes += other.memory_writes;
        self.memory_corruptions += other.memory_corruptions;
        self.memory_corruptions_found += other.memory_corruptions_found;
        self.memory_restores += other.memory_restores;
        self.memory_restarts += other.memory_restarts;
        self.fenced_writes_refused += other.fenced_writes_refused;
        self.corrupt_backups_refused += other.corrupt_backups_refused;
        self.audit_entries_verified += other.audit_entries_verified;
        self.audit_entries_lost += other.audit_entries_lost;
        self.audit_events_again += other.audit_events_again;
        self.tampers_located += other.tampers_located;
        self.checks += other.checks;
        self.trace_hash ^= other.trace_hash;
    }
}

/// A failing seed: the seed, the invariant and the last events, enough to replay it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub mode: Mode,
    pub step: u64,
    pub invariant: &'static str,
    pub detail: String,
    pub last: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} ({:?}) broke `{}` at step {}: {}",
            self.seed, self.mode, self.invariant, self.step, self.detail
        )?;
        // In safety mode a seed plays the same prefix whatever its length, so the
        // step it broke at is the shortest trace that shows it.
        let shortest = match (self.mode, self.step) {
            (Mode::Safety, step) if step > 0 => format!("SIM_STEPS={step} "),
            _ => String::new(),
        };
        writeln!(
            f,
            "replay it alone: SIM_SEED={} {shortest}cargo test --test simulation -- --nocapture",
            self.seed
        )?;
        writeln!(f, "last events:")?;
        for line in &self.last {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// How an agent answers one piece of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Success,
    Failure,
    /// Never answers; the host gives up at its deadline.
    Hang,
    /// Answers after the host gave up.
    Late,
    /// Answers, then answers again.
    Twice,
    /// Succeeds, reporting more than it was given.
    OverUse,
    /// Fails, reporting more than it was given: the resource exhaustion rule counts it.
    Exhausted,
}

#[derive(Debug, Clone)]
struct Work {
    ends_at: Timestamp,
    answer: Answer,
}

/// What the host (the world) knows of one agent.
#[derive(Debug, Clone)]
struct SimAgent {
    working: BTreeMap<TaskId, Work>,
}

/// How long the host waits for an answer before it gives up on a task.
const HOST_PATIENCE: Duration = Duration::from_secs(120);

/// How many events the failure report shows (`SIM_EVENTS` to see more).
fn keep_events() -> usize {
    std::env::var("SIM_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

const CLAIMS: [&str; 3] = ["env/staging", "db/main", "repo/config"];

pub struct World {
    seed: u64,
    mode: Mode,
    rng: Rng,
    /// Picks the wording of the emergency procedures' reasons, apart from `rng` so
    /// that the world's other choices stay what each seed made them.
    wording: Rng,
    core: Core,
    now: Timestamp,
    start: Timestamp,
    agents: BTreeMap<AgentId, SimAgent>,
    next_agent: u64,
    next_task: u64,
    /// Tasks submitted and not yet ended (completed, rejected, denied, cancelled).
    open: BTreeSet<TaskId>,
    /// Answers the host gave up on, to be delivered late.
    late: Vec<(Timestamp, TaskId)>,
    /// Conflicts and when the orchestrator or human will answer (if ever).
    answers: BTreeMap<ConflictId, (Timestamp, Option<(HumanDecision, Decider)>)>,
    /// Whether the host hands the answers due to the core before its timeouts (it
    /// has not ticked yet) or after: a late answer loses either way.
    answers_first: bool,
    /// Draws the answers that come late, past the ladder's default, apart from the
    /// world's draws (which stay as they were).
    late_answers: Rng,
    /// The mode and each agent's status as the events tell them.
    seen_mode: SystemMode,
    seen_status: BTreeMap<AgentId, AgentStatus>,
    /// The agents the host drained (set busy) and has not set otherwise since (a
    /// drained agent that falls ill or is quarantined stays drained).
    drained: BTreeSet<AgentId>,
    /// The agents the host set otherwise this step: no longer drained once the
    /// step's events (which happened while they were) are read.
    undrained: Vec<AgentId>,
    running: BTreeMap<TaskId, AgentId>,
    /// When each conflict opened, and the human's deadline once it was asked: the
    /// ladder's times are checked against them.
    opened: BTreeMap<ConflictId, Timestamp>,
    human_deadline: BTreeMap<ConflictId, Timestamp>,
    /// When the core was last rebuilt from a checkpoint: what fell due while it was
    /// down is done then.
    restored_at: Option<Timestamp>,
    last_seq: u64,
    /// When the host last ran its daily cleanup.
    cleaned: Timestamp,
    /// The disk the journal and its checkpoint are kept on.
    storage: SimStorage,
    /// The host's alerting, fed with the core's events, and its state at the last
    /// checkpoint.
    alerts: AlertManager,
    alerts_saved: Option<AlertManagerSnapshot>,
    /// The host's performance monitor, fed with the core's events, and its snapshot
    /// at the last checkpoint, as the JSON the host stores beside it.
    monitor: Monitor,
    monitor_saved: Option<String>,
    /// The agents' shared memory, its guard and backups (`memory.rs`).
    memory: SimMemory,
    /// The host's audit log, its store and incident tracker (`audit.rs`).
    audit: SimAudit,
    /// The world's model of the safe-mode rules, quarantines and the communications
    /// stop (`emergency.rs`).
    emergency: SimEmergency,
    /// The alerts paged in their current firing, and the escalation levels each
    /// reached: a second page or a level twice breaks an invariant.
    paged: BTreeSet<Fingerprint>,
    escalated: BTreeSet<(Fingerprint, u32)>,
    /// The receivers' side, which no crash touches: the key of every page they got.
    /// A page arriving under a key they have is folded into the one they got.
    pager: BTreeSet<DedupKey>,
    /// Whether the last crash lost no journal record: then the alerting, given the
    /// records after its checkpoint again, pages nothing its receivers have not got.
    crash_lost_nothing: bool,
    faults_on: bool,
    /// Whether the host holds new work back while the fleet is behind (admission
    /// control), so that a long run's queue stays level.
    admission: bool,
    last: VecDeque<String>,
    keep: usize,
    hash: Fnv,
    report: Report,
}

/// The most the core's state may take as JSON at a checkpoint.
const STATE_BOUND: usize = 1 << 20;

/// The most agents the world's fleet grows to.
const MAX_FLEET: usize = 12;

/// Hourly windows, a day of them kept: the same for the monitor and its restores.
fn monitor_config() -> MonitorConfig {
    MonitorConfig::default()
        .with_window(Duration::from_secs(3600))
        .with_keep_windows(24)
}

fn new_monitor() -> Monitor {
    Monitor::new(monitor_config()).expect("a valid monitor configuration")
}

fn analyzer() -> RuleBasedAnalyzer {
    RuleBasedAnalyzer::new(RuleSet::empty()).expect("empty rules")
}

/// The coordinator's configuration: the same for the core, its restores and its
/// recoveries.
fn builder() -> CoordinatorBuilder {
    Coordinator::builder().analyzer(analyzer())
}

fn role() -> Role {
    Role::new("worker").expect("role")
}

impl World {
    pub fn new(seed: u64, mode: Mode) -> World {
        let start = Timestamp::from_secs(1_000_000);
        let core = builder().journaled().build_core();
        let mut w = World {
            seed,
            mode,
            rng: Rng::new(seed),
            wording: Rng::new(seed ^ 0x006E_07E5),
            core,
            now: start,
            start,
            agents: BTreeMap::new(),
            next_agent: 1,
            next_task: 1,
            open: BTreeSet::new(),
            late: Vec::new(),
            answers: BTreeMap::new(),
            answers_first: Rng::new(seed ^ 0x0A45_3E25).chance(50),
            late_answers: Rng::new(seed ^ 0x01A7_E0A5),
            seen_mode: SystemMode::Normal,
            seen_status: BTreeMap::new(),
            drained: BTreeSet::new(),
            undrained: Vec::new(),
            running: BTreeMap::new(),
            opened: BTreeMap::new(),
            human_deadline: BTreeMap::new(),
            restored_at: None,
            last_seq: 0,
            cleaned: Timestamp::from_secs(0),
            storage: SimStorage::new(),
            alerts: AlertManager::new(AlertConfig::default()).expect("default alerting"),
            alerts_saved: None,
            monitor: new_monitor(),
            monitor_saved: None,
            memory: SimMemory::new(seed, start),
            audit: SimAudit::new(seed),
            emergency: SimEmergency::default(),
            paged: BTreeSet::new(),
            escalated: BTreeSet::new(),
            pager: BTreeSet::new(),
            crash_lost_nothing: false,
            faults_on: true,
            admission: false,
            last: VecDeque::new(),
            keep: keep_events(),
            hash: Fnv::new(),
            report: Report::default(),
        };
        let agents = 1 + w.rng.below(3);
        for _ in 0..agents {
            w.join();
        }
        w
    }

    fn fail(&self, invariant: &'static str, detail: impl Into<String>) -> Failure {
        Failure {
            seed: self.seed,
            mode: self.mode,
            step: self.report.steps,
            invariant,
            detail: detail.into(),
            last: self.last.iter().cloned().collect(),
        }
    }

    fn note(&mut self, line: String) {
        self.hash.write(line.as_bytes());
        if self.last.len() >= self.keep {
            self.last.pop_front();
        }
        self.last.push_back(line);
    }

    /// Runs the seed: `steps` steps (faults stop at a random one in liveness mode),
    /// then in liveness mode until every task ended or the bound passed.
    pub fn run(mut self, steps: u64) -> Result<Report, Failure> {
        let quiet_at = match self.mode {
            Mode::Safety => u64::MAX,
            Mode::Liveness => self.rng.below(steps.max(1)),
        };
        for i in 0..steps {
            if i == quiet_at {
                self.quiet()?;
                break;
            }
            self.guarded(|w| w.step())?;
        }
        if self.mode == Mode::Liveness && self.faults_on {
            self.quiet()?;
        }
        if self.mode == Mode::Liveness {
            self.settle()?;
        }
        self.guarded(|w| {
            w.memory_end()?;
            w.audit_end()
        })?;
        self.report.simulated = self.now.duration_since(self.start);
        self.report.trace_hash = self.hash.0;
        Ok(self.report)
    }

    /// Runs `f`, turning a panic out of the library into the `no_panic` invariant.
    fn guarded(
        &mut self,
        f: impl FnOnce(&mut World) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(r) => r,
            Err(p) => {
                let what = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                Err(self.fail("no_panic", what))
            }
        }
    }

    /// One random step, then the invariants.
    fn step(&mut self) -> Result<(), Failure> {
        self.report.steps += 1;
        let roll = self.rng.below(100);
        match roll {
            0..=29 => self.submit()?,
            30..=59 => self.advance()?,
            60..=64 => self.decide_now()?,
            65..=69 if self.faults_on => self.agent_fault()?,
            70..=71 if self.faults_on => self.toggle_safe_mode()?,
            // Agents come twice as often as they go, up to a fleet's size: a month
            // of steps would otherwise grow a fleet of a thousand, and the run's cost
            // with it.
            72..=73 if self.faults_on && self.agents.len() < MAX_FLEET => self.join(),
            72..=73 if self.faults_on => self.leave()?,
            74 if self.faults_on => self.leave()?,
            75..=77 if self.faults_on => self.crash()?,
            78..=84 => self.take_checkpoint()?,
            85..=86 if self.faults_on => self.emergency()?,
            87 if self.faults_on => self.withdraw()?,
            // The host's clock reads past the horizon once, then time goes on as
            // the roll would have had it (no draw of its own: every other step of
            // the seed stays as it was).
            88 if self.faults_on => {
                self.clock_glitch()?;
                self.advance()?;
            }
            _ => self.advance()?,
        }
        self.daily_cleanup();
        self.observe()?;
        self.write_journal()?;
        self.memory_step()?;
        self.audit_step()?;
        self.check()
    }

    /// Once a simulated day the host forgets the conflicts closed more than a day
    /// ago and cuts the journal behind its checkpoint, as an operator's daily
    /// cleanup does: what a month-long run keeps stays the size of a day's.
    fn daily_cleanup(&mut self) {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        if self.now < self.cleaned + DAY {
            return;
        }
        self.cleaned = self.now;
        let forgot = self
            .core
            .forget_closed_conflicts(self.now.saturating_sub(DAY));
        let cut = self.storage.compact();
        self.note(format!(
            "daily cleanup at {}: {forgot} closed conflicts forgotten, {cut} journal records cut",
            self.now
        ));
    }

    /// The host writes what the step's commands recorded to the journal; the disk
    /// syncs now and then.
    fn write_journal(&mut self) -> Result<(), Failure> {
        if let Err(e) = self.core.write_journal(&mut self.storage) {
            return Err(self.fail("journal_appends", e.to_string()));
        }
        if self.rng.chance(50) {
            self.storage.sync();
        }
        self.audit_persist()
    }

    fn join(&mut self) {
        let id = AgentId::new(self.next_agent);
        self.next_agent += 1;
        let cpu = 2 + self.rng.below(3);
        let slots = 1 + self.rng.below(2) as u32;
        let profile = AgentProfile::new(id, format!("w{}", id.get()))
            .with_role(role())
            .with_capability(emergency::external_capability())
            .with_capacity(Resources::new().with_cpu_millis(cpu * 1000))
            .with_max_tasks(slots);
        match self.core.register_agent(profile, self.now) {
            Ok(()) => {
                self.agents.insert(
                    id,
                    SimAgent {
                        working: BTreeMap::new(),
                    },
                );
            }
            Err(e) => self.note(format!("register {id} refused: {e}")),
        }
    }

    fn leave(&mut self) -> Result<(), Failure> {
        // Keep one agent so that the fleet is never empty for long.
        if self.agents.len() <= 1 {
            return Ok(());
        }
        let ids: Vec<AgentId> = self.agents.keys().copied().collect();
        let id = ids[self.rng.below(ids.len() as u64) as usize];
        match self.core.deregister_agent(id, self.now) {
            Ok(_) => {
                self.agents.remove(&id);
                self.report.agent_faults += 1;
            }
            Err(e) => self.note(format!("deregister {id} refused: {e}")),
        }
        Ok(())
    }

    fn submit(&mut self) -> Result<(), Failure> {
        // A host with admission control submits nothing while as much waits as the
        // fleet runs at once.
        let slots: u64 = self
            .core
            .registry()
            .iter()
            .map(|v| u64::from(v.max_tasks()))
            .sum();
        if self.admission && self.core.waiting_count() as u64 >= slots.max(1) {
            return Ok(());
        }
        let id = TaskId::new(self.next_task);
        self.next_task += 1;
        let cpu = self.rng.below(5);
        let mut needs = Requirements::new()
            .with_role(role())
            .with_resources(Resources::new().with_cpu_millis(cpu * 1000));
        if self.rng.chance(10) {
            needs = needs.with_capability(emergency::external_capability());
        }
        if self.rng.chance(40) {
            let name = CLAIMS[self.rng.below(CLAIMS.len() as u64) as usize];
            needs = needs.with_claim(Claim::exclusive(name));
        }
        if self.rng.chance(3) {
            // A host passing on text it was handed: refused, and the id stays free.
            let (kind, description, claim) = match self.rng.below(4) {
                0 => (
                    "work\n".to_owned(),
                    "a line break in the kind".to_owned(),
                    None,
                ),
                1 => (
                    "k".repeat(MAX_LABEL_LEN + 1),
                    "a kind too long".to_owned(),
                    None,
                ),
                2 => ("work".to_owned(), "d".repeat(MAX_DESCRIPTION_LEN + 1), None),
                _ => (
                    "work".to_owned(),
                    "a claim too long".to_owned(),
                    Some("c/".repeat(MAX_CLAIM_LEN)),
                ),
            };
            let mut hostile_needs = needs.clone();
            if let Some(claim) = claim {
                hostile_needs = hostile_needs.with_claim(Claim::exclusive(claim));
            }
            let hostile = Task::new(id, kind, description).with_requirements(hostile_needs);
            self.unchanged_by("text_over_its_limits_changes_nothing", |core, now| {
                matches!(
                    core.assign(hostile, now),
                    Err(CoordinatorError::InvalidTaskText { task, .. }) if task == id
                )
            })?;
        }
        let task = Task::new(id, "work", format!("task {}", id.get())).with_requirements(needs);
        self.report.tasks += 1;
        self.open.insert(id);
        // The host's check before submitting: a task no agent could ever take is
        // rejected, and a task rejected with no policy's refusal (which `unplaceable`
        // does not ask) is one no agent could ever take.
        let never = match self.core.unplaceable(&task) {
            Ok(never) => never,
            Err(e) => {
                return Err(self.fail("valid_tasks_are_never_refused", format!("{id}: {e}")));
            }
        };
        match self.core.assign(task, self.now) {
            Ok(AssignOutcome::Rejected {
                explanation,
                refusals,
                ..
            }) => {
                self.open.remove(&id);
                self.report.unplaceable += u64::from(never.is_some());
                if never.is_none() && refusals.is_empty() {
                    return Err(self.fail(
                        "unplaceable_agrees_with_assign",
                        format!("{id} rejected ({explanation}), but some agent could take it"),
                    ));
                }
            }
            Ok(outcome) => {
                if let Some(never) = never {
                    return Err(self.fail(
                        "unplaceable_agrees_with_assign",
                        format!("{id}: {outcome}, but no agent could ever take it: {never}"),
                    ));
                }
            }
            // The world's tasks are all valid: a refusal is the core's fault (a plan
            // its own ledger would not book, say), never the host's.
            Err(e) => {
                return Err(self.fail("valid_tasks_are_never_refused", format!("{id}: {e}")));
            }
        }
        Ok(())
    }

    /// Lets time pass to the next thing that happens (an answer, a decision, the
    /// core's own deadline), or by a random amount, and delivers what is due.
    fn advance(&mut self) -> Result<(), Failure> {
        let step = if self.rng.chance(3) {
            Duration::from_secs(60 * (10 + self.rng.below(50)))
        } else {
            Duration::from_millis(self.rng.below(5000))
        };
        // Within five minutes of the top of the hour, where the monitor's windows
        // turn, to the top itself: the host reads its monitor there, with the events
        // stamped at the boundary (as often early as late: the time simulated is the
        // same).
        let target = (self.now + step).as_nanos();
        let window = u64::try_from(monitor_config().window().as_nanos()).expect("an hour");
        let top = (target + window / 2) / window * window;
        let target = if top > self.now.as_nanos() && target.abs_diff(top) <= 300_000_000_000 {
            Timestamp::from_nanos(top)
        } else {
            Timestamp::from_nanos(target)
        };
        // Visit each due moment in order, so that nothing is seen late.
        loop {
            let next = self.next_due().filter(|t| *t <= target);
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            self.deliver()?;
        }
        self.now = self.now.max(target);
        self.deliver()
    }

    fn next_due(&mut self) -> Option<Timestamp> {
        let work = self
            .agents
            .values()
            .flat_map(|a| a.working.values().map(|w| w.ends_at))
            .min();
        let late = self.late.iter().map(|(t, _)| *t).min();
        let answers = self.answers.values().map(|(t, _)| *t).min();
        let core = self.core.poll_timeout();
        let alerts = self.alerts.poll_timeout();
        [work, late, answers, core, alerts]
            .into_iter()
            .flatten()
            .min()
    }

    /// Everything due at `now`: the core's timeouts, agents' answers, late answers,
    /// decisions.
    fn deliver(&mut self) -> Result<(), Failure> {
        let now = self.now;
        // The alerts take the events made so far, then what fell due by now.
        self.observe()?;
        if self.alerts.poll_timeout().is_some_and(|t| t <= now) {
            self.alerts.handle_timeout(now);
            if let Some(t) = self.alerts.poll_timeout().filter(|t| *t <= now) {
                return Err(self.fail(
                    "alert_deadlines_met_on_time",
                    format!("alert deadline {t} still due at {now}"),
                ));
            }
        }
        if self.answers_first {
            self.hand_answers()?;
        }
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core
                .handle_timeout(now)
                .map_err(|e| self.fail("time_never_goes_back", e.to_string()))?;
            // The core's deadlines are met at their time: none is left behind.
            if let Some(t) = self.core.poll_timeout().filter(|t| *t <= now) {
                // A deadline at `now` may be re-armed for `now` once (a reservation
                // made as the queue drained): one more turn must clear it.
                let _ = self.core.handle_timeout(now);
                if self.core.poll_timeout().is_some_and(|u| u <= now) {
                    return Err(self.fail(
                        "deadlines_met_on_time",
                        format!("deadline {t} still due at {now}"),
                    ));
                }
            }
        }
        let due: Vec<(AgentId, TaskId, Work)> = self
            .agents
            .iter()
            .flat_map(|(a, s)| {
                s.working
                    .iter()
                    .filter(|(_, w)| w.ends_at <= now)
                    .map(|(t, w)| (*a, *t, w.clone()))
            })
            .collect();
        for (agent, task, work) in due {
            if let Some(s) = self.agents.get_mut(&agent) {
                s.working.remove(&task);
            }
            self.answer(task, work)?;
        }
        let late: Vec<TaskId> = self
            .late
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, k)| *k)
            .collect();
        self.late.retain(|(t, _)| *t > now);
        for task in late {
            self.unchanged_by("a_late_answer_changes_nothing", |core, now| {
                core.complete(task, true, None, now).is_err()
            })?;
        }
        self.hand_answers()
    }

    /// Hands the core the answers due by now. One at or after the time the ladder's
    /// default applies (the human's deadline once asked, else when the human would
    /// have been asked and given their time) never stands, whether or not the core
    /// has applied the default yet; one before it does.
    fn hand_answers(&mut self) -> Result<(), Failure> {
        let now = self.now;
        let decisions: Vec<(ConflictId, Option<(HumanDecision, Decider)>)> = self
            .answers
            .iter()
            .filter(|(_, (t, _))| *t <= now)
            .map(|(c, (_, d))| (*c, *d))
            .collect();
        let policy = EscalationPolicy::default();
        for (conflict, decision) in decisions {
            self.answers.remove(&conflict);
            let Some((decision, by)) = decision else {
                continue;
            };
            let default_at = (self.human_deadline.get(&conflict).copied())
                .or_else(|| self.opened.get(&conflict).map(|t| policy.closes_by(*t)));
            let late = default_at.is_some_and(|d| d <= now);
            match self.core.decide(conflict, decision, by, now) {
                Ok(()) if late => {
                    return Err(self.fail(
                        "a_late_answer_never_stands",
                        format!("{conflict} took {decision} at {now}, default due {default_at:?}"),
                    ));
                }
                Ok(()) => self.report.conflicts_decided += 1,
                Err(CoordinatorError::Conflict(ConflictError::DecisionTooLate {
                    deadline,
                    ..
                })) if Some(deadline) != default_at || !late => {
                    return Err(self.fail(
                        "a_late_answer_never_stands",
                        format!("{conflict} refused at {now} as due {deadline}, the world has {default_at:?}"),
                    ));
                }
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Delivers an agent's answer to the core, as its host would.
    fn answer(&mut self, task: TaskId, work: Work) -> Result<(), Failure> {
        let now = self.now;
        match work.answer {
            Answer::Success | Answer::Failure => {
                let ok = work.answer == Answer::Success;
                let _ = self.core.complete(task, ok, None, now);
                if ok {
                    self.memory_result(task)?;
                }
            }
            Answer::OverUse | Answer::Exhausted => {
                let usage = Resources::new().with_cpu_millis(64_000);
                let ok = work.answer == Answer::OverUse;
                let _ = self.core.complete(task, ok, Some(usage), now);
                if ok {
                    self.memory_result(task)?;
                }
            }
            Answer::Twice => {
                let _ = self.core.complete(task, true, None, now);
                self.memory_result(task)?;
                self.unchanged_by("a_second_answer_changes_nothing", |core, now| {
                    core.complete(task, true, None, now).is_err()
                })?;
            }
            Answer::Hang | Answer::Late => {
                // The host gives up on it: it failed, as far as the core knows.
                let _ = self.core.complete(task, false, None, now);
                if work.answer == Answer::Late {
                    let at = now + Duration::from_secs(1 + self.rng.below(60));
                    self.late.push((at, task));
                }
            }
        }
        Ok(())
    }

    /// Runs `f` on the core and checks that it changed nothing that the core keeps
    /// (its checkpoint is the same, but for the events it drained).
    fn unchanged_by(
        &mut self,
        invariant: &'static str,
        f: impl FnOnce(&mut Core, Timestamp) -> bool,
    ) -> Result<(), Failure> {
        let before = json(&self.core.snapshot());
        let refused = f(&mut self.core, self.now);
        let after = json(&self.core.snapshot());
        self.report.checks += 1;
        if !refused || before != after {
            return Err(self.fail(invariant, format!("refused: {refused}")));
        }
        Ok(())
    }

    fn decide_now(&mut self) -> Result<(), Failure> {
        let open = self.core.open_conflicts();
        if let Some(c) = open.first() {
            let id = c.conflict.id();
            let decision = if self.rng.chance(50) {
                HumanDecision::Approve
            } else {
                HumanDecision::Deny
            };
            let by = if self.rng.chance(50) {
                Decider::Human
            } else {
                Decider::Orchestrator
            };
            if self.core.decide(id, decision, by, self.now).is_ok() {
                self.report.conflicts_decided += 1;
                self.answers.remove(&id);
            }
        }
        Ok(())
    }

    /// An operator withdraws a waiting task: one waiting behind a claim when there
    /// is one, half the time (the case that leaves a conflict to close), else any.
    fn withdraw(&mut self) -> Result<(), Failure> {
        let waiting = self.core.waiting();
        let blocked: Vec<TaskId> = (waiting.iter())
            .filter(|w| w.behind.is_some())
            .map(|w| w.task.id())
            .collect();
        let pool: Vec<TaskId> = if !blocked.is_empty() && self.rng.chance(50) {
            blocked
        } else {
            waiting.iter().map(|w| w.task.id()).collect()
        };
        if pool.is_empty() {
            return Ok(());
        }
        let task = pool[self.rng.below(pool.len() as u64) as usize];
        match self.core.cancel(task, self.now) {
            Ok(_) => {
                self.report.cancelled += 1;
                Ok(())
            }
            Err(e) => Err(self.fail("waiting_tasks_can_be_withdrawn", format!("{task}: {e}"))),
        }
    }

    /// A command at a time past the horizon: refused, and nothing changes (taken as
    /// the latest time, it would refuse every later command at the real time).
    fn clock_glitch(&mut self) -> Result<(), Failure> {
        let when = if self.report.steps % 2 == 0 {
            Timestamp::MAX
        } else {
            Timestamp::HORIZON + Duration::from_nanos(1)
        };
        let before = serde_json::to_string(&self.core.snapshot()).expect("snapshot");
        let refused = [
            self.core.handle_timeout(when).err(),
            self.core.set_mode(SystemMode::SafeMode, when).err(),
        ];
        for e in refused {
            if !matches!(e, Some(CoordinatorError::PastHorizon { now }) if now == when) {
                return Err(self.fail(
                    "times_past_the_horizon_are_refused",
                    format!("a command at {when}: {e:?}"),
                ));
            }
        }
        if serde_json::to_string(&self.core.snapshot()).expect("snapshot") != before {
            return Err(self.fail(
                "times_past_the_horizon_are_refused",
                "a refused command changed the core",
            ));
        }
        // The alerting, fed the same reading: a fire refused, a tick a no-op (it
        // would page and escalate every later alert at once, or never).
        let before = serde_json::to_string(&self.alerts.snapshot()).expect("snapshot");
        let probe = Alert::new("clock_glitch", Severity::Low, self.now);
        let fired = self.alerts.fire(probe, when);
        self.alerts.handle_timeout(when);
        if !matches!(fired, Err(AlertError::PastHorizon { now }) if now == when)
            || serde_json::to_string(&self.alerts.snapshot()).expect("snapshot") != before
        {
            return Err(self.fail(
                "times_past_the_horizon_are_refused",
                format!("the alerting took {when}: {fired:?}"),
            ));
        }
        self.report.clock_glitches += 1;
        Ok(())
    }

    fn agent_fault(&mut self) -> Result<(), Failure> {
        let ids: Vec<AgentId> = self.agents.keys().copied().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let id = ids[self.rng.below(ids.len() as u64) as usize];
        if self.rng.chance(20) {
            // The host scales the agent; below what it holds, the core refuses.
            let cpu = Resources::new().with_cpu_millis(1000 * (1 + self.rng.below(5)));
            match self.core.set_agent_capacity(id, cpu, self.now) {
                Ok(_) => self.report.agent_faults += 1,
                Err(e) => self.note(format!("capacity of {id} refused: {e}")),
            }
            return Ok(());
        }
        let to = match self.rng.below(6) {
            0 => AgentStatus::Offline,
            1 => AgentStatus::Unhealthy,
            2 => AgentStatus::Quarantined,
            // A drain, as for a maintenance window: offline from it is planned.
            3 => AgentStatus::Busy,
            _ => AgentStatus::Available,
        };
        // Out of quarantine only by a release, an operator's decision.
        let quarantined = self.seen_status.get(&id) == Some(&AgentStatus::Quarantined);
        if quarantined && to != AgentStatus::Quarantined {
            let released = self
                .core
                .release_quarantine(id, Decider::Human, "cleared", self.now);
            if let Err(e) = released {
                return Err(self.fail("a_quarantine_releases", format!("{id}: {e}")));
            }
            return Ok(());
        }
        match self.set_status(id, to) {
            Ok(true) => self.report.agent_faults += 1,
            Ok(false) => {}
            Err(e) => self.note(format!("status {id} -> {to} refused: {e}")),
        }
        Ok(())
    }

    /// The host sets `id`'s status: set busy, the agent is the host's (drained)
    /// until the host says otherwise; unhealthy and quarantined keep a drain (the
    /// agent goes back to it when well, or released); any other status lets go of it.
    fn set_status(&mut self, id: AgentId, to: AgentStatus) -> Result<bool, CoordinatorError> {
        let result = self.core.set_agent_status(id, to, self.now);
        if result.is_ok() {
            match to {
                AgentStatus::Busy => {
                    self.drained.insert(id);
                }
                AgentStatus::Unhealthy | AgentStatus::Quarantined => {}
                _ => self.undrained.push(id),
            }
        }
        result
    }

    fn toggle_safe_mode(&mut self) -> Result<(), Failure> {
        let to = if self.core.mode() == SystemMode::Normal {
            SystemMode::SafeMode
        } else {
            SystemMode::Normal
        };
        let _ = self.core.set_mode(to, self.now);
        Ok(())
    }

    /// Checks that the last checkpoint and the journal after it rebuild exactly the
    /// live state, then stores a new checkpoint.
    fn take_checkpoint(&mut self) -> Result<(), Failure> {
        self.write_journal()?;
        self.report.checks += 1;
        let live = json(&self.core.snapshot());
        // The state a month-long run keeps is a day's, not a month's: the daily
        // cleanup and the fleet's bound keep it level.
        if live.len() > STATE_BOUND {
            return Err(self.fail(
                "core_state_bounded",
                format!("the core's state is {} bytes as JSON", live.len()),
            ));
        }
        let rebuilt = builder()
            .recover_core(&self.storage)
            .map_err(|e| self.fail("checkpoint_plus_journal_is_live_state", e.to_string()))?;
        let rebuilt = json(&rebuilt.snapshot());
        if rebuilt != live {
            let at = first_difference(&live, &rebuilt);
            return Err(self.fail(
                "checkpoint_plus_journal_is_live_state",
                format!(
                    "the journal rebuilds a state that differs at byte {at}:\n  live    {}\n  rebuilt {}",
                    around(&live, at),
                    around(&rebuilt, at)
                ),
            ));
        }
        self.core
            .checkpoint(&mut self.storage)
            .map_err(|e| self.fail("journal_appends", e.to_string()))?;
        self.audit_checkpoint()?;
        // The alerting's and the monitor's state beside the checkpoint: after a
        // crash they take the events of the records after it again.
        self.alerts_saved = Some(self.alerts.snapshot());
        self.save_monitor()
    }

    /// The monitor's snapshot as the JSON the host stores: the size of its kept
    /// windows, never of the stream.
    fn save_monitor(&mut self) -> Result<(), Failure> {
        let saved = serde_json::to_string(&self.monitor.snapshot())
            .map_err(|e| self.fail("monitor_snapshot_serializes", e.to_string()))?;
        if saved.len() > STATE_BOUND {
            return Err(self.fail(
                "monitor_state_bounded",
                format!("the monitor's snapshot is {} bytes as JSON", saved.len()),
            ));
        }
        self.monitor_saved = Some(saved);
        Ok(())
    }

    /// The monitor at the last checkpoint, from the JSON stored then: it restores,
    /// and to the monitor it was taken of (its own snapshot is the same text), so
    /// that its reports from here on are those the monitor would have made.
    fn restore_monitor(&self, saved: &str) -> Result<Monitor, Failure> {
        let snapshot: MonitorSnapshot = serde_json::from_str(saved)
            .map_err(|e| self.fail("monitor_snapshot_reads_back", e.to_string()))?;
        let restored = Monitor::restore(monitor_config(), snapshot)
            .map_err(|e| self.fail("monitor_restores", e.to_string()))?;
        let again = serde_json::to_string(&restored.snapshot())
            .map_err(|e| self.fail("monitor_snapshot_serializes", e.to_string()))?;
        if again != saved {
            let at = first_difference(saved, &again);
            return Err(self.fail(
                "monitor_restores",
                format!(
                    "the restored monitor differs at byte {at}:\n  saved    {}\n  restored {}",
                    around(saved, at),
                    around(&again, at)
                ),
            ));
        }
        Ok(restored)
    }

    /// The coordinator's process dies, and the disk loses what it had not synced;
    /// the host rebuilds the core from the last checkpoint and the journal after
    /// it, and reconciles its agents' work with what the core says runs.
    fn crash(&mut self) -> Result<(), Failure> {
        // The events of the last step were acted on and its records written.
        self.observe()?;
        self.write_journal()?;
        self.report.crashes += 1;
        let loss = self.storage.lose_power(&mut self.rng);
        self.report.records_lost += loss.lost;
        let checkpoint = self
            .storage
            .load_checkpoint()
            .map_err(|e| self.fail("checkpoint_reads_back", e.to_string()))?;
        let from = checkpoint.as_ref().map_or(1, |c| c.journal_next);
        let mut records = Vec::new();
        match self.storage.read_from(from, &mut records) {
            Ok(()) if !loss.torn => {}
            // A torn record is found, typed, and cut off; the host recovers up to it.
            Err(JournalError::CorruptRecord { seq, .. }) if loss.torn => {
                self.report.torn_records += 1;
                self.storage.truncate(seq);
            }
            Ok(()) => return Err(self.fail("torn_record_found", "a torn record read back")),
            Err(e) => return Err(self.fail("journal_reads_back", e.to_string())),
        }
        self.report.records_replayed += records.len() as u64;
        self.crash_lost_nothing = loss.lost == 0 && !loss.torn;
        self.restore_alerts(&records)?;
        self.core = builder()
            .recover_core_from(checkpoint, &records)
            .map_err(|e| self.fail("journal_replays", e.to_string()))?;
        // The host's memory is not the core's: the crash leaves it as it was (see
        // `memory.rs`). Its audit store loses what it had not synced.
        self.audit_crash(self.storage.durable_events())?;
        // What the lost records made is made again, under the same numbers.
        self.last_seq = self.core.snapshot().next_seq.saturating_sub(1);
        self.note(format!(
            "crash at {}: recovered {} records, lost {}{}",
            self.now,
            records.len(),
            loss.lost,
            if loss.torn { ", one torn" } else { "" }
        ));
        self.reconcile();
        // The restored core catches up with the present.
        let _ = self.core.handle_timeout(self.now);
        self.observe()
    }

    /// The host's alerting after a crash: its state at the checkpoint, then the
    /// events of the journal's records after it, as they first came.
    fn restore_alerts(&mut self, records: &[concord::coordinator::Record]) -> Result<(), Failure> {
        let config = AlertConfig::default();
        self.alerts = match self.alerts_saved.clone() {
            Some(s) => AlertManager::restore(config, s)
                .map_err(|e| self.fail("alerts_restore", e.to_string()))?,
            None => AlertManager::new(config).expect("default alerting"),
        };
        let from = self
            .storage
            .load_checkpoint()
            .ok()
            .flatten()
            .map_or(1, |c| c.journal_next);
        self.monitor = match &self.monitor_saved {
            Some(saved) => self.restore_monitor(saved)?,
            None => new_monitor(),
        };
        for e in records
            .iter()
            .filter(|r| r.seq >= from)
            .flat_map(|r| &r.events)
        {
            self.monitor.ingest(e);
            for change in alerts_from_event(e) {
                if let Err(err) = self.alerts.apply(change, e.at) {
                    return Err(self.fail("alerts_take_the_events", err.to_string()));
                }
            }
        }
        // Its notifications are not journaled: what it hands out again for the
        // records after the checkpoint goes out again, under the keys it went out
        // under, and the receivers fold it. What the crash kept from going out (or
        // what the lost records changed) goes out now.
        for n in self.alerts.drain_notifications().collect::<Vec<_>>() {
            if self.send(&n)? && n.is_page() && self.crash_lost_nothing {
                return Err(self.fail(
                    "a_restart_pages_only_what_was_not_sent",
                    format!("the records of a crash that lost nothing made a new page: {n}"),
                ));
            }
        }
        self.paged = self
            .alerts
            .firing()
            .filter(|(_, r)| r.paged.is_some())
            .map(|(fp, _)| fp)
            .collect();
        self.escalated = self
            .alerts
            .firing()
            .filter_map(|(fp, r)| r.paged.as_ref().map(|p| (fp, p.level)))
            .flat_map(|(fp, level)| (1..=level).map(move |l| (fp, l)))
            .collect();
        Ok(())
    }

    /// After a restore: the host's agents keep only the work the core says runs on
    /// them, and start the work it says runs that they do not have (the host hands it
    /// to them again). The world's books follow the core.
    fn reconcile(&mut self) {
        let running: BTreeMap<TaskId, AgentId> = self
            .core
            .assignments()
            .iter()
            .map(|a| (a.task.id(), a.agent))
            .collect();
        let registered: Vec<AgentId> = self.core.registry().iter().map(|v| v.id()).collect();
        self.agents.retain(|id, _| registered.contains(id));
        for id in registered {
            self.agents.entry(id).or_insert_with(|| SimAgent {
                working: BTreeMap::new(),
            });
        }
        for (id, a) in &mut self.agents {
            a.working.retain(|t, _| running.get(t) == Some(id));
        }
        self.late.clear();
        for (task, agent) in &running {
            let has = self
                .agents
                .get(agent)
                .is_some_and(|a| a.working.contains_key(task));
            if !has {
                let work = self.new_work();
                if let Some(a) = self.agents.get_mut(agent) {
                    a.working.insert(*task, work);
                }
            }
        }
        self.running = running;
        self.opened = self
            .core
            .open_conflicts()
            .iter()
            .map(|c| (c.conflict.id(), c.opened_at))
            .collect();
        self.human_deadline.clear();
        self.restored_at = Some(self.now);
        self.seen_mode = self.core.mode();
        self.seen_status = self
            .core
            .registry()
            .iter()
            .map(|v| (v.id(), v.status()))
            .collect();
        // What the host drained is what the recovered core holds: a drain whose
        // record was lost is lost with it.
        self.drained = self
            .core
            .registry()
            .iter()
            .filter(|v| v.is_drained())
            .map(|v| v.id())
            .collect();
        self.undrained.clear();
        // The tasks open are those the checkpoint holds: those submitted after it are
        // lost with the process (a journal would keep them), and those that ended
        // after it run again.
        self.open = self
            .core
            .waiting()
            .iter()
            .map(|w| w.task.id())
            .chain(self.running.keys().copied())
            .collect();
        self.emergency_reconcile();
    }

    fn new_work(&mut self) -> Work {
        let faults = self.faults_on;
        let answer = match self.rng.below(100) {
            _ if !faults => Answer::Success,
            0..=69 => Answer::Success,
            70..=79 => Answer::Failure,
            80..=84 => Answer::Hang,
            85..=89 => Answer::Late,
            90..=94 => Answer::Twice,
            95..=97 => Answer::OverUse,
            _ => Answer::Exhausted,
        };
        if answer != Answer::Success {
            self.report.agent_faults += 1;
        }
        let took = match answer {
            Answer::Hang | Answer::Late => HOST_PATIENCE,
            _ => Duration::from_millis(100 + self.rng.below(10_000)),
        };
        Work {
            ends_at: self.now + took,
            answer,
        }
    }

    /// Reads the events since the last step: starts the agents' work, schedules
    /// conflict answers, and checks what the events say against the invariants that
    /// are about order (safe mode admits nothing, no work for an agent out of
    /// service, one attempt at a time, time and sequence never go back).
    fn observe(&mut self) -> Result<(), Failure> {
        let result = self.observe_events();
        for id in std::mem::take(&mut self.undrained) {
            self.drained.remove(&id);
        }
        result
    }

    fn observe_events(&mut self) -> Result<(), Failure> {
        for e in self.core.drain_events() {
            self.on_event(&e)?;
            self.monitor.ingest(&e);
            for change in alerts_from_event(&e) {
                if let Err(err) = self.alerts.apply(change, e.at) {
                    return Err(self.fail("alerts_take_the_events", err.to_string()));
                }
            }
            self.audit_event(&e);
        }
        self.emergency_after()?;
        self.check_alerts()?;
        self.check_monitor_gauges()
    }

    /// Sends `n` to its receivers, who fold a page under a key they have: whether it
    /// reached them as news (a page they had not got, or no page). A folded page is
    /// one a restored alerting made again.
    fn send(&mut self, n: &Notification) -> Result<bool, Failure> {
        if !n.is_page() || self.pager.insert(n.dedup_key()) {
            return Ok(true);
        }
        self.report.pages_folded += 1;
        self.note(format!(
            "alerting: folded by its key {}: {n}",
            n.dedup_key()
        ));
        Ok(false)
    }

    /// The monitor's gauges are those of now: its queue is the tasks the core holds
    /// waiting, and the window in progress merged with the latest closed window, in
    /// either order, keeps the queue and the open conflicts of the window in
    /// progress. The host's time often stops at the top of the hour, where the
    /// windows turn (see `advance`), so that events stamped at a boundary are merged
    /// too.
    fn check_monitor_gauges(&mut self) -> Result<(), Failure> {
        self.report.checks += 1;
        let waiting = self.core.waiting_count() as u64;
        let Some(now) = self.monitor.current_window() else {
            return Ok(());
        };
        let gauges = |w: &concord::monitor::Window| (w.queue.current, w.conflicts.open);
        let mut seen = vec![("in progress", gauges(&now))];
        if let Some(last) = self.monitor.last_window() {
            let mut forward = last.clone();
            let mut backward = now.clone();
            if let Err(e) = forward.merge(&now).and_then(|()| backward.merge(last)) {
                return Err(self.fail("monitor_windows_merge", e.to_string()));
            }
            seen.push(("closed then in progress", gauges(&forward)));
            seen.push(("in progress then closed", gauges(&backward)));
        }
        let want = (waiting, gauges(&now).1);
        if let Some((how, got)) = seen.iter().find(|(_, got)| *got != want) {
            return Err(self.fail(
                "monitor_gauges_are_now",
                format!(
                    "{how}: queue {} and {} open conflicts, the core holds {waiting} waiting \
                     (windows end at {})",
                    got.0, got.1, now.end
                ),
            ));
        }
        Ok(())
    }

    /// What the alerting sent: one page per alert per firing, each escalation level
    /// once and never inside the alert's response deadline, a history within its
    /// retention.
    fn check_alerts(&mut self) -> Result<(), Failure> {
        let notifications: Vec<_> = self.alerts.drain_notifications().collect();
        for n in notifications {
            self.report.checks += 1;
            self.note(format!("alerting: {n}"));
            self.audit_notification(&n)?;
            if !self.send(&n)? {
                continue;
            }
            match &n.kind {
                NotificationKind::Page { alerts, .. } => {
                    self.report.pages += 1;
                    for a in alerts {
                        if !self.paged.insert(a.fingerprint()) {
                            return Err(self.fail(
                                "one_page_per_alert",
                                format!("{} paged twice in one firing", a.name()),
                            ));
                        }
                    }
                }
                NotificationKind::Escalated { level, alerts, .. } => {
                    self.report.escalations += 1;
                    for a in alerts {
                        let fp = a.fingerprint();
                        if !self.escalated.insert((fp, *level)) {
                            return Err(self.fail(
                                "each_level_escalates_once",
                                format!("{} escalated to level {level} twice", a.name()),
                            ));
                        }
                        let deadline = self.alerts.alert(fp).and_then(|r| r.deadline_at);
                        if deadline.is_some_and(|d| n.at < d) {
                            return Err(self.fail(
                                "no_escalation_inside_the_deadline",
                                format!("{} escalated at {} before {deadline:?}", a.name(), n.at),
                            ));
                        }
                    }
                }
                NotificationKind::Resolved { alerts, .. } => {
                    for a in alerts {
                        let fp = a.fingerprint();
                        self.paged.remove(&fp);
                        self.escalated.retain(|(f, _)| *f != fp);
                    }
                }
                _ => {}
            }
        }
        // The monitor follows exactly the tasks the core holds, and keeps its
        // windows within their number: its memory does not grow with the stream.
        self.monitor.advance(self.now);
        let stats = self.monitor.stats();
        let held = self.core.running_count() + self.core.waiting_count();
        if stats.tasks_in_flight != held || stats.windows > self.monitor.config().keep_windows() {
            return Err(self.fail(
                "monitor_memory_bounded",
                format!(
                    "the monitor follows {} tasks, the core holds {held}; it keeps {} windows",
                    stats.tasks_in_flight, stats.windows
                ),
            ));
        }
        let kept = self.alerts.history().len();
        let most = self.alerts.config().retention().max_entries();
        if kept > most {
            return Err(self.fail(
                "alert_history_bounded",
                format!("{kept} notifications kept, retention {most}"),
            ));
        }
        Ok(())
    }

    fn on_event(&mut self, e: &Event) -> Result<(), Failure> {
        self.note(e.to_string());
        self.report.checks += 1;
        if e.seq <= self.last_seq {
            return Err(self.fail(
                "events_in_order",
                format!("seq {} after {}", e.seq, self.last_seq),
            ));
        }
        self.last_seq = e.seq;
        self.emergency_event(e)?;
        match &e.kind {
            EventKind::AgentRegistered { profile } => {
                self.seen_status
                    .insert(profile.id(), AgentStatus::Available);
            }
            EventKind::AgentDeregistered { agent } => {
                self.seen_status.remove(agent);
                self.drained.remove(agent);
            }
            EventKind::AgentStatusChanged {
                agent,
                from,
                to,
                planned,
            } => {
                // Offline from a drain is a planned outage, and nothing else is.
                let drained = self.drained.contains(agent) && *from == AgentStatus::Busy;
                if *planned != (drained && *to == AgentStatus::Offline) {
                    return Err(self.fail(
                        "a_planned_outage_is_an_offline_drained_agent",
                        format!("{agent} {from} -> {to}, planned {planned}, drained {drained}"),
                    ));
                }
                // A drain outlasts an illness and a quarantine: released, a drained
                // agent comes back busy, still the host's.
                if !matches!(
                    to,
                    AgentStatus::Busy | AgentStatus::Unhealthy | AgentStatus::Quarantined
                ) {
                    self.drained.remove(agent);
                }
                self.seen_status.insert(*agent, *to);
                if !to.is_in_service() {
                    if let Some(a) = self.agents.get_mut(agent) {
                        // The host stops the work the core took back.
                        let kept: Vec<TaskId> = a.working.keys().copied().collect();
                        for t in kept {
                            if self.running.get(&t) != Some(agent) {
                                a.working.remove(&t);
                            }
                        }
                    }
                }
            }
            EventKind::ModeChanged { to, .. } => self.seen_mode = *to,
            EventKind::TaskAssigned { assignment } => {
                let (task, agent) = (assignment.task.id(), assignment.agent);
                if self.seen_mode == SystemMode::SafeMode {
                    return Err(self.fail(
                        "safe_mode_admits_nothing_new",
                        format!("{task} assigned to {agent}"),
                    ));
                }
                // (Busy and available follow from the slots, without events: either
                // is in service.)
                let status = self.seen_status.get(&agent).copied();
                if !status.is_some_and(AgentStatus::is_in_service) {
                    return Err(self.fail(
                        "work_only_for_agents_in_service",
                        format!("{task} assigned to {agent}, which is {status:?}"),
                    ));
                }
                if self.drained.contains(&agent) {
                    return Err(self.fail(
                        "a_drained_agent_takes_no_new_work",
                        format!("{task} assigned to {agent}"),
                    ));
                }
                if let Some(other) = self.running.insert(task, agent) {
                    return Err(self.fail(
                        "one_attempt_at_a_time",
                        format!("{task} assigned to {agent} while running on {other}"),
                    ));
                }
                let work = self.new_work();
                if let Some(a) = self.agents.get_mut(&agent) {
                    a.working.insert(task, work);
                }
            }
            EventKind::TaskCompleted { task, .. } => {
                self.running.remove(task);
                self.open.remove(task);
            }
            EventKind::TaskHandedBack {
                task,
                agent,
                requeued,
            } => {
                self.running.remove(task);
                if let Some(a) = self.agents.get_mut(agent) {
                    a.working.remove(task);
                }
                if !requeued {
                    self.open.remove(task);
                }
            }
            EventKind::TaskReleased { task, agent } => {
                self.running.remove(task);
                if let Some(a) = self.agents.get_mut(agent) {
                    a.working.remove(task);
                }
            }
            EventKind::TaskRejected { task, .. }
            | EventKind::TaskDenied { task, .. }
            | EventKind::TaskCancelled { task } => {
                self.open.remove(task);
            }
            EventKind::ConflictEscalated { action } => self.check_ladder(action, e.at)?,
            EventKind::ConflictDetected { conflict, .. } => {
                // The orchestrator or a human answers some time later, or never
                // (then the ladder's default decides).
                let id = conflict.id();
                self.opened.insert(id, e.at);
                let mut at = self.now + Duration::from_secs(60 * self.rng.below(180));
                // Some answers come an hour or two later still, past the default, and
                // some at the very time it applies (which a host that has not ticked
                // yet hands over first).
                if self.late_answers.chance(20) {
                    at = match self.late_answers.chance(50) {
                        true => EscalationPolicy::default().closes_by(e.at),
                        false => at + Duration::from_secs(60 * (60 + self.late_answers.below(60))),
                    };
                }
                let decision = match self.rng.below(3) {
                    _ if !self.faults_on => Some((HumanDecision::Approve, Decider::Orchestrator)),
                    0 => Some((HumanDecision::Approve, Decider::Human)),
                    1 => Some((HumanDecision::Deny, Decider::Orchestrator)),
                    _ => None,
                };
                self.answers.insert(id, (at, decision));
            }
            _ => {}
        }
        Ok(())
    }

    /// The escalation ladder acts at its times, to the nanosecond: the orchestrator
    /// `orchestrator_after` the conflict opened, the human at once or `human_after`
    /// it opened with a deadline `decision_within` later, and the default decision at
    /// that deadline.
    fn check_ladder(&mut self, action: &EscalationAction, at: Timestamp) -> Result<(), Failure> {
        let policy = EscalationPolicy::default();
        let (orchestrator, human, within) = (
            policy.orchestrator_after(),
            policy.human_after(),
            policy.decision_within(),
        );
        let opened = |w: &World, c: &ConflictId| w.opened.get(c).copied();
        // Due at `due`, done at `at`: on time, or at the restore if it fell due while
        // the core was down.
        let restored = self.restored_at;
        let on_time = |due: Timestamp| due == at || restored.is_some_and(|r| due <= r && at == r);
        let late = match action {
            EscalationAction::EscalateToOrchestrator { conflict, .. } => opened(self, conflict)
                .filter(|t| !on_time(*t + orchestrator))
                .map(|t| format!("{conflict} to the orchestrator at {at}, opened {t}")),
            EscalationAction::RequestHumanApproval {
                conflict, deadline, ..
            } => {
                self.human_deadline.insert(*conflict, *deadline);
                let wrong_time = opened(self, conflict)
                    .filter(|t| !on_time(*t) && !on_time(*t + human))
                    .map(|t| format!("{conflict} to a human at {at}, opened {t}"));
                // The deadline runs from when the human was due to be asked (the
                // ladder's times do not move while the core is down).
                let due_from = |t: Timestamp| *deadline == t + within;
                let deadline_ok = due_from(at)
                    || opened(self, conflict).is_some_and(|t| due_from(t) || due_from(t + human));
                wrong_time.or_else(|| {
                    (!deadline_ok).then(|| format!("{conflict} due {deadline}, asked at {at}"))
                })
            }
            EscalationAction::ApplyDefaultDecision { conflict, .. } => {
                match self.human_deadline.get(conflict) {
                    Some(d) => {
                        (!on_time(*d)).then(|| format!("{conflict} defaulted at {at}, due {d}"))
                    }
                    // Asked before a crash: at once, or at `human_after`.
                    None => opened(self, conflict)
                        .filter(|t| !on_time(*t + within) && !on_time(*t + human + within))
                        .map(|t| format!("{conflict} defaulted at {at}, opened {t}")),
                }
            }
            _ => None,
        };
        self.report.checks += 1;
        match late {
            Some(detail) => Err(self.fail("ladder_on_time", detail)),
            None => Ok(()),
        }
    }

    /// The invariants about state, after every step.
    fn check(&mut self) -> Result<(), Failure> {
        self.report.checks += 1;
        let ledger = self.core.ledger();
        // No agent holds more than its capacity, or runs more tasks than its slots.
        for agent in ledger.agents() {
            let cap = ledger.capacity(agent).unwrap_or_default();
            let held = ledger.allocated(agent).unwrap_or_default();
            if let Some((r, need, has)) = held.first_shortfall(&cap) {
                return Err(self.fail(
                    "no_over_allocation",
                    format!("{agent} holds {need} {r} of {has}"),
                ));
            }
            let slots = ledger.task_slots(agent).ok().flatten();
            let tasks = ledger.tasks_on(agent).unwrap_or(0);
            if slots.is_some_and(|s| tasks > s) {
                return Err(self.fail(
                    "no_over_allocation",
                    format!("{agent} runs {tasks} tasks on {slots:?} slots"),
                ));
            }
        }
        // An open conflict has a task waiting on it: one withdrawn or ended takes
        // its conflicts with it, or the ladder would ask about a task that is gone.
        let waiting: BTreeSet<TaskId> = self.core.waiting().iter().map(|w| w.task.id()).collect();
        for c in self.core.open_conflicts() {
            if let Some(task) = c.waiting.filter(|t| !waiting.contains(t)) {
                return Err(self.fail(
                    "open_conflicts_have_a_waiter",
                    format!("{} is open, and {task} waits no more", c.conflict.id()),
                ));
            }
        }
        // And a task waiting behind a holder waits in an open conflict with it, however
        // it came to wait (assigned directly, or granted by the queue): else the ladder
        // never hears of it, however long the holder runs.
        let open: BTreeSet<(Option<TaskId>, Option<TaskId>)> = (self.core.open_conflicts())
            .iter()
            .map(|c| (c.holder, c.waiting))
            .collect();
        for w in self.core.waiting() {
            let Some(holder) = w.behind else { continue };
            if !open.contains(&(Some(holder), Some(w.task.id()))) {
                return Err(self.fail(
                    "a_blocked_task_is_on_the_ladder",
                    format!(
                        "{} waits behind {holder} with no conflict open",
                        w.task.id()
                    ),
                ));
            }
        }
        // The core's drains are the host's: set busy, kept through an illness, let go
        // by any other status.
        let core_drained: BTreeSet<AgentId> = (self.core.registry().iter())
            .filter(|v| v.is_drained())
            .map(|v| v.id())
            .collect();
        if core_drained != self.drained {
            return Err(self.fail(
                "drains_are_the_hosts",
                format!(
                    "the core drains {core_drained:?}, the host {:?}",
                    self.drained
                ),
            ));
        }
        // The registry, the ledger and the core agree on what runs where.
        let mut per_agent: BTreeMap<AgentId, u32> = BTreeMap::new();
        for a in self.core.assignments() {
            *per_agent.entry(a.agent).or_default() += 1;
            let held = ledger.allocation(a.allocation);
            if held.is_none_or(|h| h.agent != a.agent || h.task != Some(a.task.id())) {
                return Err(self.fail(
                    "books_agree",
                    format!("{} has no allocation of its own", a.task.id()),
                ));
            }
        }
        for v in self.core.registry().iter() {
            let n = per_agent.get(&v.id()).copied().unwrap_or(0);
            let counted = ledger.tasks_on(v.id()).unwrap_or(u32::MAX);
            if v.running() != n || counted != n {
                return Err(self.fail(
                    "books_agree",
                    format!(
                        "{}: registry {} ledger {} core {}",
                        v.id(),
                        v.running(),
                        counted,
                        n
                    ),
                ));
            }
            if !v.status().is_in_service() && n > 0 {
                return Err(self.fail(
                    "work_only_for_agents_in_service",
                    format!("{} is {} with {n} tasks", v.id(), v.status()),
                ));
            }
        }
        // The world's view of what runs follows the core's.
        let core: BTreeMap<TaskId, AgentId> = self
            .core
            .assignments()
            .iter()
            .map(|a| (a.task.id(), a.agent))
            .collect();
        if core != self.running {
            return Err(self.fail(
                "events_tell_everything",
                format!("core runs {core:?}, events say {:?}", self.running),
            ));
        }
        // Snapshot, restore, snapshot again: the same bytes (now and then: it is the
        // dearest check).
        if self.report.steps % 16 == 0 {
            self.report.checks += 1;
            let first = json(&self.core.snapshot());
            let back: CoordinatorSnapshot = serde_json::from_str(&first).expect("own json");
            let restored = Coordinator::builder()
                .analyzer(analyzer())
                .restore_core(back)
                .map_err(|e| self.fail("snapshot_restores", e.to_string()))?;
            let second = json(&restored.snapshot());
            if first != second {
                let at = first_difference(&first, &second);
                return Err(self.fail(
                    "snapshot_round_trips",
                    format!(
                        "restore then snapshot differs at byte {at}:\n  {}\n  {}",
                        around(&first, at),
                        around(&second, at)
                    ),
                ));
            }
        }
        self.audit_check()
    }

    /// Faults stop: agents come back, normal mode returns, every answer from here is
    /// right and every conflict is approved.
    fn quiet(&mut self) -> Result<(), Failure> {
        self.faults_on = false;
        self.note(format!("faults stop at {}", self.now));
        self.emergency_quiet();
        let _ = self.core.set_mode(SystemMode::Normal, self.now);
        let ids: Vec<AgentId> = self.agents.keys().copied().collect();
        for id in ids {
            let _ = self.set_status(id, AgentStatus::Available);
            // Scaled back to the most the world ever gives an agent: no task waits
            // for capacity that will not come back.
            let full = Resources::new().with_cpu_millis(5000);
            let _ = self.core.set_agent_capacity(id, full, self.now);
        }
        if self.agents.is_empty() {
            self.join();
        }
        for (_, d) in self.answers.values_mut() {
            d.get_or_insert((HumanDecision::Approve, Decider::Orchestrator));
        }
        self.observe()?;
        self.check()
    }

    /// Liveness: once faults stopped and the work ended, every alert whose cause
    /// ended has resolved (agents back in service, normal mode, conflicts decided).
    fn alerts_resolved(&mut self) -> Result<(), Failure> {
        self.observe()?;
        let ended = [
            names::AGENT_FAILURE,
            names::MULTIPLE_AGENT_FAILURES,
            names::SYSTEM_WIDE_AGENT_FAILURE,
            names::SAFE_MODE_ENTERED,
            names::CONFLICT_ESCALATED,
        ];
        let stale: Vec<String> = self
            .alerts
            .firing()
            .filter(|(_, r)| ended.contains(&r.alert.name()))
            .map(|(_, r)| r.alert.to_string())
            .collect();
        self.report.checks += 1;
        if stale.is_empty() {
            Ok(())
        } else {
            Err(self.fail(
                "alerts_resolve_after_their_cause",
                format!("still firing: {}", stale.join("; ")),
            ))
        }
    }

    /// Liveness: with faults stopped, every task ends within [`LIVENESS_BOUND`].
    fn settle(&mut self) -> Result<(), Failure> {
        let deadline = self.now + LIVENESS_BOUND;
        while !self.open.is_empty() && self.now < deadline {
            // Safe mode entered by its rules since (failures that were in flight when
            // the faults stopped count too) is left at once, as an operator does once
            // the cause is handled: nothing else would ever leave it.
            if self.core.mode() != SystemMode::Normal {
                let _ = self.core.set_mode(SystemMode::Normal, self.now);
            }
            // Open conflicts are answered at once now.
            for c in self.core.open_conflicts() {
                let id = c.conflict.id();
                self.answers.entry(id).or_insert((self.now, None)).1 =
                    Some((HumanDecision::Approve, Decider::Orchestrator));
            }
            self.guarded(|w| {
                w.report.steps += 1;
                let next = w.next_due().unwrap_or(deadline).min(deadline).max(w.now);
                w.now = next;
                w.deliver()?;
                w.observe()?;
                w.check()
            })?;
            if self.next_due().is_none() && !self.open.is_empty() {
                break;
            }
        }
        if self.open.is_empty() {
            return self.alerts_resolved();
        }
        let culprits: Vec<String> = self
            .open
            .iter()
            .take(5)
            .map(|t| {
                let why = self.core.why_waiting(*t).unwrap_or_else(|| {
                    if self.running.contains_key(t) {
                        "running".to_owned()
                    } else {
                        "unknown to the core".to_owned()
                    }
                });
                format!("{t}: {why}")
            })
            .collect();
        let running: Vec<String> = self
            .core
            .assignments()
            .iter()
            .map(|a| {
                let (task, agent) = (a.task.id(), a.agent);
                let works = self
                    .agents
                    .get(&agent)
                    .is_some_and(|s| s.working.contains_key(&task));
                format!(
                    "{task} on {agent} (its agent {} it)",
                    if works { "works on" } else { "does not have" }
                )
            })
            .collect();
        Err(self.fail(
            "everything_finishes",
            format!(
                "stuck: {}; running: {}",
                culprits.join("; "),
                running.join("; ")
            ),
        ))
    }
}

fn json(s: &CoordinatorSnapshot) -> String {
    serde_json::to_string(s).expect("a snapshot serializes")
}

/// Where two snapshots' JSON first differ.
fn first_difference(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// The JSON before and just after byte `at`. Snapshots are JSON of ASCII names: byte
/// offsets are char offsets.
fn around(s: &str, at: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    let to = (at + 80).min(chars.len());
    chars[at.saturating_sub(160).min(to)..to].iter().collect()
}

/// Runs one seed.
pub fn run_seed(seed: u64, mode: Mode, steps: u64) -> Result<Report, Failure> {
    World::new(seed, mode).run(steps)
}

/// Runs one seed whose host holds new work back while the fleet is behind, so that
/// the queue stays level however long it runs (a month of simulated time).
pub fn run_seed_with_admission(seed: u64, steps: u64) -> Result<Report, Failure> {
    let mut w = World::new(seed, Mode::Safety);
    w.admission = true;
    w.run(steps)
}
