-- pgAnalytics v3 central database: pga_range_series over rollups, faster over days
-- (0091_closed_hours_query.sql).
--
-- * The rollup branch filters the rows it reads once, inside the source: 0091 filtered
--   pga_rollups_in's rows by series and range again outside it, and the planner,
--   counting both filters, expected a few dozen rows where it read tens of thousands,
--   and joined the labels by nested loops. Measured with `pga-bench dashboards`
--   (5 agents × 2,004 series), 60 series over 7 days at a 10-minute step: 151 ms
--   before, 92 ms after.
-- * `last` at a step as wide as the rows read (10 minutes from 10-minute rows, 1 minute
--   from 1-minute rows, 1 hour from 1-hour rows) takes the group's one row instead of
--   sorting each group: 420 series over 7 days, 3,138 ms before, 784 ms after.
--
-- The answers are the same (federator/tests/packed_layout.rs and
-- federator/tests/rollup_gaps.rs compare them). Re-runnable (CREATE OR REPLACE only):
-- federator/src/db/sink/timescale.rs applies it again after the TimescaleDB
-- conversion, after 0091.

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
        -- A step as wide as the rows read leaves one row per group: its `last` needs
        -- no ordered aggregate (an array sorted per group).
        IF p_fn = 'last' AND p_step = (CASE src WHEN '1m' THEN interval '1 minute'
                                               WHEN '10m' THEN interval '10 minutes'
                                               ELSE interval '1 hour' END) THEN
            agg := 'min(r.last)';
        ELSE
            agg := pga_rollup_agg(p_fn);
        END IF;
        RETURN QUERY EXECUTE format($q$
            WITH sel AS (%s)
            SELECT b.t, b.series_id, sel.agent, sel.pg_instance, sel.labels, b.value
            FROM (SELECT date_bin($4, r.bucket, timestamptz 'epoch') AS t, r.series_id, %s AS value
                  FROM %s r
                  GROUP BY 1, 2) b
            JOIN sel USING (series_id)
            ORDER BY 1, 2$q$, sel, agg, CASE src WHEN '1m' THEN '(SELECT * FROM samples_1m m WHERE m.series_id = ANY ($1) AND m.bucket >= $2 AND m.bucket < $3)'
                                             WHEN '10m' THEN 'pga_rollups_in(''tens'', $1, $2, $3, $5)'
                                             ELSE 'pga_rollups_in(''hours'', $1, $2, $3, $5)' END)
        USING p_series, start, p_to, p_step,
              pga_closed_until(CASE src WHEN '10m' THEN 'tens' ELSE 'hours' END);
    END IF;
END
$$;
