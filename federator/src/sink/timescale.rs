//! TimescaleDB, where it is installed: hypertables with compression and retention
//! policies instead of native partitions.
//!
//! Detected at run time: the extension must be available
//! (`pg_available_extensions`) and in `shared_preload_libraries`, or already created
//! in the database. The one-time conversion (`timescale.sql`) runs only while the
//! time-series tables are empty; a database that already holds samples in native
//! partitions keeps them (converting it is an operator's job: dump, migrate on a
//! fresh database with TimescaleDB, restore). Policies follow the sink's retention
//! options at every start. Nothing here runs on plain PostgreSQL.

use std::time::Duration;

use super::{Sink, SinkError};

const SETUP: &str = include_str!("timescale.sql");
const VIEWS: &str = include_str!("../../../migrations/0003_views.sql");

/// Whether TimescaleDB is in use after this call (setting it up if it can be).
pub(crate) async fn setup(sink: &Sink) -> Result<bool, SinkError> {
    let (installed, loadable): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb'), \
                EXISTS (SELECT FROM pg_available_extensions WHERE name = 'timescaledb') \
                AND current_setting('shared_preload_libraries') ~ 'timescaledb'",
    )
    .fetch_one(&sink.pool)
    .await
    .map_err(SinkError::db("detecting TimescaleDB"))?;
    if !installed && !loadable {
        return Ok(false);
    }
    let (native, has_rows): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT FROM pga_partitioned), \
                EXISTS (SELECT FROM samples) OR EXISTS (SELECT FROM samples_1m) \
                OR EXISTS (SELECT FROM samples_1h) OR EXISTS (SELECT FROM log_events)",
    )
    .fetch_one(&sink.pool)
    .await
    .map_err(SinkError::db("inspecting the time-series tables"))?;
    if native {
        if has_rows {
            tracing::warn!(
                "TimescaleDB is installed but the time-series tables already hold data in \
                 native partitions; keeping native partitioning"
            );
            return Ok(false);
        }
        let mut tx = sink
            .pool
            .begin()
            .await
            .map_err(SinkError::db("starting the TimescaleDB setup"))?;
        sqlx::raw_sql(SETUP)
            .execute(&mut *tx)
            .await
            .map_err(SinkError::db("creating hypertables"))?;
        sqlx::raw_sql(VIEWS)
            .execute(&mut *tx)
            .await
            .map_err(SinkError::db("creating views over the hypertables"))?;
        tx.commit()
            .await
            .map_err(SinkError::db("committing the TimescaleDB setup"))?;
        tracing::info!("time-series tables converted to TimescaleDB hypertables");
    }
    let r = &sink.options.retention;
    let policies = [
        ("samples", Duration::from_secs(2 * 86_400), r.raw),
        ("samples_1m", Duration::from_secs(2 * 86_400), r.rollup_1m),
        ("samples_1h", Duration::from_secs(30 * 86_400), r.rollup_1h),
        ("log_events", Duration::from_secs(2 * 86_400), r.log_events),
    ];
    let mut sql = String::new();
    for (table, compress_after, keep) in policies {
        sql.push_str(&format!(
            "SELECT remove_compression_policy('{table}', if_exists => true);\n\
             SELECT add_compression_policy('{table}', compress_after => INTERVAL '{} seconds');\n\
             SELECT remove_retention_policy('{table}', if_exists => true);\n\
             SELECT add_retention_policy('{table}', drop_after => INTERVAL '{} seconds');\n",
            compress_after.as_secs(),
            keep.as_secs()
        ));
    }
    sqlx::raw_sql(&sql)
        .execute(&sink.pool)
        .await
        .map_err(SinkError::db("setting TimescaleDB policies"))?;
    Ok(true)
}
