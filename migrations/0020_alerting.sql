-- pgAnalytics v3 central database: alerting (docs/alerting.md).
--
-- Rules (from rule files and the API), alert state kept across restarts, each agent's
-- evaluation position, the durable notification outbox with one delivery cursor per
-- receiver, maintenance windows, and views of current alerts and alert history for
-- Grafana. The federator's pga_writer role reads and writes these rows; it never
-- needs DDL.

-- ---------------------------------------------------------------------------------
-- Each agent's data watermark: the newest sample time up to which the central
-- database holds everything the agent collected (its sealed blocks, and the head
-- when the pull that wrote it was caught up). Rules are evaluated at this time, so
-- late data never fakes an absence or a resolution. It only moves forward.
ALTER TABLE agent_cursors ADD COLUMN watermark_ms bigint;
UPDATE agent_cursors SET watermark_ms = last_ts_ms;

-- ---------------------------------------------------------------------------------
-- Maintenance windows: matchers plus a time range. Notifications of the alerts they
-- match are muted (recorded in the outbox with the window, not delivered).
CREATE TABLE maintenance_windows (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- [{"name": "agent", "op": "=", "value": "db1"}, …]; op one of = != =~ !~.
    matchers   jsonb NOT NULL CHECK (jsonb_typeof(matchers) = 'array' AND jsonb_array_length(matchers) > 0),
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    comment    text NOT NULL DEFAULT '',
    created_by bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX maintenance_windows_ends ON maintenance_windows (ends_at);
CREATE TRIGGER maintenance_windows_updated_at BEFORE UPDATE ON maintenance_windows
    FOR EACH ROW EXECUTE FUNCTION pga_set_updated_at();

-- ---------------------------------------------------------------------------------
-- Rules: the model of federator/src/alerting/rule.rs. The first schema's single
-- metric + aggregation columns give way to a query.
ALTER TABLE alert_rules
    DROP COLUMN metric,
    DROP COLUMN label_matchers,
    DROP COLUMN aggregation,
    DROP COLUMN window_secs,
    DROP CONSTRAINT alert_rules_comparison_check,
    ADD COLUMN query text NOT NULL DEFAULT '',
    ADD COLUMN resolve_threshold double precision,
    ADD COLUMN keep_firing_for_secs integer NOT NULL DEFAULT 0 CHECK (keep_firing_for_secs >= 0),
    ADD COLUMN labels jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN annotations jsonb NOT NULL DEFAULT '{}',
    -- [{"match": {"label": "value", …}, "threshold": x, "resolve_threshold": y}, …]
    ADD COLUMN overrides jsonb NOT NULL DEFAULT '[]',
    -- Which published pack the rule matches, and what to do when it fires.
    ADD COLUMN pack text NOT NULL DEFAULT '',
    ADD COLUMN runbook text NOT NULL DEFAULT '',
    -- While an alert of this rule fires for an agent, that agent's other rules are held.
    ADD COLUMN inhibits_agent boolean NOT NULL DEFAULT false,
    -- 'api', or 'file:<path>' for rules loaded from a rule file (the file wins on reload).
    ADD COLUMN origin text NOT NULL DEFAULT 'api',
    ADD COLUMN revision integer NOT NULL DEFAULT 1;
ALTER TABLE alert_rules ALTER COLUMN query DROP DEFAULT;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_comparison_check
    CHECK (comparison IN ('>', '>=', '<', '<=', '==', '!='));

-- ---------------------------------------------------------------------------------
-- Alerts: one row per episode of one rule on one label set, from the moment its
-- condition first holds (pending) until it resolves. All times but last_sent_at are
-- data times (the agent's watermark when the evaluation saw the change).
ALTER TABLE alerts
    ADD COLUMN fingerprint text NOT NULL,
    ADD COLUMN agent_id bigint REFERENCES agents (id) ON DELETE CASCADE,
    ADD COLUMN annotations jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN fired_at timestamptz,
    ADD COLUMN last_true_at timestamptz,
    ADD COLUMN last_seen_at timestamptz,
    ADD COLUMN evaluated_at timestamptz,
    ADD COLUMN last_sent_at timestamptz,
    ADD COLUMN notified_state text CHECK (notified_state IN ('firing', 'resolved')),
    ADD COLUMN held boolean NOT NULL DEFAULT false,
    ADD COLUMN late boolean NOT NULL DEFAULT false,
    ADD COLUMN muted_by bigint REFERENCES maintenance_windows (id) ON DELETE SET NULL,
    ADD COLUMN resolved_reason text;
COMMENT ON COLUMN alerts.started_at IS 'when the condition first held (pending since)';
CREATE UNIQUE INDEX alerts_open_fingerprint ON alerts (rule_id, fingerprint) WHERE state <> 'resolved';
CREATE INDEX alerts_resolved_at ON alerts (resolved_at) WHERE state = 'resolved';
CREATE INDEX alerts_agent ON alerts (agent_id);

-- Where each agent's evaluation stands (data time, ms): every instant up to here has
-- been evaluated.
CREATE TABLE alert_positions (
    agent_id             bigint PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    evaluated_through_ms bigint NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------
-- The outbox: every notification, written in the transaction of the state change that
-- caused it, delivered to each receiver in id order (so in order per alert) at least
-- once. `payload` is the alert as Alertmanager's API v2 takes it.
CREATE TABLE alert_outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id   bigint REFERENCES alerts (id) ON DELETE SET NULL,
    status     text NOT NULL CHECK (status IN ('firing', 'resolved')),
    payload    jsonb NOT NULL,
    late       boolean NOT NULL DEFAULT false,
    -- Set when a maintenance window muted it: recorded, never delivered.
    muted_by   bigint REFERENCES maintenance_windows (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_outbox_alert ON alert_outbox (alert_id);

-- One row per configured receiver: how far it has been delivered.
CREATE TABLE alert_receivers (
    name              text PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('alertmanager', 'webhook')),
    delivered_through bigint NOT NULL,
    failures          integer NOT NULL DEFAULT 0,
    last_error        text,
    last_attempt_at   timestamptz,
    last_success_at   timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER alert_receivers_updated_at BEFORE UPDATE ON alert_receivers
    FOR EACH ROW EXECUTE FUNCTION pga_set_updated_at();

-- What each receiver was given: one row per outbox row and receiver.
CREATE TABLE alert_deliveries (
    outbox_id    bigint NOT NULL REFERENCES alert_outbox (id) ON DELETE CASCADE,
    receiver     text NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('delivered', 'rejected', 'muted')),
    attempts     integer NOT NULL,
    detail       text,
    at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (outbox_id, receiver)
);

-- ---------------------------------------------------------------------------------
-- For Grafana: tables and annotations.

-- Alerts pending or firing now.
CREATE VIEW alerts_current AS
SELECT a.id, r.name AS alertname, r.severity, ag.name AS agent, a.state,
       a.labels, a.annotations, a.annotations->>'summary' AS summary, a.value,
       a.started_at AS active_at, a.fired_at, a.evaluated_at, a.held, a.late,
       a.muted_by IS NOT NULL AS muted, r.runbook, r.pack
FROM alerts a
JOIN alert_rules r ON r.id = a.rule_id
LEFT JOIN agents ag ON ag.id = a.agent_id
WHERE a.state <> 'resolved';

-- Every alert that fired, late ones included, with Grafana's annotation columns:
-- `time` and `timeend` (firing span; timeend NULL while it fires), `text`, `tags`.
CREATE VIEW alerts_history AS
SELECT a.id, r.name AS alertname, r.severity, ag.name AS agent, a.state,
       a.labels, a.annotations, a.value, a.started_at AS active_at, a.fired_at,
       a.resolved_at, a.resolved_reason, a.late, a.muted_by IS NOT NULL AS muted,
       a.fired_at AS time, a.resolved_at AS timeend,
       r.name || ': ' || coalesce(a.annotations->>'summary', '')
           || CASE WHEN a.late THEN ' (late: found after a backfill)' ELSE '' END AS text,
       concat_ws(',', r.name, r.severity, ag.name,
                 CASE WHEN a.late THEN 'late' END) AS tags
FROM alerts a
JOIN alert_rules r ON r.id = a.rule_id
LEFT JOIN agents ag ON ag.id = a.agent_id
WHERE a.fired_at IS NOT NULL;

SELECT pga_apply_grants();
