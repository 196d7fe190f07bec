-- pgAnalytics v3 central database: the query layer over both forms of raw samples.
--
-- Since 0080_packed_samples.sql a raw sample is stored once, either as a row of
-- `samples` (the open head, rows not packed yet, TimescaleDB) or inside a row of
-- `samples_packed`. Everything here that read `samples` reads both forms now,
-- through pga_raw (a range of series and time, both ends included), with the same
-- names, arguments, columns and answers as before (0003_views.sql,
-- 0030_query_layer.sql, 0040_query_speed.sql):
--
-- * pga_samples: every raw sample, for people and tests;
-- * metric_samples: the same columns, over pga_samples;
-- * pga_range_series (and so pga_range and pga_range_top): the raw branch;
-- * pga_latest: the newest raw sample in the look-back window.
--
-- Re-runnable (CREATE OR REPLACE only): federator/src/db/sink/timescale.rs applies
-- it again after the TimescaleDB conversion, after the migrations whose objects it
-- replaces.

-- Every raw sample, from both forms: `(series_id, ts, value)`. A filter on
-- series_id reads the series' index ranges of both tables; a filter on ts narrows
-- only the row form: the packed rows of the selected series are all read and
-- unpacked (nothing ties ts to a packed row's bounds here). Over a time range, read
-- pga_raw(ids, from, to), which reads only the packed rows that overlap it. A
-- damaged packed row fails the query with its series and window
-- (pga_packed_values).
CREATE OR REPLACE VIEW pga_samples AS
SELECT s.series_id, s.ts, s.value
FROM samples s
UNION ALL
SELECT p.series_id, p.lo + x.o * interval '1 millisecond' AS ts, x.v AS value
FROM samples_packed p
JOIN sample_times t ON t.id = p.times_id AND t.lo = p.lo
CROSS JOIN LATERAL unnest(t.offsets,
                          pga_packed_values(p.series_id, p.lo, p.hi, t.offsets, p.vals))
                   AS x (o, v);
COMMENT ON VIEW pga_samples IS
    'Every raw sample (series_id, ts, value), rows and packed. A ts filter does not prune packed rows: over a time range use pga_raw(ids, from, to)';

-- Raw samples by metric and labels (0003_views.sql), from both forms. As with
-- pga_samples, a ts filter narrows only the row form.
CREATE OR REPLACE VIEW metric_samples AS
SELECT s.ts, a.name AS agent, se.metric, se.labels, s.value, s.series_id
FROM pga_samples s
JOIN series se ON se.id = s.series_id
JOIN agents a ON a.id = se.agent_id;

-- pga_range (0030_query_layer.sql: functions, buckets, breaks, sources) over the
-- series listed in p_series (0040_query_speed.sql); raw samples through pga_raw.
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
        agg := CASE p_fn
            WHEN 'avg' THEN 'sum(r.sum) / sum(r.count)'
            WHEN 'min' THEN 'min(r.min)'
            WHEN 'max' THEN 'max(r.max)'
            WHEN 'last' THEN '(array_agg(r.last ORDER BY r.bucket DESC))[1]'
            WHEN 'increase' THEN 'sum(r.increase)'
            ELSE 'sum(r.increase) / nullif(sum(r.increase_secs), 0)'
        END;
        RETURN QUERY EXECUTE format($q$
            WITH sel AS (%s)
            SELECT b.t, b.series_id, sel.agent, sel.pg_instance, sel.labels, b.value
            FROM (SELECT date_bin($4, r.bucket, timestamptz 'epoch') AS t, r.series_id, %s AS value
                  FROM %I r
                  WHERE r.series_id = ANY ($1)
                    AND r.bucket >= $2 AND r.bucket < $3
                  GROUP BY 1, 2) b
            JOIN sel USING (series_id)
            ORDER BY 1, 2$q$, sel, agg, CASE src WHEN '1m' THEN 'samples_1m' ELSE 'samples_1h' END)
        USING p_series, start, p_to, p_step;
    END IF;
END
$$;

-- The newest value of each selected series at p_at (0030_query_layer.sql): its
-- newest raw sample in (p_at - p_lookback, p_at], from both forms, else the `last`
-- of its newest 1-minute rollup in that window.
CREATE OR REPLACE FUNCTION pga_latest(
    p_metric    text,
    p_agents    text[]      DEFAULT NULL,
    p_instances text[]      DEFAULT NULL,
    p_labels    jsonb       DEFAULT NULL,
    p_at        timestamptz DEFAULT now(),
    p_lookback  interval    DEFAULT interval '10 minutes')
RETURNS TABLE ("time" timestamptz, series_id bigint, agent text, pg_instance text,
               labels jsonb, value double precision)
LANGUAGE sql STABLE AS $$
    WITH sel AS (SELECT * FROM pga_select_series(p_metric, p_agents, p_instances, p_labels)),
    raw AS (
        SELECT DISTINCT ON (x.series_id) x.ts, x.series_id, x.value
        FROM pga_raw(ARRAY(SELECT sel.series_id FROM sel),
                     p_at - p_lookback + interval '1 microsecond', p_at) x
        ORDER BY x.series_id, x.ts DESC),
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
    ORDER BY v.series_id
$$;

SELECT pga_apply_grants();
