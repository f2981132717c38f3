//! [`Fleet`]: the agents an assigner may choose from, laid out for fast matching.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::agent::{AgentRegistry, AgentStatus, CapabilityCatalog, CapabilitySet};
use crate::agent_map::AgentMap;
use crate::id::AgentId;
use crate::layout::{Layout, LogMark};
use crate::name_table::{NameTable, tag_of};
use crate::resource::{ResourceLedger, ResourceName, Resources};
use crate::task::Task;

/// How well each agent did each kind of task before: the memory behind affinity
/// scoring. An exponentially weighted success rate in `[0, 1]` per (kind, agent).
///
/// ```
/// use concord::assignment::AffinityTable;
/// use concord::AgentId;
///
/// let mut t = AffinityTable::default();
/// t.record("deploy", AgentId::new(1), true);
/// t.record("deploy", AgentId::new(2), false);
/// assert!(t.affinity("deploy", AgentId::new(1)) > t.affinity("deploy", AgentId::new(2)));
/// assert_eq!(t.affinity("build", AgentId::new(1)), 0.0);
/// ```
///
/// It remembers at most [`limit`](Self::limit) kinds (default
/// [`DEFAULT_LIMIT`](Self::DEFAULT_LIMIT)), so that a host whose kinds never repeat
/// (a workflow step is of the kind of its name unless it says otherwise, and names
/// may carry ids) does not grow it without bound. The kinds live in two generations
/// of at most half the limit each: new kinds, and kinds recorded again, go to the
/// young one; when it is full, the old one is forgotten and the young one takes its
/// place. So a kind is forgotten only after `limit / 2` other kinds were recorded
/// since it last was, and a forgotten kind has no affinity, like one never seen.
#[derive(Debug, Serialize, Deserialize)]
#[serde(into = "AffinityRows", from = "AffinityRows")]
pub struct AffinityTable {
    /// Weight of the newest outcome, in `(0, 1]`.
    alpha: f64,
    /// Kind -> agent -> affinity, for the kinds recorded since the last turn of the
    /// generations. Hashed by kind (a long run of distinct kinds costs the same per
    /// record as a short one), and kinds are shared with the tasks recorded (the
    /// coordinator copies no name).
    young: NameTable<AgentMap<f64>>,
    /// The generation before: read where `young` has no row (a row in both is the
    /// young one, the old one being its earlier value).
    old: NameTable<AgentMap<f64>>,
    /// At most this many kinds (at least two: a generation holds at least one).
    limit: usize,
    /// Where in `young` the kind last looked up is, plus one (zero: nowhere). A
    /// coordinator looks a task's kind up when it assigns the task and again when
    /// the task completes, with other work between: the second look checks this
    /// place's name instead of hashing the kind and probing. Checked by name before
    /// use, so a stale place is only a miss. Atomic so that a table shared between
    /// threads stays `Sync`; relaxed loads and stores are plain moves.
    hint: AtomicU32,
}

impl Clone for AffinityTable {
    fn clone(&self) -> Self {
        AffinityTable {
            alpha: self.alpha,
            young: self.young.clone(),
            old: self.old.clone(),
            limit: self.limit,
            hint: AtomicU32::new(self.hint.load(Relaxed)),
        }
    }
}

/// An [`AffinityTable`] as written: each kind's row once, in kind order.
#[derive(Serialize, Deserialize)]
struct AffinityRows {
    alpha: f64,
    table: BTreeMap<Arc<str>, BTreeMap<AgentId, f64>>,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    AffinityTable::DEFAULT_LIMIT
}

impl From<AffinityTable> for AffinityRows {
    fn from(t: AffinityTable) -> Self {
        AffinityRows {
            alpha: t.alpha,
            table: t
                .rows()
                .map(|(kind, row)| (Arc::clone(kind), row.iter().map(|(a, x)| (a, *x)).collect()))
                .collect(),
            limit: t.limit,
        }
    }
}

impl From<AffinityRows> for AffinityTable {
    /// Checked as the builders check: `alpha` clamped to `(0, 1]` (NaN: the default),
    /// each affinity to `[0, 1]`; past the limit, the kinds last in kind order are kept.
    fn from(rows: AffinityRows) -> Self {
        let mut t = AffinityTable::with_alpha(rows.alpha).with_limit(rows.limit);
        for (kind, row) in rows.table {
            let mut agents = row.into_iter().map(|(agent, x)| (agent, x.clamp(0.0, 1.0)));
            // A kind without agents has no affinity: the same as no row.
            let Some((first, x)) = agents.next() else {
                continue;
            };
            let mut map = AgentMap::one(first, x);
            for (agent, x) in agents {
                map.get_or_insert(agent, x);
            }
            // Each kind once: the map's keys are distinct.
            t.young.get_or_insert_with(&kind, || map);
            t.turn_if_full();
        }
        t
    }
}

impl PartialEq for AffinityTable {
    /// The same weight, limit, and rows, whichever generation holds them.
    fn eq(&self, other: &Self) -> bool {
        self.alpha == other.alpha
            && self.limit == other.limit
            && self.kinds() == other.kinds()
            && self.rows().all(|(kind, row)| other.row(kind) == Some(row))
    }
}

/// An outcome as the value affinity learns from.
fn outcome(success: bool) -> f64 {
    if success { 1.0 } else { 0.0 }
}

/// Moves `agent`'s affinity in `row` toward outcome `x` by `alpha` (a first outcome
/// is taken as it is).
fn learn(row: &mut AgentMap<f64>, agent: AgentId, x: f64, alpha: f64) {
    let entry = row.get_or_insert(agent, x).0;
    *entry += alpha * (x - *entry);
}

impl Default for AffinityTable {
    fn default() -> Self {
        AffinityTable {
            alpha: 0.3,
            young: NameTable::default(),
            old: NameTable::default(),
            limit: AffinityTable::DEFAULT_LIMIT,
            hint: AtomicU32::new(0),
        }
    }
}

impl AffinityTable {
    /// How many kinds a table remembers unless told otherwise: far more than the
    /// kinds of tasks an orchestrator usually runs, few enough for the table to stay
    /// in the cache.
    pub const DEFAULT_LIMIT: usize = 4096;

    /// An empty table where each new outcome weighs `alpha` (clamped to `(0, 1]`; NaN
    /// means the default 0.3).
    pub fn with_alpha(alpha: f64) -> Self {
        let alpha = if alpha.is_nan() {
            0.3
        } else {
            alpha.clamp(f64::MIN_POSITIVE, 1.0)
        };
        AffinityTable {
            alpha,
            ..AffinityTable::default()
        }
    }

    /// The table remembering at most `limit` kinds (at least two). A table holding
    /// more forgets its old generation, and then, if it must, the young one.
    ///
    /// ```
    /// use concord::assignment::AffinityTable;
    /// use concord::AgentId;
    ///
    /// let mut t = AffinityTable::default().with_limit(4);
    /// for kind in ["a", "b"] {
    ///     t.record(kind, AgentId::new(1), true);
    /// }
    /// // The young generation held two kinds, half the limit: "a" and "b" are now
    /// // the old one.
    /// t.record("c", AgentId::new(1), true);
    /// t.record("a", AgentId::new(1), true); // young again, with its row
    /// // Full again: "b" is forgotten, and "c" and "a" are the old generation.
    /// t.record("d", AgentId::new(1), true);
    /// assert_eq!(t.kinds(), 3);
    /// assert_eq!(t.affinity("b", AgentId::new(1)), 0.0);
    /// assert_eq!(t.affinity("a", AgentId::new(1)), 1.0);
    /// ```
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(2);
        if self.kinds() > self.limit {
            self.old.clear();
            if self.young.len() > self.limit {
                self.young.clear();
            }
        }
        self.turn_if_full();
        self
    }

    /// The most kinds it remembers.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many kinds it remembers now.
    pub fn kinds(&self) -> usize {
        self.rows().count()
    }

    /// A table holding only the rows of `kinds`: what a batch of those kinds needs,
    /// at a cost that does not grow with the whole history.
    pub fn subset<'a>(&self, kinds: impl IntoIterator<Item = &'a str>) -> AffinityTable {
        let mut out = AffinityTable {
            alpha: self.alpha,
            limit: self.limit,
            ..AffinityTable::default()
        };
        for kind in kinds {
            if let Some(row) = self.row(kind) {
                out.young
                    .get_or_insert_with(&Arc::from(kind), || row.clone());
                out.turn_if_full();
            }
        }
        out
    }

    /// Records that `agent` did a task of `kind`, well or not.
    pub fn record(&mut self, kind: &str, agent: AgentId, success: bool) {
        self.record_shared(&Arc::from(kind), agent, success);
    }

    /// [`record`](Self::record) with the kind's name shared, not copied.
    pub(crate) fn record_shared(&mut self, kind: &Arc<str>, agent: AgentId, success: bool) {
        let (alpha, x) = (self.alpha, outcome(success));
        if let Some(i) = self.hinted(kind) {
            if let Some((_, row)) = self.young.at_mut(i) {
                learn(row, agent, x, alpha);
                return;
            }
        }
        let old = &self.old;
        let tag = tag_of(kind);
        let (row, made) =
            self.young
                .get_or_insert_tagged(tag, kind, || match old.get_tagged(tag, kind) {
                    // Recorded again after the generations turned: it carries on from the
                    // old generation's row.
                    Some(earlier) => {
                        let mut row = earlier.clone();
                        learn(&mut row, agent, x, alpha);
                        row
                    }
                    None => AgentMap::one(agent, x),
                });
        if made {
            self.turn_if_full();
        } else {
            learn(row, agent, x, alpha);
        }
    }

    /// Forgets what `agent` did, in every kind: for an agent that left the fleet
    /// for good, so that a fleet whose agents come and go (autoscaled workers) keeps
    /// a table the size of its fleet, not of every agent it ever had. Returns how
    /// many entries went.
    pub fn forget_agent(&mut self, agent: AgentId) -> usize {
        self.young
            .values_mut()
            .chain(self.old.values_mut())
            .map(|row| usize::from(row.remove(agent)))
            .sum()
    }

    /// Forgets the old generation and makes the young one old, when the young one
    /// holds half the limit. The forgotten generation's storage serves the next.
    fn turn_if_full(&mut self) {
        if self.young.len() >= self.limit / 2 {
            std::mem::swap(&mut self.young, &mut self.old);
            self.young.clear();
        }
    }

    /// The affinity of `agent` for `kind`: its weighted success rate, zero if it never
    /// did one.
    pub fn affinity(&self, kind: &str, agent: AgentId) -> f64 {
        self.row(kind)
            .and_then(|m| m.get(agent))
            .copied()
            .unwrap_or(0.0)
    }

    fn row(&self, kind: &str) -> Option<&AgentMap<f64>> {
        if let Some((_, row)) = self.hinted(kind).and_then(|i| self.young.at(i)) {
            return Some(row);
        }
        let tag = tag_of(kind);
        match self.young.position_tagged(tag, kind) {
            Some(i) => {
                // Past `u32::MAX` kinds (never: the limit keeps tables far smaller)
                // the place is not kept, and the next look hashes.
                self.hint.store(u32::try_from(i + 1).unwrap_or(0), Relaxed);
                self.young.at(i).map(|(_, row)| row)
            }
            None => self.old.get_tagged(tag, kind),
        }
    }

    /// Where `kind` is in `young`, if the place kept ([`hint`](Self::hint)) holds
    /// it: a kind in `young` is there once, so a place whose name is `kind` is its
    /// row, however the table changed since.
    fn hinted(&self, kind: &str) -> Option<usize> {
        let i = (self.hint.load(Relaxed) as usize).checked_sub(1)?;
        let (name, _) = self.young.at(i)?;
        crate::id::same_name(name, kind).then_some(i)
    }

    /// Every remembered kind with its row, the young generation first; a row left
    /// with no agent (they all left) is no row.
    fn rows(&self) -> impl Iterator<Item = (&Arc<str>, &AgentMap<f64>)> + '_ {
        self.young
            .iter()
            .chain(
                self.old
                    .iter()
                    .filter(|(kind, _)| self.young.get(kind).is_none()),
            )
            .filter(|(_, row)| !row.is_empty())
    }
}

/// Where a [`Fleet`]'s columns stand in the change logs of the registry and ledger
/// they were read from, so that a refresh of an unchanged layout rereads only the
/// rows changed since.
#[derive(Debug, Clone, Default)]
struct RefreshMarks {
    /// The registry's and (when one was read) the ledger's log ends as of the last
    /// refresh; `None` when that refresh's columns cannot be patched row by row.
    seen: Option<(LogMark, Option<LogMark>)>,
    /// Per ledger dense index, the fleet row of its agent ([`NO_ROW`]: none): the
    /// ledger logs its own rows.
    fleet_row: Vec<usize>,
}

/// In [`RefreshMarks::fleet_row`], an agent of the ledger that is not in the fleet.
const NO_ROW: usize = usize::MAX;

impl RefreshMarks {
    /// Inverts `ledger_rows` (per fleet row, its ledger dense index) into
    /// `fleet_row`.
    fn index_ledger_rows(&mut self, ledger_rows: &[Option<u32>]) {
        self.fleet_row.clear();
        for (r, li) in ledger_rows.iter().enumerate() {
            let Some(li) = *li else {
                continue;
            };
            let li = li as usize;
            if self.fleet_row.len() <= li {
                self.fleet_row.resize(li + 1, NO_ROW);
            }
            self.fleet_row[li] = r;
        }
    }
}

/// The dimensions the resource scorers read for every task: cpu and memory, the first
/// two of every fleet (then each task's needed dimensions).
pub(crate) const ALWAYS_SCORED: [usize; 2] = [0, 1];

/// A task translated against a [`Fleet`]: bitsets for its roles and capabilities and
/// dense resource needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledTask {
    pub(crate) roles: CapabilitySet,
    pub(crate) capabilities: CapabilitySet,
    /// Each required role's bit, with its place in the task's list of roles (the
    /// first place a role is named): what an explanation names a missing role by,
    /// without looking the bit's name up.
    pub(crate) role_at: Vec<(usize, usize)>,
    /// The same for capabilities.
    pub(crate) capability_at: Vec<(usize, usize)>,
    /// One per fleet dimension.
    pub(crate) needs: Vec<u64>,
    /// The dimensions with a non-zero need, and the need.
    pub(crate) need_dims: Vec<(usize, u64)>,
    /// False when a role or capability is unknown to the whole fleet.
    pub(crate) satisfiable: bool,
    /// The first required role no agent of the fleet has ever had.
    pub(crate) unknown_role: Option<crate::id::Role>,
    /// The first required capability no agent of the fleet has ever had.
    pub(crate) unknown_capability: Option<crate::id::Capability>,
    /// Dimensions scored by the resource scorers: cpu, memory and every dimension the
    /// task needs.
    pub(crate) scored_dims: Vec<usize>,
    /// Affinity per agent, aligned with the fleet, when the fleet has an affinity table
    /// row for the task's kind; empty when it has none (a fleet is never empty).
    pub(crate) affinity: Vec<f64>,
    /// The entries of `affinity` the last compile wrote: every other entry is zero.
    affinity_set: Vec<usize>,
    /// Per 64 agents (a word of the fleet's bitsets), the largest of their
    /// affinities, when `affinity` is not empty: a scan skips a word none of whose
    /// agents can beat the runner-up.
    pub(crate) affinity_peak: Vec<f64>,
}

/// `bits` packed into `words` (whatever it held), 64 to a word, the first in bit 0.
fn pack_bits(words: &mut Vec<u64>, bits: impl Iterator<Item = bool>) {
    words.clear();
    for (i, yes) in bits.enumerate() {
        if i % 64 == 0 {
            words.push(0);
        }
        words[i / 64] |= u64::from(yes) << (i % 64);
    }
}

/// Sets (`yes`) or clears bit `i` of `words`, where there is one.
fn set_bit(words: &mut [u64], i: usize, yes: bool) {
    if let Some(word) = words.get_mut(i / 64) {
        let bit = 1u64 << (i % 64);
        *word = if yes { *word | bit } else { *word & !bit };
    }
}

/// Whether two rows of amounts (or of eligibility bits) are the same. The rows are a
/// few words: one pass without a branch per word, where a slice comparison calls
/// `memcmp`.
#[inline]
pub(crate) fn same_row(a: &[u64], b: &[u64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether an agent with `status` and `slots` free may be given a task now: the one
/// definition the fleet's eligibility words and the assigner's filters share.
#[inline]
pub(crate) fn takes_work(status: AgentStatus, slots: u32) -> bool {
    status == AgentStatus::Available && slots > 0
}

/// The agents an assigner may choose from, as a struct of arrays: statuses, free slots,
/// role and capability bitsets, free resources per dimension, and history.
///
/// Built from an [`AgentRegistry`] (statuses, slots, roles, capabilities) and,
/// optionally, a [`ResourceLedger`] (free capacity after allocations and
/// reservations). An agent that is not in the ledger offers its declared capacity, or
/// unlimited resources if it declared none. The fleet is a copy: assigners never change
/// it, and it never changes the registry or ledger.
///
/// ```
/// use concord::assignment::Fleet;
/// use concord::agent::{AgentProfile, AgentRegistry};
/// use concord::{AgentId, ResourceLedger, Role, Timestamp};
///
/// let now = Timestamp::from_secs(0);
/// let mut registry = AgentRegistry::new();
/// let mut ledger = ResourceLedger::new();
/// registry.register(AgentProfile::new(AgentId::new(1), "ops").with_role(Role::new("ops")?), now)?;
/// ledger.add_agent(AgentId::new(1), &"cpu=4".parse()?)?;
/// let fleet = Fleet::new(&registry, Some(&ledger));
/// assert_eq!(fleet.len(), 1);
/// assert_eq!(fleet.free(AgentId::new(1)).unwrap().cpu_millis(), 4000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Fleet {
    pub(crate) ids: Vec<AgentId>,
    pub(crate) status: Vec<AgentStatus>,
    pub(crate) slots: Vec<u32>,
    pub(crate) roles: Vec<CapabilitySet>,
    pub(crate) capabilities: Vec<CapabilitySet>,
    /// Agent-major, `dims.len()` per agent; `u64::MAX` where unlimited.
    pub(crate) free: Vec<u64>,
    /// Agent-major; the total capacity, for utilization scores (0 where unknown).
    pub(crate) capacity: Vec<u64>,
    pub(crate) dims: Vec<ResourceName>,
    /// Whether each agent declared no capacity at all (so has any resource).
    pub(crate) unlimited: Vec<bool>,
    /// Per agent, a number shared by exactly the agents with the same capacity in
    /// every dimension and the same `unlimited` flag.
    pub(crate) capacity_class: Vec<u32>,
    /// One bit per agent, 64 a word: available with a free slot. Kept with the
    /// statuses and slots it is read from, so that a filter pass starts from it
    /// instead of visiting every agent.
    pub(crate) eligible: Vec<u64>,
    /// Per agent, whether every amount is free (its free row is its capacity row):
    /// two such agents of one capacity class have the same free amounts, known
    /// without comparing their rows.
    pub(crate) idle: Vec<bool>,
    /// One bit per agent, 64 a word: idle, and of the first agent's capacity class
    /// (class 0). All such agents fit a task alike and score alike but for
    /// affinity, so a scan judges a word of them by one verdict: in a quiet fleet
    /// of one size, every word.
    pub(crate) calm: Vec<u64>,
    /// Per dimension, what the ledger's pool limit leaves; `u64::MAX` where unlimited.
    pub(crate) pool_free: Vec<u64>,
    role_catalog: Arc<CapabilityCatalog>,
    capability_catalog: Arc<CapabilityCatalog>,
    /// Shared with the coordinator for the length of a batch: lending it costs a
    /// reference count, where copying the rows a batch reads cost a table per batch.
    affinity: Option<Arc<AffinityTable>>,
    /// Each agent's free and total resources, read by a refresh to build the
    /// columns; kept between refreshes so that the next one overwrites them in place.
    scratch: Vec<(Option<Resources>, Option<Resources>)>,
    /// The registry's and ledger's layouts the columns were built from: while they
    /// hold, a refresh only reads what allocations, tasks and statuses change.
    layout: Option<(Layout, Option<Layout>)>,
    /// Where the columns stand in the registry's and ledger's change logs.
    marks: RefreshMarks,
    /// Per agent, its dense index in the ledger (none when the ledger does not know
    /// it, and it offers its declared capacity).
    ledger_rows: Vec<Option<u32>>,
    /// Per dimension, its index in the ledger (none when the ledger has no such
    /// dimension).
    ledger_dims: Vec<Option<usize>>,
    /// Whether the fleet's dimensions are the ledger's first ones, in its order: then
    /// a row of free amounts may be copied from the start of the ledger's row.
    ledger_dims_direct: bool,
}

impl Fleet {
    /// A fleet of every agent in `registry`, with free resources from `ledger` when
    /// given.
    pub fn new(registry: &AgentRegistry, ledger: Option<&ResourceLedger>) -> Self {
        let mut fleet = Fleet::empty();
        fleet.refresh(registry, ledger);
        fleet
    }

    /// A fleet of no agents.
    fn empty() -> Self {
        Fleet {
            ids: Vec::new(),
            status: Vec::new(),
            slots: Vec::new(),
            roles: Vec::new(),
            capabilities: Vec::new(),
            free: Vec::new(),
            capacity: Vec::new(),
            dims: Vec::new(),
            unlimited: Vec::new(),
            capacity_class: Vec::new(),
            eligible: Vec::new(),
            idle: Vec::new(),
            calm: Vec::new(),
            pool_free: Vec::new(),
            role_catalog: Arc::default(),
            capability_catalog: Arc::default(),
            affinity: None,
            scratch: Vec::new(),
            layout: None,
            marks: RefreshMarks::default(),
            ledger_rows: Vec::new(),
            ledger_dims: Vec::new(),
            ledger_dims_direct: false,
        }
    }

    /// Rebuilds the fleet from `registry` and `ledger` in place, as [`new`](Self::new)
    /// builds it, reusing its columns: a coordinator keeps one fleet and refreshes it
    /// per batch instead of allocating a dozen arrays each time. The affinity table
    /// is kept.
    ///
    /// While the layouts hold, it rereads only the rows the registry's and ledger's
    /// change logs name since its last refresh (a one-task batch changes two or
    /// four), unless it cannot: see [`refresh_changed`](Self::refresh_changed).
    pub(crate) fn refresh(&mut self, registry: &AgentRegistry, ledger: Option<&ResourceLedger>) {
        let layout = (registry.layout(), ledger.map(ResourceLedger::layout));
        // Reservations and pool limits change every agent's free amounts without
        // naming one: columns read from such a ledger are no base to patch, and none
        // are patched with it.
        let plain = ledger.is_none_or(ResourceLedger::free_is_plain);
        if self.layout == Some(layout) {
            if !(plain && self.refresh_changed(registry, ledger)) {
                self.refresh_usage(registry, ledger);
                self.derive_all();
            }
        } else {
            self.rebuild(registry, ledger);
            self.layout = Some(layout);
            self.marks.index_ledger_rows(&self.ledger_rows);
            self.derive_all();
        }
        self.marks.seen = plain.then(|| {
            (
                registry.changes().mark(),
                ledger.map(|l| l.changes().mark()),
            )
        });
    }

    /// Rereads the rows changed since the last refresh, as
    /// [`refresh_usage`](Self::refresh_usage) reads every row, from a ledger (if any)
    /// whose free amounts are plainly capacity less allocations, and says whether it
    /// could: not when the last refresh's ledger was not so plain, nor when a log
    /// cannot say what changed (another instance's, or trimmed past the last read).
    /// The layouts are unchanged, so the registry's rows are the fleet's and every
    /// logged row is one of today's.
    fn refresh_changed(
        &mut self,
        registry: &AgentRegistry,
        ledger: Option<&ResourceLedger>,
    ) -> bool {
        let Some((agents_seen, ledger_seen)) = self.marks.seen else {
            return false;
        };
        let Some(agents) = registry.changes().since(agents_seen) else {
            return false;
        };
        let (ledger, changed) = match (ledger, ledger_seen) {
            (None, None) => (None, &[][..]),
            (Some(l), Some(seen)) => match l.changes().since(seen) {
                Some(changed) => (Some(l), changed),
                None => return false,
            },
            _ => return false,
        };
        for &i in agents {
            let (Some((status, free)), Some(s), Some(f)) = (
                registry.usage_at(i),
                self.status.get_mut(i),
                self.slots.get_mut(i),
            ) else {
                return false;
            };
            (*s, *f) = (status, free);
            self.derive_eligible(i);
        }
        let Some(ledger) = ledger else {
            return true;
        };
        let n = self.dims.len();
        for &li in changed {
            // An agent of the ledger the registry does not know: not in the fleet.
            let Some(&r) = self.marks.fleet_row.get(li).filter(|r| **r != NO_ROW) else {
                continue;
            };
            let Some(free) = self.free.get_mut(r * n..).and_then(|f| f.get_mut(..n)) else {
                return false;
            };
            if self.ledger_dims_direct {
                if !ledger.plain_free_row_into(li, free) {
                    return false;
                }
            } else {
                let Ok(li) = u32::try_from(li) else {
                    return false;
                };
                for (f, d) in free.iter_mut().zip(&self.ledger_dims) {
                    *f = d.map_or(0, |d| ledger.free_at(li, d));
                }
            }
            self.derive_idle(r);
        }
        true
    }

    /// Derives [`eligible`](Self::eligible) and [`idle`](Self::idle) for every agent
    /// from the columns they are read from.
    fn derive_all(&mut self) {
        let eligible = (self.status.iter().zip(&self.slots)).map(|(s, k)| takes_work(*s, *k));
        pack_bits(&mut self.eligible, eligible);
        let n = self.dims.len().max(1);
        self.idle.clear();
        self.idle.extend(
            (self.free.chunks_exact(n).zip(self.capacity.chunks_exact(n))).map(|(f, c)| f == c),
        );
        let calm = (self.idle.iter().zip(&self.capacity_class)).map(|(idle, c)| *idle && *c == 0);
        pack_bits(&mut self.calm, calm);
    }

    /// Derives agent `i`'s bit of [`eligible`](Self::eligible) after its status or
    /// slots changed.
    fn derive_eligible(&mut self, i: usize) {
        let yes = matches!(
            (self.status.get(i), self.slots.get(i)),
            (Some(status), Some(slots)) if takes_work(*status, *slots)
        );
        set_bit(&mut self.eligible, i, yes);
    }

    /// Derives agent `i`'s [`idle`](Self::idle) flag after its free amounts changed.
    fn derive_idle(&mut self, i: usize) {
        let n = self.dims.len();
        fn row(c: &[u64], i: usize, n: usize) -> Option<&[u64]> {
            c.get(i * n..).and_then(|c| c.get(..n))
        }
        let yes = (row(&self.free, i, n).zip(row(&self.capacity, i, n)))
            .is_some_and(|(f, c)| same_row(f, c));
        if let Some(flag) = self.idle.get_mut(i) {
            *flag = yes;
        }
        let calm = yes && self.capacity_class.get(i) == Some(&0);
        set_bit(&mut self.calm, i, calm);
    }

    /// Rereads what changes between batches of an unchanged layout: statuses, free
    /// slots, and free resources per agent and in the pool. The same columns
    /// [`rebuild`](Self::rebuild) writes, read from the ledger's dense rows instead of
    /// through a `Resources` per agent.
    fn refresh_usage(&mut self, registry: &AgentRegistry, ledger: Option<&ResourceLedger>) {
        self.status.clear();
        self.status.extend_from_slice(registry.statuses());
        registry.free_slots_into(&mut self.slots);
        let Some(ledger) = ledger else {
            // Declared capacities only: nothing else to read.
            return;
        };
        let n = self.dims.len();
        // Without reservations or pool limits, free is capacity less allocations,
        // copied row by row (the rule below, read per dimension), and no pool limits.
        let plain = self.ledger_dims_direct
            && ledger.free_is_plain()
            && ledger.plain_free_rows_into(&self.ledger_rows, n, &mut self.free);
        if !plain {
            for (row, free) in self.ledger_rows.iter().zip(self.free.chunks_exact_mut(n)) {
                if let Some(li) = *row {
                    for (f, d) in free.iter_mut().zip(&self.ledger_dims) {
                        *f = d.map_or(0, |d| ledger.free_at(li, d));
                    }
                }
            }
        }
        if plain {
            self.pool_free.fill(u64::MAX);
            return;
        }
        self.take_reserved_slots(ledger);
        for (p, d) in self.pool_free.iter_mut().zip(&self.ledger_dims) {
            *p = d
                .and_then(|d| ledger.pool_available_at(d))
                .unwrap_or(u64::MAX);
        }
    }

    /// Takes from each agent's free slots those the ledger reserved for waiting
    /// requests. The registry counts a reserved slot as free, but the ledger refuses it
    /// to any other task: a plan that placed a new task there would fail at its
    /// allocation, where it must wait behind the request it reserved for.
    fn take_reserved_slots(&mut self, ledger: &ResourceLedger) {
        if !ledger.has_reservations() {
            return;
        }
        for (slots, row) in self.slots.iter_mut().zip(&self.ledger_rows) {
            if let Some(li) = *row {
                let free = u32::try_from(ledger.free_task_slots_at(li)).unwrap_or(u32::MAX);
                *slots = (*slots).min(free);
            }
        }
    }

    /// Builds every column from `registry` and `ledger`, reusing the buffers.
    fn rebuild(&mut self, registry: &AgentRegistry, ledger: Option<&ResourceLedger>) {
        let dims = &mut self.dims;
        dims.clear();
        dims.extend([
            ResourceName::Cpu,
            ResourceName::Memory,
            ResourceName::Storage,
        ]);
        // Each agent's free and total resources: from the ledger when it knows the
        // agent, else as declared (unlimited when nothing is declared). The last
        // batch's entries are overwritten in place, so reading the ledger reuses them.
        let scratch = &mut self.scratch;
        scratch.resize_with(registry.len(), Default::default);
        for (view, (free, cap)) in registry.iter().zip(scratch.iter_mut()) {
            let id = view.id();
            let known = ledger.is_some_and(|l| {
                let (f, c) = (free.get_or_insert_default(), cap.get_or_insert_default());
                l.free_into(id, f).is_ok() && l.capacity_into(id, c).is_ok()
            });
            if !known {
                let declared = view.profile().capacity().cloned();
                (*free, *cap) = (declared.clone(), declared);
            }
            if let Some(c) = cap {
                for (name, _) in c.iter() {
                    if !dims.contains(&name) {
                        dims.push(name);
                    }
                }
            }
        }
        self.free.clear();
        self.capacity.clear();
        self.unlimited.clear();
        for (f, c) in scratch.iter() {
            for d in dims.iter() {
                self.free.push(f.as_ref().map_or(u64::MAX, |f| f.get(d)));
                self.capacity.push(c.as_ref().map_or(0, |c| c.get(d)));
            }
            self.unlimited.push(f.is_none());
        }
        // Agents of one size share a class: a scan that reuses one agent's scores for
        // another with the same amounts free compares one number instead of a row.
        let mut classes: HashMap<(&[u64], bool), u32> = HashMap::new();
        self.capacity_class.clear();
        let rows = self.capacity.chunks_exact(dims.len().max(1));
        for (row, unlimited) in rows.zip(&self.unlimited) {
            let next = classes.len() as u32;
            self.capacity_class
                .push(*classes.entry((row, *unlimited)).or_insert(next));
        }
        self.pool_free.clear();
        self.pool_free.extend(
            dims.iter()
                .map(|d| ledger.and_then(|l| l.pool_available(d)).unwrap_or(u64::MAX)),
        );
        self.ledger_dims.clear();
        self.ledger_dims
            .extend(dims.iter().map(|d| ledger.and_then(|l| l.dimension(d))));
        // A prefix is enough: the ledger's task-slot dimension follows cpu, memory
        // and storage, and the fleet reads slots from the registry instead. Requiring
        // the whole row sent every coordinator's refresh down the per-amount path.
        self.ledger_dims_direct = ledger.is_some_and(|l| {
            l.dimensions() >= self.ledger_dims.len()
                && (self.ledger_dims.iter().enumerate()).all(|(i, d)| *d == Some(i))
        });
        self.ledger_rows.clear();
        // The agents whose amounts came from the ledger (it knows them).
        self.ledger_rows.extend(
            registry
                .iter()
                .map(|view| ledger.and_then(|l| l.dense_index(view.id()))),
        );
        (self.role_catalog, self.capability_catalog) = registry.shared_catalogs();
        self.ids.clear();
        self.ids.extend_from_slice(registry.ids());
        self.status.clear();
        self.status.extend(registry.iter().map(|v| v.status()));
        self.slots.clear();
        self.slots.extend(registry.iter().map(|v| v.free_slots()));
        if let Some(ledger) = ledger {
            self.take_reserved_slots(ledger);
        }
        self.roles.clear();
        self.roles
            .extend(registry.iter().map(|v| v.role_bits().clone()));
        self.capabilities.clear();
        self.capabilities
            .extend(registry.iter().map(|v| v.capability_bits().clone()));
    }

    /// Sets (or clears) the history that affinity scoring reads.
    pub(crate) fn set_affinity(&mut self, affinity: Option<Arc<AffinityTable>>) {
        self.affinity = affinity;
    }

    /// The history that affinity scoring reads, if any.
    pub(crate) fn affinity(&self) -> Option<&AffinityTable> {
        self.affinity.as_deref()
    }

    /// The history to write, made first if there was none. A coordinator's fleet is
    /// the only holder of its table (unless an assigner kept a copy of the fleet), so
    /// this copies nothing.
    pub(crate) fn affinity_mut(&mut self) -> &mut AffinityTable {
        Arc::make_mut(self.affinity.get_or_insert_with(Arc::default))
    }

    /// Adds the history that affinity scoring reads.
    pub fn with_affinity(mut self, affinity: AffinityTable) -> Self {
        self.affinity = Some(Arc::new(affinity));
        self
    }

    /// How many agents the fleet holds (of any status).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the fleet holds no agent.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The agents, in ascending id order.
    pub fn ids(&self) -> &[AgentId] {
        &self.ids
    }

    pub(crate) fn index(&self, agent: AgentId) -> Option<usize> {
        self.ids.binary_search(&agent).ok()
    }

    /// What `agent` has free, or `None` if it is not in the fleet. Unlimited
    /// resources read as `u64::MAX`.
    pub fn free(&self, agent: AgentId) -> Option<Resources> {
        let i = self.index(agent)?;
        let n = self.dims.len();
        let mut r = Resources::new();
        for (d, name) in self.dims.iter().enumerate() {
            r.set(name, self.free[i * n + d]);
        }
        Some(r)
    }

    /// The status of `agent`, or `None` if it is not in the fleet.
    pub fn status(&self, agent: AgentId) -> Option<AgentStatus> {
        self.index(agent).map(|i| self.status[i])
    }

    /// The free task slots of `agent`, or `None` if it is not in the fleet.
    pub fn free_slots(&self, agent: AgentId) -> Option<u32> {
        self.index(agent).map(|i| self.slots[i])
    }

    pub(crate) fn has_affinity(&self) -> bool {
        self.affinity.is_some()
    }

    pub(crate) fn role_catalog_len(&self) -> usize {
        self.role_catalog.len()
    }

    pub(crate) fn capability_catalog_len(&self) -> usize {
        self.capability_catalog.len()
    }

    /// The layout of the registry the roles and capabilities were read from: while it
    /// is the same, so are they (a refresh rereads only what runs and what is free).
    pub(crate) fn roles_stamp(&self) -> Option<Layout> {
        self.layout.map(|(registry, _)| registry)
    }

    /// Translates a task against this fleet into `t`, reusing its buffers, with
    /// resources laid out as `dims` (the fleet's dimensions, then any the batch adds).
    pub(crate) fn compile_into(&self, task: &Task, t: &mut CompiledTask, dims: &[ResourceName]) {
        let req = task.requirements();
        // Known names become bits; the first unknown one (no agent has it) is kept.
        t.roles = CapabilitySet::new();
        t.role_at.clear();
        t.unknown_role = None;
        for (k, r) in req.roles().iter().enumerate() {
            match self.role_catalog.get_bytes(r.as_bytes()) {
                Some(bit) => {
                    if t.roles.insert(bit) {
                        t.role_at.push((bit.index(), k));
                    }
                }
                None => {
                    t.unknown_role.get_or_insert_with(|| r.clone());
                }
            }
        }
        t.capabilities = CapabilitySet::new();
        t.capability_at.clear();
        t.unknown_capability = None;
        for (k, c) in req.capabilities().iter().enumerate() {
            match self.capability_catalog.get_bytes(c.as_bytes()) {
                Some(bit) => {
                    if t.capabilities.insert(bit) {
                        t.capability_at.push((bit.index(), k));
                    }
                }
                None => {
                    t.unknown_capability.get_or_insert_with(|| c.clone());
                }
            }
        }
        t.satisfiable = t.unknown_role.is_none() && t.unknown_capability.is_none();
        t.needs.clear();
        t.needs.resize(dims.len(), 0);
        t.need_dims.clear();
        // Most tasks need nothing countable: not even an iterator then.
        let needs = req.resources();
        if !needs.is_zero() {
            for (name, v) in needs.iter() {
                // Every resource of the batch has a dimension (see `Engine::new`).
                if let Some(d) = dims.iter().position(|d| *d == name) {
                    t.needs[d] = v;
                    t.need_dims.push((d, v));
                }
            }
        }
        t.scored_dims.clear();
        t.scored_dims.extend(ALWAYS_SCORED);
        t.scored_dims
            .extend(t.need_dims.iter().map(|&(d, _)| d).filter(|&d| d >= 2));
        if let Some(row) = self.affinity.as_ref().and_then(|a| a.row(task.kind())) {
            // Only the entries the last compile wrote are zeroed, where filling the
            // whole row cost more than the scan on a fleet of a thousand.
            if t.affinity.len() == self.ids.len() {
                for &i in &t.affinity_set {
                    t.affinity[i] = 0.0;
                }
            } else {
                t.affinity.clear();
                t.affinity.resize(self.ids.len(), 0.0);
            }
            t.affinity_set.clear();
            t.affinity_peak.clear();
            t.affinity_peak.resize(self.ids.len().div_ceil(64), 0.0);
            // Both ascending by id: one merge, where a search per agent cost a third
            // of a one-task scan.
            let mut i = 0;
            for (agent, x) in row.iter() {
                while self.ids.get(i).is_some_and(|id| *id < agent) {
                    i += 1;
                }
                if self.ids.get(i) == Some(&agent) {
                    t.affinity[i] = *x;
                    t.affinity_set.push(i);
                    let peak = &mut t.affinity_peak[i / 64];
                    *peak = peak.max(*x);
                    i += 1;
                }
            }
        } else {
            t.affinity.clear();
            t.affinity_set.clear();
            t.affinity_peak.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentProfile;
    use crate::clock::Timestamp;

    type Columns = (
        Vec<AgentId>,
        Vec<ResourceName>,
        Vec<u64>,
        Vec<u64>,
        Vec<bool>,
        Vec<u64>,
        (
            Vec<AgentStatus>,
            Vec<u32>,
            Vec<CapabilitySet>,
            Vec<CapabilitySet>,
        ),
        (Vec<u32>, Vec<u64>, Vec<bool>, Vec<u64>),
    );

    /// The columns a refresh builds from the registry, the ledger and the declared
    /// capacities.
    fn columns(f: &Fleet) -> Columns {
        (
            f.ids.clone(),
            f.dims.clone(),
            f.free.clone(),
            f.capacity.clone(),
            f.unlimited.clone(),
            f.pool_free.clone(),
            (
                f.status.clone(),
                f.slots.clone(),
                f.roles.clone(),
                f.capabilities.clone(),
            ),
            (
                f.capacity_class.clone(),
                f.eligible.clone(),
                f.idle.clone(),
                f.calm.clone(),
            ),
        )
    }

    fn registry(agents: &[(u64, Option<&str>)]) -> AgentRegistry {
        let mut registry = AgentRegistry::new();
        for &(id, capacity) in agents {
            let mut profile = AgentProfile::new(AgentId::new(id), "agent");
            if let Some(c) = capacity {
                profile = profile.with_capacity(c.parse().unwrap());
            }
            registry.register(profile, Timestamp::from_secs(0)).unwrap();
        }
        registry
    }

    #[test]
    fn refreshing_a_used_fleet_builds_what_new_builds() {
        // Refresh overwrites the last batch's per-agent entries in place: nothing of a
        // larger, wider or ledger-backed batch may show through in the next one.
        let mut ledger = ResourceLedger::new();
        let wide = "cpu=4,gpu=2,fpga=1,llm_tokens=100".parse().unwrap();
        ledger.add_agent(AgentId::new(1), &wide).unwrap();
        ledger
            .add_agent(AgentId::new(2), &"cpu=2".parse().unwrap())
            .unwrap();
        let now = Timestamp::from_secs(0);
        ledger
            .allocate(AgentId::new(1), &"cpu=1,gpu=1".parse().unwrap(), now)
            .unwrap();
        let batches = [
            registry(&[(1, None), (2, None), (3, Some("cpu=1,gpu=1")), (4, None)]),
            registry(&[(3, Some("memory=1Gi")), (2, None)]),
            registry(&[(4, None), (1, Some("cpu=1")), (5, Some("cpu=1,fpga=3"))]),
            registry(&[]),
            registry(&[(2, None), (1, None), (3, Some("gpu=1"))]),
        ];
        let mut fleet = Fleet::new(&batches[0], Some(&ledger));
        for _ in 0..2 {
            for registry in &batches {
                for ledger in [Some(&ledger), None] {
                    fleet.refresh(registry, ledger);
                    let fresh = Fleet::new(registry, ledger);
                    assert_eq!(columns(&fleet), columns(&fresh), "{:?}", registry.ids());
                }
            }
        }
    }

    mod refresh_properties {
        use super::*;
        use crate::id::{Capability, Role};
        use crate::resource::{AllocationRequest, LedgerConfig, RequestOutcome};
        use proptest::prelude::*;

        /// A change to the registry or the ledger between two batches.
        #[derive(Debug, Clone)]
        enum Op {
            Register(u64, Option<&'static str>, usize),
            Deregister(u64),
            SetStatus(u64, AgentStatus),
            TaskStarted(u64),
            TaskFinished(u64),
            LedgerAdd(u64, &'static str),
            LedgerRemove(u64),
            SetCapacity(u64, &'static str),
            SetPool(&'static str, Option<u64>),
            Allocate(u64, &'static str),
            Release(usize),
            SetTaskSlots(u64, Option<u32>),
            /// A request for the agent, for a task or not: granted, or queued (and
            /// given a reservation by the next drain).
            Request(u64, &'static str, bool),
            Cancel(usize),
            Drain,
            /// Releases every allocation as idle.
            ReclaimIdle,
            /// Many tasks started and finished and allocations made and released,
            /// some left so: more changes than the logs keep.
            Churn(usize),
            /// Keeps a copy of the registry and ledger, which change apart from then.
            Fork,
            /// Trades the registry and ledger for the copy kept: the same layouts,
            /// other histories.
            SwapFork,
            /// The next refresh reads no ledger.
            WithoutLedger,
        }

        const CAPACITIES: [&str; 4] = ["cpu=4", "cpu=8,memory=4Gi", "gpu=2,cpu=2", "fpga=1"];
        const NEEDS: [&str; 4] = ["cpu=1", "cpu=2,memory=1Gi", "gpu=1", "llm_tokens=5"];
        const POOLS: [&str; 3] = ["cpu", "gpu", "llm_tokens"];
        const STATUSES: [AgentStatus; 4] = [
            AgentStatus::Available,
            AgentStatus::Busy,
            AgentStatus::Unhealthy,
            AgentStatus::Quarantined,
        ];

        /// Changes of usage (statuses, tasks, allocations, reservations) weigh three
        /// times as much as changes of layout: a fleet rereads only the rows these
        /// change while the layout holds, and a run of them tells whether it rereads
        /// all it must.
        fn op() -> impl Strategy<Value = Op> {
            let id = 1u64..6;
            prop_oneof![
                1 => (
                    id.clone(),
                    prop::option::of(prop::sample::select(&CAPACITIES[..])),
                    0..3usize
                )
                    .prop_map(|(a, c, r)| Op::Register(a, c, r)),
                1 => id.clone().prop_map(Op::Deregister),
                3 => (id.clone(), prop::sample::select(&STATUSES[..]))
                    .prop_map(|(a, s)| Op::SetStatus(a, s)),
                3 => id.clone().prop_map(Op::TaskStarted),
                3 => id.clone().prop_map(Op::TaskFinished),
                1 => (id.clone(), prop::sample::select(&CAPACITIES[..]))
                    .prop_map(|(a, c)| Op::LedgerAdd(a, c)),
                1 => id.clone().prop_map(Op::LedgerRemove),
                1 => (id.clone(), prop::sample::select(&CAPACITIES[..]))
                    .prop_map(|(a, c)| Op::SetCapacity(a, c)),
                1 => (
                    prop::sample::select(&POOLS[..]),
                    prop::option::weighted(0.3, 0u64..20_000)
                )
                    .prop_map(|(p, l)| Op::SetPool(p, l)),
                3 => (id.clone(), prop::sample::select(&NEEDS[..]))
                    .prop_map(|(a, n)| Op::Allocate(a, n)),
                3 => (0usize..8).prop_map(Op::Release),
                1 => (id.clone(), prop::option::of(0u32..3)).prop_map(|(a, k)| Op::SetTaskSlots(a, k)),
                2 => (
                    id.clone(),
                    prop::sample::select(&NEEDS[..]),
                    proptest::bool::ANY
                )
                    .prop_map(|(a, n, t)| Op::Request(a, n, t)),
                1 => (0usize..4).prop_map(Op::Cancel),
                1 => Just(Op::Drain),
                1 => Just(Op::ReclaimIdle),
                1 => (1usize..600).prop_map(Op::Churn),
                1 => Just(Op::Fork),
                1 => Just(Op::SwapFork),
                1 => Just(Op::WithoutLedger),
            ]
        }

        proptest! {
            #![proptest_config(crate::proptest_config(96, "tests/proptest-regressions/fleet_refresh.txt"))]

            /// However the registry and the ledger change between batches, a fleet
            /// refreshed batch after batch holds what a fleet built afresh holds.
            /// Some batches follow several changes (`refresh` false after a change:
            /// the next one waits).
            #[test]
            fn a_refreshed_fleet_is_a_fresh_one(
                ops in prop::collection::vec((op(), prop::bool::weighted(0.7)), 1..40),
            ) {
                let now = Timestamp::from_secs(0);
                let mut registry = AgentRegistry::new();
                // Requests that wait get a reservation at the next drain.
                let config = LedgerConfig::default().with_reserve_after(std::time::Duration::ZERO);
                let mut ledger = ResourceLedger::with_config(config);
                let (mut held, mut queued) = (Vec::new(), Vec::new());
                // Agents 1 to 5 in the registry and 1 to 4 in the ledger, to begin
                // with: most changes then change something.
                for id in 1..6 {
                    let p = AgentProfile::new(AgentId::new(id), "agent")
                        .with_max_tasks(2)
                        .with_role(Role::new("ops").unwrap());
                    registry.register(p, now).unwrap();
                    if id < 5 {
                        let capacity = "cpu=8,memory=4Gi,gpu=2".parse().unwrap();
                        ledger.add_agent(AgentId::new(id), &capacity).unwrap();
                    }
                }
                let mut fork = (registry.clone(), ledger.clone());
                let mut fleet = Fleet::new(&registry, Some(&ledger));
                let mut task = 0;
                for (op, refresh) in ops {
                    let mut with_ledger = true;
                    let a = |id: u64| AgentId::new(id);
                    let r = |s: &str| s.parse::<Resources>().unwrap();
                    match op {
                        Op::Register(id, capacity, role) => {
                            let mut p = AgentProfile::new(a(id), "agent")
                                .with_max_tasks(2)
                                .with_role(Role::new(["ops", "qa", "dev"][role]).unwrap())
                                .with_capability(Capability::new(&format!("c{id}")).unwrap());
                            if let Some(c) = capacity {
                                p = p.with_capacity(r(c));
                            }
                            let _ = registry.register(p, now);
                        }
                        Op::Deregister(id) => { let _ = registry.deregister(a(id)); }
                        Op::SetStatus(id, s) => { let _ = registry.set_status(a(id), s, now); }
                        Op::TaskStarted(id) => { let _ = registry.task_started(a(id), now); }
                        Op::TaskFinished(id) => { let _ = registry.task_finished(a(id), now); }
                        Op::LedgerAdd(id, c) => { let _ = ledger.add_agent(a(id), &r(c)); }
                        Op::LedgerRemove(id) => { let _ = ledger.remove_agent(a(id)); }
                        Op::SetCapacity(id, c) => { let _ = ledger.set_capacity(a(id), &r(c)); }
                        Op::SetPool(name, limit) => {
                            let _ = ledger.set_pool_limit(&name.parse().unwrap(), limit);
                        }
                        Op::Allocate(id, n) => {
                            if let Ok(h) = ledger.allocate(a(id), &r(n), now) {
                                held.push(h);
                            }
                        }
                        Op::Release(k) => {
                            if !held.is_empty() {
                                let h = held.remove(k % held.len());
                                if let Ok(grants) = ledger.release(h, now) {
                                    held.extend(grants.iter().map(|g| g.allocation));
                                }
                            }
                        }
                        Op::SetTaskSlots(id, k) => { let _ = ledger.set_task_slots(a(id), k); }
                        Op::Request(id, n, for_task) => {
                            let mut request = AllocationRequest::new(a(id), r(n));
                            if for_task {
                                task += 1;
                                request = request.with_task(crate::id::TaskId::new(task));
                            }
                            match ledger.request(request, now) {
                                Ok(RequestOutcome::Granted(g)) => held.push(g.allocation),
                                Ok(RequestOutcome::Queued(q)) => queued.push(q),
                                _ => {}
                            }
                        }
                        Op::Cancel(k) => {
                            if !queued.is_empty() {
                                let _ = ledger.cancel(queued.remove(k % queued.len()));
                            }
                        }
                        Op::Drain => held.extend(ledger.drain(now).iter().map(|g| g.allocation)),
                        Op::ReclaimIdle => {
                            let later = now + std::time::Duration::from_secs(86_400);
                            held.extend(ledger.reclaim_idle(later).grants.iter().map(|g| g.allocation));
                        }
                        Op::Churn(count) => {
                            for k in 0..count {
                                let agent = a(1 + (k % 5) as u64);
                                match k % 4 {
                                    0 => { let _ = registry.task_started(agent, now); }
                                    1 => { let _ = registry.task_finished(agent, now); }
                                    2 => {
                                        if let Ok(h) = ledger.allocate(agent, &r("cpu=1"), now) {
                                            held.push(h);
                                        }
                                    }
                                    _ => {
                                        if k % 8 == 3 && !held.is_empty() {
                                            let h = held.remove(0);
                                            if let Ok(grants) = ledger.release(h, now) {
                                                held.extend(grants.iter().map(|g| g.allocation));
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        Op::Fork => fork = (registry.clone(), ledger.clone()),
                        Op::SwapFork => {
                            std::mem::swap(&mut registry, &mut fork.0);
                            std::mem::swap(&mut ledger, &mut fork.1);
                            // The handles and requests are the other ledger's now: any
                            // it does not know are refused, which is harmless.
                        }
                        Op::WithoutLedger => with_ledger = false,
                    }
                    if !refresh {
                        continue;
                    }
                    let ledger = with_ledger.then_some(&ledger);
                    fleet.refresh(&registry, ledger);
                    prop_assert_eq!(columns(&fleet), columns(&Fleet::new(&registry, ledger)));
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/affinity.txt"))]

        /// Recording with a shared name learns exactly what recording with a borrowed
        /// one does.
        #[test]
        fn shared_and_borrowed_records_agree(
            outcomes in proptest::collection::vec((0usize..4, 1u64..4, proptest::bool::ANY), 0..40),
        ) {
            let kinds: Vec<Arc<str>> = ["a", "b", "c", "d"].into_iter().map(Arc::from).collect();
            let (mut borrowed, mut shared) = (AffinityTable::default(), AffinityTable::default());
            for (k, agent, success) in outcomes {
                borrowed.record(&kinds[k], AgentId::new(agent), success);
                shared.record_shared(&kinds[k], AgentId::new(agent), success);
            }
            proptest::prop_assert_eq!(borrowed, shared);
        }

        /// Looking kinds up between records (which keeps the last kind's place, for
        /// the next look or record to use) changes nothing a table learns or reads:
        /// against a table that is only recorded into, read through its rows, across
        /// generations turning and clones.
        #[test]
        fn the_kept_place_changes_nothing(
            limit in 2usize..7,
            ops in proptest::collection::vec((0u8..3, 0usize..6, 1u64..4, proptest::bool::ANY), 0..120),
        ) {
            let kinds: Vec<Arc<str>> = (0..6).map(|k| Arc::from(format!("kind-{k}"))).collect();
            // The same names in other allocations, as a host's tasks carry them.
            let copies: Vec<String> = (0..6).map(|k| format!("kind-{k}")).collect();
            let mut table = AffinityTable::default().with_limit(limit);
            let mut plain = AffinityTable::default().with_limit(limit);
            let rows_of = |t: &AffinityTable| -> BTreeMap<String, Vec<(AgentId, f64)>> {
                t.rows().map(|(k, r)| (k.to_string(), r.iter().map(|(a, x)| (a, *x)).collect())).collect()
            };
            for (op, k, agent, success) in ops {
                match op {
                    0 => {
                        table.record_shared(&kinds[k], AgentId::new(agent), success);
                        plain.record_shared(&kinds[k], AgentId::new(agent), success);
                    }
                    1 => {
                        let got: Option<Vec<(AgentId, f64)>> =
                            table.row(&copies[k]).map(|r| r.iter().map(|(a, x)| (a, *x)).collect());
                        proptest::prop_assert_eq!(got, rows_of(&plain).remove(&copies[k]));
                    }
                    _ => table = table.clone(),
                }
                proptest::prop_assert_eq!(rows_of(&table), rows_of(&plain));
            }
        }

        /// A bounded table never holds more than its limit; a kind is remembered
        /// while fewer than half the limit other kinds were recorded since its last
        /// record; a kind never at risk of that since its first record has the
        /// affinity an unbounded table learns; a forgotten kind has none; and the
        /// table survives serde.
        #[test]
        fn a_bounded_table_forgets_only_what_it_may(
            limit in 2usize..9,
            outcomes in proptest::collection::vec((0usize..12, 1u64..4, proptest::bool::ANY), 0..120),
        ) {
            let kinds: Vec<Arc<str>> = (0..12).map(|k| Arc::from(format!("k{k}"))).collect();
            let mut bounded = AffinityTable::default().with_limit(limit);
            let mut unbounded = AffinityTable::default().with_limit(usize::MAX);
            // Per kind: the distinct kinds recorded since its last record, and
            // whether that set ever reached half the limit (it may have been
            // forgotten then).
            let mut since: Vec<Option<std::collections::BTreeSet<usize>>> = vec![None; kinds.len()];
            let mut at_risk = vec![false; kinds.len()];
            for (k, agent, success) in outcomes {
                let (agent, half) = (AgentId::new(agent), limit / 2);
                if since[k].as_ref().is_some_and(|s| s.len() >= half) {
                    at_risk[k] = true;
                }
                for (other, seen) in since.iter_mut().enumerate() {
                    if let Some(seen) = seen.as_mut().filter(|_| other != k) {
                        seen.insert(k);
                    }
                }
                since[k] = Some(std::collections::BTreeSet::new());
                bounded.record_shared(&kinds[k], agent, success);
                unbounded.record_shared(&kinds[k], agent, success);
                proptest::prop_assert!(bounded.kinds() <= limit);
                for (j, kind) in kinds.iter().enumerate() {
                    let remembered = bounded.row(kind).is_some();
                    let recent = since[j].as_ref().is_some_and(|s| s.len() < half);
                    proptest::prop_assert!(remembered || !recent, "{} forgotten too soon", kind);
                    for a in 1..4 {
                        let (b, u) = (bounded.affinity(kind, AgentId::new(a)), unbounded.affinity(kind, AgentId::new(a)));
                        if remembered && !at_risk[j] {
                            proptest::prop_assert_eq!(b, u);
                        }
                        if !remembered {
                            proptest::prop_assert_eq!(b, 0.0);
                        }
                    }
                }
            }
            let json = serde_json::to_string(&bounded).unwrap();
            let back: AffinityTable = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(back, bounded);
        }
    }
}
