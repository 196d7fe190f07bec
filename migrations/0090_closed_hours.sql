-- pgAnalytics v3 central database: rollups above a minute written once, when their
-- time has passed.
--
-- Until now the sink added every pull's samples to their 1-hour rows as well as to
-- their 1-minute rows. At a pull every 15 s that is 240 updates of each series'
-- 1-hour row per hour, one new row version each; measured on the fleet benchmark
-- (docs/benchmarks.md, "Pull speed"), those updates were what kept the federator
-- from making every pull due.
--
-- Now an agent's 1-hour and 10-minute rows are written in arrears. In
-- `closed_rollups`, `hours_until` and `tens_until` say up to where the agent's
-- `samples_1h` and `samples_10m` rows are complete and kept exact by the sink (NULL:
-- nowhere yet). Later buckets are not written by the ingest: the hours job
-- (federator/src/db/sink/hours.rs) computes them from the 1-minute rows once the
-- clock has passed them, and moves the marks. Readers go through pga_hours and
-- pga_rollups_in (0091_closed_hours_query.sql), which read the rows below the marks
-- and sum the 1-minute rows after them: the same answer, written or not.
--
-- `samples_10m` is new: 10-minute rollups, for ranges of days (Grafana's step over a
-- week is 10 minutes), a tenth of the rows of `samples_1m`.

CREATE TABLE closed_rollups (
    agent_id    bigint PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    hours_until timestamptz
        CHECK (hours_until = date_bin('1 hour', hours_until, timestamptz 'epoch')),
    tens_until  timestamptz
        CHECK (tens_until = date_bin('10 minutes', tens_until, timestamptz 'epoch')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE closed_rollups IS
    'per agent: samples_1h rows are complete below hours_until, samples_10m rows below tens_until (NULL: none yet); pga_hours and pga_rollups_in read the 1-minute rows after them';

-- The columns of samples_1h (0002_metrics.sql, with what 0005 added).
CREATE TABLE samples_10m (LIKE samples_1h INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
PARTITION BY RANGE (bucket);
ALTER TABLE samples_10m ADD PRIMARY KEY (series_id, bucket);

-- Partitioned by day like samples_1m, with the partitions the 1-minute rollups have
-- (the hours job fills them from those minutes). A database whose time-series tables
-- TimescaleDB already holds as hypertables (federator/src/db/sink/timescale.sql
-- emptied pga_partitioned then) gets a hypertable instead, compressed like the
-- others; timescale.rs sets its policies.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pga_partitioned)
       OR NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb') THEN
        INSERT INTO pga_partitioned (parent, step) VALUES ('samples_10m', 'day')
        ON CONFLICT DO NOTHING;
        PERFORM pga_ensure_partitions(ARRAY(
            SELECT lower_bound FROM pga_partitions WHERE parent = 'samples_1m'));
    ELSE
        DROP TABLE samples_10m;
        CREATE TABLE samples_10m (LIKE samples_1h INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                                  INCLUDING INDEXES);
        PERFORM create_hypertable('samples_10m'::regclass, by_range('bucket', INTERVAL '7 days'));
        ALTER TABLE samples_10m SET (timescaledb.compress,
                                     timescaledb.compress_segmentby = 'series_id',
                                     timescaledb.compress_orderby = 'bucket');
    END IF;
END
$$;

-- The sink kept every hour up to now, so each agent's hours are closed up to the
-- current one (which the ingest no longer writes) from the start. Its 10-minute rows
-- are written by the hours job from its oldest minute on, a day per transaction;
-- until then pga_rollups_in sums minutes.
INSERT INTO closed_rollups (agent_id, hours_until)
SELECT a.id, date_bin('1 hour', now(), timestamptz 'epoch')
FROM agents a
ON CONFLICT (agent_id) DO NOTHING;

SELECT pga_apply_grants();
