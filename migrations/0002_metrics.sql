-- pgAnalytics v3 central database: series, samples, rollups, log events, cursors, gaps.
--
-- Time-series tables are natively range-partitioned by time on plain PostgreSQL
-- (PostgreSQL 14 or newer: rollups use date_bin). Partitions are created ahead and
-- dropped by retention through the SECURITY DEFINER functions below, so the
-- federator's pga_writer role never needs DDL rights. Where TimescaleDB is installed,
-- federator/src/sink/timescale.sql turns these tables into hypertables instead.

-- One series: a metric name plus a label set, from one agent.
CREATE TABLE series (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id   bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    metric     text NOT NULL,
    labels     jsonb NOT NULL DEFAULT '{}',
    kind       text NOT NULL CHECK (kind IN ('counter', 'gauge')),
    unit       text NOT NULL DEFAULT '',
    help       text NOT NULL DEFAULT '',
    -- Oldest and newest sample time written; last_seen lags by at most an hour
    -- (the exact newest sample is max(ts) in samples).
    first_seen timestamptz,
    last_seen  timestamptz,
    UNIQUE (agent_id, metric, labels)
);
CREATE INDEX series_metric ON series (metric);
CREATE INDEX series_labels ON series USING gin (labels jsonb_path_ops);

-- An agent's own series ids (its dictionary, per store identity) to global ids.
CREATE TABLE agent_series (
    agent_uid uuid NOT NULL,
    local_id  bigint NOT NULL,
    series_id bigint NOT NULL REFERENCES series (id) ON DELETE CASCADE,
    PRIMARY KEY (agent_uid, local_id)
);

-- Raw samples, one per series and time.
CREATE TABLE samples (
    series_id bigint NOT NULL,
    ts        timestamptz NOT NULL,
    value     double precision NOT NULL,
    PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);

-- Rollups (README.md, "Rollups"): per series and bucket, computed from the raw
-- samples; `increase` only for counters, NULL for gauges.
CREATE TABLE samples_1m (
    series_id bigint NOT NULL,
    bucket    timestamptz NOT NULL,
    count     bigint NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    last      double precision NOT NULL,
    increase  double precision,
    PRIMARY KEY (series_id, bucket)
) PARTITION BY RANGE (bucket);

CREATE TABLE samples_1h (
    series_id bigint NOT NULL,
    bucket    timestamptz NOT NULL,
    count     bigint NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    last      double precision NOT NULL,
    increase  double precision,
    PRIMARY KEY (series_id, bucket)
) PARTITION BY RANGE (bucket);

-- Parsed PostgreSQL log entries. (agent, block sequence, index in block) identifies
-- an event, so a block written twice adds nothing.
CREATE TABLE log_events (
    agent_id       bigint NOT NULL,
    ts             timestamptz NOT NULL,
    block_sequence bigint NOT NULL,
    event_index    integer NOT NULL,
    severity       text NOT NULL,
    kind           text NOT NULL,
    sqlstate       text,
    pid            bigint,
    instance       text,
    user_name      text,
    database_name  text,
    application    text,
    message        text NOT NULL,
    duration_ms    double precision,
    PRIMARY KEY (agent_id, ts, block_sequence, event_index)
) PARTITION BY RANGE (ts);
CREATE INDEX log_events_kind ON log_events (kind, ts);

-- Where each agent's pull stands; advanced in the transaction that writes the data.
CREATE TABLE agent_cursors (
    agent_id      bigint PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    agent_uid     uuid NOT NULL,
    last_sequence bigint,
    last_ts_ms    bigint,
    series_count  bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER agent_cursors_updated_at BEFORE UPDATE ON agent_cursors
    FOR EACH ROW EXECUTE FUNCTION pga_set_updated_at();

-- Sealed blocks an agent evicted before the federator pulled them. The samples in
-- (after_ts, before_ts) from that agent are missing for good; NULL bounds are unknown.
CREATE TABLE gaps (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id       bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    agent_uid      uuid NOT NULL,
    first_sequence bigint NOT NULL,
    last_sequence  bigint NOT NULL,
    after_ts       timestamptz,
    before_ts      timestamptz,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (agent_uid, first_sequence, last_sequence),
    CHECK (first_sequence <= last_sequence)
);

-- ---------------------------------------------------------------------------------
-- Native partitioning.

-- The time-partitioned tables and the width of their partitions. TimescaleDB's setup
-- empties this table: hypertables manage their own chunks.
CREATE TABLE pga_partitioned (
    parent text PRIMARY KEY,
    step   text NOT NULL CHECK (step IN ('day', 'month'))
);
INSERT INTO pga_partitioned (parent, step) VALUES
    ('samples', 'day'), ('samples_1m', 'day'), ('log_events', 'day'), ('samples_1h', 'month');

-- Every partition created by pga_ensure_partitions, with its bounds (UTC).
CREATE TABLE pga_partitions (
    name        text PRIMARY KEY,
    parent      text NOT NULL REFERENCES pga_partitioned (parent) ON DELETE CASCADE,
    lower_bound timestamptz NOT NULL,
    upper_bound timestamptz NOT NULL
);

-- Creates, for every partitioned table, the partition holding each instant of
-- `p_at` when it is missing (named <table>_pYYYYMMDD or <table>_pYYYYMM, bounds in
-- UTC). Returns how many were created. Concurrent callers serialise on an advisory
-- lock only when something has to be created.
CREATE FUNCTION pga_ensure_partitions(p_at timestamptz[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    t       record;
    lo      timestamp;
    part    text;
    created integer := 0;
BEGIN
    FOR t IN SELECT parent, step FROM pga_partitioned ORDER BY parent LOOP
        FOR lo IN SELECT DISTINCT date_trunc(t.step, a AT TIME ZONE 'UTC')
                  FROM unnest(p_at) AS a WHERE a IS NOT NULL ORDER BY 1 LOOP
            part := t.parent || '_p'
                    || to_char(lo, CASE t.step WHEN 'day' THEN 'YYYYMMDD' ELSE 'YYYYMM' END);
            CONTINUE WHEN EXISTS (SELECT FROM pga_partitions p WHERE p.name = part);
            PERFORM pg_advisory_xact_lock(hashtext('pga_ensure_partitions'));
            CONTINUE WHEN EXISTS (SELECT FROM pga_partitions p WHERE p.name = part);
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                           part, t.parent, lo AT TIME ZONE 'UTC',
                           (lo + ('1 ' || t.step)::interval) AT TIME ZONE 'UTC');
            INSERT INTO pga_partitions (name, parent, lower_bound, upper_bound)
            VALUES (part, t.parent, lo AT TIME ZONE 'UTC',
                    (lo + ('1 ' || t.step)::interval) AT TIME ZONE 'UTC');
            created := created + 1;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;

-- Creates the partitions of the days from p_now to p_now + p_days (and of their months).
CREATE FUNCTION pga_create_partitions_ahead(p_now timestamptz, p_days integer) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT pga_ensure_partitions(ARRAY(
        SELECT p_now + d * interval '1 day' FROM generate_series(0, greatest(p_days, 0)) AS d))
$$;

-- Drops the partitions of `p_parent` that end at or before `p_before`, oldest first,
-- and returns their names.
CREATE FUNCTION pga_drop_partitions(p_parent text, p_before timestamptz) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT name FROM pga_partitions
             WHERE parent = p_parent AND upper_bound <= p_before
             ORDER BY lower_bound LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', p.name);
        DELETE FROM pga_partitions WHERE name = p.name;
        RETURN NEXT p.name;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION pga_ensure_partitions(timestamptz[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION pga_create_partitions_ahead(timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION pga_drop_partitions(text, timestamptz) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pga_writer') THEN
        GRANT EXECUTE ON FUNCTION pga_ensure_partitions(timestamptz[]) TO pga_writer;
        GRANT EXECUTE ON FUNCTION pga_create_partitions_ahead(timestamptz, integer) TO pga_writer;
        GRANT EXECUTE ON FUNCTION pga_drop_partitions(text, timestamptz) TO pga_writer;
    END IF;
END
$$;

SELECT pga_apply_grants();
