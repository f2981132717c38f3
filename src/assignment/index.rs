//! The bitmap index a batch filters agents with: one bit per agent for eligibility
//! and for each role and capability the batch's tasks ask for.
//!
//! A database answers `WHERE role = 'qa' AND 'sql' IN capabilities` over many rows
//! with bitmap indexes: one bitmap per value, ANDed a machine word (64 rows) at a
//! time, counted with popcounts. The greedy assigner's built-in filters are such a
//! query, asked once per task, and an explanation needs more than the rows that pass:
//! every rejected agent counted under the first filter it fails. Asked in the order
//! the reasons are told apart (status, roles by bit, capabilities by bit), the maps
//! give exactly that: the agents lacking the `k`-th requirement among those that have
//! every earlier one are `m & !map_k`, counted 64 at a time.
//!
//! The first requirement's map also says where to look: a summary bit per map word
//! marks the words with any agent, so a task asking for a rare role visits only the
//! words where its players are, and the eligible agents that lack the role are
//! counted by subtraction from the eligible total.
//!
//! # Complexity
//! A task asking for `r` roles and capabilities costs O(w · r) word operations over
//! the `w` non-zero words of its first requirement's map (`w <= agents / 64`, fewer
//! for a rare first requirement), plus O(c) for the `c` agents that pass them all.
//! A map is built the first time a task of the batch asks for its bit, in O(agents);
//! the maps of a batch take at most [`MAX_WORDS`] words, or one task's worth when a
//! task asks for more (then the maps are dropped and rebuilt for the tasks that
//! follow, as they ask).

use crate::agent::{CapabilityBit, CapabilitySet};
use crate::layout::Layout;

/// How many words the maps of a batch may take (8 MiB), unless one task needs more:
/// over this, the maps are dropped and rebuilt as tasks ask for them. A batch asks for
/// the few roles and capabilities its tasks name, and 8 MiB holds 64 maps of a
/// million agents, or thousands of a fleet of ten thousand.
pub(crate) const MAX_WORDS: usize = 1 << 20;

/// Eligibility and role and capability maps over the agents of a fleet, as a batch
/// charges them. Kept between batches so that a batch of the usual size allocates
/// nothing; [`reset`](Self::reset) starts each batch.
#[derive(Debug, Default)]
pub(crate) struct AgentIndex {
    /// Words per map: one bit per agent, 64 agents a word.
    words: usize,
    /// Available with a free slot; bits past the last agent are zero.
    eligible: Vec<u64>,
    /// How many bits of `eligible` are set.
    eligible_total: u32,
    /// Per key (a role bit, or the role catalog's length plus a capability bit), its
    /// map's slot plus one, or zero while it has none.
    slot_of: Vec<u32>,
    /// The keys with a map, in the order built: what [`reset`](Self::reset) clears.
    keys: Vec<usize>,
    /// The maps, `words` words a slot.
    maps: Vec<u64>,
    /// Per slot, one bit per word of its map, set where the word is not zero.
    summary: Vec<u64>,
    /// The word budget of the maps ([`MAX_WORDS`]; smaller in tests).
    budget: usize,
    /// The eligibility before the last reset, kept for its storage.
    scratch: Vec<u64>,
    /// The layout of the roles and capabilities the maps were built from, when it has
    /// one: while a reset names the same, the maps still hold and are kept.
    stamp: Option<Layout>,
    /// The last answers of [`filter`](Self::filter), for the eligibility they were
    /// worked out under (see [`Answer`]), up to [`ANSWERS`].
    answers: Vec<Answer>,
    /// The answer to write over next, once there are [`ANSWERS`].
    next_answer: usize,
    /// Changes whenever `eligible` or the maps do: an answer of another generation
    /// is stale.
    generation: u64,
}

/// One answer of [`AgentIndex::filter`]: the requirements asked, what it added to
/// each count, and the candidates.
///
/// A host that assigns one task at a time asks the filter again for each task, and
/// the tasks of a fleet ask for few sets of roles and capabilities, while between
/// two calls the eligible agents mostly stay the same (a task that starts and
/// completes leaves its agent eligible). The answer is a function of the eligible
/// agents, the maps and the requirements alone, so it is kept and given again while
/// the three are the same: ANDing and counting every word of the fleet becomes one
/// comparison and a copy of the candidates.
#[derive(Debug, Default)]
struct Answer {
    generation: u64,
    reqs: Vec<(u32, usize)>,
    /// Per code, what the filter added to its count.
    added: Vec<(usize, u32)>,
    candidates: Vec<Candidates>,
    /// How many agents `candidates` holds.
    count: u32,
}

/// How many answers are kept: more than the sets of roles and capabilities most
/// fleets' tasks ask for (the operations tasks of the coordinator's bench ask for
/// twelve), few enough to look through at every call.
const ANSWERS: usize = 16;

/// A word of agents that passed the role and capability filters: the word's index and
/// one bit per agent.
pub(crate) type Candidates = (u32, u64);

impl AgentIndex {
    /// Starts a batch over `agents` agents, of which those `eligible` marks are
    /// available with a free slot (it pushes one word per 64 agents, bit `j` of word
    /// `k` for agent `64k + j`, zero past the last agent), for keys below `keys`, with
    /// roles and capabilities of layout `stamp`. The maps are kept when `stamp` is
    /// the layout they were built from (roles and capabilities change only with the
    /// layout), and dropped otherwise or without a stamp: a host that assigns one
    /// task at a time builds each map once, not once per call.
    pub(crate) fn reset(
        &mut self,
        agents: usize,
        keys: usize,
        stamp: Option<Layout>,
        eligible: impl FnOnce(&mut Vec<u64>),
    ) {
        let words = agents.div_ceil(64);
        let keep = stamp.is_some() && stamp == self.stamp && words == self.words;
        self.words = words;
        // The last eligibility is set aside, not cleared, to tell whether the
        // answers kept still hold (a new layout drops the maps, which stales them
        // too).
        let before = std::mem::replace(&mut self.eligible, std::mem::take(&mut self.scratch));
        self.eligible.clear();
        eligible(&mut self.eligible);
        debug_assert_eq!(self.eligible.len(), words);
        // The same eligibility has the same count: a host that assigns one task at a
        // time mostly asks again over the same agents, and counting a word is a dozen
        // instructions on baseline x86-64 (no POPCNT).
        if !crate::assignment::fleet::same_row(&before, &self.eligible) {
            self.generation += 1;
            self.eligible_total = self.eligible.iter().map(|w| w.count_ones()).sum();
        }
        self.scratch = before;
        if !keep || self.slot_of.len() != keys {
            self.drop_maps();
            self.slot_of.resize(keys, 0);
        }
        self.stamp = stamp;
        if self.budget == 0 {
            self.budget = MAX_WORDS;
        }
    }

    /// How many agents are eligible.
    pub(crate) fn eligible_count(&self) -> usize {
        self.eligible_total as usize
    }

    /// The agents that are not eligible, ascending.
    pub(crate) fn ineligible(&self, agents: usize) -> impl Iterator<Item = usize> + '_ {
        (self.eligible.iter().enumerate()).flat_map(move |(k, &m)| {
            // Bits past the last agent are not agents.
            let valid = match agents - k * 64 {
                n if n >= 64 => u64::MAX,
                n => (1u64 << n) - 1,
            };
            Bits(!m & valid).map(move |j| k * 64 + j)
        })
    }

    /// Forgets every map, keeping their storage.
    fn drop_maps(&mut self) {
        for &key in &self.keys {
            if let Some(s) = self.slot_of.get_mut(key) {
                *s = 0;
            }
        }
        self.keys.clear();
        self.maps.clear();
        self.summary.clear();
        // Slots are given again to other keys: no answer holds.
        self.generation += 1;
    }

    /// Whether agent `i` is available with a free slot.
    #[inline]
    pub(crate) fn is_eligible(&self, i: usize) -> bool {
        self.eligible[i / 64] >> (i % 64) & 1 != 0
    }

    /// Marks agent `i` (eligible until now) as no longer eligible: its last slot went.
    pub(crate) fn retire(&mut self, i: usize) {
        debug_assert!(self.is_eligible(i));
        self.eligible[i / 64] &= !(1u64 << (i % 64));
        self.eligible_total -= 1;
        self.generation += 1;
    }

    /// Makes sure `needed` more maps fit the budget, dropping every map when they do
    /// not: called before a task's maps are looked up, so that none of its own maps is
    /// dropped while it is being filtered.
    pub(crate) fn make_room(&mut self, needed: usize) {
        let wanted = self.maps.len() + needed * self.words;
        if wanted > self.budget && !self.keys.is_empty() {
            self.drop_maps();
        }
    }

    /// The slot of the map of `key`, whose bit `bit` the agents' `sets` hold (roles or
    /// capabilities, one set per agent), built now if the batch has none yet.
    #[inline]
    pub(crate) fn map_of(&mut self, key: usize, sets: &[CapabilitySet], bit: CapabilityBit) -> u32 {
        match self.slot_of[key] {
            0 => self.build_map(key, sets, bit),
            slot => slot - 1,
        }
    }

    /// [`map_of`](Self::map_of) for a key without a map: kept out of line, as a
    /// fleet's maps outlive the calls that look them up (its saved and restored
    /// registers cost the look-up more than the look-up itself).
    #[inline(never)]
    fn build_map(&mut self, key: usize, sets: &[CapabilitySet], bit: CapabilityBit) -> u32 {
        let slot = self.keys.len();
        self.keys.push(key);
        self.slot_of[key] = slot as u32 + 1;
        let start = self.maps.len();
        self.maps.resize(start + self.words, 0);
        let (w, b) = (bit.index() / 64, bit.index() % 64);
        for (word, sets) in self.maps[start..].iter_mut().zip(sets.chunks(64)) {
            let mut m = 0u64;
            for (j, set) in sets.iter().enumerate() {
                // The first 128 bits (nearly every catalog's) without a branch.
                let has = match set.inline_words().get(w) {
                    Some(word) => word >> b & 1,
                    None => u64::from(set.contains(bit)),
                };
                m |= has << j;
            }
            *word = m;
        }
        let summary_words = self.words.div_ceil(64);
        let at = self.summary.len();
        self.summary.resize(at + summary_words, 0);
        for (k, &word) in self.maps[start..].iter().enumerate() {
            self.summary[at + k / 64] |= u64::from(word != 0) << (k % 64);
        }
        slot as u32
    }

    /// The built-in role and capability filters over the eligible agents, for a task
    /// asking for the maps `reqs` (slots, each with the reason code of lacking it, in
    /// the order reasons are told apart): adds to `counts` one per eligible agent under
    /// the first requirement it lacks, fills `out` with the words of agents that have
    /// them all, ascending, and returns how many agents those words hold. Gives a
    /// kept [`Answer`] again when it still holds, else works one out over the oldest.
    pub(crate) fn filter(
        &mut self,
        reqs: &[(u32, usize)],
        counts: &mut [u32],
        out: &mut Vec<Candidates>,
    ) -> u32 {
        let generation = self.generation;
        let found =
            (self.answers.iter()).position(|a| a.generation == generation && a.reqs == reqs);
        let place = match found {
            Some(k) => {
                let a = &self.answers[k];
                for &(code, n) in &a.added {
                    counts[code] += n;
                }
                k
            }
            None => self.work_out(reqs, counts),
        };
        let a = &self.answers[place];
        out.clear();
        out.extend_from_slice(&a.candidates);
        a.count
    }

    /// [`filter`](Self::filter)'s answer when none kept holds, kept over the oldest:
    /// its place among the answers.
    fn work_out(&mut self, reqs: &[(u32, usize)], counts: &mut [u32]) -> usize {
        let generation = self.generation;
        let place = if self.answers.len() < ANSWERS {
            self.answers.push(Answer::default());
            self.answers.len() - 1
        } else {
            let k = self.next_answer;
            self.next_answer = (k + 1) % ANSWERS;
            k
        };
        let mut a = std::mem::take(&mut self.answers[place]);
        // What the filter adds to a code is its count after less its count before
        // (kept once for a code that two requirements share).
        a.added.clear();
        for &(_, code) in reqs {
            if !a.added.iter().any(|&(c, _)| c == code) {
                a.added.push((code, counts[code]));
            }
        }
        self.filter_words(reqs, counts, &mut a.candidates);
        for (code, n) in &mut a.added {
            *n = counts[*code] - *n;
        }
        a.generation = generation;
        a.reqs.clear();
        a.reqs.extend_from_slice(reqs);
        a.count = (a.candidates.iter()).map(|(_, m)| m.count_ones()).sum();
        self.answers[place] = a;
        place
    }

    /// [`filter`](Self::filter), worked out from the maps, keeping no answer.
    pub(crate) fn filter_words(
        &self,
        reqs: &[(u32, usize)],
        counts: &mut [u32],
        out: &mut Vec<Candidates>,
    ) {
        out.clear();
        let words = self.words;
        let Some((&(first, code), rest)) = reqs.split_first() else {
            out.extend(
                (self.eligible.iter().enumerate())
                    .filter(|(_, m)| **m != 0)
                    .map(|(k, &m)| (k as u32, m)),
            );
            return;
        };
        let map = &self.maps[first as usize * words..][..words];
        let summary_words = words.div_ceil(64);
        let summary = &self.summary[first as usize * summary_words..][..summary_words];
        // The eligible agents that have the first requirement; the others lack it.
        let mut with = 0;
        for (s, &bits) in summary.iter().enumerate() {
            for b in Bits(bits) {
                let k = s * 64 + b;
                let mut m = self.eligible[k] & map[k];
                with += m.count_ones();
                // Branch-free: each requirement takes its rejections out of the word.
                for &(slot, code) in rest {
                    let x = self.maps[slot as usize * words + k];
                    counts[code] += (m & !x).count_ones();
                    m &= x;
                }
                if m != 0 {
                    out.push((k as u32, m));
                }
            }
        }
        counts[code] += self.eligible_total - with;
    }
}

/// The set bits of a word, lowest first.
pub(crate) struct Bits(pub(crate) u64);

impl Iterator for Bits {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let j = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::CapabilityCatalog;
    use proptest::prelude::*;

    /// Sets of bits `0..bits`, agent `i` holding bit `b` when `(i * 7 + b * 3) % 5 < 2`.
    fn sets(agents: usize, bits: usize) -> (Vec<CapabilitySet>, Vec<CapabilityBit>) {
        let mut catalog = CapabilityCatalog::new();
        let bits: Vec<_> = (0..bits)
            .map(|b| catalog.intern(&format!("c{b}")))
            .collect();
        let sets = (0..agents)
            .map(|i| {
                bits.iter()
                    .copied()
                    .filter(|b| (i * 7 + b.index() * 3) % 5 < 2)
                    .collect()
            })
            .collect();
        (sets, bits)
    }

    /// The words of `flags`, one bit per agent.
    fn words_of(flags: &[bool], out: &mut Vec<u64>) {
        out.extend(
            flags
                .chunks(64)
                .map(|c| (c.iter().enumerate()).fold(0, |m, (j, &e)| m | u64::from(e) << j)),
        );
    }

    /// Per agent, the first requirement it lacks (by position), or `None`.
    fn naive(
        sets: &[CapabilitySet],
        eligible: &[bool],
        need: &[CapabilityBit],
    ) -> Vec<Option<Option<usize>>> {
        sets.iter()
            .zip(eligible)
            .map(|(s, &e)| e.then(|| need.iter().position(|b| !s.contains(*b))))
            .collect()
    }

    /// Filters for `need` through `index`, and says what a plain scan expects: per
    /// requirement the agents counted under it, and the agents that passed, as
    /// `(got, want)`.
    #[allow(clippy::type_complexity)]
    fn filtered(
        index: &mut AgentIndex,
        sets: &[CapabilitySet],
        eligible: &[bool],
        need: &[CapabilityBit],
    ) -> ((Vec<u32>, Vec<usize>), (Vec<u32>, Vec<usize>)) {
        let reqs: Vec<(u32, usize)> = (need.iter().enumerate())
            .map(|(pos, b)| (index.map_of(b.index(), sets, *b), pos))
            .collect();
        let mut counts = vec![0; need.len()];
        let mut out = Vec::new();
        let count = index.filter(&reqs, &mut counts, &mut out);
        let passed: Vec<usize> = (out.iter())
            .flat_map(|&(k, m)| Bits(m).map(move |j| k as usize * 64 + j))
            .collect();
        assert_eq!(count as usize, passed.len(), "the count of {need:?}");
        let total = (0..sets.len()).filter(|&i| index.is_eligible(i)).count();
        assert_eq!(index.eligible_count(), total, "eligible agents");
        let expected = naive(sets, eligible, need);
        let mut want = vec![0; need.len()];
        for pos in expected.iter().flatten().flatten() {
            want[*pos] += 1;
        }
        let pass: Vec<usize> = (0..sets.len())
            .filter(|&i| expected[i] == Some(None))
            .collect();
        ((counts, passed), (want, pass))
    }

    #[test]
    fn filtering_counts_each_agent_under_its_first_missing_requirement() {
        let agents = 300;
        let (sets, bits) = sets(agents, 6);
        let eligible: Vec<bool> = (0..agents).map(|i| i % 11 != 3).collect();
        let mut index = AgentIndex::default();
        index.reset(agents, bits.len(), None, |w| words_of(&eligible, w));
        for need in [vec![], vec![0], vec![1, 4], vec![0, 2, 5], vec![5, 3, 1]] {
            let need: Vec<CapabilityBit> = need.into_iter().map(|k| bits[k]).collect();
            let (got, want) = filtered(&mut index, &sets, &eligible, &need);
            assert_eq!(got.0, want.0, "{need:?}");
            assert_eq!(got.1, want.1, "{need:?}");
        }
    }

    proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/index.txt"))]

        /// Task after task, the filter counts each eligible agent under the first
        /// requirement it lacks and passes exactly those lacking none, as a plain scan
        /// of the agents says: over full and partial words, bits inline and spilled
        /// past the first 128, with agents retiring between tasks and maps dropped
        /// and rebuilt under a small budget.
        #[test]
        fn filtering_is_a_plain_scan(
            held in prop::collection::vec(prop::collection::vec(bit(), 0..8), 1..200),
            ineligible in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
            tasks in prop::collection::vec(
                (prop::collection::vec(bit(), 0..4), prop::collection::vec(any::<prop::sample::Index>(), 0..6)),
                1..12,
            ),
            budget_maps in prop::option::of(1usize..6),
        ) {
            let agents = held.len();
            let (bits, sets) = catalog_and_sets(&held);
            let mut eligible = vec![true; agents];
            for k in &ineligible {
                eligible[k.index(agents)] = false;
            }
            let mut index = AgentIndex {
                budget: budget_maps.map_or(0, |m| m * agents.div_ceil(64)),
                ..AgentIndex::default()
            };
            index.reset(agents, KEYS, None, |w| words_of(&eligible, w));
            for (need, retire) in &tasks {
                let need = each_once(&bits, need);
                index.make_room(need.len());
                let (got, want) = filtered(&mut index, &sets, &eligible, &need);
                prop_assert_eq!(got.0, want.0);
                prop_assert_eq!(got.1, want.1);
                for k in retire {
                    let i = k.index(agents);
                    if eligible[i] {
                        index.retire(i);
                        eligible[i] = false;
                    }
                }
            }
        }
    }

    /// What the index is asked to do between two tasks in the kept-answers property.
    #[derive(Debug, Clone)]
    enum Step {
        /// A task of the pool, by index.
        Ask(prop::sample::Index),
        /// The agent at this index, if eligible, takes its last slot.
        Retire(prop::sample::Index),
        /// A new batch over the same eligibility and layout: answers still hold.
        ResetSame,
        /// A new batch with the agent at this index's eligibility flipped.
        ResetFlip(prop::sample::Index),
        /// A new batch under another layout: the maps are dropped.
        ResetLayout,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => any::<prop::sample::Index>().prop_map(Step::Ask),
            1 => any::<prop::sample::Index>().prop_map(Step::Retire),
            2 => Just(Step::ResetSame),
            1 => any::<prop::sample::Index>().prop_map(Step::ResetFlip),
            1 => Just(Step::ResetLayout),
        ]
    }

    proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/index.txt"))]

        /// The answers the filter keeps are given again only while they hold: tasks
        /// drawn from a pool of more sets of requirements than it keeps answers,
        /// asked again and again, between agents retiring and batches that start
        /// over the same eligible agents, other ones, or another layout, under a
        /// budget that drops maps; each answer is a plain scan's.
        #[test]
        fn kept_answers_are_a_plain_scan(
            held in prop::collection::vec(prop::collection::vec(bit(), 0..8), 1..150),
            pool in prop::collection::vec(prop::collection::vec(bit(), 0..4), 1..12),
            steps in prop::collection::vec(step(), 1..40),
            budget_maps in prop::option::of(1usize..6),
        ) {
            let agents = held.len();
            let (bits, sets) = catalog_and_sets(&held);
            let mut eligible = vec![true; agents];
            let mut index = AgentIndex {
                budget: budget_maps.map_or(0, |m| m * agents.div_ceil(64)),
                ..AgentIndex::default()
            };
            let mut layout = Layout::fresh();
            index.reset(agents, KEYS, Some(layout), |w| words_of(&eligible, w));
            for step in &steps {
                match step {
                    Step::Ask(k) => {
                        let need = each_once(&bits, &pool[k.index(pool.len())]);
                        index.make_room(need.len());
                        let (got, want) = filtered(&mut index, &sets, &eligible, &need);
                        prop_assert_eq!(got.0, want.0);
                        prop_assert_eq!(got.1, want.1);
                    }
                    Step::Retire(k) => {
                        let i = k.index(agents);
                        if eligible[i] {
                            index.retire(i);
                            eligible[i] = false;
                        }
                    }
                    Step::ResetSame => {
                        index.reset(agents, KEYS, Some(layout), |w| words_of(&eligible, w));
                    }
                    Step::ResetFlip(k) => {
                        let i = k.index(agents);
                        eligible[i] = !eligible[i];
                        index.reset(agents, KEYS, Some(layout), |w| words_of(&eligible, w));
                    }
                    Step::ResetLayout => {
                        layout = Layout::fresh();
                        index.reset(agents, KEYS, Some(layout), |w| words_of(&eligible, w));
                    }
                }
            }
        }
    }

    /// How many bits the property's catalog has: past the 128 a set keeps inline.
    const KEYS: usize = 132;

    /// The properties' catalog of [`KEYS`] bits, and the agents' sets: agent `i`
    /// holds the bits `held[i]` names.
    fn catalog_and_sets(held: &[Vec<usize>]) -> (Vec<CapabilityBit>, Vec<CapabilitySet>) {
        let mut catalog = CapabilityCatalog::new();
        let bits: Vec<CapabilityBit> = (0..KEYS)
            .map(|b| catalog.intern(&format!("c{b}")))
            .collect();
        let sets = (held.iter())
            .map(|h| h.iter().map(|&b| bits[b]).collect())
            .collect();
        (bits, sets)
    }

    /// The bits `drawn` names, each once, in the order drawn: a task's requirements.
    fn each_once(bits: &[CapabilityBit], drawn: &[usize]) -> Vec<CapabilityBit> {
        let mut need: Vec<CapabilityBit> = Vec::new();
        for &b in drawn {
            if !need.contains(&bits[b]) {
                need.push(bits[b]);
            }
        }
        need
    }

    /// A bit the property's agents hold or tasks need: one of a few inline ones, or
    /// one of a few spilled, so that sets overlap and most tasks pass some agents.
    fn bit() -> impl Strategy<Value = usize> {
        prop_oneof![3 => 0usize..4, 1 => 126usize..KEYS]
    }

    #[test]
    fn a_full_budget_drops_the_maps_and_builds_them_again() {
        let agents = 130; // three words a map
        let (sets, bits) = sets(agents, 4);
        let mut index = AgentIndex {
            budget: 6,
            ..AgentIndex::default()
        };
        index.reset(agents, bits.len(), None, |w| words_of(&[true; 130], w));
        index.make_room(2);
        let a = index.map_of(0, &sets, bits[0]);
        let b = index.map_of(1, &sets, bits[1]);
        assert_eq!((a, b), (0, 1));
        // A third map does not fit: the first two go, and the next task's are built
        // from the first slot on, exactly as before.
        index.make_room(2);
        assert_eq!(index.map_of(2, &sets, bits[2]), 0);
        assert_eq!(index.map_of(0, &sets, bits[0]), 1);
        let mut counts = vec![0; 2];
        let mut out = Vec::new();
        index.filter(&[(1, 0), (0, 1)], &mut counts, &mut out);
        let expected = naive(&sets, &[true; 130], &[bits[0], bits[2]]);
        let lack = |pos| expected.iter().filter(|e| **e == Some(Some(pos))).count() as u32;
        assert_eq!(counts, [lack(0), lack(1)]);
        // A task needing more than the budget still gets its maps.
        index.make_room(3);
        for (k, bit) in bits.iter().take(3).enumerate() {
            assert_eq!(index.map_of(k, &sets, *bit), k as u32);
        }
    }
}
