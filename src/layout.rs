//! [`Layout`]: a token that changes whenever the shape of a registry or ledger
//! changes, so that a view built from it knows when it must be rebuilt; and
//! [`ChangeLog`]: the rows whose usage changed since, so that such a view rereads
//! only those.

use std::sync::atomic::{AtomicU64, Ordering};

/// Names one layout of a registry or a ledger: which agents, dimensions, capacities,
/// roles and capabilities it holds (not what is allocated or running). Every change
/// of layout takes a number never handed out before, from one counter for the whole
/// process, so two different layouts never share a token, even in two different
/// registries; a clone keeps its original's token, and it has the same layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout(u64);

impl Layout {
    /// A token no layout had before.
    pub(crate) fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Layout(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for Layout {
    fn default() -> Self {
        Layout::fresh()
    }
}

/// The dense rows of a registry or ledger whose usage (status, running tasks,
/// allocations) changed, in the order they changed, so that a view of every row (a
/// [`Fleet`](crate::assignment::Fleet)) rereads only those rows instead of all of
/// them. The source appends; readers remember a [`LogMark`] and read what follows
/// it, so reading changes nothing and any number of views may read one log.
///
/// The log keeps only its recent entries: once it holds twice [`keep`](Self::record)
/// of them, it drops all but the last `keep`, counting the dropped ones in `base`. A
/// reader whose mark falls before `base` is told so and rereads every row, once. So
/// the log's memory is bounded by the source's size, and a reader that refreshes
/// after every few changes never falls behind.
///
/// A log entry names a row of the layout it was written in: a reader rebuilds at a
/// change of layout and marks the log's end then, so it never reads an older entry.
#[derive(Debug, Default)]
pub(crate) struct ChangeLog {
    /// Names this log among every log of the process. A clone (a copy of a registry
    /// or ledger, which then changes apart from its original) gets a new name: a
    /// view marked in one must not read the other's entries as following its mark.
    id: Layout,
    /// How many entries were dropped from the front since the log was made.
    base: u64,
    /// The rows changed since `base`, oldest first; a row may appear many times.
    rows: Vec<usize>,
}

/// Where a reader stands in a [`ChangeLog`]: which log, and how many of its entries
/// it has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogMark {
    id: Layout,
    end: u64,
}

impl ChangeLog {
    /// Records that the usage of `row` changed. `keep` is how many recent entries
    /// the log keeps when it trims itself: a small share of the source's rows, so
    /// that trimming costs as much per entry as the entry, and a reader that fell
    /// behind rereads as much as the entries it missed would have cost.
    pub(crate) fn record(&mut self, row: usize, keep: usize) {
        let keep = keep.max(1);
        if self.rows.len() >= 2 * keep {
            let dropped = self.rows.len() - keep;
            self.rows.drain(..dropped);
            self.base += dropped as u64;
        }
        self.rows.push(row);
    }

    /// The log's end, for a reader that has read everything up to now.
    pub(crate) fn mark(&self) -> LogMark {
        LogMark {
            id: self.id,
            end: self.base + self.rows.len() as u64,
        }
    }

    /// The rows changed since `mark`, or `None` if the log cannot say: `mark` is of
    /// another log, or entries after it were dropped.
    pub(crate) fn since(&self, mark: LogMark) -> Option<&[usize]> {
        if mark.id != self.id {
            return None;
        }
        let from = usize::try_from(mark.end.checked_sub(self.base)?).ok()?;
        self.rows.get(from..)
    }
}

impl Clone for ChangeLog {
    /// A new, empty log of its own: no reader has read it, so it needs no entry.
    fn clone(&self) -> Self {
        ChangeLog::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_says_what_changed_since_a_mark_or_that_it_cannot() {
        let mut log = ChangeLog::default();
        let start = log.mark();
        log.record(3, 2);
        log.record(1, 2);
        assert_eq!(log.since(start), Some(&[3, 1][..]));
        let middle = log.mark();
        assert_eq!(log.since(middle), Some(&[][..]));
        log.record(4, 2);
        log.record(5, 2);
        // Four entries, twice `keep`: the next one drops the first two.
        log.record(6, 2);
        assert_eq!(log.since(start), None);
        assert_eq!(log.since(middle), Some(&[4, 5, 6][..]));
        // A clone is another log: a mark of the original means nothing to it.
        let copy = log.clone();
        assert_eq!(copy.since(middle), None);
        assert_eq!(copy.since(copy.mark()), Some(&[][..]));
        assert_eq!(log.since(middle), Some(&[4, 5, 6][..]));
    }

    #[test]
    fn every_token_is_new() {
        let (a, b) = (Layout::fresh(), Layout::default());
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
    }
}
