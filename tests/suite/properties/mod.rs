//! Property tests: the crate's invariants under random inputs.
//!
//! One file per domain, in the integration tests' binary. Case counts are sized so
//! the whole suite runs in well under a minute on two cores.

mod amounts;
mod analysis;
mod assignment;
mod clock;
mod conflict;
mod coordinator_claims;
mod executor;
mod lap;
mod ledger;
mod optimal;
mod policy;
mod predictors;
mod reference;
mod registry;
mod shared_fleet;
mod workflow;
