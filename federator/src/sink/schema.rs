//! Bringing the central database's schema up to date.

use std::collections::HashMap;

use sqlx::migrate::Migrator;

use super::{Sink, SinkError, timescale};

/// The SQL migrations in `migrations/`, embedded at build time.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// What [`Sink::migrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Migrations applied by this run, as `version description`.
    pub applied: Vec<String>,
    /// Every migration this build knows, applied now or before.
    pub known: usize,
    /// Whether the time-series tables are TimescaleDB hypertables.
    pub timescaledb: bool,
    /// Partitions created ahead (plain PostgreSQL).
    pub partitions_created: u32,
}

impl Sink {
    /// Applies the migrations not yet applied, sets TimescaleDB up where the
    /// extension is installed (and [`super::SinkOptions::timescaledb`] allows it),
    /// and creates the partitions of the next days. Safe to run at every start and
    /// from several federators at once (sqlx takes an advisory lock); when every
    /// migration is already applied it changes nothing, so the run-time role that
    /// may not create tables can call it too.
    pub async fn migrate(&self) -> Result<MigrateReport, SinkError> {
        let before = self.applied_migrations().await?;
        let up_to_date = MIGRATOR
            .iter()
            .all(|m| before.get(&m.version) == Some(&m.checksum.to_vec()));
        let mut report = MigrateReport {
            known: MIGRATOR.iter().count(),
            ..MigrateReport::default()
        };
        if !up_to_date {
            MIGRATOR.run(&self.pool).await?;
            report.applied = MIGRATOR
                .iter()
                .filter(|m| !before.contains_key(&m.version))
                .map(|m| format!("{} {}", m.version, m.description))
                .collect();
        }
        report.timescaledb = if self.options.timescaledb {
            timescale::setup(self).await?
        } else {
            false
        };
        report.partitions_created = self.create_partitions_ahead().await?;
        Ok(report)
    }

    /// Version → checksum of every migration recorded as applied.
    async fn applied_migrations(&self) -> Result<HashMap<i64, Vec<u8>>, SinkError> {
        let (exists,): (bool,) =
            sqlx::query_as("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(SinkError::db("reading the applied migrations"))?;
        if !exists {
            return Ok(HashMap::new());
        }
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .map_err(SinkError::db("reading the applied migrations"))?;
        Ok(rows.into_iter().collect())
    }
}
