//! Exact rollups of the buckets a write touched.
//!
//! Definitions (docs/central-database.md, "Rollups"), per series and bucket `[b, b + width)`
//! (buckets aligned on the Unix epoch, UTC; widths 1 minute, 10 minutes, 1 hour and 1 day):
//!
//! * `count`, `sum`, `min`, `max` of the values of the samples in the bucket;
//! * `last`: the value of the newest sample in the bucket;
//! * a sample `s` whose predecessor `p` (the series' previous sample, which may lie in
//!   an earlier bucket) is separated from it by a **break** — a recorded gap of the
//!   series' agent starts between them (`p.ts ≤ gap.after_ts < s.ts`), or they lie
//!   more than `max_silence` apart — is the first after the break: `after_gap` is true
//!   for its bucket, and the pair `(p, s)` counts toward nothing below;
//! * `increase` (counters only, NULL for gauges): the sum, over every sample `s` in
//!   the bucket whose pair `(p, s)` counts, of `s − p` when `s ≥ p`, else `s` (a
//!   reset: the counter restarted from zero); NULL when no pair of the bucket counts
//!   (the series' first sample, the first after a break): nothing is known then;
//! * `increase_secs` (counters only): the time those pairs span, `Σ (s.ts − p.ts)`,
//!   so that `increase / increase_secs` is the rate over the time the increase covers.
//!
//! The pair straddling a bucket boundary counts toward the later bucket, so the
//! increases of consecutive buckets add up to the increase over their union, and
//! a 10-minute or 1-hour row is the sum of its 1-minute rows and a 1-day row the sum
//! of its 1-hour rows (`increase`, `increase_secs`; `after_gap` if any part's).
//!
//! A new sample at `t` changes the bucket of `t` and, through `increase` and the
//! breaks, the bucket of the next stored sample after `t`. So for every series the
//! write touched, the 1-minute buckets from the one holding its oldest new sample to
//! the one holding the first stored sample after its newest new sample are
//! recomputed from the raw samples (with the sample before that range as the first
//! predecessor), the closed 10-minute and 1-hour buckets covering them from the
//! 1-minute rows, and the closed 1-day buckets from the 1-hour rows ([`Closed`]). A gap
//! is recorded, in the transaction of the batch that reveals it, before that batch's
//! samples; its lower bound is the newest sample stored from the agent, so no pair
//! already stored straddles it. A series whose new samples are all newer than
//! everything stored for it (the usual case: a live agent, a catch-up) needs no
//! re-reading: its minutes are computed from the batch and its stored predecessor,
//! copied in when the minute held nothing, added to the row of the minute of its
//! newest stored sample, and added to its closed hours, ten minutes and days. Late, backfilled or repeated data
//! are recomputed from scratch, so they give the same rows as data that arrived on
//! time and in order.

use std::collections::HashMap;

use sqlx::PgConnection;

use super::SinkError;
use super::copy::{RollupCopy, RollupRow};
use super::samples::{self, Fresh};

/// Widens each `pga_touched` row (`first_ts ..= last_ts` of the newly inserted
/// samples of a series) not in `$1` to the 1-minute buckets to recompute, `[lo, hi)`:
/// up to the bucket of the series' next stored sample, in either form. The sink's
/// reads skip a damaged packed row (`true`: migration 0080) rather than stop the
/// agent's ingest over it; the query layer reports it.
const WIDEN: &str = "\
WITH n AS (
    SELECT t.series_id,
           (SELECT a.ts FROM pga_raw_after(t.series_id, t.last_ts, true) a) AS next_ts
    FROM pga_touched t
    WHERE t.series_id <> ALL($1))
UPDATE pga_touched t SET
    lo = date_bin('1 minute', t.first_ts, timestamptz 'epoch'),
    hi = date_bin('1 minute', coalesce(n.next_ts, t.last_ts), timestamptz 'epoch')
         + interval '1 minute'
FROM n
WHERE n.series_id = t.series_id";

/// Recomputes the 1-minute rows of every `[lo, hi)` range from raw samples (both
/// forms: `pga_raw`, whose bounds are inclusive, over `[lo, hi - 1 µs]`); `$2` is the
/// longest silence (ms) a pair may span and still count.
const ROLLUP_1M: &str = "\
INSERT INTO samples_1m AS r (series_id, bucket, count, sum, min, max, last, increase,
                             increase_secs, after_gap)
SELECT p.series_id, p.bucket,
       count(*), sum(p.value), min(p.value), max(p.value),
       max(p.value) FILTER (WHERE p.newest),
       CASE WHEN bool_and(p.counter) THEN
           sum(CASE WHEN p.value >= p.prev THEN p.value - p.prev ELSE p.value END)
               FILTER (WHERE p.counts)
       END,
       CASE WHEN bool_and(p.counter) THEN
           (sum(p.span_ms) FILTER (WHERE p.counts) / 1000.0)::float8
       END,
       bool_or(p.broken)
FROM (
    SELECT q.*, q.prev_ts IS NOT NULL AND NOT q.broken AS counts,
           q.next_ts IS NULL
           OR date_bin('1 minute', q.next_ts, timestamptz 'epoch') <> q.bucket AS newest
    FROM (
        SELECT b.*,
               coalesce(b.span_ms > $2 OR EXISTS (
                   SELECT FROM gaps g
                   WHERE g.agent_id = b.agent_id AND g.after_ts >= b.prev_ts
                     AND g.after_ts < b.ts), false) AS broken
        FROM (
            SELECT x.series_id, x.ts, x.value, x.in_range, se.agent_id,
                   se.kind = 'counter' AS counter,
                   date_bin('1 minute', x.ts, timestamptz 'epoch') AS bucket,
                   lag(x.value) OVER w AS prev, lag(x.ts) OVER w AS prev_ts,
                   (extract(epoch FROM x.ts - lag(x.ts) OVER w) * 1000)::bigint AS span_ms,
                   lead(x.ts) OVER w AS next_ts
            FROM pga_touched t
            JOIN series se ON se.id = t.series_id
            CROSS JOIN LATERAL (
                SELECT t.series_id, s.ts, s.value, false AS in_range
                FROM pga_raw_before(t.series_id, t.lo, true) s
                UNION ALL
                SELECT s.series_id, s.ts, s.value, true
                FROM pga_raw(ARRAY[t.series_id], t.lo, t.hi - interval '1 microsecond', true) s
            ) x
            WHERE t.series_id <> ALL($1)
            WINDOW w AS (PARTITION BY x.series_id ORDER BY x.ts)
        ) b
        WHERE b.in_range
    ) q
) p
GROUP BY p.series_id, p.bucket
ON CONFLICT (series_id, bucket) DO UPDATE SET
    count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
    last = EXCLUDED.last, increase = EXCLUDED.increase,
    increase_secs = EXCLUDED.increase_secs, after_gap = EXCLUDED.after_gap";

/// The rows of `{table}` (`samples_1h`, `samples_10m`: buckets `{width}` wide) summed
/// from the 1-minute rows `m` that `{from}` joins and filters (`m.bucket` whole
/// buckets), replacing the rows there: the sums `pga_rollups_in` makes of
/// open buckets (migration 0091).
macro_rules! sum_minutes_sql {
    ($table:literal, $width:literal, $($from:tt)+) => {
        concat!(
            "INSERT INTO ",
            $table,
            " AS r (series_id, bucket, count, sum, min, max, last, increase,
                      increase_secs, after_gap)
SELECT m.series_id, date_bin('",
            $width,
            "', m.bucket, timestamptz 'epoch'),
       sum(m.count), sum(m.sum), min(m.min), max(m.max),
       (array_agg(m.last ORDER BY m.bucket DESC))[1],
       sum(m.increase), sum(m.increase_secs), coalesce(bool_or(m.after_gap), false)
",
            $($from)+,
            "
GROUP BY 1, 2
ON CONFLICT (series_id, bucket) DO UPDATE SET
    count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
    last = EXCLUDED.last, increase = EXCLUDED.increase,
    increase_secs = EXCLUDED.increase_secs, after_gap = EXCLUDED.after_gap"
        )
    };
}

/// Recomputes the rows of `{table}` covering every `[lo, hi)` range of `pga_touched`
/// (the series not in `$1`) from the 1-minute rows, the closed buckets only: those
/// before `$2` (ms), the agent's mark in `closed_rollups`.
macro_rules! rollup_above_sql {
    ($table:literal, $width:literal) => {
        sum_minutes_sql!(
            $table,
            $width,
            concat!(
                "FROM pga_touched t
JOIN samples_1m m
  ON m.series_id = t.series_id
 AND t.series_id <> ALL($1)
 AND m.bucket >= date_bin('",
                $width,
                "', t.lo, timestamptz 'epoch')
 AND m.bucket < date_bin('",
                $width,
                "', t.hi - interval '1 minute', timestamptz 'epoch') + interval '",
                $width,
                "'
 AND m.bucket < timestamptz 'epoch' + $2::bigint * interval '1 millisecond'"
            )
        )
    };
}
const ROLLUP_1H: &str = rollup_above_sql!("samples_1h", "1 hour");
const ROLLUP_10M: &str = rollup_above_sql!("samples_10m", "10 minutes");

/// Recomputes the closed 1-day rows (`samples_1d`, migration 0094) covering every
/// `[lo, hi)` range of `pga_touched` (the series not in `$1`) from their 1-hour rows,
/// the days before `$2` (ms) only. Run after [`ROLLUP_1H`]: every hour of a closed
/// day is closed, and has been recomputed by then.
const ROLLUP_1D: &str = sum_minutes_sql!(
    "samples_1d",
    "1 day",
    "FROM pga_touched t
JOIN samples_1h m
  ON m.series_id = t.series_id
 AND t.series_id <> ALL($1)
 AND m.bucket >= date_bin('1 day', t.lo, timestamptz 'epoch')
 AND m.bucket < date_bin('1 day', t.hi - interval '1 minute', timestamptz 'epoch') + interval '1 day'
 AND m.bucket < timestamptz 'epoch' + $2::bigint * interval '1 millisecond'"
);

/// The hours job's statements ([`super::hours`]): the rows of the series `$1` in
/// `[$2, $3)` (ms, whole buckets) from their minutes.
macro_rules! close_sql {
    ($table:literal, $width:literal) => {
        sum_minutes_sql!(
            $table,
            $width,
            "FROM samples_1m m
WHERE m.series_id = ANY($1)
  AND m.bucket >= timestamptz 'epoch' + $2::bigint * interval '1 millisecond'
  AND m.bucket < timestamptz 'epoch' + $3::bigint * interval '1 millisecond'"
        )
    };
}
pub(crate) const CLOSE_1H: &str = close_sql!("samples_1h", "1 hour");
pub(crate) const CLOSE_10M: &str = close_sql!("samples_10m", "10 minutes");
/// The hours job's days: the 1-day rows of the series `$1` in `[$2, $3)` (ms, whole
/// days) from their 1-hour rows, all closed by then.
pub(crate) const CLOSE_1D: &str = sum_minutes_sql!(
    "samples_1d",
    "1 day",
    "FROM samples_1h m
WHERE m.series_id = ANY($1)
  AND m.bucket >= timestamptz 'epoch' + $2::bigint * interval '1 millisecond'
  AND m.bucket < timestamptz 'epoch' + $3::bigint * interval '1 millisecond'"
);

/// When a pair of consecutive samples `(p, s)` of one agent's series is broken
/// (module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Breaks {
    /// The longest span (ms) of a pair that counts.
    pub max_silence_ms: i64,
    /// `after_ts` (ms) of the newest gap recorded for the agent, this batch's
    /// included. Every gap's lower bound is a sample stored when it was recorded, so
    /// among the pairs a fresh series forms (its stored tail and newer samples) only
    /// the first can straddle a gap, and only the newest gap.
    pub gap_after_ms: Option<i64>,
}

/// Up to where (ms) an agent's 1-hour, 10-minute and 1-day rows are closed: its
/// marks in `closed_rollups` (migrations 0090 and 0094), `None` for none yet. The
/// ingest writes the rows of closed buckets only (keeping them exact as data arrives
/// late); the hours job writes the others once their time has passed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Closed {
    pub hours_ms: Option<i64>,
    pub tens_ms: Option<i64>,
    pub days_ms: Option<i64>,
}

fn closed(bucket_ms: i64, until_ms: Option<i64>) -> bool {
    until_ms.is_some_and(|until| bucket_ms < until)
}

impl Breaks {
    fn broken(&self, prev_ts: i64, ts: i64) -> bool {
        ts - prev_ts > self.max_silence_ms
            || self.gap_after_ms.is_some_and(|g| prev_ts <= g && g < ts)
    }
}

/// Adds partial rows, newer than every sample their buckets held, to those
/// buckets (see [`recompute`]); `{table}` is `samples_1m` or `samples_1h`. An
/// unknown (NULL) increase on one side leaves the other's.
macro_rules! merge_sql {
    ($table:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " AS r (series_id, bucket, count, sum, min, max, last, increase, increase_secs,
                     after_gap)
SELECT h.id, timestamptz 'epoch' + h.at_ms * interval '1 millisecond',
       h.count, h.sum, h.min, h.max, h.last, h.increase, h.increase_secs, h.after_gap
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::float8[], $5::float8[],
            $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::boolean[])
     AS h(id, at_ms, count, sum, min, max, last, increase, increase_secs, after_gap)
ON CONFLICT (series_id, bucket) DO UPDATE SET
    count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum,
    min = least(r.min, EXCLUDED.min), max = greatest(r.max, EXCLUDED.max),
    last = EXCLUDED.last,
    increase = coalesce(r.increase + EXCLUDED.increase, r.increase, EXCLUDED.increase),
    increase_secs = coalesce(r.increase_secs + EXCLUDED.increase_secs, r.increase_secs,
                             EXCLUDED.increase_secs),
    after_gap = coalesce(r.after_gap, false) OR EXCLUDED.after_gap"
        )
    };
}
const MERGE_1M: &str = merge_sql!("samples_1m");
const MERGE_1H: &str = merge_sql!("samples_1h");
const MERGE_10M: &str = merge_sql!("samples_10m");
const MERGE_1D: &str = merge_sql!("samples_1d");

const HOUR_MS: i64 = 3_600_000;
const TEN_MINUTES_MS: i64 = 600_000;
const DAY_MS: i64 = 86_400_000;

/// Recomputes the rollups of the buckets touched by the samples listed in
/// `pga_touched`; returns the 1-minute and the 1-hour, 10-minute and 1-day rows
/// written.
/// 1-hour, 10-minute and 1-day rows are written for the agent's [`Closed`] buckets only;
/// the hours job writes the others once their time has passed.
///
/// `fresh` holds the series whose new samples are newer than all they had stored
/// ([`Fresh`]): their 1-minute rows follow from the new samples and the stored
/// predecessor alone, and are computed here, copied in (or added to the minute of
/// the newest stored sample), and added to their hours. The others are recomputed
/// in SQL from the raw samples; when `ranges` says there are none, no SQL runs for
/// them.
pub(crate) async fn recompute(
    conn: &mut PgConnection,
    fresh: &HashMap<i64, Fresh>,
    ranges: Option<&[[i64; 4]]>,
    breaks: Breaks,
    marks: Closed,
) -> Result<(u64, u64), SinkError> {
    let mut copy = RollupCopy::new();
    let mut computed = Vec::with_capacity(fresh.len());
    let mut continued: Vec<RollupRow> = Vec::new();
    let mut hours: Vec<RollupRow> = Vec::new();
    let mut tens: Vec<RollupRow> = Vec::new();
    let mut days: Vec<RollupRow> = Vec::new();
    for (&id, series) in fresh {
        let minutes = minute_rows(id, series.counter, series.prev, &series.samples, breaks);
        let tail_minute = series.tail_ms.map(|t| t - t.rem_euclid(60_000));
        for row in &minutes {
            if Some(row.bucket_ms) == tail_minute {
                continued.push(*row);
            } else {
                copy.push(row);
            }
        }
        hours.extend(
            partials(&minutes, HOUR_MS)
                .into_iter()
                .filter(|h| closed(h.bucket_ms, marks.hours_ms)),
        );
        tens.extend(
            partials(&minutes, TEN_MINUTES_MS)
                .into_iter()
                .filter(|h| closed(h.bucket_ms, marks.tens_ms)),
        );
        days.extend(
            partials(&minutes, DAY_MS)
                .into_iter()
                .filter(|h| closed(h.bucket_ms, marks.days_ms)),
        );
        computed.push(id);
    }
    let mut m1 = copy.rows() as u64;
    if m1 > 0 && !copy_rollups(conn, copy).await? {
        computed.clear();
        continued.clear();
        hours.clear();
        tens.clear();
        days.clear();
        m1 = 0;
    }
    if !continued.is_empty() {
        m1 += merge(conn, MERGE_1M, &continued, "merging 1-minute rollups").await?;
    }
    let mut h1 = 0;
    if ranges.is_none_or(|r| r.len() != computed.len()) {
        if let Some(ranges) = ranges {
            samples::list_touched(conn, ranges).await?;
        }
        sqlx::query(WIDEN)
            .bind(&computed)
            .execute(&mut *conn)
            .await
            .map_err(SinkError::db("finding the rollup buckets to recompute"))?;
        m1 += sqlx::query(ROLLUP_1M)
            .bind(&computed)
            .bind(breaks.max_silence_ms)
            .execute(&mut *conn)
            .await
            .map_err(SinkError::db("recomputing 1-minute rollups"))?
            .rows_affected();
        for (statement, until, what) in [
            (ROLLUP_1H, marks.hours_ms, "recomputing 1-hour rollups"),
            (ROLLUP_10M, marks.tens_ms, "recomputing 10-minute rollups"),
            // After the hours, which it sums.
            (ROLLUP_1D, marks.days_ms, "recomputing 1-day rollups"),
        ] {
            if let Some(until) = until {
                h1 += sqlx::query(statement)
                    .bind(&computed)
                    .bind(until)
                    .execute(&mut *conn)
                    .await
                    .map_err(SinkError::db(what))?
                    .rows_affected();
            }
        }
    }
    if !hours.is_empty() {
        h1 += merge(conn, MERGE_1H, &hours, "merging 1-hour rollups").await?;
    }
    if !tens.is_empty() {
        h1 += merge(conn, MERGE_10M, &tens, "merging 10-minute rollups").await?;
    }
    if !days.is_empty() {
        h1 += merge(conn, MERGE_1D, &days, "merging 1-day rollups").await?;
    }
    Ok((m1, h1))
}

/// Copies computed 1-minute rows in, inside a savepoint; false (and nothing
/// written) when a row already existed, so that SQL recomputes them all instead.
async fn copy_rollups(conn: &mut PgConnection, copy: RollupCopy) -> Result<bool, SinkError> {
    sqlx::Executor::execute(&mut *conn, "SAVEPOINT pga_rollup")
        .await
        .map_err(SinkError::db("starting the rollup copy"))?;
    let copied = async {
        let mut copy_in = conn
            .copy_in_raw(
                "COPY samples_1m (series_id, bucket, count, sum, min, max, last, increase, \
                 increase_secs, after_gap) FROM STDIN (FORMAT binary)",
            )
            .await?;
        copy_in.send(copy.finish()).await?;
        copy_in.finish().await
    }
    .await;
    let statement = match copied {
        Ok(_) => "RELEASE SAVEPOINT pga_rollup",
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
            "ROLLBACK TO SAVEPOINT pga_rollup"
        }
        Err(e) => return Err(SinkError::db("copying 1-minute rollups")(e)),
    };
    sqlx::Executor::execute(&mut *conn, statement)
        .await
        .map_err(SinkError::db("finishing the rollup copy"))?;
    Ok(statement.starts_with("RELEASE"))
}

/// The 1-minute rows of one series' samples (ascending), `prev` being the stored
/// sample before them `(ts, value)`; the same definitions, comparisons and summation
/// order as `ROLLUP_1M` (PostgreSQL orders NaN above every number).
fn minute_rows(
    id: i64,
    counter: bool,
    mut prev: Option<(i64, f64)>,
    samples: &[(i64, f64)],
    breaks: Breaks,
) -> Vec<RollupRow> {
    let mut rows: Vec<RollupRow> = Vec::new();
    // The span (ms) of the pairs counted in each row, summed exactly.
    let mut spans: Vec<i64> = Vec::new();
    for &(ts, v) in samples {
        let bucket_ms = ts - ts.rem_euclid(60_000);
        let broken = prev.is_some_and(|(pts, _)| breaks.broken(pts, ts));
        // The pair's contribution when it counts: (increase, span ms).
        let pair = prev.filter(|_| !broken).map(|(pts, p)| {
            let step = if pg_ge(v, p) { v - p } else { v };
            (step, ts - pts)
        });
        prev = Some((ts, v));
        match rows.last_mut() {
            Some(r) if r.bucket_ms == bucket_ms => {
                r.count += 1;
                r.sum += v;
                if pg_ge(r.min, v) {
                    r.min = v;
                }
                if pg_ge(v, r.max) {
                    r.max = v;
                }
                r.last = v;
                r.after_gap |= broken;
            }
            _ => {
                rows.push(RollupRow {
                    series_id: id,
                    bucket_ms,
                    count: 1,
                    sum: v,
                    min: v,
                    max: v,
                    last: v,
                    increase: None,
                    increase_secs: None,
                    after_gap: broken,
                });
                spans.push(0);
            }
        }
        let (Some(row), Some(total)) = (rows.last_mut(), spans.last_mut()) else {
            continue;
        };
        if counter && let Some((step, span)) = pair {
            row.increase = Some(row.increase.map_or(step, |i| i + step));
            *total += span;
        }
    }
    for (row, span) in rows.iter_mut().zip(spans) {
        if row.increase.is_some() {
            row.increase_secs = Some(span as f64 / 1000.0);
        }
    }
    rows
}

/// One partial row per `width_ms` bucket of `minutes` (ascending), merged the way
/// `ROLLUP_1H` and `ROLLUP_10M` aggregate.
fn partials(minutes: &[RollupRow], width_ms: i64) -> Vec<RollupRow> {
    let mut out: Vec<RollupRow> = Vec::new();
    for m in minutes {
        let hour_ms = m.bucket_ms - m.bucket_ms.rem_euclid(width_ms);
        match out.last_mut() {
            Some(h) if h.bucket_ms == hour_ms => {
                h.count += m.count;
                h.sum += m.sum;
                if pg_ge(h.min, m.min) {
                    h.min = m.min;
                }
                if pg_ge(m.max, h.max) {
                    h.max = m.max;
                }
                h.last = m.last;
                h.increase = add_known(h.increase, m.increase);
                h.increase_secs = add_known(h.increase_secs, m.increase_secs);
                h.after_gap |= m.after_gap;
            }
            _ => out.push(RollupRow {
                bucket_ms: hour_ms,
                ..*m
            }),
        }
    }
    out
}

/// SQL's `sum` over two values: NULLs left out, NULL when both are.
fn add_known(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

/// Adds partial rows to their buckets with `statement` ([`MERGE_1M`] or
/// [`MERGE_1H`]).
async fn merge(
    conn: &mut PgConnection,
    statement: &str,
    rows: &[RollupRow],
    what: &'static str,
) -> Result<u64, SinkError> {
    let col = |f: fn(&RollupRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    let ids: Vec<i64> = rows.iter().map(|h| h.series_id).collect();
    let at: Vec<i64> = rows.iter().map(|h| h.bucket_ms).collect();
    let count: Vec<i64> = rows.iter().map(|h| h.count).collect();
    let increase: Vec<Option<f64>> = rows.iter().map(|h| h.increase).collect();
    let increase_secs: Vec<Option<f64>> = rows.iter().map(|h| h.increase_secs).collect();
    let after_gap: Vec<bool> = rows.iter().map(|h| h.after_gap).collect();
    Ok(sqlx::query(statement)
        .bind(&ids)
        .bind(&at)
        .bind(&count)
        .bind(col(|h| h.sum))
        .bind(col(|h| h.min))
        .bind(col(|h| h.max))
        .bind(col(|h| h.last))
        .bind(&increase)
        .bind(&increase_secs)
        .bind(&after_gap)
        .execute(&mut *conn)
        .await
        .map_err(SinkError::db(what))?
        .rows_affected())
}

/// `a >= b` as PostgreSQL compares float8: NaN equals NaN and exceeds everything.
fn pg_ge(a: f64, b: f64) -> bool {
    if a.is_nan() {
        true
    } else if b.is_nan() {
        false
    } else {
        a >= b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_BREAKS: Breaks = Breaks {
        max_silence_ms: i64::MAX,
        gap_after_ms: None,
    };

    #[test]
    fn minute_rows_follow_the_definitions() {
        // A counter: 10 (prev, at 50 s) → 12, 15 | 3 (reset), 4 in the next minute.
        let rows = minute_rows(
            9,
            true,
            Some((50_000, 10.0)),
            &[
                (60_000, 12.0),
                (90_000, 15.0),
                (120_000, 3.0),
                (150_000, 4.0),
            ],
            NO_BREAKS,
        );
        assert_eq!(rows.len(), 2);
        let r = rows[0];
        assert_eq!(
            (r.bucket_ms, r.count, r.sum, r.min, r.max, r.last),
            (60_000, 2, 27.0, 12.0, 15.0, 15.0)
        );
        assert_eq!((r.increase, r.increase_secs), (Some(5.0), Some(40.0)));
        let r = rows[1];
        assert_eq!((r.bucket_ms, r.count, r.last), (120_000, 2, 4.0));
        assert_eq!((r.increase, r.increase_secs), (Some(3.0 + 1.0), Some(60.0)));
        assert!(!r.after_gap);
        // A gauge has no increase; the first sample ever: nothing known.
        let rows = minute_rows(9, false, None, &[(-1, 1.0)], NO_BREAKS);
        assert_eq!((rows[0].bucket_ms, rows[0].increase), (-60_000, None));
        let rows = minute_rows(9, true, None, &[(0, 7.0)], NO_BREAKS);
        assert_eq!((rows[0].increase, rows[0].increase_secs), (None, None));
        let rows = minute_rows(9, true, None, &[(0, 7.0), (1, 9.0)], NO_BREAKS);
        assert_eq!(
            (rows[0].increase, rows[0].increase_secs),
            (Some(2.0), Some(0.001))
        );
    }

    #[test]
    fn no_increase_is_attributed_across_a_break() {
        // 21 per second, every 10 s; a silence of 16 minutes after 100 s.
        let mut samples: Vec<(i64, f64)> =
            (0..10).map(|i| (i * 10_000, i as f64 * 210.0)).collect();
        let resume = 90_000 + 16 * 60_000;
        samples.extend((0..12).map(|i| {
            let ts = resume + i * 10_000;
            (ts, ts as f64 / 1000.0 * 21.0)
        }));
        let silence = Breaks {
            max_silence_ms: 180_000,
            gap_after_ms: None,
        };
        let rows = minute_rows(1, true, None, &samples, silence);
        for r in &rows {
            let rate = r.increase.unwrap() / r.increase_secs.unwrap();
            assert!((rate - 21.0).abs() < 1e-9, "{r:?}");
        }
        let first_after = rows.iter().find(|r| r.after_gap).unwrap();
        assert_eq!(first_after.bucket_ms, 1_020_000);
        assert!(first_after.increase_secs.unwrap() < 60.0, "{first_after:?}");
        // The same pair across a recorded gap whose lower bound is the sample before it.
        let gap = Breaks {
            max_silence_ms: i64::MAX,
            gap_after_ms: Some(90_000),
        };
        assert_eq!(minute_rows(1, true, None, &samples, gap), rows);
        // A sample alone after the break: its increase is unknown, not zero.
        let rows = minute_rows(1, true, Some((0, 5.0)), &[(600_000, 9.0)], silence);
        assert_eq!((rows[0].increase, rows[0].after_gap), (None, true));
    }

    #[test]
    fn hour_partials_merge_minutes_of_the_same_hour() {
        let rows = minute_rows(
            3,
            true,
            None,
            &[
                (3_540_000, 1.0),
                (3_600_000, 4.0),
                (3_660_000, 2.0),
                (3_720_000, 5.0),
            ],
            NO_BREAKS,
        );
        let hours = partials(&rows, HOUR_MS);
        assert_eq!(hours.len(), 2);
        assert_eq!(
            (
                hours[0].bucket_ms,
                hours[0].count,
                hours[0].last,
                hours[0].increase
            ),
            (0, 1, 1.0, None)
        );
        let h = hours[1];
        assert_eq!(
            (h.bucket_ms, h.count, h.sum, h.min, h.max, h.last),
            (3_600_000, 3, 11.0, 2.0, 5.0, 5.0)
        );
        // 1 → 4: +3; 4 → 2: reset, +2; 2 → 5: +3; three minutes covered.
        assert_eq!((h.increase, h.increase_secs), (Some(8.0), Some(180.0)));
    }

    #[test]
    fn nan_orders_like_postgresql() {
        assert!(pg_ge(f64::NAN, 1.0));
        assert!(!pg_ge(1.0, f64::NAN));
        let rows = minute_rows(
            1,
            false,
            None,
            &[(0, 1.0), (1, f64::NAN), (2, 0.5)],
            NO_BREAKS,
        );
        assert!(rows[0].max.is_nan());
        assert_eq!(rows[0].min, 0.5);
    }
}
