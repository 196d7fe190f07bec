//! Maintenance windows (`maintenance_windows`): label matchers plus a time range.
//! While a window is active, the notifications of the alerts it matches are muted:
//! recorded in the outbox with the window, never delivered; an alert still firing
//! when the window ends is notified then. The repository the API's maintenance
//! routes wrap: create, update, delete (taking the caller's transaction for the
//! audit entry), get, list; and what the evaluator reads.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor, Row};

use crate::alerting::expr::{MatchOp, Matcher, is_label_name};
use crate::alerting::labels::LabelSet;
use crate::alerting::rule::RuleProblem;

/// One matcher as written: `{"name": "agent", "op": "=", "value": "db1"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatcherSpec {
    pub name: String,
    /// `=`, `!=`, `=~` or `!~` (regular expressions anchored at both ends).
    pub op: String,
    pub value: String,
}

/// A window as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub matchers: Vec<MatcherSpec>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    #[serde(default)]
    pub comment: String,
}

/// A window as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StoredWindow {
    pub id: i64,
    pub spec: WindowSpec,
    pub created_by: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// An active window, its matchers compiled.
#[derive(Debug, Clone)]
pub struct ActiveWindow {
    pub id: i64,
    pub matchers: Vec<Matcher>,
}

impl ActiveWindow {
    /// Whether the window mutes an alert with these labels.
    pub fn mutes(&self, labels: &LabelSet) -> bool {
        self.matchers.iter().all(|m| m.matches(labels.get(&m.name)))
    }
}

/// Why a window operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WindowError {
    #[error("the maintenance window is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<RuleProblem>),
    #[error("no maintenance window {0}")]
    NotFound(i64),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Checks a window: at least one matcher, valid names and regular expressions, an
/// end after the start. Returns the compiled matchers.
pub fn check(spec: &WindowSpec) -> Result<Vec<Matcher>, WindowError> {
    let mut problems = Vec::new();
    let mut add = |field: String, message: String, fix: &str| {
        problems.push(RuleProblem {
            field,
            offset: None,
            message,
            fix: fix.into(),
        })
    };
    if spec.matchers.is_empty() {
        add(
            "matchers".into(),
            "a window without matchers would mute every alert".into(),
            "name what is under maintenance, e.g. {\"name\": \"agent\", \"op\": \"=\", \"value\": \"db7\"}",
        );
    }
    let mut out = Vec::new();
    for (i, m) in spec.matchers.iter().enumerate() {
        if !is_label_name(&m.name) {
            add(
                format!("matchers[{i}].name"),
                format!("{:?} is not a label name", m.name),
                "use an alert label: agent, pg_instance, alertname, severity, …",
            );
            continue;
        }
        let Some(op) = MatchOp::parse(&m.op) else {
            add(
                format!("matchers[{i}].op"),
                format!("{:?} is not a matcher operator", m.op),
                "write =, !=, =~ or !~",
            );
            continue;
        };
        match Matcher::new(&m.name, op, &m.value) {
            Ok(c) => out.push(c),
            Err(e) => add(
                format!("matchers[{i}].value"),
                e,
                "fix the regular expression (anchored at both ends)",
            ),
        }
    }
    if spec.ends_at_ms <= spec.starts_at_ms {
        add(
            "ends_at_ms".into(),
            "the window ends before it starts".into(),
            "set ends_at_ms after starts_at_ms",
        );
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(WindowError::Invalid(problems))
    }
}

const COLUMNS: &str = "id, matchers, comment, created_by, \
    (extract(epoch FROM starts_at) * 1000)::bigint AS starts_ms, \
    (extract(epoch FROM ends_at) * 1000)::bigint AS ends_ms, \
    (extract(epoch FROM created_at) * 1000)::bigint AS created_ms, \
    (extract(epoch FROM updated_at) * 1000)::bigint AS updated_ms";

fn from_row(r: &sqlx::postgres::PgRow) -> Result<StoredWindow, sqlx::Error> {
    Ok(StoredWindow {
        id: r.try_get("id")?,
        spec: WindowSpec {
            matchers: serde_json::from_value(r.try_get("matchers")?).unwrap_or_default(),
            starts_at_ms: r.try_get("starts_ms")?,
            ends_at_ms: r.try_get("ends_ms")?,
            comment: r.try_get("comment")?,
        },
        created_by: r.try_get("created_by")?,
        created_at_ms: r.try_get("created_ms")?,
        updated_at_ms: r.try_get("updated_ms")?,
    })
}

/// Creates a window.
pub async fn create(
    tx: &mut PgConnection,
    spec: &WindowSpec,
    created_by: Option<i64>,
) -> Result<StoredWindow, WindowError> {
    check(spec)?;
    let row = sqlx::query(&format!(
        "INSERT INTO maintenance_windows (matchers, starts_at, ends_at, comment, created_by) \
         VALUES ($1::jsonb, timestamptz 'epoch' + $2 * interval '1 millisecond', \
                 timestamptz 'epoch' + $3 * interval '1 millisecond', $4, $5) \
         RETURNING {COLUMNS}"
    ))
    .bind(serde_json::to_string(&spec.matchers).unwrap_or_else(|_| "[]".into()))
    .bind(spec.starts_at_ms)
    .bind(spec.ends_at_ms)
    .bind(&spec.comment)
    .bind(created_by)
    .fetch_one(&mut *tx)
    .await?;
    Ok(from_row(&row)?)
}

/// Replaces a window (to end one early, set `ends_at_ms` to now).
pub async fn update(
    tx: &mut PgConnection,
    id: i64,
    spec: &WindowSpec,
) -> Result<StoredWindow, WindowError> {
    check(spec)?;
    let row = sqlx::query(&format!(
        "UPDATE maintenance_windows SET matchers = $2::jsonb, \
             starts_at = timestamptz 'epoch' + $3 * interval '1 millisecond', \
             ends_at = timestamptz 'epoch' + $4 * interval '1 millisecond', comment = $5 \
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(serde_json::to_string(&spec.matchers).unwrap_or_else(|_| "[]".into()))
    .bind(spec.starts_at_ms)
    .bind(spec.ends_at_ms)
    .bind(&spec.comment)
    .fetch_optional(&mut *tx)
    .await?;
    found(row, id)
}

/// The window a statement returned, or [`WindowError::NotFound`].
fn found(row: Option<sqlx::postgres::PgRow>, id: i64) -> Result<StoredWindow, WindowError> {
    row.as_ref()
        .map(from_row)
        .transpose()?
        .ok_or(WindowError::NotFound(id))
}

/// Deletes a window (the notifications it muted stay recorded as muted).
pub async fn delete(tx: &mut PgConnection, id: i64) -> Result<StoredWindow, WindowError> {
    let row = sqlx::query(&format!(
        "DELETE FROM maintenance_windows WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    found(row, id)
}

/// One window.
pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<Option<StoredWindow>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM maintenance_windows WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Windows, soonest first: those not yet over, or every one with `include_past`.
pub async fn list(
    db: impl PgExecutor<'_>,
    include_past: bool,
) -> Result<Vec<StoredWindow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM maintenance_windows WHERE $1 OR ends_at > now() \
         ORDER BY starts_at, id"
    ))
    .bind(include_past)
    .fetch_all(db)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The windows active at `at_ms`.
pub async fn active(db: impl PgExecutor<'_>, at_ms: i64) -> Result<Vec<ActiveWindow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM maintenance_windows \
         WHERE starts_at <= timestamptz 'epoch' + $1 * interval '1 millisecond' \
           AND ends_at > timestamptz 'epoch' + $1 * interval '1 millisecond' \
         ORDER BY id"
    ))
    .bind(at_ms)
    .fetch_all(db)
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        let w = from_row(r)?;
        // Stored windows were checked when written.
        if let Ok(matchers) = check(&w.spec) {
            out.push(ActiveWindow { id: w.id, matchers });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_checked_and_match_labels() {
        let spec = WindowSpec {
            matchers: vec![
                MatcherSpec {
                    name: "agent".into(),
                    op: "=".into(),
                    value: "db7".into(),
                },
                MatcherSpec {
                    name: "alertname".into(),
                    op: "=~".into(),
                    value: "Pg.*".into(),
                },
            ],
            starts_at_ms: 0,
            ends_at_ms: 10,
            comment: String::new(),
        };
        let w = ActiveWindow {
            id: 1,
            matchers: check(&spec).unwrap(),
        };
        assert!(w.mutes(&LabelSet::from_pairs([
            ("agent", "db7"),
            ("alertname", "PgDown")
        ])));
        assert!(!w.mutes(&LabelSet::from_pairs([
            ("agent", "db8"),
            ("alertname", "PgDown")
        ])));
        let mut bad = spec.clone();
        bad.matchers.clear();
        bad.ends_at_ms = 0;
        let WindowError::Invalid(p) = check(&bad).unwrap_err() else {
            panic!()
        };
        assert_eq!(p.len(), 2);
    }
}
