//! The one-call path of [`GreedyAssigner`](super::GreedyAssigner): a batch of one
//! task, as the workflow executor sends for each step, placed on the fleet's own
//! columns instead of copies of them; its filter pass, which keeps one verdict per
//! capacity class of idle agents for the whole scan; and the [`Podium`] on which both
//! this scan and the batch's rank the agents that fit.
//!
//! Kept apart from the batch engine because it is a concern of its own, measured and
//! tuned on its own (benches/NOTES.md, "The one-call path"): the batch path copies the
//! fleet's columns and charges them as it places tasks; this one reads them where
//! they are and charges nothing, as nothing is read after its one placement.

use super::{
    Buffers, Engine, GreedyAssigner, NO_SLOT, Scored, Scratch, affinity_at, builtin_scores,
    fleet_column, short_dim, status_code,
};
use crate::assignment::fleet::{CompiledTask, Fleet};
use crate::assignment::index::Bits;
use crate::assignment::{
    Admission, AssignmentError, Explanation, Placement, Plan, Unplaced, check_batch,
};
use crate::id::AgentId;
use crate::task::Task;

impl GreedyAssigner {
    /// [`assign_with`](Self::assign_with) for a one-task batch, as the workflow
    /// executor makes: the task is the whole placement order and its placement (or
    /// why not) the whole plan, so there is no order to sort and no plan to collect.
    pub(super) fn assign_one(
        &self,
        task: &Task,
        fleet: &Fleet,
        admission: &mut dyn Admission,
        scratch: &mut Scratch,
        plan: &mut Plan,
    ) -> Result<(), AssignmentError> {
        check_batch(std::slice::from_ref(task), fleet, &mut scratch.ids)?;
        let mut engine = Engine::one_task(self, fleet, task, &mut scratch.engine)?;
        // The placement is written where it stays, over one left in the plan (the
        // coordinator leaves there a finished assignment's explanation): `place`
        // resets the explanation and reuses its lists' capacity, and no placement
        // (a few hundred bytes) is moved whole.
        plan.unplaced.clear();
        plan.refusals.clear();
        plan.placements.truncate(1);
        if plan.placements.is_empty() {
            let nobody = AgentId::new(0);
            (plan.placements).push(Placement::new(
                task.id(),
                nobody,
                0.0,
                Explanation::default(),
            ));
        }
        let placed = engine.place(
            task,
            &mut scratch.task,
            admission,
            &[],
            &mut plan.refusals,
            &mut plan.placements[0].explanation,
        )?;
        match placed {
            Some((agent, score)) => {
                tracing::trace!(task.id = %task.id(), agent.id = %agent, score, "task placed");
                let p = &mut plan.placements[0];
                (p.task, p.agent, p.score) = (task.id(), agent, score);
            }
            None => {
                let explanation = std::mem::take(&mut plan.placements[0].explanation);
                plan.placements.clear();
                tracing::debug!(task.id = %task.id(), why = %explanation, "task not placed");
                plan.unplaced.push(Unplaced {
                    task: task.id(),
                    explanation,
                });
            }
        }
        Ok(())
    }
}

impl<'a> Engine<'a> {
    /// An engine for the one-task batch `task` on `fleet`, working in `buf` (whatever
    /// it held). It reads the fleet's columns where they are instead of copying them:
    /// nothing is charged before the batch's one placement and nothing is read after
    /// it, so they hold exactly what the copies would. The index is kept: its
    /// eligibility is read again per call, and its role and capability maps last as
    /// long as the fleet's layout (see
    /// [`AgentIndex::reset`](crate::assignment::index::AgentIndex::reset)).
    fn one_task(
        cfg: &'a GreedyAssigner,
        fleet: &'a Fleet,
        task: &Task,
        buf: &'a mut Buffers,
    ) -> Result<Self, AssignmentError> {
        Self::bare(cfg, fleet, std::slice::from_ref(task), buf, true)
    }
}

impl Engine<'_> {
    /// The filter pass of a one-task batch, on the fleet's own columns: eligibility,
    /// roles and capabilities through the index (whose maps outlive the call while
    /// the fleet's layout holds), then what [`short_dim`](Self::short_dim) and
    /// [`builtin_scores`](Self::builtin_scores) decide for the agents left, with what
    /// the task asks read once instead of per agent. Visiting every agent for its
    /// roles and capabilities was most of a one-call assign on a hundred agents.
    pub(super) fn scan_direct(&mut self, t: &CompiledTask, collect: bool) -> Podium {
        let f = self.fleet;
        let n = f.len();
        let keys = self.n_roles + self.n_caps;
        let index = &mut self.buf.index;
        index.reset(n, keys, f.roles_stamp(), |w| {
            w.extend_from_slice(&f.eligible)
        });
        if index.eligible_count() < n {
            for i in index.ineligible(n) {
                self.buf.counts[status_code(f, i)] += 1;
            }
        }
        let (candidates, count) = self.filter_kept(t);
        let (weights, buf) = (&self.weights, &mut *self.buf);
        let dim_base = NO_SLOT + 1 + self.n_roles + self.n_caps;
        let known = f.dims.len();
        let pool = |d: usize| f.pool_free.get(d).copied().unwrap_or(u64::MAX);
        // The verdict of an agent from its columns: the first dimension it is short
        // of, or `FITS` and its built-in scores weighed but for affinity (added per
        // agent, last, so that the sum is the one the weights' order gives). A pair
        // of plain words, where a `Result` went through memory at each agent.
        const FITS: usize = usize::MAX;
        let verdict_of = |i: usize| -> (usize, f64) {
            let row = &f.free[i * known..][..known];
            let free = |d: usize| {
                if d < known {
                    row[d]
                } else if f.unlimited[i] {
                    u64::MAX
                } else {
                    0
                }
            };
            match short_dim(t, free, pool) {
                Some(d) => (d, 0.0),
                None => {
                    let s = builtin_scores(weights, t, i, |d| fleet_column(f, i, d));
                    let base = weights.least_allocated * s[0]
                        + weights.most_allocated * s[1]
                        + weights.balanced * s[2];
                    (FITS, base)
                }
            }
        };
        // Agents of one size with the same amounts free fit alike and score alike but
        // for affinity. Idle agents of one capacity class (most of a quiet fleet) are
        // known to be such by two flags, so their class's verdict is kept for the
        // whole scan; any other agent reuses the last one visited when their rows are
        // the same. Either spares the checks, the divisions and the root per agent.
        let mut podium = Podium::new();
        // The candidates found short of a resource: the others fit, and are counted
        // so, without counting the bits of every word that fits whole.
        let mut short_of = 0;
        // Classes are agent indices at most, so no class is `u32::MAX`.
        let (mut idle_class, mut idle_verdict) = (u32::MAX, (FITS, 0.0));
        let (mut last, mut last_verdict) = (usize::MAX, (FITS, 0.0));
        // The columns the loop reads, as slices held in locals: read through the
        // fleet, each length is reloaded at every agent (the counts written between
        // might, for all the compiler knows, be them).
        let (idle, classes, affinities) = (&f.idle[..n], &f.capacity_class[..n], &t.affinity[..]);
        let (counts, calm) = (&mut buf.counts[..], &f.calm[..]);
        let fits = &mut buf.fits;
        // A calm agent's score grows with its affinity (the weights are not negative,
        // and rounding keeps order), and the runner-up's score only grows during the
        // scan: so once a calm agent scored at or under the runner-up, no calm agent
        // with at most its affinity can change the podium, and is skipped unscored.
        // A word whose largest affinity is at or under the gate is skipped whole.
        let mut gate = f64::NEG_INFINITY;
        let peaks = &t.affinity_peak[..];
        for &(k, m) in &candidates {
            let word = k as usize * 64;
            if m & !calm[k as usize] == 0 {
                // Every candidate of the word idle and of class 0: one verdict
                // for the word, and per agent only its affinity and the
                // podium. No score at or under the runner-up's changes the
                // podium, and the words come in ascending order, so ties
                // still go to the lower index.
                if idle_class != 0 {
                    idle_class = 0;
                    idle_verdict = verdict_of(word + m.trailing_zeros() as usize);
                }
                let (short, base) = idle_verdict;
                if short != FITS {
                    counts[dim_base + short] += m.count_ones();
                    short_of += m.count_ones();
                    continue;
                }
                if !collect && peaks.get(k as usize).copied().unwrap_or(0.0) <= gate {
                    continue;
                }
                // The word's affinities as a slice of their own: one bound
                // for the word instead of an offset and a bound per agent.
                let row = affinities.get(word..).unwrap_or_default();
                let mut bits = m;
                while bits != 0 {
                    let j = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let i = word + j;
                    let a = row.get(j).copied().unwrap_or(0.0);
                    if !collect && a <= gate {
                        continue;
                    }
                    let score = base + weights.affinity * (100.0 * a);
                    if score > podium.second.1 {
                        podium.rank(i, score);
                    }
                    if score <= podium.second.1 {
                        gate = gate.max(a);
                    }
                    if collect {
                        fits.push((i, score));
                    }
                }
                continue;
            }
            for j in Bits(m) {
                let i = word + j;
                let (short, base) = if idle[i] && classes[i] == idle_class {
                    idle_verdict
                } else if idle[i] {
                    idle_class = classes[i];
                    idle_verdict = verdict_of(i);
                    idle_verdict
                } else {
                    if last == usize::MAX || !same_columns(f, i, last) {
                        last = i;
                        last_verdict = verdict_of(i);
                    }
                    last_verdict
                };
                if short != FITS {
                    counts[dim_base + short] += 1;
                    short_of += 1;
                    continue;
                }
                let score = base + weights.affinity * affinity_at(affinities, i);
                podium.rank(i, score);
                if collect {
                    fits.push((i, score));
                }
            }
        }
        buf.candidates = candidates;
        podium.fitted = (count - short_of) as usize;
        podium
    }
}

/// Whether agents `i` and `j` of `fleet` have the same columns in every dimension
/// a task scores: then [`builtin_scores`] gives them the same scores but affinity, and
/// they fit `t` alike. Whole rows are compared (stricter than the scored dimensions
/// alone, and cheaper: no dimension is looked up), capacities by their class.
#[inline]
fn same_columns(fleet: &Fleet, i: usize, j: usize) -> bool {
    if fleet.capacity_class[i] != fleet.capacity_class[j] {
        return false;
    }
    // Idle agents of one size (most of a quiet fleet) without a look at their rows.
    if fleet.idle[i] && fleet.idle[j] {
        return true;
    }
    let known = fleet.dims.len();
    let (a, b) = (
        &fleet.free[i * known..][..known],
        &fleet.free[j * known..][..known],
    );
    crate::assignment::fleet::same_row(a, b)
}

/// The best and runner-up agents of a scan (index and score), and how many fit.
/// Agents are offered in ascending index, so that a tie stays with the lower one.
/// The places start taken by nobody at minus infinity, which any finite score
/// beats: the comparisons stay two, in registers, where options cost a test each.
#[derive(Debug, Clone, Copy)]
pub(super) struct Podium {
    best: (usize, f64),
    second: (usize, f64),
    fitted: usize,
}

/// An empty place on the podium.
const NOBODY: (usize, f64) = (usize::MAX, f64::NEG_INFINITY);

impl Podium {
    pub(super) fn new() -> Self {
        Podium {
            best: NOBODY,
            second: NOBODY,
            fitted: 0,
        }
    }

    /// Counts agent `i` as fitting, with `score`: strictly better wins.
    #[inline(always)]
    pub(super) fn offer(&mut self, i: usize, score: f64) {
        self.fitted += 1;
        self.rank(i, score);
    }

    /// [`offer`](Self::offer) but for the count: for agents already counted.
    #[inline(always)]
    fn rank(&mut self, i: usize, score: f64) {
        if score > self.best.1 {
            self.second = self.best;
            self.best = (i, score);
        } else if score > self.second.1 {
            self.second = (i, score);
        }
    }

    /// The best, the runner-up, and how many fit.
    pub(super) fn finish(self) -> (Scored, Scored, usize) {
        let taken = |(i, s): (usize, f64)| (i != usize::MAX).then_some((i, s));
        (taken(self.best), taken(self.second), self.fitted)
    }
}
