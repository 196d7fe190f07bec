//! Bringing the central database's schema up to date (`migrate`), and checking it
//! at the start of `run`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;

use sqlx::migrate::Migrator;

use super::timescale::{self, TimescaleState};
use super::{Sink, SinkError};

/// The SQL migrations in `migrations/`, embedded at build time.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// What [`Sink::migrate`] or [`Sink::start`] did and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Migrations applied by this run, as `version description`.
    pub applied: Vec<String>,
    /// Every migration this build knows, applied now or before.
    pub known: usize,
    /// Where TimescaleDB stands.
    pub timescaledb: TimescaleState,
    /// Partitions created ahead (plain PostgreSQL).
    pub partitions_created: u32,
    /// What the operator should know (TimescaleDB available but not created,
    /// policies that differ from the settings, …), one sentence each.
    pub notes: Vec<String>,
}

impl fmt::Display for MigrateReport {
    /// `3 migrations applied (…); 9 known; TimescaleDB: …; 8 partitions created ahead`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.applied.is_empty() {
            write!(f, "schema up to date ({} migrations)", self.known)?;
        } else {
            write!(
                f,
                "{} of {} migrations applied ({})",
                self.applied.len(),
                self.known,
                self.applied.join(", ")
            )?;
        }
        write!(
            f,
            "; TimescaleDB: {}; {} partitions created ahead",
            self.timescaledb, self.partitions_created
        )
    }
}

impl Sink {
    /// `pga-federator migrate`, as the owner: applies the migrations not yet applied,
    /// converts the time-series tables to TimescaleDB hypertables where the
    /// extension is created in this database (and
    /// [`super::SinkOptions::timescaledb`] allows it) and sets its policies, and
    /// creates the partitions of the next days. Safe to run again and from several
    /// federators at once (sqlx takes an advisory lock).
    pub async fn migrate(&self) -> Result<MigrateReport, SinkError> {
        self.bring_up(true).await
    }

    /// `pga-federator run`, as the writer: applies pending migrations when the role
    /// may (otherwise says to run `migrate` as the owner), reads where TimescaleDB
    /// stands without changing it (policies that differ from the settings are a
    /// note), and creates the partitions of the next days.
    pub async fn start(&self) -> Result<MigrateReport, SinkError> {
        self.bring_up(false).await
    }

    /// Migrations, TimescaleDB (changed by the owner's `migrate` only) and
    /// partitions ahead.
    async fn bring_up(&self, migrate: bool) -> Result<MigrateReport, SinkError> {
        let mut report = self.apply_migrations().await?;
        let (state, notes) = if migrate {
            timescale::migrate(self).await?
        } else {
            timescale::inspect(self).await?
        };
        self.timescale.store(state.hypertables(), Ordering::Relaxed);
        report.timescaledb = state;
        report.notes = notes;
        report.partitions_created = self.create_partitions_ahead().await?;
        Ok(report)
    }

    async fn apply_migrations(&self) -> Result<MigrateReport, SinkError> {
        let before = self.applied_migrations().await?;
        let up_to_date = MIGRATOR
            .iter()
            .all(|m| before.get(&m.version) == Some(&m.checksum.to_vec()));
        let mut report = MigrateReport {
            known: MIGRATOR.iter().count(),
            ..MigrateReport::default()
        };
        if !up_to_date {
            let pending: Vec<String> = MIGRATOR
                .iter()
                .filter(|m| !before.contains_key(&m.version))
                .map(|m| format!("{} {}", m.version, m.description))
                .collect();
            MIGRATOR.run(&self.pool).await.map_err(|e| {
                let e = SinkError::from(e);
                if e.sqlstate().as_deref() == Some("42501") {
                    SinkError::Privilege(format!(
                        "this role may not change the schema, and migrations are pending \
                         ({}): run `pga-federator migrate` with the owner's database.url, \
                         then start again",
                        pending.join(", ")
                    ))
                } else {
                    e
                }
            })?;
            report.applied = pending;
        }
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
