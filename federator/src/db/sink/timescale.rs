//! TimescaleDB, where it is created in the central database: hypertables with
//! compression and retention policies instead of native partitions.
//!
//! Detection reads only what every role may read: whether the extension is created
//! in this database (`pg_extension`) and whether the server has it installed
//! (`pg_available_extensions`, which lists the control files of the server's
//! extension directory). No setting that needs `pg_read_all_settings` is read, so the
//! owner, the writer and the reader roles of docs/central-database.md, "Roles", work unchanged on
//! plain PostgreSQL, on a server where TimescaleDB is installed but not created in
//! this database, and on a TimescaleDB database.
//!
//! Only [`migrate`] (`pga-federator migrate`, run by the owner) changes anything: it
//! converts the still empty time-series tables into hypertables (`timescale.sql`)
//! and sets the compression and retention policies from the retention settings.
//! Creating the extension is left to the DBA (`CREATE EXTENSION timescaledb`, with
//! the library in `shared_preload_libraries`): it loads a library into the server.
//! [`inspect`] (`pga-federator run`, as the writer) only reads: the state, and
//! whether the policies differ from the configuration, which it says once.
//!
//! All SQL of this module runs only where the extension exists; it follows the
//! documented TimescaleDB API (`create_hypertable` with `by_range`,
//! `add_compression_policy`, `add_retention_policy`, `timescaledb_information.jobs`),
//! 2.13 or newer.

use std::fmt;
use std::time::Duration;

use super::{Sink, SinkError};

const SETUP: &str = include_str!("timescale.sql");
/// The views over the time-series tables, created again after the conversion.
const VIEWS: [&str; 9] = [
    include_str!("../../../../migrations/0003_views.sql"),
    include_str!("../../../../migrations/0006_views.sql"),
    include_str!("../../../../migrations/0030_query_layer.sql"),
    include_str!("../../../../migrations/0040_query_speed.sql"),
    include_str!("../../../../migrations/0081_packed_query.sql"),
    include_str!("../../../../migrations/0091_closed_hours_query.sql"),
    include_str!("../../../../migrations/0093_range_speed.sql"),
    include_str!("../../../../migrations/0095_day_rollups_query.sql"),
    include_str!("../../../../migrations/0096_range_rows.sql"),
];

/// Where TimescaleDB stands for the central database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimescaleState {
    /// The server has no `timescaledb` extension installed.
    #[default]
    Unavailable,
    /// Installed on the server, not created in this database: plain PostgreSQL.
    NotCreated,
    /// Created, but the time-series tables are native partitions (they held data
    /// when it was created, or `migrate` has not run since).
    CreatedNative,
    /// The time-series tables are hypertables.
    Hypertables,
    /// Not used: `database.timescaledb = false`.
    Off,
}

impl TimescaleState {
    /// Whether the time-series tables are hypertables.
    pub fn hypertables(self) -> bool {
        self == TimescaleState::Hypertables
    }
}

impl fmt::Display for TimescaleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimescaleState::Unavailable => "not installed on the server (plain PostgreSQL)",
            TimescaleState::NotCreated => {
                "installed on the server, not created in this database (plain PostgreSQL)"
            }
            TimescaleState::CreatedNative => "created, time-series tables natively partitioned",
            TimescaleState::Hypertables => "hypertables",
            TimescaleState::Off => "off (database.timescaledb = false)",
        })
    }
}

/// What the catalogs say, readable by any role.
async fn detect(sink: &Sink) -> Result<(TimescaleState, bool), SinkError> {
    let (created, available, native, has_rows): (bool, bool, bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb'), \
                EXISTS (SELECT FROM pg_available_extensions WHERE name = 'timescaledb'), \
                EXISTS (SELECT FROM pga_partitioned), \
                EXISTS (SELECT FROM samples) OR EXISTS (SELECT FROM samples_packed) \
                OR EXISTS (SELECT FROM samples_1m) OR EXISTS (SELECT FROM samples_10m) \
                OR EXISTS (SELECT FROM samples_1h) OR EXISTS (SELECT FROM samples_1d) \
                OR EXISTS (SELECT FROM log_events)",
    )
    .fetch_one(&sink.pool)
    .await
    .map_err(SinkError::db("detecting TimescaleDB"))?;
    let state = match (created, available, native) {
        (true, _, false) => TimescaleState::Hypertables,
        (true, _, true) => TimescaleState::CreatedNative,
        (false, true, _) => TimescaleState::NotCreated,
        (false, false, _) => TimescaleState::Unavailable,
    };
    Ok((state, has_rows))
}

const NOT_CREATED: &str = "the timescaledb extension is installed on this server but not \
    created in the central database, which stays on plain PostgreSQL partitions; to use \
    hypertables, add timescaledb to shared_preload_libraries, run `CREATE EXTENSION \
    timescaledb;` in the central database, then `pga-federator migrate` as the owner \
    before any data is written";

/// `pga-federator migrate`: converts the empty time-series tables to hypertables
/// where the extension is created, and sets the policies. Returns the state and
/// what to tell the operator.
pub(crate) async fn migrate(sink: &Sink) -> Result<(TimescaleState, Vec<String>), SinkError> {
    if !sink.options.timescaledb {
        return Ok((TimescaleState::Off, Vec::new()));
    }
    let (state, has_rows) = detect(sink).await?;
    let mut notes = Vec::new();
    let state = match state {
        TimescaleState::NotCreated => {
            notes.push(NOT_CREATED.to_owned());
            state
        }
        TimescaleState::CreatedNative if has_rows => {
            notes.push(
                "TimescaleDB is created in the central database but the time-series tables \
                 already hold data in native partitions; they stay native (to convert: dump, \
                 migrate a fresh database with TimescaleDB, restore)"
                    .to_owned(),
            );
            state
        }
        TimescaleState::CreatedNative => {
            convert(sink).await?;
            tracing::info!("time-series tables converted to TimescaleDB hypertables");
            TimescaleState::Hypertables
        }
        other => other,
    };
    if state.hypertables() {
        set_policies(sink).await?;
    }
    Ok((state, notes))
}

/// `pga-federator run`: reads the state and compares the policies with the
/// configuration, changing nothing.
pub(crate) async fn inspect(sink: &Sink) -> Result<(TimescaleState, Vec<String>), SinkError> {
    if !sink.options.timescaledb {
        return Ok((TimescaleState::Off, Vec::new()));
    }
    let (state, has_rows) = detect(sink).await?;
    let mut notes = Vec::new();
    match state {
        TimescaleState::NotCreated => notes.push(NOT_CREATED.to_owned()),
        TimescaleState::CreatedNative if !has_rows => notes.push(
            "TimescaleDB is created in the central database but the time-series tables are \
             still native partitions: run `pga-federator migrate` as the owner to convert \
             them while they are empty"
                .to_owned(),
        ),
        TimescaleState::Hypertables => match differing_policies(sink).await {
            Ok(diff) if diff.is_empty() => {}
            Ok(diff) => notes.push(format!(
                "TimescaleDB policies differ from the retention settings: {}; only \
                 `pga-federator migrate`, run as the owner, changes them",
                diff.join("; ")
            )),
            Err(e) if e.is_unavailable() => return Err(e),
            Err(e) => notes.push(format!(
                "cannot read the TimescaleDB policies to compare them with the retention \
                 settings: {e}"
            )),
        },
        _ => {}
    }
    Ok((state, notes))
}

async fn convert(sink: &Sink) -> Result<(), SinkError> {
    let mut tx = sink
        .pool
        .begin()
        .await
        .map_err(SinkError::db("starting the TimescaleDB setup"))?;
    sqlx::raw_sql(SETUP)
        .execute(&mut *tx)
        .await
        .map_err(SinkError::db("creating hypertables"))?;
    for views in VIEWS {
        sqlx::raw_sql(views)
            .execute(&mut *tx)
            .await
            .map_err(SinkError::db("creating views over the hypertables"))?;
    }
    tx.commit()
        .await
        .map_err(SinkError::db("committing the TimescaleDB setup"))
}

/// `(table, policy procedure, interval)` as the retention settings want them.
fn wanted_policies(sink: &Sink) -> [(&'static str, &'static str, Duration); 12] {
    let r = &sink.options.retention;
    let two_days = Duration::from_secs(2 * 86_400);
    let month = Duration::from_secs(30 * 86_400);
    [
        ("samples", "policy_compression", two_days),
        ("samples_1m", "policy_compression", two_days),
        ("samples_10m", "policy_compression", two_days),
        ("samples_1h", "policy_compression", month),
        ("samples_1d", "policy_compression", month),
        ("log_events", "policy_compression", two_days),
        ("samples", "policy_retention", r.raw),
        ("samples_1m", "policy_retention", r.rollup_1m),
        ("samples_10m", "policy_retention", r.rollup_10m),
        ("samples_1h", "policy_retention", r.rollup_1h),
        // The 1-day rollups are kept as long as the 1-hour ones.
        ("samples_1d", "policy_retention", r.rollup_1h),
        ("log_events", "policy_retention", r.log_events),
    ]
}

async fn set_policies(sink: &Sink) -> Result<(), SinkError> {
    let mut sql = String::new();
    for (table, proc, after) in wanted_policies(sink) {
        let secs = after.as_secs();
        sql.push_str(&if proc == "policy_compression" {
            format!(
                "SELECT remove_compression_policy('{table}', if_exists => true);\n\
                 SELECT add_compression_policy('{table}', compress_after => INTERVAL '{secs} seconds');\n"
            )
        } else {
            format!(
                "SELECT remove_retention_policy('{table}', if_exists => true);\n\
                 SELECT add_retention_policy('{table}', drop_after => INTERVAL '{secs} seconds');\n"
            )
        });
    }
    sqlx::raw_sql(&sql)
        .execute(&sink.pool)
        .await
        .map_err(SinkError::db("setting TimescaleDB policies"))?;
    Ok(())
}

/// The policies that are missing or set to another interval, one phrase each.
async fn differing_policies(sink: &Sink) -> Result<Vec<String>, SinkError> {
    let wanted = wanted_policies(sink);
    let tables: Vec<&str> = wanted.iter().map(|w| w.0).collect();
    let procs: Vec<&str> = wanted.iter().map(|w| w.1).collect();
    let secs: Vec<i64> = wanted.iter().map(|w| w.2.as_secs() as i64).collect();
    let rows: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT w.tbl, w.proc, w.secs, j.setting \
         FROM unnest($1::text[], $2::text[], $3::bigint[]) AS w(tbl, proc, secs) \
         LEFT JOIN ( \
             SELECT hypertable_name::text AS tbl, proc_name::text AS proc, \
                    coalesce(config->>'compress_after', config->>'drop_after') AS setting \
             FROM timescaledb_information.jobs \
             WHERE hypertable_schema = current_schema() \
               AND proc_name IN ('policy_compression', 'policy_retention')) j \
           USING (tbl, proc) \
         WHERE j.setting IS NULL \
            OR j.setting::interval IS DISTINCT FROM make_interval(secs => w.secs)",
    )
    .bind(&tables)
    .bind(&procs)
    .bind(&secs)
    .fetch_all(&sink.pool)
    .await
    .map_err(SinkError::db("reading the TimescaleDB policies"))?;
    Ok(rows
        .into_iter()
        .map(|(table, proc, secs, setting)| {
            let what = proc.trim_start_matches("policy_");
            match setting {
                Some(s) => format!("{table} {what} after {s}, the settings say {secs} s"),
                None => format!("{table} has no {what} policy, the settings say {secs} s"),
            }
        })
        .collect())
}
