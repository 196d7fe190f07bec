//! Alerts in the `alerts` table: what the API's alert routes list (current alerts,
//! history with late alerts, one alert with its notifications), and the
//! evaluator's state: loaded at the start of a cycle, written at its end in the
//! transaction that also fills the outbox.
//!
//! Times are milliseconds since the Unix epoch; all but `last_sent_at_ms` are data
//! times (the agent's watermark at the evaluation that saw the change).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, Row};

use crate::alerting::engine::{Book, Tracked};
use crate::alerting::labels::{Interner, Str};
use crate::alerting::state::{AlertState, Phase, Resolution};

/// An alert as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertRow {
    pub id: i64,
    pub rule_id: i64,
    pub rule: String,
    pub severity: String,
    pub agent: Option<String>,
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub value: Option<f64>,
    pub fingerprint: String,
    /// When the condition first held.
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    /// `cleared` or `no data`.
    pub resolved_reason: Option<String>,
    pub evaluated_at_ms: Option<i64>,
    /// Wall-clock time it was last sent to the Alertmanagers.
    pub last_sent_at_ms: Option<i64>,
    /// Its agent is unreachable: the alert is held, neither resolved nor fired anew.
    pub held: bool,
    /// Found after a backfill: its times are the data's.
    pub late: bool,
    /// The maintenance window muting it.
    pub muted_by: Option<i64>,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// `pending`, `firing` or `resolved`.
    pub state: Option<String>,
    /// Rule name.
    pub rule: Option<String>,
    pub agent: Option<String>,
    pub late: Option<bool>,
    /// History: alerts that fired (or were active) at or after this time.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// At most this many (newest first); default 500.
    pub limit: Option<i64>,
}

const SELECT: &str = "\
SELECT a.id, a.rule_id, r.name AS rule, r.severity, ag.name AS agent, a.state, a.labels,
       a.annotations, a.value, a.fingerprint,
       (extract(epoch FROM a.started_at) * 1000)::bigint AS active_ms,
       (extract(epoch FROM a.fired_at) * 1000)::bigint AS fired_ms,
       (extract(epoch FROM a.resolved_at) * 1000)::bigint AS resolved_ms,
       a.resolved_reason,
       (extract(epoch FROM a.evaluated_at) * 1000)::bigint AS evaluated_ms,
       (extract(epoch FROM a.last_sent_at) * 1000)::bigint AS sent_ms,
       a.held, a.late, a.muted_by
FROM alerts a
JOIN alert_rules r ON r.id = a.rule_id
LEFT JOIN agents ag ON ag.id = a.agent_id";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<AlertRow, sqlx::Error> {
    let map = |v: serde_json::Value| -> BTreeMap<String, String> {
        serde_json::from_value(v).unwrap_or_default()
    };
    Ok(AlertRow {
        id: row.try_get("id")?,
        rule_id: row.try_get("rule_id")?,
        rule: row.try_get("rule")?,
        severity: row.try_get("severity")?,
        agent: row.try_get("agent")?,
        state: row.try_get("state")?,
        labels: map(row.try_get("labels")?),
        annotations: map(row.try_get("annotations")?),
        value: row.try_get("value")?,
        fingerprint: row.try_get("fingerprint")?,
        active_at_ms: row.try_get("active_ms")?,
        fired_at_ms: row.try_get("fired_ms")?,
        resolved_at_ms: row.try_get("resolved_ms")?,
        resolved_reason: row.try_get("resolved_reason")?,
        evaluated_at_ms: row.try_get("evaluated_ms")?,
        last_sent_at_ms: row.try_get("sent_ms")?,
        held: row.try_get("held")?,
        late: row.try_get("late")?,
        muted_by: row.try_get("muted_by")?,
    })
}

fn filtered(base_where: &str, f: &AlertFilter, order: &str) -> String {
    format!(
        "{SELECT} WHERE {base_where} \
           AND ($1::text IS NULL OR a.state = $1) \
           AND ($2::text IS NULL OR r.name = $2) \
           AND ($3::text IS NULL OR ag.name = $3) \
           AND ($4::boolean IS NULL OR a.late = $4) \
           AND ($5::bigint IS NULL OR coalesce(a.resolved_at, 'infinity') >= \
                timestamptz 'epoch' + $5 * interval '1 millisecond') \
           AND ($6::bigint IS NULL OR coalesce(a.fired_at, a.started_at) <= \
                timestamptz 'epoch' + $6 * interval '1 millisecond') \
         ORDER BY {order} LIMIT {}",
        f.limit.unwrap_or(500).clamp(1, 100_000)
    )
}

async fn query(
    db: impl PgExecutor<'_>,
    sql: &str,
    f: &AlertFilter,
) -> Result<Vec<AlertRow>, sqlx::Error> {
    let rows = sqlx::query(sql)
        .bind(&f.state)
        .bind(&f.rule)
        .bind(&f.agent)
        .bind(f.late)
        .bind(f.since_ms)
        .bind(f.until_ms)
        .fetch_all(db)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Alerts pending or firing now, most severe and oldest first.
pub async fn list_current(
    db: impl PgExecutor<'_>,
    f: &AlertFilter,
) -> Result<Vec<AlertRow>, sqlx::Error> {
    let sql = filtered(
        "a.state <> 'resolved'",
        f,
        "CASE r.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, a.started_at, a.id",
    );
    query(db, &sql, f).await
}

/// Alerts that fired (late ones included), newest first, overlapping
/// `since_ms..until_ms`.
pub async fn history(
    db: impl PgExecutor<'_>,
    f: &AlertFilter,
) -> Result<Vec<AlertRow>, sqlx::Error> {
    let sql = filtered("a.fired_at IS NOT NULL", f, "a.fired_at DESC, a.id DESC");
    query(db, &sql, f).await
}

/// One alert.
pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<Option<AlertRow>, sqlx::Error> {
    let row = sqlx::query(&format!("{SELECT} WHERE a.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(from_row).transpose()
}

// ---------------------------------------------------------------------------------
// The evaluator's state.

/// Loads the open alerts of the agents in `agents` into a book, and the resolved
/// ones whose resolution is still to be notified (it resolved while a maintenance
/// window muted it).
pub async fn load_open(
    conn: &mut PgConnection,
    agents: &HashMap<i64, Str>,
    interner: &mut Interner,
) -> Result<(Book, Vec<Tracked>), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, rule_id, agent_id, fingerprint, labels, annotations, state, value, \
                (extract(epoch FROM started_at) * 1000)::bigint AS active_ms, \
                (extract(epoch FROM fired_at) * 1000)::bigint AS fired_ms, \
                (extract(epoch FROM resolved_at) * 1000)::bigint AS resolved_ms, \
                (extract(epoch FROM last_true_at) * 1000)::bigint AS true_ms, \
                (extract(epoch FROM last_seen_at) * 1000)::bigint AS seen_ms, \
                (extract(epoch FROM evaluated_at) * 1000)::bigint AS evaluated_ms, \
                resolved_reason, notified_state, held, late, muted_by \
         FROM alerts \
         WHERE state <> 'resolved' OR notified_state = 'firing'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut book = Book::default();
    let mut unsettled = Vec::new();
    for row in &rows {
        let agent_id: Option<i64> = row.try_get("agent_id")?;
        let Some(agent) = agent_id.and_then(|id| agents.get(&id)).cloned() else {
            // An agent no longer evaluated: its alerts stay as they are.
            continue;
        };
        let phase = Phase::parse(row.try_get::<&str, _>("state")?).unwrap_or(Phase::Pending);
        let active: i64 = row.try_get("active_ms")?;
        let value: Option<f64> = row.try_get("value")?;
        let annotations: BTreeMap<String, String> =
            serde_json::from_value(row.try_get("annotations")?).unwrap_or_default();
        let reason: Option<String> = row.try_get("resolved_reason")?;
        let t = Tracked {
            id: Some(row.try_get("id")?),
            rule_id: row.try_get("rule_id")?,
            agent,
            fingerprint: row.try_get("fingerprint")?,
            labels: Arc::new(interner.labels_from_json(&row.try_get("labels")?, &[])),
            annotations,
            state: AlertState {
                phase,
                active_at: active,
                fired_at: row.try_get("fired_ms")?,
                resolved_at: row.try_get("resolved_ms")?,
                resolution: reason.as_deref().map(|r| {
                    if r == Resolution::NoData.as_str() {
                        Resolution::NoData
                    } else {
                        Resolution::Cleared
                    }
                }),
                last_true_at: row.try_get::<Option<i64>, _>("true_ms")?.unwrap_or(active),
                last_seen_at: row.try_get::<Option<i64>, _>("seen_ms")?.unwrap_or(active),
                value: value.unwrap_or(f64::NAN),
            },
            late: row.try_get("late")?,
            dropped: false,
            threshold: f64::NAN,
            evaluated_at: row
                .try_get::<Option<i64>, _>("evaluated_ms")?
                .unwrap_or(active),
            notified: row
                .try_get::<Option<&str>, _>("notified_state")?
                .and_then(Phase::parse),
            held: row.try_get("held")?,
            muted_by: row.try_get("muted_by")?,
            loaded_phase: Some(phase),
            dirty: false,
        };
        if phase == Phase::Resolved {
            unsettled.push(t);
        } else {
            book.insert(t);
        }
    }
    Ok((book, unsettled))
}

/// Writes every changed alert: updates (resolutions first, so that a new alert with
/// the same labels may open), deletes of pending alerts that were dropped, and
/// inserts of new alerts, whose ids are set in `alerts`.
pub async fn save(
    tx: &mut PgConnection,
    alerts: &mut [&mut Tracked],
    agent_ids: &HashMap<Str, i64>,
) -> Result<(), sqlx::Error> {
    // Updates.
    let upd: Vec<&Tracked> = alerts
        .iter()
        .filter(|a| a.id.is_some() && a.dirty && !a.dropped)
        .map(|a| &**a)
        .collect();
    if !upd.is_empty() {
        let col = |f: fn(&Tracked) -> Option<i64>| upd.iter().map(|a| f(a)).collect::<Vec<_>>();
        sqlx::query(
            "UPDATE alerts a SET state = u.state, value = u.value, annotations = u.ann::jsonb, \
                 fired_at = timestamptz 'epoch' + u.fired * interval '1 millisecond', \
                 resolved_at = timestamptz 'epoch' + u.resolved * interval '1 millisecond', \
                 last_true_at = timestamptz 'epoch' + u.true_at * interval '1 millisecond', \
                 last_seen_at = timestamptz 'epoch' + u.seen * interval '1 millisecond', \
                 evaluated_at = timestamptz 'epoch' + u.evaluated * interval '1 millisecond', \
                 late = u.late, held = u.held, muted_by = u.muted, notified_state = u.notified, \
                 resolved_reason = u.reason \
             FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::text[], $5::bigint[], \
                         $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::boolean[], \
                         $11::boolean[], $12::bigint[], $13::text[], $14::text[]) \
                  AS u(id, state, value, ann, fired, resolved, true_at, seen, evaluated, late, \
                       held, muted, notified, reason) \
             WHERE a.id = u.id",
        )
        .bind(col(|a| a.id))
        .bind(
            upd.iter()
                .map(|a| a.state.phase.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            upd.iter()
                .map(|a| finite(a.state.value))
                .collect::<Vec<_>>(),
        )
        .bind(upd.iter().map(|a| json(&a.annotations)).collect::<Vec<_>>())
        .bind(col(|a| a.state.fired_at))
        .bind(col(|a| a.state.resolved_at))
        .bind(col(|a| Some(a.state.last_true_at)))
        .bind(col(|a| Some(a.state.last_seen_at)))
        .bind(col(|a| Some(a.evaluated_at)))
        .bind(upd.iter().map(|a| a.late).collect::<Vec<_>>())
        .bind(upd.iter().map(|a| a.held).collect::<Vec<_>>())
        .bind(upd.iter().map(|a| a.muted_by).collect::<Vec<_>>())
        .bind(
            upd.iter()
                .map(|a| a.notified.map(|p| p.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            upd.iter()
                .map(|a| a.state.resolution.map(|r| r.as_str()))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
    }
    // Pending alerts that were dropped are forgotten.
    let gone: Vec<i64> = alerts
        .iter()
        .filter(|a| a.dropped)
        .filter_map(|a| a.id)
        .collect();
    if !gone.is_empty() {
        sqlx::query("DELETE FROM alerts WHERE id = ANY($1)")
            .bind(&gone)
            .execute(&mut *tx)
            .await?;
    }
    // Inserts.
    let new: Vec<usize> = alerts
        .iter()
        .enumerate()
        .filter(|(_, a)| a.id.is_none() && !a.dropped)
        .map(|(i, _)| i)
        .collect();
    if !new.is_empty() {
        let ins: Vec<&Tracked> = new.iter().map(|&i| &*alerts[i]).collect();
        let col = |f: fn(&Tracked) -> Option<i64>| ins.iter().map(|a| f(a)).collect::<Vec<_>>();
        let ids: Vec<(i64,)> = sqlx::query_as(
            "INSERT INTO alerts (rule_id, agent_id, fingerprint, labels, annotations, state, value, \
                 started_at, fired_at, resolved_at, last_true_at, last_seen_at, evaluated_at, \
                 late, held, muted_by, notified_state, resolved_reason) \
             SELECT u.rule_id, u.agent_id, u.fp, u.labels::jsonb, u.ann::jsonb, u.state, u.value, \
                 timestamptz 'epoch' + u.active * interval '1 millisecond', \
                 timestamptz 'epoch' + u.fired * interval '1 millisecond', \
                 timestamptz 'epoch' + u.resolved * interval '1 millisecond', \
                 timestamptz 'epoch' + u.true_at * interval '1 millisecond', \
                 timestamptz 'epoch' + u.seen * interval '1 millisecond', \
                 timestamptz 'epoch' + u.evaluated * interval '1 millisecond', \
                 u.late, u.held, u.muted, u.notified, u.reason \
             FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
                         $6::text[], $7::float8[], $8::bigint[], $9::bigint[], $10::bigint[], \
                         $11::bigint[], $12::bigint[], $13::bigint[], $14::boolean[], \
                         $15::boolean[], $16::bigint[], $17::text[], $18::text[]) \
                  WITH ORDINALITY AS u(rule_id, agent_id, fp, labels, ann, state, value, active, \
                       fired, resolved, true_at, seen, evaluated, late, held, muted, notified, \
                       reason, n) \
             ORDER BY u.n \
             RETURNING id",
        )
        .bind(ins.iter().map(|a| a.rule_id).collect::<Vec<_>>())
        .bind(ins.iter().map(|a| agent_ids.get(&a.agent).copied()).collect::<Vec<_>>())
        .bind(ins.iter().map(|a| a.fingerprint.as_str()).collect::<Vec<_>>())
        .bind(ins.iter().map(|a| a.labels.to_json().to_string()).collect::<Vec<_>>())
        .bind(ins.iter().map(|a| json(&a.annotations)).collect::<Vec<_>>())
        .bind(ins.iter().map(|a| a.state.phase.as_str()).collect::<Vec<_>>())
        .bind(ins.iter().map(|a| finite(a.state.value)).collect::<Vec<_>>())
        .bind(col(|a| Some(a.state.active_at)))
        .bind(col(|a| a.state.fired_at))
        .bind(col(|a| a.state.resolved_at))
        .bind(col(|a| Some(a.state.last_true_at)))
        .bind(col(|a| Some(a.state.last_seen_at)))
        .bind(col(|a| Some(a.evaluated_at)))
        .bind(ins.iter().map(|a| a.late).collect::<Vec<_>>())
        .bind(ins.iter().map(|a| a.held).collect::<Vec<_>>())
        .bind(ins.iter().map(|a| a.muted_by).collect::<Vec<_>>())
        .bind(ins.iter().map(|a| a.notified.map(|p| p.as_str())).collect::<Vec<_>>())
        .bind(
            ins.iter()
                .map(|a| a.state.resolution.map(|r| r.as_str()))
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *tx)
        .await?;
        // INSERT … SELECT … ORDER BY returns rows in insertion order.
        for (&i, (id,)) in new.iter().zip(ids) {
            alerts[i].id = Some(id);
        }
    }
    Ok(())
}

fn json(m: &BTreeMap<String, String>) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// What the Alertmanagers are re-sent: firing alerts and those resolved within
/// `resolved_for_ms` whose resolution was notified, none of them muted.
#[derive(Debug, Clone)]
pub struct Resend {
    pub id: i64,
    pub labels: serde_json::Value,
    pub annotations: serde_json::Value,
    pub fingerprint: String,
    pub fired_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
}

/// The alerts to re-send to the Alertmanagers now.
pub async fn to_resend(
    db: impl PgExecutor<'_>,
    resolved_for_ms: i64,
) -> Result<Vec<Resend>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, labels, annotations, fingerprint, \
                (extract(epoch FROM fired_at) * 1000)::bigint AS fired_ms, \
                (extract(epoch FROM resolved_at) * 1000)::bigint AS resolved_ms \
         FROM alerts \
         WHERE fired_at IS NOT NULL AND muted_by IS NULL \
           AND (state = 'firing' OR (state = 'resolved' AND notified_state = 'resolved' \
                AND resolved_at > now() - $1 * interval '1 millisecond')) \
         ORDER BY id",
    )
    .bind(resolved_for_ms)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Resend {
                id: r.try_get("id")?,
                labels: r.try_get("labels")?,
                annotations: r.try_get("annotations")?,
                fingerprint: r.try_get("fingerprint")?,
                fired_at_ms: r.try_get("fired_ms")?,
                resolved_at_ms: r.try_get("resolved_ms")?,
            })
        })
        .collect()
}

/// Records that the alerts were sent to the Alertmanagers now.
pub async fn mark_sent(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE alerts SET last_sent_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .execute(db)
        .await
        .map(drop)
}
