//! [`AgentProfile`]: what an agent is and can do.

use serde::{Deserialize, Serialize};

use crate::id::{AgentId, Capability, Role};
use crate::resource::Resources;

/// What an agent is and can do: its roles, capabilities, capacity and task slots.
///
/// Plain serde data, so hosts can keep their fleet in a config file. Roles and
/// capabilities are kept sorted without duplicates, however they were given (also when
/// deserialized). An agent runs at most [`max_tasks`](Self::max_tasks) tasks at once
/// (default 1).
///
/// The capacity is static: what the agent could ever hold, used to rule out tasks that
/// can never fit. An agent without a declared capacity is not filtered by resources
/// (a [`ResourceLedger`](crate::ResourceLedger), if the host uses one, still tracks
/// what is free).
///
/// ```
/// use concord::agent::AgentProfile;
/// use concord::{AgentId, Capability, Role};
///
/// let profile = AgentProfile::new(AgentId::new(7), "qa-bot")
///     .with_role(Role::new("qa")?)
///     .with_capability(Capability::new("screenshot")?)
///     .with_capability(Capability::new("browser")?)
///     .with_capability(Capability::new("screenshot")?)
///     .with_capacity("cpu=2,memory=4Gi".parse()?)
///     .with_max_tasks(3);
/// assert_eq!(profile.capabilities()[0].as_str(), "browser");
/// assert_eq!(profile.capabilities().len(), 2);
/// assert_eq!(profile.max_tasks(), 3);
/// assert!(profile.has_role(&Role::new("qa")?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ProfileData")]
pub struct AgentProfile {
    id: AgentId,
    name: String,
    roles: Vec<Role>,
    capabilities: Vec<Capability>,
    capacity: Option<Resources>,
    max_tasks: u32,
}

/// The serialized form, normalized into an [`AgentProfile`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileData {
    id: AgentId,
    name: String,
    #[serde(default)]
    roles: Vec<Role>,
    #[serde(default)]
    capabilities: Vec<Capability>,
    #[serde(default)]
    capacity: Option<Resources>,
    #[serde(default = "default_max_tasks")]
    max_tasks: u32,
}

fn default_max_tasks() -> u32 {
    1
}

impl From<ProfileData> for AgentProfile {
    fn from(mut d: ProfileData) -> Self {
        d.roles.sort();
        d.roles.dedup();
        d.capabilities.sort();
        d.capabilities.dedup();
        AgentProfile {
            id: d.id,
            name: d.name,
            roles: d.roles,
            capabilities: d.capabilities,
            capacity: d.capacity,
            max_tasks: d.max_tasks,
        }
    }
}

impl AgentProfile {
    /// A profile with no roles, no capabilities, no declared capacity and one task
    /// slot. `name` is free text for people.
    pub fn new(id: AgentId, name: impl Into<String>) -> Self {
        AgentProfile {
            id,
            name: name.into(),
            roles: Vec::new(),
            capabilities: Vec::new(),
            capacity: None,
            max_tasks: default_max_tasks(),
        }
    }

    /// Adds a role (kept sorted, without duplicates).
    pub fn with_role(mut self, role: Role) -> Self {
        insert_sorted(&mut self.roles, role);
        self
    }

    /// Adds a capability (kept sorted, without duplicates).
    pub fn with_capability(mut self, capability: Capability) -> Self {
        insert_sorted(&mut self.capabilities, capability);
        self
    }

    /// Adds several roles (kept sorted, without duplicates), for a host whose roles
    /// come from a list: a config file, a command line.
    ///
    /// ```
    /// use concord::agent::AgentProfile;
    /// use concord::{AgentId, Role};
    ///
    /// let names = ["qa", "ops", "qa"];
    /// let roles = names.iter().map(|n| Role::new(n)).collect::<Result<Vec<_>, _>>()?;
    /// let profile = AgentProfile::new(AgentId::new(1), "worker").with_roles(roles);
    /// assert_eq!(profile.roles(), [Role::new("ops")?, Role::new("qa")?]);
    /// # Ok::<(), concord::NameError>(())
    /// ```
    pub fn with_roles(mut self, roles: impl IntoIterator<Item = Role>) -> Self {
        self.roles.extend(roles);
        self.roles.sort();
        self.roles.dedup();
        self
    }

    /// Adds several capabilities (kept sorted, without duplicates).
    ///
    /// ```
    /// use concord::agent::AgentProfile;
    /// use concord::{AgentId, Capability};
    ///
    /// let profile = AgentProfile::new(AgentId::new(1), "qa-bot")
    ///     .with_capabilities([Capability::new("screenshot")?, Capability::new("browser")?]);
    /// assert!(profile.has_capability(&Capability::new("browser")?));
    /// assert_eq!(profile.capabilities()[0].as_str(), "browser");
    /// # Ok::<(), concord::NameError>(())
    /// ```
    pub fn with_capabilities(mut self, capabilities: impl IntoIterator<Item = Capability>) -> Self {
        self.capabilities.extend(capabilities);
        self.capabilities.sort();
        self.capabilities.dedup();
        self
    }

    /// Declares the most the agent could ever hold.
    pub fn with_capacity(mut self, capacity: Resources) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Sets how many tasks the agent runs at once. Zero is accepted here but refused
    /// by [`AgentRegistry::register`](super::AgentRegistry::register).
    pub fn with_max_tasks(mut self, max_tasks: u32) -> Self {
        self.max_tasks = max_tasks;
        self
    }

    /// The agent's id.
    pub fn id(&self) -> AgentId {
        self.id
    }

    /// The agent's name, for people.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The roles, sorted.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// The capabilities, sorted.
    pub fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    /// The declared capacity, if any.
    pub fn capacity(&self) -> Option<&Resources> {
        self.capacity.as_ref()
    }

    /// How many tasks the agent runs at once.
    pub fn max_tasks(&self) -> u32 {
        self.max_tasks
    }

    /// Whether the agent plays `role`.
    pub fn has_role(&self, role: &Role) -> bool {
        holds(&self.roles, role)
    }

    /// Whether the agent has `capability`.
    pub fn has_capability(&self, capability: &Capability) -> bool {
        holds(&self.capabilities, capability)
    }
}

/// Whether the sorted list `names` holds `name`. A profile names a handful: comparing
/// each for equality reads no byte of a name whose length differs, where each step of
/// a binary search reads bytes of both to order them. Long lists are searched.
fn holds<T: Ord>(names: &[T], name: &T) -> bool {
    if names.len() <= 8 {
        names.iter().any(|n| n == name)
    } else {
        names.binary_search(name).is_ok()
    }
}

fn insert_sorted<T: Ord>(v: &mut Vec<T>, x: T) {
    if let Err(i) = v.binary_search(&x) {
        v.insert(i, x);
    }
}
