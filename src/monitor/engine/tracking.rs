//! The live rows the monitor keeps between events: an agent's row (made, changed,
//! freed), the fleet's resource dimensions, and each followed task's wait or run and
//! each open conflict. Apart from the event handling so that what a row holds, and
//! how its gauges are integrated, reads in one place.

use crate::clock::Timestamp;
use crate::conflict::ConflictId;
use crate::id::{AgentId, TaskId};
use crate::monitor::anomaly::{AnomalyDetector, Metric};
use crate::resource::{ExtendedName, ResourceName, Resources};

use super::{AgentLive, Dim, Monitor, Phase, TaskLive, detector_for};

impl Monitor {
    /// The row of `id`, made if new and there is room.
    pub(super) fn agent_row(&mut self, id: AgentId) -> Option<usize> {
        if let Some(&i) = self.agent_index.get(&id) {
            return Some(i as usize);
        }
        if self.agent_index.len() >= self.config.max_agents() {
            self.win.ingest.untracked_agents += 1;
            return None;
        }
        let detector = self.config.detect_agents().then(|| {
            Box::new(AnomalyDetector::with_valid(detector_for(
                &self.config,
                Metric::Utilization,
            )))
        });
        let live = AgentLive::new(id, self.now, detector);
        let i = match self.free.pop() {
            Some(i) => {
                self.agents[i as usize] = live;
                i as usize
            }
            None => {
                self.agents.push(live);
                self.agents.len() - 1
            }
        };
        self.agent_index.insert(id, i as u32);
        Some(i)
    }

    /// Changes agent `i` with `f`, keeping the fleet's offered slots in step; both
    /// accrued to `t` first.
    #[inline]
    pub(super) fn change_agent(&mut self, i: usize, t: Timestamp, f: impl FnOnce(&mut AgentLive)) {
        self.accrue_fleet(t);
        let a = &mut self.agents[i];
        a.accrue(t);
        let before = a.offered();
        f(a);
        a.present = true;
        let after = a.offered();
        self.fleet.avail = (self.fleet.avail + u64::from(after)).saturating_sub(u64::from(before));
    }

    /// The row of an extended resource, made if new and there is room.
    fn dim_of(&mut self, name: &ExtendedName) -> Option<usize> {
        if let Some(k) = self.dims[3..]
            .iter()
            .position(|d| matches!(&d.name, ResourceName::Extended(n) if n == name))
        {
            return Some(k + 3);
        }
        if self.dims.len() >= self.config.max_resources() {
            self.win.ingest.untracked_resources += 1;
            return None;
        }
        self.dims
            .push(Dim::new(ResourceName::Extended(name.clone())));
        Some(self.dims.len() - 1)
    }

    /// Adds (or takes away) `r` to each resource's capacity (`capacity`) or allocated
    /// amount; the fleet is accrued first.
    fn adjust(&mut self, r: &Resources, capacity: bool, add: bool) {
        let fixed = [r.cpu_millis(), r.memory_bytes(), r.storage_bytes()];
        for (k, amount) in fixed.into_iter().enumerate() {
            if amount > 0 {
                apply_amount(&mut self.dims[k], amount, capacity, add);
            }
        }
        for (name, amount) in r.extended_entries() {
            if let Some(k) = self.dim_of(name) {
                apply_amount(&mut self.dims[k], *amount, capacity, add);
            }
        }
    }

    pub(super) fn set_capacity(&mut self, i: usize, capacity: Resources, t: Timestamp) {
        self.accrue_fleet(t);
        let old = std::mem::replace(&mut self.agents[i].capacity, capacity);
        self.adjust(&old, true, false);
        let new = self.agents[i].capacity.clone();
        self.adjust(&new, true, true);
    }

    /// Records a finished task's usage against its allocation.
    pub(super) fn record_usage(&mut self, allocated: &Resources, used: &Resources) {
        let fixed = [
            (allocated.cpu_millis(), used.cpu_millis()),
            (allocated.memory_bytes(), used.memory_bytes()),
            (allocated.storage_bytes(), used.storage_bytes()),
        ];
        for (k, (a, u)) in fixed.into_iter().enumerate() {
            record(&mut self.dims[k], a, u);
        }
        // Both lists are sorted by name: walk them together.
        let (xs, ys) = (allocated.extended_entries(), used.extended_entries());
        let (mut i, mut j) = (0, 0);
        while i < xs.len() || j < ys.len() {
            let (name, a, u) = match (xs.get(i), ys.get(j)) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    i += 1;
                    j += 1;
                    (&x.0, x.1, y.1)
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    i += 1;
                    (&x.0, x.1, 0)
                }
                (Some(x), None) => {
                    i += 1;
                    (&x.0, x.1, 0)
                }
                (_, Some(y)) => {
                    j += 1;
                    (&y.0, 0, y.1)
                }
                (None, None) => break,
            };
            if let Some(k) = self.dim_of(name) {
                record(&mut self.dims[k], a, u);
            }
        }
    }

    fn can_track(&mut self) -> bool {
        if self.tasks.len() < self.config.max_tasks_in_flight() {
            true
        } else {
            self.win.ingest.untracked_tasks += 1;
            false
        }
    }

    /// A waiting phase begins: the gauges count it.
    fn wait_in(&mut self, phase: Phase, t: Timestamp) {
        self.accrue_fleet(t);
        match phase {
            Phase::Queued => self.fleet.queued += 1,
            Phase::Blocked(holder) => {
                self.fleet.blocked += 1;
                if let Some(h) = holder {
                    let a = &mut self.agents[h as usize];
                    a.blocked += 1;
                    a.blocked_peak = a.blocked_peak.max(a.blocked);
                }
            }
            Phase::Running(_) => return,
        }
        let f = &mut self.fleet;
        f.peak = f.peak.max(f.queued + f.blocked);
    }

    /// A waiting phase ends.
    fn wait_out(&mut self, phase: Phase, t: Timestamp) {
        self.accrue_fleet(t);
        match phase {
            Phase::Queued => self.fleet.queued = self.fleet.queued.saturating_sub(1),
            Phase::Blocked(holder) => {
                self.fleet.blocked = self.fleet.blocked.saturating_sub(1);
                if let Some(h) = holder {
                    let a = &mut self.agents[h as usize];
                    a.blocked = a.blocked.saturating_sub(1);
                }
            }
            Phase::Running(_) => {}
        }
    }

    /// A task stops running on agent `i`: its slot and allocation are freed.
    fn stop_running(&mut self, i: u32, allocated: &Resources, t: Timestamp) {
        self.change_agent(i as usize, t, |a| a.busy = a.busy.saturating_sub(1));
        self.fleet.busy = self.fleet.busy.saturating_sub(1);
        self.adjust(allocated, false, false);
    }

    /// `task` begins to wait in `phase` (queued or blocked); `count` it as a task that
    /// entered that phase.
    pub(super) fn begin_wait(&mut self, task: TaskId, phase: Phase, count: bool, t: Timestamp) {
        let known = self.tasks.get(&task).map(|l| (l.phase, l.since));
        let since = match known {
            Some((old, _)) if old == phase => return,
            Some((Phase::Running(i), _)) => {
                // Waiting again without a hand-back: its run ended unannounced.
                self.win.ingest.unknown_tasks += 1;
                if let Some(live) = self.tasks.remove(&task) {
                    self.stop_running(i, &live.allocated, t);
                }
                t
            }
            Some((old, since)) => {
                self.wait_out(old, t);
                since
            }
            None if self.can_track() => t,
            None => return,
        };
        self.tasks
            .entry(task)
            .and_modify(|l| l.phase = phase)
            .or_insert_with(|| TaskLive {
                since,
                phase,
                allocated: Resources::new(),
            });
        self.wait_in(phase, t);
        match phase {
            _ if !count => {}
            Phase::Queued => self.win.tasks.queued += 1,
            _ => self.win.tasks.blocked += 1,
        }
    }

    /// `task` ends while waiting (or, unannounced, while running).
    pub(super) fn end_waiting(&mut self, task: TaskId, t: Timestamp) {
        let Some(live) = self.tasks.remove(&task) else {
            self.win.ingest.unknown_tasks += 1;
            return;
        };
        match live.phase {
            Phase::Running(i) => {
                self.win.ingest.unknown_tasks += 1;
                self.stop_running(i, &live.allocated, t);
            }
            waiting => self.wait_out(waiting, t),
        }
    }

    pub(super) fn assigned(
        &mut self,
        task: TaskId,
        agent: AgentId,
        resources: &Resources,
        t: Timestamp,
    ) {
        let known = self.tasks.get(&task).map(|l| (l.phase, l.since));
        let waited = match known {
            Some((Phase::Running(j), _)) => {
                // Assigned twice without an end between: the first run ends here.
                self.win.ingest.unknown_tasks += 1;
                if let Some(live) = self.tasks.remove(&task) {
                    self.stop_running(j, &live.allocated, t);
                }
                None
            }
            Some((phase, since)) => {
                self.wait_out(phase, t);
                Some(t.as_nanos().saturating_sub(since.as_nanos()))
            }
            None => None,
        };
        self.win.tasks.assigned += 1;
        let Some(i) = self.agent_row(agent) else {
            self.tasks.remove(&task);
            return;
        };
        if let Some(ns) = waited {
            let w = &mut self.win;
            w.tasks.waited += 1;
            w.waits.add(ns as f64 / 1e9);
            w.wait_ns += u128::from(ns);
            w.wait_n += 1;
            let a = &mut self.agents[i];
            a.waited += 1;
            a.waited_ns += u128::from(ns);
        }
        self.agents[i].started += 1;
        if known.is_none() && !self.can_track() {
            return;
        }
        self.change_agent(i, t, |a| a.busy += 1);
        self.fleet.busy += 1;
        self.adjust(resources, false, true);
        let live = self.tasks.entry(task).or_insert_with(|| TaskLive {
            since: t,
            phase: Phase::Running(i as u32),
            allocated: Resources::new(),
        });
        live.since = t;
        live.phase = Phase::Running(i as u32);
        live.allocated.clone_from(resources);
    }

    /// `task` stops running: returns its agent's row, when it started and what it
    /// held, if it was known to run.
    pub(super) fn stop(
        &mut self,
        task: TaskId,
        t: Timestamp,
    ) -> Option<(usize, Timestamp, Resources)> {
        match self.tasks.get(&task).map(|l| l.phase) {
            Some(Phase::Running(i)) => {
                let live = self.tasks.remove(&task)?;
                self.stop_running(i, &live.allocated, t);
                Some((i as usize, live.since, live.allocated))
            }
            Some(_) => {
                self.win.ingest.unknown_tasks += 1;
                self.end_waiting(task, t);
                None
            }
            None => {
                self.win.ingest.unknown_tasks += 1;
                None
            }
        }
    }

    pub(super) fn close_conflict(&mut self, conflict: ConflictId, t: Timestamp) {
        if let Some(opened) = self.conflicts.remove(&conflict) {
            let ns = t.as_nanos().saturating_sub(opened.as_nanos());
            let w = &mut self.win;
            w.res_ns += u128::from(ns);
            w.res_n += 1;
            w.resolution.add(ns as f64 / 1e9);
            w.resolution_summary.add(ns as f64 / 1e9);
        }
    }
}

fn apply_amount(d: &mut Dim, amount: u64, capacity: bool, add: bool) {
    let v = if capacity {
        &mut d.capacity
    } else {
        &mut d.allocated
    };
    *v = if add {
        *v + u128::from(amount)
    } else {
        v.saturating_sub(u128::from(amount))
    };
    d.note_peak();
}

fn record(d: &mut Dim, allocated: u64, used: u64) {
    if allocated == 0 && used == 0 {
        return;
    }
    d.done_alloc += u128::from(allocated);
    d.done_used += u128::from(used);
    d.done_within += u128::from(allocated.min(used));
    if used > allocated {
        d.under += 1;
    }
    d.reports += 1;
}
