//! [`ConflictDetector`]: overlapping claims, found as they are made.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Conflict, ConflictError, ConflictId, ConflictKind, Party};
use crate::clock::Timestamp;
use crate::hash::{FxHashMap, FxHasher};
use crate::id::{AgentId, TaskId};
use crate::task::{Claim, ClaimMode, Priority};

/// Who holds a claim: a task on an agent. Claims of one owner never conflict with
/// each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClaimOwner {
    task: TaskId,
    agent: AgentId,
}

impl ClaimOwner {
    /// `task` running on `agent`.
    pub const fn new(task: TaskId, agent: AgentId) -> Self {
        ClaimOwner { task, agent }
    }

    /// The task.
    pub const fn task(self) -> TaskId {
        self.task
    }

    /// The agent.
    pub const fn agent(self) -> AgentId {
        self.agent
    }
}

impl fmt::Display for ClaimOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.task, self.agent)
    }
}

#[derive(Debug, Clone, Copy)]
struct Holder {
    owner: ClaimOwner,
    priority: Priority,
    since: Timestamp,
}

/// A claim in the slab, linked into its node's list of exclusive or shared claims.
#[derive(Debug, Clone, Copy)]
struct Slot {
    holder: Holder,
    next: u32,
}

/// A trie node: plain data, no allocation of its own (children, claims and the
/// segment's text live in the detector's arrays).
#[derive(Debug, Clone, Copy)]
struct Node {
    parent: u32,
    first_child: u32,
    next_sibling: u32,
    first_exclusive: u32,
    first_shared: u32,
    /// Claims held on this node and every node below it.
    subtree: u32,
    /// Exclusive claims held on this node and every node below it.
    subtree_exclusive: u32,
    segment_len: u32,
    segment_start: usize,
}

const NIL: u32 = u32::MAX;

impl Node {
    fn new(parent: u32, segment_start: usize, segment_len: u32) -> Self {
        Node {
            parent,
            first_child: NIL,
            next_sibling: NIL,
            first_exclusive: NIL,
            first_shared: NIL,
            subtree: 0,
            subtree_exclusive: 0,
            segment_len,
            segment_start,
        }
    }
}

const ROOT: u32 = 0;

/// Finds claims that collide: an exclusive claim conflicts with every overlapping claim
/// of another owner; shared claims never conflict with each other.
///
/// Names are hierarchical, split on `/` (empty segments ignored, so `repo/`,
/// `/repo` and `repo` are the same name). Two names overlap when one is a prefix of the
/// other, segment by segment: `repo/` overlaps `repo/src/a.rs`, `port/8080` does not
/// overlap `port/80`.
///
/// # Complexity
/// Claims sit in a trie over path segments (one hash lookup per segment, keyed by the
/// parent and the segment's hash), with a count of claims (and of
/// exclusive claims) in each subtree. A new claim of `d` segments costs `O(d)` hash
/// lookups to walk its ancestors, plus a walk of only those descendants whose subtree
/// holds a claim it could conflict with, plus `O(1)` per conflict found: never a scan
/// of all claims. Memory is `O(distinct names)`. Removing a claim costs `O(d + k)` for
/// `k` claims on the same name. Reference: a path trie as in Fredkin, "Trie memory",
/// CACM 1960; the pruned subtree walk is the hierarchical lock check of Gray et al.,
/// "Granularity of locks", 1975, without intention modes.
///
/// ```
/// use concord::conflict::{ClaimOwner, ConflictDetector, ConflictKind};
/// use concord::{AgentId, Claim, Priority, TaskId, Timestamp};
///
/// let mut detector = ConflictDetector::new();
/// let a = ClaimOwner::new(TaskId::new(1), AgentId::new(1));
/// let b = ClaimOwner::new(TaskId::new(2), AgentId::new(2));
/// let now = Timestamp::from_secs(1);
/// assert!(detector.add_claim(a, &Claim::exclusive("repo/"), Priority::NORMAL, now)?.is_empty());
/// let found = detector.add_claim(b, &Claim::shared("repo/src/a.rs"), Priority::HIGH, now)?;
/// assert_eq!(found.len(), 1);
/// assert_eq!(found[0].kind(), ConflictKind::OverlappingClaims);
/// assert_eq!(found[0].resources(), ["repo", "repo/src/a.rs"]);
/// # Ok::<(), concord::conflict::ConflictError>(())
/// ```
#[derive(Debug)]
pub struct ConflictDetector {
    /// `(parent, hash of the segment)` -> child: one lookup per segment, verified
    /// against the child's own segment.
    edges: FxHashMap<(u32, u64), u32>,
    /// The rare children whose `(parent, hash)` slot was already taken by another
    /// segment.
    collisions: FxHashMap<(u32, Box<str>), u32>,
    nodes: Vec<Node>,
    /// Every node's segment, end to end.
    text: String,
    slots: Vec<Slot>,
    free: Vec<u32>,
    claims: usize,
    next_id: u64,
    path: Vec<u32>,
    stack: Vec<u32>,
}

impl Default for ConflictDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl ConflictDetector {
    /// An empty detector whose first conflict id is 1.
    pub fn new() -> Self {
        ConflictDetector {
            edges: FxHashMap::default(),
            collisions: FxHashMap::default(),
            nodes: vec![Node::new(ROOT, 0, 0)],
            text: String::new(),
            slots: Vec::new(),
            free: Vec::new(),
            claims: 0,
            next_id: 1,
            path: Vec::new(),
            stack: Vec::new(),
        }
    }

    /// An empty detector with room for about `claims` claims (on as many distinct
    /// names) before it reallocates.
    pub fn with_capacity(claims: usize) -> Self {
        let mut d = ConflictDetector::new();
        // Names average a few segments; two nodes per claim is a fair guess.
        let nodes = claims.saturating_mul(2);
        d.edges.reserve(nodes);
        d.nodes.reserve(nodes);
        d.slots.reserve(claims);
        d.text.reserve(claims.saturating_mul(8));
        d
    }

    /// Issues conflict ids from `first` on (so that ids from several detectors, or from
    /// a restarted one, do not collide in one [`ConflictManager`](super::ConflictManager)).
    pub fn with_first_id(mut self, first: u64) -> Self {
        self.next_id = first;
        self
    }

    /// The number of claims held.
    pub fn len(&self) -> usize {
        self.claims
    }

    /// Whether no claim is held.
    pub fn is_empty(&self) -> bool {
        self.claims == 0
    }

    /// Every conflict among `claims`, as if they were added in order to an empty
    /// detector: each overlapping pair is reported once, with the earlier claim first.
    ///
    /// # Errors
    /// [`ConflictError::EmptyClaim`] for a claim that names nothing.
    pub fn detect<'a, I>(claims: I, now: Timestamp) -> Result<Vec<Conflict>, ConflictError>
    where
        I: IntoIterator<Item = (ClaimOwner, &'a Claim, Priority)>,
    {
        let claims = claims.into_iter();
        let mut detector = ConflictDetector::with_capacity(claims.size_hint().0);
        let mut found = Vec::new();
        for (owner, claim, priority) in claims {
            detector.add_claim_into(owner, claim, priority, now, &mut found)?;
        }
        Ok(found)
    }

    /// Holds `claim` for `owner` from `now` on, and returns the conflicts it creates
    /// with the claims already held (the existing claim is the first party). The claim
    /// is held even when it conflicts: the conflicts go to a
    /// [`ConflictManager`](super::ConflictManager), whose resolution decides who keeps it.
    ///
    /// # Errors
    /// [`ConflictError::EmptyClaim`] if the claim names nothing;
    /// [`ConflictError::Full`] past `u32::MAX` distinct names. Nothing changes then.
    pub fn add_claim(
        &mut self,
        owner: ClaimOwner,
        claim: &Claim,
        priority: Priority,
        now: Timestamp,
    ) -> Result<Vec<Conflict>, ConflictError> {
        let mut found = Vec::new();
        self.add_claim_into(owner, claim, priority, now, &mut found)?;
        Ok(found)
    }

    /// [`add_claim`](Self::add_claim), appending the conflicts to `found` so a caller
    /// can reuse one buffer.
    ///
    /// # Errors
    /// As [`add_claim`](Self::add_claim).
    pub fn add_claim_into(
        &mut self,
        owner: ClaimOwner,
        claim: &Claim,
        priority: Priority,
        now: Timestamp,
        found: &mut Vec<Conflict>,
    ) -> Result<(), ConflictError> {
        let depth = segments(claim.resource()).count();
        if depth == 0 {
            return Err(ConflictError::EmptyClaim {
                resource: claim.resource().to_owned(),
            });
        }
        let limit = (NIL - 1) as usize;
        if self.nodes.len().saturating_add(depth) >= limit
            || (self.free.is_empty() && self.slots.len() >= limit)
            || claim.resource().len() > limit
        {
            return Err(ConflictError::Full { limit });
        }
        let exclusive = claim.is_exclusive();
        let new = Holder {
            owner,
            priority,
            since: now,
        };
        let mut path = std::mem::take(&mut self.path);
        path.clear();
        let mut node = ROOT;
        for seg in segments(claim.resource()) {
            node = self.child_or_insert(node, seg);
            path.push(node);
        }
        let target = node;
        // Ancestors, then the name itself.
        for &n in &path {
            let same = n == target;
            self.collect_at(n, &new, claim.mode(), same, target, found);
        }
        // Descendants with something to collide with.
        let mut stack = std::mem::take(&mut self.stack);
        stack.clear();
        let mut c = self.nodes[target as usize].first_child;
        while c != NIL {
            stack.push(c);
            c = self.nodes[c as usize].next_sibling;
        }
        while let Some(n) = stack.pop() {
            let nd = &self.nodes[n as usize];
            let relevant = if exclusive {
                nd.subtree
            } else {
                nd.subtree_exclusive
            };
            if relevant == 0 {
                continue;
            }
            self.collect_at(n, &new, claim.mode(), false, target, found);
            let mut c = self.nodes[n as usize].first_child;
            while c != NIL {
                stack.push(c);
                c = self.nodes[c as usize].next_sibling;
            }
        }
        self.stack = stack;
        // Hold it.
        let slot = Slot {
            holder: new,
            next: NIL,
        };
        let id = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let tn = &mut self.nodes[target as usize];
        let head = if exclusive {
            &mut tn.first_exclusive
        } else {
            &mut tn.first_shared
        };
        self.slots[id as usize].next = *head;
        *head = id;
        for &n in &path {
            let nd = &mut self.nodes[n as usize];
            nd.subtree += 1;
            nd.subtree_exclusive += u32::from(exclusive);
        }
        self.path = path;
        self.claims += 1;
        Ok(())
    }

    /// Releases one claim `owner` holds on `claim`'s name in `claim`'s mode.
    ///
    /// # Errors
    /// [`ConflictError::UnknownClaim`] if `owner` holds no such claim; nothing changes.
    pub fn remove_claim(&mut self, owner: ClaimOwner, claim: &Claim) -> Result<(), ConflictError> {
        let unknown = || ConflictError::UnknownClaim {
            task: owner.task,
            resource: claim.resource().to_owned(),
        };
        let mut path = std::mem::take(&mut self.path);
        path.clear();
        let mut node = ROOT;
        for seg in segments(claim.resource()) {
            match self.child(node, seg) {
                Some(n) => {
                    node = n;
                    path.push(n);
                }
                None => {
                    self.path = path;
                    return Err(unknown());
                }
            }
        }
        let exclusive = claim.is_exclusive();
        let mut removed = false;
        if node != ROOT {
            let mut prev = NIL;
            let nd = &self.nodes[node as usize];
            let mut cur = if exclusive {
                nd.first_exclusive
            } else {
                nd.first_shared
            };
            while cur != NIL {
                let next = self.slots[cur as usize].next;
                if self.slots[cur as usize].holder.owner == owner {
                    if prev == NIL {
                        let nd = &mut self.nodes[node as usize];
                        if exclusive {
                            nd.first_exclusive = next;
                        } else {
                            nd.first_shared = next;
                        }
                    } else {
                        self.slots[prev as usize].next = next;
                    }
                    self.free.push(cur);
                    removed = true;
                    break;
                }
                prev = cur;
                cur = next;
            }
        }
        if removed {
            for &n in &path {
                let nd = &mut self.nodes[n as usize];
                nd.subtree = nd.subtree.saturating_sub(1);
                if exclusive {
                    nd.subtree_exclusive = nd.subtree_exclusive.saturating_sub(1);
                }
            }
            self.claims -= 1;
        }
        self.path = path;
        if removed { Ok(()) } else { Err(unknown()) }
    }

    fn segment(&self, n: u32) -> &str {
        let nd = &self.nodes[n as usize];
        self.text
            .get(nd.segment_start..nd.segment_start + nd.segment_len as usize)
            .unwrap_or("")
    }

    fn child(&self, parent: u32, seg: &str) -> Option<u32> {
        let &c = self.edges.get(&(parent, hash_segment(seg)))?;
        if self.segment(c) == seg {
            Some(c)
        } else {
            self.collisions.get(&(parent, Box::from(seg))).copied()
        }
    }

    fn child_or_insert(&mut self, parent: u32, seg: &str) -> u32 {
        if let Some(c) = self.child(parent, seg) {
            return c;
        }
        // Bounded by the capacity check in `add_claim_into`.
        let id = self.nodes.len() as u32;
        let mut node = Node::new(parent, self.text.len(), seg.len() as u32);
        self.text.push_str(seg);
        let p = &mut self.nodes[parent as usize];
        node.next_sibling = p.first_child;
        p.first_child = id;
        self.nodes.push(node);
        let key = (parent, hash_segment(seg));
        match self.edges.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.insert((parent, Box::from(seg)), id);
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(id);
            }
        }
        id
    }

    fn collect_at(
        &mut self,
        n: u32,
        new: &Holder,
        mode: ClaimMode,
        same_name: bool,
        target: u32,
        found: &mut Vec<Conflict>,
    ) {
        let nd = self.nodes[n as usize];
        let lists: [(u32, ClaimMode); 2] = [
            (nd.first_exclusive, ClaimMode::Exclusive),
            (
                if mode == ClaimMode::Exclusive {
                    nd.first_shared
                } else {
                    NIL
                },
                ClaimMode::Shared,
            ),
        ];
        let mut names: Option<(String, String)> = None;
        for (head, held_mode) in lists {
            let mut cur = head;
            while cur != NIL {
                let slot = self.slots[cur as usize];
                cur = slot.next;
                let h = slot.holder;
                if h.owner == new.owner {
                    continue;
                }
                let (held_name, new_name) = names.get_or_insert_with(|| {
                    let held = self.name_of(n);
                    let newer = if same_name {
                        held.clone()
                    } else {
                        self.name_of(target)
                    };
                    (held, newer)
                });
                let kind = if same_name {
                    ConflictKind::ResourceContention
                } else {
                    ConflictKind::OverlappingClaims
                };
                let id = ConflictId::new(self.next_id);
                self.next_id = self.next_id.wrapping_add(1);
                found.push(
                    Conflict::new(id, kind, new.since)
                        .with_party(party(&h, held_mode))
                        .with_party(party(new, mode))
                        .with_resource(held_name.clone())
                        .with_resource(new_name.clone()),
                );
            }
        }
    }

    fn name_of(&self, mut n: u32) -> String {
        let mut segs = Vec::new();
        while n != ROOT {
            segs.push(self.segment(n));
            n = self.nodes[n as usize].parent;
        }
        segs.reverse();
        segs.join("/")
    }
}

fn hash_segment(seg: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = FxHasher::default();
    seg.hash(&mut h);
    h.finish()
}

fn segments(name: &str) -> impl Iterator<Item = &str> {
    name.split('/').filter(|s| !s.is_empty())
}

fn party(h: &Holder, mode: ClaimMode) -> Party {
    Party::task(h.owner.task)
        .with_agent(h.owner.agent)
        .with_priority(h.priority)
        .with_since(h.since)
        .with_mode(mode)
}
