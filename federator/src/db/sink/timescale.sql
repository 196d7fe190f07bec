-- TimescaleDB setup for the pgAnalytics v3 central database.
--
-- Applied by `pga-federator migrate` (federator/src/sink/timescale.rs) only where
-- the timescaledb extension is created in the central database, and only while the
-- time-series tables are still empty: it replaces those natively partitioned tables
-- (migrations/0002_metrics.sql, with the columns later migrations added) with
-- hypertables of the same columns and keys, with compression enabled. The views of
-- migrations/0003_views.sql, 0006_views.sql and 0030_query_layer.sql are dropped here
-- and created again afterwards; compression and retention policies are set by timescale.rs from the
-- retention settings. Never run on plain PostgreSQL. Needs TimescaleDB 2.13 or newer
-- (create_hypertable with by_range; ON CONFLICT into compressed chunks).

-- The query layer's views over these tables (migrations/0030_query_layer.sql).
DROP VIEW IF EXISTS pga_log_events;
DROP VIEW metric_series, metric_samples, metric_rollups_1m, metric_rollups_1h,
          agent_log_events, agent_status, agent_gaps;

DROP TABLE samples, samples_1m, samples_1h, log_events;

CREATE TABLE samples (
    series_id bigint NOT NULL,
    ts        timestamptz NOT NULL,
    value     double precision NOT NULL,
    PRIMARY KEY (series_id, ts)
);
SELECT create_hypertable('samples', by_range('ts', INTERVAL '1 day'));
ALTER TABLE samples SET (timescaledb.compress,
                         timescaledb.compress_segmentby = 'series_id',
                         timescaledb.compress_orderby = 'ts');

CREATE TABLE samples_1m (
    series_id bigint NOT NULL,
    bucket    timestamptz NOT NULL,
    count     bigint NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    last      double precision NOT NULL,
    increase  double precision,
    increase_secs double precision,
    after_gap     boolean,
    PRIMARY KEY (series_id, bucket)
);
SELECT create_hypertable('samples_1m', by_range('bucket', INTERVAL '1 day'));
ALTER TABLE samples_1m SET (timescaledb.compress,
                            timescaledb.compress_segmentby = 'series_id',
                            timescaledb.compress_orderby = 'bucket');

CREATE TABLE samples_1h (
    series_id bigint NOT NULL,
    bucket    timestamptz NOT NULL,
    count     bigint NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    last      double precision NOT NULL,
    increase  double precision,
    increase_secs double precision,
    after_gap     boolean,
    PRIMARY KEY (series_id, bucket)
);
SELECT create_hypertable('samples_1h', by_range('bucket', INTERVAL '30 days'));
ALTER TABLE samples_1h SET (timescaledb.compress,
                            timescaledb.compress_segmentby = 'series_id',
                            timescaledb.compress_orderby = 'bucket');

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
);
CREATE INDEX log_events_kind ON log_events (kind, ts);
SELECT create_hypertable('log_events', by_range('ts', INTERVAL '1 day'));
ALTER TABLE log_events SET (timescaledb.compress,
                            timescaledb.compress_segmentby = 'agent_id',
                            timescaledb.compress_orderby = 'ts, block_sequence, event_index');

-- Hypertables manage their own chunks: native partition upkeep stops here.
DELETE FROM pga_partitioned;
