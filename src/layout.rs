//! [`Layout`]: a token that changes whenever the shape of a registry or ledger
//! changes, so that a view built from it knows when it must be rebuilt.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_is_new() {
        let (a, b) = (Layout::fresh(), Layout::default());
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
    }
}
