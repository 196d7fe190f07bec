-- TimescaleDB setup for the pgAnalytics v3 central database.
--
-- Applied by `pga-federator migrate` (federator/src/sink/timescale.rs) only where
-- the timescaledb extension is created in the central database, and only while the
-- time-series tables are still empty: it replaces those natively partitioned tables
-- (migrations/0002_metrics.sql, with the columns later migrations added) with
-- hypertables of the same columns and keys, with compression enabled. The views of
-- migrations/0003_views.sql, 0006_views.sql, 0030_query_layer.sql,
-- 0081_packed_query.sql and 0091_closed_hours_query.sql are dropped here and created
-- again afterwards (timescale.rs `VIEWS`, which also applies the functions of 0093,
-- 0095 and 0096 again); compression and retention policies are set by timescale.rs from the
-- retention settings. Never run on plain PostgreSQL. Needs TimescaleDB 2.13 or newer
-- (create_hypertable with by_range; ON CONFLICT into compressed chunks).

-- The query layer's views over these tables (migrations/0030_query_layer.sql).
DROP VIEW IF EXISTS pga_log_events;
DROP VIEW metric_series, metric_samples, metric_rollups_1m, metric_rollups_1h,
          agent_log_events, agent_status, agent_gaps;
-- Over `samples` and the packed tables (migrations/0081_packed_query.sql), after
-- metric_samples, which reads it.
DROP VIEW IF EXISTS pga_samples;
-- Over samples_1h and samples_1m (migrations/0091_closed_hours_query.sql), after
-- metric_rollups_1h, which reads it.
DROP VIEW IF EXISTS pga_hours;

-- The covering index of the native 1-hour rollups (migrations/0092_rollup_cover.sql):
-- compressed chunks segmented by series serve those reads instead.
DROP INDEX IF EXISTS samples_1h_cover;

-- Each time-series table is created again from the native one, LIKE it (the same
-- columns, defaults, NOT NULL and CHECK constraints, primary key and indexes, so the
-- columns later migrations added come along), and the native one with its
-- partitions is dropped. Then the new table becomes a hypertable of `chunk`-long
-- chunks on `time_column`, compressed by `segment_by` in `order_by` order.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('samples',    'ts',     INTERVAL '1 day',   'series_id', 'ts'),
        ('samples_1m', 'bucket', INTERVAL '1 day',   'series_id', 'bucket'),
        ('samples_10m', 'bucket', INTERVAL '7 days', 'series_id', 'bucket'),
        ('samples_1h', 'bucket', INTERVAL '30 days', 'series_id', 'bucket'),
        ('samples_1d', 'bucket', INTERVAL '90 days', 'series_id', 'bucket'),
        ('log_events', 'ts',     INTERVAL '1 day',   'agent_id',
         'ts, block_sequence, event_index')
    ) AS v (name, time_column, chunk, segment_by, order_by)
    LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t.name, t.name || '_native');
        EXECUTE format('ALTER INDEX %I RENAME TO %I', t.name || '_pkey', t.name || '_native_pkey');
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                       'INCLUDING INDEXES)', t.name, t.name || '_native');
        EXECUTE format('DROP TABLE %I', t.name || '_native');
        PERFORM create_hypertable(t.name::regclass, by_range(t.time_column::name, t.chunk));
        EXECUTE format('ALTER TABLE %I SET (timescaledb.compress, '
                       'timescaledb.compress_segmentby = %L, timescaledb.compress_orderby = %L)',
                       t.name, t.segment_by, t.order_by);
    END LOOP;
END
$$;
-- LIKE names the copied index after its columns.
ALTER INDEX log_events_kind_ts_idx RENAME TO log_events_kind;

-- Hypertables manage their own chunks: native partition upkeep stops here.
DELETE FROM pga_partitioned;
