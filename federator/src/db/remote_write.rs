//! Remote-write destinations in the central database (migration 0060): each
//! destination's cursor per agent, its gaps, and the requests it refused.
//! The sender is `crate::remote_write`; no HTTP here.

use chrono::{DateTime, Utc};
use pga_format::AgentId;
use sqlx::PgPool;

use crate::db::sink::{Fence, SinkError, fenced_lease_sql, parse_uuid, uuid_text};
use crate::pull::batch::{Cursor, Gap};

/// Where a destination stands for one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteCursor {
    pub agent_uid: AgentId,
    pub last_sequence: Option<u64>,
    pub last_ts_ms: Option<i64>,
}

/// A request the receiver refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub block_sequence: u64,
    pub samples: u64,
    pub min_ts_ms: i64,
    pub max_ts_ms: i64,
    pub status: u16,
    pub detail: String,
}

fn ts(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// The `[retention]` ages recorded beside the destinations (`federator_retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionAges {
    pub raw_secs: u64,
    pub rollup_1m_secs: u64,
    pub rollup_1h_secs: u64,
}

/// Records the configured destinations and the retention ages (what the query layer
/// reads to say where raw samples live: `pga_raw_home`); destinations no longer
/// configured are removed from the list, their cursors stay (configured again, they
/// continue).
pub async fn sync_destinations(
    pool: &PgPool,
    destinations: &[(String, String, bool)],
    retention: RetentionAges,
) -> Result<(), SinkError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(SinkError::db("recording the remote-write destinations"))?;
    let names: Vec<&str> = destinations.iter().map(|(n, _, _)| n.as_str()).collect();
    sqlx::query("DELETE FROM remote_write_destinations WHERE NOT (name = ANY($1))")
        .bind(&names)
        .execute(&mut *tx)
        .await
        .map_err(SinkError::db("recording the remote-write destinations"))?;
    // Clear the flag first: at most one row holds it (a unique index).
    sqlx::query("UPDATE remote_write_destinations SET raw_home = false WHERE raw_home")
        .execute(&mut *tx)
        .await
        .map_err(SinkError::db("recording the remote-write destinations"))?;
    for (name, url, raw_home) in destinations {
        sqlx::query(
            "INSERT INTO remote_write_destinations (name, url, raw_home) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, raw_home = EXCLUDED.raw_home, \
             updated_at = now()",
        )
        .bind(name)
        .bind(url)
        .bind(raw_home)
        .execute(&mut *tx)
        .await
        .map_err(SinkError::db("recording the remote-write destinations"))?;
    }
    sqlx::query(
        "INSERT INTO federator_retention (raw_secs, rollup_1m_secs, rollup_1h_secs) \
         VALUES ($1, $2, $3) ON CONFLICT (one) DO UPDATE SET raw_secs = EXCLUDED.raw_secs, \
         rollup_1m_secs = EXCLUDED.rollup_1m_secs, rollup_1h_secs = EXCLUDED.rollup_1h_secs, \
         updated_at = now()",
    )
    .bind(retention.raw_secs as i64)
    .bind(retention.rollup_1m_secs as i64)
    .bind(retention.rollup_1h_secs as i64)
    .execute(&mut *tx)
    .await
    .map_err(SinkError::db("recording the retention ages"))?;
    tx.commit()
        .await
        .map_err(SinkError::db("recording the remote-write destinations"))
}

/// The destination's cursor for the agent named `agent`, `None` before its first
/// acknowledged block.
pub async fn cursor(
    pool: &PgPool,
    destination: &str,
    agent: &str,
) -> Result<Option<RemoteCursor>, SinkError> {
    let row: Option<(String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT c.agent_uid::text, c.last_sequence, c.last_ts_ms \
         FROM remote_write_cursors c JOIN agents a ON a.id = c.agent_id \
         WHERE c.destination = $1 AND a.name = $2",
    )
    .bind(destination)
    .bind(agent)
    .fetch_optional(pool)
    .await
    .map_err(SinkError::db("reading a remote-write cursor"))?;
    let Some((uid, last_sequence, last_ts_ms)) = row else {
        return Ok(None);
    };
    let agent_uid = parse_uuid(&uid).ok_or_else(|| {
        SinkError::bad(
            agent,
            format!("remote_write_cursors holds a malformed agent_uid {uid:?}"),
        )
    })?;
    Ok(Some(RemoteCursor {
        agent_uid,
        last_sequence: last_sequence.map(|s| s as u64),
        last_ts_ms,
    }))
}

/// What one acknowledged batch moves: the cursor, the samples counted, the gap and
/// the refused requests recorded, in one transaction.
#[derive(Debug)]
pub struct Advance<'a> {
    pub destination: &'a str,
    pub agent: &'a str,
    pub agent_uid: AgentId,
    pub cursor: Cursor,
    pub sent: u64,
    pub rejected: &'a [Rejection],
    pub gap: Option<Gap>,
    /// The writer's lease on the agent (a replica of a cluster): the cursor moves
    /// only while it holds; `None` for a writer outside any cluster (`pga-bench`).
    pub fence: Option<&'a Fence>,
}

/// The cursor's advance: samples are added to the counts.
const ADVANCE: &str = "\
INSERT INTO remote_write_cursors
    (destination, agent_id, agent_uid, last_sequence, last_ts_ms, samples_sent, samples_rejected)
VALUES ($1, $2, $3::uuid, $4, $5, $6, $7)
ON CONFLICT (destination, agent_id) DO UPDATE SET
    agent_uid = EXCLUDED.agent_uid, last_sequence = EXCLUDED.last_sequence,
    last_ts_ms = EXCLUDED.last_ts_ms,
    samples_sent = remote_write_cursors.samples_sent + EXCLUDED.samples_sent,
    samples_rejected = remote_write_cursors.samples_rejected + EXCLUDED.samples_rejected
RETURNING 1";

/// The same by a fenced writer: no row unless the agent's lease names replica `$9`
/// with epoch `$10` and that replica's lease is valid now, checked in this statement
/// exactly as the database ingest's cursor (DESIGN.md invariant 7).
const ADVANCE_FENCED: &str = concat!(
    "WITH fence AS (",
    fenced_lease_sql!("$8", "$9", "$10"),
    ")
INSERT INTO remote_write_cursors
    (destination, agent_id, agent_uid, last_sequence, last_ts_ms, samples_sent, samples_rejected)
SELECT $1, $2::bigint, $3::uuid, $4::bigint, $5::bigint, $6::bigint, $7::bigint FROM fence
ON CONFLICT (destination, agent_id) DO UPDATE SET
    agent_uid = EXCLUDED.agent_uid, last_sequence = EXCLUDED.last_sequence,
    last_ts_ms = EXCLUDED.last_ts_ms,
    samples_sent = remote_write_cursors.samples_sent + EXCLUDED.samples_sent,
    samples_rejected = remote_write_cursors.samples_rejected + EXCLUDED.samples_rejected
RETURNING 1"
);

/// Commits `a`. The agent must be in the `agents` table (every pulled agent is).
/// A fenced writer that no longer holds the agent's lease commits nothing
/// ([`SinkError::Fenced`]): not the cursor, nor the gap or the refused requests.
pub async fn advance(pool: &PgPool, a: &Advance<'_>) -> Result<(), SinkError> {
    let what = "advancing a remote-write cursor";
    let mut tx = pool.begin().await.map_err(SinkError::db(what))?;
    let agent_id: Option<(i64,)> = sqlx::query_as("SELECT id FROM agents WHERE name = $1")
        .bind(a.agent)
        .fetch_optional(&mut *tx)
        .await
        .map_err(SinkError::db(what))?;
    let Some((agent_id,)) = agent_id else {
        return Err(SinkError::bad(a.agent, "not in the agents table"));
    };
    let uid = uuid_text(&a.agent_uid);
    let rejected: u64 = a.rejected.iter().map(|r| r.samples).sum();
    let cursor = sqlx::query_as::<_, (i32,)>(if a.fence.is_some() {
        ADVANCE_FENCED
    } else {
        ADVANCE
    })
    .bind(a.destination)
    .bind(agent_id)
    .bind(&uid)
    .bind(a.cursor.last_sequence.map(|s| s as i64))
    .bind(a.cursor.last_ts_ms)
    .bind(a.sent as i64)
    .bind(rejected as i64);
    let cursor = match a.fence {
        Some(f) => cursor.bind(a.agent).bind(&f.replica).bind(f.epoch),
        None => cursor,
    };
    if cursor
        .fetch_optional(&mut *tx)
        .await
        .map_err(SinkError::db(what))?
        .is_none()
    {
        // Dropping the transaction writes nothing.
        return Err(SinkError::Fenced {
            agent: a.agent.to_owned(),
            epoch: a.fence.map_or(0, |f| f.epoch),
        });
    }
    if let Some(g) = a.gap {
        sqlx::query(
            "INSERT INTO remote_write_gaps \
               (destination, agent_id, agent_uid, first_sequence, last_sequence, after_ts, before_ts) \
             VALUES ($1, $2, $3::uuid, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(a.destination)
        .bind(agent_id)
        .bind(&uid)
        .bind(g.first_sequence as i64)
        .bind(g.last_sequence as i64)
        .bind(g.after_ts_ms.and_then(ts))
        .bind(g.before_ts_ms.and_then(ts))
        .execute(&mut *tx)
        .await
        .map_err(SinkError::db(what))?;
    }
    for r in a.rejected {
        sqlx::query(
            "INSERT INTO remote_write_rejections \
               (destination, agent_id, agent_uid, block_sequence, samples, min_ts, max_ts, status, detail) \
             VALUES ($1, $2, $3::uuid, $4, $5, $6, $7, $8, $9)",
        )
        .bind(a.destination)
        .bind(agent_id)
        .bind(&uid)
        .bind(r.block_sequence as i64)
        .bind(r.samples as i64)
        .bind(ts(r.min_ts_ms))
        .bind(ts(r.max_ts_ms))
        .bind(i32::from(r.status))
        .bind(crate::db::sink::pg_text(&r.detail).as_ref())
        .execute(&mut *tx)
        .await
        .map_err(SinkError::db(what))?;
    }
    tx.commit().await.map_err(SinkError::db(what))
}
