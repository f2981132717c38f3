//! [`QuantileSketch`]: quantiles of a stream with a stated relative accuracy, in
//! bounded memory, mergeable (DDSketch).

use serde::{Deserialize, Serialize};

use super::error::{MonitorError, check_range};
use super::summary::add_sums;
use crate::id::COUNTER_LIMIT;

/// The settings of a [`QuantileSketch`].
///
/// | setting | meaning | default |
/// |---|---|---|
/// | `relative_accuracy` | every quantile is within this fraction of the true one | 0.01 (1%) |
/// | `max_buckets` | buckets per sign, the memory bound (8 bytes each) | 2048 |
///
/// At 1% and 2048 buckets a sketch spans values over 17 orders of magnitude (a
/// nanosecond to three years, in seconds) before it gives up accuracy, and then only
/// at the low end (see [`QuantileSketch`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SketchConfig {
    relative_accuracy: f64,
    max_buckets: u32,
}

impl Default for SketchConfig {
    fn default() -> Self {
        SketchConfig {
            relative_accuracy: 0.01,
            max_buckets: 2048,
        }
    }
}

impl SketchConfig {
    /// Sets the relative accuracy, in `[0.0001, 0.5]`.
    pub fn with_relative_accuracy(mut self, accuracy: f64) -> Self {
        self.relative_accuracy = accuracy;
        self
    }

    /// Sets the bucket limit per sign, in `[16, 65536]`.
    pub fn with_max_buckets(mut self, buckets: u32) -> Self {
        self.max_buckets = buckets;
        self
    }

    /// The relative accuracy.
    pub fn relative_accuracy(&self) -> f64 {
        self.relative_accuracy
    }

    /// The bucket limit per sign.
    pub fn max_buckets(&self) -> u32 {
        self.max_buckets
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`MonitorError::Setting`] naming the first one out of range.
    pub fn validate(&self) -> Result<(), MonitorError> {
        check_range(
            "sketch.relative_accuracy",
            self.relative_accuracy,
            1e-4,
            0.5,
            "in [0.0001, 0.5]",
        )?;
        if !(16..=65_536).contains(&self.max_buckets) {
            return Err(MonitorError::setting(
                "sketch.max_buckets",
                self.max_buckets,
                "in [16, 65536]",
            ));
        }
        Ok(())
    }
}

/// The counts of one sign's buckets: a dense run of counts from bucket `offset` on, at
/// most `max` long; past that the lowest buckets are folded into the lowest kept one
/// (DDSketch's "collapsing lowest" store). Counts saturate at `u64::MAX` (see
/// [`QuantileSketch`]'s "Bounds"): no addition here can overflow.
#[derive(Debug, Clone, Default, PartialEq)]
struct Store {
    offset: i64,
    counts: Vec<u64>,
}

impl Store {
    /// Adds `n` to bucket `index`, keeping at most `max` buckets.
    fn add(&mut self, index: i64, n: u64, max: usize) {
        if n == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(n);
            return;
        }
        let len = self.counts.len() as i64;
        let hi = self.offset + len - 1;
        if index > hi {
            let new_len = (index - self.offset + 1) as usize;
            if new_len - self.counts.len() > max {
                // Everything held folds into the lowest bucket kept: no need to make
                // room for the buckets between.
                let folded = saturating_sum(&self.counts);
                self.counts.clear();
                self.offset = index - max as i64 + 1;
                self.counts.resize(max, 0);
                self.counts[0] = folded;
                bump(&mut self.counts[max - 1], n);
                return;
            }
            self.counts.resize(new_len, 0);
            bump(&mut self.counts[new_len - 1], n);
            if new_len > max {
                let k = new_len - max;
                let folded = saturating_sum(&self.counts[..k]);
                self.counts.drain(..k);
                bump(&mut self.counts[0], folded);
                self.offset += k as i64;
            }
        } else if index < self.offset {
            // Below the kept range's floor, a value lands in the lowest bucket allowed.
            let floor = hi - max as i64 + 1;
            let index = index.max(floor);
            if index < self.offset {
                let k = (self.offset - index) as usize;
                self.counts.splice(0..0, std::iter::repeat_n(0, k));
                self.offset = index;
            }
            bump(&mut self.counts[(index - self.offset) as usize], n);
        } else {
            bump(&mut self.counts[(index - self.offset) as usize], n);
        }
    }

    /// The sum of the counts, saturating.
    fn total(&self) -> u64 {
        saturating_sum(&self.counts)
    }

    /// The non-empty buckets, lowest first.
    fn buckets(&self) -> impl DoubleEndedIterator<Item = (i64, u64)> + '_ {
        let offset = self.offset;
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(move |(k, c)| (offset + k as i64, *c))
    }
}

/// `*count += n`, saturating at `u64::MAX`.
#[inline]
fn bump(count: &mut u64, n: u64) {
    *count = count.saturating_add(n);
}

fn saturating_sum(counts: &[u64]) -> u64 {
    counts.iter().fold(0, |sum, &c| sum.saturating_add(c))
}

/// Quantiles of a stream of numbers, each within a stated relative accuracy of the
/// true one, in bounded memory; sketches of the parts of a stream merge into the
/// sketch of the whole.
///
/// # How
///
/// This is DDSketch (Masson, Rim and Lee, "DDSketch: a fast and fully-mergeable
/// quantile sketch with relative-error guarantees", VLDB 2019). With relative accuracy
/// `α` and `γ = (1 + α) / (1 - α)`, a positive value `x` is counted in bucket
/// `i = ⌈log_γ x⌉`, which holds the values in `(γ^(i-1), γ^i]`; the bucket's value,
/// `2γ^i / (γ + 1)`, is within `α` of each of them. A quantile walks the buckets to
/// the one holding the value of rank `q × (count − 1)` and returns its value, clamped
/// to the exact minimum and maximum, which the sketch keeps (so `quantile(0.0)` and
/// `quantile(1.0)` are exact). Negative values are counted in a second store by their
/// magnitude; zero (and anything smaller in magnitude than the smallest normal float)
/// in a counter of its own.
///
/// Memory is bounded: each store keeps at most `max_buckets` buckets. When the
/// values span more than that, the lowest buckets are folded into the lowest one
/// kept, which keeps the high quantiles exact to `α` (the ones a latency budget is
/// about) and gives up accuracy only for values below `max / γ^max_buckets`, 17
/// orders of magnitude below the maximum at the defaults.
///
/// Merging adds the bucket counts; with the folding rule above, merging the sketches
/// of the parts gives exactly the buckets of the sketch of the whole, whatever the
/// order (only the float `sum` may differ by rounding).
///
/// # Bounds
///
/// The count, the zero counter and the bucket counts saturate at `u64::MAX` rather
/// than overflow: [`add`](Self::add) and [`merge`](Self::merge) never panic. No
/// stream gets near it (a billion values a second for 584 years), but merging
/// sketches again and again can: a sketch whose count has saturated stops counting,
/// its quantiles lean toward the values counted first, and it no longer deserializes
/// (see "Serde").
///
/// # Serde
///
/// A sketch serializes its settings, exact figures and non-empty buckets.
/// Deserializing rebuilds the buckets (so a hand-written sketch still holds at most
/// `max_buckets` a sign) and refuses, with [`MonitorError::SketchBucket`], a bucket
/// no finite value falls in, and with [`MonitorError::CorruptSnapshot`] a total
/// count at or past 2^63 (like the crate's other counters restored from data, and
/// leaving room for merges), and figures that contradict the buckets, which
/// `quantile` and `mean` would otherwise report: when it holds values, a `min` or
/// `max` that is not finite, a `min` above `max`, a `min` that is not a value of the
/// lowest bucket counted in or a `max` of the highest (to within one bucket, as
/// another platform's logarithm may round a value at a bucket's edge the other way;
/// below the lowest, when it holds values folded into it), or a `sum` that no
/// `count` values from `min` to `max` add up to (to within the rounding of a float
/// sum); when it holds none, a `min`, `max` or `sum` other than 0. The reason names
/// the field and its value. A `sum` of `null` (NaN, which no sketch holds) is refused
/// as it is read. Every sketch [`add`](Self::add) and
/// [`merge`](Self::merge) build reads back. What deserializes never panics on use.
///
/// # Departures from the paper
///
/// The bucket index is computed with `ln` (the paper's logarithmic mapping, the most
/// compact one) rather than the faster interpolated mappings of the reference
/// implementations: at the monitor's rates (a handful of values per task) the
/// logarithm is not what costs.
///
/// # Complexity
/// `add`: O(1) amortized (growing the bucket range moves at most `max_buckets`
/// counts, once). `quantile`: O(buckets). `merge`: O(buckets of the other). Memory:
/// at most `2 × max_buckets` counts of 8 bytes.
///
/// ```
/// use concord::monitor::QuantileSketch;
///
/// let mut waits = QuantileSketch::default(); // 1%, 2048 buckets
/// for ms in 1..=1000 {
///     waits.add(ms as f64);
/// }
/// let p99 = waits.quantile(0.99).unwrap();
/// assert!((p99 - 990.0).abs() <= 0.01 * 990.0);
/// assert_eq!(waits.quantile(1.0), Some(1000.0)); // the exact maximum
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SketchData", into = "SketchData")]
pub struct QuantileSketch {
    config: SketchConfig,
    ln_gamma: f64,
    inv_ln_gamma: f64,
    /// `2 / (γ + 1)`: a bucket's value is `γ^i` times this.
    value_factor: f64,
    positive: Store,
    negative: Store,
    zero: u64,
    count: u64,
    /// Infinite when the values add up past the largest float; never NaN: `add`
    /// adds a finite value, which cannot turn an infinity into NaN, and `merge`
    /// adds sums with [`add_sums`].
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for QuantileSketch {
    /// A sketch at the default settings (1%, 2048 buckets).
    fn default() -> Self {
        Self::with_valid(SketchConfig::default())
    }
}

impl QuantileSketch {
    /// An empty sketch.
    ///
    /// # Errors
    /// [`MonitorError::Setting`] if a setting is out of range.
    pub fn new(config: SketchConfig) -> Result<Self, MonitorError> {
        config.validate()?;
        Ok(Self::with_valid(config))
    }

    fn with_valid(config: SketchConfig) -> Self {
        let a = config.relative_accuracy;
        let gamma = (1.0 + a) / (1.0 - a);
        let ln_gamma = gamma.ln();
        QuantileSketch {
            config,
            ln_gamma,
            inv_ln_gamma: 1.0 / ln_gamma,
            value_factor: 2.0 / (gamma + 1.0),
            positive: Store::default(),
            negative: Store::default(),
            zero: 0,
            count: 0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
        }
    }

    /// The settings.
    pub fn config(&self) -> SketchConfig {
        self.config
    }

    #[inline]
    fn index(&self, magnitude: f64) -> i64 {
        // A float-to-int cast saturates: no overflow whatever the value.
        (magnitude.ln() * self.inv_ln_gamma).ceil() as i64
    }

    fn value(&self, index: i64) -> f64 {
        (index as f64 * self.ln_gamma).exp() * self.value_factor
    }

    /// Adds a value; returns whether it was counted (NaN and infinities are not). The
    /// counts saturate at `u64::MAX` (see "Bounds").
    #[inline]
    pub fn add(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        let max = self.config.max_buckets as usize;
        if x >= f64::MIN_POSITIVE {
            let i = self.index(x);
            self.positive.add(i, 1, max);
        } else if x <= -f64::MIN_POSITIVE {
            let i = self.index(-x);
            self.negative.add(i, 1, max);
        } else {
            bump(&mut self.zero, 1);
        }
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        bump(&mut self.count, 1);
        self.sum += x;
        true
    }

    /// Adds every value of `other`. The counts saturate at `u64::MAX` (see "Bounds").
    ///
    /// # Errors
    /// [`MonitorError::SketchMismatch`] if the settings differ; `self` is unchanged.
    pub fn merge(&mut self, other: &QuantileSketch) -> Result<(), MonitorError> {
        self.check_mergeable(other)?;
        self.merge_unchecked(other);
        Ok(())
    }

    pub(crate) fn check_mergeable(&self, other: &QuantileSketch) -> Result<(), MonitorError> {
        if self.config == other.config {
            Ok(())
        } else {
            Err(MonitorError::SketchMismatch {
                left: self.config.relative_accuracy,
                left_buckets: self.config.max_buckets,
                right: other.config.relative_accuracy,
                right_buckets: other.config.max_buckets,
            })
        }
    }

    pub(crate) fn merge_unchecked(&mut self, other: &QuantileSketch) {
        if other.count == 0 {
            return;
        }
        let max = self.config.max_buckets as usize;
        for (i, c) in other.positive.buckets() {
            self.positive.add(i, c, max);
        }
        for (i, c) in other.negative.buckets() {
            self.negative.add(i, c, max);
        }
        bump(&mut self.zero, other.zero);
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        bump(&mut self.count, other.count);
        // Once the buckets, extremes and count are merged: the mean the sum's sign
        // may come from is the merged sketch's.
        self.sum = add_sums(self.sum, other.sum, || self.mean_of_buckets());
    }

    /// The value at quantile `q` in `[0, 1]` (0.5 the median, 0.99 the 99th
    /// percentile), within the relative accuracy of the value of rank
    /// `⌊q × (count − 1)⌋` in the sorted stream; `None` when empty or `q` is out of
    /// range.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        if q == 0.0 {
            return Some(self.min);
        }
        if q == 1.0 {
            return Some(self.max);
        }
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        // Not `f64::clamp`, which panics if `min > max`: deserializing refuses that,
        // and whatever the state, this does not panic.
        let clamp = |v: f64| v.max(self.min).min(self.max);
        let mut seen = 0u64;
        // The most negative values first: the highest magnitudes of the negative store.
        for (i, c) in self.negative.buckets().rev() {
            seen = seen.saturating_add(c);
            if seen > rank {
                return Some(clamp(-self.value(i)));
            }
        }
        seen = seen.saturating_add(self.zero);
        if seen > rank {
            return Some(clamp(0.0));
        }
        for (i, c) in self.positive.buckets() {
            seen = seen.saturating_add(c);
            if seen > rank {
                return Some(clamp(self.value(i)));
            }
        }
        Some(self.max)
    }

    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether no value was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The sum of the values: infinite when it passes the largest float (merged past
    /// it both ways, with the sign of the mean). Never NaN.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The exact smallest value.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The exact largest value.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The mean: exact (to the rounding of the sum), or, where the sum passed the
    /// largest float, estimated from the buckets to within the relative accuracy.
    /// Finite, and within the extremes.
    pub fn mean(&self) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let mean = Some(self.sum / self.count as f64)
            .filter(|m| m.is_finite())
            .unwrap_or_else(|| self.mean_of_buckets());
        // Not `f64::clamp` (see `quantile`).
        Some(mean.max(self.min).min(self.max))
    }

    /// The mean of the buckets' values, each weighted by its share of the count
    /// before it is added, so that nothing overflows: the mean of a sketch whose
    /// sum did. Each sign is averaged apart, each part at most the largest
    /// magnitude, and their sum at most the larger of the two.
    fn mean_of_buckets(&self) -> f64 {
        let n = self.count as f64;
        // A bucket's value is inside the extremes (the top bucket's may pass the
        // largest float).
        let value = |v: f64| v.max(self.min).min(self.max);
        let positive: f64 = (self.positive.buckets())
            .map(|(i, c)| value(self.value(i)) * (c as f64 / n))
            .sum();
        let negative: f64 = (self.negative.buckets())
            .map(|(i, c)| value(-self.value(i)) * (c as f64 / n))
            .sum();
        positive + negative
    }

    /// How many buckets are held (both signs): what the memory is, at 8 bytes each.
    pub fn bucket_count(&self) -> usize {
        self.positive.counts.len() + self.negative.counts.len()
    }
}

/// The serialized form: the settings, the exact figures, and the non-empty buckets as
/// `[index, count]` pairs (sparse: a sketch of a narrow stream stays small).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SketchData {
    relative_accuracy: f64,
    max_buckets: u32,
    #[serde(default)]
    zero: u64,
    /// May be infinite (see `sum`), in JSON as `"Infinity"`; never NaN, so `null`
    /// is refused.
    #[serde(
        default,
        serialize_with = "crate::serde_util::any_f64::serialize",
        deserialize_with = "super::summary::number_or_infinity"
    )]
    sum: f64,
    #[serde(default)]
    min: f64,
    #[serde(default)]
    max: f64,
    #[serde(default)]
    positive: Vec<(i64, u64)>,
    #[serde(default)]
    negative: Vec<(i64, u64)>,
}

impl From<QuantileSketch> for SketchData {
    fn from(s: QuantileSketch) -> Self {
        SketchData {
            relative_accuracy: s.config.relative_accuracy,
            max_buckets: s.config.max_buckets,
            zero: s.zero,
            sum: s.sum,
            min: s.min,
            max: s.max,
            positive: s.positive.buckets().collect(),
            negative: s.negative.buckets().collect(),
        }
    }
}

impl TryFrom<SketchData> for QuantileSketch {
    type Error = MonitorError;

    /// Rebuilds the stores through `add`, so that a hand-written or corrupt sketch
    /// still holds at most `max_buckets` buckets a sign; refuses what no stream leads
    /// to and what would misbehave later (see the type's "Serde").
    fn try_from(d: SketchData) -> Result<Self, MonitorError> {
        let config = SketchConfig {
            relative_accuracy: d.relative_accuracy,
            max_buckets: d.max_buckets,
        };
        let mut s = QuantileSketch::new(config)?;
        // Finite values at the finest accuracy fall within a few million buckets of 0:
        // anything past 2^31 is corrupt, and would overflow the store's arithmetic.
        const LIMIT: i64 = 1 << 31;
        if let Some(&(index, _)) = d
            .positive
            .iter()
            .chain(&d.negative)
            .find(|(i, _)| !(-LIMIT..=LIMIT).contains(i))
        {
            return Err(MonitorError::SketchBucket { index });
        }
        let corrupt = |reason: String| MonitorError::CorruptSnapshot {
            reason: format!("quantile sketch: {reason}"),
        };
        // Counted before anything is added (in u128: no list of u64 counts a host
        // can send overflows it). Below 2^63, no merge of two sketches saturates.
        let total = d
            .positive
            .iter()
            .chain(&d.negative)
            .fold(u128::from(d.zero), |sum, &(_, c)| sum + u128::from(c));
        let count = match u64::try_from(total) {
            Ok(count) if count < COUNTER_LIMIT => count,
            _ => {
                return Err(corrupt(format!(
                    "it counts {total} values, past any stream (2^63)"
                )));
            }
        };
        if count > 0 && !(d.min.is_finite() && d.max.is_finite() && d.min <= d.max) {
            return Err(corrupt(format!(
                "it holds {count} values but its minimum is {} and its maximum {}",
                d.min, d.max
            )));
        }
        let max = d.max_buckets as usize;
        for (i, c) in d.positive {
            s.positive.add(i, c, max);
        }
        for (i, c) in d.negative {
            s.negative.add(i, c, max);
        }
        debug_assert_eq!(
            s.positive.total() + s.negative.total() + d.zero,
            count,
            "folding keeps every count"
        );
        s.zero = d.zero;
        s.count = count;
        if count == 0 {
            // What an empty sketch writes: a sketch without values has no extremes
            // and no sum to carry.
            for (field, value) in [("min", d.min), ("max", d.max), ("sum", d.sum)] {
                if value != 0.0 {
                    return Err(corrupt(format!(
                        "it holds no values but its `{field}` is {value:?}"
                    )));
                }
            }
            return Ok(s);
        }
        s.check_extremes(d.min, d.max).map_err(corrupt)?;
        (s.min, s.max) = (d.min, d.max);
        s.check_sum(d.sum).map_err(corrupt)?;
        s.sum = d.sum;
        Ok(s)
    }
}

/// Where [`QuantileSketch::add`] counts a value: a bucket of either store (by
/// magnitude), or the zero counter.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    Negative(i64),
    Zero,
    Positive(i64),
}

impl QuantileSketch {
    /// Where `add` counts `x` (finite).
    fn place(&self, x: f64) -> Place {
        if x >= f64::MIN_POSITIVE {
            Place::Positive(self.index(x))
        } else if x <= -f64::MIN_POSITIVE {
            Place::Negative(self.index(-x))
        } else {
            Place::Zero
        }
    }

    /// The values `place` holds, for a message.
    fn describe(&self, place: Place) -> String {
        let bound = |i: i64| (i as f64 * self.ln_gamma).exp();
        match place {
            Place::Positive(i) => format!("bucket {i} ({:.4e} to {:.4e})", bound(i - 1), bound(i)),
            Place::Negative(i) => format!(
                "negative bucket {i} ({:.4e} to {:.4e})",
                -bound(i),
                -bound(i - 1)
            ),
            Place::Zero => format!(
                "the zero counter (magnitudes below {:e})",
                f64::MIN_POSITIVE
            ),
        }
    }

    /// Checks, once the stores are rebuilt, that `min` is a value of the lowest place
    /// counted in and `max` of the highest: a `min` or `max` from elsewhere would be
    /// what `quantile` clamps to, and `quantile(0.0)` and `quantile(1.0)` report.
    ///
    /// A store's lowest bucket also holds the values folded into it once the store
    /// spans `max_buckets` (see the type's docs): the value at that end may then be
    /// anywhere below it. Elsewhere the index may differ by one from the bucket's,
    /// as another platform's `ln` may round a value at a bucket's edge the other way.
    fn check_extremes(&self, min: f64, max: f64) -> Result<(), String> {
        let full = |store: &Store| store.counts.len() >= self.config.max_buckets as usize;
        let lowest = match (
            self.negative.buckets().next_back(),
            self.positive.buckets().next(),
        ) {
            (Some((i, _)), _) => Place::Negative(i),
            (None, _) if self.zero > 0 => Place::Zero,
            (None, Some((i, _))) => Place::Positive(i),
            // Not reached: the sketch holds values, so one of the three counts them.
            (None, None) => Place::Zero,
        };
        let highest = match (
            self.positive.buckets().next_back(),
            self.negative.buckets().next(),
        ) {
            (Some((i, _)), _) => Place::Positive(i),
            (None, _) if self.zero > 0 => Place::Zero,
            (None, Some((i, _))) => Place::Negative(i),
            (None, None) => Place::Zero,
        };
        // Whether `got` is `want`, to within one bucket, or below it when the
        // bucket holds folded values.
        let near = |got: i64, want: i64, folded: bool| {
            got <= want.saturating_add(1) && (folded || got >= want.saturating_sub(1))
        };
        let fits = |got: Place, want: Place, folded_at_want: bool| match (got, want) {
            (Place::Zero, Place::Zero) => true,
            (Place::Positive(g), Place::Positive(w)) | (Place::Negative(g), Place::Negative(w)) => {
                near(g, w, folded_at_want)
            }
            _ => false,
        };
        for (field, value, want, folded, end) in [
            (
                "min",
                min,
                lowest,
                matches!(lowest, Place::Positive(_)) && full(&self.positive),
                "lowest",
            ),
            (
                "max",
                max,
                highest,
                matches!(highest, Place::Negative(_)) && full(&self.negative),
                "highest",
            ),
        ] {
            if !fits(self.place(value), want, folded) {
                return Err(format!(
                    "`{field}` {value:?} is not a value of {}, the {end} it counts in",
                    self.describe(want)
                ));
            }
        }
        Ok(())
    }

    /// Checks, once the extremes are checked, that `sum` is one of `count` values in
    /// `[min, max]`: a sum from elsewhere would be what `mean` reports.
    ///
    /// The sum was added up in floats, in the order the values came and the parts
    /// merged: each addition rounds by up to half an epsilon of its result, so the sum
    /// of `n` values of magnitude at most `m` is within about `(n - 1)·ε/2·n·m` of
    /// the exact one, whatever the order (Higham, *Accuracy and Stability of
    /// Numerical Algorithms*, 2nd ed., §4.2), and the mean within `(n - 1)·ε/2·m`
    /// of the exact mean, which lies in `[min, max]`. The mean is allowed over twice
    /// that, `n·ε·m`, capped at `m` (past 2^52 values the bound says nothing). Only
    /// a sum near the largest float can overflow: a sum that is not finite is
    /// allowed only there.
    fn check_sum(&self, sum: f64) -> Result<(), String> {
        let n = self.count as f64;
        let m = self.min.abs().max(self.max.abs());
        let fits = if sum.is_finite() {
            let slack = (n * f64::EPSILON).min(1.0) * m;
            // Rounding is monotone: a mean of values in a range rounds into it, so
            // dividing adds no error of its own.
            let mean = sum / n;
            self.min - slack <= mean && mean <= self.max + slack
        } else {
            !(2.0 * n * m).is_finite()
        };
        if fits {
            Ok(())
        } else {
            Err(format!(
                "`sum` {sum:?} is not a sum of {} values from {:?} to {:?}",
                self.count, self.min, self.max
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of rank `⌊q (n - 1)⌋` of sorted `xs`: what a quantile answers.
    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn quantiles_are_within_the_relative_accuracy_on_a_heavy_tail() {
        let mut seed = 7;
        let mut xs: Vec<f64> = (0..20_000)
            // Log-uniform over six orders of magnitude, and some negatives and zeros.
            .map(|k| match k % 10 {
                0 => 0.0,
                1 => -(10f64.powf(6.0 * lcg(&mut seed))),
                _ => 10f64.powf(6.0 * lcg(&mut seed) - 3.0),
            })
            .collect();
        let mut s = QuantileSketch::default();
        xs.iter().for_each(|&x| assert!(s.add(x)));
        xs.sort_by(f64::total_cmp);
        for q in [
            0.0, 0.01, 0.05, 0.1, 0.15, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0,
        ] {
            let (got, want) = (s.quantile(q).unwrap(), exact(&xs, q));
            assert!(
                (got - want).abs() <= 0.01 * want.abs() + 1e-12,
                "q {q}: {got} vs {want}"
            );
        }
        assert_eq!(s.count(), 20_000);
        assert_eq!(s.quantile(1.5), None);
        assert_eq!(QuantileSketch::default().quantile(0.5), None);
    }

    #[test]
    fn memory_is_bounded_and_the_top_stays_accurate() {
        // 64 buckets at 1% span a factor of 3.6: values over 300 orders of magnitude
        // below the top fold into its lowest bucket, the top stays accurate.
        let config = SketchConfig::default().with_max_buckets(64);
        let mut s = QuantileSketch::new(config).unwrap();
        let mut xs: Vec<f64> = (-150..0).map(|k| 10f64.powi(k)).collect();
        let mut seed = 3;
        xs.extend((0..1000).map(|_| 1000.0 + 1000.0 * lcg(&mut seed)));
        xs.iter().for_each(|&x| {
            s.add(x);
        });
        assert!(s.bucket_count() <= 64, "{}", s.bucket_count());
        xs.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.99, 1.0] {
            let (got, want) = (s.quantile(q).unwrap(), exact(&xs, q));
            assert!((got - want).abs() <= 0.01 * want, "q {q}: {got} vs {want}");
        }
        // The low end gave up accuracy, but stays within the exact extremes.
        assert!(s.quantile(0.01).unwrap() >= s.min().unwrap());
        assert_eq!(s.min(), Some(xs[0]));
    }

    #[test]
    fn settings_out_of_range_are_named() {
        let bad = SketchConfig::default().with_relative_accuracy(0.0);
        let err = QuantileSketch::new(bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting `sketch.relative_accuracy` is 0: it must be in [0.0001, 0.5]"
        );
        let bad = SketchConfig::default().with_max_buckets(3);
        assert!(matches!(
            QuantileSketch::new(bad),
            Err(MonitorError::Setting {
                setting: "sketch.max_buckets",
                ..
            })
        ));
        let mut a = QuantileSketch::default();
        let b = QuantileSketch::new(SketchConfig::default().with_relative_accuracy(0.02)).unwrap();
        a.add(1.0);
        let before = a.clone();
        assert!(matches!(
            a.merge(&b),
            Err(MonitorError::SketchMismatch { .. })
        ));
        assert_eq!(a, before);
    }

    #[test]
    fn serde_round_trips_and_a_corrupt_sketch_is_bounded_or_refused() {
        let mut s = QuantileSketch::default();
        for x in [-3.0, 0.0, 0.5, 2.0, 1e9] {
            s.add(x);
        }
        let json = serde_json::to_string(&s).unwrap();
        let back: QuantileSketch = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        // Buckets far apart in a hand-written sketch fold as `add` would (1 is in
        // bucket 0, 3e260 in bucket 29988).
        let wide = r#"{"relative_accuracy":0.01,"max_buckets":16,"min":1,"max":3e260,
            "sum":3e260,"positive":[[0,1],[29988,1]]}"#;
        let w: QuantileSketch = serde_json::from_str(wide).unwrap();
        assert!(w.bucket_count() <= 16);
        assert_eq!(w.count(), 2);
        let bad = r#"{"relative_accuracy":2.0,"max_buckets":16}"#;
        assert!(serde_json::from_str::<QuantileSketch>(bad).is_err());
        let far = r#"{"relative_accuracy":0.01,"max_buckets":16,
            "positive":[[-9000000000000000000,1],[9000000000000000000,1]]}"#;
        let err = serde_json::from_str::<QuantileSketch>(far).unwrap_err();
        assert!(
            err.to_string()
                .contains("sketch bucket -9000000000000000000 is out of range"),
            "{err}"
        );
    }

    fn data(zero: u64, min: f64, max: f64, positive: Vec<(i64, u64)>) -> SketchData {
        SketchData {
            relative_accuracy: 0.01,
            max_buckets: 16,
            zero,
            sum: 0.0,
            min,
            max,
            positive,
            negative: Vec::new(),
        }
    }

    fn refused(d: SketchData) -> String {
        match QuantileSketch::try_from(d) {
            Err(MonitorError::CorruptSnapshot { reason }) => reason,
            other => panic!("not refused as corrupt: {other:?}"),
        }
    }

    #[test]
    fn counts_past_any_stream_are_refused_not_a_panic() {
        // Two buckets, or a fold of buckets, summing past u64::MAX: refused before
        // the store adds them.
        let two = data(0, 1.0, 1.0, vec![(0, u64::MAX), (0, 1)]);
        assert!(refused(two).contains("2^63"));
        let fold = data(0, 1.0, 1e30, vec![(0, u64::MAX), (1, u64::MAX), (100, 1)]);
        assert!(refused(fold).contains("2^63"));
        // At 2^63 exactly, in the buckets or in the zeros alone.
        let at = data(0, 1.0, 1.0, vec![(0, 1 << 62), (1, 1 << 62)]);
        assert!(refused(at).contains("2^63"));
        assert!(refused(data(1 << 63, 0.0, 0.0, Vec::new())).contains("2^63"));
        // Through serde: an error, not a panic.
        let json = r#"{"relative_accuracy":0.01,"max_buckets":2048,"min":1,"max":1,
            "positive":[[0,18446744073709551615],[0,1]]}"#;
        let err = serde_json::from_str::<QuantileSketch>(json).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        // Just below the bound is a sketch like any other.
        let below = data(1, 0.0, 1.0, vec![(0, (1 << 63) - 2)]);
        let s = QuantileSketch::try_from(below).unwrap();
        assert_eq!(s.count(), (1 << 63) - 1);
        assert!((s.quantile(0.5).unwrap() - 1.0).abs() <= 0.01);
    }

    #[test]
    fn extremes_out_of_order_or_not_numbers_are_refused() {
        let reason = refused(data(0, 5.0, 1.0, vec![(10, 3)]));
        assert!(
            reason.contains("minimum is 5 and its maximum 1"),
            "{reason}"
        );
        for (min, max) in [
            (f64::NAN, 1.0),
            (1.0, f64::NAN),
            (f64::NEG_INFINITY, 1.0),
            (0.0, f64::INFINITY),
        ] {
            refused(data(1, min, max, Vec::new()));
        }
        // An empty sketch has no extremes and no sum: anything else is from
        // elsewhere.
        let reason = refused(data(0, 5.0, f64::NAN, Vec::new()));
        assert_eq!(
            reason,
            "quantile sketch: it holds no values but its `min` is 5.0"
        );
        let mut d = data(0, 0.0, 0.0, Vec::new());
        d.sum = -1.0;
        let reason = refused(d);
        assert_eq!(
            reason,
            "quantile sketch: it holds no values but its `sum` is -1.0"
        );
        let empty = QuantileSketch::try_from(data(0, 0.0, 0.0, Vec::new())).unwrap();
        assert_eq!(empty, QuantileSketch::new(empty.config()).unwrap());
    }

    /// Guards the bug where a sketch read from serde kept a `min`, `max` and `sum`
    /// that contradict its buckets, and `quantile` and `mean` reported them: two
    /// values near 1000 read back with a p50 of 6 and a mean of -5e299.
    #[test]
    fn figures_that_contradict_the_buckets_are_refused() {
        let mut s = QuantileSketch::new(SketchConfig::default().with_max_buckets(16)).unwrap();
        s.add(1000.0);
        s.add(1001.0);
        let good = SketchData::from(s.clone());
        assert_eq!(good.positive, [(346, 2)]);
        let with = |f: &dyn Fn(&mut SketchData)| {
            let mut d = SketchData::from(s.clone());
            f(&mut d);
            d
        };
        assert_eq!(
            refused(with(&|d| d.min = 5.0)),
            "quantile sketch: `min` 5.0 is not a value of bucket 346 (9.9250e2 to 1.0126e3), \
             the lowest it counts in"
        );
        assert_eq!(
            refused(with(&|d| d.max = 2000.0)),
            "quantile sketch: `max` 2000.0 is not a value of bucket 346 (9.9250e2 to 1.0126e3), \
             the highest it counts in"
        );
        assert_eq!(
            refused(with(&|d| d.sum = -1e300)),
            "quantile sketch: `sum` -1e300 is not a sum of 2 values from 1000.0 to 1001.0"
        );
        // Out of the sum's rounding, either side.
        refused(with(&|d| d.sum = 1999.9));
        refused(with(&|d| d.sum = 2002.1));
        // A value's sign decides its store: a negative `min` needs negative buckets,
        // a zero one the zero counter.
        refused(with(&|d| d.min = -1000.0));
        refused(with(&|d| d.min = 0.0));
        let reason = refused(with(&|d| {
            d.zero = 1;
            d.min = 1.0;
        }));
        assert!(reason.contains("the zero counter"), "{reason}");
        let reason = refused(with(&|d| {
            d.negative = vec![(346, 1)];
            d.min = 1.0;
        }));
        assert!(
            reason.contains("negative bucket 346 (-1.0126e3 to -9.9250e2)"),
            "{reason}"
        );
        // One bucket either side is allowed (another platform's `ln` may round a
        // value at an edge the other way); two is not.
        QuantileSketch::try_from(with(&|d| d.max = 1011.0 * 1.0202)).unwrap();
        refused(with(&|d| d.max = 1011.0 * 1.0202 * 1.0202));
        // The lowest bucket of a full store holds what was folded into it: the
        // minimum may be anywhere below it, but not above it.
        let mut full = s.clone();
        full.add(1e-6);
        full.add(1e6);
        assert_eq!(full.positive.counts.len(), 16);
        let back = QuantileSketch::try_from(SketchData::from(full.clone())).unwrap();
        assert_eq!(back, full);
        let mut d = SketchData::from(full.clone());
        d.min = 1e-300;
        QuantileSketch::try_from(d).unwrap();
        let mut d = SketchData::from(full);
        d.min = 9e5;
        refused(d);
    }

    #[test]
    fn counts_saturate_in_add_merge_and_quantile() {
        // -2 is in negative bucket 35, 1e9 in bucket 1037.
        let big = |positive: Vec<(i64, u64)>, zero| {
            let mut d = data(zero, -2.0, 1e9, positive);
            d.negative = vec![(35, 5)];
            QuantileSketch::try_from(d).unwrap()
        };
        let mut s = big(vec![(1037, (1 << 63) - 7)], 1);
        let other = s.clone();
        for _ in 0..3 {
            s.merge(&other).unwrap();
        }
        assert_eq!(s.count(), u64::MAX);
        assert!(s.add(1.0) && s.add(0.0) && s.add(-1.0));
        assert_eq!(s.count(), u64::MAX);
        for q in [0.0, 1e-30, 0.5, 0.99, 1.0] {
            let v = s.quantile(q).unwrap();
            assert!((-2.0..=1e9).contains(&v), "q {q}: {v}");
        }
        // The store's folds saturate too.
        let mut narrow = QuantileSketch::new(SketchConfig::default().with_max_buckets(16)).unwrap();
        for _ in 0..2 {
            narrow.merge(&s).unwrap();
        }
        narrow.add(1e300);
        assert!(narrow.bucket_count() <= 2 * 16);
        assert!(narrow.quantile(0.5).is_some());
    }

    proptest::proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/monitor_sketch.txt"))]
        /// The buckets of merged parts are exactly those of the whole, whatever the
        /// cut, even when the bucket limit folds the low end.
        #[test]
        fn merged_parts_equal_the_whole(
            xs in proptest::collection::vec(proptest::prop_oneof![
                -1e12f64..1e12, 0.0f64..1e-3, 1e-300f64..1e-250, proptest::strategy::Just(0.0)
            ], 0..300),
            cut in 0usize..300,
            buckets in 16u32..80,
        ) {
            let config = SketchConfig::default().with_max_buckets(buckets);
            let cut = cut.min(xs.len());
            let mut a = QuantileSketch::new(config).unwrap();
            let mut b = a.clone();
            let mut whole = a.clone();
            xs[..cut].iter().for_each(|&x| { a.add(x); });
            xs[cut..].iter().for_each(|&x| { b.add(x); });
            xs.iter().for_each(|&x| { whole.add(x); });
            b.merge(&a).unwrap();
            proptest::prop_assert_eq!(&b.positive, &whole.positive);
            proptest::prop_assert_eq!(&b.negative, &whole.negative);
            proptest::prop_assert_eq!(b.zero, whole.zero);
            proptest::prop_assert_eq!(b.min(), whole.min());
            proptest::prop_assert_eq!(b.max(), whole.max());
            for q in [0.1, 0.5, 0.9, 0.99] {
                proptest::prop_assert_eq!(b.quantile(q), whole.quantile(q));
            }
            proptest::prop_assert!(b.bucket_count() <= 2 * buckets as usize);
        }
    }
}
