//! The emergency procedures' built-in actions: the runbook steps whose work is the
//! coordinator's own, carried out by the library instead of handed to a host agent.
//!
//! [`Builtins`] is an [`Agent`] like any other: registered with the coordinator
//! (role [`BUILTIN_ROLE`], see [`Builtins::profile`]) and given to the
//! [`Executor`](super::Executor), it takes the runbooks' built-in steps, so they are
//! assigned, journaled, timed out and retried as every step is, and their outputs
//! are recorded in the run. Safe mode admits its work
//! ([`SafeModeRule`](crate::policy::SafeModeRule)): it is how the system gets out.
//!
//! It acts through the [`Coordinator`] (modes, quarantine, the communications stop,
//! agents' statuses), the agents' shared [`Memory`] guard when the host attaches one,
//! and the agents' own [`health`](Agent::health) answers, the gate between restart
//! waves. Every action is idempotent (setting a mode that is set, quarantining an
//! agent already quarantined, fencing a fenced memory change nothing), so the
//! default [`Agent::recover`] (do it again) is right after a crash.
//!
//! The host's part stays with the host's agents: diagnosis, scans, patches, and
//! restarting a process (through a [`Restarter`], when the host has one; without it
//! a restart wave waits for agents that a supervisor brings back, and checks them).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::agent::{
    Agent, AgentError, AgentHealth, AgentProfile, AgentStatus, WorkItem, WorkOutput,
};
use crate::coordinator::{Coordinator, Decider};
use crate::id::{AgentId, Role};
use crate::memory::{Backup, Memory, MemoryStore, last_good_backup};
use crate::policy::{BUILTIN_ROLE, SystemMode};

/// The kinds of work [`Builtins`] carries out, as the runbooks' steps name them.
pub mod kinds {
    /// Enters safe mode (no new work but the recovery's), and takes a backup of the
    /// agents' memory when one is attached: the procedure's "preserve current
    /// state". Outputs `mode`, `running`, `waiting` (counts), and `backup` (its id)
    /// when memory is attached.
    pub const ENTER_SAFE_MODE: &str = "enter_safe_mode";
    /// Leaves safe mode, only when every agent the built-ins watch (but those
    /// quarantined) is in service and answers its health check:
    /// the last restart wave's gate, checked again. A retryable failure, naming
    /// the agents, otherwise.
    pub const EXIT_SAFE_MODE: &str = "exit_safe_mode";
    /// Restarts the watched agents that are offline or unhealthy, a wave at a time
    /// ([`Builtins::with_wave_size`](super::Builtins::with_wave_size)): each agent
    /// of a wave is restarted (by the host's [`Restarter`](super::Restarter), if
    /// any) and must then answer its health check before the next wave starts; it
    /// is then back in service. A wave whose gate fails stops the step with a
    /// retryable failure naming the agents; a retry goes on from there. Outputs
    /// `restarted` (the agents, comma-separated) and `waves`.
    pub const RESTART_AGENTS: &str = "restart_agents";
    /// Quarantines the agents reported as affected
    /// ([`Builtins::report_affected`](super::Builtins::report_affected)), each with
    /// its evidence. Outputs `isolated`: every agent now in quarantine.
    pub const ISOLATE_AGENTS: &str = "isolate_agents";
    /// Stops external communications
    /// ([`Coordinator::stop_communications`](crate::coordinator::Coordinator::stop_communications)).
    /// Outputs `since`.
    pub const STOP_EXTERNAL_COMMS: &str = "stop_external_comms";
    /// Preserves the evidence: a backup of the agents' memory as it is, when one is
    /// attached (kept, suspect entries and all), and the record of who is in
    /// quarantine. Outputs `quarantined`, `backup` and `suspect` (counts of suspect
    /// entries), the latter two with memory attached.
    pub const PRESERVE_EVIDENCE: &str = "preserve_evidence";
    /// Stops memory writes ([`Memory::fence`](crate::memory::Memory::fence)).
    pub const STOP_MEMORY_WRITES: &str = "stop_memory_writes";
    /// Backs up the memory as it is, corruption included, as evidence. Outputs
    /// `backup`, `entries`, `suspect`.
    pub const BACKUP_MEMORY: &str = "backup_memory";
    /// Validates the memory and locates the corruption. Outputs `corrupt` (a count)
    /// and `extent` (in words, with the first keys).
    pub const ASSESS_MEMORY: &str = "assess_memory";
    /// Fails over to the standby store when one is attached and holds exactly
    /// what memory should; else restores the last clean backup kept. A corrupt or
    /// suspect backup is never loaded. Outputs `restored_from`.
    pub const RESTORE_MEMORY: &str = "restore_memory";
    /// Validates the memory again: success only when nothing is corrupt.
    pub const VERIFY_MEMORY: &str = "verify_memory";
    /// Lifts the write fence, only when the last validation found memory clean.
    pub const RESUME_MEMORY_WRITES: &str = "resume_memory_writes";

    /// Every kind, in the order above.
    pub const ALL: [&str; 12] = [
        ENTER_SAFE_MODE,
        EXIT_SAFE_MODE,
        RESTART_AGENTS,
        ISOLATE_AGENTS,
        STOP_EXTERNAL_COMMS,
        PRESERVE_EVIDENCE,
        STOP_MEMORY_WRITES,
        BACKUP_MEMORY,
        ASSESS_MEMORY,
        RESTORE_MEMORY,
        VERIFY_MEMORY,
        RESUME_MEMORY_WRITES,
    ];
}

/// How the host restarts an agent (a process, a container, a remote worker): the
/// built-ins' restart waves call it, then wait for the agent's health check.
#[async_trait::async_trait]
pub trait Restarter: fmt::Debug + Send + Sync + 'static {
    /// Restarts `agent`, returning once it has been started (not once it is
    /// healthy: the wave's gate asks it).
    async fn restart(&self, agent: AgentId) -> Result<(), AgentError>;
}

/// The agent that carries out the emergency procedures' built-in actions (see the
/// [module docs](self) and [`kinds`]).
///
/// The memory corruption procedure, all of it built in: writes stop, the corrupt
/// state is kept, the damage located, the last clean backup restored, checked, and
/// writes resume.
///
/// ```
/// use std::sync::Arc;
/// use concord::coordinator::Coordinator;
/// use concord::memory::{InMemoryStore, Memory};
/// use concord::workflow::{Builtins, Executor, RunOutcome, SimulatedTimer, runbooks};
/// use concord::{AgentId, Clock, ManualClock, Timestamp};
/// use futures::executor::block_on;
///
/// let clock = ManualClock::new(Timestamp::from_secs(1_000));
/// let coordinator = Arc::new(Coordinator::builder().clock(clock.clone()).build());
/// let store = Arc::new(InMemoryStore::new());
/// let memory = Arc::new(Memory::new(store.clone()));
/// block_on(memory.put("plan", b"deploy the api".to_vec()))?;
///
/// let builtins = Arc::new(
///     Builtins::new(Arc::clone(&coordinator), AgentId::new(100)).with_memory(Arc::clone(&memory)),
/// );
/// builtins.keep_backup(block_on(memory.backup(clock.now()))?); // last night's backup
/// coordinator.register_agent(builtins.profile())?;
/// store.corrupt("plan"); // a bit flips on disk
///
/// let executor = Executor::new(Arc::clone(&coordinator), SimulatedTimer::new(clock))
///     .with_agent(builtins.clone());
/// let run = block_on(executor.run(&runbooks::memory_corruption_recovery(), "memory-1", 7))?;
/// assert_eq!(run.outcome(), Some(RunOutcome::Succeeded));
/// let extent = run.outputs("assess_corruption").and_then(|o| o.get("extent")).cloned();
/// assert_eq!(extent.as_deref(), Some("1 of 1 entries corrupt: plan"));
/// assert_eq!(block_on(memory.get("plan"))?, Some(b"deploy the api".to_vec()));
/// assert!(memory.fenced().is_none(), "writes resumed once memory checked clean");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Builtins {
    id: AgentId,
    coordinator: Arc<Coordinator>,
    memory: Option<Arc<Memory>>,
    standby: Option<Arc<dyn MemoryStore>>,
    restarter: Option<Arc<dyn Restarter>>,
    wave_size: usize,
    max_tasks: u32,
    inner: Mutex<Inner>,
}

/// What the built-ins keep between steps.
#[derive(Default)]
struct Inner {
    /// The agents whose health gates a restart wave and the exit from safe mode.
    watched: BTreeMap<AgentId, Arc<dyn Agent>>,
    /// The agents reported as affected by a breach, not yet isolated, with why.
    affected: BTreeMap<AgentId, String>,
    /// The memory backups taken or handed in, oldest first.
    backups: Vec<Backup>,
}

impl fmt::Debug for Builtins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("Builtins")
            .field("id", &self.id)
            .field("memory", &self.memory.is_some())
            .field("standby", &self.standby.is_some())
            .field("restarter", &self.restarter)
            .field("wave_size", &self.wave_size)
            .field("watched", &inner.watched.keys().collect::<Vec<_>>())
            .field("affected", &inner.affected)
            .field("backups", &inner.backups.len())
            .finish()
    }
}

/// A failure that trying again will not mend.
fn fail(reason: impl Into<String>) -> WorkOutput {
    WorkOutput::failure(reason)
}

/// Why a built-in acted, for the records it leaves: the step and its run.
fn reason(work: &WorkItem) -> String {
    match work.run() {
        Some(run) => format!("runbook step `{}` of run {run}", work.description()),
        None => format!("built-in action `{}`", work.kind()),
    }
}

/// Agents as a comma-separated list (`agent#1, agent#4`).
fn list(agents: impl IntoIterator<Item = AgentId>) -> String {
    agents
        .into_iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Builtins {
    /// The built-ins acting on `coordinator`, as agent `id`; no memory attached, no
    /// agent watched, restarts in waves of 2.
    pub fn new(coordinator: Arc<Coordinator>, id: AgentId) -> Self {
        Builtins {
            id,
            coordinator,
            memory: None,
            standby: None,
            restarter: None,
            wave_size: 2,
            max_tasks: 8,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Attaches the agents' shared memory, for the memory corruption procedure and
    /// the evidence backups.
    pub fn with_memory(mut self, memory: Arc<Memory>) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Attaches the standby memory store ("switch to the backup memory system"):
    /// the restore fails over to it when it holds exactly what memory should.
    pub fn with_standby(mut self, standby: Arc<dyn MemoryStore>) -> Self {
        self.standby = Some(standby);
        self
    }

    /// Sets how agents are restarted (default: none; a wave only checks the
    /// agents' health, for hosts whose supervisor restarts them).
    pub fn with_restarter(mut self, restarter: impl Restarter) -> Self {
        self.restarter = Some(Arc::new(restarter));
        self
    }

    /// Sets how many agents restart at once (default 2; at least 1).
    pub fn with_wave_size(mut self, agents: usize) -> Self {
        self.wave_size = agents.max(1);
        self
    }

    /// Watches `agent`: its health gates the restart waves and the exit from safe
    /// mode, and it is restarted when it is offline or unhealthy.
    pub fn watch(&self, agent: Arc<dyn Agent>) {
        self.inner.lock().watched.insert(agent.id(), agent);
    }

    /// Watches every agent of `agents` (see [`watch`](Self::watch)).
    pub fn watching(self, agents: impl IntoIterator<Item = Arc<dyn Agent>>) -> Self {
        for agent in agents {
            self.watch(agent);
        }
        self
    }

    /// Reports `agent` as affected by a breach, `why`: the next isolation step
    /// quarantines it.
    pub fn report_affected(&self, agent: AgentId, why: impl Into<String>) {
        self.inner.lock().affected.insert(agent, why.into());
    }

    /// Hands in a memory backup taken elsewhere (the daily one, a backup kept by the
    /// host across a restart): the restore step may load it.
    pub fn keep_backup(&self, backup: Backup) {
        self.inner.lock().backups.push(backup);
    }

    /// The memory backups kept, oldest first: the host's to store.
    pub fn backups(&self) -> Vec<Backup> {
        self.inner.lock().backups.clone()
    }

    /// The profile to register with the coordinator: this agent's id, named
    /// `coordinator`, role [`BUILTIN_ROLE`], no resources, 8 task slots.
    pub fn profile(&self) -> AgentProfile {
        let role =
            Role::new(BUILTIN_ROLE).unwrap_or_else(|_| unreachable!("valid role {BUILTIN_ROLE}"));
        AgentProfile::new(self.id, BUILTIN_ROLE)
            .with_role(role)
            .with_max_tasks(self.max_tasks)
    }

    fn memory(&self) -> Result<&Arc<Memory>, WorkOutput> {
        self.memory.as_ref().ok_or_else(|| {
            fail("no memory attached to the built-in actions (Builtins::with_memory)")
        })
    }

    async fn enter_safe_mode(&self) -> WorkOutput {
        self.coordinator.set_mode(SystemMode::SafeMode);
        let mut out = WorkOutput::success()
            .with_output("mode", SystemMode::SafeMode.to_string())
            .with_output("running", self.coordinator.running_count().to_string())
            .with_output("waiting", self.coordinator.waiting_count().to_string());
        if let Some(memory) = &self.memory {
            match memory.backup(self.coordinator.now()).await {
                Ok(backup) => {
                    out = out.with_output("backup", backup.id().to_string());
                    self.keep_backup(backup);
                }
                // Safe mode is in: the state it preserves in memory is not, and the
                // step says so rather than pass.
                Err(e) => return WorkOutput::retryable_failure(format!("memory backup: {e}")),
            }
        }
        out
    }

    /// The watched agents, with their status (those the coordinator does not know
    /// are left out: they are not the fleet's).
    fn watched(&self) -> Vec<(AgentId, Arc<dyn Agent>, AgentStatus)> {
        let watched: Vec<(AgentId, Arc<dyn Agent>)> = self
            .inner
            .lock()
            .watched
            .iter()
            .map(|(id, a)| (*id, Arc::clone(a)))
            .collect();
        self.coordinator.with_registry(|r| {
            watched
                .into_iter()
                .filter(|(id, _)| *id != self.id)
                .filter_map(|(id, a)| r.status(id).ok().map(|s| (id, a, s)))
                .collect()
        })
    }

    /// Asks `agent` for its health: `Err` with the reason when it does not answer.
    async fn gate(agent: &Arc<dyn Agent>) -> Result<(), String> {
        agent.health().await.map(drop).map_err(|e| e.to_string())
    }

    async fn exit_safe_mode(&self) -> WorkOutput {
        let mut failing = Vec::new();
        for (id, agent, status) in self.watched() {
            if status == AgentStatus::Quarantined {
                continue;
            }
            if !status.is_in_service() {
                failing.push(format!("{id} is {status}"));
            } else if let Err(e) = Self::gate(&agent).await {
                failing.push(format!("{id}: {e}"));
            }
        }
        if !failing.is_empty() {
            return WorkOutput::retryable_failure(format!(
                "safe mode kept: the gate failed ({})",
                failing.join("; ")
            ));
        }
        self.coordinator.set_mode(SystemMode::Normal);
        WorkOutput::success().with_output("mode", SystemMode::Normal.to_string())
    }

    async fn restart_agents(&self) -> WorkOutput {
        let down: Vec<(AgentId, Arc<dyn Agent>)> = self
            .watched()
            .into_iter()
            .filter(|(_, _, s)| matches!(s, AgentStatus::Offline | AgentStatus::Unhealthy))
            .map(|(id, a, _)| (id, a))
            .collect();
        let mut restarted = Vec::new();
        let waves = down.len().div_ceil(self.wave_size);
        for (n, wave) in down.chunks(self.wave_size).enumerate() {
            let mut failed = Vec::new();
            for (id, _) in wave {
                if let Some(r) = &self.restarter {
                    if let Err(e) = r.restart(*id).await {
                        failed.push(format!("{id} did not restart: {e}"));
                    }
                }
            }
            for (id, agent) in wave {
                if failed.iter().any(|f| f.starts_with(&format!("{id} "))) {
                    continue;
                }
                match Self::gate(agent).await {
                    Ok(()) => {
                        // Back in service: it may take work again (in safe mode,
                        // the recovery's only).
                        if let Err(e) = self
                            .coordinator
                            .set_agent_status(*id, AgentStatus::Available)
                        {
                            failed.push(format!("{id}: {e}"));
                        } else {
                            restarted.push(*id);
                        }
                    }
                    Err(e) => failed.push(format!("{id} failed its health check: {e}")),
                }
            }
            if !failed.is_empty() {
                return WorkOutput::retryable_failure(format!(
                    "wave {} of {waves} stopped at its gate: {}; restarted so far: [{}]",
                    n + 1,
                    failed.join("; "),
                    list(restarted.iter().copied())
                ))
                .with_output("restarted", list(restarted));
            }
        }
        WorkOutput::success()
            .with_output("restarted", list(restarted))
            .with_output("waves", waves.to_string())
    }

    fn isolate(&self) -> WorkOutput {
        let affected = std::mem::take(&mut self.inner.lock().affected);
        let mut left = BTreeMap::new();
        let mut errors = Vec::new();
        for (agent, why) in affected {
            if let Err(e) = self.coordinator.quarantine(agent, &why) {
                errors.push(format!("{agent}: {e}"));
                left.insert(agent, why);
            }
        }
        if !errors.is_empty() {
            // Kept for the retry: an agent the coordinator refused now (not yet
            // registered) may be there then.
            self.inner.lock().affected.extend(left);
            return WorkOutput::retryable_failure(format!(
                "could not isolate {}",
                errors.join("; ")
            ));
        }
        WorkOutput::success().with_output("isolated", list(self.quarantined()))
    }

    fn quarantined(&self) -> Vec<AgentId> {
        self.coordinator.with_registry(|r| {
            r.iter()
                .filter(|v| v.status() == AgentStatus::Quarantined)
                .map(|v| v.id())
                .collect()
        })
    }

    fn stop_comms(&self, work: &WorkItem) -> WorkOutput {
        let why = reason(work);
        self.coordinator
            .stop_communications(Decider::Orchestrator, &why);
        let since = self
            .coordinator
            .communications()
            .map(|s| s.since.to_string())
            .unwrap_or_default();
        WorkOutput::success().with_output("since", since)
    }

    async fn preserve_evidence(&self) -> WorkOutput {
        let mut out = WorkOutput::success().with_output("quarantined", list(self.quarantined()));
        if let Some(memory) = &self.memory {
            match memory.backup(self.coordinator.now()).await {
                Ok(backup) => {
                    out = out
                        .with_output("backup", backup.id().to_string())
                        .with_output("suspect", backup.suspect().len().to_string());
                    self.keep_backup(backup);
                }
                Err(e) => return WorkOutput::retryable_failure(format!("memory backup: {e}")),
            }
        }
        out
    }

    async fn stop_memory_writes(&self, work: &WorkItem) -> WorkOutput {
        let memory = match self.memory() {
            Ok(m) => m,
            Err(out) => return out,
        };
        memory.fence(reason(work), self.coordinator.now()).await;
        WorkOutput::success()
    }

    async fn backup_memory(&self) -> WorkOutput {
        let memory = match self.memory() {
            Ok(m) => m,
            Err(out) => return out,
        };
        match memory.backup(self.coordinator.now()).await {
            Ok(backup) => {
                let out = WorkOutput::success()
                    .with_output("backup", backup.id().to_string())
                    .with_output("entries", backup.len().to_string())
                    .with_output("suspect", backup.suspect().len().to_string());
                self.keep_backup(backup);
                out
            }
            Err(e) => WorkOutput::retryable_failure(format!("memory backup: {e}")),
        }
    }

    async fn assess_memory(&self) -> WorkOutput {
        let memory = match self.memory() {
            Ok(m) => m,
            Err(out) => return out,
        };
        match memory.validate().await {
            Ok(report) => {
                let keys = report.keys();
                let shown: Vec<&str> = keys.iter().take(10).copied().collect();
                let more = keys.len().saturating_sub(shown.len());
                let mut extent = format!("{} of {} entries corrupt", keys.len(), report.checked());
                if !shown.is_empty() {
                    extent.push_str(&format!(": {}", shown.join(", ")));
                }
                if more > 0 {
                    extent.push_str(&format!(" and {more} more"));
                }
                WorkOutput::success()
                    .with_output("corrupt", keys.len().to_string())
                    .with_output("extent", extent)
            }
            Err(e) => WorkOutput::retryable_failure(format!("memory validation: {e}")),
        }
    }

    async fn restore_memory(&self) -> WorkOutput {
        let memory = match self.memory() {
            Ok(m) => m,
            Err(out) => return out,
        };
        let mut tried = Vec::new();
        if let Some(standby) = &self.standby {
            match memory.switch_to(Arc::clone(standby)).await {
                Ok(_) => return WorkOutput::success().with_output("restored_from", "standby"),
                Err(e) => tried.push(format!("standby: {e}")),
            }
        }
        let backup = {
            let inner = self.inner.lock();
            last_good_backup(&inner.backups).cloned()
        };
        let Some(backup) = backup else {
            tried.push("no clean backup kept".to_owned());
            return fail(format!("nothing to restore from ({})", tried.join("; ")));
        };
        match memory.restore(&backup).await {
            Ok(()) => WorkOutput::success()
                .with_output("restored_from", format!("backup {}", backup.id())),
            Err(e) => {
                WorkOutput::retryable_failure(format!("restore of backup {}: {e}", backup.id()))
            }
        }
    }

    async fn verify_memory(&self) -> WorkOutput {
        let memory = match self.memory() {
            Ok(m) => m,
            Err(out) => return out,
        };
        match memory.validate().await {
            Ok(report) if report.is_clean() => {
                WorkOutput::success().with_output("checked", report.checked().to_string())
            }
            Ok(report) => fail(format!(
                "memory still corrupt: {}",
                report.keys().join(", ")
            )),
            Err(e) => WorkOutput::retryable_failure(format!("memory validation: {e}")),
        }
    }

    fn resume_memory_writes(&self) -> WorkOutput {
        let memory = match self.memory() {
            Ok(m) => m,
            Err(out) => return out,
        };
        match memory.last_validation() {
            Some(report) if report.is_clean() => {
                memory.unfence();
                WorkOutput::success()
            }
            Some(report) => fail(format!(
                "writes stay stopped: the last validation found {} corrupt entries",
                report.corrupt().len()
            )),
            None => fail("writes stay stopped: memory has not been validated since"),
        }
    }
}

#[async_trait::async_trait]
impl Agent for Builtins {
    fn id(&self) -> AgentId {
        self.id
    }

    async fn execute(&self, work: WorkItem) -> Result<WorkOutput, AgentError> {
        tracing::info!(kind = work.kind(), run = ?work.run(), step = ?work.step(), "built-in action");
        Ok(match work.kind() {
            kinds::ENTER_SAFE_MODE => self.enter_safe_mode().await,
            kinds::EXIT_SAFE_MODE => self.exit_safe_mode().await,
            kinds::RESTART_AGENTS => self.restart_agents().await,
            kinds::ISOLATE_AGENTS => self.isolate(),
            kinds::STOP_EXTERNAL_COMMS => self.stop_comms(&work),
            kinds::PRESERVE_EVIDENCE => self.preserve_evidence().await,
            kinds::STOP_MEMORY_WRITES => self.stop_memory_writes(&work).await,
            kinds::BACKUP_MEMORY => self.backup_memory().await,
            kinds::ASSESS_MEMORY => self.assess_memory().await,
            kinds::RESTORE_MEMORY => self.restore_memory().await,
            kinds::VERIFY_MEMORY => self.verify_memory().await,
            kinds::RESUME_MEMORY_WRITES => self.resume_memory_writes(),
            other => fail(format!(
                "`{other}` is not a built-in action (they are: {})",
                kinds::ALL.join(", ")
            )),
        })
    }

    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new(env!("CARGO_PKG_VERSION"))
            .with_detail("mode", self.coordinator.mode().to_string()))
    }
}
