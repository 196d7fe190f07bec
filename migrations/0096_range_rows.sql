-- pgAnalytics v3 central database: range queries that read less and carry less
-- (0093_range_speed.sql).
--
-- * At a step as wide as the rollups read (Grafana's over a week: 10 minutes, over a
--   day: 1 minute) each bucket of the answer is one row of the rollups, whose value is
--   its own (its sum over its count, min, max, last, increase, or increase over
--   increase_secs). 0093 grouped them all the same, one group per row; now they are
--   read without grouping.
-- * pga_range_grouped: pga_range's values combined (sum, avg, min or max) per
--   instance and the label keys asked for, inside the query. A graph of sessions per
--   instance over a week at 50 agents read 605,000 rows of 600 series, sorted them
--   with their labels, handed them all out of pga_range and grouped them again
--   outside to 50,400; now they are grouped as they are read.
-- * JIT compilation off in these functions: the planner's cost of a week of a fleet
--   is high enough to compile and optimize every query, which took longer than the
--   query saved.
--
-- Measured with `pga-bench dashboards` (docs/benchmarks.md). The answers are the same
-- (federator/tests/rollup_gaps.rs compares every function at 1-minute, 10-minute,
-- 20-minute and 1-hour steps with the raw samples, and pga_range_grouped with
-- pga_range). Re-runnable (CREATE OR REPLACE only): federator/src/db/sink/timescale.rs
-- applies it again after the TimescaleDB conversion, after 0093.

-- The rollup rows a source reads, for pga_range_values_sql.
CREATE OR REPLACE FUNCTION pga_range_rows_sql(p_src text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_src
        WHEN '1m' THEN '(SELECT * FROM samples_1m m WHERE m.series_id = ANY ($1) AND m.bucket >= $2 AND m.bucket < $3)'
        WHEN '10m' THEN 'pga_rollups_in(''tens'', $1, $2, $3, $6)'
        ELSE 'pga_rollups_in(''hours'', $1, $2, $3, $6)'
    END
$$;

-- The query of the values of pga_range_series, `(t, series_id, value)` in no order,
-- for the dynamic SQL of pga_range_series and pga_range_grouped: the series $1, the
-- buckets of width $4 from $2 (aligned) to $3; $5 the longest silence between raw
-- samples, $6 pga_closed_until of the rollups read. It reads the CTE `sel` of the
-- series (series_id, agent_id, kind, has_gaps) that its caller defines.
CREATE OR REPLACE FUNCTION pga_range_values_sql(p_fn text, p_src text, p_step interval)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
    WHEN p_src = 'raw' THEN format($q$
        WITH pairs AS (
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
        SELECT date_bin($4, d.ts, timestamptz 'epoch') AS t, d.series_id, %s AS value
        FROM v d GROUP BY 1, 2$q$,
        CASE p_fn
            WHEN 'avg' THEN 'avg(d.value)'
            WHEN 'min' THEN 'min(d.value)'
            WHEN 'max' THEN 'max(d.value)'
            WHEN 'last' THEN '(array_agg(d.value ORDER BY d.ts DESC))[1]'
            WHEN 'increase' THEN 'sum(d.inc)'
            ELSE 'sum(d.inc) / nullif(sum(d.secs), 0)'
        END)
    -- A step as wide as the rows read: one row per bucket and series, its own value.
    WHEN p_step = CASE p_src WHEN '1m' THEN interval '1 minute'
                             WHEN '10m' THEN interval '10 minutes'
                             ELSE interval '1 hour' END THEN format(
        'SELECT r.bucket AS t, r.series_id, %s AS value FROM %s r',
        CASE p_fn
            WHEN 'avg' THEN 'r.sum / r.count'
            WHEN 'min' THEN 'r.min'
            WHEN 'max' THEN 'r.max'
            WHEN 'last' THEN 'r.last'
            WHEN 'increase' THEN 'r.increase'
            ELSE 'r.increase / nullif(r.increase_secs, 0)'
        END,
        pga_range_rows_sql(p_src))
    ELSE format(
        'SELECT date_bin($4, r.bucket, timestamptz ''epoch'') AS t, r.series_id, %s AS value '
        'FROM %s r GROUP BY 1, 2',
        pga_rollup_agg(p_fn), pga_range_rows_sql(p_src))
    END
$$;

-- The CTE `sel` of the series $1 for the queries above.
CREATE OR REPLACE FUNCTION pga_range_sel_sql() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'SELECT se.id AS series_id, se.agent_id, a.name AS agent,
                   pga_series_instance(se.labels) AS pg_instance, se.labels, se.kind,
                   EXISTS (SELECT FROM gaps g WHERE g.agent_id = se.agent_id) AS has_gaps
            FROM series se JOIN agents a ON a.id = se.agent_id
            WHERE se.id = ANY ($1)'
$$;

-- pga_closed_until of the rollups a source reads (NULL for raw samples), read once
-- per statement and passed as a value (0091_closed_hours_query.sql).
CREATE OR REPLACE FUNCTION pga_range_closed(p_src text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE p_src WHEN 'raw' THEN NULL
                      WHEN '10m' THEN pga_closed_until('tens')
                      ELSE pga_closed_until('hours') END
$$;

-- Checks pga_range's arguments; returns the step to use (a step below a second, as
-- Grafana's over a few seconds, reads as one second).
CREATE OR REPLACE FUNCTION pga_range_check(p_fn text, p_step interval) RETURNS interval
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_fn IS NULL OR p_fn NOT IN ('avg', 'min', 'max', 'last', 'increase', 'rate') THEN
        RAISE EXCEPTION 'pga_range: unknown function %', quote_literal(p_fn)
            USING HINT = 'use avg, min, max, last, increase or rate';
    END IF;
    IF p_step IS NULL OR p_step <= interval '0' THEN
        RAISE EXCEPTION 'pga_range: the step must be positive, got %', p_step;
    END IF;
    RETURN greatest(p_step, interval '1 second');
END
$$;

-- pga_range (0030_query_layer.sql) over the series listed in p_series
-- (0040_query_speed.sql), ordered by time and series.
CREATE OR REPLACE FUNCTION pga_range_series(
    p_series      bigint[],
    p_fn          text,
    p_from        timestamptz,
    p_to          timestamptz,
    p_step        interval,
    p_max_silence interval DEFAULT interval '180 seconds')
RETURNS TABLE ("time" timestamptz, series_id bigint, agent text, pg_instance text,
               labels jsonb, value double precision)
LANGUAGE plpgsql STABLE SET jit = off AS $$
DECLARE
    src text;
BEGIN
    p_step := pga_range_check(p_fn, p_step);
    src := pga_range_source(p_step);
    RETURN QUERY EXECUTE format($q$
        WITH sel AS (%s)
        SELECT b.t, b.series_id, sel.agent, sel.pg_instance, sel.labels, b.value
        FROM (%s) b
        JOIN sel USING (series_id)
        ORDER BY 1, 2$q$, pga_range_sel_sql(), pga_range_values_sql(p_fn, src, p_step))
    USING p_series, date_bin(p_step, p_from, timestamptz 'epoch'), p_to, p_step, p_max_silence,
          pga_range_closed(src);
END
$$;

-- pga_range's values combined per instance and per the values of the label keys
-- p_by: one line per (agent, pg_instance, labels), `labels` holding only those keys
-- (the series that lack one have it missing), the values of its series in each
-- bucket combined by p_agg ('sum', 'avg', 'min' or 'max'). What a graph of one line
-- per instance, database or state draws, without handing every series out first.
CREATE OR REPLACE FUNCTION pga_range_grouped(
    p_metric      text,
    p_fn          text,
    p_from        timestamptz,
    p_to          timestamptz,
    p_step        interval,
    p_agg         text     DEFAULT 'sum',
    p_by          text[]   DEFAULT '{}',
    p_agents      text[]   DEFAULT NULL,
    p_instances   text[]   DEFAULT NULL,
    p_labels      jsonb    DEFAULT NULL,
    p_max_silence interval DEFAULT interval '180 seconds')
RETURNS TABLE ("time" timestamptz, agent text, pg_instance text, labels jsonb,
               value double precision)
LANGUAGE plpgsql STABLE SET jit = off AS $$
DECLARE
    src text;
BEGIN
    p_step := pga_range_check(p_fn, p_step);
    IF p_agg IS NULL OR p_agg NOT IN ('sum', 'avg', 'min', 'max') THEN
        RAISE EXCEPTION 'pga_range_grouped: unknown combination %', quote_literal(p_agg)
            USING HINT = 'use sum, avg, min or max';
    END IF;
    src := pga_range_source(p_step);
    RETURN QUERY EXECUTE format($q$
        WITH sel AS MATERIALIZED (
            SELECT s.*, (SELECT coalesce(jsonb_object_agg(l.key, l.value), '{}')
                         FROM jsonb_each(s.labels) l
                         WHERE l.key = ANY ($7)) AS key
            FROM (%s) s)
        SELECT b.t, sel.agent, sel.pg_instance, sel.key, %s(b.value)
        FROM (%s) b
        JOIN sel USING (series_id)
        GROUP BY 1, 2, 3, 4
        ORDER BY 1, 2, 3, 4$q$,
        pga_range_sel_sql(), p_agg, pga_range_values_sql(p_fn, src, p_step))
    USING ARRAY(SELECT s.series_id
                FROM pga_select_series(p_metric, p_agents, p_instances, p_labels) s),
          date_bin(p_step, p_from, timestamptz 'epoch'), p_to, p_step, p_max_silence,
          pga_range_closed(src), coalesce(p_by, '{}');
END
$$;

SELECT pga_apply_grants();
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pga_reader') THEN
        GRANT EXECUTE ON FUNCTION
            pga_range_values_sql(text, text, interval), pga_range_rows_sql(text),
            pga_range_sel_sql(), pga_range_closed(text), pga_range_check(text, interval),
            pga_range_grouped(text, text, timestamptz, timestamptz, interval, text, text[],
                              text[], text[], jsonb, interval)
        TO pga_reader;
    END IF;
END
$$;
