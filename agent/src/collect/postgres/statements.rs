//! `pg_stat_statements`: the top `statements_top_n` statements by total (planning +
//! execution) time. Slow group, on the main connection (the extension must be created
//! in the database the agent connects to; it reports every database).
//!
//! Safe on a large statement store: the statistics are read with
//! `pg_stat_statements(false)`, which does not read the query-text file, grouped by
//! (database, user, queryid) and cut to the top N on the server, so only N rows travel.
//! Query texts are fetched separately and only for queryids the agent has not seen
//! yet; they are redacted (literals become `?`, a password-bearing statement loses
//! everything after its verb), whitespace is collapsed and the text is cut to
//! [`QUERY_TEXT_MAX_CHARS`]. Texts live in a cache that keeps only the current top N.
//! Series count: at most N per metric, plus N `pg_stat_statements_query_info`.

use std::collections::HashMap;

use tokio::time::Instant;
use tokio_postgres::Client;

use super::catalog::{Family, Reader, Scope, between, counter, since};
use super::conn::{QueryError, query_until};
use super::family::{Ctx, emit_columns};
use crate::collect::logs::redact;
use crate::collect::{Emitter, Group, INSTANCE_LABEL};

/// Longest query text kept, in characters.
pub const QUERY_TEXT_MAX_CHARS: usize = 300;

/// The columns every version has.
macro_rules! common {
    () => {
        "SELECT d.datname::text AS datname, coalesce(r.rolname::text, s.userid::text) AS \"user\", s.queryid::text AS queryid,
        sum(s.calls)::float8 AS calls, (sum(s.total_exec_time) / 1000)::float8 AS exec_seconds,
        (sum(s.total_plan_time) / 1000)::float8 AS plan_seconds, sum(s.rows)::float8 AS rows,
        sum(s.shared_blks_hit)::float8 AS shared_blks_hit, sum(s.shared_blks_read)::float8 AS shared_blks_read,
        sum(s.shared_blks_dirtied)::float8 AS shared_blks_dirtied, sum(s.shared_blks_written)::float8 AS shared_blks_written,
        sum(s.temp_blks_read)::float8 AS temp_blks_read, sum(s.temp_blks_written)::float8 AS temp_blks_written,
        sum(s.wal_bytes)::float8 AS wal_bytes,"
    };
}

/// Grouped by statement, cut to the top N on the server.
macro_rules! tail {
    () => {
        "
   FROM pg_stat_statements(false) s
   JOIN pg_database d ON d.oid = s.dbid
   LEFT JOIN pg_roles r ON r.oid = s.userid
  WHERE s.queryid IS NOT NULL
  GROUP BY d.datname, r.rolname, s.userid, s.queryid
  ORDER BY sum(s.total_exec_time + s.total_plan_time) DESC
  LIMIT $1"
    };
}

pub static STATEMENTS: Family = Family {
    name: "statements",
    group: Group::Slow,
    scope: Scope::Instance,
    reader: Reader::Statements,
    labels: &["datname", "user", "queryid"],
    metrics: &[
        counter("calls", "pg_stat_statements_calls_total", "", "Times the statement ran."),
        counter("exec_seconds", "pg_stat_statements_exec_time_seconds_total", "seconds", "Time executing the statement."),
        counter("plan_seconds", "pg_stat_statements_plan_time_seconds_total", "seconds", "Time planning it (with pg_stat_statements.track_planning)."),
        counter("rows", "pg_stat_statements_rows_total", "", "Rows retrieved or affected."),
        counter("shared_blks_hit", "pg_stat_statements_shared_blks_hit_total", "", "Shared buffer hits."),
        counter("shared_blks_read", "pg_stat_statements_shared_blks_read_total", "", "Shared blocks read."),
        counter("shared_blks_dirtied", "pg_stat_statements_shared_blks_dirtied_total", "", "Shared blocks dirtied."),
        counter("shared_blks_written", "pg_stat_statements_shared_blks_written_total", "", "Shared blocks written."),
        counter("temp_blks_read", "pg_stat_statements_temp_blks_read_total", "", "Temporary blocks read."),
        counter("temp_blks_written", "pg_stat_statements_temp_blks_written_total", "", "Temporary blocks written."),
        counter("wal_bytes", "pg_stat_statements_wal_bytes_total", "bytes", "WAL generated."),
        counter("read_seconds", "pg_stat_statements_blk_read_time_seconds_total", "seconds", "Time reading shared blocks (with track_io_timing)."),
        counter("write_seconds", "pg_stat_statements_blk_write_time_seconds_total", "seconds", "Time writing shared blocks (with track_io_timing)."),
    ],
    queries: &[
        between(
            140000,
            170000,
            concat!(
                common!(),
                "
        (sum(s.blk_read_time) / 1000)::float8 AS read_seconds, (sum(s.blk_write_time) / 1000)::float8 AS write_seconds",
                tail!()
            ),
        ),
        since(
            170000,
            concat!(
                common!(),
                "
        (sum(s.shared_blk_read_time) / 1000)::float8 AS read_seconds, (sum(s.shared_blk_write_time) / 1000)::float8 AS write_seconds",
                tail!()
            ),
        ),
    ],
    takes_limit: true,
    fix: "in the database the agent connects to: CREATE EXTENSION pg_stat_statements (with pg_stat_statements in shared_preload_libraries), and GRANT pg_monitor TO the monitoring role",
    ..Family::USUAL
};

/// Entries evicted from the statement store since its reset: a steady rise means
/// `pg_stat_statements.max` is too small for the workload.
const INFO_SQL: &str = "SELECT dealloc::float8 AS dealloc FROM pg_stat_statements_info";

const TEXT_SQL: &str =
    "SELECT queryid::text, query FROM pg_stat_statements(true) WHERE queryid = ANY($1::int8[])";

/// Redacted query texts of the current top statements, by queryid.
#[derive(Debug, Default)]
pub(crate) struct TextCache {
    texts: HashMap<String, String>,
}

/// A query text as stored: literals redacted, whitespace collapsed, bounded.
pub fn clean_text(raw: &str) -> String {
    let redacted = match redact::password_statement(raw) {
        Some(p) => p,
        None => redact::redact(raw).into_owned(),
    };
    let mut out = String::with_capacity(redacted.len().min(QUERY_TEXT_MAX_CHARS * 4));
    let mut chars = 0;
    let words = redacted.split_whitespace();
    for (i, word) in words.enumerate() {
        for c in (i > 0).then_some(' ').into_iter().chain(word.chars()) {
            if chars == QUERY_TEXT_MAX_CHARS {
                out.push('…');
                return out;
            }
            out.push(c);
            chars += 1;
        }
    }
    out
}

/// Reads the top statements and emits their counters and `query_info` series.
pub(crate) async fn read(
    client: &Client,
    sql: &str,
    ctx: &Ctx<'_>,
    cache: &mut TextCache,
    deadline: Instant,
    out: &mut Emitter,
) -> Result<(), QueryError> {
    let limit = i64::from(ctx.statements_top_n);
    let rows = query_until(client, sql, &[&limit], deadline).await?;
    emit_columns(&STATEMENTS, &rows, ctx, out)?;
    // Queryids of this pass, and texts still to fetch.
    let mut keep: Vec<(String, String, String)> = Vec::with_capacity(rows.len());
    let mut missing: Vec<i64> = Vec::new();
    for row in &rows {
        let datname: String = row.try_get(0).map_err(QueryError::Pg)?;
        let user: String = row.try_get(1).map_err(QueryError::Pg)?;
        let queryid: String = row.try_get(2).map_err(QueryError::Pg)?;
        if !cache.texts.contains_key(&queryid)
            && let Ok(id) = queryid.parse::<i64>()
        {
            missing.push(id);
        }
        keep.push((datname, user, queryid));
    }
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        // Texts are a nicety: without them the numbers still count.
        match query_until(client, TEXT_SQL, &[&missing], deadline).await {
            Ok(text_rows) => {
                for r in text_rows {
                    let (Ok(id), Ok(q)) = (r.try_get::<_, String>(0), r.try_get::<_, String>(1))
                    else {
                        continue;
                    };
                    cache.texts.insert(id, clean_text(&q));
                }
            }
            Err(e) => {
                tracing::debug!(instance = ctx.instance, error = %e, "statement texts unavailable this pass")
            }
        }
    }
    cache
        .texts
        .retain(|id, _| keep.iter().any(|(_, _, k)| k == id));
    for (datname, user, queryid) in &keep {
        if let Some(text) = cache.texts.get(queryid) {
            out.gauge(
                "pg_stat_statements_query_info",
                "The redacted text of a top statement (value 1).",
                "",
                &[
                    (INSTANCE_LABEL, ctx.instance),
                    ("datname", datname),
                    ("user", user),
                    ("queryid", queryid),
                    ("query", text),
                ],
                1.0,
            );
        }
    }
    if let Ok(info) = query_until(client, INFO_SQL, &[], deadline).await
        && let Some(row) = info.first()
        && let Ok(Some(v)) = row.try_get::<_, Option<f64>>(0)
    {
        out.counter(
            "pg_stat_statements_dealloc_total",
            "Statement entries evicted because pg_stat_statements.max was reached.",
            "",
            &[(INSTANCE_LABEL, ctx.instance)],
            v,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_redacted_collapsed_and_bounded() {
        assert_eq!(
            clean_text("SELECT *\n  FROM t\tWHERE a = 'secret' AND b = 42"),
            "SELECT * FROM t WHERE a = '?' AND b = ?"
        );
        let pw = clean_text("ALTER ROLE app PASSWORD 'hunter2'");
        assert!(!pw.contains("hunter2"), "{pw}");
        let long = clean_text(&"x ".repeat(1000));
        assert_eq!(long.chars().count(), QUERY_TEXT_MAX_CHARS + 1);
        assert!(long.ends_with('…'));
    }
}
