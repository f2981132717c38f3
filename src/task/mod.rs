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
        self.roles.clone_from(&source.roles);
        self.capabilities.clone_from(&source.capabilities);
        self.resources.clone_from(&source.resources);
        self.priority = source.priority;
        self.deadline = source.deadline;
        self.claims.clone_from(&source.claims);
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
        share_from(&mut self.0, source.0.as_ref());
    }
}

/// Makes `slot` share `source`, leaving it alone when it already does (the same
/// allocation, or both none): no reference count moves for what is already shared.
pub(crate) fn share_from<T: ?Sized>(slot: &mut Option<Arc<T>>, source: Option<&Arc<T>>) {
    let same = match (&*slot, source) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    if !same {
        *slot = source.cloned();
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
        match (&self.0, &other.0) {
            (_, None) => {}
            (None, Some(_)) => self.0.clone_from(&other.0),
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {}
            (Some(_), Some(b)) => self.extend(b.iter()),
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

    /// Sets the resources the task needs.
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
        self.roles.union(&other.roles);
        self.capabilities.union(&other.capabilities);
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
