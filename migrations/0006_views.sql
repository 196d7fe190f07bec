-- pgAnalytics v3 central database: rates from the rollups, and the fleet inventory.
--
-- The rollup views gain, at their end, `increase_secs` and `after_gap`
-- (migration 0005) and `rate`: the counter's average per-second increase over the
-- time its `increase` covers. Across a recorded gap or a long silence the increase
-- is unknown and left out, so `rate` stays right on both sides of it where
-- `increase / 60` would not. For Grafana:
--   SELECT bucket AS time, labels->>'datname' AS metric, rate AS commits_per_sec
--   FROM metric_rollups_1m
--   WHERE metric = 'pg_stat_database_xact_commit_total' AND $__timeFilter(bucket)
--   ORDER BY bucket;

CREATE OR REPLACE VIEW metric_rollups_1m AS
SELECT r.bucket, a.name AS agent, se.metric, se.labels, r.count, r.sum, r.sum / r.count AS avg,
       r.min, r.max, r.last, r.increase, r.series_id,
       r.increase_secs, coalesce(r.after_gap, false) AS after_gap,
       r.increase / nullif(r.increase_secs, 0) AS rate
FROM samples_1m r
JOIN series se ON se.id = r.series_id
JOIN agents a ON a.id = se.agent_id;

CREATE OR REPLACE VIEW metric_rollups_1h AS
SELECT r.bucket, a.name AS agent, se.metric, se.labels, r.count, r.sum, r.sum / r.count AS avg,
       r.min, r.max, r.last, r.increase, r.series_id,
       r.increase_secs, coalesce(r.after_gap, false) AS after_gap,
       r.increase / nullif(r.increase_secs, 0) AS rate
FROM samples_1h r
JOIN series se ON se.id = r.series_id
JOIN agents a ON a.id = se.agent_id;

-- Every PostgreSQL instance an agent reports, with its agent and host.
CREATE OR REPLACE VIEW fleet_instances AS
SELECT i.id AS instance_id, a.name AS agent, s.hostname AS agent_host, i.name AS instance,
       i.host, i.port, i.system_identifier, i.role, i.version AS server_version,
       i.server_version_num,
       (SELECT count(*) FROM databases d WHERE d.instance_id = i.id) AS databases,
       i.first_seen_at, i.last_seen_at
FROM postgresql_instances i
LEFT JOIN agents a ON a.id = i.agent_id
LEFT JOIN servers s ON s.id = i.server_id;

-- One row per PostgreSQL cluster, identified by its system identifier (a primary and
-- its physical standbys share it): which agents watch it, from which hosts, and how
-- many of its instances report as primary and as standby.
CREATE OR REPLACE VIEW postgresql_clusters AS
SELECT i.system_identifier,
       count(*) AS instances,
       count(DISTINCT i.agent_id) AS agents,
       array_agg(DISTINCT a.name ORDER BY a.name) AS agent_names,
       array_agg(DISTINCT s.hostname ORDER BY s.hostname)
           FILTER (WHERE s.hostname IS NOT NULL) AS agent_hosts,
       count(*) FILTER (WHERE i.role = 'primary') AS primaries,
       count(*) FILTER (WHERE i.role = 'standby') AS standbys,
       max(i.version) AS server_version,
       min(i.first_seen_at) AS first_seen_at,
       max(i.last_seen_at) AS last_seen_at
FROM postgresql_instances i
LEFT JOIN agents a ON a.id = i.agent_id
LEFT JOIN servers s ON s.id = i.server_id
WHERE i.system_identifier IS NOT NULL
GROUP BY i.system_identifier;

SELECT pga_apply_grants();
