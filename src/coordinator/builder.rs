//! [`CoordinatorBuilder`]: the parts of a coordinator, each defaulted, and how to
//! build one empty or from a checkpoint.

use super::emergency::{OnQuarantine, SafeModeRules};
use std::sync::Arc;

use crate::assignment::{Assigner, GreedyAssigner};
use crate::clock::{Clock, SystemClock};
use crate::conflict::{ConflictManager, EscalationPolicy};
use crate::policy::{PolicyEnforcer, PolicySet};
use crate::resource::{LedgerConfig, PercentilePredictor, ResourceLedger, ResourcePredictor};
use crate::task::TaskAnalyzer;

use super::Coordinator;
use super::core::{Analyzer, Core, OnAgentLoss, Parts, State};
use super::error::CoordinatorError;
use super::snapshot::CoordinatorSnapshot;

/// Builds a [`Coordinator`] (or its sans-I/O [`Core`]). Every part has a default: the
/// system clock, the agent assignment procedure's keyword rule table, a percentile
/// predictor, the greedy assigner, the default policy set and the escalation ladder.
#[derive(Debug)]
pub struct CoordinatorBuilder {
    clock: Arc<dyn Clock>,
    // The parts are made at `build` when the host sets none: the default analyzer
    // compiles the rule table, work wasted on a host that brings its own.
    analyzer: Option<Analyzer>,
    predictor: Option<Box<dyn ResourcePredictor>>,
    assigner: Option<Box<dyn Assigner>>,
    policies: Option<Arc<dyn PolicyEnforcer>>,
    ledger: LedgerConfig,
    escalation: EscalationPolicy,
    analyze_explicit: bool,
    keep_events: bool,
    on_agent_loss: OnAgentLoss,
    on_quarantine: OnQuarantine,
    safe_mode_rules: SafeModeRules,
    external: Vec<crate::id::Capability>,
    journaled: bool,
}

impl Default for CoordinatorBuilder {
    fn default() -> Self {
        CoordinatorBuilder {
            clock: Arc::new(SystemClock),
            analyzer: None,
            predictor: None,
            assigner: None,
            policies: None,
            ledger: LedgerConfig::default(),
            escalation: EscalationPolicy::default(),
            analyze_explicit: false,
            keep_events: true,
            on_agent_loss: OnAgentLoss::default(),
            on_quarantine: OnQuarantine::default(),
            safe_mode_rules: SafeModeRules::default(),
            external: super::comms::default_external(),
            journaled: false,
        }
    }
}

impl CoordinatorBuilder {
    /// Sets the clock (use a `ManualClock` in tests). The [`Core`] has none: its
    /// commands take `now`.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sets the task analyzer.
    ///
    /// A [`RuleBasedAnalyzer`](crate::RuleBasedAnalyzer) (the default) is kept as
    /// itself: the coordinator keeps the rules that fired for a task by number and
    /// names them only for a task it refuses. Any other analyzer, a wrapper around
    /// the built-in one included, names them for every task it reads
    /// ([`TaskAnalyzer::analyze_in_place_into`]); the explanations are the same.
    pub fn analyzer(mut self, analyzer: impl TaskAnalyzer + 'static) -> Self {
        self.analyzer = Some(Analyzer::of(analyzer));
        self
    }

    /// Sets the resource predictor. Its learned state is the host's: a host that
    /// restores a coordinator hands in the predictor it kept (see
    /// [`Core::predictor`]).
    pub fn predictor(mut self, predictor: impl ResourcePredictor + 'static) -> Self {
        self.predictor = Some(Box::new(predictor));
        self
    }

    /// Sets the assigner.
    pub fn assigner(mut self, assigner: impl Assigner + 'static) -> Self {
        self.assigner = Some(Box::new(assigner));
        self
    }

    /// Sets the policy enforcer.
    pub fn policies(mut self, policies: impl PolicyEnforcer + 'static) -> Self {
        self.policies = Some(Arc::new(policies));
        self
    }

    /// Sets the ledger's settings (queue aging, reservations, idle reclaim).
    pub fn ledger_config(mut self, config: LedgerConfig) -> Self {
        self.ledger = config;
        self
    }

    /// Whether tasks that state their requirements (a role or a capability) go
    /// through the keyword analyzer too (default: no; their name and description are
    /// not read for more requirements).
    pub fn analyze_stated_requirements(mut self, yes: bool) -> Self {
        self.analyze_explicit = yes;
        self
    }

    /// Whether the coordinator keeps its events until the host drains them (default:
    /// yes). A host that never reads them (one that only runs workflows through an
    /// executor, say) turns this off: each command's events are then dropped once
    /// the command has ended, instead of growing by two or three a task for as long
    /// as the process lives. The journal's records still hold them (recording is
    /// apart), and `drain_events` hands back none.
    ///
    /// ```
    /// use concord::coordinator::Coordinator;
    /// use concord::{AgentId, AgentProfile};
    ///
    /// let coordinator = Coordinator::builder().keep_events(false).build();
    /// coordinator.register_agent(AgentProfile::new(AgentId::new(1), "w1"))?;
    /// coordinator.register_agent(AgentProfile::new(AgentId::new(2), "w2"))?;
    /// assert!(coordinator.drain_events().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keep_events(mut self, yes: bool) -> Self {
        self.keep_events = yes;
        self
    }

    /// What becomes of a running task whose agent leaves service (default:
    /// [`OnAgentLoss::Requeue`]).
    pub fn on_agent_loss(mut self, what: OnAgentLoss) -> Self {
        self.on_agent_loss = what;
        self
    }

    /// What becomes of a quarantined agent's running tasks (default:
    /// [`OnQuarantine::Requeue`]).
    pub fn on_quarantine(mut self, what: OnQuarantine) -> Self {
        self.on_quarantine = what;
        self
    }

    /// Sets when the coordinator enters safe mode by itself (default:
    /// [`SafeModeRules::default`], the procedures' rules; [`SafeModeRules::none`]
    /// for safe mode by hand only).
    ///
    /// # Errors
    /// [`CoordinatorError::InvalidSafeModeRule`] naming the rule and its bad value.
    pub fn safe_mode_rules(mut self, rules: SafeModeRules) -> Result<Self, CoordinatorError> {
        rules.validate()?;
        self.safe_mode_rules = rules;
        Ok(self)
    }

    /// Sets the capabilities that count as external communication (default:
    /// [`DEFAULT_EXTERNAL_CAPABILITIES`](super::DEFAULT_EXTERNAL_CAPABILITIES)):
    /// while communications are stopped
    /// ([`Core::stop_communications`](super::Core::stop_communications)), every task
    /// that needs one of them waits. An empty list turns the gate off.
    ///
    /// # Errors
    /// [`CoordinatorError::InvalidExternalCapability`] naming the first invalid
    /// name; the builder is not changed.
    ///
    /// ```
    /// use concord::coordinator::Coordinator;
    /// let coordinator = Coordinator::builder()
    ///     .external_capabilities(["Slack", "email"])?
    ///     .build();
    /// let external = coordinator.with_core(|c| {
    ///     c.external_capabilities().iter().map(|c| c.to_string()).collect::<Vec<_>>()
    /// });
    /// assert_eq!(external, ["email", "slack"]);
    /// assert!(Coordinator::builder().external_capabilities(["not ok"]).is_err());
    /// # Ok::<(), concord::coordinator::CoordinatorError>(())
    /// ```
    pub fn external_capabilities<I, S>(mut self, capabilities: I) -> Result<Self, CoordinatorError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Vec::new();
        for c in capabilities {
            let c = c.as_ref();
            let capability = crate::id::Capability::new(c).map_err(|source| {
                CoordinatorError::InvalidExternalCapability {
                    capability: c.to_owned(),
                    source,
                }
            })?;
            parsed.push(capability);
        }
        parsed.sort();
        parsed.dedup();
        self.external = parsed;
        Ok(self)
    }

    /// Sets the escalation ladder (default: 30 minutes to the orchestrator, 2 hours
    /// to a human, who has an hour to answer before the default decision, deny,
    /// applies).
    ///
    /// # Errors
    /// [`CoordinatorError::Conflict`] if the policy is malformed.
    pub fn escalation_policy(mut self, policy: EscalationPolicy) -> Result<Self, CoordinatorError> {
        ConflictManager::new(policy.clone())?;
        self.escalation = policy;
        Ok(self)
    }

    fn parts(&mut self) -> Parts {
        Parts {
            analyzer: self
                .analyzer
                .take()
                .unwrap_or_else(|| Analyzer::Rules(Box::default())),
            predictor: self
                .predictor
                .take()
                .unwrap_or_else(|| Box::new(PercentilePredictor::default())),
            assigner: self
                .assigner
                .take()
                .unwrap_or_else(|| Box::new(GreedyAssigner::default())),
            policies: self
                .policies
                .take()
                .unwrap_or_else(|| Arc::new(PolicySet::default())),
            analyze_explicit: self.analyze_explicit,
            keep_events: self.keep_events,
            on_agent_loss: self.on_agent_loss,
            on_quarantine: self.on_quarantine,
            safe_mode_rules: self.safe_mode_rules.clone(),
            external: self.external.clone(),
        }
    }

    /// Records every command the core carries out for the journal (see
    /// [`Journal`](super::Journal)): the host writes the records with
    /// [`Core::write_journal`] and rebuilds the core after a crash with
    /// [`recover_core`](Self::recover_core). Off by default: recording copies each
    /// command's arguments and events.
    pub fn journaled(mut self) -> Self {
        self.journaled = true;
        self
    }

    /// Builds the sans-I/O core, empty: the host drives it with `now` and
    /// [`Core::poll_timeout`].
    pub fn build_core(mut self) -> Core {
        // Checked by `escalation_policy`; the default is valid.
        let conflicts = ConflictManager::new(self.escalation.clone())
            .unwrap_or_else(|_| unreachable!("escalation policies are validated when set"));
        let parts = self.parts();
        let mut core = Core {
            parts,
            s: State::new(ResourceLedger::with_config(self.ledger.clone()), conflicts),
        };
        core.s.journal.on = self.journaled;
        core
    }

    /// Builds the coordinator, empty.
    pub fn build(self) -> Coordinator {
        let clock = Arc::clone(&self.clock);
        Coordinator::from_core(self.build_core(), clock)
    }

    /// Builds the sans-I/O core from a checkpoint (see [`restore`](Self::restore)).
    ///
    /// # Errors
    /// As [`restore`](Self::restore).
    pub fn restore_core(mut self, snapshot: CoordinatorSnapshot) -> Result<Core, CoordinatorError> {
        let parts = self.parts();
        let mut core = super::snapshot::restore(parts, self.escalation.clone(), snapshot)?;
        core.s.journal.on = self.journaled;
        Ok(core)
    }

    /// Rebuilds the sans-I/O core after a crash: from the journal's last checkpoint
    /// (or empty, if it has none) and the records after it, carried out again in
    /// order. The core records from then on (as if [`journaled`](Self::journaled)),
    /// numbering its records after the journal's last.
    ///
    /// Build it with the configuration that wrote the journal: the same analyzer,
    /// assigner, policies and ladder, and the predictor as it was at the checkpoint
    /// (see [`ResourcePredictor`](crate::ResourcePredictor)'s note on learned state).
    /// Another configuration is caught as [`JournalError::Diverged`](super::JournalError::Diverged).
    ///
    /// # Errors
    /// The journal's (a corrupt checkpoint or record, a gap); a record that does not
    /// make the events it holds when carried out again; the checkpoint's restore
    /// errors (see [`restore`](Self::restore)). Nothing is built then.
    pub fn recover_core(self, journal: &dyn super::Journal) -> Result<Core, CoordinatorError> {
        let checkpoint = journal.load_checkpoint()?;
        let from = checkpoint.as_ref().map_or(1, |c| c.journal_next);
        let mut records = Vec::new();
        journal.read_from(from, &mut records)?;
        self.recover_core_from(checkpoint, &records)
    }

    /// [`recover_core`](Self::recover_core) from a checkpoint and records the host
    /// read itself: for a host that chooses to recover up to a corrupt record (the
    /// records [`Journal::read_from`](super::Journal::read_from) pushed before it),
    /// or that keeps the journal in its own format. Records the checkpoint already
    /// holds are skipped.
    ///
    /// Recovered up to a corrupt record, the core numbers its next record as the
    /// corrupt one's: cut that record and any after it from the storage before the
    /// core writes to the journal again, or [`Core::write_journal`] is refused with
    /// [`JournalError::Conflict`](super::JournalError::Conflict) for good (the journal's
    /// next number is past them). A torn tail is the usual case: the write the crash
    /// interrupted, never acknowledged, and so never acted on.
    ///
    /// # Errors
    /// As [`recover_core`](Self::recover_core).
    pub fn recover_core_from(
        mut self,
        checkpoint: Option<CoordinatorSnapshot>,
        records: &[super::Record],
    ) -> Result<Core, CoordinatorError> {
        self.journaled = true;
        let mut core = match checkpoint {
            Some(c) => self.restore_core(c)?,
            None => self.build_core(),
        };
        let from = core.journal_next();
        for record in records.iter().skip_while(|r| r.seq < from) {
            core.replay(record)?;
        }
        Ok(core)
    }

    /// [`recover_core`](Self::recover_core), as the thread-safe facade.
    ///
    /// # Errors
    /// As [`recover_core`](Self::recover_core).
    pub fn recover(self, journal: &dyn super::Journal) -> Result<Coordinator, CoordinatorError> {
        let clock = Arc::clone(&self.clock);
        Ok(Coordinator::from_core(self.recover_core(journal)?, clock))
    }

    /// [`recover_core_from`](Self::recover_core_from), as the thread-safe facade: for
    /// a host that recovers up to a corrupt record (cut it from the storage before
    /// the coordinator writes again), or keeps the journal in its own format.
    ///
    /// # Errors
    /// As [`recover_core`](Self::recover_core).
    pub fn recover_from(
        self,
        checkpoint: Option<CoordinatorSnapshot>,
        records: &[super::Record],
    ) -> Result<Coordinator, CoordinatorError> {
        let clock = Arc::clone(&self.clock);
        Ok(Coordinator::from_core(
            self.recover_core_from(checkpoint, records)?,
            clock,
        ))
    }

    /// Builds the coordinator from a checkpoint.
    ///
    /// Open conflicts carry on: they escalate when they would have without the
    /// restart, and the completion of the task holding the contested resource
    /// resolves them. Running tasks hold their claims again, tasks blocked behind them
    /// wait for them again, and new conflicts get ids past every restored one.
    ///
    /// # Errors
    /// [`CoordinatorError::CorruptSnapshot`] if it is of another version or its parts
    /// do not agree (an assignment the registry or ledger does not know, an open
    /// conflict held by a task that is not running, a task blocked behind a task that
    /// is not running, no conflict id left); the registry's, ledger's and conflict
    /// manager's own checks as theirs.
    pub fn restore(self, snapshot: CoordinatorSnapshot) -> Result<Coordinator, CoordinatorError> {
        let clock = Arc::clone(&self.clock);
        Ok(Coordinator::from_core(self.restore_core(snapshot)?, clock))
    }
}
