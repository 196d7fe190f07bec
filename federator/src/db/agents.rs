//! Agents: the fleet as the API sees and changes it, and as the scheduler pulls it.
//!
//! An agent comes from the configuration file (`source = 'config'`, written at
//! every start and read-only through the API) or from the API (`source = 'api'`).
//! Removing an API agent marks it removed: it is no longer pulled and no longer
//! listed, and its data stays until retention.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{FromRow, PgConnection, PgPool};

use crate::config::AgentEntry;

/// Where an agent is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `[[agents]]` in federator.toml: change it there.
    Config,
    /// Added through the API.
    Api,
}

/// An agent with its pull status.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: i64,
    pub name: String,
    pub url: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Cron expression with seconds; `null` follows `scrape.schedule`.
    pub schedule: Option<String>,
    pub enabled: bool,
    pub source: Source,
    /// True for agents from the configuration file: the API cannot change them.
    pub read_only: bool,
    /// What the agent reported at its last pull.
    pub version: Option<String>,
    pub agent_uid: Option<String>,
    pub last_seen_at: Option<String>,
    pub status: AgentStatus,
    pub created_at: String,
    pub updated_at: String,
}

/// Where an agent's pulls stand.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AgentStatus {
    /// Last sealed block sequence ingested.
    pub last_sequence: Option<i64>,
    /// Time of the newest sample ingested.
    pub last_sample_at: Option<String>,
    /// When the cursor last moved.
    pub last_ingest_at: Option<String>,
    pub series: i64,
    /// Recorded gaps and the blocks they lost.
    pub gaps: i64,
    pub blocks_lost: i64,
}

#[derive(Debug, FromRow)]
struct AgentRow {
    id: i64,
    name: String,
    url: Option<String>,
    labels: sqlx::types::Json<BTreeMap<String, String>>,
    schedule: Option<String>,
    enabled: bool,
    source: String,
    version: Option<String>,
    agent_uid: Option<String>,
    last_seen_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_sequence: Option<i64>,
    last_sample_at: Option<DateTime<Utc>>,
    last_ingest_at: Option<DateTime<Utc>>,
    series_count: Option<i64>,
    gaps: i64,
    blocks_lost: i64,
}

impl From<AgentRow> for Agent {
    fn from(r: AgentRow) -> Agent {
        let source = if r.source == "config" {
            Source::Config
        } else {
            Source::Api
        };
        Agent {
            id: r.id,
            name: r.name,
            url: r.url,
            labels: r.labels.0,
            schedule: r.schedule,
            enabled: r.enabled,
            source,
            read_only: source == Source::Config,
            version: r.version,
            agent_uid: r.agent_uid,
            last_seen_at: super::rfc3339_opt(r.last_seen_at),
            status: AgentStatus {
                last_sequence: r.last_sequence,
                last_sample_at: super::rfc3339_opt(r.last_sample_at),
                last_ingest_at: super::rfc3339_opt(r.last_ingest_at),
                series: r.series_count.unwrap_or(0),
                gaps: r.gaps,
                blocks_lost: r.blocks_lost,
            },
            created_at: super::rfc3339(r.created_at),
            updated_at: super::rfc3339(r.updated_at),
        }
    }
}

impl Agent {
    /// The fields the audit log records.
    pub fn audit_view(&self) -> Value {
        json!({
            "name": self.name,
            "url": self.url,
            "labels": self.labels,
            "schedule": self.schedule,
            "enabled": self.enabled,
        })
    }
}

const SELECT: &str = "SELECT a.id, a.name, a.url, a.labels, a.schedule, a.enabled, a.source, a.version, \
       a.agent_uid::text AS agent_uid, a.last_seen_at, a.created_at, a.updated_at, \
       c.last_sequence, \
       CASE WHEN c.last_ts_ms IS NULL THEN NULL \
            ELSE timestamptz 'epoch' + c.last_ts_ms * interval '1 millisecond' END AS last_sample_at, \
       c.updated_at AS last_ingest_at, c.series_count, \
       (SELECT count(*) FROM gaps g WHERE g.agent_id = a.id) AS gaps, \
       (SELECT coalesce(sum(g.last_sequence - g.first_sequence + 1), 0)::bigint \
          FROM gaps g WHERE g.agent_id = a.id) AS blocks_lost \
     FROM agents a LEFT JOIN agent_cursors c ON c.agent_id = a.id";

/// Agents not removed, by name, after `after_name`.
pub async fn list(pool: &PgPool, after_name: &str, limit: i64) -> Result<Vec<Agent>, sqlx::Error> {
    let rows: Vec<AgentRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE a.removed_at IS NULL AND a.name > $1 ORDER BY a.name LIMIT $2"
    ))
    .bind(after_name)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Agent::from).collect())
}

/// One agent (not removed) by name.
pub async fn get(conn: &mut PgConnection, name: &str) -> Result<Option<Agent>, sqlx::Error> {
    let row: Option<AgentRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE a.removed_at IS NULL AND a.name = $1"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Agent::from))
}

/// Locks the agent's row (removed or not) for a change; returns whether it is
/// removed, when it exists.
pub async fn lock(conn: &mut PgConnection, name: &str) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT removed_at IS NOT NULL FROM agents WHERE name = $1 FOR UPDATE")
        .bind(name)
        .fetch_optional(conn)
        .await
}

/// An agent's definition as the API sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub url: String,
    pub labels: BTreeMap<String, String>,
    pub schedule: Option<String>,
    pub enabled: bool,
}

/// Runs `sql`, whose parameters are an agent's name and definition: `$1` name,
/// `$2` url, `$3` labels, `$4` schedule, `$5` enabled.
async fn execute_definition(
    sql: &'static str,
    conn: &mut PgConnection,
    name: &str,
    d: &Definition,
) -> Result<(), sqlx::Error> {
    sqlx::query(sql)
        .bind(name)
        .bind(&d.url)
        .bind(sqlx::types::Json(&d.labels))
        .bind(&d.schedule)
        .bind(d.enabled)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds an API agent, or brings a removed one back with its history.
pub async fn create(
    conn: &mut PgConnection,
    name: &str,
    d: &Definition,
) -> Result<(), sqlx::Error> {
    execute_definition(
        "INSERT INTO agents (name, url, labels, schedule, enabled, source) \
         VALUES ($1, $2, $3, $4, $5, 'api') \
         ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, labels = EXCLUDED.labels, \
             schedule = EXCLUDED.schedule, enabled = EXCLUDED.enabled, source = 'api', \
             removed_at = NULL \
         WHERE agents.removed_at IS NOT NULL",
        conn,
        name,
        d,
    )
    .await
}

/// Changes an API agent.
pub async fn update(
    conn: &mut PgConnection,
    name: &str,
    d: &Definition,
) -> Result<(), sqlx::Error> {
    execute_definition(
        "UPDATE agents SET url = $2, labels = $3, schedule = $4, enabled = $5 \
         WHERE name = $1 AND source = 'api' AND removed_at IS NULL",
        conn,
        name,
        d,
    )
    .await
}

/// Removes an API agent (its data stays).
pub async fn remove(conn: &mut PgConnection, name: &str) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE agents SET removed_at = now(), enabled = false \
         WHERE name = $1 AND source = 'api' AND removed_at IS NULL",
    )
    .bind(name)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Writes the configuration file's agents (source `config`) and hands agents that
/// left the file to the API, disabled, with their data. Run at every start.
pub async fn sync_config(pool: &PgPool, agents: &[AgentEntry]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    sqlx::query(
        "UPDATE agents SET source = 'api', enabled = false \
         WHERE source = 'config' AND NOT (name = ANY($1))",
    )
    .bind(&names)
    .execute(&mut *tx)
    .await?;
    for a in agents {
        sqlx::query(
            "INSERT INTO agents (name, url, labels, schedule, enabled, source) \
             VALUES ($1, $2, $3, $4, true, 'config') \
             ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, labels = EXCLUDED.labels, \
                 schedule = EXCLUDED.schedule, enabled = true, source = 'config', removed_at = NULL \
             WHERE (agents.url, agents.labels, agents.schedule, agents.enabled, agents.source, \
                    agents.removed_at) \
                   IS DISTINCT FROM \
                   (EXCLUDED.url, EXCLUDED.labels, EXCLUDED.schedule, true, 'config', NULL::timestamptz)",
        )
        .bind(&a.name)
        .bind(&a.url)
        .bind(sqlx::types::Json(&a.labels))
        .bind(&a.schedule)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// One agent the scheduler pulls.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Pulled {
    pub name: String,
    pub url: String,
    pub schedule: Option<String>,
    pub labels: sqlx::types::Json<BTreeMap<String, String>>,
}

/// The agents added through the API that are to be pulled: enabled, not removed,
/// with a URL.
pub async fn api_fleet(pool: &PgPool) -> Result<Vec<Pulled>, sqlx::Error> {
    fleet_of(pool, "api").await
}

/// The configuration file's agents as the table holds them (written by the
/// replicas at start): enabled, not removed, with a URL.
pub async fn config_fleet(pool: &PgPool) -> Result<Vec<Pulled>, sqlx::Error> {
    fleet_of(pool, "config").await
}

async fn fleet_of(pool: &PgPool, source: &str) -> Result<Vec<Pulled>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, url, schedule, labels FROM agents \
         WHERE source = $1 AND enabled AND removed_at IS NULL AND url IS NOT NULL \
         ORDER BY name",
    )
    .bind(source)
    .fetch_all(pool)
    .await
}

/// Recorded gaps, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Gap {
    pub agent: String,
    pub first_sequence: i64,
    pub last_sequence: i64,
    /// The missing samples lie after this time…
    pub after: Option<String>,
    /// …and before this one.
    pub before: Option<String>,
    pub recorded_at: String,
}

pub async fn gaps(pool: &PgPool, agent: Option<&str>, limit: i64) -> Result<Vec<Gap>, sqlx::Error> {
    type Row = (
        String,
        i64,
        i64,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        DateTime<Utc>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.name, g.first_sequence, g.last_sequence, g.after_ts, g.before_ts, g.recorded_at \
             FROM gaps g JOIN agents a ON a.id = g.agent_id \
             WHERE ($1::text IS NULL OR a.name = $1) \
             ORDER BY g.recorded_at DESC, g.id DESC LIMIT $2",
    )
    .bind(agent)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(agent, f, l, a, b, r)| Gap {
            agent,
            first_sequence: f,
            last_sequence: l,
            after: super::rfc3339_opt(a),
            before: super::rfc3339_opt(b),
            recorded_at: super::rfc3339(r),
        })
        .collect())
}
