//! Step functions over one series: `avg`, `min`, `max`, `last`, `rate`, `increase`.
//!
//! # Windows
//!
//! A query over `start..end` with step `s` yields one point per window, stamped with the
//! window's **end**:
//!
//! - Grid points are `t = start + k·s` for `k = 1, 2, …` while `t ≤ end`; the window of
//!   `t` is `(t − s, t]`: it excludes its start and includes its end, so every instant
//!   after `start` belongs to exactly one window.
//! - When `end − start` is not a multiple of `s`, a last, **shorter** window
//!   `(start + k·s, end]` is stamped `end`, so the points cover the whole range and no
//!   sample at its tail is dropped.
//! - The grid is anchored at `start`, not at the wall clock; pass a round `start` (or
//!   one truncated to a multiple of the step) for round timestamps.
//! - A window without a usable sample yields **no point** (a gap, not a zero), so an
//!   agent that was down shows as a hole in a chart.
//! - A sample stamped exactly `start` belongs to no output window; it only serves as the
//!   starting value of `increase` and `rate` for the first window.
//!
//! # Functions
//!
//! - `avg`, `min`, `max`, `last`: over the samples in the window. `NaN` samples are
//!   ignored (a window holding only `NaN` has no point); `±Inf` takes part as a number.
//!   `avg` is clamped to `[min, max]` so rounding never puts it outside.
//! - `increase`: how much a counter grew. The samples of the window are taken in order,
//!   preceded by the last sample at or before the window's start, if any (however old:
//!   after a gap in collection, the first window after the gap carries what the counter
//!   gained during the gap). Each step from one value to the next adds `next − previous`
//!   when the counter did not go down, and `next` in full when it went down (a
//!   **counter reset**: the counter restarted from zero and `next` was counted since).
//!   This is Prometheus' reset handling without its extrapolation to the window edges.
//!   So the increases of consecutive windows add up exactly to the increase over the
//!   whole range, and an increase is never negative (a negative value after a reset
//!   counts as 0). A window needs two values (its own samples, or one of them plus the
//!   preceding sample) to have a point; non-finite samples (`NaN`, `±Inf`) are skipped.
//! - `rate`: `increase` divided by the window length in seconds (the step, or the
//!   shorter length of the last window): the average per-second growth in the window.
//!
//! `rate` and `increase` assume a counter; on a gauge they read every drop as a reset.
//!
//! Without a function, [`raw`] returns the samples in `[start, end]` (both ends
//! included, so a sample exactly at `--since` is shown).
//!
//! The cost is linear in the number of samples whatever the step, and there is at most
//! one point per sample (plus none for empty windows).

use std::fmt;
use std::str::FromStr;

use pga_format::{MetricKind, Sample};

/// The function applied to each window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Avg,
    Min,
    Max,
    Last,
    Rate,
    Increase,
}

impl Function {
    pub const ALL: [Function; 6] = [
        Function::Avg,
        Function::Min,
        Function::Max,
        Function::Last,
        Function::Rate,
        Function::Increase,
    ];

    /// The name used on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Function::Avg => "avg",
            Function::Min => "min",
            Function::Max => "max",
            Function::Last => "last",
            Function::Rate => "rate",
            Function::Increase => "increase",
        }
    }

    /// Whether the function is meant for a series of this kind (`rate` and `increase`
    /// only make sense on counters; a caller may warn otherwise).
    pub const fn suits(self, kind: MetricKind) -> bool {
        match self {
            Function::Rate | Function::Increase => matches!(kind, MetricKind::Counter),
            Function::Avg | Function::Min | Function::Max | Function::Last => true,
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A function name that is not one of [`Function::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown function {input:?}: choose one of avg, min, max, last, rate, increase{hint}")]
#[non_exhaustive]
pub struct UnknownFunction {
    pub input: String,
    hint: &'static str,
}

impl FromStr for Function {
    type Err = UnknownFunction;

    /// Parses a function name, ignoring case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        if let Some(f) = Function::ALL.into_iter().find(|f| f.as_str() == lower) {
            return Ok(f);
        }
        let hint = match lower.as_str() {
            "mean" | "average" => " (avg is the mean)",
            "irate" | "deriv" | "per_second" => " (rate is the per-second growth of a counter)",
            "delta" | "sum" | "diff" => " (increase is how much a counter grew in each step)",
            "first" | "latest" | "value" => " (last is the final value in each step)",
            _ => "",
        };
        Err(UnknownFunction {
            input: s.to_owned(),
            hint,
        })
    }
}

/// The samples of `samples` with `start_ms <= timestamp <= end_ms`, as points.
///
/// `samples` must be in ascending time order.
pub fn raw(samples: &[Sample], start_ms: i64, end_ms: i64) -> Vec<(i64, f64)> {
    let lo = samples.partition_point(|s| s.timestamp_ms < start_ms);
    let hi = samples.partition_point(|s| s.timestamp_ms <= end_ms);
    samples
        .get(lo..hi)
        .unwrap_or_default()
        .iter()
        .map(|s| (s.timestamp_ms, s.value))
        .collect()
}

/// Applies `f` to each window of `(start_ms, end_ms]` (see the module documentation).
///
/// `samples` must be in ascending time order; for `increase` and `rate` they should
/// include the last sample at or before `start_ms`, which starts the first window.
/// Samples outside the range are otherwise ignored. An empty range or a step that is
/// not positive yields no points.
pub fn evaluate(
    samples: &[Sample],
    f: Function,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
) -> Vec<(i64, f64)> {
    debug_assert!(
        samples
            .windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms),
        "samples must be in ascending time order"
    );
    let windows = Windows::new(samples, start_ms, end_ms, step_ms);
    match f {
        Function::Avg | Function::Min | Function::Max | Function::Last => windows
            .filter_map(|w| aggregate(f, &samples[w.lo..w.hi]).map(|v| (w.t, v)))
            .collect(),
        Function::Increase | Function::Rate => {
            // The value that precedes the first window: the last finite sample at or
            // before `start_ms`.
            let first = windows.i;
            let mut prev = samples[..first]
                .iter()
                .rev()
                .map(|s| s.value)
                .find(|v| v.is_finite());
            let mut out = Vec::new();
            for w in windows {
                let mut increase = 0.0;
                let mut steps = 0usize;
                for v in samples[w.lo..w.hi]
                    .iter()
                    .map(|s| s.value)
                    .filter(|v| v.is_finite())
                {
                    if let Some(p) = prev {
                        increase += if v >= p { v - p } else { v.max(0.0) };
                        steps += 1;
                    }
                    prev = Some(v);
                }
                if steps > 0 {
                    let value = match f {
                        Function::Rate => increase / ((w.t - w.left) as f64 / 1000.0),
                        _ => increase,
                    };
                    out.push((w.t, value));
                }
            }
            out
        }
    }
}

/// `avg`, `min`, `max` or `last` of the non-NaN values of one window.
fn aggregate(f: Function, window: &[Sample]) -> Option<f64> {
    let mut values = window.iter().map(|s| s.value).filter(|v| !v.is_nan());
    match f {
        Function::Last => values.next_back(),
        Function::Min => values.reduce(f64::min),
        Function::Max => values.reduce(f64::max),
        _ => {
            let (mut n, mut sum, mut lo, mut hi) = (0usize, 0.0, f64::INFINITY, f64::NEG_INFINITY);
            for v in values.clone() {
                n += 1;
                sum += v;
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if n == 0 {
                return None;
            }
            let mut avg = sum / n as f64;
            if avg.is_infinite() && lo.is_finite() && hi.is_finite() {
                // The sum overflowed although every value is finite: divide first.
                avg = values.map(|v| v / n as f64).sum();
            }
            // NaN stays NaN (+Inf and -Inf together); otherwise keep it in range.
            Some(if avg.is_nan() { avg } else { avg.clamp(lo, hi) })
        }
    }
}

/// One output window: samples `lo..hi` lie in `(left, t]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Window {
    t: i64,
    left: i64,
    lo: usize,
    hi: usize,
}

/// The non-empty windows of `(start, end]`, found by jumping from sample to sample so
/// that empty windows cost nothing.
struct Windows<'a> {
    samples: &'a [Sample],
    start: i128,
    end: i64,
    step: i128,
    /// The first sample not yet assigned to a window.
    i: usize,
}

impl<'a> Windows<'a> {
    fn new(samples: &'a [Sample], start: i64, end: i64, step: i64) -> Self {
        let i = if step > 0 && start < end {
            samples.partition_point(|s| s.timestamp_ms <= start)
        } else {
            samples.len()
        };
        Windows {
            samples,
            start: i128::from(start),
            end,
            step: i128::from(step),
            i,
        }
    }
}

impl Iterator for Windows<'_> {
    type Item = Window;

    fn next(&mut self) -> Option<Window> {
        let ts = self.samples.get(self.i)?.timestamp_ms;
        if ts > self.end {
            return None;
        }
        // The grid point at or after `ts`: k = ceil((ts - start) / step) >= 1, since
        // ts > start. i128 keeps start + k·step from overflowing.
        let k = (i128::from(ts) - self.start + self.step - 1).div_euclid(self.step);
        let grid = self.start + k * self.step;
        let left = grid - self.step;
        // Both fit in i64: left < ts <= end, and t is capped at end.
        let t = i64::try_from(grid).map_or(self.end, |g| g.min(self.end));
        let left = i64::try_from(left).unwrap_or(i64::MIN);
        let lo = self.i;
        let hi = lo + self.samples[lo..].partition_point(|s| s.timestamp_ms <= t);
        self.i = hi;
        Some(Window { t, left, lo, hi })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples(points: &[(i64, f64)]) -> Vec<Sample> {
        points
            .iter()
            .map(|&(timestamp_ms, value)| Sample {
                timestamp_ms,
                value,
            })
            .collect()
    }

    #[test]
    fn function_names() {
        for f in Function::ALL {
            assert_eq!(f.as_str().parse::<Function>(), Ok(f));
            assert_eq!(f.to_string().to_uppercase().parse::<Function>(), Ok(f));
        }
        let e = "mean".parse::<Function>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown function \"mean\": choose one of avg, min, max, last, rate, increase \
             (avg is the mean)"
        );
        let e = "p99".parse::<Function>().unwrap_err().to_string();
        assert!(e.ends_with("rate, increase"), "{e}");
        assert!(Function::Rate.suits(MetricKind::Counter));
        assert!(!Function::Increase.suits(MetricKind::Gauge));
        assert!(Function::Avg.suits(MetricKind::Counter));
    }

    #[test]
    fn windows_are_half_open_and_stamped_at_their_end() {
        // Samples every 10 s from 0 to 60 s: values 0..=6.
        let s = samples(&(0..=6).map(|i| (i * 10_000, i as f64)).collect::<Vec<_>>());
        // Windows (0,20], (20,40], (40,60].
        assert_eq!(
            evaluate(&s, Function::Last, 0, 60_000, 20_000),
            vec![(20_000, 2.0), (40_000, 4.0), (60_000, 6.0)]
        );
        assert_eq!(
            evaluate(&s, Function::Avg, 0, 60_000, 20_000),
            vec![(20_000, 1.5), (40_000, 3.5), (60_000, 5.5)]
        );
        assert_eq!(
            evaluate(&s, Function::Min, 0, 60_000, 20_000),
            vec![(20_000, 1.0), (40_000, 3.0), (60_000, 5.0)]
        );
        assert_eq!(
            evaluate(&s, Function::Max, 0, 60_000, 20_000),
            vec![(20_000, 2.0), (40_000, 4.0), (60_000, 6.0)]
        );
        // The sample at `start` only starts the first increase.
        assert_eq!(
            evaluate(&s, Function::Increase, 0, 60_000, 20_000),
            vec![(20_000, 2.0), (40_000, 2.0), (60_000, 2.0)]
        );
        assert_eq!(
            evaluate(&s, Function::Rate, 0, 60_000, 20_000),
            vec![(20_000, 0.1), (40_000, 0.1), (60_000, 0.1)]
        );
    }

    #[test]
    fn last_window_may_be_shorter() {
        let s = samples(&(0..=6).map(|i| (i * 10_000, i as f64)).collect::<Vec<_>>());
        // Windows (0,25], (25,50], then the partial (50,55] stamped 55.
        assert_eq!(
            evaluate(&s, Function::Last, 0, 55_000, 25_000),
            vec![(25_000, 2.0), (50_000, 5.0)]
        );
        assert_eq!(
            evaluate(&s, Function::Increase, 0, 60_000, 25_000),
            vec![(25_000, 2.0), (50_000, 3.0), (60_000, 1.0)]
        );
        // The partial window is 10 s long: its rate is 1 / 10.
        assert_eq!(
            evaluate(&s, Function::Rate, 0, 60_000, 25_000).last(),
            Some(&(60_000, 0.1))
        );
        // A step longer than the range gives one window stamped at the end.
        assert_eq!(
            evaluate(&s, Function::Max, 5_000, 35_000, 3_600_000),
            vec![(35_000, 3.0)]
        );
    }

    #[test]
    fn empty_windows_are_gaps() {
        let s = samples(&[(10_000, 1.0), (70_000, 7.0)]);
        assert_eq!(
            evaluate(&s, Function::Last, 0, 80_000, 20_000),
            vec![(20_000, 1.0), (80_000, 7.0)]
        );
        // The first window after the gap carries the growth during the gap.
        assert_eq!(
            evaluate(&s, Function::Increase, 0, 80_000, 20_000),
            vec![(80_000, 6.0)]
        );
        assert!(evaluate(&[], Function::Avg, 0, 80_000, 20_000).is_empty());
        assert!(evaluate(&s, Function::Avg, 80_000, 0, 20_000).is_empty());
        assert!(evaluate(&s, Function::Avg, 0, 80_000, 0).is_empty());
        assert!(evaluate(&s, Function::Avg, 0, 80_000, -5).is_empty());
    }

    #[test]
    fn counter_resets_count_the_new_value() {
        // 100 → 130 (+30), reset to 5 (+5), → 20 (+15).
        let s = samples(&[(0, 100.0), (10_000, 130.0), (20_000, 5.0), (30_000, 20.0)]);
        assert_eq!(
            evaluate(&s, Function::Increase, 0, 30_000, 30_000),
            vec![(30_000, 50.0)]
        );
        assert_eq!(
            evaluate(&s, Function::Increase, 0, 30_000, 10_000),
            vec![(10_000, 30.0), (20_000, 5.0), (30_000, 15.0)]
        );
        // A negative value after a drop counts as nothing.
        let s = samples(&[(0, 10.0), (10_000, -4.0), (20_000, 1.0)]);
        assert_eq!(
            evaluate(&s, Function::Increase, 0, 20_000, 20_000),
            vec![(20_000, 5.0)]
        );
    }

    #[test]
    fn increase_needs_two_values() {
        let s = samples(&[(15_000, 3.0), (25_000, 4.0)]);
        // (0,20] holds one sample and nothing precedes it: no point.
        assert_eq!(
            evaluate(&s, Function::Increase, 0, 40_000, 20_000),
            vec![(40_000, 1.0)]
        );
        // The preceding sample may lie long before the range.
        let s = samples(&[(-1_000_000, 1.0), (15_000, 3.0)]);
        assert_eq!(
            evaluate(&s, Function::Increase, 0, 20_000, 20_000),
            vec![(20_000, 2.0)]
        );
    }

    #[test]
    fn nan_and_inf() {
        let s = samples(&[(1, f64::NAN), (2, 4.0), (3, f64::NAN), (11, f64::NAN)]);
        assert_eq!(evaluate(&s, Function::Last, 0, 20, 10), vec![(10, 4.0)]);
        assert_eq!(evaluate(&s, Function::Avg, 0, 20, 10), vec![(10, 4.0)]);
        assert_eq!(evaluate(&s, Function::Min, 0, 20, 10), vec![(10, 4.0)]);
        let s = samples(&[(1, 1.0), (2, f64::INFINITY)]);
        assert_eq!(
            evaluate(&s, Function::Max, 0, 10, 10),
            vec![(10, f64::INFINITY)]
        );
        assert_eq!(
            evaluate(&s, Function::Avg, 0, 10, 10),
            vec![(10, f64::INFINITY)]
        );
        let s = samples(&[(0, 1.0), (1, f64::NAN), (2, f64::INFINITY), (3, 4.0)]);
        assert_eq!(evaluate(&s, Function::Increase, 0, 10, 10), vec![(10, 3.0)]);
        let s = samples(&[(1, f64::MAX), (2, f64::MAX)]);
        assert_eq!(evaluate(&s, Function::Avg, 0, 10, 10), vec![(10, f64::MAX)]);
    }

    #[test]
    fn raw_includes_both_ends() {
        let s = samples(&[(0, 0.0), (10, 1.0), (20, f64::NAN), (30, 3.0)]);
        let r = raw(&s, 10, 20);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], (10, 1.0));
        assert!(r[1].1.is_nan());
        assert!(raw(&s, 40, 50).is_empty());
        assert!(raw(&s, 20, 10).is_empty());
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let s = samples(&[(i64::MIN + 1, 1.0), (0, 2.0), (i64::MAX, 3.0)]);
        assert_eq!(
            evaluate(&s, Function::Last, i64::MIN, i64::MAX, i64::MAX),
            vec![(-1, 1.0), (i64::MAX - 1, 2.0), (i64::MAX, 3.0)]
        );
        assert_eq!(evaluate(&s, Function::Last, 0, i64::MAX, 1).len(), 1);
    }

    /// The documented semantics, literally: visit every grid point.
    fn model(samples: &[Sample], f: Function, start: i64, end: i64, step: i64) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        let mut left = start;
        while left < end {
            let t = (left + step).min(end);
            let inside: Vec<f64> = samples
                .iter()
                .filter(|s| s.timestamp_ms > left && s.timestamp_ms <= t)
                .map(|s| s.value)
                .collect();
            let value = match f {
                Function::Increase | Function::Rate => {
                    let before = samples
                        .iter()
                        .filter(|s| s.timestamp_ms <= left && s.value.is_finite())
                        .map(|s| s.value)
                        .next_back();
                    let seq: Vec<f64> = before
                        .into_iter()
                        .chain(inside.iter().copied().filter(|v| v.is_finite()))
                        .collect();
                    (seq.len() >= 2).then(|| {
                        let inc: f64 = seq
                            .windows(2)
                            .map(|p| {
                                if p[1] >= p[0] {
                                    p[1] - p[0]
                                } else {
                                    p[1].max(0.0)
                                }
                            })
                            .sum();
                        if f == Function::Rate {
                            inc / ((t - left) as f64 / 1000.0)
                        } else {
                            inc
                        }
                    })
                }
                _ => {
                    let vals: Vec<f64> = inside.into_iter().filter(|v| !v.is_nan()).collect();
                    match f {
                        Function::Last => vals.last().copied(),
                        Function::Min => vals.iter().copied().reduce(f64::min),
                        Function::Max => vals.iter().copied().reduce(f64::max),
                        _ => (!vals.is_empty()).then(|| {
                            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
                            let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                            (vals.iter().sum::<f64>() / vals.len() as f64).clamp(lo, hi)
                        }),
                    }
                }
            };
            out.extend(value.map(|v| (t, v)));
            left = t;
        }
        out
    }

    /// Sorted samples with integer values (exact sums), occasional resets and NaNs.
    fn counter_samples() -> impl Strategy<Value = Vec<Sample>> {
        prop::collection::vec((0i64..400, 0u32..50, 0u8..20), 0..60).prop_map(|raw| {
            let mut ts: Vec<i64> = raw.iter().map(|r| r.0).collect();
            ts.sort_unstable();
            let mut value = 0.0;
            ts.into_iter()
                .zip(raw.iter().map(|r| (r.1, r.2)))
                .map(|(timestamp_ms, (inc, dice))| {
                    value = match dice {
                        0 => f64::from(inc), // reset
                        1 => {
                            return Sample {
                                timestamp_ms,
                                value: f64::NAN,
                            };
                        }
                        _ => value + f64::from(inc),
                    };
                    Sample {
                        timestamp_ms,
                        value,
                    }
                })
                .collect()
        })
    }

    fn any_function() -> impl Strategy<Value = Function> {
        prop::sample::select(Function::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn matches_the_model(
            s in counter_samples(),
            f in any_function(),
            start in -50i64..300,
            len in 0i64..400,
            step in 1i64..120,
        ) {
            let got = evaluate(&s, f, start, start + len, step);
            let want = model(&s, f, start, start + len, step);
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!(g.0, w.0);
                prop_assert!(g.1 == w.1 || (g.1 - w.1).abs() <= 1e-9 * w.1.abs(), "{:?} vs {:?}", g, w);
            }
        }

        #[test]
        fn increases_of_a_partition_add_up_to_the_whole(
            s in counter_samples(),
            start in -50i64..300,
            len in 1i64..400,
            step in 1i64..120,
        ) {
            let end = start + len;
            let total: f64 = evaluate(&s, Function::Increase, start, end, len)
                .iter().map(|p| p.1).sum();
            let parts: f64 = evaluate(&s, Function::Increase, start, end, step)
                .iter().map(|p| p.1).sum();
            prop_assert_eq!(total, parts);
            // Splitting the range in two at any grid point does not change it either.
            let mid = start + (len / step / 2) * step;
            let halves: f64 = evaluate(&s, Function::Increase, start, mid, step)
                .iter().chain(&evaluate(&s, Function::Increase, mid, end, step))
                .map(|p| p.1).sum();
            prop_assert_eq!(total, halves);
        }

        #[test]
        fn increase_and_rate_are_never_negative(
            values in prop::collection::vec(prop::num::f64::ANY, 0..40),
            step in 1i64..20,
        ) {
            let s: Vec<Sample> = values.iter().enumerate()
                .map(|(i, &value)| Sample { timestamp_ms: i as i64, value }).collect();
            for f in [Function::Increase, Function::Rate] {
                for (_, v) in evaluate(&s, f, -1, 40, step) {
                    prop_assert!(v >= 0.0, "{} gave {}", f, v);
                }
            }
        }

        #[test]
        fn avg_lies_between_min_and_max(
            values in prop::collection::vec(-1e300f64..1e300, 1..40),
            step in 1i64..20,
        ) {
            let s: Vec<Sample> = values.iter().enumerate()
                .map(|(i, &value)| Sample { timestamp_ms: i as i64, value }).collect();
            let avg = evaluate(&s, Function::Avg, -1, 40, step);
            let min = evaluate(&s, Function::Min, -1, 40, step);
            let max = evaluate(&s, Function::Max, -1, 40, step);
            prop_assert_eq!(avg.len(), min.len());
            prop_assert_eq!(avg.len(), max.len());
            for ((a, lo), hi) in avg.iter().zip(&min).zip(&max) {
                prop_assert!(lo.1 <= a.1 && a.1 <= hi.1, "{:?} {:?} {:?}", lo, a, hi);
            }
        }

        #[test]
        fn rate_is_increase_per_second(s in counter_samples(), step in 1i64..120) {
            let inc = evaluate(&s, Function::Increase, 0, 400, step);
            let rate = evaluate(&s, Function::Rate, 0, 400, step);
            prop_assert_eq!(inc.len(), rate.len());
            for (i, r) in inc.iter().zip(&rate) {
                prop_assert_eq!(i.0, r.0);
                let window_start = ((i.0 - 1) / step) * step;
                let secs = (i.0 - window_start) as f64 / 1000.0;
                prop_assert!((r.1 * secs - i.1).abs() <= 1e-9 * i.1.abs().max(1.0));
            }
        }
    }
}
