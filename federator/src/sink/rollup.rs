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
//! 1-hour buckets covering them from the 1-minute rows. Every aggregate is computed
//! from scratch, so late, backfilled or repeated data give the same rows as data
//! that arrived on time and in order.

use sqlx::PgConnection;

use super::SinkError;

/// Widens each `pga_touched` row (`first_ts ..= last_ts` of the newly inserted
/// samples of a series) to the 1-minute buckets to recompute, `[lo, hi)`.
const WIDEN: &str = "\
UPDATE pga_touched t SET
    lo = date_bin('1 minute', t.first_ts, timestamptz 'epoch'),
    hi = date_bin('1 minute',
                  coalesce((SELECT s.ts FROM samples s
                            WHERE s.series_id = t.series_id AND s.ts > t.last_ts
                            ORDER BY s.ts LIMIT 1),
                           t.last_ts),
                  timestamptz 'epoch') + interval '1 minute'";

/// Recomputes the 1-minute rows of every `[lo, hi)` range from raw samples.
const ROLLUP_1M: &str = "\
INSERT INTO samples_1m AS r (series_id, bucket, count, sum, min, max, last, increase)
SELECT p.series_id,
       date_bin('1 minute', p.ts, timestamptz 'epoch') AS bucket,
       count(*), sum(p.value), min(p.value), max(p.value),
       (array_agg(p.value ORDER BY p.ts DESC))[1],
       CASE WHEN bool_and(p.counter) THEN
           sum(CASE WHEN p.prev IS NULL THEN 0
                    WHEN p.value >= p.prev THEN p.value - p.prev
                    ELSE p.value END)
       END
FROM (
    SELECT x.series_id, x.ts, x.value, x.in_range, se.kind = 'counter' AS counter,
           lag(x.value) OVER (PARTITION BY x.series_id ORDER BY x.ts) AS prev
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
) p
WHERE p.in_range
GROUP BY p.series_id, bucket
ON CONFLICT (series_id, bucket) DO UPDATE SET
    count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
    last = EXCLUDED.last, increase = EXCLUDED.increase";

/// Recomputes the 1-hour rows covering every `[lo, hi)` range from the 1-minute rows.
const ROLLUP_1H: &str = "\
INSERT INTO samples_1h AS r (series_id, bucket, count, sum, min, max, last, increase)
SELECT m.series_id,
       date_bin('1 hour', m.bucket, timestamptz 'epoch') AS hour,
       sum(m.count), sum(m.sum), min(m.min), max(m.max),
       (array_agg(m.last ORDER BY m.bucket DESC))[1],
       sum(m.increase)
FROM pga_touched t
JOIN samples_1m m
  ON m.series_id = t.series_id
 AND m.bucket >= date_bin('1 hour', t.lo, timestamptz 'epoch')
 AND m.bucket < date_bin('1 hour', t.hi - interval '1 minute', timestamptz 'epoch') + interval '1 hour'
GROUP BY m.series_id, hour
ON CONFLICT (series_id, bucket) DO UPDATE SET
    count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
    last = EXCLUDED.last, increase = EXCLUDED.increase";

/// Recomputes the rollups of the buckets touched by the samples listed in
/// `pga_touched`; returns the 1-minute and 1-hour rows written.
pub(crate) async fn recompute(conn: &mut PgConnection) -> Result<(u64, u64), SinkError> {
    sqlx::query(WIDEN)
        .execute(&mut *conn)
        .await
        .map_err(SinkError::db("finding the rollup buckets to recompute"))?;
    let m1 = sqlx::query(ROLLUP_1M)
        .execute(&mut *conn)
        .await
        .map_err(SinkError::db("recomputing 1-minute rollups"))?
        .rows_affected();
    let h1 = sqlx::query(ROLLUP_1H)
        .execute(&mut *conn)
        .await
        .map_err(SinkError::db("recomputing 1-hour rollups"))?
        .rows_affected();
    Ok((m1, h1))
}
