//! Window functions over one series: `avg`, `min`, `max`, `last`, `rate`,
//! `increase` over `(t − range, t]`, from raw samples, or for long windows from
//! 1-minute rollup buckets plus the raw samples at the window's two edges.
//!
//! The same code serves the evaluator (data read from the central database) and
//! `pga-federator rules test` (data from a test's input series), so a rule behaves
//! the same in both.
//!
//! # Definitions
//!
//! - `avg`, `min`, `max`, `last`: over the samples in the window (`NaN` ignored). A
//!   window without a sample has no value (the series is left out of the result).
//! - `increase`: the samples of the window in order, preceded by the last sample at
//!   or before the window's start, each step from one value to the next adding
//!   `next − previous` when the counter did not go down and `next` in full when it
//!   did (a reset: the counter restarted from zero) — the reset handling of
//!   `pga-agent query --fn increase`. Unlike `pga-agent query`, a step is **never**
//!   counted across a recorded gap (the `gaps` table: data the agent evicted before it
//!   was pulled) nor across a silence longer than the evaluator's `max_silence` (an
//!   agent or server that was down): what a counter gained there is unknown, and
//!   attributing it to one window would fake a burst. A window needs at least one
//!   counted step to have a value.
//! - `rate`: `increase` divided by the window's length in seconds.
//!
//! # Long windows
//!
//! A window longer than [`RAW_WINDOW_MAX_MS`] reads the 1-minute rollups
//! (`samples_1m`: count, sum, min, max, last, increase per minute, computed from
//! the raw samples by the sink) for the whole minutes inside it and raw samples for
//! the parts before the first and after the last whole minute, so the result equals
//! what the raw samples give (a bucket's increase counts the step from the sample
//! before it, as [`increase`](WindowFn::Increase) does). `last` never needs them: the
//! newest sample at or before each evaluation time is enough, whatever the window.

use super::expr::WindowFn;

/// Windows up to this long read raw samples only (30 samples of a 10-second
/// collection); longer ones read whole minutes from the rollups.
pub const RAW_WINDOW_MAX_MS: i64 = 300_000;
/// The rollup width used for longer windows.
pub const BUCKET_MS: i64 = 60_000;

/// One raw sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub ts: i64,
    pub value: f64,
}

/// One 1-minute rollup row: the samples in `[start, start + BUCKET_MS)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    /// NULL for gauges in `samples_1m`; computed anyway by [`buckets_of`].
    pub increase: Option<f64>,
}

/// What is known of one series around the evaluation times: raw samples (ascending)
/// and, for long windows, rollup buckets (ascending).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesData {
    pub points: Vec<Point>,
    pub buckets: Vec<Bucket>,
}

/// Where increases may not be attributed: recorded gaps (exclusive bounds, ms) and
/// the longest silence between two samples that still counts as continuous.
#[derive(Debug, Clone, Default)]
pub struct Continuity {
    pub gaps: Vec<(Option<i64>, Option<i64>)>,
    pub max_silence_ms: i64,
}

impl Continuity {
    /// The gaps as closed-open bounds: `(lo, hi)` with `lo < hi` means samples
    /// are missing strictly between them; `lo == hi` marks a point where data is
    /// missing right before or after (one bound unknown).
    fn bounds(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.gaps
            .iter()
            .filter_map(|&(after, before)| match (after, before) {
                (Some(l), Some(h)) => Some((l, h.max(l))),
                (Some(x), None) | (None, Some(x)) => Some((x, x)),
                (None, None) => None,
            })
    }

    /// Whether the step from a sample at `a` to the next at `b` may be counted.
    pub fn continuous(&self, a: i64, b: i64) -> bool {
        if self.max_silence_ms > 0 && b - a > self.max_silence_ms {
            return false;
        }
        !self.bounds().any(|(lo, hi)| {
            if lo < hi {
                a < hi && lo < b
            } else {
                a <= lo && lo <= b
            }
        })
    }

    /// Whether `(from, to]` overlaps a recorded gap (data is missing there).
    pub fn has_gap_in(&self, from: i64, to: i64) -> bool {
        self.bounds().any(|(lo, hi)| {
            if lo < hi {
                lo < to && hi > from
            } else {
                lo >= from && lo <= to
            }
        })
    }
}

/// Whether `f` over a window of `range_ms` reads rollups for its whole minutes.
pub fn uses_rollups(f: WindowFn, range_ms: i64) -> bool {
    f != WindowFn::Last && range_ms > RAW_WINDOW_MAX_MS
}

/// The minutes used whole for a window `(t − range, t]`: `[a, b)`, empty (`a >= b`)
/// for windows read raw.
pub fn bucket_span(t: i64, range_ms: i64) -> (i64, i64) {
    if range_ms <= RAW_WINDOW_MAX_MS {
        return (0, 0);
    }
    let a = ceil_to(t - range_ms + 1, BUCKET_MS);
    let b = (t + 1).div_euclid(BUCKET_MS) * BUCKET_MS;
    (a, b)
}

/// The smallest multiple of `m` at or above `x`.
fn ceil_to(x: i64, m: i64) -> i64 {
    (x + m - 1).div_euclid(m) * m
}

/// Applies `f` (not `absent`, which looks at a whole selection) to one series for
/// the window `(t − range, t]`; `None` when the window has no value.
pub fn apply(
    f: WindowFn,
    data: &SeriesData,
    t: i64,
    range_ms: i64,
    continuity: &Continuity,
) -> Option<f64> {
    let from = t - range_ms;
    let (a, b) = if uses_rollups(f, range_ms) {
        bucket_span(t, range_ms)
    } else {
        (0, 0)
    };
    let whole = a < b;
    let pts = &data.points;
    let lo = pts.partition_point(|p| p.ts <= from);
    let hi = pts.partition_point(|p| p.ts <= t);
    let window = &pts[lo..hi];
    // Raw samples not covered by a whole minute.
    let raw = |p: &&Point| !whole || p.ts < a || p.ts >= b;
    let buckets: &[Bucket] = if whole {
        let s = data.buckets.partition_point(|k| k.start < a);
        let e = data.buckets.partition_point(|k| k.start < b);
        &data.buckets[s..e]
    } else {
        &[]
    };
    match f {
        WindowFn::Absent => None,
        WindowFn::Last => {
            let finite = |p: &&Point| !p.value.is_nan();
            if !whole {
                return window.iter().rev().find(finite).map(|p| p.value);
            }
            window
                .iter()
                .rev()
                .filter(finite)
                .find(|p| p.ts >= b)
                .map(|p| p.value)
                .or_else(|| buckets.iter().rev().find(|k| k.count > 0).map(|k| k.last))
                .or_else(|| {
                    window
                        .iter()
                        .rev()
                        .filter(finite)
                        .find(|p| p.ts < a)
                        .map(|p| p.value)
                })
        }
        WindowFn::Min | WindowFn::Max => {
            let values = window
                .iter()
                .filter(raw)
                .map(|p| p.value)
                .chain(
                    buckets
                        .iter()
                        .filter(|k| k.count > 0)
                        .map(|k| if f == WindowFn::Min { k.min } else { k.max }),
                )
                .filter(|v| !v.is_nan());
            if f == WindowFn::Min {
                values.reduce(f64::min)
            } else {
                values.reduce(f64::max)
            }
        }
        WindowFn::Avg => {
            let (mut n, mut sum, mut lo_v, mut hi_v) =
                (0u64, 0.0, f64::INFINITY, f64::NEG_INFINITY);
            for p in window.iter().filter(raw).filter(|p| !p.value.is_nan()) {
                n += 1;
                sum += p.value;
                lo_v = lo_v.min(p.value);
                hi_v = hi_v.max(p.value);
            }
            for k in buckets.iter().filter(|k| k.count > 0) {
                n += k.count;
                sum += k.sum;
                lo_v = lo_v.min(k.min);
                hi_v = hi_v.max(k.max);
            }
            if n == 0 {
                return None;
            }
            let avg = sum / n as f64;
            Some(if avg.is_nan() || lo_v > hi_v {
                avg
            } else {
                avg.clamp(lo_v, hi_v)
            })
        }
        WindowFn::Increase | WindowFn::Rate => {
            let mut acc = Increase {
                prev: pts[..lo]
                    .iter()
                    .rev()
                    .find(|p| p.value.is_finite())
                    .copied(),
                total: 0.0,
                steps: 0,
                continuity,
            };
            let mut rest = window;
            if whole {
                // Raw samples before the first whole minute, the minutes, then the
                // raw samples after the last one.
                let head = rest.partition_point(|p| p.ts < a);
                for p in &rest[..head] {
                    acc.sample(*p);
                }
                for k in buckets.iter().filter(|k| k.count > 0) {
                    if let Some(inc) = k.increase {
                        acc.total += inc.max(0.0);
                        acc.steps += 1;
                    }
                    // The bucket's last sample precedes what follows; its time is
                    // within the bucket (the bucket's end stands for it).
                    acc.prev = Some(Point {
                        ts: k.start + BUCKET_MS - 1,
                        value: k.last,
                    });
                }
                rest = &rest[rest.partition_point(|p| p.ts < b)..];
            }
            for p in rest {
                acc.sample(*p);
            }
            if acc.steps == 0 {
                return None;
            }
            Some(match f {
                WindowFn::Rate => acc.total / (range_ms as f64 / 1000.0),
                _ => acc.total,
            })
        }
    }
}

/// Sums a counter's steps with reset handling, skipping discontinuities.
struct Increase<'a> {
    prev: Option<Point>,
    total: f64,
    steps: usize,
    continuity: &'a Continuity,
}

impl Increase<'_> {
    fn sample(&mut self, p: Point) {
        if !p.value.is_finite() {
            return;
        }
        if let Some(q) = self.prev
            && self.continuity.continuous(q.ts, p.ts)
        {
            self.total += if p.value >= q.value {
                p.value - q.value
            } else {
                p.value.max(0.0)
            };
            self.steps += 1;
        }
        self.prev = Some(p);
    }
}

/// Whether a series has any sample in `(t − range, t]`.
pub fn has_data(data: &SeriesData, t: i64, range_ms: i64) -> bool {
    let from = t - range_ms;
    let (a, b) = bucket_span(t, range_ms);
    data.points.iter().any(|p| p.ts > from && p.ts <= t)
        || (a < b
            && data
                .buckets
                .iter()
                .any(|k| k.start >= a && k.start < b && k.count > 0))
}

/// The 1-minute rollups of `points`, as the sink computes them (for tests and
/// the in-memory source of `rules test`); steps across a discontinuity add nothing.
pub fn buckets_of(points: &[Point], continuity: &Continuity) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    let mut prev: Option<Point> = None;
    for p in points.iter().filter(|p| !p.value.is_nan()) {
        let start = p.ts.div_euclid(BUCKET_MS) * BUCKET_MS;
        let inc = match prev {
            Some(q) if p.value.is_finite() && continuity.continuous(q.ts, p.ts) => {
                if p.value >= q.value {
                    p.value - q.value
                } else {
                    p.value.max(0.0)
                }
            }
            _ => 0.0,
        };
        match out.last_mut() {
            Some(k) if k.start == start => {
                k.count += 1;
                k.sum += p.value;
                k.min = k.min.min(p.value);
                k.max = k.max.max(p.value);
                k.last = p.value;
                k.increase = Some(k.increase.unwrap_or(0.0) + inc);
            }
            _ => out.push(Bucket {
                start,
                count: 1,
                sum: p.value,
                min: p.value,
                max: p.value,
                last: p.value,
                increase: Some(inc),
            }),
        }
        if p.value.is_finite() {
            prev = Some(*p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(i64, f64)]) -> SeriesData {
        SeriesData {
            points: v.iter().map(|&(ts, value)| Point { ts, value }).collect(),
            buckets: vec![],
        }
    }

    fn none() -> Continuity {
        Continuity::default()
    }

    #[test]
    fn gauges_over_the_window_exclude_its_start() {
        let d = pts(&[(0, 5.0), (10, 1.0), (20, f64::NAN), (30, 3.0)]);
        let c = none();
        assert_eq!(apply(WindowFn::Last, &d, 30, 30, &c), Some(3.0));
        assert_eq!(apply(WindowFn::Min, &d, 30, 30, &c), Some(1.0));
        assert_eq!(apply(WindowFn::Max, &d, 30, 30, &c), Some(3.0));
        assert_eq!(apply(WindowFn::Avg, &d, 30, 30, &c), Some(2.0));
        assert_eq!(apply(WindowFn::Last, &d, 25, 10, &c), None);
        assert_eq!(apply(WindowFn::Last, &d, 100, 10, &c), None);
    }

    #[test]
    fn increase_handles_resets_like_pga_agent_query() {
        // 10 → 15 (+5), reset to 3 (+3), → 7 (+4).
        let d = pts(&[(0, 10.0), (10, 15.0), (20, 3.0), (30, 7.0)]);
        let c = none();
        assert_eq!(apply(WindowFn::Increase, &d, 30, 30, &c), Some(12.0));
        assert_eq!(apply(WindowFn::Rate, &d, 30, 30_000, &c), Some(12.0 / 30.0));
        // One sample and no predecessor: no step.
        assert_eq!(
            apply(WindowFn::Increase, &pts(&[(5, 1.0)]), 10, 10, &c),
            None
        );
    }

    #[test]
    fn no_increase_across_a_gap_or_a_long_silence() {
        let d = pts(&[(0, 10.0), (10, 20.0), (1000, 500.0), (1010, 510.0)]);
        let silence = Continuity {
            gaps: vec![],
            max_silence_ms: 100,
        };
        // 0→10 (+10), 10→1000 silent (nothing), 1000→1010 (+10).
        assert_eq!(
            apply(WindowFn::Increase, &d, 1010, 2000, &silence),
            Some(20.0)
        );
        let gap = Continuity {
            gaps: vec![(Some(10), Some(1000))],
            max_silence_ms: 0,
        };
        assert_eq!(apply(WindowFn::Increase, &d, 1010, 2000, &gap), Some(20.0));
        assert!(gap.has_gap_in(500, 600));
        assert!(!gap.has_gap_in(1000, 1010));
        // Without either, the whole 500 is counted.
        assert_eq!(
            apply(WindowFn::Increase, &d, 1010, 2000, &none()),
            Some(500.0)
        );
    }

    #[test]
    fn long_windows_from_rollups_equal_raw_samples() {
        let c = Continuity {
            gaps: vec![],
            max_silence_ms: 600_000,
        };
        // A counter with a reset and a gauge, every 7 s for 3 h.
        let counter: Vec<Point> = (0..1600)
            .map(|i| Point {
                ts: 1_000_000 + i * 7_000,
                value: if i < 900 {
                    i as f64 * 3.0
                } else {
                    (i - 900) as f64
                },
            })
            .collect();
        let gauge: Vec<Point> = (0..1600)
            .map(|i| Point {
                ts: 1_000_000 + i * 7_000,
                value: ((i * 37) % 101) as f64,
            })
            .collect();
        for points in [counter, gauge] {
            let raw = SeriesData {
                points: points.clone(),
                buckets: vec![],
            };
            let rolled = SeriesData {
                buckets: buckets_of(&points, &c),
                points,
            };
            for t in [9_000_000, 9_013_500, 11_000_001] {
                let range = 2 * 3_600_000 + 17_000;
                for f in [
                    WindowFn::Avg,
                    WindowFn::Min,
                    WindowFn::Max,
                    WindowFn::Last,
                    WindowFn::Increase,
                ] {
                    // The raw answer, computed with a window the rollup path never
                    // takes (everything raw).
                    let expect = raw_answer(f, &raw, t, range, &c);
                    let got = apply(f, &rolled, t, range, &c);
                    match (expect, got) {
                        (Some(e), Some(g)) => {
                            assert!(
                                (e - g).abs() < 1e-6 * e.abs().max(1.0),
                                "{f:?} at {t}: {e} vs {g}"
                            )
                        }
                        other => panic!("{f:?} at {t}: {other:?}"),
                    }
                }
            }
        }
    }

    /// `apply` with everything raw (the bucket span forced empty).
    fn raw_answer(f: WindowFn, d: &SeriesData, t: i64, range: i64, c: &Continuity) -> Option<f64> {
        let from = t - range;
        let w: Vec<f64> = d
            .points
            .iter()
            .filter(|p| p.ts > from && p.ts <= t)
            .map(|p| p.value)
            .collect();
        match f {
            WindowFn::Avg => Some(w.iter().sum::<f64>() / w.len() as f64),
            WindowFn::Min => w.iter().copied().reduce(f64::min),
            WindowFn::Max => w.iter().copied().reduce(f64::max),
            WindowFn::Last => w.last().copied(),
            _ => {
                let mut prev = d.points.iter().rev().find(|p| p.ts <= from).copied();
                let mut inc = 0.0;
                for p in d.points.iter().filter(|p| p.ts > from && p.ts <= t) {
                    if let Some(q) = prev
                        && c.continuous(q.ts, p.ts)
                    {
                        inc += if p.value >= q.value {
                            p.value - q.value
                        } else {
                            p.value
                        };
                    }
                    prev = Some(*p);
                }
                Some(inc)
            }
        }
    }

    #[test]
    fn the_bucket_span_is_whole_minutes_inside_the_window() {
        assert_eq!(bucket_span(3_600_000, 300_000), (0, 0));
        let (a, b) = bucket_span(10_000_000 + 30_000, 2 * 3_600_000);
        assert_eq!(a % BUCKET_MS, 0);
        assert_eq!(b % BUCKET_MS, 0);
        assert!(a > 10_030_000 - 7_200_000 && a - BUCKET_MS <= 10_030_000 - 7_200_000);
        assert!(b <= 10_030_001 && b + BUCKET_MS > 10_030_001);
    }
}
