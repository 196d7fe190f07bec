-- pgAnalytics v3 central database: the readers of 10-minute and 1-hour rollups over
-- closed and open buckets (0090_closed_hours.sql).
--
-- * pga_closed_until(which): up to where every agent's rows of `samples_1h`
--   ('hours') or `samples_10m` ('tens') are complete: the oldest mark of
--   `closed_rollups`, -infinity while an agent has none;
-- * pga_hours: the 1-hour rollups, with the columns of `samples_1h` and exactly the
--   rows it had before 0090: its rows below that mark, and from it on the 1-minute
--   rows summed per hour the way the sink sums them (federator/src/db/sink/rollup.rs).
--   A filter on series_id and bucket reaches both parts;
-- * pga_rollups_in(which, series, from, to, closed): the same for 10-minute ('tens') or
--   1-hour ('hours') rollups, for a list of series and a range, reading only the
--   minutes of that range;
-- * pga_latest: reads, of the packed windows, only the one that ends last, and is
--   planned once per session (PL/pgSQL);
-- * pga_range_source: '10m' for steps of whole multiples of 10 minutes, below whole
--   hours;
-- * metric_rollups_1h, pga_range_series (so pga_range and pga_range_top) and
--   pga_summary: as in 0006_views.sql, 0081_packed_query.sql and
--   0040_query_speed.sql, reading these.
--
-- Re-runnable (CREATE OR REPLACE only): federator/src/db/sink/timescale.rs applies
-- it again after the TimescaleDB conversion, after the migrations whose objects it
-- replaces.

CREATE OR REPLACE FUNCTION pga_closed_until(p_which text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT coalesce(min(coalesce(CASE p_which WHEN 'hours' THEN k.hours_until
                                              WHEN 'tens' THEN k.tens_until END,
                                 timestamptz '-infinity')),
                    timestamptz 'infinity')
    FROM agents a
    LEFT JOIN closed_rollups k ON k.agent_id = a.id
$$;

CREATE OR REPLACE VIEW pga_hours AS
SELECT r.series_id, r.bucket, r.count, r.sum, r.min, r.max, r.last, r.increase,
       r.increase_secs, r.after_gap
FROM samples_1h r
WHERE r.bucket < (SELECT pga_closed_until('hours'))
UNION ALL
SELECT m.series_id, date_bin('1 hour', m.bucket, timestamptz 'epoch') AS bucket,
       sum(m.count)::bigint AS count, sum(m.sum) AS sum, min(m.min) AS min, max(m.max) AS max,
       (array_agg(m.last ORDER BY m.bucket DESC))[1] AS last, sum(m.increase) AS increase,
       sum(m.increase_secs) AS increase_secs, coalesce(bool_or(m.after_gap), false) AS after_gap
FROM samples_1m m
WHERE m.bucket >= (SELECT pga_closed_until('hours'))
GROUP BY 1, 2;

COMMENT ON VIEW pga_hours IS
    'the 1-hour rollups: samples_1h below the closed hours (closed_rollups), summed 1-minute rows after them';

-- The first bucket `p_width` wide (aligned on the Unix epoch) starting at or after
-- p_at; infinities stay themselves.
CREATE OR REPLACE FUNCTION pga_bucket_ceil(p_width interval, p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN isfinite(p_at)
                THEN date_bin(p_width, p_at - interval '1 microsecond', timestamptz 'epoch') + p_width
                ELSE p_at END
$$;

-- The 10-minute (p_which 'tens') or 1-hour ('hours') rollups of the series p_series
-- with `bucket` in [p_from, p_to), the rows pga_hours has for 'hours': the table's rows
-- below p_closed, and from it on the 1-minute rows of the range summed per bucket.
-- p_closed must be pga_closed_until(p_which), read by the caller in the same
-- statement or transaction snapshot and passed as a value, so that the planner reads
-- only the 1-minute partitions from it on. Inlined where it is called with a constant
-- p_which, which leaves one table's branch.
CREATE OR REPLACE FUNCTION pga_rollups_in(p_which text, p_series bigint[], p_from timestamptz,
                                          p_to timestamptz, p_closed timestamptz)
RETURNS TABLE (series_id bigint, bucket timestamptz, count bigint, sum double precision,
               min double precision, max double precision, last double precision,
               increase double precision, increase_secs double precision, after_gap boolean)
LANGUAGE sql STABLE AS $$
    SELECT r.series_id, r.bucket, r.count, r.sum, r.min, r.max, r.last, r.increase,
           r.increase_secs, r.after_gap
    FROM samples_1h r
    WHERE p_which = 'hours'
      AND r.series_id = ANY (p_series) AND r.bucket >= p_from AND r.bucket < p_to
      AND r.bucket < p_closed
    UNION ALL
    SELECT r.series_id, r.bucket, r.count, r.sum, r.min, r.max, r.last, r.increase,
           r.increase_secs, r.after_gap
    FROM samples_10m r
    WHERE p_which = 'tens'
      AND r.series_id = ANY (p_series) AND r.bucket >= p_from AND r.bucket < p_to
      AND r.bucket < p_closed
    UNION ALL
    SELECT m.series_id, date_bin(w.width, m.bucket, timestamptz 'epoch') AS bucket,
           sum(m.count)::bigint AS count, sum(m.sum) AS sum, min(m.min) AS min, max(m.max) AS max,
           (array_agg(m.last ORDER BY m.bucket DESC))[1] AS last, sum(m.increase) AS increase,
           sum(m.increase_secs) AS increase_secs, coalesce(bool_or(m.after_gap), false) AS after_gap
    FROM (SELECT CASE p_which WHEN 'hours' THEN interval '1 hour'
                              WHEN 'tens' THEN interval '10 minutes' END AS width) w
    JOIN samples_1m m
      ON m.series_id = ANY (p_series)
     AND m.bucket >= greatest(pga_bucket_ceil(w.width, p_from), p_closed)
     AND m.bucket < pga_bucket_ceil(w.width, p_to)
    WHERE w.width IS NOT NULL
    GROUP BY 1, 2
$$;

CREATE OR REPLACE VIEW metric_rollups_1h AS
SELECT r.bucket, a.name AS agent, se.metric, se.labels, r.count, r.sum, r.sum / r.count AS avg,
       r.min, r.max, r.last, r.increase, r.series_id,
       r.increase_secs, coalesce(r.after_gap, false) AS after_gap,
       r.increase / nullif(r.increase_secs, 0) AS rate
FROM pga_hours r
JOIN series se ON se.id = r.series_id
JOIN agents a ON a.id = se.agent_id;

-- Which rollups a range query with this step reads (0030_query_layer.sql): 'raw'
-- below one minute or when the step is not a whole number of minutes, '1h' for whole
-- hours, '10m' for other whole multiples of 10 minutes, '1m' for other whole minutes.
CREATE OR REPLACE FUNCTION pga_range_source(p_step interval) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN extract(epoch FROM p_step) >= 3600 AND extract(epoch FROM p_step)::numeric % 3600 = 0 THEN '1h'
        WHEN extract(epoch FROM p_step) >= 600 AND extract(epoch FROM p_step)::numeric % 600 = 0 THEN '10m'
        WHEN extract(epoch FROM p_step) >= 60 AND extract(epoch FROM p_step)::numeric % 60 = 0 THEN '1m'
        ELSE 'raw'
    END
$$;

-- The newest value of each selected series at p_at (0030_query_layer.sql,
-- 0081_packed_query.sql): its newest raw sample in (p_at - p_lookback, p_at], else
-- the `last` of its newest 1-minute rollup in that window. Of the packed windows only
-- the one ending last by p_at is checked and read, for its last sample (and, when
-- p_at is in the past, those reaching past it, unpacked); PL/pgSQL, so that a session
-- (a Grafana connection) plans it once rather than at every panel.
CREATE OR REPLACE FUNCTION pga_latest(
    p_metric    text,
    p_agents    text[]      DEFAULT NULL,
    p_instances text[]      DEFAULT NULL,
    p_labels    jsonb       DEFAULT NULL,
    p_at        timestamptz DEFAULT now(),
    p_lookback  interval    DEFAULT interval '10 minutes')
RETURNS TABLE ("time" timestamptz, series_id bigint, agent text, pg_instance text,
               labels jsonb, value double precision)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        WITH sel AS (SELECT * FROM pga_select_series(p_metric, p_agents, p_instances, p_labels)),
        -- The newest row-form sample in the window.
        rowform AS (
            SELECT DISTINCT ON (s.series_id) s.series_id, s.ts, s.value
            FROM samples s
            WHERE s.series_id IN (SELECT sel.series_id FROM sel)
              AND s.ts > p_at - p_lookback AND s.ts <= p_at
            ORDER BY s.series_id, s.ts DESC),
        -- The packed windows overlapping it (a window spans less than an hour).
        win AS (
            SELECT p.series_id, p.lo, p.hi, p.times_id, p.vals
            FROM samples_packed p
            WHERE p.series_id IN (SELECT sel.series_id FROM sel)
              AND p.lo <= p_at AND p.lo > p_at - p_lookback - interval '1 hour'
              AND p.hi > p_at - p_lookback),
        -- Of those ending by p_at, the last one ends with the newest packed sample;
        -- it is checked whole (pga_packed_values: a damaged row fails the query).
        newest AS (
            SELECT DISTINCT ON (w.series_id) w.*
            FROM win w
            WHERE w.hi <= p_at
            ORDER BY w.series_id, w.hi DESC),
        ended AS (
            SELECT n.series_id, n.hi AS ts,
                   (pga_packed_values(n.series_id, n.lo, n.hi, t.offsets, n.vals))[cardinality(t.offsets)]
                       AS value
            FROM newest n
            LEFT JOIN sample_times t ON t.id = n.times_id AND t.lo = n.lo),
        -- Those reaching past p_at, unpacked (only when there are any).
        straddling AS (
            SELECT DISTINCT ON (x.series_id) x.series_id, x.ts, x.value
            FROM pga_raw(ARRAY(SELECT w.series_id FROM win w WHERE w.hi > p_at),
                         p_at - p_lookback + interval '1 microsecond', p_at) x
            WHERE EXISTS (SELECT FROM win w WHERE w.hi > p_at)
            ORDER BY x.series_id, x.ts DESC),
        raw AS (
            SELECT DISTINCT ON (c.series_id) c.ts, c.series_id, c.value
            FROM (SELECT * FROM rowform UNION ALL SELECT * FROM ended
                  UNION ALL SELECT * FROM straddling) c
            ORDER BY c.series_id, c.ts DESC),
        rolled AS (
            SELECT DISTINCT ON (m.series_id) m.bucket AS ts, m.series_id, m.last AS value
            FROM samples_1m m
            WHERE m.series_id IN (SELECT sel.series_id FROM sel)
              AND m.series_id NOT IN (SELECT raw.series_id FROM raw)
              AND m.bucket > p_at - p_lookback AND m.bucket <= p_at
            ORDER BY m.series_id, m.bucket DESC)
        SELECT v.ts, v.series_id, sel.agent, sel.pg_instance, sel.labels, v.value
        FROM (SELECT * FROM raw UNION ALL SELECT * FROM rolled) v
        JOIN sel USING (series_id)
        ORDER BY v.series_id;
END
$$;

-- The aggregate of function p_fn (checked by the caller) over rollup rows `r`, for
-- the dynamic SQL of pga_range_series and pga_summary.
CREATE OR REPLACE FUNCTION pga_rollup_agg(p_fn text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_fn
        WHEN 'avg' THEN 'sum(r.sum) / sum(r.count)'
        WHEN 'min' THEN 'min(r.min)'
        WHEN 'max' THEN 'max(r.max)'
        WHEN 'last' THEN '(array_agg(r.last ORDER BY r.bucket DESC))[1]'
        WHEN 'increase' THEN 'sum(r.increase)'
        ELSE 'sum(r.increase) / nullif(sum(r.increase_secs), 0)'
    END
$$;

-- pga_range (0030_query_layer.sql) over the series listed in p_series
-- (0040_query_speed.sql), raw samples through pga_raw (0081_packed_query.sql),
-- 10-minute and 1-hour buckets through pga_rollups_in.
CREATE OR REPLACE FUNCTION pga_range_series(
    p_series      bigint[],
    p_fn          text,
    p_from        timestamptz,
    p_to          timestamptz,
    p_step        interval,
    p_max_silence interval DEFAULT interval '180 seconds')
RETURNS TABLE ("time" timestamptz, series_id bigint, agent text, pg_instance text,
               labels jsonb, value double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    src   text;
    agg   text;
    start timestamptz;
    sel   text := 'SELECT se.id AS series_id, se.agent_id, a.name AS agent,
                          pga_series_instance(se.labels) AS pg_instance, se.labels, se.kind
                   FROM series se JOIN agents a ON a.id = se.agent_id
                   WHERE se.id = ANY ($1)';
BEGIN
    IF p_fn NOT IN ('avg', 'min', 'max', 'last', 'increase', 'rate') THEN
        RAISE EXCEPTION 'pga_range: unknown function %', quote_literal(p_fn)
            USING HINT = 'use avg, min, max, last, increase or rate';
    END IF;
    IF p_step IS NULL OR p_step <= interval '0' THEN
        RAISE EXCEPTION 'pga_range: the step must be positive, got %', p_step;
    END IF;
    -- A step below a second (Grafana over a few seconds) reads as one second.
    p_step := greatest(p_step, interval '1 second');
    src := pga_range_source(p_step);
    start := date_bin(p_step, p_from, timestamptz 'epoch');

    IF src = 'raw' THEN
        agg := CASE p_fn
            WHEN 'avg' THEN 'avg(d.value)'
            WHEN 'min' THEN 'min(d.value)'
            WHEN 'max' THEN 'max(d.value)'
            WHEN 'last' THEN '(array_agg(d.value ORDER BY d.ts DESC))[1]'
            WHEN 'increase' THEN 'sum(d.inc)'
            ELSE 'sum(d.inc) / nullif(sum(d.secs), 0)'
        END;
        -- The samples in [start - max_silence, p_to): pga_raw's bounds are both
        -- inclusive, and timestamps have microsecond resolution.
        RETURN QUERY EXECUTE format($q$
            WITH sel AS (
                SELECT s.*, EXISTS (SELECT FROM gaps g WHERE g.agent_id = s.agent_id) AS has_gaps
                FROM (%s) s),
            pairs AS (
                SELECT x.series_id, x.ts, x.value,
                       lag(x.ts) OVER w AS pts, lag(x.value) OVER w AS pv
                FROM pga_raw($1, $2 - $5, $3 - interval '1 microsecond') x
                WINDOW w AS (PARTITION BY x.series_id ORDER BY x.ts)),
            d AS (
                SELECT p.series_id, p.ts, p.value, sel.kind,
                       p.pts IS NULL OR p.ts - p.pts > $5
                       OR (sel.has_gaps AND EXISTS (
                           SELECT FROM gaps g
                           WHERE g.agent_id = sel.agent_id
                             AND g.after_ts >= p.pts AND g.after_ts < p.ts)) AS broken,
                       p.pv, p.pts
                FROM pairs p JOIN sel USING (series_id)
                WHERE p.ts >= $2),
            v AS (
                SELECT d.series_id, d.ts, d.value,
                       CASE WHEN d.broken OR d.kind <> 'counter' THEN NULL
                            WHEN d.value >= d.pv THEN d.value - d.pv ELSE d.value END AS inc,
                       CASE WHEN d.broken OR d.kind <> 'counter' THEN NULL
                            ELSE extract(epoch FROM d.ts - d.pts)::float8 END AS secs
                FROM d)
            SELECT b.t, b.series_id, sel.agent, sel.pg_instance, sel.labels, b.value
            FROM (SELECT date_bin($4, d.ts, timestamptz 'epoch') AS t, d.series_id, %s AS value
                  FROM v d GROUP BY 1, 2) b
            JOIN sel USING (series_id)
            ORDER BY 1, 2$q$, sel, agg)
        USING p_series, start, p_to, p_step, p_max_silence;
    ELSE
        agg := pga_rollup_agg(p_fn);
        RETURN QUERY EXECUTE format($q$
            WITH sel AS (%s)
            SELECT b.t, b.series_id, sel.agent, sel.pg_instance, sel.labels, b.value
            FROM (SELECT date_bin($4, r.bucket, timestamptz 'epoch') AS t, r.series_id, %s AS value
                  FROM %s r
                  WHERE r.series_id = ANY ($1)
                    AND r.bucket >= $2 AND r.bucket < $3
                  GROUP BY 1, 2) b
            JOIN sel USING (series_id)
            ORDER BY 1, 2$q$, sel, agg, CASE src WHEN '1m' THEN 'samples_1m'
                                             WHEN '10m' THEN 'pga_rollups_in(''tens'', $1, $2, $3, $5)'
                                             ELSE 'pga_rollups_in(''hours'', $1, $2, $3, $5)' END)
        USING p_series, start, p_to, p_step,
              pga_closed_until(CASE src WHEN '10m' THEN 'tens' ELSE 'hours' END);
    END IF;
END
$$;

-- One value per selected series over the whole of [p_from, p_to)
-- (0040_query_speed.sql), whole hours through pga_rollups_in.
CREATE OR REPLACE FUNCTION pga_summary(
    p_metric    text,
    p_fn        text,
    p_from      timestamptz,
    p_to        timestamptz,
    p_agents    text[] DEFAULT NULL,
    p_instances text[] DEFAULT NULL,
    p_labels    jsonb  DEFAULT NULL)
RETURNS TABLE (series_id bigint, agent text, pg_instance text, labels jsonb,
               value double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    agg    text;
    m_from timestamptz := date_trunc('minute', p_from);
    h_from timestamptz := date_trunc('hour', p_from + interval '1 hour' - interval '1 microsecond');
    h_to   timestamptz := date_trunc('hour', p_to);
BEGIN
    IF p_fn NOT IN ('avg', 'min', 'max', 'last', 'increase', 'rate') THEN
        RAISE EXCEPTION 'pga_summary: unknown function %', quote_literal(p_fn)
            USING HINT = 'use avg, min, max, last, increase or rate';
    END IF;
    IF h_from >= h_to THEN
        h_from := p_to;
        h_to := p_to;
    END IF;
    agg := pga_rollup_agg(p_fn);
    RETURN QUERY EXECUTE format($q$
        WITH sel AS (SELECT * FROM pga_select_series($1, $2, $3, $4)),
        r AS (
            SELECT h.series_id, h.bucket, h.count, h.sum, h.min, h.max, h.last, h.increase,
                   h.increase_secs
            FROM pga_rollups_in('hours', ARRAY(SELECT sel.series_id FROM sel), $6, $7, $9) h
            UNION ALL
            SELECT m.series_id, m.bucket, m.count, m.sum, m.min, m.max, m.last, m.increase,
                   m.increase_secs
            FROM samples_1m m
            WHERE m.series_id IN (SELECT sel.series_id FROM sel)
              AND m.bucket >= $5 AND m.bucket < $6
            UNION ALL
            SELECT m.series_id, m.bucket, m.count, m.sum, m.min, m.max, m.last, m.increase,
                   m.increase_secs
            FROM samples_1m m
            WHERE m.series_id IN (SELECT sel.series_id FROM sel)
              AND m.bucket >= $7 AND m.bucket < $8)
        SELECT b.series_id, sel.agent, sel.pg_instance, sel.labels, b.value
        FROM (SELECT r.series_id, %s AS value FROM r GROUP BY r.series_id) b
        JOIN sel USING (series_id)
        ORDER BY b.series_id$q$, agg)
    USING p_metric, p_agents, p_instances, p_labels, m_from, h_from, h_to, p_to,
          pga_closed_until('hours');
END
$$;

SELECT pga_apply_grants();
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pga_reader') THEN
        GRANT EXECUTE ON FUNCTION
            pga_closed_until(text), pga_bucket_ceil(interval, timestamptz), pga_rollup_agg(text),
            pga_rollups_in(text, bigint[], timestamptz, timestamptz, timestamptz)
        TO pga_reader;
    END IF;
END
$$;
