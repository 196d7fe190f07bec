-- pgAnalytics v3 central database: roles and the metadata model.
--
-- Three roles (README.md, "Central database"):
--   * the owner: whoever runs `pga-federator migrate`; it owns every object;
--   * pga_writer: the federator at run time (reads and writes rows, never DDL);
--   * pga_reader: Grafana and humans (SELECT only).
-- pga_writer and pga_reader are NOLOGIN group roles: created here when the migrating
-- role may create roles, otherwise by an administrator with the SQL in README.md.
-- Grants are applied by pga_apply_grants(), which skips roles that do not exist, so
-- these migrations work either way; run `SELECT pga_apply_grants();` after creating
-- the roles later.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pga_writer', 'pga_reader'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r)
           AND EXISTS (SELECT FROM pg_roles
                       WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;

-- Grants for the two run-time roles, on everything in this schema. Idempotent;
-- every migration that adds objects calls it at its end.
CREATE FUNCTION pga_apply_grants() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pga_reader') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO pga_reader', current_schema());
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO pga_reader', current_schema());
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pga_writer') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO pga_writer', current_schema());
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO pga_writer',
                       current_schema());
        EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO pga_writer',
                       current_schema());
        -- The sink stages rows in temporary tables.
        EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO pga_writer', current_database());
    END IF;
END
$$;

-- Sets updated_at on every UPDATE.
CREATE FUNCTION pga_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- People who use the API and Grafana.
CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    email         text UNIQUE,
    full_name     text,
    -- An argon2/bcrypt hash in PHC string format; never a password.
    password_hash text,
    role          text NOT NULL DEFAULT 'viewer' CHECK (role IN ('admin', 'editor', 'viewer')),
    is_active     boolean NOT NULL DEFAULT true,
    last_login_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- API tokens; only a hash of the token is stored.
CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    token_hash   text NOT NULL UNIQUE,
    scopes       text[] NOT NULL DEFAULT '{}',
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, name)
);

-- Hosts that run PostgreSQL and an agent.
CREATE TABLE servers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hostname    text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    environment text,
    labels      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Agents the federator pulls (the earlier versions' "collectors"). The sink inserts a
-- row the first time it writes an agent's data; `name` is the agent's name in the
-- federator's configuration, `agent_uid` the identity of its store.
CREATE TABLE agents (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    agent_uid    uuid UNIQUE,
    url          text,
    server_id    bigint REFERENCES servers (id) ON DELETE SET NULL,
    labels       jsonb NOT NULL DEFAULT '{}',
    enabled      boolean NOT NULL DEFAULT true,
    version      text,
    last_seen_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- PostgreSQL instances (clusters) watched by an agent.
CREATE TABLE postgresql_instances (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id  bigint REFERENCES servers (id) ON DELETE CASCADE,
    agent_id   bigint REFERENCES agents (id) ON DELETE SET NULL,
    name       text NOT NULL,
    host       text,
    port       integer CHECK (port BETWEEN 1 AND 65535),
    version    text,
    labels     jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (server_id, name)
);

-- Databases of an instance.
CREATE TABLE databases (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id bigint NOT NULL REFERENCES postgresql_instances (id) ON DELETE CASCADE,
    name        text NOT NULL,
    labels      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (instance_id, name)
);

-- Alert rules: an aggregation of the series selected by metric and labels over a
-- window, compared with a threshold.
CREATE TABLE alert_rules (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text NOT NULL UNIQUE,
    description    text NOT NULL DEFAULT '',
    metric         text NOT NULL,
    label_matchers jsonb NOT NULL DEFAULT '{}',
    aggregation    text NOT NULL
                   CHECK (aggregation IN ('avg', 'min', 'max', 'sum', 'last', 'count', 'rate', 'increase')),
    window_secs    integer NOT NULL CHECK (window_secs > 0),
    comparison     text NOT NULL CHECK (comparison IN ('>', '>=', '<', '<=', '=', '!=')),
    threshold      double precision NOT NULL,
    for_secs       integer NOT NULL DEFAULT 0 CHECK (for_secs >= 0),
    severity       text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
    enabled        boolean NOT NULL DEFAULT true,
    created_by     bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Alert instances raised by a rule, one per offending label set.
CREATE TABLE alerts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id         bigint NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    labels          jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    value           double precision,
    started_at      timestamptz NOT NULL,
    resolved_at     timestamptz,
    acknowledged_by bigint REFERENCES users (id) ON DELETE SET NULL,
    acknowledged_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_open ON alerts (rule_id) WHERE state <> 'resolved';

-- Who did what through the API. Append-only: no updated_at.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    user_id     bigint REFERENCES users (id) ON DELETE SET NULL,
    action      text NOT NULL,
    object_type text,
    object_id   text,
    details     jsonb NOT NULL DEFAULT '{}',
    client_addr inet
);
CREATE INDEX audit_log_at ON audit_log (at);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'api_tokens', 'servers', 'agents', 'postgresql_instances',
                             'databases', 'alert_rules', 'alerts'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION pga_set_updated_at()',
                       t || '_updated_at', t);
    END LOOP;
END
$$;

SELECT pga_apply_grants();
