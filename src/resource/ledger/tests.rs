use proptest::prelude::*;

use super::*;

fn res(cpu: u64, gpu: u64, slots: Option<u64>, tpu: u64) -> Resources {
    let mut r = Resources::new().with_cpu_millis(cpu);
    let name = |n: &str| ResourceName::new(n).expect("valid name");
    r.set(&name("gpu"), gpu);
    r.set(&name("tpu"), tpu);
    if let Some(s) = slots {
        r.set(&name("slots"), s);
    }
    r
}

proptest! {
    /// The coordinator's booking (`try_allocate_task`) does exactly what the
    /// request it stands for does: the same grant or error, the same ledger after.
    #[test]
    fn booking_a_task_is_the_request_for_the_task(
        capacity in (0u64..4000, 0u64..3, proptest::option::of(0u32..3)),
        held in proptest::collection::vec((0u64..3000, 0u64..2, any::<bool>()), 0..3),
        needs in (0u64..3000, 0u64..3, 0u64..2),
        known_agent in any::<bool>(),
    ) {
        let now = Timestamp::from_secs(1);
        let agent = AgentId::new(1);
        let mut ledger = ResourceLedger::new();
        ledger.add_agent(agent, &res(capacity.0, capacity.1, None, 0)).unwrap();
        ledger.set_task_slots(agent, capacity.2).unwrap();
        for (k, (cpu, gpu, for_task)) in held.into_iter().enumerate() {
            let mut request = AllocationRequest::new(agent, res(cpu, gpu, None, 0));
            if for_task {
                request = request.with_task(TaskId::new(100 + k as u64));
            }
            let _ = ledger.try_allocate(&request, now);
        }
        let target = if known_agent { agent } else { AgentId::new(2) };
        let needs = res(needs.0, needs.1, None, needs.2);
        let task = TaskId::new(7);
        let priority = Priority::default();

        let mut fast = ledger.clone();
        let got = fast.try_allocate_task(target, &needs, task, priority, now);
        let request = AllocationRequest::new(target, needs).with_task(task).with_priority(priority);
        let want = ledger.try_allocate(&request, now);
        prop_assert_eq!(got, want);
        prop_assert_eq!(fast.snapshot(), ledger.snapshot());
        if let Some(slots) = capacity.2 {
            prop_assert!(ledger.tasks_on(agent).unwrap() <= slots, "never over the task slots");
        }
        prop_assert_eq!(fast.snapshot(), ledger.snapshot());
    }
}
