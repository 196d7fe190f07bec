-- pgAnalytics v3 central database: the fleet inventory, what a rollup's increase
-- covers, and partition upkeep that never makes an ingest wait.
--
-- * Inventory (README.md, "Inventory"): on every pull the federator records what the
--   agent reports in /v1/status (storage-format/PROTOCOL.md): its host (`servers`),
--   version and URL (`agents`), each PostgreSQL instance it watches
--   (`postgresql_instances`: server version, system identifier, primary or standby)
--   and their databases (`databases`), each with when it was first and last seen.
--   An instance row is what one agent reports of one of its `[[postgres]]` entries;
--   the cluster it belongs to is its system identifier, so two agents watching one
--   cluster show as two rows with the same `system_identifier` (view
--   `postgresql_clusters`, migration 0006).
-- * Rollups (README.md, "Rollups"): `increase_secs`, the time the bucket's `increase`
--   covers, so that `increase / increase_secs` is the rate even where part of the
--   bucket is unknown; `after_gap`, whether a sample of the bucket follows a recorded
--   gap or a silence longer than the federator's `rollups.max_silence_secs` (its
--   increase over that stretch is not attributed to the bucket). Rows written before
--   this migration hold NULL in both.
-- * Partitions: created standalone and attached (`ATTACH PARTITION` takes only a SHARE
--   UPDATE EXCLUSIVE lock on the parent, which no ingest or reader conflicts with),
--   where `CREATE TABLE … PARTITION OF` took an ACCESS EXCLUSIVE lock that made every
--   other writer and reader of the table wait; dropped under a short lock_timeout,
--   a partition in use being left for the next retention run.

-- ---------------------------------------------------------------------------------
-- Inventory.

ALTER TABLE servers
    ADD COLUMN first_seen_at timestamptz,
    ADD COLUMN last_seen_at  timestamptz;

ALTER TABLE agents
    ADD COLUMN first_seen_at timestamptz;

ALTER TABLE postgresql_instances
    DROP CONSTRAINT postgresql_instances_server_id_name_key,
    ADD COLUMN server_version_num integer,
    ADD COLUMN system_identifier  bigint,
    ADD COLUMN role               text CHECK (role IN ('primary', 'standby')),
    ADD COLUMN first_seen_at      timestamptz,
    ADD COLUMN last_seen_at       timestamptz,
    ADD UNIQUE (agent_id, name);
CREATE INDEX postgresql_instances_system_identifier
    ON postgresql_instances (system_identifier);

ALTER TABLE databases
    ADD COLUMN first_seen_at timestamptz,
    ADD COLUMN last_seen_at  timestamptz;

-- ---------------------------------------------------------------------------------
-- Rollups and gaps.

ALTER TABLE samples_1m
    ADD COLUMN increase_secs double precision,
    ADD COLUMN after_gap     boolean;
ALTER TABLE samples_1h
    ADD COLUMN increase_secs double precision,
    ADD COLUMN after_gap     boolean;

-- The rollups look up, for a pair of consecutive samples, whether a gap of the
-- series' agent starts between them.
CREATE INDEX gaps_agent_after ON gaps (agent_id, after_ts);

-- ---------------------------------------------------------------------------------
-- Partitions.

CREATE OR REPLACE FUNCTION pga_ensure_partitions(p_at timestamptz[]) RETURNS integer
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
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING ALL)', part, t.parent);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           t.parent, part, lo AT TIME ZONE 'UTC',
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

-- Drops the partitions of `p_parent` that end at or before `p_before`, oldest first,
-- and returns their names. Dropping a partition locks its parent exclusively; a
-- partition whose parent stays busy for 2 s (a long ingest) is skipped this time.
CREATE OR REPLACE FUNCTION pga_drop_partitions(p_parent text, p_before timestamptz)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    p record;
BEGIN
    PERFORM set_config('lock_timeout', '2s', true);
    FOR p IN SELECT name FROM pga_partitions
             WHERE parent = p_parent AND upper_bound <= p_before
             ORDER BY lower_bound LOOP
        BEGIN
            EXECUTE format('DROP TABLE IF EXISTS %I', p.name);
            DELETE FROM pga_partitions WHERE name = p.name;
            RETURN NEXT p.name;
        EXCEPTION WHEN lock_not_available THEN
            RAISE WARNING 'partition % is in use: left for the next retention run', p.name;
        END;
    END LOOP;
END
$$;

SELECT pga_apply_grants();
