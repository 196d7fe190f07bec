//! Exact rollups of the buckets a write touched.
//!
//! Definitions (README.md, "Rollups"), per series and bucket `[b, b + width)`
//! (buckets aligned on the Unix epoch, UTC; widths 1 minute and 1 hour):
//!
//! * `count`, `sum`, `min`, `max` of the values of the samples in the bucket;
//! * `last`: the value of the newest sample in the bucket;
//! * `increase` (counters only, NULL for gauges): the sum, over every sample `s` in
//!   the bucket that has a predecessor `p` (the series' previous sample, which may
//!   lie in an earlier bucket), of `s − p` when `s ≥ p`, else `s` (a reset: the
//!   counter restarted from zero). The pair straddling a bucket boundary counts
//!   toward the later bucket, so the increases of consecutive buckets add up to the
//!   increase over their union, and the 1-hour increase is the sum of its
//!   1-minute increases. A series' very first sample contributes nothing.
//!
//! A new sample at `t` changes the bucket of `t` and, through `increase`, the bucket
//! of the next stored sample after `t`. So for every series the write touched, the
//! 1-minute buckets from the one holding its oldest new sample to the one holding the
//! first stored sample after its newest new sample are recomputed from the raw
//! samples (with the sample before that range as the first predecessor), and the
//! 1-hour buckets covering them from the 1-minute rows. A series whose new samples
//! are all newer than everything stored for it (the usual case: a live agent, a
//! catch-up) needs no re-reading: its minutes are computed from the batch and its
//! stored predecessor, copied in when the minute held nothing, added to the row of
//! the minute of its newest stored sample, and added to its hours. Late,
//! backfilled or repeated data are recomputed from scratch, so they give the same
//! rows as data that arrived on time and in order.

use std::collections::HashMap;

use sqlx::PgConnection;

use super::SinkError;
use super::copy::{RollupCopy, RollupRow};
use super::samples::{self, Fresh};

/// Widens each `pga_touched` row (`first_ts ..= last_ts` of the newly inserted
/// samples of a series) not in `$1` to the 1-minute buckets to recompute, `[lo, hi)`.
const WIDEN: &str = "\
WITH n AS (
    SELECT t.series_id,
           (SELECT s.ts FROM samples s WHERE s.series_id = t.series_id AND s.ts > t.last_ts
            ORDER BY s.ts LIMIT 1) AS next_ts
    FROM pga_touched t
    WHERE t.series_id <> ALL($1))
UPDATE pga_touched t SET
    lo = date_bin('1 minute', t.first_ts, timestamptz 'epoch'),
    hi = date_bin('1 minute', coalesce(n.next_ts, t.last_ts), timestamptz 'epoch')
         + interval '1 minute'
FROM n
WHERE n.series_id = t.series_id";

/// Recomputes the 1-minute rows of every `[lo, hi)` range from raw samples.
const ROLLUP_1M: &str = "\
INSERT INTO samples_1m AS r (series_id, bucket, count, sum, min, max, last, increase)
SELECT p.series_id, p.bucket,
       count(*), sum(p.value), min(p.value), max(p.value),
       max(p.value) FILTER (WHERE p.newest),
       CASE WHEN bool_and(p.counter) THEN
           sum(CASE WHEN p.prev IS NULL THEN 0
                    WHEN p.value >= p.prev THEN p.value - p.prev
                    ELSE p.value END)
       END
FROM (
    SELECT q.*, q.next_ts IS NULL
                OR date_bin('1 minute', q.next_ts, timestamptz 'epoch') <> q.bucket AS newest
    FROM (
        SELECT x.series_id, x.ts, x.value, x.in_range, se.kind = 'counter' AS counter,
               date_bin('1 minute', x.ts, timestamptz 'epoch') AS bucket,
               lag(x.value) OVER w AS prev, lead(x.ts) OVER w AS next_ts
        FROM pga_touched t
        JOIN series se ON se.id = t.series_id
        CROSS JOIN LATERAL (
            (SELECT s.series_id, s.ts, s.value, false AS in_range FROM samples s
             WHERE s.series_id = t.series_id AND s.ts < t.lo
             ORDER BY s.ts DESC LIMIT 1)
            UNION ALL
            (SELECT s.series_id, s.ts, s.value, true FROM samples s
             WHERE s.series_id = t.series_id AND s.ts >= t.lo AND s.ts < t.hi)
        ) x
        WHERE t.series_id <> ALL($1)
        WINDOW w AS (PARTITION BY x.series_id ORDER BY x.ts)
    ) q
) p
WHERE p.in_range
GROUP BY p.series_id, p.bucket
ON CONFLICT (series_id, bucket) DO UPDATE SET
    count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
    last = EXCLUDED.last, increase = EXCLUDED.increase";

/// Recomputes the 1-hour rows covering every `[lo, hi)` range from the 1-minute rows.
const ROLLUP_1H: &str = "\
INSERT INTO samples_1h AS r (series_id, bucket, count, sum, min, max, last, increase)
SELECT m.series_id, m.hour,
       sum(m.count), sum(m.sum), min(m.min), max(m.max),
       max(m.last) FILTER (WHERE m.newest),
       sum(m.increase)
FROM (
    SELECT q.*, q.next_bucket IS NULL
                OR date_bin('1 hour', q.next_bucket, timestamptz 'epoch') <> q.hour AS newest
    FROM (
        SELECT m.*, date_bin('1 hour', m.bucket, timestamptz 'epoch') AS hour,
               lead(m.bucket) OVER (PARTITION BY m.series_id ORDER BY m.bucket) AS next_bucket
        FROM pga_touched t
        JOIN samples_1m m
          ON m.series_id = t.series_id
         AND t.series_id <> ALL($1)
         AND m.bucket >= date_bin('1 hour', t.lo, timestamptz 'epoch')
         AND m.bucket < date_bin('1 hour', t.hi - interval '1 minute', timestamptz 'epoch')
                        + interval '1 hour'
    ) q
) m
GROUP BY m.series_id, m.hour
ON CONFLICT (series_id, bucket) DO UPDATE SET
    count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
    last = EXCLUDED.last, increase = EXCLUDED.increase";

/// Adds partial rows, newer than every sample their buckets held, to those
/// buckets (see [`recompute`]); `{table}` is `samples_1m` or `samples_1h`.
macro_rules! merge_sql {
    ($table:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " AS r (series_id, bucket, count, sum, min, max, last, increase)
SELECT h.id, timestamptz 'epoch' + h.at_ms * interval '1 millisecond',
       h.count, h.sum, h.min, h.max, h.last, h.increase
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::float8[], $5::float8[],
            $6::float8[], $7::float8[], $8::float8[])
     AS h(id, at_ms, count, sum, min, max, last, increase)
ON CONFLICT (series_id, bucket) DO UPDATE SET
    count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum,
    min = least(r.min, EXCLUDED.min), max = greatest(r.max, EXCLUDED.max),
    last = EXCLUDED.last, increase = r.increase + EXCLUDED.increase"
        )
    };
}
const MERGE_1M: &str = merge_sql!("samples_1m");
const MERGE_1H: &str = merge_sql!("samples_1h");

/// Recomputes the rollups of the buckets touched by the samples listed in
/// `pga_touched`; returns the 1-minute and 1-hour rows written.
///
/// `fresh` holds the series whose new samples are newer than all they had stored
/// ([`Fresh`]): their 1-minute rows follow from the new samples and the stored
/// predecessor alone, and are computed here, copied in (or added to the minute of the
/// newest stored sample), and added to their hours. The others are recomputed in SQL from the raw samples; when `touched`
/// (how many series `pga_touched` lists) says there are none, no SQL runs for them.
pub(crate) async fn recompute(
    conn: &mut PgConnection,
    fresh: &HashMap<i64, Fresh>,
    ranges: Option<&[[i64; 4]]>,
) -> Result<(u64, u64), SinkError> {
    let mut copy = RollupCopy::new();
    let mut computed = Vec::with_capacity(fresh.len());
    let mut continued: Vec<RollupRow> = Vec::new();
    let mut hours: Vec<RollupRow> = Vec::new();
    for (&id, series) in fresh {
        let minutes = minute_rows(id, series.counter, series.prev, &series.samples);
        let tail_minute = series.tail_ms.map(|t| t - t.rem_euclid(60_000));
        for row in &minutes {
            if Some(row.bucket_ms) == tail_minute {
                continued.push(*row);
            } else {
                copy.push(row);
            }
        }
        hours.extend(hour_partials(&minutes));
        computed.push(id);
    }
    let mut m1 = copy.rows() as u64;
    if m1 > 0 && !copy_rollups(conn, copy).await? {
        computed.clear();
        continued.clear();
        hours.clear();
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
            .execute(&mut *conn)
            .await
            .map_err(SinkError::db("recomputing 1-minute rollups"))?
            .rows_affected();
        h1 += sqlx::query(ROLLUP_1H)
            .bind(&computed)
            .execute(&mut *conn)
            .await
            .map_err(SinkError::db("recomputing 1-hour rollups"))?
            .rows_affected();
    }
    if !hours.is_empty() {
        h1 += merge(conn, MERGE_1H, &hours, "merging 1-hour rollups").await?;
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
                "COPY samples_1m (series_id, bucket, count, sum, min, max, last, increase) \
                 FROM STDIN (FORMAT binary)",
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
/// sample before them; the same definitions, comparisons and summation order as
/// `ROLLUP_1M` (PostgreSQL orders NaN above every number).
fn minute_rows(
    id: i64,
    counter: bool,
    mut prev: Option<f64>,
    samples: &[(i64, f64)],
) -> Vec<RollupRow> {
    let mut rows: Vec<RollupRow> = Vec::new();
    for &(ts, v) in samples {
        let bucket_ms = ts - ts.rem_euclid(60_000);
        let step = match prev {
            None => 0.0,
            Some(p) if pg_ge(v, p) => v - p,
            Some(_) => v,
        };
        prev = Some(v);
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
                r.increase = r.increase.map(|i| i + step);
            }
            _ => rows.push(RollupRow {
                series_id: id,
                bucket_ms,
                count: 1,
                sum: v,
                min: v,
                max: v,
                last: v,
                increase: counter.then_some(0.0 + step),
            }),
        }
    }
    rows
}

/// One partial 1-hour row per hour of `minutes` (ascending), merged the way
/// `ROLLUP_1H` aggregates.
fn hour_partials(minutes: &[RollupRow]) -> Vec<RollupRow> {
    let mut out: Vec<RollupRow> = Vec::new();
    for m in minutes {
        let hour_ms = m.bucket_ms - m.bucket_ms.rem_euclid(3_600_000);
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
                h.increase = h.increase.zip(m.increase).map(|(a, b)| a + b);
            }
            _ => out.push(RollupRow {
                bucket_ms: hour_ms,
                ..*m
            }),
        }
    }
    out
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
    Ok(sqlx::query(statement)
        .bind(&ids)
        .bind(&at)
        .bind(&count)
        .bind(col(|h| h.sum))
        .bind(col(|h| h.min))
        .bind(col(|h| h.max))
        .bind(col(|h| h.last))
        .bind(&increase)
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

    #[test]
    fn minute_rows_follow_the_definitions() {
        // A counter: 10 (prev) → 12, 15 | 3 (reset), 4 in the next minute.
        let rows = minute_rows(
            9,
            true,
            Some(10.0),
            &[
                (60_000, 12.0),
                (90_000, 15.0),
                (120_000, 3.0),
                (150_000, 4.0),
            ],
        );
        assert_eq!(rows.len(), 2);
        let r = rows[0];
        assert_eq!(
            (r.bucket_ms, r.count, r.sum, r.min, r.max, r.last),
            (60_000, 2, 27.0, 12.0, 15.0, 15.0)
        );
        assert_eq!(r.increase, Some(5.0));
        let r = rows[1];
        assert_eq!((r.bucket_ms, r.count, r.last), (120_000, 2, 4.0));
        assert_eq!(r.increase, Some(3.0 + 1.0));
        // A gauge has no increase; the first sample ever contributes nothing.
        let rows = minute_rows(9, false, None, &[(-1, 1.0)]);
        assert_eq!((rows[0].bucket_ms, rows[0].increase), (-60_000, None));
        let rows = minute_rows(9, true, None, &[(0, 7.0), (1, 9.0)]);
        assert_eq!(rows[0].increase, Some(2.0));
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
        );
        let hours = hour_partials(&rows);
        assert_eq!(hours.len(), 2);
        assert_eq!(
            (hours[0].bucket_ms, hours[0].count, hours[0].last),
            (0, 1, 1.0)
        );
        let h = hours[1];
        assert_eq!(
            (h.bucket_ms, h.count, h.sum, h.min, h.max, h.last),
            (3_600_000, 3, 11.0, 2.0, 5.0, 5.0)
        );
        // 1 → 4: +3; 4 → 2: reset, +2; 2 → 5: +3.
        assert_eq!(h.increase, Some(8.0));
    }

    #[test]
    fn nan_orders_like_postgresql() {
        assert!(pg_ge(f64::NAN, 1.0));
        assert!(!pg_ge(1.0, f64::NAN));
        let rows = minute_rows(1, false, None, &[(0, 1.0), (1, f64::NAN), (2, 0.5)]);
        assert!(rows[0].max.is_nan());
        assert_eq!(rows[0].min, 0.5);
    }
}
