//! [`CapacityTrend`]: a least-squares growth projection over windows, for the
//! capacity view.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::thresholds::{Thresholds, percent};
use super::window::Window;
use crate::clock::Timestamp;
use crate::resource::ResourceName;

/// The series a [`CapacityTrend`] follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "series", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrendSeries {
    /// The fleet's slot utilization per window.
    Utilization,
    /// A resource's mean use (allocated over capacity) per window.
    ResourceUse {
        /// The resource.
        resource: ResourceName,
    },
    /// Tasks finished per window.
    TasksFinished,
}

impl TrendSeries {
    fn is_share(&self) -> bool {
        !matches!(self, TrendSeries::TasksFinished)
    }

    /// A value of the series, for people.
    pub fn format(&self, value: f64) -> String {
        if self.is_share() {
            percent(value)
        } else {
            format!("{value:.1}")
        }
    }
}

impl fmt::Display for TrendSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrendSeries::Utilization => f.write_str("slot utilization"),
            TrendSeries::ResourceUse { resource } => write!(f, "{resource} use"),
            TrendSeries::TasksFinished => f.write_str("tasks finished"),
        }
    }
}

/// A series' growth over windows, fitted by ordinary least squares, and where it
/// leads: the value `horizon` windows ahead, and when it reaches its limit.
///
/// The windows are placed by their end time, in window lengths from the first (so
/// a missing window leaves a gap, not a shift). The fitted line is
/// `value = intercept + slope × windows`; `windows_to_limit` counts from the last
/// window: 0 when the fitted line is already at or past the limit, `None` when it
/// never gets there (flat or falling).
///
/// ```
/// use std::time::Duration;
/// use concord::Timestamp;
/// use concord::monitor::{CapacityTrend, TrendSeries};
///
/// let day = Duration::from_secs(86_400);
/// // Utilization grows two points a day: 70%, 72%, ..., 78%.
/// let points: Vec<(Timestamp, f64)> = (0..5)
///     .map(|k| (Timestamp::from_secs(86_400 * (k + 1)), 0.70 + 0.02 * k as f64))
///     .collect();
/// let trend = CapacityTrend::fit(TrendSeries::Utilization, &points, day, 7, Some(0.95)).unwrap();
/// assert!((trend.slope_per_window - 0.02).abs() < 1e-12);
/// assert!((trend.projected - 0.92).abs() < 1e-9); // 78% + 7 x 2%
/// assert!((trend.windows_to_limit.unwrap() - 8.5).abs() < 1e-9);
/// // Reached 8.5 days after the last window, to within float rounding.
/// let expected = Timestamp::from_secs(86_400 * 13 + 43_200);
/// let at = trend.limit_at.unwrap();
/// assert!(at.duration_since(expected).max(expected.duration_since(at)) < Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CapacityTrend {
    /// The series.
    pub series: TrendSeries,
    /// The windows fitted.
    pub points: usize,
    /// The end of the last window fitted.
    pub last: Timestamp,
    /// The last value observed.
    pub latest: f64,
    /// Growth per window.
    pub slope_per_window: f64,
    /// The fitted value at the last window.
    pub fitted: f64,
    /// How many windows ahead `projected` is.
    pub horizon: u32,
    /// The fitted value `horizon` windows after the last.
    pub projected: f64,
    /// The capacity limit, if the series has one.
    pub limit: Option<f64>,
    /// Windows from the last until the fitted line reaches the limit.
    pub windows_to_limit: Option<f64>,
    /// When that is.
    pub limit_at: Option<Timestamp>,
}

impl CapacityTrend {
    /// Fits `points` (window end, value), one a window of length `window`, in any
    /// order; `None` with fewer than two finite points at distinct times.
    ///
    /// The points are sorted by time first (ties by value), so the same points give
    /// the same trend whatever their order: the earliest is the origin of the
    /// x axis and the latest is `last` and `latest`.
    ///
    /// # Complexity
    /// O(points × log points): a sort, then two passes.
    pub fn fit(
        series: TrendSeries,
        points: &[(Timestamp, f64)],
        window: Duration,
        horizon: u32,
        limit: Option<f64>,
    ) -> Option<CapacityTrend> {
        let mut points: Vec<(Timestamp, f64)> = points
            .iter()
            .copied()
            .filter(|(_, v)| v.is_finite())
            .collect();
        // The fit takes the first point as its origin (an earlier one would saturate
        // to x = 0) and the last as the latest: out of time order, the same points
        // gave another line. Ties by value, so that even the float sums add up in
        // one order whatever order the caller's was.
        points.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let first = points.first()?.0;
        let (&(last, latest), n) = (points.last()?, points.len());
        let step = window.as_secs_f64();
        if step <= 0.0 {
            return None;
        }
        let x = |t: Timestamp| t.duration_since(first).as_secs_f64() / step;
        let mean_x = points.iter().map(|p| x(p.0)).sum::<f64>() / n as f64;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n as f64;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for &(t, y) in &points {
            let dx = x(t) - mean_x;
            sxy += dx * (y - mean_y);
            sxx += dx * dx;
        }
        if sxx <= 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        let fitted = mean_y + slope * (x(last) - mean_x);
        let projected = fitted + slope * f64::from(horizon);
        let windows_to_limit = limit.and_then(|limit| {
            if fitted >= limit {
                Some(0.0)
            } else if slope > 0.0 {
                Some((limit - fitted) / slope)
            } else {
                None
            }
        });
        let limit_at = windows_to_limit.and_then(|w| {
            let d = Duration::try_from_secs_f64(w * step).ok()?;
            Some(last.saturating_add(d))
        });
        Some(CapacityTrend {
            series,
            points: n,
            last,
            latest,
            slope_per_window: slope,
            fitted,
            horizon,
            projected,
            limit,
            windows_to_limit,
            limit_at,
        })
    }

    /// The trends of a run of windows: the fleet's utilization and each resource's
    /// use (limited by `thresholds`' `utilization_high` and `resource_use_high`), and
    /// the tasks finished.
    pub fn from_windows<'a>(
        windows: impl Iterator<Item = &'a Window> + Clone,
        window: Duration,
        horizon: u32,
        thresholds: &Thresholds,
    ) -> Vec<CapacityTrend> {
        let mut out = Vec::new();
        let utilization: Vec<(Timestamp, f64)> = windows
            .clone()
            .filter_map(|w| Some((w.end, w.utilization()?)))
            .collect();
        out.extend(Self::fit(
            TrendSeries::Utilization,
            &utilization,
            window,
            horizon,
            Some(thresholds.utilization_high()),
        ));
        let mut names: Vec<&ResourceName> = windows
            .clone()
            .flat_map(|w| w.resources.iter().map(|r| &r.resource))
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            let uses: Vec<(Timestamp, f64)> = windows
                .clone()
                .filter_map(|w| Some((w.end, w.resource(name)?.mean_use()?)))
                .collect();
            out.extend(Self::fit(
                TrendSeries::ResourceUse {
                    resource: name.clone(),
                },
                &uses,
                window,
                horizon,
                Some(thresholds.resource_use_high()),
            ));
        }
        let finished: Vec<(Timestamp, f64)> = windows
            .map(|w| (w.end, w.tasks.finished() as f64))
            .collect();
        out.extend(Self::fit(
            TrendSeries::TasksFinished,
            &finished,
            window,
            horizon,
            None,
        ));
        out
    }
}

impl fmt::Display for CapacityTrend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.series;
        write!(
            f,
            "{s} {} ({:+.2}{} a window; {} in {} windows)",
            s.format(self.latest),
            if s.is_share() {
                self.slope_per_window * 100.0
            } else {
                self.slope_per_window
            },
            if s.is_share() { " points" } else { "" },
            s.format(self.projected),
            self.horizon
        )?;
        match (self.limit, self.windows_to_limit, self.limit_at) {
            (Some(limit), Some(w), Some(at)) => write!(
                f,
                "; reaches {} in {w:.1} windows, at {at}",
                s.format(limit)
            ),
            (Some(limit), _, _) => write!(f, "; does not reach {}", s.format(limit)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(day: u64) -> Timestamp {
        Timestamp::from_secs(86_400 * day)
    }

    #[test]
    fn a_flat_or_falling_series_never_reaches_its_limit() {
        let flat: Vec<_> = (1..=4).map(|d| (at(d), 0.5)).collect();
        let t = CapacityTrend::fit(TrendSeries::Utilization, &flat, DAY, 7, Some(0.95)).unwrap();
        assert_eq!(t.slope_per_window, 0.0);
        assert_eq!((t.windows_to_limit, t.limit_at), (None, None));
        assert_eq!(
            t.to_string(),
            "slot utilization 50% (+0.00 points a window; 50% in 7 windows); does not reach 95%"
        );
        let over: Vec<_> = (1..=4).map(|d| (at(d), 0.99 - 0.01 * d as f64)).collect();
        let t = CapacityTrend::fit(TrendSeries::Utilization, &over, DAY, 7, Some(0.95)).unwrap();
        assert_eq!(t.windows_to_limit, Some(0.0)); // already past it
    }

    #[test]
    fn gaps_count_as_time_and_too_few_points_fit_nothing() {
        // Days 1, 2 and 4: the missing day 3 is a gap, not a step.
        let points = [(at(1), 10.0), (at(2), 20.0), (at(4), 40.0)];
        let t = CapacityTrend::fit(TrendSeries::TasksFinished, &points, DAY, 1, None).unwrap();
        assert!((t.slope_per_window - 10.0).abs() < 1e-9);
        assert!((t.projected - 50.0).abs() < 1e-9);
        assert_eq!(t.windows_to_limit, None);
        assert!(
            CapacityTrend::fit(TrendSeries::TasksFinished, &points[..1], DAY, 1, None).is_none()
        );
        let same_time = [(at(1), 1.0), (at(1), 2.0)];
        assert!(CapacityTrend::fit(TrendSeries::TasksFinished, &same_time, DAY, 1, None).is_none());
        let with_nan = [(at(1), f64::NAN), (at(2), 1.0)];
        assert!(CapacityTrend::fit(TrendSeries::TasksFinished, &with_nan, DAY, 1, None).is_none());
    }

    #[test]
    fn a_limit_beyond_time_has_no_date() {
        let points = [(at(1), 0.0), (at(2), 1e-300)];
        let t = CapacityTrend::fit(TrendSeries::Utilization, &points, DAY, 1, Some(0.9)).unwrap();
        assert!(t.windows_to_limit.unwrap() > 1e290);
        assert_eq!(t.limit_at, None);
    }
}
