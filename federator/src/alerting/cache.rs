//! What the evaluator keeps of each series between cycles, so that a cycle reads only
//! what is new.
//!
//! Data at or before an agent's watermark never changes (that is what the watermark
//! says), and every read of a cycle ends at a step at or before it: what was read is
//! final. So for each query term and series the evaluator keeps, for the next cycle:
//! - `last`: the newest sample;
//! - windows read raw: the samples of the last window (and, for `rate` and
//!   `increase`, the one before it);
//! - windows read from rollups: the whole minutes of the last window and the raw
//!   samples after them (the raw samples at the window's start are read again: they
//!   are few).
//!
//! [`plan`] says what to read given what is kept, [`merge`] joins it with what was
//! read, [`keep`] trims it for the next cycle.

use super::data::WindowRequest;
use super::expr::WindowFn;
use super::window::{self, SeriesData};

/// What is kept of one series for one term.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kept {
    pub data: SeriesData,
    /// Every raw sample in `(raw_from, through]` is held.
    pub raw_from: i64,
    pub through: i64,
    /// Every rollup bucket starting in `[buckets_from, buckets_to)` is held.
    pub buckets_from: i64,
    pub buckets_to: i64,
}

/// What to read for evaluating `f` over `range_ms` at `steps` (ascending), given what
/// is kept.
pub fn plan(
    kept: Option<&Kept>,
    series_id: i64,
    f: WindowFn,
    range_ms: i64,
    steps: &[i64],
    max_silence_ms: i64,
) -> WindowRequest {
    let (first, last) = (steps[0], steps[steps.len() - 1]);
    let full = || WindowRequest::for_steps(series_id, f, range_ms, steps, max_silence_ms);
    let Some(k) = kept.filter(|k| k.through < first) else {
        return full();
    };
    if f == WindowFn::Last {
        return WindowRequest {
            series_id,
            raw: vec![(k.through, last)],
            prev_after: None,
            buckets: None,
        };
    }
    if !window::uses_rollups(f, range_ms) {
        if k.raw_from > first - range_ms {
            return full();
        }
        return WindowRequest {
            series_id,
            raw: vec![(k.through, last)],
            prev_after: None,
            buckets: None,
        };
    }
    let (a0, b0) = window::bucket_span(first, range_ms);
    let (a1, b1) = window::bucket_span(last, range_ms);
    if k.buckets_from > a0 {
        return full();
    }
    let counter = matches!(f, WindowFn::Rate | WindowFn::Increase);
    WindowRequest {
        series_id,
        // The samples at the windows' start (read again), and those after what is held.
        raw: vec![(first - range_ms, a1), ((b0 - 1).max(k.through), last)],
        prev_after: counter.then_some(first - range_ms - max_silence_ms),
        buckets: Some((k.buckets_to.max(a0), b1)),
    }
}

/// What is kept joined with what was read (read data wins where both have it).
pub fn merge(kept: Option<Kept>, mut read: SeriesData) -> SeriesData {
    let Some(k) = kept else {
        return read;
    };
    let mut d = k.data;
    d.points.append(&mut read.points);
    // Stable: for equal times, the read sample (appended later) comes last; keep it.
    d.points.sort_by_key(|p| p.ts);
    dedup_keep_last(&mut d.points, |p| p.ts);
    d.buckets.append(&mut read.buckets);
    d.buckets.sort_by_key(|b| b.start);
    dedup_keep_last(&mut d.buckets, |b| b.start);
    d
}

fn dedup_keep_last<T>(v: &mut Vec<T>, key: impl Fn(&T) -> i64) {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v.drain(..) {
        if out.last().is_some_and(|y| key(y) == key(&x)) {
            out.pop();
        }
        out.push(x);
    }
    *v = out;
}

/// What to keep of `data` after evaluating through `last`.
pub fn keep(data: &SeriesData, f: WindowFn, range_ms: i64, last: i64) -> Kept {
    if f == WindowFn::Last {
        return Kept {
            data: SeriesData {
                points: data.points.iter().rev().take(1).copied().collect(),
                buckets: Vec::new(),
            },
            raw_from: i64::MIN,
            through: last,
            buckets_from: i64::MAX,
            buckets_to: i64::MIN,
        };
    }
    if !window::uses_rollups(f, range_ms) {
        let from = last - range_ms;
        // The samples of the last window, and the one before it (a counter's start).
        let i = data.points.partition_point(|p| p.ts <= from);
        let points = data.points[i.saturating_sub(1)..].to_vec();
        return Kept {
            data: SeriesData {
                points,
                buckets: Vec::new(),
            },
            raw_from: from,
            through: last,
            buckets_from: i64::MAX,
            buckets_to: i64::MIN,
        };
    }
    let (a, b) = window::bucket_span(last, range_ms);
    let buckets: Vec<_> = data
        .buckets
        .iter()
        .filter(|k| k.start >= a)
        .copied()
        .collect();
    let points: Vec<_> = data.points.iter().filter(|p| p.ts >= b).copied().collect();
    Kept {
        data: SeriesData { points, buckets },
        raw_from: b - 1,
        through: last,
        buckets_from: a,
        buckets_to: b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::window::{Bucket, Continuity, Point, apply, buckets_of};

    /// Serves a request from a full history, as `read_windows` does from the database.
    fn serve(req: &WindowRequest, points: &[Point], buckets: &[Bucket]) -> SeriesData {
        let mut out = SeriesData::default();
        for (i, &(lo, hi)) in req.raw.iter().enumerate() {
            if i == 0
                && let Some(pf) = req.prev_after
                && let Some(p) = points.iter().rev().find(|p| p.ts <= lo && p.ts > pf)
            {
                out.points.push(*p);
            }
            out.points
                .extend(points.iter().filter(|p| p.ts > lo && p.ts <= hi).copied());
        }
        if let Some((lo, hi)) = req.buckets {
            out.buckets.extend(
                buckets
                    .iter()
                    .filter(|b| b.start >= lo && b.start < hi)
                    .copied(),
            );
        }
        out.points.sort_by_key(|p| p.ts);
        out.points.dedup_by_key(|p| p.ts);
        out
    }

    #[test]
    fn reading_only_what_is_new_gives_what_reading_everything_gives() {
        let c = Continuity {
            gaps: vec![],
            max_silence_ms: 900_000,
        };
        // A counter with a reset and a hole, every 10 s for 4 hours.
        let points: Vec<Point> = (0..1440i64)
            .filter(|i| !(600..640).contains(i))
            .map(|i| Point {
                ts: 1_000_000 + i * 10_000 + (i % 3) * 7,
                value: if i < 900 {
                    (i * 5) as f64
                } else {
                    (i - 900) as f64 * 2.0
                },
            })
            .collect();
        let buckets = buckets_of(&points, &c);
        for (f, range) in [
            (WindowFn::Last, 1_800_000),
            (WindowFn::Rate, 300_000),
            (WindowFn::Max, 240_000),
            (WindowFn::Increase, 3_600_000),
            (WindowFn::Avg, 600_000),
        ] {
            let mut kept: Option<Kept> = None;
            let mut incremental = 0i64;
            // Cycles of 1 to 4 steps of 15 s, as an evaluator that sometimes falls behind.
            let mut t = 4_000_000;
            let mut n = 0;
            while t < 14_000_000 {
                let steps: Vec<i64> = (0..(1 + n % 4)).map(|k| t + k * 15_000).collect();
                n += 1;
                let req = plan(kept.as_ref(), 1, f, range, &steps, c.max_silence_ms);
                let full = WindowRequest::for_steps(1, f, range, &steps, c.max_silence_ms);
                incremental += i64::from(req != full);
                let merged = merge(kept.take(), serve(&req, &points, &buckets));
                let whole = serve(&full, &points, &buckets);
                for &s in &steps {
                    assert_eq!(
                        apply(f, &merged, s, range, &c),
                        apply(f, &whole, s, range, &c),
                        "{f:?} [{range}] at {s}"
                    );
                }
                let last = *steps.last().unwrap();
                kept = Some(keep(&merged, f, range, last));
                t = last + 15_000;
            }
            assert!(
                incremental > n / 2,
                "{f:?}: {incremental} of {n} cycles read only what was new"
            );
        }
    }
}
