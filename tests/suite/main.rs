//! The integration tests, one binary: a module per domain of the public API, the
//! property tests (`properties`), and the helpers they share.
//!
//! One binary rather than one per file: each test binary links the crate and
//! instantiates its generics again, and the build of thirty-odd binaries was the
//! longest step of CI. Two tests stay binaries of their own: `simulation` (the
//! deterministic world, run alone with `cargo test --test simulation`) and
//! `durable_journal` (which runs itself as a child process by test name).
//!
//! Run one domain with `cargo test --test suite -- hostile_input::`.

#[path = "../support/counting_alloc.rs"]
mod counting_alloc;
#[path = "../support/random_fleet.rs"]
mod random_fleet;
#[path = "../support/rng.rs"]
mod rng;
#[path = "../support/sim_worker.rs"]
mod sim_worker;
#[path = "../support/yield_now.rs"]
mod yield_now;

mod agents;
mod alert;
mod assignment;
mod audit;
mod clock;
mod concurrent_runs;
mod conflict;
mod coordinator;
mod coordinator_core;
mod crash_resume;
mod dashboard;
mod emergency;
mod executor;
mod greedy_reuse;
mod greedy_small;
mod health;
mod history;
mod hostile_input;
mod journal;
mod lap;
mod layering;
mod ledger;
mod maintenance;
mod memory;
mod model;
mod monitor;
mod policy;
mod predictors;
mod properties;
mod resources;
mod runbooks;
mod stress;
mod tasks;
#[cfg(feature = "tokio")]
mod tokio_runtime;
mod workflow;
