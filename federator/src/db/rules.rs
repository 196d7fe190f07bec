//! Alert rules in the `alert_rules` table: the repository the API's rule routes wrap
//! (list, get, create, update, delete, enable/disable; mutations take the caller's
//! transaction so the audit entry commits with them), the loading of rule files
//! and what the evaluator reads.
//!
//! Every write checks the rule first ([`Rule::compile`]): a rule with a problem is
//! refused with all of them ([`RuleError::Invalid`]) and never stored.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, Row};

use crate::alerting::rule::{OverrideSpec, Rule, RuleProblem, RuleSpec};
use crate::alerting::rulefile::RuleFile;

/// A rule as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredRule {
    pub id: i64,
    pub spec: RuleSpec,
    /// `api`, or `file:<path>` for rules from a rule file.
    pub origin: String,
    /// Grows by one at every change.
    pub revision: i32,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Why a rule operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The rule has problems; nothing was stored.
    #[error("the rule is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<RuleProblem>),
    /// No rule with that id.
    #[error("no rule {0}")]
    NotFound(i64),
    /// Another rule has that name.
    #[error("a rule named {0:?} exists already")]
    NameTaken(String),
    /// The rule comes from a rule file: change the file (a reload would undo the
    /// change), or disable it.
    #[error("rule {name:?} comes from {origin}: change the file, or disable the rule")]
    FromFile { name: String, origin: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

const COLUMNS: &str = "id, name, description, query, comparison, threshold, resolve_threshold, \
    for_secs, keep_firing_for_secs, severity, labels, annotations, overrides, pack, runbook, \
    inhibits_agent, enabled, origin, revision, \
    (extract(epoch FROM created_at) * 1000)::bigint AS created_ms, \
    (extract(epoch FROM updated_at) * 1000)::bigint AS updated_ms";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<StoredRule, sqlx::Error> {
    let json_map = |v: serde_json::Value| -> BTreeMap<String, String> {
        serde_json::from_value(v).unwrap_or_default()
    };
    let overrides: Vec<OverrideSpec> =
        serde_json::from_value(row.try_get("overrides")?).unwrap_or_default();
    Ok(StoredRule {
        id: row.try_get("id")?,
        spec: RuleSpec {
            name: row.try_get("name")?,
            query: row.try_get("query")?,
            comparison: row.try_get("comparison")?,
            threshold: row.try_get("threshold")?,
            resolve_threshold: row.try_get("resolve_threshold")?,
            for_secs: row.try_get::<i32, _>("for_secs")? as u64,
            keep_firing_for_secs: row.try_get::<i32, _>("keep_firing_for_secs")? as u64,
            severity: row.try_get("severity")?,
            labels: json_map(row.try_get("labels")?),
            annotations: json_map(row.try_get("annotations")?),
            overrides,
            pack: row.try_get("pack")?,
            runbook: row.try_get("runbook")?,
            description: row.try_get("description")?,
            inhibits_agent: row.try_get("inhibits_agent")?,
            enabled: row.try_get("enabled")?,
        },
        origin: row.try_get("origin")?,
        revision: row.try_get("revision")?,
        created_at_ms: row.try_get("created_ms")?,
        updated_at_ms: row.try_get("updated_ms")?,
    })
}

/// Every rule, by name.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<StoredRule>, sqlx::Error> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM alert_rules ORDER BY name"))
        .fetch_all(db)
        .await?;
    rows.iter().map(from_row).collect()
}

/// One rule.
pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<Option<StoredRule>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM alert_rules WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// One rule by name.
pub async fn get_by_name(
    db: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<StoredRule>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alert_rules WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(from_row).transpose()
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Binds a spec's fields as `$1` … `$16` in the order of the columns of
/// [`create`] and [`write`].
fn bind_spec<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    spec: &'q RuleSpec,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    q.bind(&spec.name)
        .bind(&spec.description)
        .bind(&spec.query)
        .bind(&spec.comparison)
        .bind(spec.threshold)
        .bind(spec.resolve_threshold)
        .bind(spec.for_secs as i32)
        .bind(spec.keep_firing_for_secs as i32)
        .bind(&spec.severity)
        .bind(json(&spec.labels))
        .bind(json(&spec.annotations))
        .bind(json(&spec.overrides))
        .bind(&spec.pack)
        .bind(&spec.runbook)
        .bind(spec.inhibits_agent)
        .bind(spec.enabled)
}

/// Checks a spec as the repository does before storing it.
pub fn check(spec: &RuleSpec) -> Result<Rule, RuleError> {
    Rule::compile(spec.clone()).map_err(RuleError::Invalid)
}

/// Stores a new rule (origin `api`, or `file:<path>`).
pub async fn create(
    tx: &mut PgConnection,
    spec: &RuleSpec,
    origin: &str,
    created_by: Option<i64>,
) -> Result<StoredRule, RuleError> {
    check(spec)?;
    // Checked first so that the caller's transaction stays usable (the unique
    // constraint still decides a race).
    if get_by_name(&mut *tx, &spec.name).await?.is_some() {
        return Err(RuleError::NameTaken(spec.name.clone()));
    }
    let sql = format!(
        "INSERT INTO alert_rules (name, description, query, comparison, threshold, \
             resolve_threshold, for_secs, keep_firing_for_secs, severity, labels, annotations, \
             overrides, pack, runbook, inhibits_agent, enabled, origin, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
         RETURNING {COLUMNS}"
    );
    let row = bind_spec(sqlx::query(&sql), spec)
        .bind(origin)
        .bind(created_by)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| name_taken(e, &spec.name))?;
    Ok(from_row(&row)?)
}

fn name_taken(e: sqlx::Error, name: &str) -> RuleError {
    match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
            RuleError::NameTaken(name.to_owned())
        }
        _ => RuleError::Database(e),
    }
}

/// Replaces a rule's definition (its `enabled` included); the revision grows.
/// Rules from files are changed through their file ([`RuleError::FromFile`]).
pub async fn update(
    tx: &mut PgConnection,
    id: i64,
    spec: &RuleSpec,
) -> Result<StoredRule, RuleError> {
    check(spec)?;
    let current = get(&mut *tx, id).await?.ok_or(RuleError::NotFound(id))?;
    if current.origin != "api" {
        return Err(RuleError::FromFile {
            name: current.spec.name,
            origin: current.origin,
        });
    }
    write(tx, id, spec).await
}

async fn write(tx: &mut PgConnection, id: i64, spec: &RuleSpec) -> Result<StoredRule, RuleError> {
    if get_by_name(&mut *tx, &spec.name)
        .await?
        .is_some_and(|r| r.id != id)
    {
        return Err(RuleError::NameTaken(spec.name.clone()));
    }
    let sql = format!(
        "UPDATE alert_rules SET name = $1, description = $2, query = $3, comparison = $4, \
             threshold = $5, resolve_threshold = $6, for_secs = $7, keep_firing_for_secs = $8, \
             severity = $9, labels = $10, annotations = $11, overrides = $12, pack = $13, \
             runbook = $14, inhibits_agent = $15, enabled = $16, revision = revision + 1 \
         WHERE id = $17 RETURNING {COLUMNS}"
    );
    let row = bind_spec(sqlx::query(&sql), spec)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| name_taken(e, &spec.name))?;
    row.as_ref()
        .map(from_row)
        .transpose()?
        .ok_or(RuleError::NotFound(id))
}

/// Enables or disables a rule (any origin: a file's rule keeps this across
/// reloads). Disabling closes nothing by itself: the rule's open alerts resolve at
/// the next evaluation cycle.
pub async fn set_enabled(
    tx: &mut PgConnection,
    id: i64,
    enabled: bool,
) -> Result<StoredRule, RuleError> {
    let row = sqlx::query(&format!(
        "UPDATE alert_rules SET enabled = $2, revision = revision + 1 WHERE id = $1 \
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(enabled)
    .fetch_optional(&mut *tx)
    .await?;
    row.as_ref()
        .map(from_row)
        .transpose()?
        .ok_or(RuleError::NotFound(id))
}

/// Deletes an API rule and its alerts (history included). Rules from files are
/// removed from their file.
pub async fn delete(tx: &mut PgConnection, id: i64) -> Result<StoredRule, RuleError> {
    let current = get(&mut *tx, id).await?.ok_or(RuleError::NotFound(id))?;
    if current.origin != "api" {
        return Err(RuleError::FromFile {
            name: current.spec.name,
            origin: current.origin,
        });
    }
    sqlx::query("DELETE FROM alert_rules WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(current)
}

/// What [`sync_files`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: usize,
    /// File rules no longer in any loaded file, deleted.
    pub removed: Vec<String>,
    /// API rules replaced by a file's rule of the same name.
    pub replaced: Vec<String>,
}

/// Makes the stored file rules equal to `files`: adds new ones, updates changed
/// ones (keeping whether they are enabled, which the API may have changed),
/// deletes file rules no longer in any file, and replaces an API rule that has the
/// name of a file's rule. One transaction.
pub async fn sync_files(
    tx: &mut PgConnection,
    files: &[RuleFile],
) -> Result<SyncReport, RuleError> {
    let mut report = SyncReport::default();
    let existing: HashMap<String, StoredRule> = list(&mut *tx)
        .await?
        .into_iter()
        .map(|r| (r.spec.name.clone(), r))
        .collect();
    let mut wanted = std::collections::HashSet::new();
    for f in files {
        let origin = format!("file:{}", f.path.display());
        for rule in &f.rules {
            let name = rule.name().to_owned();
            wanted.insert(name.clone());
            match existing.get(&name) {
                None => {
                    create(tx, &rule.spec, &origin, None).await?;
                    report.added.push(name);
                }
                Some(cur) => {
                    let mut spec = rule.spec.clone();
                    if cur.origin.starts_with("file:") {
                        spec.enabled = cur.spec.enabled;
                    } else {
                        report.replaced.push(name.clone());
                    }
                    if cur.spec == spec && cur.origin == origin {
                        report.unchanged += 1;
                        continue;
                    }
                    write(tx, cur.id, &spec).await?;
                    sqlx::query("UPDATE alert_rules SET origin = $2 WHERE id = $1")
                        .bind(cur.id)
                        .bind(&origin)
                        .execute(&mut *tx)
                        .await?;
                    if !report.replaced.contains(&name) {
                        report.updated.push(name);
                    }
                }
            }
        }
    }
    for (name, cur) in &existing {
        if cur.origin.starts_with("file:") && !wanted.contains(name) {
            sqlx::query("DELETE FROM alert_rules WHERE id = $1")
                .bind(cur.id)
                .execute(&mut *tx)
                .await?;
            report.removed.push(name.clone());
        }
    }
    report.removed.sort();
    Ok(report)
}

/// The enabled rules as the evaluator needs them: `(id, revision, rule)`. A stored
/// rule that no longer passes the checks (written by an older version) is returned
/// in the second list with its problems, and not evaluated.
pub async fn load_enabled(
    db: impl PgExecutor<'_>,
) -> Result<(Vec<(i64, i32, Rule)>, Vec<(String, Vec<RuleProblem>)>), sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alert_rules WHERE enabled ORDER BY id"
    ))
    .fetch_all(db)
    .await?;
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for row in &rows {
        let r = from_row(row)?;
        match Rule::compile(r.spec.clone()) {
            Ok(rule) => ok.push((r.id, r.revision, rule)),
            Err(p) => bad.push((r.spec.name, p)),
        }
    }
    Ok((ok, bad))
}
