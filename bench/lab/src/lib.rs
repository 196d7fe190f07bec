//! Throwaway PostgreSQL clusters for pgAnalytics tests and benchmarks.
//!
//! Each [`Cluster`] is started from the system's PostgreSQL binaries in its
//! own temporary directory (data directory, server log and unix socket) on a
//! free TCP port of 127.0.0.1, so any number of tests can run in parallel.
//! Dropping it stops the server and deletes the directory, also when a test
//! panics; a watchdog process does the same if the test process is killed.
//!
//! ```no_run
//! use pga_lab::{Cluster, PgbenchRun};
//!
//! let mut pg = Cluster::builder().preload("pg_stat_statements").start()?;
//! pg.create_database("app")?;
//! pg.pgbench_init("app", 1)?;
//! let report = pg.pgbench("app", &PgbenchRun::for_secs(2))?;
//! assert!(report.transactions > 0);
//! let standby = pg.standby()?;
//! pg.restart()?;
//! # Ok::<(), pga_lab::LabError>(())
//! ```
//!
//! # Finding PostgreSQL
//!
//! `PGA_LAB_PG_BIN` names a directory holding `initdb`, `pg_ctl` and
//! `postgres`; without it the highest major version under
//! `/usr/lib/postgresql/<major>/bin` (Debian/Ubuntu) is used. `psql`,
//! `pgbench` and `pg_basebackup` are taken from that directory, `/usr/bin`,
//! or `PATH`. When nothing is installed, starting a cluster fails with
//! [`LabError::NotInstalled`] saying what to install (`apt-get install -y
//! postgresql`), so tests that need PostgreSQL fail loudly rather than pass
//! without having run.
//!
//! # Running as root
//!
//! PostgreSQL refuses to run as root. When the test process is root, every
//! PostgreSQL program (`initdb`, `pg_ctl`, `psql`, `pgbench`,
//! `pg_basebackup`) runs as the `postgres` system user, or, when that does
//! not exist, as `pga-lab` (created with `useradd --system --no-create-home`).
//! The cluster directory is made mode 0755 and owned by that user.
//!
//! # Environment
//!
//! - `PGA_LAB_PG_BIN`: the PostgreSQL binary directory to use.
//! - `PGA_LAB_TMPDIR`: where cluster directories go (default: `TMPDIR`, `/tmp`).
//! - `PGA_LAB_KEEP=1`: keep the directory of dropped clusters (server stopped),
//!   printing its path, to read the server log after a failure.
//!
//! Inherited `PG*` variables (`PGHOST`, `PGPORT`, …) are removed from the
//! environment of every program the lab runs.

mod cluster;
mod conf;
mod error;
mod helpers;
mod install;
mod pgbench;
mod process;
mod proxy;
mod watchdog;

pub use cluster::{Cluster, ClusterBuilder, KEEP_ENV, TMPDIR_ENV};
pub use error::{LabError, TAIL_LINES};
pub use helpers::{HttpResponse, Rng, Spawned, free_port, http_get, now_ms, wait_until};
pub use install::{PG_BIN_ENV, PgInstall};
pub use pgbench::{PgbenchLength, PgbenchReport, PgbenchRun};
pub use process::{FALLBACK_USER, SERVICE_USER};
pub use proxy::{Fault, FaultKind, FaultProxy};

#[cfg(test)]
mod tests {
    /// Tests share clusters across threads and wrap errors in `anyhow`.
    #[test]
    fn handles_and_errors_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<super::Cluster>();
        send_sync::<super::LabError>();
    }
}
