//! Runs a dashboard's SQL as Grafana would: variables resolved by their own queries
//! (every value selected, as "All" does), then each annotation and panel query with
//! those values, the time range and the step of a panel of a given width, through
//! the macros of [`super::macros`], over one connection pool (the read-only role's).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::{PgPool, Row};

use super::dashboard::{Dashboard, Query, Source};
use super::macros::{self, TimeRange};
use super::template::{self, Scope, Variable};

/// How Grafana would run a dashboard.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub range: TimeRange,
    /// Panel width in pixels: Grafana's maxDataPoints, which sets the step.
    pub pixels: u32,
    /// The datasource's `timeInterval` (minimum step), in milliseconds.
    pub min_interval_ms: i64,
    /// The datasource's `timescaledb` setting.
    pub timescaledb: bool,
}

/// What one query did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub key: String,
    pub source: Source,
    /// The SQL as PostgreSQL received it.
    pub sql: String,
    pub result: Result<usize, String>,
    pub elapsed: Duration,
}

/// The scope Grafana builds for one query: variables and built-ins.
pub fn builtins(scope: &mut Scope, opts: &RunOptions) {
    let interval_ms = macros::panel_interval_ms(opts.range, opts.pixels, opts.min_interval_ms);
    let b = &mut scope.builtins;
    b.insert("__interval_ms".into(), interval_ms.to_string());
    b.insert("__interval".into(), macros::format_interval(interval_ms));
    b.insert("__from".into(), opts.range.from_ms.to_string());
    b.insert("__to".into(), opts.range.to_ms.to_string());
    b.insert(
        "__range_s".into(),
        ((opts.range.to_ms - opts.range.from_ms) / 1000).to_string(),
    );
}

/// Expands one SQL text as Grafana would with `scope`.
pub fn prepare(text: &str, scope: &Scope, opts: &RunOptions) -> Result<String, String> {
    let interval_ms = macros::panel_interval_ms(opts.range, opts.pixels, opts.min_interval_ms);
    let sql = template::interpolate(text, scope);
    macros::expand(&sql, opts.range, interval_ms, opts.timescaledb)
        .map(|e| e.sql)
        .map_err(|e| e.to_string())
}

async fn fetch(pool: &PgPool, sql: &str) -> Result<Vec<sqlx::postgres::PgRow>, String> {
    sqlx::raw_sql(sql)
        .fetch_all(pool)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) => format!(
                "{} ({})",
                d.message(),
                d.code().map(|c| c.to_string()).unwrap_or_default()
            ),
            other => other.to_string(),
        })
}

/// Resolves the dashboard's query variables in order: each one's query runs with
/// the values of those before it, and all its values are selected. Returns the
/// scope and the variable queries' outcomes.
pub async fn resolve_variables(
    pool: &PgPool,
    d: &Dashboard,
    opts: &RunOptions,
) -> (Scope, Vec<Outcome>) {
    let mut scope = Scope::default();
    builtins(&mut scope, opts);
    let mut outcomes = Vec::new();
    let defs: BTreeMap<String, &serde_json::Value> = d
        .variables()
        .into_iter()
        .filter_map(|v| v["name"].as_str().map(|n| (n.to_owned(), v)))
        .collect();
    for q in d.queries() {
        let Source::Variable(name) = &q.source else {
            continue;
        };
        let def = defs.get(name);
        let multi = def.is_some_and(|v| v["multi"] == true || v["includeAll"] == true);
        let started = Instant::now();
        let (sql, result) = match prepare(&q.text, &scope, opts) {
            Err(e) => (q.text.clone(), Err(e)),
            Ok(sql) => {
                let r = fetch(pool, &sql).await.and_then(|rows| {
                    let mut values = Vec::new();
                    for row in rows {
                        let v: Option<String> = row.try_get(0).map_err(|e| e.to_string())?;
                        if let Some(v) = v
                            && !values.contains(&v)
                        {
                            values.push(v);
                        }
                    }
                    Ok(values)
                });
                (sql, r)
            }
        };
        let elapsed = started.elapsed();
        let count = result.as_ref().map(Vec::len).map_err(Clone::clone);
        scope.vars.insert(
            name.clone(),
            Variable {
                values: result.unwrap_or_default(),
                multi,
            },
        );
        outcomes.push(Outcome {
            key: q.key(),
            source: q.source.clone(),
            sql,
            result: count,
            elapsed,
        });
    }
    (scope, outcomes)
}

/// Runs one annotation or panel query.
pub async fn run_query(pool: &PgPool, q: &Query, scope: &Scope, opts: &RunOptions) -> Outcome {
    let started = Instant::now();
    let (sql, result) = match prepare(&q.text, scope, opts) {
        Err(e) => (q.text.clone(), Err(e)),
        Ok(sql) => {
            let r = fetch(pool, &sql).await.map(|rows| rows.len());
            (sql, r)
        }
    };
    Outcome {
        key: q.key(),
        source: q.source.clone(),
        sql,
        result,
        elapsed: started.elapsed(),
    }
}

/// Runs every query of a SQL dashboard: variables, then annotations and panels.
pub async fn run_dashboard(pool: &PgPool, d: &Dashboard, opts: &RunOptions) -> Vec<Outcome> {
    let (scope, mut out) = resolve_variables(pool, d, opts).await;
    for q in d.queries() {
        if matches!(q.source, Source::Variable(_)) {
            continue;
        }
        out.push(run_query(pool, &q, &scope, opts).await);
    }
    out
}
