//! [`ConflictResolver`] and the built-in [`Strategy`]s.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Conflict, Party};
use crate::id::TaskId;

/// What a resolution tells the host to do. The conflict module decides; the host (or
/// the coordinator) carries these out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResolutionAction {
    /// The party keeps (or takes) the contested resources and goes on.
    Proceed {
        /// Who goes on.
        party: Party,
    },
    /// The party's claim is refused; it may ask again later.
    RejectClaim {
        /// Who is refused.
        party: Party,
    },
    /// The party's task is stopped and goes back to the queue (preemption).
    Requeue {
        /// The preempted task.
        task: TaskId,
        /// Who was preempted.
        party: Party,
    },
    /// The party waits until `behind` is done, then goes on (serialization).
    WaitBehind {
        /// Who waits.
        party: Party,
        /// Whom it waits for.
        behind: Party,
    },
    /// The party's claim is downgraded to shared.
    Share {
        /// Whose claim.
        party: Party,
    },
    /// The party narrows its claim to leave `resource` out.
    Narrow {
        /// Whose claim.
        party: Party,
        /// The name it gives up.
        resource: String,
    },
    /// A human must decide; nothing is done until then.
    AwaitHuman,
}

/// The outcome of one attempt to resolve a conflict: the conflict management
/// procedure's `resolution` with `successful` and `failure_reason`.
///
/// Three shapes: [`success`](Resolution::success) (closes the conflict),
/// [`failure`](Resolution::failure) (escalates it one level) and
/// [`pending`](Resolution::pending) (no answer yet; the escalation clock runs on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    successful: bool,
    pending: bool,
    winner: Option<Party>,
    actions: Vec<ResolutionAction>,
    failure_reason: Option<String>,
}

impl Resolution {
    /// Resolved: `winner` (if any) goes on, and `actions` settle the rest.
    pub fn success(winner: Option<Party>, actions: Vec<ResolutionAction>) -> Self {
        Resolution {
            successful: true,
            pending: false,
            winner,
            actions,
            failure_reason: None,
        }
    }

    /// Not resolved, for `reason`: the conflict escalates.
    pub fn failure(reason: impl Into<String>) -> Self {
        Resolution {
            successful: false,
            pending: false,
            winner: None,
            actions: Vec::new(),
            failure_reason: Some(reason.into()),
        }
    }

    /// No decision yet (a human was asked, or the resolver has not answered): the
    /// conflict stays where it is and escalates when its time runs out.
    pub fn pending(reason: impl Into<String>, actions: Vec<ResolutionAction>) -> Self {
        Resolution {
            successful: false,
            pending: true,
            winner: None,
            actions,
            failure_reason: Some(reason.into()),
        }
    }

    /// Whether the conflict is resolved.
    pub fn successful(&self) -> bool {
        self.successful
    }

    /// Whether the attempt is still waiting for an answer.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// Who won, if anyone.
    pub fn winner(&self) -> Option<&Party> {
        self.winner.as_ref()
    }

    /// What to do.
    pub fn actions(&self) -> &[ResolutionAction] {
        &self.actions
    }

    /// Why it failed or is pending.
    pub fn failure_reason(&self) -> Option<&str> {
        self.failure_reason.as_deref()
    }
}

/// Resolves a conflict: the conflict management procedure's
/// `await resolver.resolve_conflict(conflict)`.
///
/// # Contract
/// - `resolve` must not block the caller; do I/O (asking an orchestrator agent, a
///   human, a lock service) on the host's runtime.
/// - It may fail ([`Resolution::failure`]) or not know yet ([`Resolution::pending`]);
///   the [`ConflictManager`](super::ConflictManager) escalates either way, so a
///   resolver that never answers cannot leave a conflict open forever.
///
/// # Examples
/// A resolver that always lets the first party go on:
/// ```
/// use concord::conflict::{Conflict, ConflictResolver, Resolution, ResolutionAction};
///
/// #[derive(Debug)]
/// struct FirstParty;
/// #[concord::async_trait]
/// impl ConflictResolver for FirstParty {
///     async fn resolve(&self, conflict: &Conflict) -> Resolution {
///         match conflict.parties().first() {
///             Some(p) => Resolution::success(Some(*p), vec![ResolutionAction::Proceed { party: *p }]),
///             None => Resolution::failure("no parties"),
///         }
///     }
/// }
/// # use concord::conflict::{ConflictId, ConflictKind, Party};
/// # let c = Conflict::new(ConflictId::new(1), ConflictKind::Disagreement, concord::Timestamp::EPOCH)
/// #     .with_party(Party::task(concord::TaskId::new(1)));
/// assert!(futures::executor::block_on(FirstParty.resolve(&c)).successful());
/// ```
#[async_trait::async_trait]
pub trait ConflictResolver: fmt::Debug + Send + Sync + 'static {
    /// Tries to resolve `conflict`.
    async fn resolve(&self, conflict: &Conflict) -> Resolution;
}

/// The built-in resolution strategies, as data. Each is also a [`ConflictResolver`]
/// that answers at once.
///
/// Ties (same priority, same start) are never broken arbitrarily: the strategy fails and
/// the conflict escalates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strategy {
    /// The highest priority goes on; the others' claims are refused.
    PriorityWins,
    /// The earliest claim goes on; the later ones are refused.
    FirstComeFirstServed,
    /// The highest priority goes on; the others' tasks are preempted and requeued.
    PreemptLowerPriority,
    /// The earliest claim goes on; each later one waits behind the one before it.
    Serialize,
    /// Every exclusive claim that allows it is downgraded to shared.
    Share,
    /// Nested names only: the broader claims leave the narrower names out.
    Split,
    /// A human decides; the resolution stays pending.
    AskHuman,
}

impl Strategy {
    /// Applies the strategy to `conflict`, without waiting.
    ///
    /// ```
    /// use concord::conflict::{Conflict, ConflictId, ConflictKind, Party, Strategy};
    /// use concord::{Priority, TaskId, Timestamp};
    ///
    /// let c = Conflict::new(ConflictId::new(1), ConflictKind::ResourceContention, Timestamp::EPOCH)
    ///     .with_party(Party::task(TaskId::new(1)).with_priority(Priority::LOW))
    ///     .with_party(Party::task(TaskId::new(2)).with_priority(Priority::HIGH));
    /// let r = Strategy::PriorityWins.apply(&c);
    /// assert!(r.successful());
    /// assert_eq!(r.winner().and_then(|p| p.task_id()), Some(TaskId::new(2)));
    /// ```
    pub fn apply(self, conflict: &Conflict) -> Resolution {
        let parties = conflict.parties();
        if parties.len() < 2 && self != Strategy::AskHuman {
            return Resolution::failure(format!(
                "{} has {} parties; nothing to arbitrate",
                conflict.id(),
                parties.len()
            ));
        }
        match self {
            Strategy::PriorityWins => {
                by_priority(parties, |p| ResolutionAction::RejectClaim { party: *p })
            }
            Strategy::PreemptLowerPriority => {
                if let Some(p) = parties.iter().find(|p| p.task_id().is_none()) {
                    return Resolution::failure(format!("{p} has no task to preempt"));
                }
                by_priority(parties, |p| ResolutionAction::Requeue {
                    task: p.task_id().unwrap_or(TaskId::new(0)),
                    party: *p,
                })
            }
            Strategy::FirstComeFirstServed => {
                let order = match by_arrival(parties) {
                    Ok(o) => o,
                    Err(r) => return r,
                };
                let mut actions = vec![ResolutionAction::Proceed { party: order[0] }];
                actions.extend(
                    order[1..]
                        .iter()
                        .map(|p| ResolutionAction::RejectClaim { party: *p }),
                );
                Resolution::success(Some(order[0]), actions)
            }
            Strategy::Serialize => {
                let order = match by_arrival(parties) {
                    Ok(o) => o,
                    Err(r) => return r,
                };
                let mut actions = vec![ResolutionAction::Proceed { party: order[0] }];
                actions.extend(order.windows(2).map(|w| ResolutionAction::WaitBehind {
                    party: w[1],
                    behind: w[0],
                }));
                Resolution::success(Some(order[0]), actions)
            }
            Strategy::Share => {
                let exclusive = parties
                    .iter()
                    .filter(|p| p.mode() != Some(crate::task::ClaimMode::Shared));
                let mut actions = Vec::new();
                for p in exclusive {
                    if !p.is_shareable() {
                        return Resolution::failure(format!(
                            "{p} holds an exclusive claim that cannot be shared"
                        ));
                    }
                    actions.push(ResolutionAction::Share { party: *p });
                }
                Resolution::success(None, actions)
            }
            Strategy::Split => split(conflict),
            Strategy::AskHuman => Resolution::pending(
                format!("{} awaits a human decision", conflict.id()),
                vec![ResolutionAction::AwaitHuman],
            ),
        }
    }
}

#[async_trait::async_trait]
impl ConflictResolver for Strategy {
    async fn resolve(&self, conflict: &Conflict) -> Resolution {
        self.apply(conflict)
    }
}

fn by_priority(parties: &[Party], lose: impl Fn(&Party) -> ResolutionAction) -> Resolution {
    let Some(top) = parties.iter().map(|p| p.priority()).max() else {
        return Resolution::failure("no parties");
    };
    let winners: Vec<&Party> = parties.iter().filter(|p| p.priority() == top).collect();
    if winners.len() > 1 {
        return Resolution::failure(format!("{} parties tie at priority {top}", winners.len()));
    }
    let winner = *winners[0];
    let mut actions = vec![ResolutionAction::Proceed { party: winner }];
    actions.extend(parties.iter().filter(|p| **p != winner).map(lose));
    Resolution::success(Some(winner), actions)
}

fn by_arrival(parties: &[Party]) -> Result<Vec<Party>, Resolution> {
    let mut order = parties.to_vec();
    order.sort_by_key(|p| p.since());
    if let Some(w) = order.windows(2).find(|w| w[0].since() == w[1].since()) {
        return Err(Resolution::failure(format!(
            "{} and {} claimed at the same time ({})",
            w[0],
            w[1],
            w[0].since()
        )));
    }
    Ok(order)
}

fn split(conflict: &Conflict) -> Resolution {
    // Claim conflicts carry one resource per party, in party order; a single resource
    // means the same name, which cannot be split.
    let resources = conflict.resources();
    let parties = conflict.parties();
    if resources.len() != parties.len() || resources.len() < 2 {
        return Resolution::failure(format!(
            "{} is over one name; it cannot be split",
            conflict.id()
        ));
    }
    let depth = |r: &str| r.split('/').filter(|s| !s.is_empty()).count();
    let mut actions = Vec::new();
    for (i, (party, name)) in parties.iter().zip(resources).enumerate() {
        for (j, other) in resources.iter().enumerate() {
            if i != j && depth(name) < depth(other) {
                actions.push(ResolutionAction::Narrow {
                    party: *party,
                    resource: other.clone(),
                });
            }
        }
    }
    if actions.is_empty() {
        return Resolution::failure(format!("{} has no nested names", conflict.id()));
    }
    Resolution::success(None, actions)
}
