-- pgAnalytics v3 central database: summaries read whole days from the 1-day rollups
-- (0094_day_rollups.sql).
--
-- * pga_closed_until('days'): up to where every agent's `samples_1d` rows are
--   complete (the oldest `closed_rollups.days_until`), as for 'hours' and 'tens';
-- * pga_summary (0091_closed_hours_query.sql): the closed days inside the range from
--   `samples_1d`, the hours before and after them through pga_rollups_in, the minutes
--   at both ends from `samples_1m`. Its buckets are now aligned on the Unix epoch
--   (UTC) whatever the session's time zone: date_trunc('hour') truncated to the
--   session's local hour, which in a zone half an hour off UTC left out half an hour
--   of the range. JIT compilation is off in it, as in the range functions
--   (0096_range_rows.sql).
--
-- The answers are the same as reading hours (federator/tests/sink_rollups.rs compares
-- pga_summary with the raw samples over closed days). Re-runnable (CREATE OR REPLACE
-- only): federator/src/db/sink/timescale.rs applies it again after the TimescaleDB
-- conversion, after 0091.

CREATE OR REPLACE FUNCTION pga_closed_until(p_which text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT coalesce(min(coalesce(CASE p_which WHEN 'hours' THEN k.hours_until
                                              WHEN 'tens' THEN k.tens_until
                                              WHEN 'days' THEN k.days_until END,
                                 timestamptz '-infinity')),
                    timestamptz 'infinity')
    FROM agents a
    LEFT JOIN closed_rollups k ON k.agent_id = a.id
$$;

-- One value per series listed in p_series over the whole of [p_from, p_to), from
-- the minute holding p_from: pga_summary of a list of series, as pga_range_series is
-- pga_range's (a table of the top statements sums their other counters for the 25 it
-- shows only).
CREATE OR REPLACE FUNCTION pga_summary_series(
    p_series    bigint[],
    p_fn        text,
    p_from      timestamptz,
    p_to        timestamptz)
RETURNS TABLE (series_id bigint, agent text, pg_instance text, labels jsonb,
               value double precision)
LANGUAGE plpgsql STABLE SET jit = off AS $$
DECLARE
    agg    text;
    -- Minutes [m_from, h_from), hours [h_from, d_from), closed days [d_from, d_to),
    -- hours [d_to, h_to), minutes [h_to, p_to).
    m_from timestamptz := date_bin('1 minute', p_from, timestamptz 'epoch');
    h_from timestamptz := pga_bucket_ceil(interval '1 hour', p_from);
    h_to   timestamptz := date_bin('1 hour', p_to, timestamptz 'epoch');
    d_from timestamptz;
    d_to   timestamptz;
BEGIN
    IF p_fn NOT IN ('avg', 'min', 'max', 'last', 'increase', 'rate') THEN
        RAISE EXCEPTION 'pga_summary: unknown function %', quote_literal(p_fn)
            USING HINT = 'use avg, min, max, last, increase or rate';
    END IF;
    IF h_from >= h_to THEN
        h_from := p_to;
        h_to := p_to;
    END IF;
    d_from := pga_bucket_ceil(interval '1 day', h_from);
    d_to := least(date_bin('1 day', h_to, timestamptz 'epoch'), pga_closed_until('days'));
    IF d_from >= d_to THEN
        d_from := h_to;
        d_to := h_to;
    END IF;
    agg := pga_rollup_agg(p_fn);
    RETURN QUERY EXECUTE format($q$
        WITH sel AS (SELECT se.id AS series_id, a.name AS agent,
                            pga_series_instance(se.labels) AS pg_instance, se.labels
                     FROM series se JOIN agents a ON a.id = se.agent_id
                     WHERE se.id = ANY ($1)),
        r AS (
            SELECT d.series_id, d.bucket, d.count, d.sum, d.min, d.max, d.last, d.increase,
                   d.increase_secs
            FROM samples_1d d
            WHERE d.series_id IN (SELECT sel.series_id FROM sel)
              AND d.bucket >= $7 AND d.bucket < $8
            UNION ALL
            SELECT h.series_id, h.bucket, h.count, h.sum, h.min, h.max, h.last, h.increase,
                   h.increase_secs
            FROM pga_rollups_in('hours', $1, $3, $7, $6) h
            UNION ALL
            SELECT h.series_id, h.bucket, h.count, h.sum, h.min, h.max, h.last, h.increase,
                   h.increase_secs
            FROM pga_rollups_in('hours', $1, $8, $4, $6) h
            UNION ALL
            SELECT m.series_id, m.bucket, m.count, m.sum, m.min, m.max, m.last, m.increase,
                   m.increase_secs
            FROM samples_1m m
            WHERE m.series_id IN (SELECT sel.series_id FROM sel)
              AND m.bucket >= $2 AND m.bucket < $3
            UNION ALL
            SELECT m.series_id, m.bucket, m.count, m.sum, m.min, m.max, m.last, m.increase,
                   m.increase_secs
            FROM samples_1m m
            WHERE m.series_id IN (SELECT sel.series_id FROM sel)
              AND m.bucket >= $4 AND m.bucket < $5)
        SELECT b.series_id, sel.agent, sel.pg_instance, sel.labels, b.value
        FROM (SELECT r.series_id, %s AS value FROM r GROUP BY r.series_id) b
        JOIN sel USING (series_id)
        ORDER BY b.series_id$q$, agg)
    USING p_series, m_from, h_from, h_to, p_to,
          pga_closed_until('hours'), d_from, d_to;
END
$$;

-- One value per selected series over the whole of [p_from, p_to)
-- (0040_query_speed.sql), through pga_summary_series.
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
LANGUAGE sql STABLE AS $$
    SELECT * FROM pga_summary_series(
        ARRAY(SELECT s.series_id FROM pga_select_series(p_metric, p_agents, p_instances, p_labels) s),
        p_fn, p_from, p_to)
$$;

SELECT pga_apply_grants();
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pga_reader') THEN
        GRANT EXECUTE ON FUNCTION
            pga_summary_series(bigint[], text, timestamptz, timestamptz)
        TO pga_reader;
    END IF;
END
$$;
