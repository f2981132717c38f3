//! The operating procedures as ready-made workflows: run them with your own agents.
//!
//! Each runbook is a [`Workflow`] built from the same engine as any other: steps in
//! roles (`ops`, `qa`, `framework`, `security`, `human`), with gates between them. By
//! default a step that states its role is placed by its role alone: the coordinator
//! does not read its name and kind for more. Step kinds match the default analysis
//! rules ([`RuleSet::default`](crate::RuleSet)), so a coordinator built with
//! [`analyze_stated_requirements(true)`](crate::coordinator::CoordinatorBuilder::analyze_stated_requirements)
//! also gives each step the capabilities and resources the procedures associate with
//! it (then only agents with those capabilities take it).
//!
//! The emergency runbooks' steps whose work is the coordinator's own (entering and
//! leaving safe mode, restarting agents in waves, isolating agents, stopping external
//! communications, preserving evidence, fencing, backing up, assessing, restoring
//! and verifying memory) are in role `coordinator`
//! ([`BUILTIN_ROLE`]), of the kinds in
//! [`builtins::kinds`](super::builtins::kinds): register a
//! [`Builtins`](super::Builtins) agent and they are carried out by the library.

use std::time::Duration;

use super::builtins::kinds;
use super::{RetryPolicy, RunCondition, StepSpec, Workflow};
use crate::id::Role;
use crate::policy::BUILTIN_ROLE;

fn role(name: &str) -> Role {
    // The runbooks' role names are constants and valid.
    Role::new(name).unwrap_or_else(|_| unreachable!("valid role name {name}"))
}

/// The standardized 5-step deployment workflow:
///
/// 1. `deploy` (ops): local server deployment and health check; outputs `url`,
///    `health`.
/// 2. `launch_browser` (ops): opens the deployment URL in a browser, only after the
///    health check passed (it depends on `deploy`), records the launch time and URL,
///    and so notifies QA (its outputs are the QA step's inputs); outputs `url`,
///    `launched_at`, `browser`.
/// 3. `screenshot` (qa): full-page screenshot and visual verification, right after
///    the launch; outputs `screenshot`, `verification`.
/// 4. `document` (qa): deployment success documentation, written whatever happened
///    before it (condition `Always`) so a failed or skipped step is documented too;
///    outputs `report`.
/// 5. `handoff` (framework): handoff to the development agents, only when the
///    verification and the documentation succeeded.
///
/// ```
/// use concord::workflow::runbooks;
/// let w = runbooks::deployment();
/// assert_eq!(w.len(), 5);
/// assert_eq!(w.topological_order().len(), 5);
/// ```
pub fn deployment() -> Workflow {
    let retry = RetryPolicy::exponential(2).with_initial_backoff(Duration::from_secs(2));
    let built = Workflow::builder("deployment")
        .step(
            StepSpec::new("deploy")
                .with_kind("deploy")
                .with_role(role("ops"))
                .with_timeout(Duration::from_secs(120))
                .with_retry(retry.clone()),
        )
        .step(
            StepSpec::new("launch_browser")
                .with_kind("browser")
                .with_role(role("ops"))
                .after("deploy")
                .with_input("deploy", "url", "url")
                .with_timeout(Duration::from_secs(120))
                .with_retry(retry.clone()),
        )
        .step(
            StepSpec::new("screenshot")
                .with_kind("screenshot")
                .with_role(role("qa"))
                .after("launch_browser")
                .with_input("launch_browser", "url", "url")
                .with_input("launch_browser", "browser", "browser")
                .with_input("launch_browser", "launched_at", "launched_at")
                .with_timeout(Duration::from_secs(120))
                .with_retry(retry),
        )
        .step(
            StepSpec::new("document")
                .with_kind("documentation")
                .with_role(role("qa"))
                .after("screenshot")
                .with_condition(RunCondition::Always)
                .with_input("deploy", "url", "url")
                .with_input("deploy", "health", "health")
                .with_input("launch_browser", "launched_at", "launched_at")
                .with_input("screenshot", "screenshot", "screenshot")
                .with_input("screenshot", "verification", "verification"),
        )
        .step(
            StepSpec::new("handoff")
                .with_kind("handoff")
                .with_role(role("framework"))
                .after("document")
                .after("screenshot")
                .with_input("document", "report", "report"),
        )
        .build();
    // The definition is a constant: it always validates.
    built.unwrap_or_else(|e| unreachable!("the deployment runbook is valid: {e}"))
}

/// The emergency procedure for a system-wide agent failure (built-in steps marked
/// *coordinator*, see the [module docs](self)):
///
/// 1. `enter_safe_mode` (coordinator, kind `enter_safe_mode`): activate safe mode,
///    which stops new task assignments, and preserve the current state.
/// 2. `diagnose_failure` (ops, kind `diagnose`): find the failure's cause; outputs
///    `cause`.
/// 3. `restart_agents_incrementally` (coordinator, kind `restart_agents`): restart
///    the agents that are down a wave at a time, each wave gated by the agents'
///    health checks; takes `cause`, outputs `restarted`. Up to 4 attempts, waiting
///    10 s, 20 s, then 40 s between them (restarts often fail while the cause
///    clears); a retry goes on from the wave that failed.
/// 4. `validate_recovery` (qa, kind `verify`): check the system is healthy again;
///    takes `restarted`.
/// 5. `exit_safe_mode` (coordinator, kind `exit_safe_mode`): back to normal
///    operation, only when the validation passed and every watched agent passes the
///    gate again.
///
/// Handler: `notify_stakeholders` (human, kind `notify`) runs after
/// `validate_recovery` only when a step up to it failed (condition `AnyFailed`), and
/// takes `cause`. On a clean recovery it is skipped and the run succeeds.
///
/// The host's steps after the first are assigned while the system is in safe mode,
/// so a coordinator running this under [`SafeModeRule`](crate::policy::SafeModeRule)
/// must allow their duties (`diagnose`, `verify`, `notify`); the built-in steps are
/// always admitted. See `examples/safe_mode_recovery.rs`.
///
/// ```
/// use concord::workflow::runbooks;
/// let w = runbooks::safe_mode_recovery();
/// assert_eq!(w.len(), 6);
/// assert_eq!(w.topological_order().len(), 6);
/// ```
pub fn safe_mode_recovery() -> Workflow {
    let timeout = Duration::from_secs(600);
    let restart_retry = RetryPolicy::exponential(4).with_initial_backoff(Duration::from_secs(10));
    let built = Workflow::builder("safe_mode_recovery")
        .step(
            StepSpec::new("enter_safe_mode")
                .with_kind(kinds::ENTER_SAFE_MODE)
                .with_role(role(BUILTIN_ROLE))
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("diagnose_failure")
                .with_kind("diagnose")
                .with_role(role("ops"))
                .after("enter_safe_mode")
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("restart_agents_incrementally")
                .with_kind(kinds::RESTART_AGENTS)
                .with_role(role(BUILTIN_ROLE))
                .after("diagnose_failure")
                .with_input("diagnose_failure", "cause", "cause")
                .with_timeout(timeout)
                .with_retry(restart_retry),
        )
        .step(
            StepSpec::new("validate_recovery")
                .with_kind("verify")
                .with_role(role("qa"))
                .after("restart_agents_incrementally")
                .with_input("restart_agents_incrementally", "restarted", "restarted")
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("exit_safe_mode")
                .with_kind(kinds::EXIT_SAFE_MODE)
                .with_role(role(BUILTIN_ROLE))
                .after("validate_recovery")
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("notify_stakeholders")
                .with_kind("notify")
                .with_role(role("human"))
                .after("validate_recovery")
                .with_condition(RunCondition::AnyFailed)
                .with_input("diagnose_failure", "cause", "cause"),
        )
        .build();
    // The definition is a constant: it always validates.
    built.unwrap_or_else(|e| unreachable!("the safe-mode recovery runbook is valid: {e}"))
}

/// The emergency procedure for memory system corruption, all of it built in (role
/// `coordinator`, carried out on the agents' [`Memory`](crate::memory::Memory) guard
/// attached to the [`Builtins`](super::Builtins)):
///
/// 1. `stop_memory_writes` (kind `stop_memory_writes`): no agent writes to memory
///    any more.
/// 2. `backup_memory_state` (kind `backup_memory`): keep the corrupted state as it
///    is; outputs `backup`.
/// 3. `assess_corruption` (kind `assess_memory`): how far the corruption goes;
///    outputs `extent`.
/// 4. `restore_memory_backup` (kind `restore_memory`): switch to the standby store
///    if it is sound, else restore the last clean backup; takes `backup` and
///    `extent`. Up to 3 attempts, 5 s apart, then 10 s.
/// 5. `validate_memory_integrity` (kind `verify_memory`): check the restored memory.
/// 6. `resume_memory_writes` (kind `resume_memory_writes`): writes resume, only on
///    memory validated clean.
///
/// Each step runs only when the one before it succeeded: a failed backup stops the
/// procedure before anything is overwritten, and memory that does not check clean
/// stays fenced.
///
/// ```
/// use concord::workflow::runbooks;
/// let w = runbooks::memory_corruption_recovery();
/// assert_eq!(w.len(), 6);
/// assert_eq!(w.topological_order().len(), 6);
/// ```
pub fn memory_corruption_recovery() -> Workflow {
    let timeout = Duration::from_secs(600);
    let built = Workflow::builder("memory_corruption_recovery")
        .step(
            StepSpec::new("stop_memory_writes")
                .with_kind(kinds::STOP_MEMORY_WRITES)
                .with_role(role(BUILTIN_ROLE))
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("backup_memory_state")
                .with_kind(kinds::BACKUP_MEMORY)
                .with_role(role(BUILTIN_ROLE))
                .after("stop_memory_writes")
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("assess_corruption")
                .with_kind(kinds::ASSESS_MEMORY)
                .with_role(role(BUILTIN_ROLE))
                .after("backup_memory_state")
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("restore_memory_backup")
                .with_kind(kinds::RESTORE_MEMORY)
                .with_role(role(BUILTIN_ROLE))
                .after("assess_corruption")
                .with_input("backup_memory_state", "backup", "backup")
                .with_input("assess_corruption", "extent", "extent")
                .with_timeout(timeout)
                .with_retry(
                    RetryPolicy::exponential(3).with_initial_backoff(Duration::from_secs(5)),
                ),
        )
        .step(
            StepSpec::new("validate_memory_integrity")
                .with_kind(kinds::VERIFY_MEMORY)
                .with_role(role(BUILTIN_ROLE))
                .after("restore_memory_backup")
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("resume_memory_writes")
                .with_kind(kinds::RESUME_MEMORY_WRITES)
                .with_role(role(BUILTIN_ROLE))
                .after("validate_memory_integrity")
                .with_timeout(timeout),
        )
        .build();
    // The definition is a constant: it always validates.
    built.unwrap_or_else(|e| unreachable!("the memory corruption runbook is valid: {e}"))
}

/// The emergency procedure for a security breach (built-in steps marked
/// *coordinator*, see the [module docs](self)):
///
/// 1. `isolate_affected_agents` (coordinator, kind `isolate_agents`): quarantine the
///    agents reported affected ([`Builtins::report_affected`](super::Builtins::report_affected),
///    or already quarantined by
///    [`report_security_breach`](crate::coordinator::Coordinator::report_security_breach)),
///    each with its evidence; outputs `isolated`.
/// 2. `stop_external_comms` (coordinator, kind `stop_external_comms`): stop all
///    external communication: tasks needing an external capability wait.
/// 3. `collect_evidence` (coordinator, kind `preserve_evidence`): preserve the
///    evidence (a backup of the agents' memory as it is, when attached).
/// 4. `run_security_scan` (security, kind `security_scan`): outputs `findings`.
/// 5. `apply_security_patches` (ops, kind `patch`): takes `findings`.
///
/// In parallel, right after the isolation: `notify_security_team` (human, kind
/// `notify`), taking `isolated`. It does not hold up the chain, and the chain does not
/// wait for it.
///
/// With the default analysis rules ([`RuleSet::default`](crate::RuleSet)) the names
/// `apply_security_patches` and `notify_security_team` mention security, so the
/// analyzer also asks for role `security` on them: the patching agent and the person
/// notified must then play `security` as well as their own role.
///
/// ```
/// use concord::workflow::runbooks;
/// let w = runbooks::security_breach_response();
/// assert_eq!(w.len(), 6);
/// assert_eq!(w.topological_order().len(), 6);
/// ```
pub fn security_breach_response() -> Workflow {
    let timeout = Duration::from_secs(600);
    let built = Workflow::builder("security_breach_response")
        .step(
            StepSpec::new("isolate_affected_agents")
                .with_kind(kinds::ISOLATE_AGENTS)
                .with_role(role(BUILTIN_ROLE))
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("stop_external_comms")
                .with_kind(kinds::STOP_EXTERNAL_COMMS)
                .with_role(role(BUILTIN_ROLE))
                .after("isolate_affected_agents")
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("collect_evidence")
                .with_kind(kinds::PRESERVE_EVIDENCE)
                .with_role(role(BUILTIN_ROLE))
                .after("stop_external_comms")
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("run_security_scan")
                .with_kind("security_scan")
                .with_role(role("security"))
                .after("collect_evidence")
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("apply_security_patches")
                .with_kind("patch")
                .with_role(role("ops"))
                .after("run_security_scan")
                .with_input("run_security_scan", "findings", "findings")
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("notify_security_team")
                .with_kind("notify")
                .with_role(role("human"))
                .after("isolate_affected_agents")
                .with_input("isolate_affected_agents", "isolated", "isolated"),
        )
        .build();
    // The definition is a constant: it always validates.
    built.unwrap_or_else(|e| unreachable!("the security breach runbook is valid: {e}"))
}

/// The coordination system update procedure, with rollback:
///
/// 1. `backup_configuration` (ops, kind `backup`): outputs `backup`.
/// 2. `stop_services` (ops, kind `stop_services`).
/// 3. `backup_state` (ops, kind `backup`): outputs `backup`.
/// 4. `apply_updates` (ops, kind `deploy`): outputs `version`. Its kind is `deploy`, so
///    the default separation of duties (`deploy` / `verify`) keeps the agent that
///    applies the update from validating it.
/// 5. `start_services` (ops, kind `start_services`).
/// 6. `validate_update` (qa, kind `verify`): takes `version`.
///
/// After `validate_update`:
///
/// - `rollback` (ops, kind `rollback`, condition `AnyFailed`): runs when any step of
///   the chain failed (a failure skips the rest of the chain, and the skips carry it
///   down to here); takes `configuration_backup` and `state_backup` from the backup
///   steps, when they succeeded. The run's outcome is then `Failed`.
/// - the post-update checks, only when the validation passed: `run_health_checks`
///   (ops, kind `health_check`) and `verify_agents_responsive` (ops, kind
///   `agent_check`), in parallel.
///
/// ```
/// use concord::workflow::runbooks;
/// let w = runbooks::system_update();
/// assert_eq!(w.len(), 9);
/// assert_eq!(w.topological_order().len(), 9);
/// ```
pub fn system_update() -> Workflow {
    let timeout = Duration::from_secs(900);
    let chain = [
        ("backup_configuration", "backup"),
        ("stop_services", "stop_services"),
        ("backup_state", "backup"),
        ("apply_updates", "deploy"),
        ("start_services", "start_services"),
    ];
    let mut builder = Workflow::builder("system_update");
    let mut previous: Option<&str> = None;
    for (name, kind) in chain {
        let mut step = StepSpec::new(name)
            .with_kind(kind)
            .with_role(role("ops"))
            .with_timeout(timeout);
        if let Some(p) = previous {
            step = step.after(p);
        }
        builder.push(step);
        previous = Some(name);
    }
    let built = builder
        .step(
            StepSpec::new("validate_update")
                .with_kind("verify")
                .with_role(role("qa"))
                .after("start_services")
                .with_input("apply_updates", "version", "version")
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("rollback")
                .with_kind("rollback")
                .with_role(role("ops"))
                .after("validate_update")
                .with_condition(RunCondition::AnyFailed)
                .with_input("backup_configuration", "backup", "configuration_backup")
                .with_input("backup_state", "backup", "state_backup")
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("run_health_checks")
                .with_kind("health_check")
                .with_role(role("ops"))
                .after("validate_update")
                .with_timeout(timeout),
        )
        .step(
            StepSpec::new("verify_agents_responsive")
                .with_kind("agent_check")
                .with_role(role("ops"))
                .after("validate_update")
                .with_timeout(timeout),
        )
        .build();
    // The definition is a constant: it always validates.
    built.unwrap_or_else(|e| unreachable!("the system update runbook is valid: {e}"))
}
