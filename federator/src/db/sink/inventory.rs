//! The fleet inventory: what each agent's `/v1/status` reports, in `servers`,
//! `agents`, `postgresql_instances` and `databases` (migration 0005).
//!
//! One small transaction per report, apart from the agent's data. Rows are keyed as
//! an operator names things: a server by its host name, an agent by its configured
//! name, an instance by (agent, the agent's name for it), a database by (instance,
//! name). Every row keeps when it was first and last seen. A value the agent does
//! not know now (`null`: it has not reached its server) leaves the value recorded
//! before; a value that changed is recorded as it is, and a changed system
//! identifier (a cluster restored from another, or re-created) is reported back so
//! that it is said.

use std::collections::BTreeMap;

use super::{Sink, SinkError, pg_text};
use crate::pull::status::AgentStatus;

/// What recording a status found worth saying.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryReport {
    /// Instances whose system identifier changed: `(instance, before, now)`.
    pub identity_changes: Vec<(String, i64, i64)>,
}

/// The agents of one host record it concurrently, each at its transaction's start
/// (`now()`): one that started earlier but commits later must not move `last_seen_at`
/// back before another's `first_seen_at` (seen in CI: first seen after last seen).
const SERVER: &str = "\
INSERT INTO servers (hostname, first_seen_at, last_seen_at) VALUES ($1, now(), now())
ON CONFLICT (hostname) DO UPDATE
    SET last_seen_at = greatest(servers.last_seen_at, now()),
        first_seen_at = least(servers.first_seen_at, now())
RETURNING id";

const AGENT: &str = "\
INSERT INTO agents (name, url, version, server_id, labels, first_seen_at, last_seen_at)
VALUES ($1, $2, $3, $4, $5::jsonb, now(), now())
ON CONFLICT (name) DO UPDATE
    SET url = EXCLUDED.url, version = coalesce(EXCLUDED.version, agents.version),
        server_id = coalesce(EXCLUDED.server_id, agents.server_id),
        labels = EXCLUDED.labels, last_seen_at = now(),
        first_seen_at = coalesce(agents.first_seen_at, now())
RETURNING id";

/// Upserts one instance and returns its id and the system identifier it had.
const INSTANCE: &str = "\
WITH before AS (
    SELECT system_identifier FROM postgresql_instances WHERE agent_id = $1 AND name = $2)
INSERT INTO postgresql_instances AS i (agent_id, name, server_id, host, port, version,
    server_version_num, system_identifier, role, first_seen_at, last_seen_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
        CASE WHEN $9::boolean THEN 'standby' WHEN NOT $9::boolean THEN 'primary' END,
        now(), now())
ON CONFLICT (agent_id, name) DO UPDATE SET
    server_id = coalesce(EXCLUDED.server_id, i.server_id),
    host = coalesce(EXCLUDED.host, i.host),
    port = coalesce(EXCLUDED.port, i.port),
    version = coalesce(EXCLUDED.version, i.version),
    server_version_num = coalesce(EXCLUDED.server_version_num, i.server_version_num),
    system_identifier = coalesce(EXCLUDED.system_identifier, i.system_identifier),
    role = coalesce(EXCLUDED.role, i.role),
    last_seen_at = now(),
    first_seen_at = coalesce(i.first_seen_at, now())
RETURNING id, (SELECT system_identifier FROM before)";

const DATABASES: &str = "\
INSERT INTO databases AS d (instance_id, name, first_seen_at, last_seen_at)
SELECT $1, n, now(), now() FROM unnest($2::text[]) AS n
ON CONFLICT (instance_id, name) DO UPDATE
    SET last_seen_at = now(), first_seen_at = coalesce(d.first_seen_at, now())";

impl Sink {
    /// Records what the agent configured as `agent` (at `url`, with `labels`)
    /// reports of itself, in one transaction.
    pub async fn record_status(
        &self,
        agent: &str,
        url: &str,
        labels: &BTreeMap<String, String>,
        status: &AgentStatus,
    ) -> Result<InventoryReport, SinkError> {
        let mut report = InventoryReport::default();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(SinkError::db("starting the inventory transaction"))?;
        let server: Option<i64> = match &status.host {
            Some(host) => Some(
                sqlx::query_scalar(SERVER)
                    .bind(pg_text(host))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(SinkError::db("recording the agent's server"))?,
            ),
            None => None,
        };
        let labels_json = serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_owned());
        let agent_row: i64 = sqlx::query_scalar(AGENT)
            .bind(agent)
            .bind(url)
            .bind(status.version.as_deref().map(pg_text))
            .bind(server)
            .bind(&labels_json)
            .fetch_one(&mut *tx)
            .await
            .map_err(SinkError::db("recording the agent"))?;
        for i in &status.instances {
            let (id, before): (i64, Option<i64>) = sqlx::query_as(INSTANCE)
                .bind(agent_row)
                .bind(pg_text(&i.name))
                .bind(server)
                .bind(i.host.as_deref().map(pg_text))
                .bind(i.port.map(i32::from))
                .bind(i.server_version.as_deref().map(pg_text))
                .bind(i.server_version_num)
                .bind(i.system_identifier)
                .bind(i.in_recovery)
                .fetch_one(&mut *tx)
                .await
                .map_err(SinkError::db("recording a PostgreSQL instance"))?;
            if let (Some(before), Some(now)) = (before, i.system_identifier)
                && before != now
            {
                report.identity_changes.push((i.name.clone(), before, now));
            }
            if let Some(names) = &i.databases
                && !names.is_empty()
            {
                let names: Vec<String> = names.iter().map(|n| pg_text(n).into_owned()).collect();
                sqlx::query(DATABASES)
                    .bind(id)
                    .bind(&names)
                    .execute(&mut *tx)
                    .await
                    .map_err(SinkError::db("recording databases"))?;
            }
        }
        tx.commit()
            .await
            .map_err(SinkError::db("committing the inventory"))?;
        Ok(report)
    }
}
