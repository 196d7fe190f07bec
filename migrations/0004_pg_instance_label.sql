-- The PostgreSQL instance label is `pg_instance` (pga-agent store schema 2;
-- storage-format/PROTOCOL.md, "Labels"): a Prometheus server sets `instance` on
-- every series it scrapes itself, so the agent's own `instance` arrived renamed.
-- Series written before are renamed in place: same ids, so their samples and
-- rollups stay theirs, and an upgraded agent (whose store keeps its series ids)
-- continues them. The federator renames the label of agents not yet upgraded as
-- it ingests (federator/src/sink/series.rs). A series whose renamed labels exist
-- already, which no agent writes, is left as it is.
UPDATE series s
SET labels = (s.labels - 'instance') || jsonb_build_object('pg_instance', s.labels -> 'instance')
WHERE s.labels ? 'instance'
  AND NOT s.labels ? 'pg_instance'
  AND NOT EXISTS (
      SELECT 1
      FROM series o
      WHERE o.agent_id = s.agent_id
        AND o.metric = s.metric
        AND o.labels = (s.labels - 'instance')
                       || jsonb_build_object('pg_instance', s.labels -> 'instance')
  );
