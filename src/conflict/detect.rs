//! [`ConflictDetector`]: overlapping claims, found as they are made, and reported as
//! [`Collision`]s in an order that depends only on the claims held.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Conflict, ConflictError, ConflictId, ConflictKind, Party};
use crate::clock::Timestamp;
use crate::hash::FxHasher;
use crate::id::{AgentId, TaskId, check_claim};
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

/// Two claims that collide, as a [`ConflictDetector`] reports them: the claim already
/// held (its holder is the first party) and the claim being added (the second).
///
/// A collision has no id: it becomes a [`Conflict`] when whoever opens it in a
/// [`ConflictManager`](super::ConflictManager) numbers it
/// ([`into_conflict`](Self::into_conflict)). Detection is not where conflicts are
/// opened: a coordinator opens some collisions, makes a task wait behind others
/// without opening them, and lets those a decision approved pass; ids given at
/// detection would have to be taken back or skipped. So they are issued where
/// conflicts are opened, in one place, in the detector's [order](ConflictDetector#order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    kind: ConflictKind,
    parties: [Party; 2],
    resources: Vec<String>,
    detected_at: Timestamp,
}

impl Collision {
    /// [`ConflictKind::ResourceContention`] for claims on the same name,
    /// [`ConflictKind::OverlappingClaims`] for nested names.
    pub fn kind(&self) -> ConflictKind {
        self.kind
    }

    /// The holder of the claim already held, then the owner of the claim added, each
    /// with the claim's mode, the owner's priority and when the claim was taken.
    pub fn parties(&self) -> &[Party; 2] {
        &self.parties
    }

    /// The holder of the claim already held.
    pub fn holder(&self) -> &Party {
        &self.parties[0]
    }

    /// The owner of the claim added.
    pub fn claimant(&self) -> &Party {
        &self.parties[1]
    }

    /// The names claimed: the held claim's, then the added claim's (once, for the
    /// same name), `/`-separated without empty segments.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// When the added claim was taken.
    pub fn detected_at(&self) -> Timestamp {
        self.detected_at
    }

    /// The conflict this collision is, under `id`: the same parties, names and time.
    pub fn into_conflict(self, id: ConflictId) -> Conflict {
        let [holder, claimant] = self.parties;
        Conflict {
            id,
            kind: self.kind,
            parties: vec![holder, claimant],
            resources: self.resources,
            detected_at: self.detected_at,
            description: String::new(),
        }
    }

    /// The order collisions are reported in: by the holder (task, then agent), the
    /// holder's mode, the names and the added claim's mode, then the rest of the
    /// holder's party; everything a collision holds, so that only equal collisions tie.
    /// The added claim's owner, priority and time are the same for every collision
    /// one call reports.
    fn canonical(&self, other: &Self) -> Ordering {
        fn key(c: &Collision) -> impl Ord + '_ {
            let [h, n] = &c.parties;
            (
                h.task_id(),
                h.agent(),
                h.mode(),
                &c.resources,
                n.mode(),
                h.since(),
                h.priority(),
            )
        }
        key(self).cmp(&key(other))
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

/// Segments of at most this many bytes live in their node; longer ones in the
/// detector's text.
const INLINE: usize = 16;

/// A trie node: plain data, no allocation of its own (children and claims live in the
/// detector's arrays; a short segment's text in the node itself, so that checking a
/// child found through the edge table reads one cache line).
///
/// Every node but the root has a claim in its subtree (`subtree > 0`): the release
/// of a name's last claim frees its node, and its ancestors left empty, so that the
/// trie holds the names claimed now, not every name ever claimed. A freed node has
/// `parent == NIL` and waits in the detector's `free_nodes` for reuse.
#[derive(Debug, Clone, Copy)]
struct Node {
    parent: u32,
    first_child: u32,
    /// Siblings are linked both ways so that freeing a node among many siblings
    /// (a run's directory among thousands under `runs`) costs `O(1)`, not a walk.
    prev_sibling: u32,
    next_sibling: u32,
    first_exclusive: u32,
    first_shared: u32,
    /// Claims held on this node and every node below it.
    subtree: u32,
    /// Exclusive claims held on this node and every node below it.
    subtree_exclusive: u32,
    segment_len: u32,
    /// The segment's bytes when it has at most [`INLINE`] of them; otherwise its start
    /// in the detector's text, as a little-endian `u32` in the first four bytes.
    segment: [u8; INLINE],
}

const NIL: u32 = u32::MAX;

impl Node {
    fn new(parent: u32, segment_len: u32, segment: [u8; INLINE]) -> Self {
        Node {
            parent,
            first_child: NIL,
            prev_sibling: NIL,
            next_sibling: NIL,
            first_exclusive: NIL,
            first_shared: NIL,
            subtree: 0,
            subtree_exclusive: 0,
            segment_len,
            segment,
        }
    }
}

/// One slot of the edge table: a child, found by the top bits of `tag`.
#[derive(Debug, Clone, Copy)]
struct Edge {
    tag: u32,
    child: u32,
}

const EMPTY: Edge = Edge { tag: 0, child: NIL };

/// `(parent, segment)` -> child, by open addressing with linear probing over 8-byte
/// slots: a lookup reads one cache line of the table and then the child's node, which
/// the caller needs anyway (a general map would read its control bytes, its bucket,
/// the node and the segment's text: four cache misses per segment on a large trie).
/// A slot keeps a 32-bit tag of the key's hash; the key itself is checked on the
/// child node. A removal moves the entries after it on its probe run back into the
/// hole (backward-shift deletion: Knuth, TAOCP vol. 3, 6.4, Algorithm R), so there
/// are no tombstones and lookups stay as short as in a table that never held the
/// removed edge.
#[derive(Debug)]
struct EdgeTable {
    slots: Vec<Edge>,
    len: usize,
    /// A per-table random key mixed into every tag, so that names chosen to collide
    /// on one detector do not collide on another (claim names are host and agent
    /// data). It changes where edges sit, never what the detector reports.
    key: u64,
}

impl EdgeTable {
    fn with_capacity(edges: usize) -> Self {
        // Kept at most 70% full, so that probe runs stay short.
        let want = edges.saturating_mul(10) / 7 + 1;
        let cap = want.checked_next_power_of_two().unwrap_or(want).max(16);
        EdgeTable {
            slots: vec![EMPTY; cap],
            len: 0,
            key: std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                0u8,
            ),
        }
    }

    /// The tag for `(parent, seg)`: a keyed Fx hash, finished with a
    /// multiply-xorshift so that its top bits (the probe's start) depend on every byte.
    fn tag(&self, parent: u32, seg: &[u8]) -> u32 {
        use std::hash::Hasher;
        let mut h = FxHasher::default();
        h.write_u64(self.key);
        h.write_u32(parent);
        h.write(seg);
        let x = h.finish();
        let x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        ((x ^ (x >> 29)) >> 32) as u32
    }

    /// Where a probe for `tag` starts: the tag's top bits, scaled to the table.
    fn home(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.slots.len() as u64) >> 32) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() { 0 } else { i + 1 }
    }

    /// The first empty slot on `tag`'s probe run (the key is known to be absent).
    fn vacant(&self, tag: u32) -> usize {
        let mut i = self.home(tag);
        while self.slots[i].child != NIL {
            i = self.next(i);
        }
        i
    }

    fn needs_room(&self) -> bool {
        (self.len + 1) * 10 > self.slots.len() * 7
    }

    /// Empties slot `hole` and moves back each later entry of its probe run whose
    /// home is not between the hole and it, so that every entry stays reachable
    /// from its home without crossing an empty slot.
    fn remove(&mut self, mut hole: usize) {
        self.slots[hole] = EMPTY;
        self.len -= 1;
        let mut j = self.next(hole);
        while self.slots[j].child != NIL {
            let home = self.home(self.slots[j].tag);
            // Cyclically in (hole, j]: the entry's probe run does not pass the hole.
            let stays = if hole < j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j];
                self.slots[j] = EMPTY;
                hole = j;
            }
            j = self.next(j);
        }
    }

    fn grow(&mut self) {
        let bigger = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, bigger);
        for e in old.into_iter().filter(|e| e.child != NIL) {
            let i = self.vacant(e.tag);
            self.slots[i] = e;
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
/// parent and the segment, in an open-addressing table whose 8-byte slots point at
/// nodes that keep short segments inline: about two cache lines per segment on a trie
/// far larger than the cache), with a count of claims (and of exclusive claims) in
/// each subtree. A new claim of `d` segments costs `O(d)` hash
/// lookups to walk its ancestors, plus a walk of only those descendants whose subtree
/// holds a claim it could conflict with, plus `O(1)` per conflict found: never a scan
/// of all claims. Memory is `O(distinct names held)` at its peak: the release of a
/// name's last claim frees its node (and its ancestors left without claims) for
/// reuse, so names claimed and released before cost neither time nor memory.
/// Removing a claim costs `O(d + k)` for `k` claims on the same name, plus an
/// amortized `O(1)` per byte of long segments freed (their text is compacted when
/// the freed bytes outweigh the rest). Reference: a path trie as in Fredkin, "Trie memory",
/// CACM 1960; the pruned subtree walk is the hierarchical lock check of Gray et al.,
/// "Granularity of locks", 1975, without intention modes.
///
/// # Order
/// The collisions one call reports come sorted by the holder (task, then agent), the
/// holder's mode, the names and the new claim's mode: an order that depends only on
/// the claims held and the claims added, never on the order the held claims were
/// taken or on names claimed and released before (which decide where the trie keeps
/// things, and so the order a walk finds them in). A detector rebuilt from the claims
/// a snapshot held reports the same collisions in the same order as the one it
/// replaces, so whoever numbers them in that order numbers them the same way. They
/// have no ids: see [`Collision`].
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
    /// `(parent, segment)` -> child.
    edges: EdgeTable,
    nodes: Vec<Node>,
    /// The segments too long to live in their node, end to end, including those of
    /// freed nodes until the next compaction.
    text: String,
    /// The bytes of `text` that live nodes use.
    text_live: usize,
    /// Freed nodes, for reuse.
    free_nodes: Vec<u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    claims: usize,
    path: Vec<u32>,
    stack: Vec<u32>,
}

impl Default for ConflictDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl ConflictDetector {
    /// An empty detector.
    pub fn new() -> Self {
        ConflictDetector::with_capacity(0)
    }

    /// An empty detector with room for about `claims` claims (on as many distinct
    /// names) before it reallocates.
    pub fn with_capacity(claims: usize) -> Self {
        // Names share their leading segments, so a claim adds about one node.
        let mut nodes = Vec::with_capacity(claims.saturating_add(1));
        nodes.push(Node::new(ROOT, 0, [0; INLINE]));
        ConflictDetector {
            edges: EdgeTable::with_capacity(claims),
            nodes,
            text: String::new(),
            text_live: 0,
            free_nodes: Vec::new(),
            slots: Vec::with_capacity(claims),
            free: Vec::new(),
            claims: 0,
            path: Vec::new(),
            stack: Vec::new(),
        }
    }

    /// The number of claims held.
    pub fn len(&self) -> usize {
        self.claims
    }

    /// Whether no claim is held.
    pub fn is_empty(&self) -> bool {
        self.claims == 0
    }

    /// Every collision among `claims`, as if they were added one by one, in order, to
    /// an empty detector: each overlapping pair is reported once, with the earlier
    /// claim first; the collisions of each claim with the claims before it come
    /// together, in the detector's order.
    ///
    /// # Errors
    /// [`ConflictError::InvalidClaim`] for a claim longer than
    /// [`MAX_CLAIM_LEN`](crate::id::MAX_CLAIM_LEN) bytes or with a control or invisible
    /// character; [`ConflictError::EmptyClaim`] for a claim that names nothing.
    pub fn detect<'a, I>(claims: I, now: Timestamp) -> Result<Vec<Collision>, ConflictError>
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

    /// Holds `claim` for `owner` from `now` on, and returns the collisions it makes
    /// with the claims already held (the existing claim is the first party), in the
    /// detector's [order](Self#order). The claim is held even when it collides: the
    /// collisions go, as conflicts, to a [`ConflictManager`](super::ConflictManager),
    /// whose resolution decides who keeps it.
    ///
    /// # Errors
    /// [`ConflictError::InvalidClaim`] if the claim is longer than
    /// [`MAX_CLAIM_LEN`](crate::id::MAX_CLAIM_LEN) bytes or holds a control or invisible
    /// character; [`ConflictError::EmptyClaim`] if it names nothing;
    /// [`ConflictError::Full`] past `u32::MAX` distinct names. Nothing changes then.
    pub fn add_claim(
        &mut self,
        owner: ClaimOwner,
        claim: &Claim,
        priority: Priority,
        now: Timestamp,
    ) -> Result<Vec<Collision>, ConflictError> {
        let mut found = Vec::new();
        self.add_claim_into(owner, claim, priority, now, &mut found)?;
        Ok(found)
    }

    /// [`add_claim`](Self::add_claim), appending the collisions to `found` so a caller
    /// can reuse one buffer (those already in it stay as they are).
    ///
    /// # Errors
    /// As [`add_claim`](Self::add_claim).
    pub fn add_claim_into(
        &mut self,
        owner: ClaimOwner,
        claim: &Claim,
        priority: Priority,
        now: Timestamp,
        found: &mut Vec<Collision>,
    ) -> Result<(), ConflictError> {
        let start = found.len();
        self.hold(owner, claim, priority, now, found)?;
        found[start..].sort_by(Collision::canonical);
        Ok(())
    }

    /// Holds all of `claims` for `owner` from `now` on, or none of them, and returns
    /// the collisions they make with the claims already held, all together in the
    /// detector's [order](Self#order) (by holder first, whichever of `claims` met it).
    /// The claims of one task, checked at once.
    ///
    /// # Errors
    /// As [`add_claim`](Self::add_claim), for the first claim refused; nothing is held
    /// then.
    pub fn add_claims(
        &mut self,
        owner: ClaimOwner,
        claims: &[Claim],
        priority: Priority,
        now: Timestamp,
    ) -> Result<Vec<Collision>, ConflictError> {
        let mut found = Vec::new();
        for (i, claim) in claims.iter().enumerate() {
            if let Err(e) = self.hold(owner, claim, priority, now, &mut found) {
                for taken in &claims[..i] {
                    // Held just above, so there to remove.
                    let _ = self.remove_claim(owner, taken);
                }
                return Err(e);
            }
        }
        found.sort_by(Collision::canonical);
        Ok(found)
    }

    /// Holds `claim` and appends its collisions to `found` in the order the walk meets
    /// them; refuses before it changes anything.
    fn hold(
        &mut self,
        owner: ClaimOwner,
        claim: &Claim,
        priority: Priority,
        now: Timestamp,
        found: &mut Vec<Collision>,
    ) -> Result<(), ConflictError> {
        check_claim(claim.resource()).map_err(|source| ConflictError::InvalidClaim { source })?;
        let depth = segments(claim.resource()).count();
        if depth == 0 {
            return Err(ConflictError::EmptyClaim {
                resource: claim.resource().to_owned(),
            });
        }
        let limit = (NIL - 1) as usize;
        if self.text.len().saturating_add(claim.resource().len()) > limit {
            // Freed segments may be what fills it.
            self.compact_text();
        }
        if self.live_nodes().saturating_add(depth) >= limit
            || (self.free.is_empty() && self.slots.len() >= limit)
            || self.text.len().saturating_add(claim.resource().len()) > limit
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
        self.push_relevant(target, exclusive, &mut stack);
        while let Some(n) = stack.pop() {
            self.collect_at(n, &new, claim.mode(), false, target, found);
            self.push_relevant(n, exclusive, &mut stack);
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
            // Deepest first: a node left without claims has no children left either
            // (each of them held a claim, so its subtree count was not 0), once the
            // one below it on the path is gone.
            for &n in path.iter().rev() {
                if self.nodes[n as usize].subtree != 0 {
                    break;
                }
                self.free_node(n);
            }
            if self.text.len() - self.text_live > self.text_live + self.nodes.len() {
                self.compact_text();
            }
            self.claims -= 1;
        }
        self.path = path;
        if removed { Ok(()) } else { Err(unknown()) }
    }

    /// The nodes in use, the root included.
    fn live_nodes(&self) -> usize {
        self.nodes.len() - self.free_nodes.len()
    }

    /// Pushes the children of `n` whose subtree holds a claim a new claim (exclusive
    /// or not) could collide with.
    fn push_relevant(&self, n: u32, exclusive: bool, stack: &mut Vec<u32>) {
        let mut c = self.nodes[n as usize].first_child;
        while c != NIL {
            let nd = &self.nodes[c as usize];
            let relevant = if exclusive {
                nd.subtree
            } else {
                nd.subtree_exclusive
            };
            if relevant != 0 {
                stack.push(c);
            }
            c = nd.next_sibling;
        }
    }

    /// Frees `n`, a node without claims or children: takes it out of the edge table
    /// and its parent's children, and keeps its id for reuse.
    fn free_node(&mut self, n: u32) {
        let nd = self.nodes[n as usize];
        debug_assert!(n != ROOT && nd.subtree == 0 && nd.first_child == NIL);
        let tag = self.edges.tag(nd.parent, self.segment(n));
        let mut i = self.edges.home(tag);
        // The edge is on `tag`'s probe run, before its first empty slot.
        loop {
            let child = self.edges.slots[i].child;
            if child == n {
                self.edges.remove(i);
                break;
            }
            if child == NIL {
                break;
            }
            i = self.edges.next(i);
        }
        if nd.prev_sibling == NIL {
            self.nodes[nd.parent as usize].first_child = nd.next_sibling;
        } else {
            self.nodes[nd.prev_sibling as usize].next_sibling = nd.next_sibling;
        }
        if nd.next_sibling != NIL {
            self.nodes[nd.next_sibling as usize].prev_sibling = nd.prev_sibling;
        }
        if nd.segment_len as usize > INLINE {
            self.text_live -= nd.segment_len as usize;
        }
        self.nodes[n as usize] = Node::new(NIL, 0, [0; INLINE]);
        self.free_nodes.push(n);
    }

    /// Rewrites `text` with the long segments of live nodes only. Called when freed
    /// bytes outnumber the live ones plus the nodes it must scan, so its cost is
    /// paid for by the bytes freed since the last one.
    fn compact_text(&mut self) {
        let old = std::mem::take(&mut self.text);
        let mut text = String::with_capacity(self.text_live);
        for nd in &mut self.nodes[1..] {
            let len = nd.segment_len as usize;
            if nd.parent == NIL || len <= INLINE {
                continue;
            }
            let [a, b, c, d, ..] = nd.segment;
            let start = u32::from_le_bytes([a, b, c, d]) as usize;
            // Bounded by the capacity checks in `hold`: the new text is no longer.
            nd.segment[..4].copy_from_slice(&(text.len() as u32).to_le_bytes());
            text.push_str(old.get(start..start + len).unwrap_or(""));
        }
        self.text = text;
    }

    fn segment(&self, n: u32) -> &[u8] {
        let nd = &self.nodes[n as usize];
        let len = nd.segment_len as usize;
        if len <= INLINE {
            &nd.segment[..len]
        } else {
            let [a, b, c, d, ..] = nd.segment;
            let start = u32::from_le_bytes([a, b, c, d]) as usize;
            self.text.as_bytes().get(start..start + len).unwrap_or(&[])
        }
    }

    /// `parent`'s child named `seg`, or the empty slot where it would go.
    fn find(&self, parent: u32, seg: &str, tag: u32) -> Result<u32, usize> {
        let mut i = self.edges.home(tag);
        loop {
            let e = self.edges.slots[i];
            if e.child == NIL {
                return Err(i);
            }
            if e.tag == tag
                && self.nodes[e.child as usize].parent == parent
                && self.segment(e.child) == seg.as_bytes()
            {
                return Ok(e.child);
            }
            i = self.edges.next(i);
        }
    }

    fn child(&self, parent: u32, seg: &str) -> Option<u32> {
        self.find(parent, seg, self.edges.tag(parent, seg.as_bytes()))
            .ok()
    }

    fn child_or_insert(&mut self, parent: u32, seg: &str) -> u32 {
        let tag = self.edges.tag(parent, seg.as_bytes());
        let mut slot = match self.find(parent, seg, tag) {
            Ok(c) => return c,
            Err(slot) => slot,
        };
        if self.edges.needs_room() {
            self.edges.grow();
            slot = self.edges.vacant(tag);
        }
        // Bounded by the capacity checks in `hold`.
        let id = self.free_nodes.pop().unwrap_or(self.nodes.len() as u32);
        let mut segment = [0u8; INLINE];
        if seg.len() <= INLINE {
            segment[..seg.len()].copy_from_slice(seg.as_bytes());
        } else {
            segment[..4].copy_from_slice(&(self.text.len() as u32).to_le_bytes());
            self.text.push_str(seg);
            self.text_live += seg.len();
        }
        let mut node = Node::new(parent, seg.len() as u32, segment);
        let first = self.nodes[parent as usize].first_child;
        node.next_sibling = first;
        if first != NIL {
            self.nodes[first as usize].prev_sibling = id;
        }
        self.nodes[parent as usize].first_child = id;
        if id as usize == self.nodes.len() {
            self.nodes.push(node);
        } else {
            self.nodes[id as usize] = node;
        }
        self.edges.slots[slot] = Edge { tag, child: id };
        self.edges.len += 1;
        id
    }

    fn collect_at(
        &mut self,
        n: u32,
        new: &Holder,
        mode: ClaimMode,
        same_name: bool,
        target: u32,
        found: &mut Vec<Collision>,
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
                let resources = if same_name {
                    vec![held_name.clone()]
                } else {
                    vec![held_name.clone(), new_name.clone()]
                };
                found.push(Collision {
                    kind,
                    parties: [party(&h, held_mode), party(new, mode)],
                    resources,
                    detected_at: new.since,
                });
            }
        }
    }

    fn name_of(&self, mut n: u32) -> String {
        let mut segs = Vec::new();
        while n != ROOT {
            // Whole segments copied from `&str`s: always UTF-8.
            segs.push(std::str::from_utf8(self.segment(n)).unwrap_or(""));
            n = self.nodes[n as usize].parent;
        }
        segs.reverse();
        segs.join("/")
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Thousands of names through a detector that starts with the smallest table:
    /// every growth keeps every edge findable, short and long segments alike.
    #[test]
    fn edges_survive_table_growth() {
        let mut d = ConflictDetector::new();
        let a = ClaimOwner::new(TaskId::new(1), AgentId::new(1));
        let b = ClaimOwner::new(TaskId::new(2), AgentId::new(2));
        let t = Timestamp::EPOCH;
        let names: Vec<String> = (0..3000)
            .map(|i| format!("d{}/a-segment-longer-than-sixteen-{}/f{i}", i % 37, i % 11))
            .collect();
        for n in &names {
            let found = d.add_claim(a, &Claim::exclusive(n.as_str()), Priority::NORMAL, t);
            assert!(found.unwrap().is_empty(), "{n}");
        }
        assert!(d.edges.len > 3000 && d.edges.slots.len() >= 4096);
        for n in &names {
            let found = d.add_claim(b, &Claim::shared(n.as_str()), Priority::NORMAL, t);
            let found = found.unwrap();
            assert_eq!(found.len(), 1, "{n}");
            assert_eq!(found[0].resources(), [n.as_str()]);
        }
        assert_eq!(d.len(), 6000);
    }

    fn owner(i: u64) -> ClaimOwner {
        ClaimOwner::new(TaskId::new(i), AgentId::new(1))
    }

    /// The trie's size, as far as it follows the claims held: nodes in use, edges,
    /// and the bytes of long segments in use.
    fn size(d: &ConflictDetector) -> (usize, usize, usize) {
        (d.live_nodes(), d.edges.len, d.text_live)
    }

    /// Regression for names kept after their last claim went: the trie grew with
    /// every name ever claimed, and a claim on a parent walked all the names released
    /// under it (1,000 claims on `runs` took 8,000 times longer after 100,000 released
    /// claims under it than on a fresh detector).
    #[test]
    fn releasing_the_last_claims_frees_their_nodes() {
        let mut d = ConflictDetector::new();
        let t = Timestamp::EPOCH;
        let keep = Claim::exclusive("runs/keep/a-segment-longer-than-sixteen");
        d.add_claim(owner(0), &keep, Priority::NORMAL, t).unwrap();
        let base = size(&d);
        let name = |i: u64| format!("runs/run-{i}/a-workspace-longer-than-sixteen-{i}/f");
        // One at a time, as tasks that claim their own workspace and finish.
        for i in 1..2000 {
            let c = Claim::exclusive(name(i));
            d.add_claim(owner(i), &c, Priority::NORMAL, t).unwrap();
            d.remove_claim(owner(i), &c).unwrap();
            assert_eq!(size(&d), base, "after {i}");
        }
        // Many at once, released in another order than taken.
        let held: Vec<(u64, Claim)> = (2000..4000).map(|i| (i, Claim::shared(name(i)))).collect();
        for (i, c) in &held {
            d.add_claim(owner(*i), c, Priority::NORMAL, t).unwrap();
        }
        // Three nodes a name: `run-{i}`, the workspace and `f`.
        assert_eq!(size(&d).0, base.0 + 3 * held.len());
        for (i, c) in held.iter().rev().step_by(2).chain(held.iter().step_by(2)) {
            d.remove_claim(owner(*i), c).unwrap();
        }
        assert_eq!(size(&d), base);
        assert_eq!(d.len(), 1);
        // The nodes, edge table and text stay at the peak of what was held at once,
        // not at the total ever claimed.
        assert_eq!(d.nodes.len(), base.0 + 3 * held.len());
        assert!(d.text.len() <= 2 * d.text_live + d.nodes.len());
        // What is left still answers, and `runs` has one child left to walk.
        let runs = d.child(ROOT, "runs").unwrap();
        let only = d.nodes[runs as usize].first_child;
        assert!(only != NIL && d.nodes[only as usize].next_sibling == NIL);
        let found = d.add_claim(owner(9), &Claim::shared("runs"), Priority::NORMAL, t);
        assert_eq!(
            found.unwrap()[0].resources(),
            ["runs/keep/a-segment-longer-than-sixteen", "runs"]
        );
        d.remove_claim(owner(9), &Claim::shared("runs")).unwrap();
        d.remove_claim(owner(0), &keep).unwrap();
        assert_eq!(size(&d), (1, 0, 0));
        // Freed text waits for a compaction while it is less than the nodes to scan.
        assert!(d.text.len() <= d.nodes.len());
    }

    proptest::proptest! {
        #![proptest_config(crate::proptest_config(64, "tests/proptest-regressions/conflict_detect.txt"))]

        /// After any claims and releases, the trie is the one a fresh detector holding
        /// only the live claims builds: the same nodes, edges and text in use.
        #[test]
        fn the_trie_follows_the_claims_held(
            ops in proptest::collection::vec((0u64..4, 0usize..6, 0usize..6, proptest::bool::ANY), 0..80)
        ) {
            const SEGS: [&str; 6] = ["a", "b", "a-segment-longer-than-sixteen-1", "a-segment-longer-than-sixteen-2", "c", "d"];
            let mut d = ConflictDetector::new();
            let mut live: Vec<(ClaimOwner, Claim)> = Vec::new();
            for (o, s1, s2, add) in ops {
                if add || live.is_empty() {
                    let c = Claim::exclusive(format!("{}/{}", SEGS[s1], SEGS[s2]).repeat(1 + s2 % 2));
                    d.add_claim(owner(o), &c, Priority::NORMAL, Timestamp::EPOCH).unwrap();
                    live.push((owner(o), c));
                } else {
                    let (o, c) = live.swap_remove(s1 % live.len());
                    d.remove_claim(o, &c).unwrap();
                }
                let mut fresh = ConflictDetector::new();
                for (o, c) in &live {
                    fresh.add_claim(*o, c, Priority::NORMAL, Timestamp::EPOCH).unwrap();
                }
                proptest::prop_assert_eq!(size(&d), size(&fresh));
                for (o, c) in &live {
                    proptest::prop_assert!(d.child(ROOT, c.resource().split('/').next().unwrap()).is_some(), "{o} {c:?}");
                }
            }
        }
    }
}
