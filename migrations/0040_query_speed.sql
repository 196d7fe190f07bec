-- pgAnalytics v3 central database: the query layer at fleet scale.
--
-- * agent_samples_1m: samples stored per agent and minute, counted by the sink in
--   the transaction that inserts them, so that "samples received" reads one row per
--   agent and minute instead of summing every series' 1-minute rollups.
-- * pga_range_series: pga_range over a list of series; pga_range now selects its
--   series and calls it, with the same arguments, rows and rules as before.
-- * pga_summary: the same answers, reading the minutes at the range's two ends as
--   two index ranges.
-- * pga_range_top: pga_range over the N series that rank highest over the range
--   (by pga_summary), so that a graph of "the busiest tables" reads N series however
--   large the fleet.
--
-- Re-runnable: federator/src/db/sink/timescale.rs applies it again after the
-- TimescaleDB conversion, after 0030_query_layer.sql, whose functions it replaces.

CREATE TABLE IF NOT EXISTS agent_samples_1m (
    bucket   timestamptz NOT NULL,
    agent_id bigint      NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    samples  bigint      NOT NULL,
    PRIMARY KEY (bucket, agent_id)
);
COMMENT ON TABLE agent_samples_1m IS
    'Samples stored per agent and 1-minute bucket of their time (pga_agent_samples)';

-- What was stored before the sink counted: the rollups' counts, once. The sink
-- adds to these rows from now on; re-running finds them and leaves them.
INSERT INTO agent_samples_1m (bucket, agent_id, samples)
SELECT m.bucket, se.agent_id, sum(m.count)::bigint
FROM samples_1m m
JOIN series se ON se.id = m.series_id
GROUP BY 1, 2
ON CONFLICT (bucket, agent_id) DO NOTHING;

-- Samples per agent and step bucket (steps below a minute read as a minute): what
-- the central database stored, by the time of the samples.
CREATE OR REPLACE FUNCTION pga_agent_samples(
    p_from   timestamptz,
    p_to     timestamptz,
    p_step   interval,
    p_agents text[] DEFAULT NULL)
RETURNS TABLE ("time" timestamptz, agent text, samples bigint)
LANGUAGE sql STABLE AS $$
    SELECT date_bin(greatest(p_step, interval '1 minute'), c.bucket, timestamptz 'epoch'),
           a.name, sum(c.samples)::bigint
    FROM agent_samples_1m c
    JOIN agents a ON a.id = c.agent_id
    WHERE c.bucket >= date_bin(greatest(p_step, interval '1 minute'), p_from, timestamptz 'epoch')
      AND c.bucket < p_to
      AND (p_agents IS NULL OR a.name = ANY (p_agents))
    GROUP BY 1, 2
    ORDER BY 1, 2
$$;

-- pga_range (0030_query_layer.sql: functions, buckets, breaks, sources) over the
-- series listed in p_series.
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
        RETURN QUERY EXECUTE format($q$
            WITH sel AS (
                SELECT s.*, EXISTS (SELECT FROM gaps g WHERE g.agent_id = s.agent_id) AS has_gaps
                FROM (%s) s),
            pairs AS (
                SELECT x.series_id, x.ts, x.value,
                       lag(x.ts) OVER w AS pts, lag(x.value) OVER w AS pv
                FROM samples x
                WHERE x.series_id = ANY ($1)
                  AND x.ts >= $2 - $5 AND x.ts < $3
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

-- One value per selected series and step bucket (0030_query_layer.sql): the series
-- of pga_select_series through pga_range_series.
CREATE OR REPLACE FUNCTION pga_range(
    p_metric      text,
    p_fn          text,
    p_from        timestamptz,
    p_to          timestamptz,
    p_step        interval,
    p_agents      text[]   DEFAULT NULL,
    p_instances   text[]   DEFAULT NULL,
    p_labels      jsonb    DEFAULT NULL,
    p_max_silence interval DEFAULT interval '180 seconds')
RETURNS TABLE ("time" timestamptz, series_id bigint, agent text, pg_instance text,
               labels jsonb, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT * FROM pga_range_series(
        ARRAY(SELECT s.series_id FROM pga_select_series(p_metric, p_agents, p_instances, p_labels) s),
        p_fn, p_from, p_to, p_step, p_max_silence)
$$;

-- One value per selected series over the whole of [p_from, p_to) (0030_query_layer.sql):
-- the same answer, with the minutes before the first and after the last whole hour
-- read as two ranges of the rollups' index (one range with an OR read every minute
-- of each series).
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
    agg := CASE p_fn
        WHEN 'avg' THEN 'sum(r.sum) / sum(r.count)'
        WHEN 'min' THEN 'min(r.min)'
        WHEN 'max' THEN 'max(r.max)'
        WHEN 'last' THEN '(array_agg(r.last ORDER BY r.bucket DESC))[1]'
        WHEN 'increase' THEN 'sum(r.increase)'
        ELSE 'sum(r.increase) / nullif(sum(r.increase_secs), 0)'
    END;
    RETURN QUERY EXECUTE format($q$
        WITH sel AS (SELECT * FROM pga_select_series($1, $2, $3, $4)),
        r AS (
            SELECT h.series_id, h.bucket, h.count, h.sum, h.min, h.max, h.last, h.increase,
                   h.increase_secs
            FROM samples_1h h
            WHERE h.series_id IN (SELECT sel.series_id FROM sel)
              AND h.bucket >= $6 AND h.bucket < $7
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
    USING p_metric, p_agents, p_instances, p_labels, m_from, h_from, h_to, p_to;
END
$$;

-- pga_range over the p_n selected series whose pga_summary with p_rank_fn over the
-- range is highest (series without a value rank last; ties by series id). For
-- graphs of "the N busiest": their cost follows p_n, not the fleet.
CREATE OR REPLACE FUNCTION pga_range_top(
    p_metric      text,
    p_fn          text,
    p_from        timestamptz,
    p_to          timestamptz,
    p_step        interval,
    p_rank_fn     text,
    p_n           integer,
    p_agents      text[]   DEFAULT NULL,
    p_instances   text[]   DEFAULT NULL,
    p_labels      jsonb    DEFAULT NULL,
    p_max_silence interval DEFAULT interval '180 seconds')
RETURNS TABLE ("time" timestamptz, series_id bigint, agent text, pg_instance text,
               labels jsonb, value double precision)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_n IS NULL OR p_n < 1 THEN
        RAISE EXCEPTION 'pga_range_top: the number of series must be at least 1, got %', p_n;
    END IF;
    RETURN QUERY SELECT * FROM pga_range_series(
        ARRAY(SELECT s.series_id
              FROM pga_summary(p_metric, p_rank_fn, p_from, p_to, p_agents, p_instances, p_labels) s
              ORDER BY s.value DESC NULLS LAST, s.series_id
              LIMIT p_n),
        p_fn, p_from, p_to, p_step, p_max_silence);
END
$$;

SELECT pga_apply_grants();
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pga_reader') THEN
        GRANT EXECUTE ON FUNCTION
            pga_agent_samples(timestamptz, timestamptz, interval, text[]),
            pga_range_series(bigint[], text, timestamptz, timestamptz, interval, interval),
            pga_range(text, text, timestamptz, timestamptz, interval, text[], text[], jsonb, interval),
            pga_summary(text, text, timestamptz, timestamptz, text[], text[], jsonb),
            pga_range_top(text, text, timestamptz, timestamptz, interval, text, integer, text[],
                          text[], jsonb, interval)
        TO pga_reader;
    END IF;
END
$$;
