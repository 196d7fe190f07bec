-- pgAnalytics v3 central database: the query layer.
--
-- Views and functions that dashboards, the API's query route and people read
-- through, so that the physical tables (raw samples, rollups, their partitions or
-- hypertables, a later packed layout) can change without touching a caller. Their
-- names, arguments and columns are a contract: docs/central-database.md, "Query
-- layer", documents each; a change that breaks one is a new function, never an edit.
--
-- Re-runnable (CREATE OR REPLACE): federator/src/sink/timescale.rs applies it again
-- after the TimescaleDB conversion, as it does the other view migrations.

-- The PostgreSQL instance a series belongs to, from its labels: the one place that
-- knows the label's name. Agents before the label was renamed call it `instance`,
-- later ones `pg_instance`; both are read, so history on either side of an upgrade
-- stays one instance.
CREATE OR REPLACE FUNCTION pga_series_instance(p_labels jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(p_labels ->> 'pg_instance', p_labels ->> 'instance')
$$;

-- Whether a label set matches a filter object: every key of p_filter must be a
-- label of the series whose value equals the key's string, or is one of the key's
-- array of strings (an empty array matches nothing). NULL or '{}' matches all.
CREATE OR REPLACE FUNCTION pga_labels_match(p_labels jsonb, p_filter jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_filter IS NULL OR NOT EXISTS (
        SELECT FROM jsonb_each(p_filter) AS f(k, v)
        WHERE NOT coalesce(
            CASE jsonb_typeof(f.v)
                WHEN 'array' THEN f.v @> (p_labels -> f.k)
                ELSE f.v = (p_labels -> f.k)
            END, false))
$$;

-- Every series with its agent and instance.
CREATE OR REPLACE VIEW pga_series AS
SELECT se.id AS series_id, a.name AS agent, pga_series_instance(se.labels) AS pg_instance,
       se.metric, se.labels, se.kind, se.unit, se.help, se.first_seen, se.last_seen,
       se.agent_id
FROM series se
JOIN agents a ON a.id = se.agent_id;

-- The series of a metric, selected by agent names, instance names and a label
-- filter (pga_labels_match); a NULL argument selects all.
CREATE OR REPLACE FUNCTION pga_select_series(
    p_metric    text,
    p_agents    text[] DEFAULT NULL,
    p_instances text[] DEFAULT NULL,
    p_labels    jsonb  DEFAULT NULL)
RETURNS TABLE (series_id bigint, agent_id bigint, agent text, pg_instance text, labels jsonb,
               kind text)
LANGUAGE sql STABLE AS $$
    SELECT se.id, se.agent_id, a.name, pga_series_instance(se.labels), se.labels, se.kind
    FROM series se
    JOIN agents a ON a.id = se.agent_id
    WHERE se.metric = p_metric
      AND (p_agents IS NULL OR a.name = ANY (p_agents))
      AND (p_instances IS NULL OR pga_series_instance(se.labels) = ANY (p_instances))
      AND pga_labels_match(se.labels, p_labels)
$$;

-- Which table a range query with this step reads: 'raw' below one minute or when the
-- step is not a whole number of minutes, '1m' for whole minutes, '1h' for whole hours.
CREATE OR REPLACE FUNCTION pga_range_source(p_step interval) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN extract(epoch FROM p_step) >= 3600 AND extract(epoch FROM p_step)::numeric % 3600 = 0 THEN '1h'
        WHEN extract(epoch FROM p_step) >= 60 AND extract(epoch FROM p_step)::numeric % 60 = 0 THEN '1m'
        ELSE 'raw'
    END
$$;

-- One value per selected series and step bucket over [p_from, p_to):
--   avg, min, max, last: of the sample values in the bucket;
--   increase: the counter's increase in the bucket, never across a break (a
--     recorded gap of the agent or a silence longer than p_max_silence), a reset
--     counting from zero; NULL where nothing of the bucket's increase is known;
--   rate: that increase per second of the time it covers (NULL likewise).
-- Buckets are aligned on the Unix epoch (time = the bucket's start; the first may
-- start before p_from, as Grafana's $__timeGroup does); a bucket without samples
-- has no row; a bucket with samples but an unknown increase has a NULL value, so a
-- graph breaks there instead of drawing a spike. The source follows the step
-- (pga_range_source): raw samples, 1-minute or 1-hour rollups; the rollups obey the
-- same rules (README.md, "Rollups"), so the source changes the resolution, never
-- the answer. p_max_silence only matters for raw samples: give the federator's
-- rollups.max_silence_secs if it is not the default 180 s.
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
LANGUAGE plpgsql STABLE AS $$
DECLARE
    src   text;
    agg   text;
    start timestamptz;
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
                FROM pga_select_series($1, $2, $3, $4) s),
            pairs AS (
                SELECT x.series_id, x.ts, x.value,
                       lag(x.ts) OVER w AS pts, lag(x.value) OVER w AS pv
                FROM samples x
                WHERE x.series_id IN (SELECT sel.series_id FROM sel)
                  AND x.ts >= $5 - $8 AND x.ts < $6
                WINDOW w AS (PARTITION BY x.series_id ORDER BY x.ts)),
            d AS (
                SELECT p.series_id, p.ts, p.value, sel.kind,
                       p.pts IS NULL OR p.ts - p.pts > $8
                       OR (sel.has_gaps AND EXISTS (
                           SELECT FROM gaps g
                           WHERE g.agent_id = sel.agent_id
                             AND g.after_ts >= p.pts AND g.after_ts < p.ts)) AS broken,
                       p.pv, p.pts
                FROM pairs p JOIN sel USING (series_id)
                WHERE p.ts >= $5),
            v AS (
                SELECT d.series_id, d.ts, d.value,
                       CASE WHEN d.broken OR d.kind <> 'counter' THEN NULL
                            WHEN d.value >= d.pv THEN d.value - d.pv ELSE d.value END AS inc,
                       CASE WHEN d.broken OR d.kind <> 'counter' THEN NULL
                            ELSE extract(epoch FROM d.ts - d.pts)::float8 END AS secs
                FROM d)
            SELECT b.t, b.series_id, sel.agent, sel.pg_instance, sel.labels, b.value
            FROM (SELECT date_bin($7, d.ts, timestamptz 'epoch') AS t, d.series_id, %s AS value
                  FROM v d GROUP BY 1, 2) b
            JOIN sel USING (series_id)
            ORDER BY 1, 2$q$, agg)
        USING p_metric, p_agents, p_instances, p_labels, start, p_to, p_step, p_max_silence;
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
            WITH sel AS (SELECT * FROM pga_select_series($1, $2, $3, $4))
            SELECT b.t, b.series_id, sel.agent, sel.pg_instance, sel.labels, b.value
            FROM (SELECT date_bin($7, r.bucket, timestamptz 'epoch') AS t, r.series_id, %s AS value
                  FROM %I r
                  WHERE r.series_id IN (SELECT sel.series_id FROM sel)
                    AND r.bucket >= $5 AND r.bucket < $6
                  GROUP BY 1, 2) b
            JOIN sel USING (series_id)
            ORDER BY 1, 2$q$, agg, CASE src WHEN '1m' THEN 'samples_1m' ELSE 'samples_1h' END)
        USING p_metric, p_agents, p_instances, p_labels, start, p_to, p_step;
    END IF;
END
$$;

-- One value per selected series over the whole of [p_from, p_to), with the
-- functions and rules of pga_range: whole hours from the 1-hour rollups, the
-- minutes before the first and after the last whole hour from the 1-minute rollups
-- (so to the minute). For tables and "top N" lists: the increase of a counter over
-- the dashboard's range, its average rate, a gauge's average or maximum.
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
              AND ((m.bucket >= $5 AND m.bucket < $6) OR (m.bucket >= $7 AND m.bucket < $8)))
        SELECT b.series_id, sel.agent, sel.pg_instance, sel.labels, b.value
        FROM (SELECT r.series_id, %s AS value FROM r GROUP BY r.series_id) b
        JOIN sel USING (series_id)
        ORDER BY b.series_id$q$, agg)
    USING p_metric, p_agents, p_instances, p_labels, m_from, h_from, h_to, p_to;
END
$$;

-- The newest value of each selected series at p_at: its newest raw sample in
-- (p_at - p_lookback, p_at], else the `last` of its newest 1-minute rollup in that
-- window (raw samples kept for less time than the rollups). A series with nothing
-- in the window has no row: it is not current.
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
        FROM samples x
        WHERE x.series_id IN (SELECT sel.series_id FROM sel)
          AND x.ts > p_at - p_lookback AND x.ts <= p_at
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

-- Samples per agent and step bucket, from the rollups' counts (1-minute rollups for
-- steps under an hour, else 1-hour): what the central database received.
CREATE OR REPLACE FUNCTION pga_agent_samples(
    p_from   timestamptz,
    p_to     timestamptz,
    p_step   interval,
    p_agents text[] DEFAULT NULL)
RETURNS TABLE ("time" timestamptz, agent text, samples bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    step interval := greatest(p_step, interval '1 minute');
BEGIN
    RETURN QUERY EXECUTE format($q$
        SELECT date_bin($3, r.bucket, timestamptz 'epoch'), a.name, sum(r.count)::bigint
        FROM %I r
        JOIN series se ON se.id = r.series_id
        JOIN agents a ON a.id = se.agent_id
        WHERE r.bucket >= date_bin($3, $1, timestamptz 'epoch') AND r.bucket < $2
          AND ($4 IS NULL OR a.name = ANY ($4))
        GROUP BY 1, 2
        ORDER BY 1, 2$q$,
        CASE WHEN step >= interval '1 hour' THEN 'samples_1h' ELSE 'samples_1m' END)
    USING p_from, p_to, step, p_agents;
END
$$;

-- Statement texts (redacted by the agent) by instance, database, user and queryid.
CREATE OR REPLACE VIEW pga_statement_texts AS
SELECT DISTINCT ON (se.agent_id, pga_series_instance(se.labels), se.labels ->> 'queryid')
       a.name AS agent, pga_series_instance(se.labels) AS pg_instance,
       se.labels ->> 'datname' AS datname, se.labels ->> 'user' AS user_name,
       se.labels ->> 'queryid' AS queryid, se.labels ->> 'query' AS query, se.last_seen
FROM series se
JOIN agents a ON a.id = se.agent_id
WHERE se.metric = 'pg_stat_statements_query_info'
ORDER BY se.agent_id, pga_series_instance(se.labels), se.labels ->> 'queryid',
         se.last_seen DESC NULLS LAST;

-- Parsed log events with their agent and instance.
CREATE OR REPLACE VIEW pga_log_events AS
SELECT l.ts AS "time", a.name AS agent, l.instance AS pg_instance, l.severity, l.kind,
       l.sqlstate, l.pid, l.user_name, l.database_name, l.application, l.message,
       l.duration_ms
FROM log_events l
JOIN agents a ON a.id = l.agent_id;

-- Every PostgreSQL instance the agents report, with its cluster (system identifier
-- as text, as Grafana variables carry it), role and when it was last reported.
CREATE OR REPLACE VIEW pga_instances AS
SELECT a.name AS agent, i.name AS pg_instance, s.hostname AS agent_host, i.host, i.port,
       i.system_identifier::text AS cluster, i.role, i.version AS server_version,
       i.server_version_num, i.first_seen_at, i.last_seen_at, i.id AS instance_id
FROM postgresql_instances i
JOIN agents a ON a.id = i.agent_id
LEFT JOIN servers s ON s.id = i.server_id;

-- Every database of every instance.
CREATE OR REPLACE VIEW pga_databases AS
SELECT a.name AS agent, i.name AS pg_instance, d.name AS datname,
       i.system_identifier::text AS cluster, d.first_seen_at, d.last_seen_at
FROM databases d
JOIN postgresql_instances i ON i.id = d.instance_id
JOIN agents a ON a.id = i.agent_id;

-- Where each agent's data stands in the central database: its newest sample, when
-- it was last written, how far behind the federator's clock that is, whether a
-- backfill is under way (written to within the last minute, yet its newest sample
-- more than two minutes older than that write: the pulls are walking forward
-- through the agent's store), its series and the gaps recorded.
CREATE OR REPLACE VIEW pga_agent_ingest AS
SELECT a.name AS agent, a.last_seen_at, c.last_sequence,
       timestamptz 'epoch' + c.last_ts_ms * interval '1 millisecond' AS last_sample_at,
       c.updated_at AS last_ingest_at,
       extract(epoch FROM now() - (timestamptz 'epoch' + c.last_ts_ms * interval '1 millisecond'))
           AS lag_seconds,
       coalesce(c.updated_at > now() - interval '1 minute'
                AND timestamptz 'epoch' + c.last_ts_ms * interval '1 millisecond'
                    < c.updated_at - interval '2 minutes', false) AS backfilling,
       coalesce(c.series_count, 0) AS series_count,
       (SELECT count(*) FROM gaps g WHERE g.agent_id = a.id) AS gaps,
       (SELECT coalesce(sum(g.last_sequence - g.first_sequence + 1), 0)
        FROM gaps g WHERE g.agent_id = a.id) AS blocks_lost
FROM agents a
LEFT JOIN agent_cursors c ON c.agent_id = a.id;

-- Recorded gaps as time ranges (Grafana region annotations: time, timeend, text).
CREATE OR REPLACE VIEW pga_gaps AS
SELECT a.name AS agent, coalesce(g.after_ts, g.recorded_at) AS "time",
       coalesce(g.before_ts, g.after_ts, g.recorded_at) AS timeend,
       format('gap: %s block(s) of %s lost (sequences %s to %s)',
              g.last_sequence - g.first_sequence + 1, a.name, g.first_sequence,
              g.last_sequence) AS text,
       g.first_sequence, g.last_sequence, g.recorded_at
FROM gaps g
JOIN agents a ON a.id = g.agent_id;

SELECT pga_apply_grants();
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pga_reader') THEN
        GRANT EXECUTE ON FUNCTION
            pga_series_instance(jsonb), pga_labels_match(jsonb, jsonb),
            pga_select_series(text, text[], text[], jsonb), pga_range_source(interval),
            pga_range(text, text, timestamptz, timestamptz, interval, text[], text[], jsonb, interval),
            pga_summary(text, text, timestamptz, timestamptz, text[], text[], jsonb),
            pga_latest(text, text[], text[], jsonb, timestamptz, interval),
            pga_agent_samples(timestamptz, timestamptz, interval, text[])
        TO pga_reader;
    END IF;
END
$$;
