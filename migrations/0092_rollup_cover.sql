-- pgAnalytics v3 central database: the 1-hour rollups read in series order from an
-- index.
--
-- The hours job writes these rows an hour at a time, every series of an agent
-- together (federator/src/db/sink/hours.rs), so a heap page holds one hour of many
-- series. pga_summary over 7 days reads the opposite way: each series' 168 hours,
-- which were one heap page each. Measured with `pga-bench dashboards` (5 agents ×
-- 2,004 series), one pga_summary over 7 days of 520 series took 114 ms, 85,000 page
-- reads for 87,000 rows.
--
-- A covering index in (series_id, bucket) order holds every column the readers ask
-- for, so they scan it alone (an index-only scan, once vacuum has marked the pages
-- all-visible, which autovacuum does after inserts): the same summary took 40 ms.
-- Written an hour at a time it costs 150-225 bytes per row (5 and 50 agents in
-- `pga-bench dashboards`), as much as the row or more.
-- The 10-minute rollups have none: their range reads at Grafana's step gained little
-- from it (the time goes into aggregating and labelling the rows), at the same cost
-- for six times the rows.
--
-- Only on the native partitioned table: a TimescaleDB hypertable keeps these rows
-- compressed, segmented by series (federator/src/db/sink/timescale.sql), and its
-- conversion drops this index first.
--
-- Online: the index is declared on the parent only, which takes no time, and built
-- here on the partitions that hold no row yet (all of them in a new database). Every
-- partition created later gets it with its creation. A partition that already holds
-- rows keeps being read from the heap until retention drops it, since building its
-- index here would hold the hours job and the ingest of late data for as long as the
-- build takes; docs/central-database.md ("Closed hours") gives the two statements that
-- build it without holding them.

DO $$
DECLARE
    part text;
    has_rows boolean;
BEGIN
    IF NOT EXISTS (SELECT FROM pga_partitioned p WHERE p.parent = 'samples_1h') THEN
        RETURN;
    END IF;
    CREATE INDEX IF NOT EXISTS samples_1h_cover ON ONLY samples_1h (series_id, bucket)
        INCLUDE (count, sum, min, max, last, increase, increase_secs, after_gap);
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'samples_1h'::regclass ORDER BY 1
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT FROM %I)', part) INTO has_rows;
        IF NOT has_rows THEN
            EXECUTE format('CREATE INDEX %I ON %I (series_id, bucket) '
                           'INCLUDE (count, sum, min, max, last, increase, increase_secs, after_gap)',
                           part || '_cover', part);
            EXECUTE format('ALTER INDEX samples_1h_cover ATTACH PARTITION %I', part || '_cover');
        END IF;
    END LOOP;
END
$$;
