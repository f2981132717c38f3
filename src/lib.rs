//! # concord
//!
//! Embeddable, sans-I/O multi-agent coordination for Rust orchestrators: who does which
//! task, with which resources, in what order, and how the system stays healthy.
//!
//! Every engine is a deterministic state machine: you pass in events and the current
//! time, it hands back decisions as values. The crate opens no socket, reads no file,
//! spawns no thread and reads no clock (except [`SystemClock`], if you choose it), so
//! the same inputs always give the same outputs: simulation tests, replay and crash
//! recovery come for free. You bring the transport ([`Agent`]) and the storage
//! (journal the snapshots and events wherever you like).
//!
//! ## Example: analyze, find an agent, predict, allocate
//!
//! ```
//! use concord::resource::{Observation, PercentilePredictor};
//! use concord::{
//!     AgentId, AgentProfile, AgentRegistry, Capability, ResourceLedger, ResourcePredictor,
//!     Role, RuleBasedAnalyzer, Task, TaskAnalyzer, TaskId, Timestamp,
//! };
//!
//! let now = Timestamp::from_secs(1_700_000_000);
//!
//! // Agents and their capacity.
//! let mut registry = AgentRegistry::new();
//! let mut ledger = ResourceLedger::new();
//! let qa = AgentProfile::new(AgentId::new(2), "qa-1")
//!     .with_role(Role::new("qa")?)
//!     .with_capability(Capability::new("screenshot")?)
//!     .with_capacity("cpu=2,memory=4Gi".parse()?);
//! ledger.add_agent(qa.id(), qa.capacity().unwrap())?;
//! registry.register(qa, now)?;
//!
//! // 1. Analyze the task's requirements (the default rule table is the procedures').
//! let task = Task::new(TaskId::new(1), "verify", "Take a full-page screenshot of the deployment");
//! let analyzed = RuleBasedAnalyzer::default().analyze(&task)?;
//! assert_eq!(analyzed.requirements.roles()[0].as_str(), "qa");
//!
//! // 2. Check which agents can serve it.
//! let candidates = registry.available_agents(&analyzed.requirements);
//! assert_eq!(candidates, vec![AgentId::new(2)]);
//!
//! // 3. Predict what it needs from what such tasks used before, and allocate it.
//! let mut predictor = PercentilePredictor::default();
//! predictor.observe("verify", &Observation::new("cpu=300m,memory=700Mi".parse()?, now));
//! let needs = predictor.predict(task.kind(), analyzed.requirements.resources()).resources;
//! let allocation = ledger.allocate(candidates[0], &needs, now)?;
//! assert!(ledger.allocation(allocation).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## From the operating procedures to the crate
//!
//! | procedure | in concord |
//! |---|---|
//! | Analyze task requirements | [`TaskAnalyzer`], [`RuleBasedAnalyzer`], [`Requirements`] |
//! | Check agent availability | [`AgentRegistry::available_agents`], [`AgentStatus`] |
//! | Assign optimal agents | [`assignment::Assigner`], [`assignment::GreedyAssigner`], [`assignment::OptimalAssigner`], [`assignment::Explanation`] |
//! | Validate assignment | [`PolicyEnforcer`], [`PolicySet`], [`Violation`] |
//! | The whole procedure in one call | [`coordinator::Coordinator`], [`coordinator::Event`] |
//! | Agent connectivity, health ping | [`Agent::health`], [`AgentExt::ping`] |
//! | Predict resource needs | [`ResourcePredictor`], [`resource::PercentilePredictor`], [`resource::EwmaPredictor`], [`resource::StaticPredictor`] |
//! | Check availability, allocate, queue for later | [`ResourceLedger`]: `availability`, `can_allocate`, `allocate`, `request` |
//! | Release idle agents' resources | [`ResourceLedger::reclaim_idle`], [`ResourceLedger::expire`] |
//! | Usage report, heavy users, leaks | [`ResourceLedger::usage_report`], [`ResourceLedger::heavy_users`], [`ResourceLedger::detect_leaks`] |
//! | Conflict detection, assessment, resolution | [`conflict::ConflictDetector`], [`conflict::ConflictAssessor`], [`ConflictResolver`], [`conflict::ConflictManager`]; the coordinator catches colliding claims at assignment |
//! | Escalation decision tree | [`conflict::EscalationPolicy`], [`conflict::ConflictManager::tick`] |
//! | System health checks, agent connectivity | [`health::Diagnostics`], [`health::HealthCheck`], [`health::AgentsCheck`], [`health::ResourcesCheck`], [`health::CoordinationCheck`] |
//! | Operations, performance and capacity dashboards | [`dashboard::Dashboard`] (serde views, rendered to one self-contained HTML page) |
//! | Emergencies: safe mode by rule, quarantine with evidence, security breach | [`coordinator::SafeModeRules`], [`coordinator::Core::quarantine`], [`coordinator::Core::release_quarantine`], [`coordinator::Core::report_security_breach`], [`coordinator::OnQuarantine`] |
//! | Survive a crash: journal, checkpoint, recover | [`coordinator::Journal`], [`coordinator::MemoryJournal`], [`coordinator::CoordinatorBuilder::journaled`], [`coordinator::CoordinatorBuilder::recover`] |
//! | Alerting: severities, response deadlines, escalation | [`alert::AlertManager`], [`alert::Severity`], [`alert::AlertConfig`], [`alert::alerts_from_event`] |
//! | Incident documentation, audit trail | [`audit::AuditLog`] (hash-chained, [`audit::verify`] locates tampering), [`audit::AuditEntry`], [`audit::entry_from_event`], [`audit::Incidents`], [`audit::Incident::to_markdown`], [`audit::PostIncidentReview`] |
//! | Performance monitoring, daily review, reports | [`monitor::Monitor`], [`monitor::DailyReport`], [`monitor::PerformanceReport`], [`monitor::AnomalyDetector`], [`monitor::QuantileSketch`], [`monitor::Thresholds`], [`monitor::CapacityTrend`] |
//! | Memory corruption: stop writes, back up, validate, restore | [`memory::Memory`] (`fence`, `backup`, `validate`, `restore`, `switch_to`), [`memory::MemoryStore`], [`memory::InMemoryStore`], [`memory::Backup`], [`memory::prune_backups`], [`health::MemoryCheck`] |
//! | Maintenance checklists: daily, weekly, monthly; the daily cleanup | [`maintenance::Maintenance`] (`due`, `overdue`, `complete`, `poll_timeout`, `report`), [`maintenance::Schedule`] (the procedures' checklists by default), [`maintenance::Cleanup`] (closed conflicts, finished runs, the journal behind its checkpoint, old backups) |
//! | Deployment workflow, emergencies, updates | [`workflow::Workflow`], [`workflow::Run`], [`workflow::Executor`] (with a [`workflow::RunObserver`] for journaling and crash recovery), [`workflow::runbooks`] |
//!
//! ## Crate layout
//!
//! One module per domain, each with the same shape: its traits and data types, its
//! default implementations, its error enum. Dependencies point one way, bottom to top:
//! [`clock`], [`id`] and small private helpers; [`resource`]; [`task`]; [`agent`];
//! [`policy`]; [`assignment`]; [`conflict`]; [`memory`]; the [`workflow`] definitions
//! and runs; the [`coordinator`]; the drivers that run workflows through the coordinator
//! ([`workflow::Executor`], [`workflow::runbooks`]); the operations a host runs beside
//! the coordinator, fed with its events ([`monitor`], then [`health`], then [`alert`],
//! then [`audit`], then [`maintenance`], then [`dashboard`], which draws them all); and
//! at the top [`error`], whose [`Error`] wraps every domain's error. A module imports
//! only from its own layer and those below it; `tests/suite/layering.rs` checks every import,
//! and the import bans the modules' docs state.
//!
//! To embed the crate, `use concord::prelude::*;` brings in the types a host needs
//! first (see [`prelude`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

pub mod agent;
mod agent_map;
pub mod alert;
pub mod assignment;
pub mod audit;
pub mod clock;
pub mod conflict;
pub mod coordinator;
pub mod dashboard;
pub mod digest;
pub mod error;
mod hash;
pub mod health;
pub mod id;
mod layout;
pub mod maintenance;
pub mod memory;
pub mod monitor;
mod name_table;
pub mod policy;
pub mod prelude;
mod priority;
pub mod resource;
mod serde_util;
pub mod task;
mod text;
mod timer;
pub mod workflow;

/// The attribute that makes a trait's `async fn`s object-safe, for implementing
/// [`Agent`] and [`ConflictResolver`]: `#[concord::async_trait]` on the `impl`.
/// Re-exported from the `async-trait` crate, so a host needs no dependency on it.
pub use async_trait::async_trait;

pub use agent::{
    Agent, AgentError, AgentExt, AgentHealth, AgentProfile, AgentRegistry, AgentStatus,
    CapabilityCatalog, CapabilitySet, Outcome, Ping, RegistryError, RegistrySnapshot, WorkItem,
    WorkOutput,
};
pub use alert::{Alert, AlertConfig, AlertError, AlertManager};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use conflict::{
    ClaimOwner, Collision, Conflict, ConflictAssessor, ConflictDetector, ConflictError, ConflictId,
    ConflictKind, ConflictManager, ConflictResolver, EscalationAction, EscalationPolicy,
    Resolution,
};
pub use error::{Error, Result};
pub use id::{AgentId, AllocationId, Capability, NameError, RequestId, Role, TaskId};
pub use memory::{InMemoryStore, Memory, MemoryError, MemoryStore};
pub use policy::{
    DutyLog, PolicyContext, PolicyEnforcer, PolicyEnforcerExt, PolicyError, PolicyRule, PolicySet,
    Proposal, Severity, SystemMode, Violation,
};
pub use resource::{
    AllocationRequest, LedgerError, ResourceError, ResourceLedger, ResourceName, ResourcePredictor,
    Resources,
};
pub use task::{
    Analyzed, Claim, ClaimMode, Priority, Requirements, RuleBasedAnalyzer, RuleSet, Task,
    TaskAnalyzer, TaskError,
};
pub use timer::{SimulatedTimer, Spawn, Timer};
#[cfg(feature = "tokio")]
pub use timer::{TokioClock, TokioSpawner, TokioTimer};

pub use workflow::{
    Run, RunEvent, RunOutcome, RunSnapshot, StepOutcome, StepRef, StepSpec, StepStatus, Workflow,
    WorkflowBuilder, WorkflowDefinition, WorkflowError,
};

/// The README's code blocks, compiled and run as doctests so the README never drifts.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Proptest settings for the crate's own unit properties: `cases` cases, and a
/// failing case saved under `tests/proptest-regressions/` (named `file`) beside the
/// integration tests' ones, not in a directory of its own at the top of the crate.
#[cfg(test)]
pub(crate) fn proptest_config(cases: u32, file: &'static str) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, FileFailurePersistence};
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..Config::default()
    }
}
