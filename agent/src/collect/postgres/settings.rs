//! Selected server settings, in base units: one gauge per setting,
//! `pg_settings_<name>[_bytes|_seconds]` (booleans as 0/1). Slow group, once per
//! instance. Settings are what a DBA compares statistics against: connection limits,
//! memory, checkpoint and autovacuum tuning, wraparound thresholds.

use tokio::time::Instant;
use tokio_postgres::Client;

use super::catalog::{Family, Reader, Scope, since};
use super::conn::{QueryError, query_until};
use super::family::Ctx;
use crate::collect::{Emitter, Group, INSTANCE_LABEL};

/// The settings read, when the server has them.
pub const SELECTED: &[&str] = &[
    "max_connections",
    "superuser_reserved_connections",
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
    "max_wal_size",
    "min_wal_size",
    "wal_keep_size",
    "max_slot_wal_keep_size",
    "checkpoint_timeout",
    "checkpoint_completion_target",
    "max_wal_senders",
    "max_replication_slots",
    "max_worker_processes",
    "max_parallel_workers",
    "max_locks_per_transaction",
    "max_prepared_transactions",
    "autovacuum",
    "autovacuum_max_workers",
    "autovacuum_naptime",
    "autovacuum_vacuum_cost_limit",
    "autovacuum_freeze_max_age",
    "autovacuum_multixact_freeze_max_age",
    "vacuum_freeze_min_age",
    "idle_in_transaction_session_timeout",
    "track_io_timing",
    "block_size",
    "wal_segment_size",
    "fsync",
];

pub static SETTINGS: Family = Family {
    name: "settings",
    group: Group::Slow,
    scope: Scope::Instance,
    reader: Reader::Settings,
    labels: &[],
    metrics: &[],
    queries: &[since(
        140000,
        "SELECT name,
                CASE WHEN unit IN ('B', 'kB', 'MB', 'GB', 'TB', '8kB', '16MB') THEN 'bytes'
                     WHEN unit IN ('us', 'ms', 's', 'min', 'h', 'd') THEN 'seconds' ELSE '' END AS kind,
                CASE WHEN vartype = 'bool' THEN (setting = 'on')::int::float8
                     WHEN setting::float8 < 0 THEN setting::float8
                     ELSE setting::float8 * CASE unit
                          WHEN 'kB' THEN 1024 WHEN '8kB' THEN 8192 WHEN 'MB' THEN 1048576
                          WHEN '16MB' THEN 16777216 WHEN 'GB' THEN 1073741824 WHEN 'TB' THEN 1099511627776
                          WHEN 'us' THEN 0.000001 WHEN 'ms' THEN 0.001 WHEN 'min' THEN 60
                          WHEN 'h' THEN 3600 WHEN 'd' THEN 86400 ELSE 1 END
                END AS value
           FROM pg_settings
          WHERE name = ANY($1) AND vartype IN ('bool', 'integer', 'real')",
    )],
    ..Family::USUAL
};

/// The metric name of setting `name` whose unit is `kind` (`bytes`, `seconds` or none).
pub fn metric_name(name: &str, kind: &str) -> String {
    if kind.is_empty() || name.ends_with(kind) {
        format!("pg_settings_{name}")
    } else {
        format!("pg_settings_{name}_{kind}")
    }
}

pub(crate) async fn read(
    client: &Client,
    sql: &str,
    ctx: &Ctx<'_>,
    deadline: Instant,
    out: &mut Emitter,
) -> Result<(), QueryError> {
    let names: Vec<&str> = SELECTED.to_vec();
    let rows = query_until(client, sql, &[&names], deadline).await?;
    for row in rows {
        let name: String = row.try_get(0).map_err(QueryError::Pg)?;
        let kind: String = row.try_get(1).map_err(QueryError::Pg)?;
        let Some(value) = row.try_get::<_, Option<f64>>(2).map_err(QueryError::Pg)? else {
            continue;
        };
        let unit = match kind.as_str() {
            "bytes" => "bytes",
            "seconds" => "seconds",
            _ => "",
        };
        out.gauge(
            &metric_name(&name, unit),
            "A server setting, in base units (booleans as 0 or 1).",
            unit,
            &[(INSTANCE_LABEL, ctx.instance)],
            value,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::metric_name;

    #[test]
    fn names_carry_their_unit_once() {
        assert_eq!(
            metric_name("max_connections", ""),
            "pg_settings_max_connections"
        );
        assert_eq!(
            metric_name("work_mem", "bytes"),
            "pg_settings_work_mem_bytes"
        );
        assert_eq!(
            metric_name("checkpoint_timeout", "seconds"),
            "pg_settings_checkpoint_timeout_seconds"
        );
    }
}
