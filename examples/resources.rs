//! The resource allocation process, end to end:
//! predict needs from history, allocate, queue what does not fit, release so that the
//! queue is served, detect a leak, and print the usage report.
//!
//! Run with `cargo run --example resources`.

use std::time::Duration;

use concord::resource::{
    Observation, PercentilePredictor, RequestOutcome, ResourceLedger, ResourcePredictor,
};
use concord::{
    AgentId, AllocationRequest, Clock, ManualClock, Priority, ResourceName, Resources, TaskId,
    Timestamp,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let ops = AgentId::new(1);
    let qa = AgentId::new(2);

    // 1. Assess resource requirements: learn from what earlier tasks really used.
    let mut predictor = PercentilePredictor::default();
    for i in 0..20u64 {
        let usage = Resources::new()
            .with_cpu_millis(700 + 25 * (i % 9))
            .with_memory_bytes((600 + 15 * (i % 11)) << 20);
        clock.advance(Duration::from_secs(600));
        predictor.observe("deploy", &Observation::new(usage, clock.now()));
    }
    // A screenshot task ran out of memory at 900Mi: the predictor bumps it, damped.
    let oom = Observation::new("cpu=400m,memory=900Mi".parse()?, clock.now())
        .with_exhausted(ResourceName::Memory);
    predictor.observe("screenshot", &oom);

    let tasks = [
        (TaskId::new(1), "deploy", "cpu=1,memory=1Gi"),
        (TaskId::new(2), "screenshot", "cpu=500m,memory=512Mi"),
        (TaskId::new(3), "build", "cpu=3500m,memory=6Gi"),
    ];
    println!("1. predicted needs");
    let mut needs = Vec::new();
    for (id, kind, requested) in tasks {
        let requested: Resources = requested.parse()?;
        let p = predictor.predict(kind, &requested);
        println!(
            "   {id} {kind:<10} asked {requested:<24} predicted {} ({} samples)",
            p.resources, p.samples
        );
        needs.push((id, kind, p.resources));
    }

    // 2. Check resource availability.
    let mut ledger = ResourceLedger::new();
    ledger.add_agent(ops, &"cpu=4,memory=8Gi,storage=100Gi".parse()?)?;
    ledger.add_agent(qa, &"cpu=2,memory=4Gi,gpu=1".parse()?)?;
    println!("\n2. availability");
    for a in ledger.availability() {
        println!("   {}: {}", a.agent, a.free);
    }

    // 3 and 4. Allocate; what does not fit waits in the queue.
    println!("\n3. allocate");
    let now = clock.now();
    let deploy = ledger.try_allocate(
        &AllocationRequest::new(ops, needs[0].2.clone()).with_task(needs[0].0),
        now,
    )?;
    println!(
        "   {} -> {} on {}",
        needs[0].0, deploy.allocation, deploy.agent
    );
    let shot = ledger.try_allocate(
        &AllocationRequest::new(qa, needs[1].2.clone()).with_task(needs[1].0),
        now,
    )?;
    println!("   {} -> {} on {}", needs[1].0, shot.allocation, shot.agent);
    let build = AllocationRequest::any_of([ops, qa], needs[2].2.clone())
        .with_task(needs[2].0)
        .with_priority(Priority::HIGH);
    match ledger.request(build, now)? {
        RequestOutcome::Queued(id) => println!(
            "   {} does not fit now: queued as {id} (insufficient_resources)",
            needs[2].0
        ),
        other => println!("   {} granted at once: {other:?}", needs[2].0),
    }

    // The deploy finishes and releases: the queued build is served.
    clock.advance(Duration::from_secs(90));
    ledger.task_finished(needs[0].0, clock.now());
    let grants = ledger.release(deploy.allocation, clock.now())?;
    println!("\n   {} released", deploy.allocation);
    for g in &grants {
        let request = g.request.map_or("-".to_owned(), |r| r.to_string());
        println!(
            "   queued {request} served: {} on {} after waiting {}s",
            g.allocation,
            g.agent,
            g.waited.as_secs()
        );
    }

    // The screenshot task finishes but its agent never releases: a leak.
    clock.advance(Duration::from_secs(60));
    ledger.task_finished(needs[1].0, clock.now());
    clock.advance(Duration::from_secs(300));
    println!("\n4. leaks");
    for leak in ledger.detect_leaks(clock.now()) {
        println!("   {leak}");
    }
    println!("\n5. heavy users");
    for h in ledger.heavy_users(3) {
        println!(
            "   {} holds {:.0}% of all {} ({} allocations)",
            h.agent,
            h.share * 100.0,
            h.dominant,
            h.allocations
        );
    }
    println!("\n6. usage report\n{}", ledger.usage_report());
    Ok(())
}
