//! Workflow run benches.
//!
//! `workflow/sansio/{shape}/{steps}`: the engine's overhead per step through the
//! sans-I/O API: `Run::new`, then a driver loop (`next_ready` -> `start` -> `finish`
//! with success and no work) until the run is finished. The workflow is built once,
//! outside the measurement.
//!
//! `workflow/executor/{shape}/{steps}`: the same workflow through the async
//! [`Executor`] and a [`Coordinator`] with one no-op agent: every step is a task
//! that is analyzed, assigned, checked by the default policies, allocated, journaled
//! and completed. The host drains the coordinator's journal as the run goes.
//!
//! `workflow/dagrs/{shape}/{steps}`: the peer, `dagrs`, running the same no-op DAG
//! (`EmptyAction` nodes) on a two-worker tokio runtime; the graph is built outside the
//! measurement. dagrs spawns a task and channels per node, so its largest sizes are
//! left out (see `DAGRS_MAX`) to keep the whole bench under about three minutes.
//!
//! Shapes: `chain` (each step after the previous one), `layered` (layers of 100 steps,
//! each after two steps of the layer before), `wide` (one root, every other step after
//! it, and a final step after all of them).

use std::hint::black_box;
use std::time::Duration;

use std::sync::Arc;

use concord::agent::{Agent, AgentError, AgentHealth, WorkItem, WorkOutput};
use concord::coordinator::Coordinator;
use concord::workflow::{Executor, Run, RunEvent, SimulatedTimer, StepOutcome, StepSpec, Workflow};
use concord::{AgentId, AgentProfile, ManualClock, RuleBasedAnalyzer, RuleSet, Timestamp};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [usize; 3] = [1000, 10_000, 100_000];
/// dagrs takes seconds per run at 100,000 nodes (and its graph build is slower
/// still); it is measured up to this size.
const DAGRS_MAX: usize = 10_000;
const LAYER: usize = 100;
/// The executor goes through the whole coordinator for every step (analysis,
/// assignment, policies, ledger); measured up to this size to keep the run short.
const EXECUTOR_MAX: usize = 100_000;

#[derive(Clone, Copy)]
enum Shape {
    Chain,
    Layered,
    Wide,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Chain => "chain",
            Shape::Layered => "layered",
            Shape::Wide => "wide",
        }
    }

    /// The dependencies of step `i` of `n`.
    fn deps(self, i: usize, n: usize) -> Vec<usize> {
        match self {
            Shape::Chain => (i > 0).then(|| i - 1).into_iter().collect(),
            Shape::Layered => {
                if i < LAYER {
                    Vec::new()
                } else {
                    let base = (i / LAYER - 1) * LAYER;
                    let j = i % LAYER;
                    let mut d = vec![base + j, base + (j + 1) % LAYER];
                    d.dedup();
                    d
                }
            }
            Shape::Wide => match i {
                0 => Vec::new(),
                _ if i == n - 1 => (1..n - 1).collect(),
                _ => vec![0],
            },
        }
    }
}

fn workflow(shape: Shape, n: usize) -> Workflow {
    let mut b = Workflow::builder(shape.name());
    for i in 0..n {
        let mut spec = StepSpec::new(format!("s{i}"));
        for d in shape.deps(i, n) {
            spec = spec.after(format!("s{d}"));
        }
        b.push(spec);
    }
    b.build().expect("bench workflows are valid")
}

/// Runs `workflow` to the end through the sans-I/O API; returns the steps done.
fn drive(workflow: &Workflow) -> usize {
    let agent = AgentId::new(1);
    let now = Timestamp::from_secs(1);
    let mut run = Run::new(workflow, "bench", 7, now);
    let mut done = 0;
    while let Some(step) = run.next_ready() {
        // Errors cannot happen here: the step is ready and then running.
        let _ = run.start(step, agent, now);
        let _ = run.finish(step, agent, StepOutcome::success(), now);
        done += 1;
    }
    debug_assert!(run.is_finished());
    done
}

/// An agent that does nothing, at once.
#[derive(Debug)]
struct Noop;

#[async_trait::async_trait]
impl Agent for Noop {
    fn id(&self) -> AgentId {
        AgentId::new(1)
    }
    async fn execute(&self, _: WorkItem) -> Result<WorkOutput, AgentError> {
        Ok(WorkOutput::success())
    }
    async fn health(&self) -> Result<AgentHealth, AgentError> {
        Ok(AgentHealth::new("noop"))
    }
}

/// Runs `workflow` to the end through the async executor: every step is analyzed,
/// assigned, validated by the default policies and allocated by the coordinator, then
/// run on a no-op agent. The host takes the coordinator's journal as the run goes
/// (from the run observer), as a host that persists it does; a journal never drained
/// keeps every assignment alive until the coordinator is dropped.
fn drive_executor(workflow: &Workflow) -> usize {
    let clock = ManualClock::new(Timestamp::from_secs(1));
    let coordinator = Arc::new(
        Coordinator::builder()
            .clock(clock.clone())
            .analyzer(RuleBasedAnalyzer::new(RuleSet::empty()).expect("empty rule set"))
            .build(),
    );
    coordinator
        .register_agent(AgentProfile::new(AgentId::new(1), "noop").with_max_tasks(1 << 20))
        .expect("fresh agent");
    let source = Arc::clone(&coordinator);
    // The host's journal buffer: written out (here, dropped) after every batch.
    let journal = std::sync::Mutex::new(Vec::new());
    let executor = Executor::new(coordinator, SimulatedTimer::new(clock).with_patience(0))
        .with_agent(Arc::new(Noop))
        .with_concurrency(64)
        .with_observer(move |_: &Run, events: &[RunEvent]| {
            if let Ok(mut journal) = journal.lock() {
                source.drain_events_into(&mut journal);
                black_box((events.len(), journal.len()));
                journal.clear();
            }
        });
    let run = futures::executor::block_on(executor.run(workflow, "bench", 7)).expect("run");
    run.history().len()
}

fn dagrs_graph(shape: Shape, n: usize) -> dagrs::Graph {
    let mut table = dagrs::NodeTable::new();
    let mut graph = dagrs::Graph::new();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let node = dagrs::DefaultNode::with_action(format!("s{i}"), dagrs::EmptyAction, &mut table);
        ids.push(graph.add_node(node).expect("fresh node"));
    }
    let mut succ: Vec<Vec<dagrs::NodeId>> = vec![Vec::new(); n];
    for (i, &id) in ids.iter().enumerate() {
        for d in shape.deps(i, n) {
            succ[d].push(id);
        }
    }
    for (d, to) in succ.into_iter().enumerate() {
        if !to.is_empty() {
            graph.add_edge(ids[d], to).expect("known nodes");
        }
    }
    graph
}

fn bench_workflow(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("workflow");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(2));
    for shape in [Shape::Chain, Shape::Layered, Shape::Wide] {
        for n in SIZES {
            group.throughput(Throughput::Elements(n as u64));
            // A run of 100,000 steps makes some 30 MB of run state and history: its
            // first runs after a smaller bench still grow the heap (page faults), and
            // half a second of warm-up is five runs. Two seconds reach the steady
            // state the samples are meant to measure.
            group.warm_up_time(if n >= 100_000 {
                Duration::from_secs(2)
            } else {
                Duration::from_millis(500)
            });
            let id = format!("{}/{n}", shape.name());
            let w = workflow(shape, n);
            group.bench_function(BenchmarkId::new("sansio", &id), |b| {
                b.iter(|| black_box(drive(black_box(&w))))
            });

            if n <= EXECUTOR_MAX {
                group.bench_function(BenchmarkId::new("executor", &id), |b| {
                    b.iter(|| black_box(drive_executor(black_box(&w))))
                });
            }

            if n <= DAGRS_MAX {
                group.bench_function(BenchmarkId::new("dagrs", &id), |b| {
                    b.iter_batched(
                        || dagrs_graph(shape, n),
                        |mut graph| {
                            runtime.block_on(graph.async_start()).expect("dagrs run");
                            graph
                        },
                        BatchSize::PerIteration,
                    )
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_workflow);
criterion_main!(benches);
