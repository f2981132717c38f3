//! The types a host needs to embed the crate, in one import.
//!
//! ```
//! use concord::prelude::*;
//! ```
//!
//! brings in what a host reaches for first: the [`Agent`] trait it implements (with the
//! [`async_trait`](macro@async_trait) attribute it needs for that, so the host does not have to depend on
//! the `async-trait` crate itself) and the work it exchanges ([`WorkItem`],
//! [`WorkOutput`], [`AgentHealth`], [`AgentError`]); the fleet's data ([`AgentId`],
//! [`AgentProfile`], [`Role`], [`Capability`]) and tasks ([`Task`], [`TaskId`]); time
//! ([`Timestamp`], [`Clock`], [`ManualClock`], [`SystemClock`]); workflows
//! ([`Workflow`], [`StepSpec`], [`Run`], [`RunOutcome`]) and their async driver
//! ([`Executor`], with a [`Timer`] such as [`SimulatedTimer`]); the [`Coordinator`]
//! and its [`AssignOutcome`]; and the crate's [`Error`] and [`Result`].
//!
//! Everything here is also at its own path (`concord::agent::Agent`,
//! `concord::workflow::Executor`, ...); the prelude only re-exports. Importing it with
//! a glob brings in a `Result` with a default error type, `Result<T, E = Error>`, which
//! still accepts any other error type given explicitly.
//!
//! # Examples
//! An agent, a coordinator, and one task assigned and done:
//! ```
//! use concord::prelude::*;
//!
//! #[derive(Debug)]
//! struct Screenshotter;
//!
//! #[async_trait]
//! impl Agent for Screenshotter {
//!     fn id(&self) -> AgentId {
//!         AgentId::new(1)
//!     }
//!     async fn execute(&self, work: WorkItem) -> std::result::Result<WorkOutput, AgentError> {
//!         Ok(WorkOutput::success().with_output("shot", format!("{}.png", work.task())))
//!     }
//!     async fn health(&self) -> std::result::Result<AgentHealth, AgentError> {
//!         Ok(AgentHealth::new("1.0.0"))
//!     }
//! }
//!
//! fn main() -> Result<()> {
//!     let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
//!     let coordinator = Coordinator::builder().clock(clock.clone()).build();
//!     let agent = Screenshotter;
//!     coordinator.register_agent(
//!         AgentProfile::new(agent.id(), "qa-1")
//!             .with_roles([Role::new("qa")?])
//!             .with_capabilities([Capability::new("screenshot")?, Capability::new("browser")?])
//!             .with_capacity("cpu=2,memory=4Gi".parse()?),
//!     )?;
//!
//!     let task = Task::new(TaskId::new(7), "verify", "Take a screenshot of the deployment");
//!     let AssignOutcome::Assigned(assignment) = coordinator.assign(task)? else {
//!         panic!("the qa agent takes it");
//!     };
//!     let work = WorkItem::for_task(&assignment.task);
//!     let output = futures::executor::block_on(agent.execute(work))
//!         .map_err(|source| Error::Agent { agent: agent.id(), source })?;
//!     assert_eq!(output.output("shot"), Some("task#7.png"));
//!     coordinator.complete(TaskId::new(7), output.is_success(), None)?;
//!
//!     // The same fleet can run workflows: a validated graph of steps.
//!     let workflow = Workflow::builder("release")
//!         .step(StepSpec::new("deploy"))
//!         .step(StepSpec::new("verify").after("deploy"))
//!         .build()?;
//!     assert_eq!(workflow.len(), 2);
//!     Ok(())
//! }
//! ```

pub use crate::agent::{Agent, AgentError, AgentHealth, AgentProfile, WorkItem, WorkOutput};
pub use crate::clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use crate::coordinator::{AssignOutcome, Coordinator};
pub use crate::error::{Error, Result};
pub use crate::id::{AgentId, Capability, Role, TaskId};
pub use crate::task::Task;
pub use crate::workflow::{Executor, Run, RunOutcome, SimulatedTimer, StepSpec, Timer, Workflow};
pub use async_trait::async_trait;
