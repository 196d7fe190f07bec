-- pgAnalytics v3 central database: what the HTTP API needs (README.md, "HTTP API").
--
--   * users: the roles admin, user and viewer;
--   * api_tokens: a display prefix and the SHA-256 of the token (never the token);
--   * refresh_tokens: rotated refresh tokens by family;
--   * agents: where each agent comes from (the configuration file or the API) and
--     its own schedule;
--   * audit_log: rebuilt as an append-only, hash-chained log.

-- Roles: "editor" becomes "user".
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_role_check;
UPDATE users SET role = 'user' WHERE role = 'editor';
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('admin', 'user', 'viewer'));
ALTER TABLE users ADD CONSTRAINT users_username_format
    CHECK (username ~ '^[A-Za-z0-9_.@-]{1,64}$');
ALTER TABLE users ADD COLUMN password_changed_at timestamptz;

-- API tokens: the stored hash is the SHA-256 of the token, as bytes.
ALTER TABLE api_tokens DROP COLUMN token_hash;
ALTER TABLE api_tokens ADD COLUMN token_hash bytea NOT NULL UNIQUE;
ALTER TABLE api_tokens ADD COLUMN prefix text NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_scopes
    CHECK (scopes <@ ARRAY['read', 'write', 'admin']::text[] AND cardinality(scopes) > 0);

-- Refresh tokens: one row per token issued; a family is every token descended from
-- one login (family_id = the id of its first token). A token is used once: using it
-- again revokes its whole family.
CREATE TABLE refresh_tokens (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id  bigint NOT NULL,
    token_hash bytea NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- Agents: from the configuration file (read-only through the API) or from the API.
ALTER TABLE agents ADD COLUMN source text NOT NULL DEFAULT 'api'
    CHECK (source IN ('config', 'api'));
ALTER TABLE agents ADD COLUMN schedule text;
-- Removing an agent through the API stops its pulls and hides it; its data stays
-- until retention (deleting the row would delete its series). Adding the name
-- again brings the agent back with its history.
ALTER TABLE agents ADD COLUMN removed_at timestamptz;
ALTER TABLE agents ADD CONSTRAINT agents_name_format
    CHECK (name ~ '^[A-Za-z0-9_.-]{1,128}$');

-- ---------------------------------------------------------------------------------
-- The audit log: every change made through the API and every authentication event.
--
-- Append-only: a trigger refuses UPDATE, DELETE and TRUNCATE (whoever runs them),
-- and the run-time role has no such privilege. Hash-chained: each row's `hash` is
-- SHA-256(prev_hash || pga_audit_canonical(row)), `prev_hash` the hash of the row
-- before it in `seq` order (32 zero bytes for the first). The insert trigger sets
-- seq, at, prev_hash and hash under an advisory lock, so concurrent writers chain
-- in commit order. `pga-federator audit verify` recomputes the chain.
DROP TABLE audit_log;
CREATE TABLE audit_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq            bigint NOT NULL UNIQUE,
    at             timestamptz NOT NULL,
    actor_user_id  bigint,
    actor_username text,
    actor_token_id bigint,
    actor_role     text,
    action         text NOT NULL,
    resource_type  text,
    resource_id    text,
    before         jsonb,
    after          jsonb,
    source_addr    inet,
    user_agent     text,
    request_id     text,
    result         text NOT NULL CHECK (result IN ('success', 'failure', 'denied')),
    detail         text,
    prev_hash      bytea NOT NULL,
    hash           bytea NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor_user_id, seq);

-- The text a row's hash covers: every column but id, prev_hash and hash, as one
-- JSON array (jsonb's text form is canonical).
CREATE FUNCTION pga_audit_canonical(a audit_log) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_array(
        a.seq, floor(extract(epoch FROM a.at) * 1000000)::bigint,
        a.actor_user_id, a.actor_username, a.actor_token_id, a.actor_role,
        a.action, a.resource_type, a.resource_id, a.before, a.after,
        host(a.source_addr), a.user_agent, a.request_id, a.result, a.detail)::text
$$;

CREATE FUNCTION pga_audit_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    last_seq  bigint;
    last_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pga_audit_log'));
    SELECT seq, hash INTO last_seq, last_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.at := clock_timestamp();
    NEW.prev_hash := coalesce(last_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
    NEW.hash := sha256(NEW.prev_hash || convert_to(pga_audit_canonical(NEW), 'UTF8'));
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION pga_audit_chain();

CREATE FUNCTION pga_audit_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit entries are never changed or removed; pga-federator audit verify checks them';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION pga_audit_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION pga_audit_refuse();

-- Grants: as before, but the run-time role may only read and append the audit log.
-- Every later migration that calls pga_apply_grants() keeps that.
CREATE OR REPLACE FUNCTION pga_apply_grants() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pga_reader') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO pga_reader', current_schema());
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO pga_reader', current_schema());
        -- Secrets' hashes are no business of dashboards.
        REVOKE SELECT ON users, api_tokens, refresh_tokens FROM pga_reader;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pga_writer') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO pga_writer', current_schema());
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO pga_writer',
                       current_schema());
        EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO pga_writer',
                       current_schema());
        EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO pga_writer', current_database());
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM pga_writer;
    END IF;
    REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
END
$$;

SELECT pga_apply_grants();
