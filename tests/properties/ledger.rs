//! Properties of the ledger (filled in by its commit).
