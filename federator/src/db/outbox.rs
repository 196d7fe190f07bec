//! The notification outbox (`alert_outbox`) and each receiver's delivery cursor
//! (`alert_receivers`) and record (`alert_deliveries`).
//!
//! The evaluator appends notifications in the transaction of the state change that
//! causes them; each receiver's worker delivers the rows after its cursor in id
//! order (so in order per alert) and moves the cursor in the transaction that
//! records the delivery: a notification is delivered at least once, whatever is
//! restarted or unreachable in between.

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, Row};

/// A notification to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub alert_id: i64,
    /// `firing` or `resolved`.
    pub status: &'static str,
    /// The alert as Alertmanager's API v2 takes it (see [`crate::notify::payload`]).
    pub payload: serde_json::Value,
    pub late: bool,
    /// The maintenance window that mutes it: recorded, never delivered.
    pub muted_by: Option<i64>,
}

/// A notification as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub alert_id: Option<i64>,
    pub status: String,
    pub payload: serde_json::Value,
    pub late: bool,
    pub muted_by: Option<i64>,
    pub created_at_ms: i64,
}

/// A receiver's delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiverRow {
    pub name: String,
    pub kind: String,
    pub delivered_through: i64,
    /// Failed attempts in a row at the head of its queue.
    pub failures: i32,
    pub last_error: Option<String>,
    pub last_attempt_at_ms: Option<i64>,
    pub last_success_at_ms: Option<i64>,
    /// Notifications waiting for it.
    pub queued: i64,
}

/// What happened to one notification at one receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub outbox_id: i64,
    pub receiver: String,
    /// `delivered`, `rejected` (the receiver refused it for good: a 4xx answer) or
    /// `muted`.
    pub outcome: String,
    pub attempts: i32,
    pub detail: Option<String>,
    pub at_ms: i64,
}

/// Appends notifications; their ids, in order.
pub async fn enqueue(
    tx: &mut PgConnection,
    rows: &[NewNotification],
) -> Result<Vec<i64>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<(i64,)> = sqlx::query_as(
        "INSERT INTO alert_outbox (alert_id, status, payload, late, muted_by) \
         SELECT u.alert_id, u.status, u.payload::jsonb, u.late, u.muted \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::boolean[], $5::bigint[]) \
              WITH ORDINALITY AS u(alert_id, status, payload, late, muted, n) \
         ORDER BY u.n RETURNING id",
    )
    .bind(rows.iter().map(|r| r.alert_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.payload.to_string())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.late).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.muted_by).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    Ok(ids.into_iter().map(|(i,)| i).collect())
}

/// Registers the configured receivers: a receiver seen for the first time starts
/// after the newest notification (it is not flooded with history).
pub async fn ensure_receivers(
    db: impl PgExecutor<'_>,
    receivers: &[(String, &'static str)],
) -> Result<(), sqlx::Error> {
    if receivers.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO alert_receivers (name, kind, delivered_through) \
         SELECT u.name, u.kind, coalesce((SELECT max(id) FROM alert_outbox), 0) \
         FROM unnest($1::text[], $2::text[]) AS u(name, kind) \
         ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind",
    )
    .bind(receivers.iter().map(|r| r.0.as_str()).collect::<Vec<_>>())
    .bind(receivers.iter().map(|r| r.1).collect::<Vec<_>>())
    .execute(db)
    .await
    .map(drop)
}

/// Every receiver's state.
pub async fn receivers(db: impl PgExecutor<'_>) -> Result<Vec<ReceiverRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT r.name, r.kind, r.delivered_through, r.failures, r.last_error, \
                (extract(epoch FROM r.last_attempt_at) * 1000)::bigint AS attempt_ms, \
                (extract(epoch FROM r.last_success_at) * 1000)::bigint AS success_ms, \
                (SELECT count(*) FROM alert_outbox o WHERE o.id > r.delivered_through) AS queued \
         FROM alert_receivers r ORDER BY r.name",
    )
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ReceiverRow {
                name: r.try_get("name")?,
                kind: r.try_get("kind")?,
                delivered_through: r.try_get("delivered_through")?,
                failures: r.try_get("failures")?,
                last_error: r.try_get("last_error")?,
                last_attempt_at_ms: r.try_get("attempt_ms")?,
                last_success_at_ms: r.try_get("success_ms")?,
                queued: r.try_get("queued")?,
            })
        })
        .collect()
}

/// The receiver's cursor and failures in a row.
pub async fn cursor(db: impl PgExecutor<'_>, receiver: &str) -> Result<(i64, i32), sqlx::Error> {
    sqlx::query_as("SELECT delivered_through, failures FROM alert_receivers WHERE name = $1")
        .bind(receiver)
        .fetch_optional(db)
        .await
        .map(|r| r.unwrap_or((0, 0)))
}

/// The notifications after `after`, oldest first, at most `limit`.
pub async fn after(
    db: impl PgExecutor<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, alert_id, status, payload, late, muted_by, \
                (extract(epoch FROM created_at) * 1000)::bigint AS created_ms \
         FROM alert_outbox WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OutboxRow {
                id: r.try_get("id")?,
                alert_id: r.try_get("alert_id")?,
                status: r.try_get("status")?,
                payload: r.try_get("payload")?,
                late: r.try_get("late")?,
                muted_by: r.try_get("muted_by")?,
                created_at_ms: r.try_get("created_ms")?,
            })
        })
        .collect()
}

/// Records what became of notifications at `receiver` and moves its cursor to
/// `through`, in one transaction.
pub async fn advance(
    tx: &mut PgConnection,
    receiver: &str,
    through: i64,
    done: &[(i64, &'static str, i32, Option<String>)],
) -> Result<(), sqlx::Error> {
    if !done.is_empty() {
        sqlx::query(
            "INSERT INTO alert_deliveries (outbox_id, receiver, outcome, attempts, detail) \
             SELECT u.id, $1, u.outcome, u.attempts, u.detail \
             FROM unnest($2::bigint[], $3::text[], $4::int[], $5::text[]) \
                  AS u(id, outcome, attempts, detail) \
             ON CONFLICT (outbox_id, receiver) DO UPDATE \
                 SET outcome = EXCLUDED.outcome, attempts = EXCLUDED.attempts, \
                     detail = EXCLUDED.detail, at = now()",
        )
        .bind(receiver)
        .bind(done.iter().map(|d| d.0).collect::<Vec<_>>())
        .bind(done.iter().map(|d| d.1).collect::<Vec<_>>())
        .bind(done.iter().map(|d| d.2).collect::<Vec<_>>())
        .bind(done.iter().map(|d| d.3.clone()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE alert_receivers SET delivered_through = greatest(delivered_through, $2), \
             failures = 0, last_error = NULL, last_attempt_at = now(), last_success_at = now() \
         WHERE name = $1",
    )
    .bind(receiver)
    .bind(through)
    .execute(&mut *tx)
    .await
    .map(drop)
}

/// Records a failed attempt at the head of the receiver's queue.
pub async fn failed(
    db: impl PgExecutor<'_>,
    receiver: &str,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE alert_receivers SET failures = failures + 1, last_error = $2, \
             last_attempt_at = now() WHERE name = $1",
    )
    .bind(receiver)
    .bind(error)
    .execute(db)
    .await
    .map(drop)
}

/// What each receiver did with the notifications of one alert, oldest first.
pub async fn deliveries_of(
    db: impl PgExecutor<'_>,
    alert_id: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT d.outbox_id, d.receiver, d.outcome, d.attempts, d.detail, \
                (extract(epoch FROM d.at) * 1000)::bigint AS at_ms \
         FROM alert_deliveries d JOIN alert_outbox o ON o.id = d.outbox_id \
         WHERE o.alert_id = $1 ORDER BY d.outbox_id, d.receiver",
    )
    .bind(alert_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Delivery {
                outbox_id: r.try_get("outbox_id")?,
                receiver: r.try_get("receiver")?,
                outcome: r.try_get("outcome")?,
                attempts: r.try_get("attempts")?,
                detail: r.try_get("detail")?,
                at_ms: r.try_get("at_ms")?,
            })
        })
        .collect()
}

/// Deletes notifications older than `keep_ms` that every receiver has passed.
pub async fn purge(db: impl PgExecutor<'_>, keep_ms: i64) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "DELETE FROM alert_outbox \
         WHERE created_at < now() - $1 * interval '1 millisecond' \
           AND id <= coalesce((SELECT min(delivered_through) FROM alert_receivers), \
                              (SELECT max(id) FROM alert_outbox))",
    )
    .bind(keep_ms)
    .execute(db)
    .await
    .map(|r| r.rows_affected())
}
