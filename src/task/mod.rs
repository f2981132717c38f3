//! Tasks and what they need.
//!
//! Owns [`Task`], [`Requirements`] (roles, capabilities, resources, priority, deadline,
//! exclusive and shared claims), [`Priority`], [`Claim`], and the [`TaskAnalyzer`]
//! trait with its rule-based default: the "analyze task requirements" step of the
//! agent assignment procedure. This module decides nothing about agents and must never
//! import `agent`, `assignment` or `coordinator`.

mod analyzer;
mod error;

pub use analyzer::{
    AnalysisRule, Analyzed, FiredRule, RuleBasedAnalyzer, RuleSet, TaskAnalyzer, Trigger,
};
pub use error::TaskError;

pub(crate) use analyzer::FiredMark;

// Defined below `resource`, whose fair queue orders requests by it; it is the task's.
pub use crate::priority::Priority;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::id::{Capability, Role, TaskId};
use crate::resource::Resources;

/// Whether a claim excludes every other claim on an overlapping name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClaimMode {
    /// No other claim may overlap (a write lock, a port binding).
    Exclusive,
    /// Other shared claims may overlap (a read lock).
    Shared,
}

/// A claim on a named thing a task touches: a path (`repo/src/a.rs`), a port
/// (`port/8080`), an environment (`env/staging`). Names are hierarchical, split on
/// `/`; a claim on `repo/` covers everything under it.
///
/// ```
/// use concord::Claim;
/// let c = Claim::exclusive("port/8080");
/// assert_eq!(c.resource(), "port/8080");
/// assert!(c.is_exclusive());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Claim {
    resource: String,
    mode: ClaimMode,
}

impl Claim {
    /// Whether the claim names nothing: an empty name, or only `/`. The
    /// [`ConflictDetector`](crate::conflict::ConflictDetector) refuses such a claim,
    /// and the coordinator refuses a task holding one before it changes anything.
    pub fn names_nothing(&self) -> bool {
        self.resource.split('/').all(str::is_empty)
    }

    /// An exclusive claim on `resource`.
    pub fn exclusive(resource: impl Into<String>) -> Self {
        Claim {
            resource: resource.into(),
            mode: ClaimMode::Exclusive,
        }
    }

    /// A shared claim on `resource`.
    pub fn shared(resource: impl Into<String>) -> Self {
        Claim {
            resource: resource.into(),
            mode: ClaimMode::Shared,
        }
    }

    /// The claimed name.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The claim's mode.
    pub fn mode(&self) -> ClaimMode {
        self.mode
    }

    /// Whether the claim is exclusive.
    pub fn is_exclusive(&self) -> bool {
        self.mode == ClaimMode::Exclusive
    }
}

/// What a task needs from the agent that does it.
///
/// An agent serves a task when it has every listed role and every listed capability;
/// empty lists ask for nothing. Built with `with_*` setters; serde data.
///
/// ```
/// use concord::{Capability, Priority, Requirements, Role};
///
/// let req = Requirements::new()
///     .with_role(Role::new("qa")?)
///     .with_capability(Capability::new("screenshot")?)
///     .with_resources("cpu=500m,memory=1Gi".parse()?)
///     .with_priority(Priority::HIGH);
/// assert_eq!(req.roles()[0].as_str(), "qa");
/// assert_eq!(req.resources().cpu_millis(), 500);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Requirements {
    roles: SortedList<Role>,
    capabilities: SortedList<Capability>,
    resources: Resources,
    priority: Priority,
    deadline: Option<Timestamp>,
    claims: SortedList<Claim>,
}

impl Requirements {
    /// Whether the requirements name a role or a capability: the host said who can
    /// do the task, and the coordinator takes it at its word instead of reading the
    /// task's name and description through the keyword analyzer (unless told to, see
    /// [`CoordinatorBuilder::analyze_stated_requirements`](crate::coordinator::CoordinatorBuilder::analyze_stated_requirements)).
    pub fn is_stated(&self) -> bool {
        !self.roles().is_empty() || !self.capabilities().is_empty()
    }

    /// Moves the roles and capabilities lists into `kept` (see [`KeptShares`]),
    /// leaving them empty: what a finished task gives back before it is dropped, for
    /// the analyzer to take again.
    pub(crate) fn keep_lists(&mut self, kept: &mut KeptShares) {
        self.roles.keep_in(&mut kept.roles);
        self.capabilities.keep_in(&mut kept.capabilities);
    }

    /// [`clone_from`](Clone::clone_from), the roles and capabilities lists traded
    /// with `kept` (see [`KeptShares`]) when there is one.
    pub(crate) fn clone_from_kept(&mut self, source: &Requirements, kept: Option<&mut KeptShares>) {
        let (roles, capabilities) = match kept {
            Some(k) => (Some(&mut k.roles), Some(&mut k.capabilities)),
            None => (None, None),
        };
        (self.roles).clone_from_kept(&source.roles, roles);
        (self.capabilities).clone_from_kept(&source.capabilities, capabilities);
        self.resources.clone_from(&source.resources);
        self.priority = source.priority;
        self.deadline = source.deadline;
        self.claims.clone_from(&source.claims);
    }
}

impl Clone for Requirements {
    fn clone(&self) -> Self {
        Requirements {
            roles: self.roles.clone(),
            capabilities: self.capabilities.clone(),
            resources: self.resources.clone(),
            priority: self.priority,
            deadline: self.deadline,
            claims: self.claims.clone(),
        }
    }

    /// Field by field: lists already shared with `source` are kept as they are.
    fn clone_from(&mut self, source: &Self) {
        self.clone_from_kept(source, None);
    }
}

/// A sorted list without duplicates, shared between clones: a task's requirements
/// are cloned for the task, its analysis and every policy proposal, and a cloned
/// `Vec` of roles was an allocation each time. Changed (rarely: when requirements are
/// built or merged) by making a new list. Serialized as a sequence; deserializing
/// sorts and removes duplicates.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SortedList<T>(Option<Arc<[T]>>);

impl<T> Clone for SortedList<T> {
    fn clone(&self) -> Self {
        SortedList(self.0.clone())
    }

    /// Keeps the list when it is already `source`'s (no reference count to move).
    fn clone_from(&mut self, source: &Self) {
        self.clone_from_kept(source, None);
    }
}

impl<T> SortedList<T> {
    /// [`clone_from`](Clone::clone_from), trading lists with `kept` when there is
    /// one: the list this one held is kept there, and `source`'s is taken from there
    /// when it is kept.
    fn clone_from_kept(&mut self, source: &Self, mut kept: Option<&mut Kept<[T]>>) {
        if shares(self.0.as_ref(), source.0.as_ref()) {
            return;
        }
        let new = (source.0.as_ref()).map(|b| match kept.as_deref_mut() {
            Some(kept) => kept.take_or_share(b),
            None => Arc::clone(b),
        });
        let old = std::mem::replace(&mut self.0, new);
        if let (Some(old), Some(kept)) = (old, kept) {
            kept.keep_list(old);
        }
    }
}

/// How many of each sort [`KeptShares`] keeps (a power of two).
const KEPT: usize = 32;

/// Shared lists and names set aside by what writes one task's over another's again
/// and again (the policy admission's proposal, once a task; the one-call path's
/// task, whose finished predecessor gives its lists back): what is written over
/// is kept here instead of dropped, and what is kept here is taken back instead of
/// shared again. A host's tasks come with few distinct lists (the analyzer's rules
/// give the same ones to every task they fire for) and kinds, so they mostly trade
/// places, where dropping one and sharing the next moved two reference counts (an
/// atomic operation each) per list or name and task.
#[derive(Debug, Default)]
pub(crate) struct KeptShares {
    roles: Kept<[Role]>,
    capabilities: Kept<[Capability]>,
    /// Kinds, by their text: a host makes a new one per task more often than not.
    kinds: Kept<str>,
}

impl KeptShares {
    /// Makes `slot` `source`'s text, sharing `source` or a kept name of the same text
    /// (a proposal reads its kind's text only).
    pub(crate) fn share_kind(&mut self, slot: &mut Arc<str>, source: &Arc<str>) {
        if Arc::ptr_eq(slot, source) || crate::id::same_name(slot, source) {
            return;
        }
        let found = (self.kinds).take(text_place(source), |k| crate::id::same_name(k, source));
        let old = std::mem::replace(slot, found.unwrap_or_else(|| Arc::clone(source)));
        self.kinds.keep(text_place(&old), old);
    }
}

/// Shared values kept by place, two places a value (its own and the one beside it),
/// so that two values of one place are both kept: taking one back is two looks, and
/// one kept where both places are taken drops the value in its own.
#[derive(Debug)]
struct Kept<T: ?Sized>([Option<Arc<T>>; KEPT]);

impl<T: ?Sized> Default for Kept<T> {
    fn default() -> Self {
        Kept(std::array::from_fn(|_| None))
    }
}

impl<T: ?Sized> Kept<T> {
    /// Takes back the value kept at `place` or beside it that `is` the one looked
    /// for, if there is one.
    fn take(&mut self, place: usize, is: impl Fn(&Arc<T>) -> bool) -> Option<Arc<T>> {
        let at = [place, place ^ 1]
            .into_iter()
            .find(|&at| self.0[at].as_ref().is_some_and(&is))?;
        self.0[at].take()
    }

    /// Keeps `value` at `place`, or beside it if only that is free.
    fn keep(&mut self, place: usize, value: Arc<T>) {
        let at = if self.0[place].is_some() && self.0[place ^ 1].is_none() {
            place ^ 1
        } else {
            place
        };
        self.0[at] = Some(value);
    }

    /// `list` itself (the same allocation) taken back if it is kept, else shared:
    /// lists are kept by their address.
    fn take_or_share(&mut self, list: &Arc<T>) -> Arc<T> {
        let found = self.take(address_place(list), |k| Arc::ptr_eq(k, list));
        found.unwrap_or_else(|| Arc::clone(list))
    }

    /// Keeps `list`, by its address.
    fn keep_list(&mut self, list: Arc<T>) {
        self.keep(address_place(&list), list);
    }
}

/// The place of a list: its address, mixed (allocations are aligned, and lists made
/// one after the other lie at steps of their size).
fn address_place<T: ?Sized>(list: &Arc<T>) -> usize {
    mix(Arc::as_ptr(list) as *const () as usize as u64)
}

/// The place of a name: its length and its first, middle and last bytes, mixed.
fn text_place(name: &str) -> usize {
    let b = name.as_bytes();
    let byte = |i: usize| u64::from(b.get(i).copied().unwrap_or(0));
    let n = b.len();
    mix(n as u64 | byte(0) << 16 | byte(n / 2) << 24 | byte(n.wrapping_sub(1)) << 32)
}

/// A place for `x`, from its bits all mixed into the top ones.
fn mix(x: u64) -> usize {
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - KEPT.trailing_zeros())) as usize
}

/// Makes `slot` share `source`, leaving it alone when it already does (the same
/// allocation, or both none): no reference count moves for what is already shared.
pub(crate) fn share_from<T: ?Sized>(slot: &mut Option<Arc<T>>, source: Option<&Arc<T>>) {
    if !shares(slot.as_ref(), source) {
        *slot = source.cloned();
    }
}

/// Whether `a` and `b` are the same allocation, or both none.
fn shares<T: ?Sized>(a: Option<&Arc<T>>, b: Option<&Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

impl<T> Default for SortedList<T> {
    fn default() -> Self {
        SortedList(None)
    }
}

impl<T: Ord + Clone> SortedList<T> {
    fn as_slice(&self) -> &[T] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// Adds the items of `more` that are not in the list yet.
    fn extend<'a>(&mut self, more: impl IntoIterator<Item = &'a T>)
    where
        T: 'a,
    {
        // Copied, and made again, only once something is added: merging a rule's role
        // that the task already has (the analyzer does so for every task) allocates
        // nothing.
        let mut items: Option<Vec<T>> = None;
        for x in more {
            let current = items.as_deref().unwrap_or(self.as_slice());
            if let Err(i) = current.binary_search(x) {
                items
                    .get_or_insert_with(|| self.as_slice().to_vec())
                    .insert(i, x.clone());
            }
        }
        if let Some(items) = items {
            self.0 = Some(Arc::from(items));
        }
    }
}

impl<T: Ord + Clone> SortedList<T> {
    /// Adds the items of `other` that are not in the list yet. An empty list takes
    /// `other`'s, shared: the analyzer merges a rule's roles and capabilities into a
    /// task that states none, and copying them made two allocations per task.
    fn union(&mut self, other: &SortedList<T>) {
        self.union_kept(other, None);
    }

    /// [`union`](Self::union), an empty list taking `other`'s from `kept` when it is
    /// kept there.
    fn union_kept(&mut self, other: &SortedList<T>, kept: Option<&mut Kept<[T]>>) {
        match (&self.0, &other.0) {
            (_, None) => {}
            (None, Some(b)) => {
                self.0 = Some(match kept {
                    Some(kept) => kept.take_or_share(b),
                    None => Arc::clone(b),
                });
            }
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {}
            (Some(_), Some(b)) => self.extend(b.iter()),
        }
    }
}

impl<T> SortedList<T> {
    /// Keeps the list in `kept`, leaving this one empty.
    fn keep_in(&mut self, kept: &mut Kept<[T]>) {
        if let Some(list) = self.0.take() {
            kept.keep_list(list);
        }
    }
}

impl<T: Serialize> Serialize for SortedList<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.as_deref().unwrap_or(&[]))
    }
}

impl<'de, T: Deserialize<'de> + Ord + Clone> Deserialize<'de> for SortedList<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Sorted once: inserting the items one by one in order cost n² for a list
        // read in descending order.
        Ok(SortedList::from_items(Vec::<T>::deserialize(deserializer)?))
    }
}

impl<T: Ord + Clone> SortedList<T> {
    /// The list of `items`, sorted once and without duplicates.
    fn from_items(mut items: Vec<T>) -> Self {
        items.sort_unstable();
        items.dedup();
        SortedList((!items.is_empty()).then(|| Arc::from(items)))
    }

    /// Adds `more` to the list, sorted once with what it holds: the bulk form of
    /// [`extend`](Self::extend), which copies the list for each item it adds.
    fn add_all(&mut self, more: impl IntoIterator<Item = T>) {
        let mut items: Vec<T> = more.into_iter().collect();
        if items.is_empty() {
            return;
        }
        items.extend_from_slice(self.as_slice());
        *self = SortedList::from_items(items);
    }
}

impl Requirements {
    /// Requirements that ask for nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a role the agent must play (kept sorted, without duplicates).
    ///
    /// Each call copies the list: to add many (a host's list of hundreds), use
    /// [`with_roles`](Self::with_roles), which sorts them once.
    pub fn with_role(mut self, role: Role) -> Self {
        self.roles.extend([&role]);
        self
    }

    /// Adds roles the agent must play, as [`with_role`](Self::with_role) adds each,
    /// sorted once with those already there: building thousands one at a time
    /// copies the list each time, and took seconds.
    ///
    /// ```
    /// use concord::{Requirements, Role};
    ///
    /// let names = ["qa", "ops", "qa"];
    /// let roles = names.iter().map(|n| Role::new(n)).collect::<Result<Vec<_>, _>>()?;
    /// let r = Requirements::new().with_role(Role::new("security")?).with_roles(roles);
    /// assert_eq!(r.roles(), [Role::new("ops")?, Role::new("qa")?, Role::new("security")?]);
    /// # Ok::<(), concord::NameError>(())
    /// ```
    pub fn with_roles(mut self, roles: impl IntoIterator<Item = Role>) -> Self {
        self.roles.add_all(roles);
        self
    }

    /// Adds a capability the agent must have (kept sorted, without duplicates).
    ///
    /// Each call copies the list: to add many, use
    /// [`with_capabilities`](Self::with_capabilities).
    pub fn with_capability(mut self, capability: Capability) -> Self {
        self.capabilities.extend([&capability]);
        self
    }

    /// Adds capabilities the agent must have, sorted once with those already there
    /// (see [`with_roles`](Self::with_roles)).
    pub fn with_capabilities(mut self, capabilities: impl IntoIterator<Item = Capability>) -> Self {
        self.capabilities.add_all(capabilities);
        self
    }

    /// Sets the resources the task asks for.
    ///
    /// The coordinator hands them to its [`ResourcePredictor`](crate::ResourcePredictor)
    /// before it places the task, and allocates what the predictor says: the
    /// default ([`PercentilePredictor`](crate::resource::PercentilePredictor)) keeps
    /// what was asked for a kind it has not learned yet, and once it has seen tasks
    /// of the kind finish, predicts from their usage (more or less than asked). To
    /// allocate exactly what each task states, build the coordinator with
    /// [`StaticPredictor`](crate::resource::StaticPredictor).
    pub fn with_resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the time by which the task must be done.
    pub fn with_deadline(mut self, deadline: Timestamp) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Adds a claim on a named thing (kept sorted, without duplicates).
    ///
    /// Each call copies the list: to add many, use [`with_claims`](Self::with_claims).
    pub fn with_claim(mut self, claim: Claim) -> Self {
        self.claims.extend([&claim]);
        self
    }

    /// Adds claims, sorted once with those already there (see
    /// [`with_roles`](Self::with_roles)).
    pub fn with_claims(mut self, claims: impl IntoIterator<Item = Claim>) -> Self {
        self.claims.add_all(claims);
        self
    }

    /// The roles, sorted.
    pub fn roles(&self) -> &[Role] {
        self.roles.as_slice()
    }

    /// The capabilities, sorted.
    pub fn capabilities(&self) -> &[Capability] {
        self.capabilities.as_slice()
    }

    /// The resources.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// The priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.deadline
    }

    /// The claims, sorted.
    pub fn claims(&self) -> &[Claim] {
        self.claims.as_slice()
    }

    /// Merges `other` into `self`: the union of roles, capabilities and claims, the
    /// larger of each resource, the higher priority and the earlier deadline.
    pub fn merge(&mut self, other: &Requirements) {
        self.merge_kept(other, None);
    }

    /// [`merge`](Self::merge), an empty list of roles or capabilities taking
    /// `other`'s from `kept` when it is kept there (see [`KeptShares`]).
    pub(crate) fn merge_kept(&mut self, other: &Requirements, kept: Option<&mut KeptShares>) {
        let (roles, capabilities) = match kept {
            Some(k) => (Some(&mut k.roles), Some(&mut k.capabilities)),
            None => (None, None),
        };
        self.roles.union_kept(&other.roles, roles);
        self.capabilities
            .union_kept(&other.capabilities, capabilities);
        self.claims.union(&other.claims);
        // Nothing to take the larger of: the common case, and `max` builds a new value.
        // Nothing on this side (the analyzer merging a rule into a task that states no
        // resources) is the next most common: the larger of each is `other`'s, a copy.
        if !other.resources.is_zero() {
            if self.resources.is_zero() {
                self.resources.clone_from(&other.resources);
            } else {
                self.resources = self.resources.max(&other.resources);
            }
        }
        self.priority = self.priority.max(other.priority);
        self.deadline = match (self.deadline, other.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// A unit of work to be assigned to an agent.
///
/// `kind` is the host's label for the sort of work (`deploy`, `screenshot`): resource
/// predictors learn per kind, and affinity scoring remembers which agents did a kind
/// well.
///
/// ```
/// use concord::{Requirements, Task, TaskId};
/// let task = Task::new(TaskId::new(1), "deploy", "deploy the web app to staging");
/// assert_eq!(task.kind(), "deploy");
/// assert_eq!(task.requirements(), &Requirements::new());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    id: TaskId,
    kind: Arc<str>,
    description: Arc<str>,
    #[serde(default)]
    requirements: Requirements,
}

impl Task {
    /// Moves the task out, leaving in its place a shell with its id and names
    /// (shared, not copied) and no requirements: for a task taken from a buffer whose
    /// tasks are refilled later ([`refill`](Self::refill)).
    pub(crate) fn take(&mut self) -> Task {
        let shell = Task {
            id: self.id,
            kind: Arc::clone(&self.kind),
            description: Arc::clone(&self.description),
            requirements: Requirements::default(),
        };
        std::mem::replace(self, shell)
    }

    /// A task with no requirements yet.
    ///
    /// The names are shared (`Arc<str>`): a host that submits many tasks of one kind
    /// can pass the same `Arc` and pay for no copy.
    pub fn new(id: TaskId, kind: impl Into<Arc<str>>, description: impl Into<Arc<str>>) -> Self {
        Task {
            id,
            kind: kind.into(),
            description: description.into(),
            requirements: Requirements::default(),
        }
    }

    /// [`new`](Self::new) with `requirements`, built in place (the workflow executor
    /// makes one per step attempt).
    pub(crate) fn from_parts(
        id: TaskId,
        kind: Arc<str>,
        description: Arc<str>,
        requirements: Requirements,
    ) -> Self {
        Task {
            id,
            kind,
            description,
            requirements,
        }
    }

    /// Makes this task (a spent one, kept for its allocations) the task `id` of
    /// `kind` with `requirements`: the names are shared, and the requirements' lists
    /// written over ([`Clone::clone_from`]), not made anew.
    pub(crate) fn refill(
        &mut self,
        id: TaskId,
        kind: &Arc<str>,
        description: &Arc<str>,
        requirements: &Requirements,
    ) {
        self.id = id;
        if !Arc::ptr_eq(&self.kind, kind) {
            self.kind = Arc::clone(kind);
        }
        if !Arc::ptr_eq(&self.description, description) {
            self.description = Arc::clone(description);
        }
        self.requirements.clone_from(requirements);
    }

    /// Sets the requirements.
    pub fn with_requirements(mut self, requirements: Requirements) -> Self {
        self.requirements = requirements;
        self
    }

    /// The id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The kind of work.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The kind, shared (a reference count, no copy).
    pub fn shared_kind(&self) -> Arc<str> {
        Arc::clone(&self.kind)
    }

    /// The kind's shared name, borrowed.
    pub(crate) fn kind_arc(&self) -> &Arc<str> {
        &self.kind
    }

    /// The description, shared (a reference count, no copy).
    pub fn shared_description(&self) -> Arc<str> {
        Arc::clone(&self.description)
    }

    /// The free-text description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The requirements.
    pub fn requirements(&self) -> &Requirements {
        &self.requirements
    }

    /// The requirements, mutably.
    pub fn requirements_mut(&mut self) -> &mut Requirements {
        &mut self.requirements
    }

    /// The kind, and the resources needed mutably (as a predictor writes them).
    pub(crate) fn kind_and_resources_mut(&mut self) -> (&str, &mut Resources) {
        (&self.kind, &mut self.requirements.resources)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Lists to share: two of equal items but distinct allocations, and the empty one.
    fn lists() -> Vec<Requirements> {
        let role = |r: &str| Role::new(r).unwrap();
        let capability = |c: &str| Capability::new(c).unwrap();
        let ops = Requirements::new().with_role(role("ops"));
        vec![
            Requirements::new(),
            ops.clone(),
            Requirements::new().with_role(role("ops")),
            ops.with_capability(capability("deploy")),
            Requirements::new()
                .with_roles([role("qa"), role("ops")])
                .with_capabilities([capability("browser"), capability("screenshot")])
                .with_resources(Resources::new().with_cpu_millis(500)),
            Requirements::new().with_capability(capability("deploy")),
        ]
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Writes source `.1` over held requirements `.0`, trading lists with the kept.
        Refill(usize, usize),
        /// Merges source `.1` into held requirements `.0`, taking lists from the kept.
        Merge(usize, usize),
        /// Gives held requirements `.0`'s lists to the kept.
        Keep(usize),
        /// Makes held kind `.0` source kind `.1`'s text through the kept.
        Kind(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3usize, 0..6usize).prop_map(|(h, s)| Op::Refill(h, s)),
            (0..3usize, 0..6usize).prop_map(|(h, s)| Op::Merge(h, s)),
            (0..3usize).prop_map(Op::Keep),
            (0..3usize, 0..5usize).prop_map(|(h, s)| Op::Kind(h, s)),
        ]
    }

    proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/kept_shares.txt"))]

        /// Trading lists and kinds with kept ones gives, step by step, what cloning,
        /// merging, emptying and sharing give: the kept values change where the
        /// requirements get their lists, never what they hold.
        #[test]
        fn kept_shares_change_no_value(ops in proptest::collection::vec(op(), 1..60)) {
            let sources = lists();
            let kinds: [Arc<str>; 5] =
                ["deploy".into(), "deploy".into(), "check".into(), "".into(), "é".into()];
            let mut kept = KeptShares::default();
            let mut held = vec![Requirements::new(); 3];
            let mut plain = held.clone();
            let mut held_kinds: Vec<Arc<str>> = vec![Arc::from("ops"); 3];
            for op in ops {
                match op {
                    Op::Refill(h, s) => {
                        held[h].clone_from_kept(&sources[s], Some(&mut kept));
                        plain[h] = sources[s].clone();
                    }
                    Op::Merge(h, s) => {
                        held[h].merge_kept(&sources[s], Some(&mut kept));
                        plain[h].merge(&sources[s]);
                    }
                    Op::Keep(h) => {
                        held[h].keep_lists(&mut kept);
                        plain[h].roles = SortedList::default();
                        plain[h].capabilities = SortedList::default();
                    }
                    Op::Kind(h, s) => {
                        kept.share_kind(&mut held_kinds[h], &kinds[s]);
                        prop_assert_eq!(&*held_kinds[h], &*kinds[s]);
                    }
                }
                prop_assert_eq!(&held, &plain);
            }
        }
    }

    #[test]
    fn a_kept_list_is_taken_back_not_shared_again() {
        let source = lists()[3].clone();
        let mut kept = KeptShares::default();
        let mut held = Requirements::new();
        held.clone_from_kept(&source, Some(&mut kept));
        // The list written over goes to the kept ones, and comes back from there.
        held.clone_from_kept(&Requirements::new(), Some(&mut kept));
        let roles = |r: &Requirements| r.roles.0.clone().unwrap();
        let count = Arc::strong_count(&roles(&source));
        held.clone_from_kept(&source, Some(&mut kept));
        assert!(Arc::ptr_eq(&roles(&held), &roles(&source)));
        assert_eq!(Arc::strong_count(&roles(&source)), count);
        // A finished task's lists are kept, and the next merge takes them back.
        held.keep_lists(&mut kept);
        assert!(held.roles().is_empty() && held.capabilities().is_empty());
        let mut next = Requirements::new();
        next.merge_kept(&source, Some(&mut kept));
        assert_eq!(Arc::strong_count(&roles(&source)), count);
        assert_eq!(next, source);
    }
}
