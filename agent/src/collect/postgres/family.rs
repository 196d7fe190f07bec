//! Running one family: choosing its query for the server's version, turning rows into
//! samples, and what a failure costs.
//!
//! A failing family costs only itself, for that pass: its error is reported with the
//! fix, and it backs off (it sits out 1, 3, 7, then 15 passes) while it keeps
//! failing, so a missing extension or privilege does not cost a query every tick. The
//! error stays the collector's reported error while the family is failing, so the
//! scheduler says it once, not every pass. A family that does not exist on the
//! server's version is skipped, said once at INFO.

use std::sync::Arc;

use tokio::time::Instant;
use tokio_postgres::{Client, Row};

use super::catalog::{Family, Reader};
use super::conn::{QueryError, query_until};
use super::statements::{self, TextCache};
use super::{PostgresError, settings, sizes};
use crate::collect::{Emitter, INSTANCE_LABEL};

/// What a family's reader needs to know about where it runs.
pub(crate) struct Ctx<'a> {
    /// The `instance` label.
    pub instance: &'a str,
    /// The `datname` label of per-database families.
    pub datname: Option<&'a str>,
    /// Whether a database is covered (`databases_include`/`_exclude`).
    pub covers: &'a (dyn Fn(&str) -> bool + Sync),
    pub relations_top_n: u32,
    pub statements_top_n: u32,
}

/// A family's standing on one connection.
#[derive(Debug, Default)]
pub(crate) struct FamilyState {
    /// Failures in a row.
    failures: u32,
    /// Passes left to sit out.
    sit_out: u32,
    /// The current error, reported every pass until the family recovers.
    pub error: Option<PostgresError>,
    /// The version it was last said to be missing on.
    said_missing: Option<u32>,
    /// Statement texts, for the statements family.
    pub texts: TextCache,
}

impl FamilyState {
    fn failed(&mut self, error: PostgresError) {
        self.failures = self.failures.saturating_add(1);
        self.sit_out = match self.failures {
            1 => 1,
            2 => 3,
            3 => 7,
            _ => 15,
        };
        self.error = Some(error);
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.sit_out = 0;
        self.error = None;
    }

    /// Whether a pass skips the family because it is backing off.
    fn backing_off(&mut self) -> bool {
        if self.sit_out > 0 {
            self.sit_out -= 1;
            true
        } else {
            false
        }
    }
}

/// What running a family did to its connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    /// The connection broke: the caller drops it and reconnects next pass.
    Broken,
    /// The pass's deadline came: the caller stops using this connection this pass.
    Late,
}

/// Runs `family` on `client` unless it is backing off or missing on `version`.
pub(crate) async fn run(
    family: &'static Family,
    state: &mut FamilyState,
    client: &Client,
    version: u32,
    ctx: &Ctx<'_>,
    deadline: Instant,
    out: &mut Emitter,
) -> Outcome {
    let Some(sql) = family.select(version) else {
        if state.said_missing != Some(version) {
            state.said_missing = Some(version);
            tracing::info!(
                instance = ctx.instance,
                family = family.name,
                server_version_num = version,
                reason = family.missing,
                "family not available on this server version; skipped"
            );
        }
        return Outcome::Done;
    };
    if state.backing_off() {
        return Outcome::Done;
    }
    let mut part = Emitter::new();
    let result = match family.reader {
        Reader::Columns => read_columns(family, client, sql, ctx, deadline, &mut part).await,
        Reader::Statements => {
            statements::read(client, sql, ctx, &mut state.texts, deadline, &mut part).await
        }
        Reader::Settings => settings::read(client, sql, ctx, deadline, &mut part).await,
    };
    match result {
        Ok(()) => {
            out.append(&mut part);
            state.succeeded();
            Outcome::Done
        }
        Err(e) => {
            let outcome = if e.broke_connection() {
                Outcome::Broken
            } else if matches!(e, QueryError::Deadline) {
                Outcome::Late
            } else {
                Outcome::Done
            };
            let fix = fix_for(family, &e);
            state.failed(PostgresError::Family {
                instance: ctx.instance.to_owned(),
                database: ctx.datname.map(str::to_owned),
                family: family.name,
                error: Arc::new(e),
                fix,
            });
            outcome
        }
    }
}

/// The fix an operator should apply for error `e` of `family`.
fn fix_for(family: &Family, e: &QueryError) -> String {
    let statements = family.reader == Reader::Statements;
    match e.code() {
        Some("42501") => format!("fix: {}", nonempty(family.fix, "GRANT pg_monitor TO the monitoring role")),
        Some("42883" | "42P01") if statements => {
            "fix: CREATE EXTENSION pg_stat_statements in the database the agent connects to".to_owned()
        }
        Some("55000") if statements => {
            "fix: add pg_stat_statements to shared_preload_libraries and restart the server".to_owned()
        }
        Some("42703") if statements => {
            "fix: ALTER EXTENSION pg_stat_statements UPDATE (the installed version is older than the server's)".to_owned()
        }
        Some("55P03") => {
            "a relation was locked by DDL beyond lock_timeout_ms; nothing waited longer".to_owned()
        }
        Some("57014") => {
            "the query outlived statement_timeout_ms; raise it if the server is merely busy".to_owned()
        }
        Some("3D000") => "the database was dropped".to_owned(),
        Some(c) if c.starts_with("57P") => {
            "the session was ended (server shutdown or restart, pg_terminate_backend, DROP DATABASE … WITH (FORCE)); the agent reconnects on the next pass".to_owned()
        }
        None if e.broke_connection() => {
            "the connection was lost; the agent reconnects on the next pass".to_owned()
        }
        _ if family.name == sizes::RELATION_SIZE.name => {
            "sizes are retried on the next pass".to_owned()
        }
        _ => "see the server's log".to_owned(),
    }
}

fn nonempty<'a>(s: &'a str, or: &'a str) -> &'a str {
    if s.is_empty() { or } else { s }
}

async fn read_columns(
    family: &'static Family,
    client: &Client,
    sql: &str,
    ctx: &Ctx<'_>,
    deadline: Instant,
    out: &mut Emitter,
) -> Result<(), QueryError> {
    let limit = i64::from(ctx.relations_top_n);
    let rows = if family.takes_limit {
        query_until(client, sql, &[&limit], deadline).await?
    } else {
        query_until(client, sql, &[], deadline).await?
    };
    emit_columns(family, &rows, ctx, out)
}

/// Emits the rows of a generically read family: label columns by name, metric
/// columns by name, NULL metrics left out. A column that is neither is a catalogue
/// error and fails the family.
pub(crate) fn emit_columns(
    family: &'static Family,
    rows: &[Row],
    ctx: &Ctx<'_>,
    out: &mut Emitter,
) -> Result<(), QueryError> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    enum Col {
        Label(&'static str),
        Metric(&'static super::catalog::Metric),
    }
    let mut cols = Vec::with_capacity(first.columns().len());
    for c in first.columns() {
        if let Some(l) = family.labels.iter().find(|l| **l == c.name()) {
            cols.push(Col::Label(l));
        } else if let Some(m) = family.metric(c.name()) {
            cols.push(Col::Metric(m));
        } else {
            return Err(QueryError::Catalogue(format!(
                "column {} of family {} is neither a label nor a metric",
                c.name(),
                family.name
            )));
        }
    }
    let mut labels: Vec<(&str, String)> = Vec::new();
    for row in rows {
        labels.clear();
        labels.push((INSTANCE_LABEL, ctx.instance.to_owned()));
        if let Some(d) = ctx.datname {
            labels.push(("datname", d.to_owned()));
        }
        for (i, col) in cols.iter().enumerate() {
            if let Col::Label(name) = col {
                let v: Option<String> = row.try_get(i).map_err(QueryError::Pg)?;
                labels.push((name, v.unwrap_or_default()));
            }
        }
        if family.filter_datname
            && let Some((_, d)) = labels.iter().find(|(k, _)| *k == "datname")
            && !(ctx.covers)(d)
        {
            continue;
        }
        let borrowed: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (i, col) in cols.iter().enumerate() {
            if let Col::Metric(m) = col {
                let Some(v) = row.try_get::<_, Option<f64>>(i).map_err(QueryError::Pg)? else {
                    continue;
                };
                match m.kind {
                    pga_format::MetricKind::Counter => {
                        out.counter(m.name, m.help, m.unit, &borrowed, v);
                    }
                    _ => out.gauge(m.name, m.help, m.unit, &borrowed, v),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{FamilyState, PostgresError};

    #[test]
    fn a_failing_family_sits_out_more_passes_each_time_and_recovers_at_once() {
        let mut st = FamilyState::default();
        let mut ran = Vec::new();
        for pass in 0..40 {
            if !st.backing_off() {
                ran.push(pass);
                st.failed(PostgresError::Busy {
                    instance: "boom".into(),
                });
            }
        }
        // Runs at 0, then after sitting out 1, 3, 7, 15, 15 passes.
        assert_eq!(ran, [0, 2, 6, 14, 30]);
        assert_eq!(
            st.error.as_ref().map(ToString::to_string).as_deref(),
            Some("instance boom: the connection stayed busy past this pass's deadline")
        );
        st.succeeded();
        assert!(!st.backing_off() && st.error.is_none());
    }
}
