//! The monitor's clock: starting at the first event, counting late events at the
//! latest time seen, and closing detection intervals (feeding the anomaly detectors)
//! and windows as time passes. Apart from the event handling because it is driven by
//! time alone ([`Monitor::advance`] calls it with no event).

use crate::clock::Timestamp;
use crate::monitor::anomaly::{Anomaly, Metric, Subject};
use crate::monitor::window::{AgentStats, ConflictStats, QueueStats, ResourceStats, Window};

use super::{FLEET_METRICS, Live, MAX_IDLE_INTERVALS, Marks, Monitor, align, secs};

impl Monitor {
    pub(super) fn start(&mut self, t: Timestamp) {
        self.started = true;
        self.now = t;
        self.last_event = t;
        let ns = t.as_nanos();
        let start = align(ns, self.window_ns);
        self.window_start = Timestamp::from_nanos(start);
        self.window_end = Timestamp::from_nanos(start.saturating_add(self.window_ns));
        self.next_interval =
            Timestamp::from_nanos(align(ns, self.every_ns).saturating_add(self.every_ns));
        self.fleet.last = t;
    }

    /// The time an event counts at: its own, or the latest seen if it is earlier.
    #[inline]
    pub(super) fn clock_to(&mut self, at: Timestamp) -> Timestamp {
        if !self.started {
            self.start(at);
            return at;
        }
        if at < self.now {
            self.win.ingest.late += 1;
            return self.now;
        }
        if at >= self.next_interval {
            self.roll_to(at);
        }
        self.now = at;
        at
    }

    /// Closes every detection interval, and window, that ends by `t`.
    ///
    /// Once an idle interval finds every detector at rest (or past
    /// [`MAX_IDLE_INTERVALS`], fed nothing), the idle intervals that follow, to `t` or
    /// the window's end, are closed in one step ([`rest_until`](Self::rest_until)):
    /// the state is the one closing them one by one would leave.
    pub(super) fn roll_to(&mut self, t: Timestamp) {
        // At the end of time an interval cannot end: nothing is closed there.
        while self.next_interval <= t && self.next_interval < Timestamp::MAX {
            let b = self.next_interval;
            let at_rest = self.close_interval(b);
            if b >= self.window_end {
                self.close_window(b);
                self.skip_ahead(t);
            } else if let Some(fed) = at_rest {
                self.rest_until(b, t, fed);
            }
            self.next_interval =
                Timestamp::from_nanos(self.next_interval.as_nanos().saturating_add(self.every_ns));
        }
    }

    /// How many detection intervals in a row, up to the one ending at `b`, hold no
    /// event: 0 for the one holding the latest event (or the clock's start).
    fn idle_intervals(&self, b: Timestamp) -> u64 {
        let e = self.every_ns;
        let first_end = align(self.last_event.as_nanos(), e).saturating_add(e);
        b.as_nanos().saturating_sub(first_end) / e
    }

    /// After the idle interval ending at `b` found every detector it fed at rest
    /// (`fed`: which fleet detectors it fed): closes the idle intervals after it that
    /// end by `t` and before the window's end, in one step. Each would have had the
    /// values of the one at `b` (nothing changes the gauges between events) and left
    /// the detectors as they were, but for their count of values, so: the integrals
    /// are accrued and the marks set at the last of them, and each detector fed counts
    /// the values it would have been fed (none past [`MAX_IDLE_INTERVALS`]).
    fn rest_until(&mut self, b: Timestamp, t: Timestamp, fed: u8) {
        let e = self.every_ns;
        let b_ns = b.as_nanos();
        // The last boundary at or before `t`, and before the window's end, which the
        // loop closes itself (with the window).
        let by_t = (t.as_nanos() - b_ns) / e;
        let by_end = (self
            .window_end
            .as_nanos()
            .saturating_sub(1)
            .saturating_sub(b_ns))
            / e;
        let n = by_t.min(by_end);
        if n == 0 {
            return;
        }
        let last = Timestamp::from_nanos(b_ns + n * e);
        let idle = self.idle_intervals(b);
        let feed = n.min(MAX_IDLE_INTERVALS.saturating_sub(idle));
        self.accrue_fleet(last);
        self.mark();
        if feed > 0 {
            for (k, detector) in self.detectors.iter_mut().enumerate() {
                if fed & (1 << k) != 0 {
                    detector.rest(feed);
                }
            }
        }
        // As `close_interval` does: without per-agent detection the agents' rows are
        // accrued when they change, not at each interval.
        if self.config.detect_agents() {
            for a in &mut self.agents {
                if a.vacant {
                    continue;
                }
                a.accrue(last);
                let avail = a.avail_ns - a.mark_avail;
                a.mark_busy = a.busy_ns;
                a.mark_avail = a.avail_ns;
                if let (Some(detector), true) = (a.detector.as_mut(), avail > 0 && feed > 0) {
                    detector.rest(feed);
                }
            }
        }
        // The loop adds an interval to this.
        self.next_interval = last;
    }

    /// After a window closed at `window_start`: if `t` is further ahead than the kept
    /// windows reach, the windows that would only pass through the ring are not built
    /// (their time is not accrued; they are counted as skipped), so that a jump of
    /// years costs no more than `keep_windows` windows.
    fn skip_ahead(&mut self, t: Timestamp) {
        let w = self.window_ns;
        let start = self.window_start.as_nanos();
        let target = align(t.as_nanos(), w);
        let keep = self.config.keep_windows() as u64;
        let ahead = (target - start) / w;
        if ahead <= keep {
            return;
        }
        let jump = target - keep * w;
        self.win.ingest.skipped_windows += (jump - start) / w;
        let j = Timestamp::from_nanos(jump);
        self.window_start = j;
        self.window_end = Timestamp::from_nanos(jump.saturating_add(w));
        // The loop adds an interval to this.
        self.next_interval = j;
        self.fleet.last = self.fleet.last.max(j);
        for a in &mut self.agents {
            a.last = a.last.max(j);
        }
    }

    pub(super) fn accrue_fleet(&mut self, t: Timestamp) {
        let f = &mut self.fleet;
        if t <= f.last {
            return;
        }
        let dt = u128::from(t.as_nanos() - f.last.as_nanos());
        f.queued_ns += u128::from(f.queued) * dt;
        f.blocked_ns += u128::from(f.blocked) * dt;
        f.busy_ns += u128::from(f.busy) * dt;
        f.avail_ns += u128::from(f.avail) * dt;
        for d in &mut self.dims {
            d.cap_ns += d.capacity * dt;
            d.alloc_ns += d.allocated * dt;
        }
        f.last = t;
    }

    /// Feeds each series' value for the interval ending at `b` to its detector (none
    /// past [`MAX_IDLE_INTERVALS`] idle intervals in a row). Returns, when the
    /// interval was idle and left every detector it fed at rest, which fleet detectors
    /// it fed (a bit each, in [`FLEET_METRICS`] order): the idle intervals after it
    /// would do exactly the same.
    fn close_interval(&mut self, b: Timestamp) -> Option<u8> {
        let idle = self.idle_intervals(b);
        let feed = idle <= MAX_IDLE_INTERVALS;
        let mut at_rest = idle > 0;
        let mut fed = 0u8;
        #[cfg(test)]
        {
            self.visited += 1;
        }
        self.accrue_fleet(b);
        let f = &self.fleet;
        let m = self.marks;
        let tasks = &self.win.tasks;
        let waiting_ns = f.queued_ns + f.blocked_ns;
        let (d_busy, d_avail) = (f.busy_ns - m.busy_ns, f.avail_ns - m.avail_ns);
        let d_waiting = waiting_ns - m.waiting_ns;
        let d_finished = tasks.finished() - m.finished;
        let d_succeeded = tasks.succeeded - m.succeeded;
        let d_wait_n = self.win.wait_n - m.wait_n;
        let d_res_n = self.win.res_n - m.res_n;
        let (mut eff_sum, mut eff_n) = (0.0, 0u32);
        for d in &mut self.dims {
            let alloc = d.done_alloc - d.mark_alloc;
            if alloc > 0 {
                eff_sum += (d.done_within - d.mark_within) as f64 / alloc as f64;
                eff_n += 1;
            }
        }
        let div = |a: u128, b: u128| (b > 0).then(|| a as f64 / b as f64);
        let values: [Option<f64>; 8] = [
            div(d_busy, d_avail),
            div(u128::from(d_succeeded), u128::from(d_finished)),
            Some(d_finished as f64),
            div(d_waiting, u128::from(self.every_ns)),
            div(self.win.wait_ns - m.wait_ns, u128::from(d_wait_n)).map(|ns| ns / 1e9),
            div(self.win.res_ns - m.res_ns, u128::from(d_res_n)).map(|ns| ns / 1e9),
            div(d_waiting, d_waiting + d_busy),
            (eff_n > 0).then(|| eff_sum / f64::from(eff_n)),
        ];
        self.mark();
        self.found.clear();
        for (k, ((metric, detector), value)) in FLEET_METRICS
            .iter()
            .zip(&mut self.detectors)
            .zip(values)
            .enumerate()
        {
            let Some(value) = value.filter(|_| feed) else {
                continue;
            };
            fed |= 1 << k;
            let (found, rest) = detector.observe_at_rest(value);
            at_rest &= rest;
            if let Some(d) = found {
                self.found.push(Anomaly {
                    at: b,
                    metric: *metric,
                    subject: Subject::Fleet,
                    value: d.value,
                    expected: d.expected,
                    score: d.score,
                    kind: d.kind,
                });
            }
        }
        if self.config.detect_agents() {
            for a in &mut self.agents {
                if a.vacant {
                    continue;
                }
                a.accrue(b);
                let (busy, avail) = (a.busy_ns - a.mark_busy, a.avail_ns - a.mark_avail);
                a.mark_busy = a.busy_ns;
                a.mark_avail = a.avail_ns;
                let (Some(detector), true) = (a.detector.as_mut(), avail > 0 && feed) else {
                    continue;
                };
                let (found, rest) = detector.observe_at_rest(busy as f64 / avail as f64);
                at_rest &= rest;
                if let Some(d) = found {
                    self.found.push(Anomaly {
                        at: b,
                        metric: Metric::Utilization,
                        subject: Subject::Agent(a.id),
                        value: d.value,
                        expected: d.expected,
                        score: d.score,
                        kind: d.kind,
                    });
                }
            }
        }
        // Agents' rows are in no particular order: the anomalies of one instant are
        // put in subject order, so that the output depends only on the events.
        self.found.sort_by_key(|a| (a.subject, a.metric));
        let cap = self.config.max_anomalies();
        for a in self.found.drain(..) {
            tracing::info!(
                anomaly.metric = %a.metric,
                anomaly.subject = %a.subject,
                anomaly.kind = %a.kind,
                anomaly.value = a.value,
                anomaly.expected = a.expected,
                anomaly.score = a.score,
                "performance anomaly"
            );
            if self.win.anomalies.len() < cap {
                self.win.anomalies.push(a.clone());
            } else {
                self.win.ingest.dropped_anomalies += 1;
            }
            if self.pending.len() == cap {
                self.pending.pop_front();
                self.pending_dropped += 1;
            }
            self.pending.push_back(a);
        }
        at_rest.then_some(fed)
    }

    /// Sets the marks the next interval's values are taken from: the counters and
    /// integrals as they stand.
    fn mark(&mut self) {
        let f = &self.fleet;
        let w = &self.win;
        self.marks = Marks {
            succeeded: w.tasks.succeeded,
            finished: w.tasks.finished(),
            busy_ns: f.busy_ns,
            avail_ns: f.avail_ns,
            waiting_ns: f.queued_ns + f.blocked_ns,
            wait_ns: w.wait_ns,
            wait_n: w.wait_n,
            res_ns: w.res_ns,
            res_n: w.res_n,
        };
        for d in &mut self.dims {
            d.mark_alloc = d.done_alloc;
            d.mark_within = d.done_within;
        }
    }

    /// Closes the window ending at `b` (everything accrued to `b`) and starts the next.
    fn close_window(&mut self, b: Timestamp) {
        let window = self.window_to(self.window_start, b);
        tracing::debug!(
            window.start = %window.start,
            window.end = %window.end,
            window.events = window.ingest.events,
            window.agents = window.agents.len(),
            "monitoring window closed"
        );
        if self.closed.len() == self.config.keep_windows() {
            self.closed.pop_front();
        }
        self.closed.push_back(window);
        self.win = Live::new(&self.empty_sketch);
        self.marks = Marks::default();
        let f = &mut self.fleet;
        f.queued_ns = 0;
        f.blocked_ns = 0;
        f.busy_ns = 0;
        f.avail_ns = 0;
        f.peak = f.queued + f.blocked;
        for d in &mut self.dims {
            d.cap_ns = 0;
            d.alloc_ns = 0;
            d.peak_use = d.current_use();
            d.done_alloc = 0;
            d.done_used = 0;
            d.done_within = 0;
            d.under = 0;
            d.reports = 0;
            d.mark_alloc = 0;
            d.mark_within = 0;
        }
        for (i, a) in self.agents.iter_mut().enumerate() {
            if a.vacant {
                continue;
            }
            a.accrue(b);
            a.reset();
            if !a.present {
                // Gone, with nothing running or waiting on it: the row is free.
                a.vacant = true;
                a.detector = None;
                self.agent_index.remove(&a.id);
                self.free.push(i as u32);
            }
        }
        self.window_start = b;
        self.window_end = Timestamp::from_nanos(b.as_nanos().saturating_add(self.window_ns));
    }

    /// The window from `start` to `end`, with every gauge accrued to `end`, without
    /// changing anything; not marked in progress (the caller marks the window in
    /// progress).
    pub(super) fn window_to(&self, start: Timestamp, end: Timestamp) -> Window {
        let f = &self.fleet;
        let dt = u128::from(end.as_nanos().saturating_sub(f.last.as_nanos()));
        let mut resources: Vec<ResourceStats> = self
            .dims
            .iter()
            .filter(|d| !d.is_empty())
            .map(|d| ResourceStats {
                resource: d.name.clone(),
                capacity_secs: secs(d.cap_ns + d.capacity * dt),
                allocated_secs: secs(d.alloc_ns + d.allocated * dt),
                peak_use: d.peak_use,
                allocated: d.done_alloc as f64,
                used: d.done_used as f64,
                used_within: d.done_within as f64,
                under_predicted: d.under,
                reports: d.reports,
            })
            .collect();
        resources.sort_by(|a, b| a.resource.cmp(&b.resource));
        let mut agents: Vec<AgentStats> = self
            .agents
            .iter()
            .filter(|a| !a.vacant && a.present)
            .map(|a| a.stats(end))
            .collect();
        agents.sort_by_key(|a| a.agent);
        let w = &self.win;
        Window {
            start,
            end,
            in_progress: false,
            tasks: w.tasks,
            durations: w.durations.clone(),
            queue: QueueStats {
                current: f.queued + f.blocked,
                peak: f.peak,
                queued_secs: secs(f.queued_ns + u128::from(f.queued) * dt),
                blocked_secs: secs(f.blocked_ns + u128::from(f.blocked) * dt),
                waits: w.waits.clone(),
            },
            conflicts: ConflictStats {
                detected: w.detected,
                resolved: w.resolved,
                decided: w.decided,
                decided_by_default: w.decided_by_default,
                escalated: w.escalated,
                open: self.conflicts.len() as u64,
                resolution: w.resolution.clone(),
                resolution_summary: w.resolution_summary,
            },
            resources,
            agents,
            anomalies: w.anomalies.clone(),
            ingest: w.ingest,
        }
    }
}
