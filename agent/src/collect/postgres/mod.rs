//! The PostgreSQL collector: every statistics family of each instance, chosen by the
//! server's version, on at most one connection per database.
//!
//! Each instance gets three collectors, one per group: [`PostgresProbe`] (fast: `pg_up`,
//! activity, locks, replication, WAL, progress) and two [`PostgresGroup`]s (slow:
//! database, table and index statistics, checkpoints, I/O, statements, settings;
//! sizes: database and relation sizes). They run concurrently and share the
//! instance's connections, each behind an async mutex: one main connection (the
//! configured database) for instance-wide views, one per other covered database for
//! its tables and indexes. Connections are opened on first use and reused; a broken
//! one is reopened on the next pass.
//!
//! Safety for the monitored server: every session sets `statement_timeout`,
//! `lock_timeout` and `application_name = 'pga-agent'`; every pass has a deadline
//! (statement timeout + 500 ms) after which its query is cancelled; a failing family
//! costs only itself and backs off; relation sizes skip relations user DDL holds
//! locked. See [`catalog`] for the families and [`runner`] for a pass.

pub mod activity;
pub mod catalog;
mod conn;
pub mod database;
mod error;
mod family;
pub mod replication;
mod runner;
pub mod server;
pub mod settings;
pub mod sizes;
pub mod statements;
pub mod tables;

use std::sync::Arc;
use std::time::Duration;

pub use conn::{QueryError, pgpass_lookup};
pub use error::PostgresError;
use runner::{GroupRunner, SharedInstance, UP_HELP};

use super::server_facts::{SharedInstanceReport, SharedServerFacts};
use super::system::SharedPaths;
use super::{CollectError, Collector, Emitter, Group, INSTANCE_LABEL};
use crate::config::PostgresInstance;

/// The fast-group collector of one instance; it answers `pg_up` and owns the
/// reconnects. [`PostgresProbe::companions`] gives the slow and sizes collectors
/// that share its connections.
pub struct PostgresProbe {
    name: &'static str,
    shared: Arc<SharedInstance>,
    runner: GroupRunner,
}

impl std::fmt::Debug for PostgresProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresProbe")
            .field(INSTANCE_LABEL, &self.shared.instance.name)
            .finish_non_exhaustive()
    }
}

impl PostgresProbe {
    /// `paths` is the system collector's list of watched filesystems.
    pub fn new(instance: PostgresInstance, paths: SharedPaths) -> Self {
        // Collector names live as long as the agent; there is one per instance.
        let name: &'static str = Box::leak(format!("postgres:{}", instance.name).into_boxed_str());
        let runner = GroupRunner::new(Group::Fast, &instance);
        PostgresProbe {
            name,
            shared: Arc::new(SharedInstance::new(instance, paths)),
            runner,
        }
    }

    /// Where this instance writes its log and how, refreshed on every (re)connect;
    /// `None` until the first connection.
    pub fn server_facts(&self) -> SharedServerFacts {
        self.shared.facts.clone()
    }

    /// What `/v1/status` reports of this instance, refreshed at each (re)connect
    /// and each slow pass.
    pub fn instance_report(&self) -> SharedInstanceReport {
        self.shared.report.clone()
    }

    /// The slow and sizes collectors of this instance, sharing its connections.
    pub fn companions(&self) -> Vec<PostgresGroup> {
        [Group::Slow, Group::Sizes]
            .into_iter()
            .map(|group| PostgresGroup {
                name: Box::leak(
                    format!("postgres:{}:{group}", self.shared.instance.name).into_boxed_str(),
                ),
                shared: self.shared.clone(),
                runner: GroupRunner::new(group, &self.shared.instance),
            })
            .collect()
    }
}

impl Collector for PostgresProbe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn group(&self) -> Group {
        Group::Fast
    }

    /// One pass; runs on a blocking thread of the agent's runtime.
    fn collect(&mut self, out: &mut Emitter) -> Vec<CollectError> {
        let (errors, overran) = run_pass(&mut self.runner, &self.shared, out);
        if overran && !out.samples().iter().any(|s| s.name == "pg_up") {
            out.gauge(
                "pg_up",
                UP_HELP,
                "",
                &[(INSTANCE_LABEL, self.shared.instance.name.as_str())],
                0.0,
            );
        }
        errors
    }
}

/// The slow or sizes collector of one instance.
pub struct PostgresGroup {
    name: &'static str,
    shared: Arc<SharedInstance>,
    runner: GroupRunner,
}

impl std::fmt::Debug for PostgresGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresGroup")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Collector for PostgresGroup {
    fn name(&self) -> &'static str {
        self.name
    }

    fn group(&self) -> Group {
        self.runner.group
    }

    /// One pass; runs on a blocking thread of the agent's runtime.
    fn collect(&mut self, out: &mut Emitter) -> Vec<CollectError> {
        run_pass(&mut self.runner, &self.shared, out).0
    }
}

/// Runs a pass on the agent's runtime, with a last-resort bound one second past the
/// statement timeout (the pass's own deadline comes half a second earlier); `true`
/// when that bound cut the pass short.
fn run_pass(
    runner: &mut GroupRunner,
    shared: &Arc<SharedInstance>,
    out: &mut Emitter,
) -> (Vec<CollectError>, bool) {
    let handle = tokio::runtime::Handle::current();
    let bound = shared.instance.statement_timeout() + Duration::from_secs(1);
    let mut part = Emitter::new();
    let result = handle
        .block_on(async { tokio::time::timeout(bound, runner.pass(shared, &mut part)).await });
    out.append(&mut part);
    match result {
        Ok(errors) => (errors, false),
        Err(_) => (
            vec![
                PostgresError::Overran {
                    instance: shared.instance.name.clone(),
                    bound_ms: bound.as_millis(),
                }
                .into(),
            ],
            true,
        ),
    }
}
