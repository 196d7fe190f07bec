-- pgAnalytics v3 central database: 1-day rollups, for summaries over days.
--
-- A summary over a week (pga_summary: the Top statements and Tables panels, the API's
-- query route) read each series' 168 hours. At 50 agents × 2,004 series a Top
-- statements panel reads 168 rows of each of 26,000 series for each of its five
-- counters, 4.4 million rows, and took 2.1 s (`pga-bench dashboards`). `samples_1d`
-- holds the same rollups a day wide: such a summary reads its whole days from it and
-- the hours of its partial first and last days from `samples_1h`, about 30 rows per
-- series instead of 168.
--
-- Written like the 1-hour rows (0090_closed_hours.sql): in arrears, by the hours job
-- (federator/src/db/sink/hours.rs), once every hour of the day is closed, summing
-- that day's 1-hour rows; `closed_rollups.days_until` marks up to where an agent's
-- days are written, and the ingest keeps the days below it exact as late data
-- arrives (federator/src/db/sink/rollup.rs). A day's row is the sum of its hours'
-- rows, as an hour's is of its minutes'. Readers use only the days below every
-- agent's mark (pga_closed_until('days'), 0095_day_rollups_query.sql) and hours for
-- the rest, so the answer is the same before and after a day is written.
--
-- Kept as long as the 1-hour rows (`retention.rollup_1h_secs`), in monthly partitions
-- like them.

ALTER TABLE closed_rollups
    ADD COLUMN days_until timestamptz
        CHECK (days_until = date_bin('1 day', days_until, timestamptz 'epoch'));
COMMENT ON TABLE closed_rollups IS
    'per agent: samples_1h rows are complete below hours_until, samples_10m rows below tens_until, samples_1d rows below days_until (NULL: none yet); the readers use finer rows after them';

CREATE TABLE samples_1d (LIKE samples_1h INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
PARTITION BY RANGE (bucket);
ALTER TABLE samples_1d ADD PRIMARY KEY (series_id, bucket);

-- Native partitions by month, those of the 1-hour rollups from the start; a
-- database whose time-series tables TimescaleDB holds (federator/src/db/sink/
-- timescale.sql emptied pga_partitioned then) gets a hypertable, compressed like the
-- others, and timescale.rs sets its policies.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pga_partitioned)
       OR NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb') THEN
        INSERT INTO pga_partitioned (parent, step) VALUES ('samples_1d', 'month')
        ON CONFLICT DO NOTHING;
        PERFORM pga_ensure_partitions(ARRAY(
            SELECT lower_bound FROM pga_partitions WHERE parent = 'samples_1h'));
    ELSE
        DROP TABLE samples_1d;
        CREATE TABLE samples_1d (LIKE samples_1h INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        ALTER TABLE samples_1d ADD PRIMARY KEY (series_id, bucket);
        PERFORM create_hypertable('samples_1d'::regclass, by_range('bucket', INTERVAL '90 days'));
        ALTER TABLE samples_1d SET (timescaledb.compress,
                                    timescaledb.compress_segmentby = 'series_id',
                                    timescaledb.compress_orderby = 'bucket');
    END IF;
END
$$;

-- The days of an existing history are written by the hours job from each agent's
-- oldest 1-hour row on, a day per transaction, online (days_until starts NULL);
-- until then the readers use hours.

SELECT pga_apply_grants();
