//! [`Summary`]: count, sum, extremes, mean and variance of a stream, in constant memory,
//! mergeable.

use serde::{Deserialize, Serialize};

/// Count, sum, minimum, maximum, mean and variance of a stream of numbers, in 48
/// bytes however long the stream.
///
/// The mean and variance are updated with Welford's method (one pass, no catastrophic
/// cancellation of a sum of squares) and merged with the pairwise formula of Chan,
/// Golub and LeVeque (1979), so that summaries of the parts of a stream, kept apart
/// (per window, per shard) and merged, give the summary of the whole stream, up to
/// rounding.
///
/// Values that are not finite (NaN, infinities) are not counted: one NaN would
/// otherwise make every later figure NaN.
///
/// The count saturates at `u64::MAX` rather than overflow (no stream gets there, a
/// hand-written or much-merged summary can): past it, values still move the sum,
/// extremes, mean and variance, weighted as if the count stood still. Nothing
/// deserialized makes [`add`](Self::add) or [`merge`](Self::merge) panic.
///
/// ```
/// use concord::monitor::Summary;
///
/// let mut morning = Summary::new();
/// let mut evening = Summary::new();
/// for x in [2.0, 4.0, 4.0] { morning.add(x); }
/// for x in [4.0, 5.0, 5.0, 7.0, 9.0] { evening.add(x); }
/// morning.merge(&evening);
/// assert_eq!(morning.count(), 8);
/// assert_eq!(morning.mean(), Some(5.0));
/// assert_eq!(morning.variance(), Some(4.0)); // population variance
/// assert_eq!((morning.min(), morning.max()), (Some(2.0), Some(9.0)));
/// ```
///
/// # Complexity
/// `add` and `merge` are O(1) time and space.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    count: u64,
    /// Infinite when the values add up past the largest float: in JSON as for the
    /// dashboard's figures, so that it reads back. Never NaN (see `merge`).
    #[serde(
        serialize_with = "crate::serde_util::any_f64::serialize",
        deserialize_with = "number_or_infinity"
    )]
    sum: f64,
    // With no value, all of these are zero (not infinite: serde formats such as JSON
    // have no infinity); `count` says whether they mean anything.
    min: f64,
    max: f64,
    mean: f64,
    /// The sum of squared deviations from the mean (Welford's M2): infinite when it
    /// passes the largest float, and written so in JSON. Never NaN.
    #[serde(
        serialize_with = "crate::serde_util::any_f64::serialize",
        deserialize_with = "number_or_infinity"
    )]
    m2: f64,
}

/// A sum that may have passed the largest float but is never NaN (see
/// [`add_sums`]): `null`, which is how JSON writes NaN, is refused, since no summary
/// or sketch holds it (and a NaN read back would not equal itself: a restored monitor
/// would differ from the one saved).
pub(super) fn number_or_infinity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = crate::serde_util::any_f64::deserialize(d)?;
    if v.is_nan() {
        return Err(serde::de::Error::custom(
            "a sum (of values or of squared deviations) is never NaN (null)",
        ));
    }
    Ok(v)
}

/// `a + b`, two sums of finite values either of which may have passed the largest
/// float, never NaN: where they passed it both ways (`inf + -inf`), the infinity
/// with the sign of `mean`, the mean of all the values (finite), which the true sum
/// (the mean times the count) shares. The mean is asked for only then: a sketch
/// works it out from its buckets. What [`Summary`] and
/// [`QuantileSketch`](super::QuantileSketch) merge their sums with.
pub(super) fn add_sums(a: f64, b: f64, mean: impl FnOnce() -> f64) -> f64 {
    let sum = a + b;
    if sum.is_nan() {
        return f64::INFINITY.copysign(mean());
    }
    sum
}

impl Summary {
    /// An empty summary.
    pub const fn new() -> Self {
        Summary {
            count: 0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
            mean: 0.0,
            m2: 0.0,
        }
    }

    /// Adds one value; returns whether it was counted (it is not when it is not
    /// finite).
    #[inline]
    pub fn add(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count = self.count.saturating_add(1);
        self.sum += x;
        let n = self.count as f64;
        let delta = x - self.mean;
        if delta.is_finite() {
            self.mean += delta / n;
            self.m2 += delta * (x - self.mean);
        } else {
            // `x` and the mean lie more than the largest float apart (`f64::MAX`
            // after `-f64::MAX`): Welford's step would make the mean infinite. Each
            // part divided first stays finite, and the mean moves toward `x` as it
            // should; a deviation past the largest float squares past it too.
            self.mean += x / n - self.mean / n;
            self.m2 = f64::INFINITY;
        }
        true
    }

    /// Adds every value of `other`, as if its values had been added one by one.
    pub fn merge(&mut self, other: &Summary) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        if delta.is_finite() {
            self.mean += delta * (nb / n);
            self.m2 += other.m2 + delta * delta * (na * nb / n);
        } else {
            // Means more than the largest float apart: the weighted average of the
            // two, each weighted first, stays finite and between them (see `add`).
            self.mean = self.mean * (na / n) + other.mean * (nb / n);
            self.m2 = f64::INFINITY;
        }
        self.count = self.count.saturating_add(other.count);
        self.sum = add_sums(self.sum, other.sum, || self.mean);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether no value was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The sum of the values (zero when empty): infinite when it passes the largest
    /// float (merged past it both ways, with the sign of the mean). The mean does
    /// not depend on it and stays finite.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The smallest value.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest value.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The mean: finite, and within the extremes up to rounding, even where the sum
    /// is not.
    pub fn mean(&self) -> Option<f64> {
        // Kept inside the extremes, where rounding could nudge a running mean just
        // past them (not `f64::clamp`, which panics on a deserialized min above max).
        (self.count > 0).then(|| self.mean.max(self.min).min(self.max))
    }

    /// The population variance (the mean squared deviation from the mean):
    /// infinite when it passes the largest float.
    pub fn variance(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.m2 / self.count as f64).max(0.0))
    }

    /// The sample variance (Bessel's correction: divided by `count - 1`), from two
    /// values on.
    pub fn sample_variance(&self) -> Option<f64> {
        (self.count > 1).then(|| (self.m2 / (self.count - 1) as f64).max(0.0))
    }

    /// The population standard deviation.
    pub fn std_dev(&self) -> Option<f64> {
        self.variance().map(f64::sqrt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn empty_has_no_figures_and_merging_it_changes_nothing() {
        let mut s = Summary::new();
        assert_eq!((s.mean(), s.min(), s.variance()), (None, None, None));
        s.add(3.0);
        let before = s;
        s.merge(&Summary::new());
        assert_eq!(s, before);
        let mut e = Summary::new();
        e.merge(&before);
        assert_eq!(e, before);
    }

    #[test]
    fn non_finite_values_are_not_counted() {
        let mut s = Summary::new();
        assert!(!s.add(f64::NAN));
        assert!(!s.add(f64::INFINITY));
        assert!(s.add(1.0));
        assert_eq!(s.count(), 1);
        assert_eq!(s.mean(), Some(1.0));
    }

    #[test]
    fn welford_keeps_precision_where_a_sum_of_squares_would_not() {
        // Values around 1e9 with variance 1: a naive E[x^2] - E[x]^2 loses all digits.
        let mut s = Summary::new();
        for k in 0..1000 {
            s.add(1e9 + if k % 2 == 0 { 1.0 } else { -1.0 });
        }
        assert!(close(s.variance().unwrap(), 1.0), "{:?}", s.variance());
        assert_eq!(s.sample_variance().map(|v| v > 1.0), Some(true));
    }

    #[test]
    fn a_count_at_the_bound_saturates_and_nothing_panics() {
        let json =
            r#"{"count":18446744073709551615,"sum":1.0,"min":1.0,"max":1.0,"mean":1.0,"m2":0.0}"#;
        let mut s: Summary = serde_json::from_str(json).unwrap();
        assert!(s.add(1.0));
        assert_eq!(s.count(), u64::MAX);
        let other = s;
        s.merge(&other);
        assert_eq!(s.count(), u64::MAX);
        assert_eq!(s.mean(), Some(1.0));
        assert!(s.sample_variance().is_some());
    }

    proptest::proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/monitor_summary.txt"))]
        #[test]
        fn merged_parts_equal_the_whole(
            xs in proptest::collection::vec(-1e6f64..1e6, 0..200),
            cut in 0usize..200,
        ) {
            let cut = cut.min(xs.len());
            let (mut a, mut b, mut whole) = (Summary::new(), Summary::new(), Summary::new());
            xs[..cut].iter().for_each(|&x| { a.add(x); });
            xs[cut..].iter().for_each(|&x| { b.add(x); });
            xs.iter().for_each(|&x| { whole.add(x); });
            a.merge(&b);
            proptest::prop_assert_eq!(a.count(), whole.count());
            proptest::prop_assert_eq!(a.min(), whole.min());
            proptest::prop_assert_eq!(a.max(), whole.max());
            if let (Some(m1), Some(m2)) = (a.mean(), whole.mean()) {
                proptest::prop_assert!(close(m1, m2));
                let (v1, v2) = (a.variance().unwrap(), whole.variance().unwrap());
                proptest::prop_assert!((v1 - v2).abs() <= 1e-6 * v2.max(1.0), "{} vs {}", v1, v2);
            }
        }
    }
}
