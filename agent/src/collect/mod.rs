//! Collectors and what one pass of a collector hands on: the first stage of the
//! agent's pipeline (see the crate documentation for the whole flow).
//!
//! A [`Collector`] runs one pass at a time on the ticks of its [`Group`]; it fills an
//! [`Emitter`] with samples ([`Emitted`]) and, for the log collector, log events and
//! the cursor that produced them ([`LogBatch`]). The scheduler (`crate::scheduler`)
//! wraps the result with the pass's timestamp and the collector's health into a
//! [`Pass`] and sends it to the store writer (`crate::store::write_passes`), which
//! interns each distinct (name, labels) as a series id. These types flow one way,
//! collect → scheduler → store: nothing here knows the store.
//!
//! The collectors: [`system`] (the host), [`postgres`] (each instance's statistics
//! families), [`logs`] (each instance's server log); the agent's own health is
//! `crate::telemetry::SelfCollector`.

mod collector;
mod emit;
pub mod logs;
pub mod postgres;
pub mod server_facts;
pub mod system;

use std::fmt;

pub use collector::{Collector, CollectorHealth, Pass};
pub use emit::{Emitted, Emitter, LogBatch};

/// The label naming the PostgreSQL instance (the `[[postgres]]` name) on every series
/// about it. Not `instance`: a Prometheus server sets that label on every scraped
/// series itself (the target's address), so the agent's would arrive renamed to
/// `exported_instance`. Stores written before store schema 2 named it `instance`;
/// opening one renames it in the dictionary (`store` module).
pub const INSTANCE_LABEL: &str = "pg_instance";

/// Which tick a collector runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// Activity, locks, replication, OS: every 10 s by default.
    Fast,
    /// Statistics views that change slowly: every 60 s by default.
    Slow,
    /// Database and relation sizes: every 300 s by default.
    Sizes,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Fast, Group::Slow, Group::Sizes];

    pub const fn as_str(self) -> &'static str {
        match self {
            Group::Fast => "fast",
            Group::Slow => "slow",
            Group::Sizes => "sizes",
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a collector (or one part of it) failed in a pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    #[error("reading {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("parsing {path}: {detail}")]
    Parse { path: String, detail: String },
    /// A subsystem this host lacks (a missing `/proc` file, PSI booted off); said
    /// once, then the subsystem is not collected until the agent restarts.
    #[error(
        "{what} metrics are not available on this host ({}: {error}{hint}); not collecting them until the agent restarts",
        path.display()
    )]
    Unavailable {
        what: String,
        path: std::path::PathBuf,
        error: std::io::Error,
        /// What the subsystem needs, starting with `; `, or empty.
        hint: &'static str,
    },
    #[error(transparent)]
    Postgres(Box<postgres::PostgresError>),
    /// Where an instance's log is, or how to read it, is not known.
    #[error("log of instance {instance}: {error}")]
    LogLocation {
        instance: String,
        error: logs::discover::DiscoverError,
    },
    #[error("log of instance {instance}: {error}")]
    LogPrefix {
        instance: String,
        error: logs::PrefixError,
    },
    #[error(
        "cannot read {}: permission denied; set log_file_mode = 0640 on the server \
         and add the agent's user to the group owning the log (e.g. postgres, or adm \
         for /var/log/postgresql), then restart the agent",
        path.display()
    )]
    LogUnreadable { path: std::path::PathBuf },
    #[error("encoding the log cursor: {0}")]
    LogCursor(postcard::Error),
}

impl From<postgres::PostgresError> for CollectError {
    fn from(e: postgres::PostgresError) -> Self {
        CollectError::Postgres(Box::new(e))
    }
}

impl CollectError {
    pub fn io(path: impl AsRef<std::path::Path>, error: std::io::Error) -> Self {
        CollectError::Io {
            path: path.as_ref().display().to_string(),
            error,
        }
    }

    pub fn parse(path: impl AsRef<std::path::Path>, detail: impl Into<String>) -> Self {
        CollectError::Parse {
            path: path.as_ref().display().to_string(),
            detail: detail.into(),
        }
    }
}
