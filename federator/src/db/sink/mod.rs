//! The PostgreSQL sink: where pulled batches become rows.
//!
//! [`Sink`] owns a connection pool to the central database and does these things:
//!
//! * [`Sink::migrate`] applies `migrations/` (sqlx format), sets TimescaleDB up where
//!   the extension is created ([`timescale`]), and creates partitions ahead;
//!   [`Sink::start`] is what `run` does instead: the same without changing
//!   TimescaleDB, whose policies it only compares with the settings;
//! * [`Sink::cursor`] tells where an agent's pull stands;
//! * [`Sink::ingest`] writes one [`Batch`] — series, samples (bulk binary `COPY`
//!   through a staging table, so samples already stored are dropped, never doubled),
//!   log events, the recorded gap, the exact rollups of every touched bucket and the
//!   cursor advance — in **one** transaction;
//! * [`Sink::record_status`] records what an agent's `/v1/status` reports in the
//!   inventory tables ([`inventory`]);
//! * [`Sink::retention`] drops partitions past their retention age and creates the
//!   next ones;
//! * [`Sink::pack`] moves raw samples left as rows into the packed layout, in
//!   bounded batches, while the ingest runs ([`pack`]).
//!
//! Errors say whether the whole database is unavailable ([`SinkError::is_unavailable`])
//! or only this batch failed. docs/central-database.md documents the schema.

/// The fencing check of a cursor's advance, as a `WITH fence AS (…)` query over
/// `cluster_leases`: one row when the agent's lease (name parameter `$name`) names
/// replica `$owner` with epoch `$epoch` and that replica's lease is valid now (the
/// database's clock, at this statement); the lease row is locked until the commit,
/// so a takeover waits for it. Every statement that moves a cursor for a fenced
/// writer selects its row `FROM fence` (migration 0050, DESIGN.md invariant 7).
macro_rules! fenced_lease_sql {
    ($name:literal, $owner:literal, $epoch:literal) => {
        concat!(
            "SELECT l.epoch FROM cluster_leases l \
             JOIN cluster_replica_leases r ON r.replica_id = l.owner \
             WHERE l.kind = 'agent' AND l.name = ",
            $name,
            " AND l.owner = ",
            $owner,
            "::uuid AND l.epoch = ",
            $epoch,
            " AND r.valid_until > clock_timestamp() FOR SHARE OF l"
        )
    };
}
pub(crate) use fenced_lease_sql;

mod copy;
mod error;
mod hours;
mod ingest;
pub mod inventory;
mod pack;
mod retention;
mod rollup;
mod samples;
mod schema;
mod series;
mod tails;
mod timescale;

use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use pga_format::AgentId;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::pull::batch::{Batch, Cursor};

pub use copy::{PG_EPOCH_UNIX_MS, SampleCopy};
pub use error::SinkError;
pub use hours::HoursReport;
pub use pack::{BatchOutcome, PackOptions, PackReport, PackedBatch};
pub use retention::{RetentionOptions, RetentionReport};
pub use schema::MigrateReport;
pub use timescale::TimescaleState;

/// How the sink connects and what it keeps.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// The password, when it is not in the URL (read from a file by the caller).
    pub password: Option<String>,
    /// Connections in the pool; one ingest uses one connection.
    pub max_connections: u32,
    /// How long an operation waits for a connection before it fails as transient.
    pub acquire_timeout: Duration,
    /// `statement_timeout` of every session; `None` keeps the server's.
    pub statement_timeout: Option<Duration>,
    /// `idle_in_transaction_session_timeout` of every session: a writer that stops
    /// in the middle of a transaction (frozen, cut off) loses it, and its locks,
    /// after this long. `None` keeps the server's.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// Use TimescaleDB hypertables where the extension is created in the database.
    pub timescaledb: bool,
    /// Store sealed raw samples packed (`samples_packed`, migration 0080) rather
    /// than one row each; only on plain PostgreSQL ([`Sink::packs`]).
    pub packed_samples: bool,
    /// A counter's increase between two consecutive samples further apart than this
    /// is not attributed to any rollup bucket (docs/central-database.md, "Rollups").
    pub max_silence: Duration,
    /// Retention ages and partitions created ahead.
    pub retention: RetentionOptions,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            password: None,
            max_connections: 4,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Some(Duration::from_secs(300)),
            idle_in_transaction_timeout: None,
            timescaledb: true,
            packed_samples: true,
            max_silence: Duration::from_secs(180),
            retention: RetentionOptions::default(),
        }
    }
}

/// A writer's fencing token for one agent: the replica that writes, and the epoch
/// of its lease on the agent (`cluster_leases`). The ingest transaction commits only
/// when the lease still names this replica with this epoch and the replica's own
/// lease is valid on the database's clock, checked in the statement that moves the
/// cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// `cluster_replica_leases.replica_id`, as uuid text.
    pub replica: String,
    /// `cluster_leases.epoch` the replica was granted.
    pub epoch: i64,
}

/// What one [`Sink::ingest`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Dictionary entries mapped to global series ids.
    pub series_mapped: usize,
    /// Samples in the batch (sealed blocks and head).
    pub samples_received: u64,
    /// Samples newly stored.
    pub samples_inserted: u64,
    /// Samples already stored (an overlap with the head or an earlier delivery).
    pub samples_duplicate: u64,
    /// Samples not stored because their series has a damaged packed row where they
    /// would go (the sink logs the series and window; it never merges into one).
    pub samples_damaged: u64,
    /// Packed rows written: one per series of each sealed block written packed.
    pub packed_rows: u64,
    /// Samples older than the raw retention age, not stored.
    pub samples_expired: u64,
    /// Samples stamped more than a day ahead of the federator's clock, not stored.
    pub samples_future: u64,
    /// Log events newly stored.
    pub log_events_inserted: u64,
    /// One-minute and one-hour rollup rows recomputed.
    pub rollups_1m: u64,
    pub rollups_1h: u64,
    /// Whether the batch's gap was recorded (false when it was recorded before).
    pub gap_recorded: bool,
}

/// The federator's connection to its central database.
#[derive(Debug)]
pub struct Sink {
    pool: PgPool,
    options: SinkOptions,
    /// Global series id of each (agent identity, agent-local series id) written and
    /// committed. Entries learned in a transaction join it only after the commit;
    /// a transient error empties it, so a database restored or replaced while the
    /// federator was cut off is read afresh.
    series_cache: Mutex<series::SeriesCache>,
    /// The newest stored sample of each series, per agent, as last committed
    /// ([`tails`]); emptied with the series cache.
    tails: Mutex<tails::TailCache>,
    /// Days (since the Unix epoch) whose partitions exist, as committed by an
    /// ingest; emptied by any ingest error and by every retention run.
    partition_days: Mutex<std::collections::HashSet<i64>>,
    /// Whether the time-series tables are TimescaleDB hypertables (set by
    /// [`Sink::migrate`] and [`Sink::start`]).
    timescale: AtomicBool,
}

impl Sink {
    /// Connects to the database at `database_url` (`postgres://user@host:port/db`,
    /// every parameter sqlx's `PgConnectOptions` accepts) and checks that it answers.
    /// An unreachable database is a transient error: try again later.
    pub async fn connect(database_url: &str, options: SinkOptions) -> Result<Sink, SinkError> {
        let mut connect = PgConnectOptions::from_str(database_url)
            .map_err(|e| SinkError::Config(e.to_string()))?
            .application_name("pga-federator");
        if let Some(password) = &options.password {
            connect = connect.password(password);
        }
        if let Some(timeout) = options.statement_timeout {
            connect = connect.options([("statement_timeout", format!("{}", timeout.as_millis()))]);
        }
        if let Some(timeout) = options.idle_in_transaction_timeout {
            connect = connect.options([(
                "idle_in_transaction_session_timeout",
                format!("{}", timeout.as_millis()),
            )]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(SinkError::db("connecting to the database"))?;
        Ok(Sink {
            pool,
            options,
            series_cache: Mutex::new(series::SeriesCache::default()),
            tails: Mutex::new(tails::TailCache::default()),
            partition_days: Mutex::new(Default::default()),
            timescale: AtomicBool::new(false),
        })
    }

    /// The connection pool, for readiness checks and tools.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The options the sink was connected with.
    pub fn options(&self) -> &SinkOptions {
        &self.options
    }

    /// Whether the database answers a query now.
    pub async fn ping(&self) -> Result<(), SinkError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(SinkError::db("checking the database"))
    }

    /// Whether the database answers and takes writes: not a standby, not
    /// read-only ([`SinkError::ReadOnly`]).
    pub async fn ping_writable(&self) -> Result<(), SinkError> {
        let read_only: bool = sqlx::query_scalar(
            "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only')::boolean",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(SinkError::db("checking that the database takes writes"))?;
        if read_only {
            return Err(SinkError::ReadOnly);
        }
        Ok(())
    }

    /// The identity of the agent's store and the cursor stored for the agent named
    /// `agent`; `None` before its first ingest.
    pub async fn cursor(&self, agent: &str) -> Result<Option<(AgentId, Cursor)>, SinkError> {
        let row: Option<(String, Option<i64>, Option<i64>, i64)> = sqlx::query_as(
            "SELECT c.agent_uid::text, c.last_sequence, c.last_ts_ms, c.series_count \
             FROM agent_cursors c JOIN agents a ON a.id = c.agent_id WHERE a.name = $1",
        )
        .bind(agent)
        .fetch_optional(&self.pool)
        .await
        .map_err(SinkError::db("reading the agent's cursor"))?;
        let Some((uid, last_sequence, last_ts_ms, series_count)) = row else {
            return Ok(None);
        };
        let agent_id = parse_uuid(&uid).ok_or_else(|| {
            SinkError::Config(format!("agent_cursors holds a malformed agent_uid {uid:?}"))
        })?;
        Ok(Some((
            agent_id,
            Cursor {
                last_sequence: last_sequence.map(|s| s as u64),
                last_ts_ms,
                series_count: series_count as u64,
            },
        )))
    }

    /// Writes `batch` in one transaction: on any error nothing of it is stored and
    /// the cursor stays where it was. (Partitions the batch needs are created
    /// before, each in a short transaction of its own, and stay.)
    pub async fn ingest(&self, batch: &Batch) -> Result<IngestReport, SinkError> {
        self.ingest_fenced(batch, None).await
    }

    /// [`Sink::ingest`] by a replica holding the agent's lease as `fence` says: the
    /// statement that moves the cursor also checks the lease, and the transaction
    /// is rolled back with [`SinkError::Fenced`] when the lease is no longer this
    /// replica's with this epoch. `None`: unfenced (a lone writer, tools, tests).
    pub async fn ingest_fenced(
        &self,
        batch: &Batch,
        fence: Option<&Fence>,
    ) -> Result<IngestReport, SinkError> {
        let result = ingest::ingest(self, batch, fence).await;
        if let Err(err) = &result {
            self.forget_partitions();
            if err.is_unavailable() {
                self.forget_series();
            }
        }
        result
    }

    /// Whether sealed samples are written packed: asked for, and the samples are
    /// not in TimescaleDB hypertables (which compress by themselves).
    pub fn packs(&self) -> bool {
        self.options.packed_samples && !self.timescale.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets which partitions exist (they are checked again).
    fn forget_partitions(&self) {
        self.partition_days
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    /// Empties the series and tail caches (they are filled again from the database).
    fn forget_series(&self) {
        self.series_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        self.tails
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

/// Text as PostgreSQL can store it: `text` and `jsonb` cannot hold NUL, so each NUL
/// becomes U+FFFD (a garbage log line is kept, readable, rather than blocking its
/// agent's batch).
pub(crate) fn pg_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Formats an agent identity as PostgreSQL's `uuid` text.
pub(crate) fn uuid_text(id: &AgentId) -> String {
    id.to_string()
}

/// Parses PostgreSQL's `uuid` text (hyphenated or not).
pub(crate) fn parse_uuid(text: &str) -> Option<AgentId> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(AgentId(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_bytes_become_replacement_characters() {
        assert_eq!(pg_text("a\0b"), "a\u{fffd}b");
        assert!(matches!(pg_text("ab"), std::borrow::Cow::Borrowed("ab")));
    }

    #[test]
    fn agent_ids_round_trip_through_uuid_text() {
        let id = AgentId([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54,
            0x32, 0x10,
        ]);
        let text = uuid_text(&id);
        assert_eq!(text, "01234567-89ab-cdef-fedc-ba9876543210");
        assert_eq!(parse_uuid(&text), Some(id));
        assert_eq!(parse_uuid("0123"), None);
        assert_eq!(parse_uuid("zz234567-89ab-cdef-fedc-ba9876543210"), None);
    }
}
