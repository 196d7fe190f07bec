-- pgAnalytics v3 central database: views for humans and Grafana.
--
-- Select by metric name and labels, e.g.
--   SELECT ts AS time, value FROM metric_samples
--   WHERE metric = 'pg_stat_database_xact_commit_total'
--     AND labels @> '{"datname": "postgres"}' AND ts > now() - interval '1 hour'
--   ORDER BY ts;

-- Series with their agent's name.
CREATE VIEW metric_series AS
SELECT se.id AS series_id, a.name AS agent, se.metric, se.labels, se.kind, se.unit, se.help,
       se.first_seen, se.last_seen
FROM series se
JOIN agents a ON a.id = se.agent_id;

-- Raw samples by metric and labels.
CREATE VIEW metric_samples AS
SELECT s.ts, a.name AS agent, se.metric, se.labels, s.value, s.series_id
FROM samples s
JOIN series se ON se.id = s.series_id
JOIN agents a ON a.id = se.agent_id;

-- One-minute rollups by metric and labels; `avg` for convenience.
CREATE VIEW metric_rollups_1m AS
SELECT r.bucket, a.name AS agent, se.metric, se.labels, r.count, r.sum, r.sum / r.count AS avg,
       r.min, r.max, r.last, r.increase, r.series_id
FROM samples_1m r
JOIN series se ON se.id = r.series_id
JOIN agents a ON a.id = se.agent_id;

-- One-hour rollups by metric and labels.
CREATE VIEW metric_rollups_1h AS
SELECT r.bucket, a.name AS agent, se.metric, se.labels, r.count, r.sum, r.sum / r.count AS avg,
       r.min, r.max, r.last, r.increase, r.series_id
FROM samples_1h r
JOIN series se ON se.id = r.series_id
JOIN agents a ON a.id = se.agent_id;

-- Log events with their agent's name.
CREATE VIEW agent_log_events AS
SELECT l.ts, a.name AS agent, l.severity, l.kind, l.sqlstate, l.pid, l.instance, l.user_name,
       l.database_name, l.application, l.message, l.duration_ms
FROM log_events l
JOIN agents a ON a.id = l.agent_id;

-- Where each agent's pull stands, and how much it lost to gaps.
CREATE VIEW agent_status AS
SELECT a.name AS agent, c.agent_uid, c.last_sequence,
       timestamptz 'epoch' + c.last_ts_ms * interval '1 millisecond' AS last_sample_at,
       c.series_count, c.updated_at AS last_ingest_at,
       (SELECT count(*) FROM gaps g WHERE g.agent_id = a.id) AS gaps,
       (SELECT coalesce(sum(g.last_sequence - g.first_sequence + 1), 0)
        FROM gaps g WHERE g.agent_id = a.id) AS blocks_lost
FROM agents a
LEFT JOIN agent_cursors c ON c.agent_id = a.id;

-- Recorded gaps with their agent's name.
CREATE VIEW agent_gaps AS
SELECT a.name AS agent, g.first_sequence, g.last_sequence, g.after_ts, g.before_ts, g.recorded_at
FROM gaps g
JOIN agents a ON a.id = g.agent_id;

SELECT pga_apply_grants();
