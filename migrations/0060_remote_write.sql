-- pgAnalytics v3 central database: Prometheus remote-write destinations
-- (docs/scaling.md, "Remote-write").
--
-- Each configured destination has its own cursor per agent, advanced only after the
-- receiver acknowledged (2xx) every request of the blocks it covers; the blocks the
-- agent evicted before the destination got them are that destination's gaps; the
-- requests a receiver refused for good (400: too old, out of order) are recorded with
-- their samples counted. The federator's pga_writer role reads and writes these rows.

-- The destinations as last configured, so that the query layer and dashboards can say
-- where raw samples live (`raw_home`).
CREATE TABLE remote_write_destinations (
    name       text PRIMARY KEY,
    url        text NOT NULL,
    raw_home   boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX remote_write_one_raw_home ON remote_write_destinations (raw_home)
    WHERE raw_home;

-- Where each destination stands for each agent.
CREATE TABLE remote_write_cursors (
    destination      text NOT NULL,
    agent_id         bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    agent_uid        uuid NOT NULL,
    -- The last sealed block acknowledged (or skipped as a gap); NULL before the first.
    last_sequence    bigint,
    -- Its newest sample timestamp (ms).
    last_ts_ms       bigint,
    samples_sent     bigint NOT NULL DEFAULT 0,
    samples_rejected bigint NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (destination, agent_id)
);
CREATE TRIGGER remote_write_cursors_updated_at BEFORE UPDATE ON remote_write_cursors
    FOR EACH ROW EXECUTE FUNCTION pga_set_updated_at();

-- Sealed blocks an agent evicted before this destination was given them: the samples
-- in (after_ts, before_ts) are missing there for good (the central database may
-- still hold them; its own gaps are in `gaps`).
CREATE TABLE remote_write_gaps (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination    text NOT NULL,
    agent_id       bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    agent_uid      uuid NOT NULL,
    first_sequence bigint NOT NULL,
    last_sequence  bigint NOT NULL,
    after_ts       timestamptz,
    before_ts      timestamptz,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (destination, agent_uid, first_sequence, last_sequence),
    CHECK (first_sequence <= last_sequence)
);

-- Requests a destination refused for good (a 4xx other than 429 that is about the
-- samples, such as 400 "out of order" or "too old"): never retried, never silent.
CREATE TABLE remote_write_rejections (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination text NOT NULL,
    agent_id    bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    agent_uid   uuid NOT NULL,
    -- The sealed block the request's samples came from.
    block_sequence bigint NOT NULL,
    samples     bigint NOT NULL,
    min_ts      timestamptz NOT NULL,
    max_ts      timestamptz NOT NULL,
    status      integer NOT NULL,
    detail      text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX remote_write_rejections_at ON remote_write_rejections (destination, at);

-- For Grafana and the operator: each destination's position per agent beside the
-- central database's own.
CREATE VIEW remote_write_status AS
SELECT c.destination, a.name AS agent, c.last_sequence,
       c.last_sequence IS NOT NULL AND ac.last_sequence IS NOT NULL
           AND c.agent_uid = ac.agent_uid
           AND c.last_sequence < ac.last_sequence AS behind_database,
       ac.last_sequence AS database_sequence,
       to_timestamp(c.last_ts_ms / 1000.0) AS last_sample_at,
       c.samples_sent, c.samples_rejected,
       (SELECT count(*) FROM remote_write_gaps g
         WHERE g.destination = c.destination AND g.agent_id = c.agent_id) AS gaps,
       c.updated_at
FROM remote_write_cursors c
JOIN agents a ON a.id = c.agent_id
LEFT JOIN agent_cursors ac ON ac.agent_id = c.agent_id;

SELECT pga_apply_grants();
