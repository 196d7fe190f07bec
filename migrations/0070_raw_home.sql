-- pgAnalytics v3 central database: where raw samples live (docs/scaling.md,
-- "Raw samples elsewhere"; docs/central-database.md).
--
-- The central database keeps raw samples for `retention.raw_secs` of the federator;
-- a remote-write destination marked `raw_home = true` keeps them for the long term.
-- The federator records both at every start (remote_write_destinations, migration
-- 0060, and federator_retention below), so that the query layer and the dashboards
-- can say where raw data older than the database's retention is.

-- The `[retention]` ages of the federator, as the last federator started recorded
-- them (replicas share one configuration). One row.
CREATE TABLE federator_retention (
    one            boolean PRIMARY KEY DEFAULT true CHECK (one),
    raw_secs       bigint NOT NULL CHECK (raw_secs > 0),
    rollup_1m_secs bigint NOT NULL CHECK (rollup_1m_secs > 0),
    rollup_1h_secs bigint NOT NULL CHECK (rollup_1h_secs > 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Where raw samples live, in one row: the raw home (the `raw_home` remote-write
-- destination, else the central database), how long PostgreSQL keeps raw samples,
-- and where raw samples older than that are. The other destinations hold copies.
CREATE VIEW pga_raw_home AS
SELECT coalesce(d.name, 'PostgreSQL') AS raw_home,
       d.url,
       justify_hours(make_interval(secs => r.raw_secs)) AS postgresql_keeps_raw,
       r.raw_secs AS postgresql_raw_secs,
       CASE
           WHEN d.name IS NOT NULL THEN
               format('in remote-write destination %s (%s), for as long as it keeps them',
                      d.name, d.url)
           WHEN r.raw_secs IS NULL THEN
               'unknown: no federator has recorded its retention yet'
           ELSE 'nowhere: dropped by the retention; the 1-minute and 1-hour rollups remain'
       END AS older_raw_samples,
       (SELECT string_agg(o.name, ', ' ORDER BY o.name)
          FROM remote_write_destinations o WHERE NOT o.raw_home) AS copies_in,
       justify_hours(make_interval(secs => r.rollup_1m_secs)) AS postgresql_keeps_rollup_1m,
       justify_hours(make_interval(secs => r.rollup_1h_secs)) AS postgresql_keeps_rollup_1h
FROM (SELECT) AS one_row
LEFT JOIN remote_write_destinations d ON d.raw_home
LEFT JOIN federator_retention r ON true;

COMMENT ON VIEW pga_raw_home IS
    'Where raw samples live: the raw_home remote-write destination or PostgreSQL, how long PostgreSQL keeps raw samples (retention.raw_secs), and where older raw samples are';

SELECT pga_apply_grants();
