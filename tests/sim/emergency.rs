//! Emergencies in the simulation world: the safe-mode rules, security breaches,
//! quarantines and the communications stop.
//!
//! Faults the world injects: the host reports a security breach on an agent, an
//! operator quarantines an agent (with evidence) or releases one (an audited human
//! decision), the orchestrator stops external communications and a human resumes
//! them; some tasks need an external capability (`email`), and some agents fail a
//! task after using more than they were given (resource exhaustion). Agents going
//! offline or unhealthy, the other safe-mode rule's input, come from the world's
//! agent faults.
//!
//! The world keeps its own model of the safe-mode rules, from the events alone: the
//! distinct agents that failed within the rule's window, the tasks that failed out
//! of resources within theirs, each drained when its rule tips (whether or not the
//! coordinator was in normal mode, as the rules say).
//!
//! Invariants:
//! - `safe_mode_within_bound`: when a rule tips (the third agent failure within five
//!   minutes, the third exhaustion within ten, a breach reported) while the
//!   coordinator is in normal mode, it is in safe mode by the end of the same step:
//!   the bound is the event that tipped it, not a later tick.
//! - `safe_mode_rule_justified`: every `SafeModeTriggered` names a rule the model saw
//!   tip, with exactly the agents or tasks the model counted.
//! - `no_work_to_a_quarantined_agent`: no task is assigned to an agent the events
//!   last said was quarantined.
//! - `quarantine_keeps_evidence`: a quarantine's event names exactly the tasks the
//!   agent ran and the allocations they held, before they are taken from it.
//! - `breach_isolates_its_agents`: by the end of the step that reported a breach,
//!   every agent it named that is still registered is quarantined.
//! - `no_external_work_while_communications_stopped`: no task needing an external
//!   capability is assigned between a `CommunicationsStopped` and the
//!   `CommunicationsResumed` after it.
//! - `reasons_are_notes`: the reasons the world gives (now and then 64 KiB with
//!   line breaks and a terminal escape, as a host pasting a log would) come back in
//!   the events as notes: one line, at most `MAX_NOTE_LEN` bytes, and the event's
//!   own line has no line break.
//!
//! After a crash the model starts again from what the recovered core counts (its
//! snapshot's recent failures) and from what it says runs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use concord::agent::AgentStatus;
use concord::coordinator::{
    DEFAULT_EXTERNAL_CAPABILITIES, Decider, Event, EventKind, SafeModeRules, SafeModeTrigger,
};
use concord::id::MAX_NOTE_LEN;
use concord::policy::SystemMode;
use concord::task::Task;
use concord::{AgentId, Capability, Resources, TaskId, Timestamp};

use super::{Failure, World};

/// The external capability the world's tasks ask for now and then.
pub const EXTERNAL: &str = "email";

/// A rule that tipped in normal mode, waiting for its `SafeModeTriggered`.
#[derive(Debug, Clone)]
struct Due {
    rule: &'static str,
    at: Timestamp,
    /// The agents or tasks counted, as the trigger must name them.
    counted: Vec<u64>,
}

/// The world's model of the emergency state, kept from the events.
#[derive(Debug, Default)]
pub struct SimEmergency {
    rules: SafeModeRules,
    /// Distinct agents that went offline or unhealthy, with when.
    failures: VecDeque<(Timestamp, AgentId)>,
    /// Tasks that failed after using more than they were given, with when.
    exhausted: VecDeque<(Timestamp, TaskId)>,
    due: Vec<Due>,
    /// What each running task was given, as its assignment said.
    given: BTreeMap<TaskId, Resources>,
    /// Whether the events last said external communications were stopped.
    comms_stopped: bool,
    /// The agents of a breach reported in this step.
    breached: Vec<AgentId>,
}

/// Drops what fell out of the window ending at `now`, as the rules do.
fn trim<T>(q: &mut VecDeque<(Timestamp, T)>, now: Timestamp, within: Duration) {
    let from = now.saturating_sub(within);
    while q.front().is_some_and(|(t, _)| *t <= from) {
        q.pop_front();
    }
}

/// Whether `task` needs a capability the coordinator counts as external.
fn external(task: &Task) -> bool {
    task.requirements()
        .capabilities()
        .iter()
        .any(|c| DEFAULT_EXTERNAL_CAPABILITIES.contains(&c.as_str()))
}

/// Whether a task given `given` used more than that of something.
fn over(given: &Resources, usage: &Resources) -> bool {
    given
        .iter()
        .any(|(name, amount)| amount > 0 && usage.get(&name) > amount)
}

pub fn external_capability() -> Capability {
    Capability::new(EXTERNAL).expect("capability")
}

impl World {
    /// The reason for an emergency procedure: `plain`, or now and then `plain`
    /// with a pasted log after it (line breaks, an escape, up to 64 KiB).
    fn reason(&mut self, plain: &str) -> String {
        if self.wording.chance(10) {
            let n = self.wording.below(1 << 16) as usize;
            format!(
                "{plain}:\n\u{1b}[31mERROR\u{1b}[0m\r\n{}",
                "log ".repeat(n / 4)
            )
        } else {
            plain.to_owned()
        }
    }

    /// An emergency fault: a breach reported, a quarantine or its release, the
    /// communications stop or its end.
    pub(super) fn emergency(&mut self) -> Result<(), Failure> {
        let ids: Vec<AgentId> = self.agents.keys().copied().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let pick = ids[self.rng.below(ids.len() as u64) as usize];
        let now = self.now;
        match self.rng.below(6) {
            0 => {
                self.report.breaches += 1;
                let reason = self.reason("unexpected outbound traffic");
                if let Err(e) = self.core.report_security_breach(&[pick], &reason, now) {
                    self.note(format!("breach on {pick} refused: {e}"));
                }
            }
            1 => {
                let reason = self.reason("suspicious behaviour");
                match self.core.quarantine(pick, &reason, now) {
                    Ok(_) => self.report.quarantines += 1,
                    Err(e) => self.note(format!("quarantine of {pick} refused: {e}")),
                }
            }
            2 | 3 => {
                let quarantined: Vec<AgentId> = self
                    .seen_status
                    .iter()
                    .filter(|(_, s)| **s == AgentStatus::Quarantined)
                    .map(|(a, _)| *a)
                    .collect();
                if let Some(&agent) = quarantined.first() {
                    let reason = self.reason("cleared after review");
                    if let Err(e) =
                        (self.core).release_quarantine(agent, Decider::Human, &reason, now)
                    {
                        self.note(format!("release of {agent} refused: {e}"));
                    }
                }
            }
            4 => {
                let reason = self.reason("possible exfiltration");
                match (self.core).stop_communications(Decider::Orchestrator, &reason, now) {
                    Ok(true) => self.report.communications_stops += 1,
                    Ok(false) => {}
                    Err(e) => self.note(format!("communications stop refused: {e}")),
                }
            }
            _ => {
                let reason = self.reason("traffic explained");
                if let Err(e) = (self.core).resume_communications(Decider::Human, &reason, now) {
                    self.note(format!("communications resume refused: {e}"));
                }
            }
        }
        Ok(())
    }

    /// Faults stop: quarantines are released and communications resume.
    pub(super) fn emergency_quiet(&mut self) {
        let now = self.now;
        let quarantined: Vec<AgentId> = self
            .core
            .registry()
            .iter()
            .filter(|v| v.status() == AgentStatus::Quarantined)
            .map(|v| v.id())
            .collect();
        for agent in quarantined {
            let _ = self
                .core
                .release_quarantine(agent, Decider::Human, "faults stopped", now);
        }
        if self.core.communications().is_some() {
            let _ = self
                .core
                .resume_communications(Decider::Human, "faults stopped", now);
        }
    }

    /// An event drained from the core, before the world's books take it (its mode and
    /// statuses are those before the event).
    pub(super) fn emergency_event(&mut self, e: &Event) -> Result<(), Failure> {
        if let EventKind::AgentQuarantined { reason, .. }
        | EventKind::QuarantineReleased { reason, .. }
        | EventKind::SecurityBreachReported { reason, .. }
        | EventKind::CommunicationsStopped { reason, .. }
        | EventKind::CommunicationsResumed { reason, .. } = &e.kind
        {
            self.report.checks += 1;
            let line = e.to_string();
            if reason.len() > MAX_NOTE_LEN
                || reason.chars().any(char::is_control)
                || line.chars().any(char::is_control)
            {
                return Err(self.fail(
                    "reasons_are_notes",
                    format!("{} bytes: {:.120}", reason.len(), line.escape_debug()),
                ));
            }
        }
        match &e.kind {
            EventKind::AgentStatusChanged {
                agent,
                to: AgentStatus::Offline | AgentStatus::Unhealthy,
                planned: false,
                ..
            } => {
                let Some(rule) = self.emergency.rules.agent_failures else {
                    return Ok(());
                };
                let q = &mut self.emergency.failures;
                trim(q, e.at, rule.within);
                q.retain(|(_, a)| a != agent);
                q.push_back((e.at, *agent));
                if q.len() >= rule.agents {
                    let counted = q.drain(..).map(|(_, a)| a.get()).collect();
                    self.tipped("agent_failures", e.at, counted);
                }
            }
            EventKind::TaskAssigned { assignment } => {
                let (task, agent) = (&assignment.task, assignment.agent);
                self.report.checks += 1;
                if self.seen_status.get(&agent) == Some(&AgentStatus::Quarantined) {
                    return Err(self.fail(
                        "no_work_to_a_quarantined_agent",
                        format!("{} assigned to {agent}", task.id()),
                    ));
                }
                if self.emergency.comms_stopped && external(task) {
                    return Err(self.fail(
                        "no_external_work_while_communications_stopped",
                        format!("{} (needs {EXTERNAL}) assigned to {agent}", task.id()),
                    ));
                }
                let given = task.requirements().resources().clone();
                self.emergency.given.insert(task.id(), given);
            }
            EventKind::TaskCompleted {
                task,
                success,
                usage,
                ..
            } => {
                let given = self.emergency.given.remove(task);
                let out = !success && given.zip(usage.as_ref()).is_some_and(|(g, u)| over(&g, u));
                if let (true, Some(rule)) = (out, self.emergency.rules.resource_exhaustion) {
                    let q = &mut self.emergency.exhausted;
                    trim(q, e.at, rule.within);
                    q.push_back((e.at, *task));
                    if q.len() >= rule.tasks {
                        let counted = q.drain(..).map(|(_, t)| t.get()).collect();
                        self.tipped("resource_exhaustion", e.at, counted);
                    }
                }
            }
            EventKind::TaskHandedBack { task, .. } | EventKind::TaskReleased { task, .. } => {
                self.emergency.given.remove(task);
            }
            EventKind::SecurityBreachReported { agents, .. } => {
                self.emergency.breached.extend(agents);
                if self.emergency.rules.security_breach {
                    let counted = agents.iter().map(|a| a.get()).collect();
                    self.tipped("security_breach", e.at, counted);
                }
            }
            EventKind::SafeModeTriggered { trigger } => {
                self.report.checks += 1;
                let (rule, mut named): (&str, Vec<u64>) = match trigger {
                    SafeModeTrigger::AgentFailures { agents }
                    | SafeModeTrigger::SecurityBreach { agents, .. } => {
                        (trigger.rule(), agents.iter().map(|a| a.get()).collect())
                    }
                    SafeModeTrigger::ResourceExhaustion { tasks } => {
                        (trigger.rule(), tasks.iter().map(|t| t.get()).collect())
                    }
                };
                named.sort_unstable();
                let at = self.emergency.due.iter().position(|d| {
                    let mut counted = d.counted.clone();
                    counted.sort_unstable();
                    d.rule == rule && counted == named
                });
                match at {
                    Some(i) => {
                        self.emergency.due.remove(i);
                        self.report.safe_mode_by_rule += 1;
                    }
                    None => {
                        return Err(self.fail(
                            "safe_mode_rule_justified",
                            format!(
                                "{trigger}, while the world counted {:?}",
                                self.emergency.due
                            ),
                        ));
                    }
                }
            }
            EventKind::AgentQuarantined {
                agent,
                tasks,
                allocations,
                ..
            } => {
                self.report.checks += 1;
                let ran: BTreeSet<TaskId> = self
                    .running
                    .iter()
                    .filter(|(_, a)| *a == agent)
                    .map(|(t, _)| *t)
                    .collect();
                let told: BTreeSet<TaskId> = tasks.iter().copied().collect();
                let held: BTreeSet<TaskId> = allocations.iter().filter_map(|a| a.task).collect();
                let foreign = allocations.iter().any(|a| a.agent != *agent);
                if ran != told || held != ran || foreign {
                    return Err(self.fail(
                        "quarantine_keeps_evidence",
                        format!(
                            "{agent} ran {ran:?}; its quarantine names tasks {told:?} and \
                             allocations for {held:?}"
                        ),
                    ));
                }
            }
            EventKind::CommunicationsStopped { .. } => self.emergency.comms_stopped = true,
            EventKind::CommunicationsResumed { .. } => self.emergency.comms_stopped = false,
            _ => {}
        }
        Ok(())
    }

    /// A rule tipped: safe mode is due now if the coordinator is in normal mode.
    fn tipped(&mut self, rule: &'static str, at: Timestamp, counted: Vec<u64>) {
        if self.seen_mode == SystemMode::Normal {
            self.emergency.due.push(Due { rule, at, counted });
        }
    }

    /// After the events of a step: what tipped put the coordinator in safe mode, and a
    /// breach quarantined its agents.
    pub(super) fn emergency_after(&mut self) -> Result<(), Failure> {
        self.report.checks += 1;
        // A rule that tipped is answered by its trigger, or (when something else
        // already took the coordinator out of normal mode within the same call) by
        // the mode it is in.
        if let Some(d) = self.emergency.due.first().cloned() {
            if self.seen_mode == SystemMode::Normal {
                return Err(self.fail(
                    "safe_mode_within_bound",
                    format!(
                        "rule `{}` tipped at {} on {:?}, and the coordinator is still normal",
                        d.rule, d.at, d.counted
                    ),
                ));
            }
            self.emergency.due.clear();
        }
        for agent in std::mem::take(&mut self.emergency.breached) {
            let status = self.seen_status.get(&agent).copied();
            if status.is_some_and(|s| s != AgentStatus::Quarantined) {
                return Err(self.fail(
                    "breach_isolates_its_agents",
                    format!("{agent} is {status:?} after a breach reported on it"),
                ));
            }
        }
        Ok(())
    }

    /// After a crash: the model takes what the recovered core counts and runs.
    pub(super) fn emergency_reconcile(&mut self) {
        let snapshot = self.core.snapshot();
        let m = &mut self.emergency;
        m.failures = snapshot.recent_failures.agents.clone();
        m.exhausted = snapshot.recent_failures.exhausted.clone();
        m.due.clear();
        m.breached.clear();
        m.comms_stopped = self.core.communications().is_some();
        m.given = self
            .core
            .assignments()
            .iter()
            .map(|a| (a.task.id(), a.task.requirements().resources().clone()))
            .collect();
    }
}
