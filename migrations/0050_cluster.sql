-- pgAnalytics v3 central database: federator replicas, leases and fencing
-- (docs/federator.md, "Replicas, leases and fencing").
--
-- Any number of `pga-federator run` processes share this database. Each holds a
-- replica lease (a row renewed on the database clock), and owns the agents (and the
-- one alerting leader lease) assigned to it, each with an epoch taken from one
-- sequence at every grant. The write that moves an agent's cursor checks, in the
-- same statement, that the writer still owns the agent with that epoch and that its
-- replica lease is still valid: a replica that lost an agent commits nothing more for
-- it. Plain PostgreSQL; nothing here differs on TimescaleDB. The federator's
-- pga_writer role reads and writes these rows; it never needs DDL.

-- One row per running federator: its lease. valid_until is set from the database's
-- clock (now() + ttl) at every renewal, never from a federator's clock.
CREATE TABLE cluster_replica_leases (
    replica_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    version     text NOT NULL,
    ttl_ms      integer NOT NULL CHECK (ttl_ms > 0),
    started_at  timestamptz NOT NULL DEFAULT now(),
    renewed_at  timestamptz NOT NULL DEFAULT now(),
    valid_until timestamptz NOT NULL,
    -- Set when the replica stopped cleanly (its leases were released at once).
    stopped_at  timestamptz
);
CREATE INDEX cluster_replica_leases_valid ON cluster_replica_leases (valid_until);

-- Fencing tokens: every grant of a lease (a first claim, a takeover, a claim after a
-- release) takes the next value, so an epoch only ever grows.
CREATE SEQUENCE cluster_epoch_seq;

-- Who holds what: one row per agent (kind 'agent', name = agents.name) and per
-- leader lease (kind 'leader', name 'alerting'). owner NULL: released, free to take.
-- A lease is valid while its owner's replica lease is.
CREATE TABLE cluster_leases (
    kind           text NOT NULL CHECK (kind IN ('agent', 'leader')),
    name           text NOT NULL,
    owner          uuid REFERENCES cluster_replica_leases (replica_id) ON DELETE SET NULL,
    epoch          bigint NOT NULL CHECK (epoch > 0),
    acquired_at    timestamptz NOT NULL DEFAULT now(),
    previous_owner uuid,
    takeovers      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, name)
);
CREATE INDEX cluster_leases_owner ON cluster_leases (owner);

-- An epoch never goes backwards, and a new owner always comes with a new epoch:
-- a hand edit that breaks either is refused with the reason.
CREATE FUNCTION pga_cluster_lease_check() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.epoch < OLD.epoch THEN
        RAISE EXCEPTION 'cluster_leases %/%: epoch % would go backwards from %',
                        OLD.kind, OLD.name, NEW.epoch, OLD.epoch
              USING ERRCODE = 'P0001',
                    HINT = 'epochs are fencing tokens and only grow: take a new one with nextval(''cluster_epoch_seq''), or set owner = NULL to release the lease';
    END IF;
    IF NEW.owner IS NOT NULL AND NEW.owner IS DISTINCT FROM OLD.owner AND NEW.epoch = OLD.epoch THEN
        RAISE EXCEPTION 'cluster_leases %/%: a new owner needs a new epoch (still %)',
                        OLD.kind, OLD.name, OLD.epoch
              USING ERRCODE = 'P0001',
                    HINT = 'set epoch = nextval(''cluster_epoch_seq'') with the new owner, so the old owner''s writes are refused';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER cluster_leases_epoch BEFORE UPDATE ON cluster_leases
    FOR EACH ROW EXECUTE FUNCTION pga_cluster_lease_check();

-- The replicas as people read them: live while valid_until is ahead of the
-- database's clock.
CREATE VIEW cluster_replicas AS
SELECT r.replica_id, r.name, r.host, r.pid, r.version, r.started_at, r.renewed_at,
       r.valid_until, r.ttl_ms, r.stopped_at,
       (r.valid_until > now()) AS live,
       (SELECT count(*) FROM cluster_leases l WHERE l.owner = r.replica_id AND l.kind = 'agent')
           AS agents_owned,
       EXISTS (SELECT FROM cluster_leases l WHERE l.owner = r.replica_id AND l.kind = 'leader')
           AS leader
FROM cluster_replica_leases r;

-- Every agent and leader lease with its owner, and whether the lease holds now.
CREATE VIEW cluster_assignments AS
SELECT l.kind, l.name, l.owner AS replica_id, r.name AS replica, l.epoch, l.acquired_at,
       l.takeovers, l.previous_owner,
       (r.valid_until IS NOT NULL AND r.valid_until > now()) AS valid
FROM cluster_leases l
LEFT JOIN cluster_replica_leases r ON r.replica_id = l.owner;

SELECT pga_apply_grants();
