//! The simulation world's workflows: one seed runs several random workflows at once
//! through the async executor on a shared, too-small fleet of faulty agents, on a
//! simulated clock and timer, single-threaded (`block_on`), while an operator acts
//! at random times (safe mode, agents offline and back, the agent of a running task
//! taken out of service for a moment, a run cancelled after a second start and
//! resume under its id, which must be refused, conflicts approved or denied, a run
//! given up by dropping its future). Then faults stop and everything must end within
//! [`LIVENESS_BOUND`].
//!
//! Faults of the agents: failed results (retryable or not), transport errors, slow
//! answers past a step's timeout (answered late), very slow answers, panics. Some
//! runs deploy first and verify last, which separation of duties keeps on different
//! agents. The agents keep books of what they did; the invariants are checked on them
//! and on each run's history when the seed ends (a step given up for want of an
//! agent only when none could ever take it among them).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use concord::agent::{Agent, AgentError, AgentHealth, AgentStatus, WorkItem, WorkOutput};
use concord::conflict::HumanDecision;
use concord::coordinator::{Coordinator, Decider, Journal, MemoryJournal};
use concord::policy::{PolicySet, SeparationOfDuties, SystemMode};
use concord::workflow::{
    Executor, ExecutorError, RetryPolicy, Run, RunCondition, RunEvent, RunOutcome, RunSnapshot,
    SimulatedTimer, Spawn, StepChange, StepSpec, StepStatus, Timer, Workflow,
};
use concord::{
    AgentId, AgentProfile, Claim, Clock, ManualClock, Role, RuleBasedAnalyzer, RuleSet, Timestamp,
};
use futures::future::{AbortHandle, Abortable, BoxFuture, join_all};
use parking_lot::Mutex;

use super::{Failure, LIVENESS_BOUND, Mode, Report, Rng};

const CLAIMS: [&str; 2] = ["env/staging", "db/main"];

/// What the fleet did, kept by the agents.
#[derive(Debug, Default)]
struct Books {
    /// Attempts each agent works on now, and the most at once.
    busy: BTreeMap<AgentId, u32>,
    peak: BTreeMap<AgentId, u32>,
    /// Attempts of each step (by its task's description) in flight now, and the most.
    in_flight: BTreeMap<String, u32>,
    overlap: Option<String>,
    faults: u64,
    /// Work finished with success, per step (its task's description).
    succeeded: BTreeMap<String, u32>,
}

/// An agent that does its work in simulated time, with faults drawn from the seed.
struct Faulty {
    id: AgentId,
    clock: ManualClock,
    timer: SimulatedTimer,
    rng: Arc<Mutex<Rng>>,
    faults: Arc<AtomicBool>,
    books: Arc<Mutex<Books>>,
}

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faulty").field("id", &self.id).finish()
    }
}

/// Ends an attempt in the books, even when the executor drops it.
struct InFlight<'a>(&'a Faulty, String);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut b = self.0.books.lock();
        *b.busy.entry(self.0.id).or_default() -= 1;
        *b.in_flight.entry(self.1.clone()).or_default() -= 1;
    }
}

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Succeed,
    Fail,
    FailRetryable,
    Error,
    /// Answers after a long while: past any step timeout (its answer comes late).
    Slow,
    Panic,
}

#[concord::async_trait]
impl Agent for Faulty {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        let (behaviour, took) = {
            let mut rng = self.rng.lock();
            let b = if !self.faults.load(Ordering::SeqCst) {
                Behaviour::Succeed
            } else {
                match rng.below(100) {
                    0..=74 => Behaviour::Succeed,
                    75..=81 => Behaviour::FailRetryable,
                    82..=85 => Behaviour::Fail,
                    86..=89 => Behaviour::Error,
                    90..=96 => Behaviour::Slow,
                    _ => Behaviour::Panic,
                }
            };
            let took = match b {
                Behaviour::Slow => Duration::from_secs(120 + rng.below(600)),
                _ => Duration::from_millis(200 + rng.below(5_000)),
            };
            (b, took)
        };
        let name = work.description().to_owned();
        {
            let mut b = self.books.lock();
            let busy = b.busy.entry(self.id).or_default();
            *busy += 1;
            let now = *busy;
            let peak = b.peak.entry(self.id).or_default();
            *peak = (*peak).max(now);
            let flying = b.in_flight.entry(name.clone()).or_default();
            *flying += 1;
            if *flying > 1 && b.overlap.is_none() {
                b.overlap = Some(format!("two attempts of {name} at once"));
            }
            if !matches!(behaviour, Behaviour::Succeed) {
                b.faults += 1;
            }
        }
        let _guard = InFlight(self, name.clone());
        self.timer.sleep_until(self.clock.now() + took).await;
        if matches!(behaviour, Behaviour::Succeed | Behaviour::Slow) {
            *self.books.lock().succeeded.entry(name).or_default() += 1;
        }
        match behaviour {
            Behaviour::Succeed | Behaviour::Slow => Ok(WorkOutput::success()),
            Behaviour::Fail => Ok(WorkOutput::failure("it broke")),
            Behaviour::FailRetryable => Ok(WorkOutput::retryable_failure("try again")),
            Behaviour::Error => Err(AgentError::Unreachable {
                reason: "connection reset".to_owned(),
            }),
            Behaviour::Panic => panic!("agent {} panicked on purpose", self.id),
        }
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("sim"))
    }
}

/// The host's runtime for spawned attempts (`Executor::with_spawner`), in this
/// single-threaded world: it polls the work handed to it in turns of its own, and by
/// draws of the seed leaves a piece for a later turn now and then (a worker thread
/// busy elsewhere). So an attempt given up (its run cancelled, its timeout passed)
/// lives on after the executor let go of it, until the runtime drops it: its agent's
/// slot must not go to another step before that, which the fleet's books check
/// (no agent ever runs more attempts at once than it has slots).
#[derive(Clone)]
struct Runtime {
    work: Arc<Mutex<Vec<BoxFuture<'static, ()>>>>,
    waker: Arc<Mutex<Option<std::task::Waker>>>,
    rng: Arc<Mutex<Rng>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Runtime({} spawned)", self.work.lock().len())
    }
}

impl Spawn for Runtime {
    fn spawn(&self, work: BoxFuture<'static, ()>) {
        self.work.lock().push(work);
        if let Some(w) = self.waker.lock().as_ref() {
            w.wake_by_ref();
        }
    }
}

impl Runtime {
    fn new(seed: u64) -> Self {
        Runtime {
            work: Arc::default(),
            waker: Arc::default(),
            rng: Arc::new(Mutex::new(Rng::new(seed))),
        }
    }

    /// `f` with the runtime's turns beside it: `f`'s output when it ends.
    async fn beside<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let turns = futures::future::poll_fn(|cx| {
            *self.waker.lock() = Some(cx.waker().clone());
            let mut work = std::mem::take(&mut *self.work.lock());
            let mut later = false;
            work.retain_mut(|w| {
                if self.rng.lock().chance(30) {
                    later = true;
                    return true;
                }
                w.as_mut().poll(cx).is_pending()
            });
            let mut kept = self.work.lock();
            work.append(&mut kept);
            *kept = work;
            if later {
                cx.waker().wake_by_ref();
            }
            std::task::Poll::<()>::Pending
        });
        futures::pin_mut!(f, turns);
        match futures::future::select(f, turns).await {
            futures::future::Either::Left((out, _)) => out,
            futures::future::Either::Right(((), _)) => unreachable!("the runtime never ends"),
        }
    }

    /// The process died: the work on its threads is gone with it.
    fn crash(&self) {
        self.work.lock().clear();
    }
}

/// Step `i` of a random workflow.
#[derive(Debug, Clone)]
struct Step {
    /// `deploy` or `verify`, the pair separation of duties keeps apart in a run.
    kind: Option<&'static str>,
    deps: Vec<usize>,
    attempts: u32,
    timeout: Option<Duration>,
    claim: Option<usize>,
    condition: RunCondition,
}

fn random_steps(rng: &mut Rng) -> Vec<Step> {
    let n = 2 + rng.below(6) as usize;
    (0..n)
        .map(|i| {
            let mut deps: Vec<usize> = (0..i).filter(|_| rng.chance(30)).collect();
            if deps.is_empty() && i > 0 && rng.chance(50) {
                deps.push(rng.below(i as u64) as usize);
            }
            // A rollback handler: runs when something before it failed.
            let condition = if !deps.is_empty() && rng.chance(15) {
                RunCondition::AnyFailed
            } else {
                RunCondition::AllSucceeded
            };
            Step {
                kind: None,
                deps,
                attempts: 1 + rng.below(3) as u32,
                timeout: rng
                    .chance(40)
                    .then(|| Duration::from_secs(30 + rng.below(60))),
                claim: rng
                    .chance(20)
                    .then(|| rng.below(CLAIMS.len() as u64) as usize),
                condition,
            }
        })
        .collect()
}

fn workflow(run: usize, steps: &[Step]) -> Workflow {
    let role = Role::new("worker").expect("role");
    let mut b = Workflow::builder(format!("w{run}"));
    for (i, s) in steps.iter().enumerate() {
        let mut spec = StepSpec::new(format!("r{run}s{i}"))
            .with_role(role.clone())
            .with_condition(s.condition)
            .with_retry(
                RetryPolicy::exponential(s.attempts).with_initial_backoff(Duration::from_secs(1)),
            );
        if let Some(t) = s.timeout {
            spec = spec.with_timeout(t);
        }
        if let Some(kind) = s.kind {
            spec = spec.with_kind(kind);
        }
        if let Some(c) = s.claim {
            spec = spec.with_claim(Claim::exclusive(CLAIMS[c]));
        }
        for d in &s.deps {
            spec = spec.after(format!("r{run}s{d}"));
        }
        b.push(spec);
    }
    b.build().expect("a random DAG of earlier steps is valid")
}

/// Something the operator does at a simulated second.
#[derive(Debug, Clone, Copy)]
enum Act {
    SafeMode(bool),
    Offline(u64),
    Online(u64),
    Cancel(usize),
    Decide(bool),
    /// The host gives up on run `r` by dropping its future (a timeout around it),
    /// and never resumes it in this process: what the coordinator held for it must
    /// come back to the fleet.
    GiveUp(usize),
    /// The agent of the oldest running task leaves service mid-step and is back
    /// this many seconds later: its attempt is handed back and made again, perhaps
    /// on another agent, and counts for nothing (no duty done by the agent).
    Evict(u64),
}

/// Runs one seed of workflows.
pub fn run_workflows(seed: u64, mode: Mode) -> Result<Report, Failure> {
    let mut rng = Rng::new(seed ^ 0x5EED_F10E);
    let start = Timestamp::from_secs(1_000_000);
    let clock = ManualClock::new(start);
    let timer = SimulatedTimer::new(clock.clone());
    // Half the seeds count a failed attempt as the duty done (the default), half only
    // a duty performed (drawn apart from the world's draws, which stay as they were).
    let count_failed = Rng::new(seed ^ 0x00FA_11ED).chance(50);
    let policies = || {
        PolicySet::default()
            .with_rule(SeparationOfDuties::default().counting_failed(count_failed))
            .expect("the rule")
    };
    let builder = || {
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).expect("rules"))
            .policies(policies())
            .journaled()
    };
    let coordinator = Arc::new(builder().build());
    let books = Arc::new(Mutex::new(Books::default()));
    let faults = Arc::new(AtomicBool::new(true));
    let shared_rng = Arc::new(Mutex::new(Rng::new(rng.next())));
    let agents = 1 + rng.below(3);
    let slots: Vec<u32> = (0..agents).map(|_| 1 + rng.below(2) as u32).collect();
    let register = |c: &Coordinator| {
        for k in 1..=agents {
            c.register_agent(
                AgentProfile::new(AgentId::new(k), format!("w{k}"))
                    .with_role(Role::new("worker").expect("role"))
                    .with_max_tasks(slots[k as usize - 1]),
            )
            .expect("register");
        }
    };
    register(&coordinator);
    // What the host keeps at every change of a run: the coordinator's journal (with
    // a checkpoint now and then) and that run's checkpoint.
    type Checkpoints = Arc<Mutex<(MemoryJournal, BTreeMap<String, String>, u64)>>;
    let saved: Checkpoints = Arc::default();
    // Half the seeds hand every attempt to a runtime of their own (drawn apart from
    // the world's draws, which stay as they were).
    let mut spawn_rng = Rng::new(seed ^ 0x5A4D_0A7E);
    let runtime = Runtime::new(spawn_rng.next());
    let spawned = spawn_rng.chance(50);
    let executor_over = |c: &Arc<Coordinator>| {
        let (sink, coordinator) = (Arc::clone(&saved), Arc::clone(c));
        let mut e = Executor::new(Arc::clone(c), timer.clone()).with_observer(
            move |run: &Run, _: &[RunEvent]| {
                let mut saved = sink.lock();
                let (journal, runs, writes) = &mut *saved;
                *writes += 1;
                let written = if *writes % 32 == 0 {
                    coordinator.checkpoint(journal).map(|()| journal.compact())
                } else {
                    coordinator.write_journal(journal)
                };
                written.expect("one writer appends in order");
                let json = serde_json::to_string(&run.snapshot()).expect("json");
                runs.insert(run.id().to_owned(), json);
            },
        );
        if spawned {
            e = e.with_spawner(runtime.clone());
        }
        for k in 1..=agents {
            e = e.with_agent(Arc::new(Faulty {
                id: AgentId::new(k),
                clock: clock.clone(),
                timer: timer.clone(),
                rng: Arc::clone(&shared_rng),
                faults: Arc::clone(&faults),
                books: Arc::clone(&books),
            }));
        }
        e
    };
    let executor = executor_over(&coordinator);
    let runs = 2 + rng.below(4) as usize;
    let mut plans: Vec<Vec<Step>> = (0..runs).map(|_| random_steps(&mut rng)).collect();
    // Some runs deploy first and verify last, so separation of duties keeps an agent
    // that deployed from verifying, on a fleet too small to have one free at once
    // (drawn apart from the world's draws, which stay as they were).
    let mut duty_rng = Rng::new(seed ^ 0xD0_7135);
    for plan in &mut plans {
        if duty_rng.chance(40) {
            plan[0].kind = Some("deploy");
            if let Some(last) = plan.last_mut() {
                last.kind = Some("verify");
            }
        }
    }
    let workflows: Vec<Workflow> = plans
        .iter()
        .enumerate()
        .map(|(r, s)| workflow(r, s))
        .collect();
    // The operator's acts over the first ten simulated minutes; then faults stop.
    let quiet_at = Duration::from_secs(match mode {
        Mode::Safety => 600,
        Mode::Liveness => 60 + rng.below(540),
    });
    let mut acts: Vec<(u64, Act)> = (0..rng.below(8))
        .map(|_| {
            let at = rng.below(quiet_at.as_secs());
            let act = match rng.below(6) {
                0 => Act::SafeMode(rng.chance(50)),
                1 => Act::Offline(1 + rng.below(agents)),
                2 => Act::Online(1 + rng.below(agents)),
                3 => Act::Cancel(rng.below(runs as u64) as usize),
                _ => Act::Decide(rng.chance(60)),
            };
            (at, act)
        })
        .collect();
    // Some seeds give up on one run (drawn apart from the world's draws, which stay
    // as they were).
    let mut give_up_rng = Rng::new(seed ^ 0x6172_E0B0);
    if give_up_rng.chance(35) {
        let at = give_up_rng.below(quiet_at.as_secs().min(20));
        acts.push((at, Act::GiveUp(give_up_rng.below(runs as u64) as usize)));
    }
    // Some seeds take the agent of a running task out of service for a moment,
    // early, while the runs' first steps (a deploy among them) run (drawn apart from
    // the world's draws, which stay as they were).
    let mut evict_rng = Rng::new(seed ^ 0xE71C_7ED0);
    if evict_rng.chance(50) {
        for _ in 0..1 + evict_rng.below(3) {
            let at = evict_rng.below(quiet_at.as_secs().min(30));
            acts.push((at, Act::Evict(1 + evict_rng.below(5))));
        }
    }
    acts.sort_by_key(|(at, _)| *at);
    // Some seeds crash the host at a random time while faults go on.
    let crash_at = rng
        .chance(40)
        .then(|| start + Duration::from_secs(1 + rng.below(quiet_at.as_secs())));

    let futures: Vec<_> = workflows
        .iter()
        .enumerate()
        .map(|(r, w)| executor.run(w, &format!("run-{r}"), seed.wrapping_add(r as u64)))
        .collect();
    let handles: Vec<_> = futures.iter().map(|f| f.handle()).collect();
    // Each run's future can be dropped where it stands, as a host's timeout would.
    let (aborts, futures): (Vec<AbortHandle>, Vec<_>) = futures
        .into_iter()
        .map(|f| {
            let (abort, registration) = AbortHandle::new_pair();
            (abort, Abortable::new(f, registration))
        })
        .unzip();
    let given_up: Mutex<BTreeSet<usize>> = Mutex::default();
    let ended_at = Arc::new(Mutex::new(None::<Timestamp>));
    // What went wrong when the operator started or resumed a live run's id again.
    let twin: Mutex<Option<String>> = Mutex::new(None);
    let operator = async {
        for (at, act) in &acts {
            timer.sleep_until(start + Duration::from_secs(*at)).await;
            match *act {
                Act::SafeMode(on) => {
                    coordinator.set_mode(if on {
                        SystemMode::SafeMode
                    } else {
                        SystemMode::Normal
                    });
                }
                Act::Offline(k) | Act::Online(k) => {
                    let to = if matches!(act, Act::Offline(_)) {
                        AgentStatus::Offline
                    } else {
                        AgentStatus::Available
                    };
                    let _ = coordinator.set_agent_status(AgentId::new(k), to);
                }
                Act::Cancel(r) => {
                    // A run given up is no longer live: its id is free again.
                    let live = !given_up.lock().contains(&r);
                    if live && handles[r].progress().outcome.is_none() {
                        if let Some(wrong) =
                            start_twins(&executor, &workflows[r], r, &coordinator, &timer)
                        {
                            twin.lock().get_or_insert(wrong);
                        }
                    }
                    handles[r].cancel();
                }
                Act::GiveUp(r) => {
                    if handles[r].progress().outcome.is_none() {
                        aborts[r].abort();
                        given_up.lock().insert(r);
                    }
                }
                Act::Evict(back_after) => {
                    let oldest = coordinator
                        .assignments()
                        .into_iter()
                        .min_by_key(|a| a.task.id());
                    if let Some(a) = oldest {
                        let _ = coordinator.set_agent_status(a.agent, AgentStatus::Offline);
                        timer
                            .sleep_until(clock.now() + Duration::from_secs(back_after))
                            .await;
                        let _ = coordinator.set_agent_status(a.agent, AgentStatus::Available);
                    }
                }
                Act::Decide(approve) => {
                    let decision = if approve {
                        HumanDecision::Approve
                    } else {
                        HumanDecision::Deny
                    };
                    for c in coordinator.open_conflicts() {
                        let _ = coordinator.decide(c.conflict.id(), decision, Decider::Human);
                    }
                }
            }
        }
        timer.sleep_until(start + quiet_at).await;
        // Faults stop: agents answer right, everyone is back, normal mode, and the
        // orchestrator approves every conflict as it comes.
        faults.store(false, Ordering::SeqCst);
        coordinator.set_mode(SystemMode::Normal);
        for k in 1..=agents {
            let _ = coordinator.set_agent_status(AgentId::new(k), AgentStatus::Available);
        }
        let bound = start + quiet_at + LIVENESS_BOUND;
        let going = || {
            let given_up = given_up.lock();
            (handles.iter().enumerate())
                .any(|(r, h)| h.progress().outcome.is_none() && !given_up.contains(&r))
        };
        while going() && clock.now() < bound {
            for c in coordinator.open_conflicts() {
                let _ = coordinator.decide(
                    c.conflict.id(),
                    HumanDecision::Approve,
                    Decider::Orchestrator,
                );
            }
            timer
                .sleep_until(clock.now() + Duration::from_secs(30))
                .await;
        }
        *ended_at.lock() = Some(clock.now());
    };
    let both = futures::future::join(join_all(futures), operator);
    let phase = match crash_at {
        None => {
            // Every run ends within the bound in simulated time, or the seed fails
            // here instead of waiting for ever (a run stuck behind slots a given-up
            // run still held hung the world).
            let bound = timer.sleep_until(start + quiet_at + 2 * LIVENESS_BOUND);
            let ended = futures::executor::block_on(runtime.beside(async {
                futures::pin_mut!(both);
                match futures::future::select(both, bound).await {
                    futures::future::Either::Left(((runs, ()), _)) => Some(runs),
                    futures::future::Either::Right(((), _)) => None,
                }
            }));
            let Some(runs) = ended else {
                let detail = format!(
                    "runs still going at the bound; the coordinator holds {} and has {} waiting",
                    coordinator.assignments().len(),
                    coordinator.waiting().len()
                );
                return Err(crash_failure(seed, mode, "runs_end", detail));
            };
            Some(runs)
        }
        Some(at) => {
            let crash = timer.sleep_until(at);
            futures::executor::block_on(runtime.beside(async {
                futures::pin_mut!(both);
                match futures::future::select(both, crash).await {
                    futures::future::Either::Left(((runs, ()), _)) => Some(runs),
                    futures::future::Either::Right(((), _)) => None,
                }
            }))
        }
    };
    let mut crashed = false;
    let mut replayed = 0;
    let mut coordinator = coordinator;
    let results = match phase {
        Some(results) => results,
        None => {
            // The crash: everything in memory is gone but the checkpoints. The host
            // restarts in normal mode with its agents back, and faults stop.
            crashed = true;
            drop(executor);
            runtime.crash();
            faults.store(false, Ordering::SeqCst);
            let (journal, run_json, _) = saved.lock().clone();
            let from = journal
                .load_checkpoint()
                .expect("in memory")
                .map_or(1, |c| c.journal_next);
            replayed = journal.records().iter().filter(|r| r.seq >= from).count() as u64;
            // What the coordinator did after the last write is lost with it.
            let restored = builder()
                .recover(&journal)
                .map_err(|e| crash_failure(seed, mode, "journal_replays", e.to_string()))?;
            if restored.with_registry(|r| r.is_empty()) {
                register(&restored);
            }
            let restored = Arc::new(restored);
            restored.set_mode(SystemMode::Normal);
            for k in 1..=agents {
                let _ = restored.set_agent_status(AgentId::new(k), AgentStatus::Available);
            }
            let mut succeeded_at_crash = Vec::new();
            let mut resumed = Vec::new();
            for (r, w) in workflows.iter().enumerate() {
                let id = format!("run-{r}");
                let run = match run_json.get(&id) {
                    Some(json) => {
                        let snapshot: RunSnapshot = serde_json::from_str(json).expect("own json");
                        for st in &snapshot.steps {
                            if st.status == StepStatus::Succeeded {
                                succeeded_at_crash.push(st.name.clone());
                            }
                        }
                        Run::restore(w, snapshot).map_err(|e| {
                            crash_failure(seed, mode, "checkpoint_restores", e.to_string())
                        })?
                    }
                    None => w.start_run(id.as_str(), seed.wrapping_add(r as u64), restored.now()),
                };
                resumed.push(run);
            }
            let done_before = books.lock().succeeded.clone();
            let executor = executor_over(&restored);
            let futures: Vec<_> = resumed
                .into_iter()
                .map(|run| executor.resume(run))
                .collect();
            let handles: Vec<_> = futures.iter().map(|f| f.handle()).collect();
            let approver = async {
                while handles.iter().any(|h| h.progress().outcome.is_none()) {
                    for c in restored.open_conflicts() {
                        let _ = restored.decide(
                            c.conflict.id(),
                            HumanDecision::Approve,
                            Decider::Orchestrator,
                        );
                    }
                    timer
                        .sleep_until(clock.now() + Duration::from_secs(30))
                        .await;
                }
            };
            // Every resumed run ends within the bound in simulated time, or the seed
            // fails here instead of waiting for ever.
            let bound = clock.now() + 2 * LIVENESS_BOUND;
            let all = Box::pin(futures::future::join(join_all(futures), approver));
            let sleep = Box::pin(timer.sleep_until(bound));
            let (results, ()) = match futures::executor::block_on(
                runtime.beside(futures::future::select(all, sleep)),
            ) {
                futures::future::Either::Left((ended, sleep)) => {
                    drop(sleep);
                    ended
                }
                futures::future::Either::Right(((), all)) => {
                    drop(all);
                    return Err(crash_failure(
                        seed,
                        mode,
                        "runs_end",
                        "resumed runs still going at the bound".to_owned(),
                    ));
                }
            };
            let done_after = books.lock().succeeded.clone();
            for name in &succeeded_at_crash {
                if done_after.get(name) != done_before.get(name) {
                    return Err(crash_failure(
                        seed,
                        mode,
                        "no_finished_step_runs_again",
                        format!("{name} had succeeded at the checkpoint and was done again"),
                    ));
                }
            }
            drop(executor);
            coordinator = restored;
            // Every run was resumed, those given up before the crash too.
            results.into_iter().map(Ok).collect()
        }
    };

    let fail = |invariant: &'static str, detail: String| Failure {
        seed,
        mode,
        step: 0,
        invariant,
        detail,
        last: coordinator
            .drain_events()
            .iter()
            .rev()
            .take(40)
            .rev()
            .map(|e| e.to_string())
            .collect(),
    };
    let mut report = Report {
        steps: 0,
        tasks: 0,
        ..Report::default()
    };
    let mut hash = super::Fnv::new();
    for (r, result) in results.into_iter().enumerate() {
        // Given up: nothing of it is left in the coordinator (checked below).
        let Ok(result) = result else {
            report.given_up += 1;
            continue;
        };
        let run = result.map_err(|e| fail("runs_end", format!("run {r}: {e}")))?;
        if run.outcome().is_none() {
            return Err(fail("runs_end", format!("run {r} did not end")));
        }
        report.steps += run.history().len() as u64;
        report.tasks += plans[r].len() as u64;
        for e in run.history() {
            hash.write(format!("{r} {} {:?}", e.step.index(), e.change).as_bytes());
        }
        check_history(&plans[r], run.history())
            .map_err(|d| fail("steps_in_order", format!("run {r}: {d}")))?;
        check_final_failures(run.history())
            .map_err(|d| fail("final_failures_not_retried", format!("run {r}: {d}")))?;
        check_separated(&plans[r], run.history())
            .map_err(|d| fail("duties_separated", format!("run {r}: {d}")))?;
        check_abandoned(&plans[r], agents, count_failed, run.history()).map_err(|d| {
            fail(
                "abandoned_only_when_no_agent_could_take_it",
                format!("run {r}: {d}"),
            )
        })?;
        for (step, spec) in workflows[r].steps() {
            let made = run.attempts(step).unwrap_or(0);
            if made > spec.retry().max_attempts() {
                return Err(fail(
                    "attempts_within_policy",
                    format!("run {r} {}: {made} attempts", spec.name()),
                ));
            }
        }
        if run.outcome() == Some(RunOutcome::Cancelled) {
            report.cancelled += 1;
        }
    }
    if let Some(wrong) = twin.lock().take() {
        return Err(fail("live_ids_refused", wrong));
    }
    let b = books.lock();
    if let Some(o) = &b.overlap {
        return Err(fail("one_attempt_at_a_time", o.clone()));
    }
    for (agent, peak) in &b.peak {
        let slots = coordinator
            .with_registry(|r| r.get(*agent).map(|v| v.max_tasks()))
            .unwrap_or(0);
        if *peak > slots {
            return Err(fail(
                "no_over_allocation",
                format!("{agent} ran {peak} at once on {slots} slots"),
            ));
        }
    }
    if !coordinator.assignments().is_empty() || !coordinator.waiting().is_empty() {
        return Err(fail(
            "nothing_left_behind",
            format!(
                "running {:?}, waiting {:?}",
                coordinator.assignments().len(),
                coordinator.waiting().len()
            ),
        ));
    }
    if mode == Mode::Liveness {
        let ended = ended_at.lock().unwrap_or(start);
        if ended >= start + quiet_at + LIVENESS_BOUND {
            return Err(fail(
                "everything_finishes",
                "runs still going at the bound".to_owned(),
            ));
        }
    }
    report.agent_faults = b.faults;
    report.crashes = u64::from(crashed);
    report.records_replayed = replayed;
    report.simulated = clock.now().duration_since(start);
    report.checks = 7;
    report.trace_hash = hash.0;
    Ok(report)
}

/// Starts and resumes a second run under live run `r`'s id, as a careless host
/// would (the trial's runs that hung), through its executor and through a second
/// executor over the same coordinator (which started the twin, and both hung): each
/// must be refused at once with `RunInProgress`, and the coordinator must hold what
/// it held. Draws nothing from the seed, so the scene plays out as without it. What
/// went wrong, if anything.
fn start_twins(
    executor: &Executor,
    workflow: &Workflow,
    r: usize,
    coordinator: &Arc<Coordinator>,
    timer: &SimulatedTimer,
) -> Option<String> {
    use futures::FutureExt;
    let id = format!("run-{r}");
    let held = |c: &Coordinator| (c.assignments().len(), c.waiting().len());
    let before = held(coordinator);
    let started = executor.run(workflow, &id, 0).now_or_never();
    let resumed = executor
        .resume(workflow.start_run(id.as_str(), 0, coordinator.now()))
        .now_or_never();
    let other = Executor::new(Arc::clone(coordinator), timer.clone());
    let elsewhere = other.run(workflow, &id, 0).now_or_never();
    for (how, said) in [
        ("start", started),
        ("resume", resumed),
        ("start on a second executor", elsewhere),
    ] {
        match said {
            Some(Err(ExecutorError::RunInProgress { run })) if run == id => {}
            other => return Some(format!("{how} of live {id}: {other:?}")),
        }
    }
    let after = held(coordinator);
    (after != before)
        .then(|| format!("refused twins of {id} changed the coordinator: {before:?} -> {after:?}"))
}

/// No step starts before each of its dependencies has ended for good.
fn check_history(steps: &[Step], history: &[RunEvent]) -> Result<(), String> {
    let mut ended = vec![false; steps.len()];
    for e in history {
        let i = e.step.index();
        match e.change {
            StepChange::Started => {
                if let Some(d) = steps[i].deps.iter().find(|d| !ended[**d]) {
                    return Err(format!("s{i} started before s{d} ended"));
                }
            }
            StepChange::Succeeded { .. }
            | StepChange::Skipped { .. }
            | StepChange::SkippedByAgent { .. }
            | StepChange::Abandoned { .. }
            | StepChange::AttemptFailed { retry_at: None, .. } => ended[i] = true,
            _ => {}
        }
    }
    Ok(())
}

/// A failure the agent reports final (`WorkOutput::failure`, "it broke") ends its
/// step at that attempt: no retry is set, the history says it was not retryable,
/// and the step never starts again; a retryable one ("try again") is never taken
/// for final. Guards the bug where every failure was retried while attempts
/// remained.
fn check_final_failures(history: &[RunEvent]) -> Result<(), String> {
    let mut ended = BTreeSet::new();
    for e in history {
        let i = e.step.index();
        match &e.change {
            StepChange::Started if ended.contains(&i) => {
                return Err(format!("s{i} started again after a final failure"));
            }
            StepChange::AttemptFailed {
                reason,
                retry_at,
                retryable,
            } => {
                let is_final = reason == "it broke";
                if is_final && (retry_at.is_some() || *retryable) {
                    return Err(format!(
                        "s{i} attempt {}: a final failure was retried ({:?})",
                        e.attempt, e.change
                    ));
                }
                if !is_final && !*retryable {
                    return Err(format!(
                        "s{i} attempt {}: a retryable failure was taken for final ({:?})",
                        e.attempt, e.change
                    ));
                }
                if is_final {
                    ended.insert(i);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// An agent that performed `deploy` in a run never starts `verify` in it after, nor
/// the other way round: a duty that succeeded counts under every setting of the
/// rule. (A failed attempt's count depends on the setting and on whether it ended
/// with an outcome; [`check_abandoned`] reads those.)
fn check_separated(steps: &[Step], history: &[RunEvent]) -> Result<(), String> {
    // Each step's agent in its latest attempt, and who performed each duty.
    let mut on: BTreeMap<usize, AgentId> = BTreeMap::new();
    let mut performed: BTreeSet<(&str, AgentId)> = BTreeSet::new();
    for e in history {
        let i = e.step.index();
        let Some(kind) = steps[i].kind else {
            continue;
        };
        match e.change {
            StepChange::Started => {
                let Some(agent) = e.agent else {
                    continue;
                };
                let other = if kind == "deploy" { "verify" } else { "deploy" };
                if performed.contains(&(other, agent)) {
                    return Err(format!(
                        "s{i} ({kind}) started on {agent}, which did {other}"
                    ));
                }
                on.insert(i, agent);
            }
            StepChange::Succeeded { .. } => {
                if let Some(agent) = on.get(&i) {
                    performed.insert((kind, *agent));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A step is given up for want of an agent only when none could ever take it: in
/// this fleet, where every agent has the role and the room, only a `deploy` or
/// `verify` step when every agent in its run had done the other of the pair by then
/// (separation of duties bars them all; the workflow may order the two either way).
/// Done means an attempt that ended before the step was given up, having succeeded
/// (or been skipped by its agent), or having failed where the rule counts failures
/// (`count_failed`). An attempt still in progress then does not count (its outcome
/// was not known yet), nor one interrupted (by a crash, or its agent leaving
/// service) or cancelled: its agent did not do the duty.
fn check_abandoned(
    steps: &[Step],
    agents: u64,
    count_failed: bool,
    history: &[RunEvent],
) -> Result<(), String> {
    // Per step, the agent of its attempt in progress; per duty, the agents done.
    let mut open: BTreeMap<usize, AgentId> = BTreeMap::new();
    let mut done: BTreeSet<(&str, AgentId)> = BTreeSet::new();
    for e in history {
        let i = e.step.index();
        let counts = match &e.change {
            StepChange::Started => {
                if let Some(agent) = e.agent {
                    open.insert(i, agent);
                }
                continue;
            }
            StepChange::Succeeded { .. } | StepChange::SkippedByAgent { .. } => true,
            StepChange::AttemptFailed { .. } => count_failed,
            StepChange::Interrupted { .. } | StepChange::Cancelled => false,
            StepChange::Abandoned { reason } => {
                let other = match steps[i].kind {
                    Some("deploy") => "verify",
                    Some("verify") => "deploy",
                    _ => "",
                };
                if reason.starts_with("no agent can ever take it")
                    && !(1..=agents).all(|k| done.contains(&(other, AgentId::new(k))))
                {
                    let by: Vec<AgentId> = (done.iter())
                        .filter(|(d, _)| *d == other)
                        .map(|(_, a)| *a)
                        .collect();
                    return Err(format!(
                        "s{i} ({:?}) abandoned ({reason}), {other} done by {by:?} of {agents} agents",
                        steps[i].kind
                    ));
                }
                continue;
            }
            _ => continue,
        };
        if let (Some(agent), Some(kind)) = (open.remove(&i), steps[i].kind) {
            if counts {
                done.insert((kind, agent));
            }
        }
    }
    Ok(())
}

fn crash_failure(seed: u64, mode: Mode, invariant: &'static str, detail: String) -> Failure {
    Failure {
        seed,
        mode,
        step: 0,
        invariant,
        detail,
        last: Vec::new(),
    }
}
