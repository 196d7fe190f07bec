//! The ring store: days of samples in little space on the host, surviving crashes.
//!
//! One redb file, `store.redb`, in the agent's data directory, opened by the agent in
//! [`redb::ConcurrencyMode::SingleWriter`] so that `pga-agent query`, `series` and
//! `status` can open it read-only at the same time ([`StoreReader`]).
//!
//! # Tables and keys
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | `&str` name | `&[u8]`: `schema` (u32 LE, see `migrate.rs`), `agent_id` (16 bytes), `created_ms`, `next_seq`, `next_series` (i64/u64 LE) |
//! | `blocks` | `u64` block sequence | a sealed block: one `pga-format` block frame |
//! | `block_index` | `u64` block sequence | `(min_ts, max_ts, frame bytes)` of that block, so readers skip blocks without loading them |
//! | `head` | `u64` row number | one collection of the open head block: postcard `HeadRow` (timestamp and `(series id, f64 bits)` pairs) |
//! | `head_logs` | `u64` row number | the log events of that collection, postcard (see `logs.rs`) |
//! | `dictionary` | `u64` first series id | a `pga-format` dictionary frame describing the series interned in one commit |
//! | `collectors` | `&str` collector name | postcard [`CollectorHealth`] |
//! | `cursors` | `&str` name | opaque bytes owned by another collector (log offsets, …), written with the pass they belong to |
//! | `events` | `i64` ms | a line of text: what happened to the store (a corrupt file moved aside, …) |
//!
//! # Invariants
//!
//! - Every [`Store::append`] is one redb transaction: the collection's head row, its log
//!   events and the collector's cursor ([`LogBatch`]), any new dictionary entries, the sealing of the previous head into a block when the window
//!   changed, and evictions commit together or not at all. A crash loses at most the
//!   collection being written.
//! - Block sequence numbers only grow; the oldest blocks are evicted first, when the
//!   logical size passes the budget's fill target or their data is older than the
//!   retention age. The open head is never evicted.
//! - Series ids are dense, assigned in first-seen order, never reused.
//!
//! # Faults
//!
//! A write that fails for an I/O reason (a full disk, a failing device) leaves the
//! redb database refusing every later operation until it is closed and opened again.
//! The store then closes it at once, reports the failure ([`StoreHealth`], also in
//! `store.health` for `pga-agent status`), counts each collection it cannot take as
//! lost, and opens the file again by itself: at the next collection once the
//! filesystem has more room than at the failure, else after a back-off (1 s, doubling
//! to 30 s). What was committed before the failure is kept: redb's last commit is
//! durable, and the open repairs its free-page state. The budget also shrinks to what
//! the filesystem can hold ([`health::room`]), so old blocks are evicted before new
//! collections are refused.

mod handle;
mod health;
mod logs;
mod migrate;
mod reader;
mod tables;
mod unwind;
mod verify;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pga_format::{AgentId, BlockBuilder, FrameMeta, LogEvent, SeriesId, SeriesMeta};
use redb::{ConcurrencyMode, Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use crate::collect::Emitted;
pub use handle::{BlocksPage, StoreHandle};
pub use health::{HEALTH_FILE, HEALTHY_AFTER_MS, HealthState, StoreHealth, read_health_file};
pub use logs::LogBatch;
use migrate::SCHEMA;
pub use reader::{SeriesSamples, StoreReader, StoreStatus, StoreView};
use tables::{BLOCK_INDEX, BLOCKS, COLLECTORS, CURSORS, DICTIONARY, EVENTS, HEAD, HEAD_LOGS, META};
pub(crate) use unwind::catch_quietly;
pub use verify::Verified;

/// File name of the store inside the data directory.
pub const STORE_FILE: &str = "store.redb";
/// First wait before opening the store again after a failed write ...
const RETRY_MIN: Duration = Duration::from_secs(1);
/// ... doubling up to this.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// More free bytes than at the failure that make the store try again at once.
const MORE_ROOM_BYTES: u64 = 64 << 10;
/// How long closing the store waits for reads in flight (the endpoint's).
const CLOSE_WAIT: Duration = Duration::from_secs(30);
/// zstd level of sealed blocks.
const BLOCK_ZSTD_LEVEL: i32 = pga_format::DEFAULT_ZSTD_LEVEL;
/// Share of the file's room (see `Store::capacity`) the logical contents may fill
/// before eviction; redb's pages, tree nodes, copy-on-write space and free space take
/// the rest. Lowered at run time when the file still grows past the budget.
const INITIAL_FILL: f64 = 0.70;
/// Never fill less than this share, however the file behaves.
const MIN_FILL: f64 = 0.30;
/// Log events the open head holds before it is sealed early (well under the format's
/// [`pga_format::MAX_LOG_EVENTS_PER_BLOCK`], to bound the head's memory).
const HEAD_LOG_EVENTS: usize = 100_000;

/// Bounds of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// The store file never grows past this by more than 5 %.
    pub max_bytes: u64,
    /// Blocks whose newest sample is older than this are evicted; 0 keeps by budget only.
    pub retention_ms: i64,
    /// Length of a block window.
    pub block_ms: i64,
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(
        "cannot create the data directory {path}: {error}; create it and make it writable by the agent's user, or pick another with --data-dir"
    )]
    DataDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "the store {path} is in use by another pga-agent; stop it first, or give this one its own --data-dir"
    )]
    InUse { path: PathBuf },
    #[error(
        "no store at {path}: has pga-agent run with this data directory? (pass --data-dir or --config to point at it)"
    )]
    Missing { path: PathBuf },
    #[error("the store {path} cannot be read: {detail}")]
    Unreadable { path: PathBuf, detail: String },
    #[error(
        "the store {path} was written by a newer pga-agent (store schema {schema}; this one reads up to {SCHEMA}); run that version again, or move the file away to start a fresh store"
    )]
    TooNew { path: PathBuf, schema: u32 },
    /// An I/O failure under the store, with the file and what to do.
    #[error("the store {} cannot {op}: {error}; {}", path.display(), io_fix(error))]
    Io {
        path: PathBuf,
        op: &'static str,
        error: std::io::Error,
    },
    /// The store is closed after a failed write and not open again yet.
    #[error("the store is not available: {0}")]
    Unavailable(String),
    #[error("store database error: {0}")]
    Db(#[from] redb::Error),
    #[error("the store holds damaged data: {0}")]
    Damaged(String),
    #[error("{0}")]
    Encode(#[from] pga_format::EncodeError),
    #[error("series {name}: {error}")]
    InvalidSeries {
        name: String,
        error: pga_format::ModelError,
    },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What to do about an I/O error of the store.
fn io_fix(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            "the filesystem is full: free space there (or lower store.max_bytes); until then \
             collections are lost, old blocks are evicted to fit what the filesystem holds, and \
             the agent resumes by itself once writes succeed, without a restart"
        }
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            "make the data directory writable by the agent's user (is the filesystem read-only?); \
             the agent resumes by itself once writes succeed"
        }
        _ => {
            "check the device (dmesg, SMART); the agent closes the store, opens it again and \
             resumes by itself once writes succeed"
        }
    }
}

impl StoreError {
    /// The I/O error under this failure, when the store failed for an I/O reason
    /// (not damage, not a bug): the database must be closed and opened again.
    pub fn io_failure(&self) -> Option<&std::io::Error> {
        match self {
            StoreError::Io { error, .. } => Some(error),
            StoreError::Db(redb::Error::Io(e)) => Some(e),
            _ => None,
        }
    }

    /// Whether this failure leaves the redb database unusable until it is reopened.
    fn needs_reopen(&self) -> bool {
        matches!(
            self,
            StoreError::Io { .. }
                | StoreError::Db(
                    redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
                )
        )
    }

    /// Whether the store file is damaged (as opposed to missing, in use, or the
    /// system failing): its bytes are not a sound store.
    pub fn is_damage(&self) -> bool {
        match self {
            StoreError::Damaged(_) | StoreError::Unreadable { .. } => true,
            StoreError::Db(redb::Error::Corrupted(_)) => true,
            StoreError::Db(redb::Error::Io(e)) => is_damage(e),
            _ => false,
        }
    }

    /// Whether the store is out of space.
    pub fn is_no_space(&self) -> bool {
        self.io_failure().is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        })
    }

    /// Whether the store is closed for now (a failed write, reopening): a client
    /// should retry later; not a fault of the request or of the data.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_)) || self.needs_reopen()
    }
}

/// What the last pass of a collector did, kept for `pga-agent status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CollectorHealth {
    pub last_run_ms: i64,
    pub last_duration_ms: f64,
    pub last_samples: u64,
    pub last_error: Option<String>,
    pub runs_total: u64,
    pub errors_total: u64,
}

/// One collection of the open head block, as stored in the `head` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HeadRow {
    ts: i64,
    /// Series id and the value's bits (kept as bits so NaN payloads survive).
    samples: Vec<(u64, u64)>,
}

/// One row of the `head` table, decoded.
pub(crate) struct HeadEntry {
    pub(crate) key: u64,
    pub(crate) ts: i64,
    pub(crate) pairs: Vec<(SeriesId, f64)>,
    /// The log events stored with the collection.
    pub(crate) events: Vec<LogEvent>,
    /// Bytes the row (and its events) take in the tables.
    pub(crate) bytes: usize,
}

/// The open head's collections, in the order they were stored.
pub(crate) fn read_head(txn: &redb::ReadTransaction) -> Result<Vec<HeadEntry>, StoreError> {
    let mut out = Vec::new();
    let mut events = logs::read_head_logs(txn)?;
    for entry in txn.open_table(HEAD)?.iter()? {
        let (k, v) = entry?;
        let (row_events, event_bytes) = events.remove(&k.value()).unwrap_or_default();
        let row: HeadRow = postcard::from_bytes(v.value())
            .map_err(|e| StoreError::Damaged(format!("head row {}: {e}", k.value())))?;
        out.push(HeadEntry {
            key: k.value(),
            ts: row.ts,
            pairs: row
                .samples
                .iter()
                .map(|&(id, bits)| (SeriesId(id), f64::from_bits(bits)))
                .collect(),
            events: row_events,
            bytes: v.value().len() + event_bytes,
        });
    }
    Ok(out)
}

/// What opening the store found.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// A damaged store file moved aside (never deleted), and why.
    pub moved_aside: Option<(PathBuf, String)>,
    pub head_collections: u64,
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendReport {
    pub new_series: usize,
    /// Sequence number of the block sealed by this append, if one was.
    pub sealed: Option<u64>,
    pub evicted_blocks: u64,
    /// Samples left out because their series is not valid (a collector's bug).
    pub rejected_samples: u64,
    /// Log events left out because they are not valid (a collector's bug).
    pub rejected_events: u64,
}

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    seq: u64,
    min_ts: i64,
    max_ts: i64,
    bytes: u64,
}

/// The agent's writable handle on its store.
pub struct Store {
    /// The open database; `None` while closed after a failed write.
    db: Option<Arc<Database>>,
    /// The same, for the handles of this process (the endpoint).
    slot: Arc<handle::DbSlot>,
    path: PathBuf,
    opts: StoreOptions,
    /// What readers in this process (the endpoint) see without a transaction.
    shared: Arc<std::sync::RwLock<handle::Shared>>,
    agent_id: AgentId,
    next_seq: u64,
    /// Dense: `metas[id]` describes series `id`.
    metas: Vec<SeriesMeta>,
    /// Hash of (name, labels) to the ids with that hash.
    intern: HashMap<u64, Vec<u32>>,
    builder: BlockBuilder,
    head_window: Option<i64>,
    next_head_row: u64,
    head_bytes: u64,
    dict_bytes: u64,
    index: std::collections::VecDeque<IndexEntry>,
    fill: f64,
    health: StoreHealth,
    health_file: health::HealthFile,
    /// Set from a failed write until the store is open and writing again.
    failure: Option<Failure>,
    /// The wait before the next attempt to open the store again.
    retry_backoff: Duration,
}

/// A write failed: the store is closed until [`Store::recover`] opens it again.
#[derive(Debug, Clone, Copy)]
struct Failure {
    /// Do not try again before this ...
    next_attempt: Instant,
    /// ... unless the filesystem has more room than this (free bytes at the failure).
    free_then: Option<u64>,
    /// The failure was a full filesystem: evict to fit before writing again.
    no_space: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("agent_id", &self.agent_id)
            .field("next_seq", &self.next_seq)
            .field("series", &self.metas.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn series_hash(name: &str, labels: &[(String, String)]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    labels.hash(&mut h);
    h.finish()
}

fn meta_u64(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(match table.get(key)? {
        Some(v) => Some(u64::from_le_bytes(v.value().try_into().map_err(|_| {
            StoreError::Damaged(format!("meta {key} is not 8 bytes"))
        })?)),
        None => None,
    })
}

impl Store {
    /// Opens (or creates) the store in `data_dir`. A store file that cannot be opened
    /// because it is damaged is moved aside with a timestamp and a fresh store is
    /// started; the report says so.
    pub fn open(data_dir: &Path, opts: StoreOptions) -> Result<(Store, OpenReport), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|error| StoreError::DataDir {
            path: data_dir.to_owned(),
            error,
        })?;
        let path = data_dir.join(STORE_FILE);
        let mut report = OpenReport::default();
        let db = open_or_move_aside(&path, &mut report)?;
        let mut store = Store {
            db: Some(Arc::new(db)),
            slot: Default::default(),
            path,
            opts,
            shared: Default::default(),
            agent_id: AgentId::default(),
            next_seq: 1,
            metas: Vec::new(),
            intern: HashMap::new(),
            builder: BlockBuilder::new(),
            head_window: None,
            next_head_row: 0,
            head_bytes: 0,
            dict_bytes: 0,
            index: Default::default(),
            fill: INITIAL_FILL,
            health: StoreHealth::new(opts.max_bytes),
            health_file: health::HealthFile::open(data_dir),
            failure: None,
            retry_backoff: RETRY_MIN,
        };
        store.init(&report)?;
        store.load()?;
        store.slot.set(store.db.clone());
        store.health.budget_bytes = store.capacity();
        store.publish_health();
        report.head_collections = store.next_head_row;
        Ok((store, report))
    }

    /// The open database, or why there is none.
    fn db(&self) -> Result<&Arc<Database>, StoreError> {
        self.db
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable(self.health.summary()))
    }

    /// How the store's writes go.
    pub fn health(&self) -> &StoreHealth {
        &self.health
    }

    /// Shows the health to the endpoint and to `pga-agent status`.
    fn publish_health(&mut self) {
        self.health.updated_ms = now_ms();
        if let Ok(mut shared) = self.shared.write() {
            shared.health = Some(self.health.clone());
        }
        self.health_file.write(&self.health);
    }

    /// Creates the tables and identity of a new store, upgrades an older store's
    /// schema, and records a moved-aside file.
    fn init(&mut self, report: &OpenReport) -> Result<(), StoreError> {
        let txn = self.db()?.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if meta.get("schema")?.is_none() {
                meta.insert("schema", SCHEMA.to_le_bytes().as_slice())?;
                meta.insert("agent_id", new_agent_id().0.as_slice())?;
                meta.insert("created_ms", now_ms().to_le_bytes().as_slice())?;
                meta.insert("next_seq", 1u64.to_le_bytes().as_slice())?;
            }
            let schema = meta
                .get("schema")?
                .map(|v| v.value().to_vec())
                .unwrap_or_default();
            let schema = <[u8; 4]>::try_from(schema.as_slice())
                .map(u32::from_le_bytes)
                .map_err(|_| StoreError::Damaged(format!("meta schema is {schema:?}")))?;
            let mut upgraded = None;
            match schema {
                1 => {
                    let renamed = migrate::v1_to_v2(&txn)?;
                    meta.insert("schema", SCHEMA.to_le_bytes().as_slice())?;
                    upgraded = Some(format!(
                        "store schema 1 upgraded to {SCHEMA}: the PostgreSQL instance label of \
                         {renamed} series renamed from `instance` to `pg_instance` (same series ids)"
                    ));
                }
                SCHEMA => {}
                schema => {
                    return Err(StoreError::TooNew {
                        path: self.path.clone(),
                        schema,
                    });
                }
            }
            for t in [BLOCKS, HEAD, HEAD_LOGS, DICTIONARY] {
                txn.open_table(t)?;
            }
            txn.open_table(BLOCK_INDEX)?;
            txn.open_table(COLLECTORS)?;
            txn.open_table(CURSORS)?;
            let mut events = txn.open_table(EVENTS)?;
            if let Some((aside, why)) = &report.moved_aside {
                let line = format!(
                    "damaged store moved aside to {} ({why}); started a fresh store",
                    aside.display()
                );
                events.insert(now_ms(), line.as_str())?;
            }
            if let Some(line) = &upgraded {
                tracing::info!(store = %self.path.display(), "{line}");
                events.insert(now_ms(), line.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Loads identity, dictionary, block index and the open head into memory.
    fn load(&mut self) -> Result<(), StoreError> {
        let txn = self.db()?.begin_read()?;
        let meta = txn.open_table(META)?;
        let id = meta
            .get("agent_id")?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| StoreError::Damaged("no agent_id".into()))?;
        self.agent_id = AgentId(
            id.try_into()
                .map_err(|_| StoreError::Damaged("agent_id is not 16 bytes".into()))?,
        );
        self.next_seq = meta_u64(&meta, "next_seq")?.unwrap_or(1);

        self.metas.clear();
        self.intern.clear();
        self.dict_bytes = 0;
        for entry in txn.open_table(DICTIONARY)?.iter()? {
            let (_, frame) = entry?;
            self.dict_bytes += frame.value().len() as u64;
            let (_, entries) = pga_format::dictionary::decode(frame.value())
                .map_err(|e| StoreError::Damaged(format!("dictionary frame: {e}")))?;
            for meta in entries {
                if meta.id.0 != self.metas.len() as u64 {
                    return Err(StoreError::Damaged(format!(
                        "series id {} out of order (expected {})",
                        meta.id,
                        self.metas.len()
                    )));
                }
                self.intern
                    .entry(series_hash(&meta.name, &meta.labels))
                    .or_default()
                    .push(meta.id.0 as u32);
                self.metas.push(meta);
            }
        }

        self.index.clear();
        for entry in txn.open_table(BLOCK_INDEX)?.iter()? {
            let (seq, (min_ts, max_ts, bytes)) = {
                let (k, v) = entry?;
                (k.value(), v.value())
            };
            self.index.push_back(IndexEntry {
                seq,
                min_ts,
                max_ts,
                bytes,
            });
        }

        self.builder.clear();
        self.head_window = None;
        self.next_head_row = 0;
        self.head_bytes = 0;
        let mut latest = Vec::new();
        for row in read_head(&txn)? {
            self.builder.push_collection(row.ts, &row.pairs)?;
            for e in row.events {
                self.builder.push_log_event(e)?;
            }
            self.head_window = Some(row.ts.div_euclid(self.opts.block_ms));
            self.next_head_row = row.key + 1;
            self.head_bytes += row.bytes as u64;
            latest.push((row.ts, row.pairs));
        }
        if let Ok(mut shared) = self.shared.write() {
            let health = shared.health.take();
            *shared = handle::Shared {
                health,
                ..handle::Shared::default()
            };
        }
        self.publish(&self.metas, 0, &[]);
        for (ts, pairs) in latest {
            self.publish(&[], ts, &pairs);
        }
        Ok(())
    }

    pub fn agent_id(&self) -> AgentId {
        self.agent_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every series the store knows, by id.
    pub fn series(&self) -> &[SeriesMeta] {
        &self.metas
    }

    /// Bytes of blocks, head rows and dictionary frames: what the budget bounds.
    pub fn logical_bytes(&self) -> u64 {
        self.index.iter().map(|e| e.bytes).sum::<u64>() + self.head_bytes + self.dict_bytes
    }

    /// Size of the store file on disk.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Number of sealed blocks held.
    pub fn block_count(&self) -> usize {
        self.index.len()
    }

    /// The sequence numbers of the oldest and newest sealed block.
    pub fn sequence_range(&self) -> Option<(u64, u64)> {
        Some((self.index.front()?.seq, self.index.back()?.seq))
    }

    /// The time span of the data held: oldest sealed block to newest sample.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let head = self.builder.time_range();
        let oldest = self.index.iter().map(|e| e.min_ts).min();
        let newest = self.index.iter().map(|e| e.max_ts).max();
        let lo = oldest.into_iter().chain(head.map(|h| h.0)).min()?;
        let hi = newest.into_iter().chain(head.map(|h| h.1)).max()?;
        Some((lo, hi))
    }

    /// Stores one collector pass: every sample shares `ts`. Seals the head into a
    /// block first when `ts` falls in a new window, and evicts what the budget and
    /// retention require. `health` updates that collector's status row.
    pub fn append(
        &mut self,
        ts: i64,
        samples: &[Emitted],
        health: Option<(&str, &CollectorHealth)>,
    ) -> Result<AppendReport, StoreError> {
        self.append_with_logs(ts, samples, &LogBatch::default(), health)
    }

    /// [`Store::append`] with the pass's log events (into the head block's log column)
    /// and its collector's cursor, all in the one transaction.
    ///
    /// While the store is closed after a failed write, first tries to open it again
    /// (see the module's "Faults"); an error means the collection was not stored, and
    /// [`Store::health`] counts it.
    pub fn append_with_logs(
        &mut self,
        ts: i64,
        samples: &[Emitted],
        logs: &LogBatch,
        health: Option<(&str, &CollectorHealth)>,
    ) -> Result<AppendReport, StoreError> {
        let result = match self.recover() {
            Ok(()) => self.append_pass(ts, samples, logs, health),
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => {
                self.retry_backoff = RETRY_MIN;
                if self.health.failing_since_ms.is_some() {
                    // append_interned wrote the failure among the events.
                    self.health.failure_recorded = true;
                }
                self.health.wrote(now_ms());
                self.health.budget_bytes = self.capacity();
                if let Some((name, h)) = health
                    && let Ok(mut shared) = self.shared.write()
                {
                    shared.collectors.insert(name.to_owned(), h.clone());
                }
            }
            Err(e) => {
                let error = (!matches!(e, StoreError::Unavailable(_))).then(|| e.to_string());
                self.health.failed(now_ms(), error);
            }
        }
        self.publish_health();
        result
    }

    /// A failure that the first write after it records among the events: once per
    /// failure, however often writes fail and succeed by turns until it is over.
    fn failure_event(&self) -> Option<String> {
        let since = self.health.failing_since_ms?;
        if self.health.failure_recorded {
            return None;
        }
        Some(format!(
            "writes failed from {} for {} s: {} collection(s) lost; last error: {}",
            since,
            (now_ms() - since).max(0) / 1000,
            self.health.lost_in_failure,
            self.health.last_error.as_deref().unwrap_or("-")
        ))
    }

    /// Opens the store again after a failed write, when it is time to try: at once
    /// when the filesystem has more room than at the failure, else after the back-off.
    /// After a full filesystem, first evicts what no longer fits.
    fn recover(&mut self) -> Result<(), StoreError> {
        let Some(failure) = self.failure else {
            return Ok(());
        };
        let free = health::free_bytes(&self.path);
        let more_room = matches!((free, failure.free_then), (Some(now), Some(then)) if now > then + MORE_ROOM_BYTES);
        if Instant::now() < failure.next_attempt && !more_room {
            return Err(StoreError::Unavailable(format!(
                "{}; trying again in {} s",
                self.health.summary(),
                failure
                    .next_attempt
                    .saturating_duration_since(Instant::now())
                    .as_secs()
                    + 1
            )));
        }
        let result = self.reopen(failure.no_space);
        if let Err(e) = &result {
            self.fail(e);
        } else {
            self.failure = None;
        }
        result
    }

    fn reopen(&mut self, no_space: bool) -> Result<(), StoreError> {
        if self.db.is_none() {
            let mut report = OpenReport::default();
            let db = open_or_move_aside(&self.path, &mut report)?;
            self.db = Some(Arc::new(db));
            self.init(&report)?;
            self.load()?;
            self.slot.set(self.db.clone());
            self.health.reopens_total += 1;
            if let Some((aside, why)) = &report.moved_aside {
                tracing::error!(moved_to = %aside.display(), reason = %why, "the store file was damaged when opened again: it was moved aside (not deleted) and a fresh store started");
            }
            tracing::info!(store = %self.path.display(), "store opened again after a failed write");
        }
        if no_space {
            let evicted = self.evict_to_fit()?;
            if evicted > 0 {
                tracing::info!(
                    evicted_blocks = evicted,
                    budget_bytes = self.capacity(),
                    "evicted old blocks to fit what the filesystem holds"
                );
            }
        }
        Ok(())
    }

    /// Closes the store after a failed write; [`Store::recover`] opens it again.
    fn fail(&mut self, error: &StoreError) {
        self.close_db();
        self.failure = Some(Failure {
            next_attempt: Instant::now() + self.retry_backoff,
            free_then: health::free_bytes(&self.path),
            no_space: error.is_no_space()
                || self.failure.is_some_and(|f| f.no_space)
                || health::free_bytes(&self.path).is_some_and(|f| f < MORE_ROOM_BYTES),
        });
        self.retry_backoff = (self.retry_backoff * 2).min(RETRY_MAX);
    }

    /// Closes the database: the handles see none; reads in flight finish first.
    fn close_db(&mut self) {
        self.slot.set(None);
        let Some(mut db) = self.db.take() else {
            return;
        };
        let deadline = Instant::now() + CLOSE_WAIT;
        loop {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    if let Err(error) = db.close() {
                        tracing::debug!(%error, "closing the failed store");
                    }
                    return;
                }
                Err(shared) if Instant::now() < deadline => {
                    db = shared;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => {
                    // A read outlived the wait; it closes the file when it ends, and
                    // opening again waits for that.
                    tracing::warn!("a read of the store did not end within 30 s of a failed write");
                    return;
                }
            }
        }
    }

    /// One transaction that only evicts what the budget (shrunk to the filesystem's
    /// room) no longer holds, so the next write finds free pages in the file.
    fn evict_to_fit(&mut self) -> Result<u64, StoreError> {
        let db = self.db()?.clone();
        let txn = db.begin_write()?;
        let evicted = self.evict(&txn, i64::MIN)?;
        if evicted == 0 {
            txn.abort()?;
        } else if let Err(e) = txn.commit() {
            // Memory is ahead of the file now; the reopen reloads it.
            return Err(e.into());
        }
        Ok(evicted)
    }

    /// The pass itself: see [`Store::append_with_logs`].
    fn append_pass(
        &mut self,
        ts: i64,
        samples: &[Emitted],
        logs: &LogBatch,
        health: Option<(&str, &CollectorHealth)>,
    ) -> Result<AppendReport, StoreError> {
        let mut report = AppendReport::default();
        let first_new = self.metas.len();
        let mut pairs = Vec::with_capacity(samples.len());
        for s in samples {
            // A collector's bad series name costs that sample only, never the pass.
            match self.intern_series(s) {
                Ok(id) => pairs.push((SeriesId(u64::from(id)), s.value)),
                Err(e) => {
                    report.rejected_samples += 1;
                    tracing::warn!(error = %e, "sample not stored");
                }
            }
        }
        report.new_series = self.metas.len() - first_new;
        // A collector's invalid event costs that event only; the batch is copied only then.
        let valid: Vec<bool> = logs.events.iter().map(|e| e.validate().is_ok()).collect();
        let filtered;
        let batch = if valid.iter().all(|v| *v) {
            logs
        } else {
            for (e, _) in logs.events.iter().zip(&valid).filter(|(_, ok)| !**ok) {
                if let Err(error) = e.validate() {
                    tracing::warn!(%error, "log event not stored");
                }
                report.rejected_events += 1;
            }
            filtered = LogBatch {
                events: logs
                    .events
                    .iter()
                    .zip(&valid)
                    .filter(|(_, ok)| **ok)
                    .map(|(e, _)| e.clone())
                    .collect(),
                cursor: logs.cursor.clone(),
            };
            &filtered
        };
        let result = self.append_interned(ts, &pairs, batch, first_new, health, &mut report);
        match result {
            Ok(()) => Ok(report),
            Err(e) if e.needs_reopen() => {
                let e = self.name_io(e, "write");
                self.fail(&e);
                Err(e)
            }
            Err(e) => {
                // Memory may be ahead of the file now; the file is the truth.
                self.load()?;
                Err(e)
            }
        }
    }

    /// A redb I/O error as one that names the store file.
    fn name_io(&self, e: StoreError, op: &'static str) -> StoreError {
        match e {
            StoreError::Db(redb::Error::Io(error)) => StoreError::Io {
                path: self.path.clone(),
                op,
                error,
            },
            e => e,
        }
    }

    fn intern_series(&mut self, s: &Emitted) -> Result<u32, StoreError> {
        let h = series_hash(&s.name, &s.labels);
        if let Some(ids) = self.intern.get(&h) {
            for &id in ids {
                let m = &self.metas[id as usize];
                if m.name == s.name && m.labels == s.labels {
                    return Ok(id);
                }
            }
        }
        let id = self.metas.len() as u32;
        let meta = SeriesMeta::new(
            SeriesId(u64::from(id)),
            s.name.clone(),
            s.labels.clone(),
            s.kind,
            s.unit,
            s.help,
        )
        .map_err(|error| StoreError::InvalidSeries {
            name: s.name.clone(),
            error,
        })?;
        self.intern.entry(h).or_default().push(id);
        self.metas.push(meta);
        Ok(id)
    }

    fn append_interned(
        &mut self,
        ts: i64,
        pairs: &[(SeriesId, f64)],
        logs: &LogBatch,
        first_new: usize,
        health: Option<(&str, &CollectorHealth)>,
        report: &mut AppendReport,
    ) -> Result<(), StoreError> {
        let window = ts.div_euclid(self.opts.block_ms);
        // A head that would pass HEAD_LOG_EVENTS with this pass's events is sealed early:
        // a large log backlog makes more blocks, not one huge head in memory.
        let full = self.builder.log_event_count() > 0
            && self.builder.log_event_count() + logs.events.len() > HEAD_LOG_EVENTS;
        let seal = !self.builder.is_empty() && (self.head_window != Some(window) || full);
        let sealed_frame = if seal {
            let meta = FrameMeta {
                agent_id: self.agent_id,
                sequence: self.next_seq,
            };
            Some(self.builder.encode(meta, BLOCK_ZSTD_LEVEL)?)
        } else {
            None
        };
        let sealed_range = if seal {
            self.builder.time_range()
        } else {
            None
        };
        if seal {
            self.builder.clear();
            self.next_head_row = 0;
            self.head_bytes = 0;
        }
        self.builder.push_collection(ts, pairs)?;
        for e in &logs.events {
            self.builder.push_log_event(e.clone())?;
        }
        self.head_window = Some(window);

        let txn = self.db()?.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if let (Some(frame), Some((min_ts, max_ts))) = (&sealed_frame, sealed_range) {
                let seq = self.next_seq;
                txn.open_table(BLOCKS)?.insert(seq, frame.as_slice())?;
                txn.open_table(BLOCK_INDEX)?
                    .insert(seq, (min_ts, max_ts, frame.len() as u64))?;
                txn.open_table(HEAD)?.retain(|_, _| false)?;
                txn.open_table(HEAD_LOGS)?.retain(|_, _| false)?;
                self.index.push_back(IndexEntry {
                    seq,
                    min_ts,
                    max_ts,
                    bytes: frame.len() as u64,
                });
                self.next_seq += 1;
                meta.insert("next_seq", self.next_seq.to_le_bytes().as_slice())?;
                report.sealed = Some(seq);
            }
            if first_new < self.metas.len() {
                let frame = pga_format::dictionary::encode(
                    FrameMeta {
                        agent_id: self.agent_id,
                        sequence: first_new as u64,
                    },
                    &self.metas[first_new..],
                    BLOCK_ZSTD_LEVEL,
                )?;
                self.dict_bytes += frame.len() as u64;
                txn.open_table(DICTIONARY)?
                    .insert(first_new as u64, frame.as_slice())?;
            }
            let row = HeadRow {
                ts,
                samples: pairs.iter().map(|&(id, v)| (id.0, v.to_bits())).collect(),
            };
            let bytes = postcard::to_allocvec(&row)
                .map_err(|e| StoreError::Damaged(format!("encoding a head row: {e}")))?;
            txn.open_table(HEAD)?
                .insert(self.next_head_row, bytes.as_slice())?;
            self.head_bytes += bytes.len() as u64;
            if !logs.events.is_empty() {
                let bytes = logs::encode_events(&logs.events)?;
                txn.open_table(HEAD_LOGS)?
                    .insert(self.next_head_row, bytes.as_slice())?;
                self.head_bytes += bytes.len() as u64;
            }
            self.next_head_row += 1;
            if let Some((name, value)) = &logs.cursor {
                txn.open_table(CURSORS)?
                    .insert(name.as_str(), value.as_slice())?;
            }

            if let Some((name, h)) = health {
                let bytes = postcard::to_allocvec(h)
                    .map_err(|e| StoreError::Damaged(format!("encoding collector health: {e}")))?;
                txn.open_table(COLLECTORS)?.insert(name, bytes.as_slice())?;
            }
            report.evicted_blocks = self.evict(&txn, ts)?;
            // The first write after a failure records it, in the same transaction.
            if let Some(line) = self.failure_event() {
                txn.open_table(EVENTS)?.insert(now_ms(), line.as_str())?;
            }
        }
        txn.commit()?;
        self.adapt_fill();
        self.publish(&self.metas[first_new..], ts, pairs);
        Ok(())
    }

    /// Shows a committed collection to readers in this process.
    fn publish(&self, new: &[SeriesMeta], ts: i64, pairs: &[(SeriesId, f64)]) {
        if let Ok(mut guard) = self.shared.write() {
            let shared = &mut *guard;
            shared.metas.extend_from_slice(new);
            let n = shared.metas.len();
            shared.latest.resize(n, None);
            shared.periods.resize(n, 0);
            for &(id, v) in pairs {
                let i = id.0 as usize;
                if let (Some(slot), Some(period)) =
                    (shared.latest.get_mut(i), shared.periods.get_mut(i))
                {
                    if let Some((before, _)) = *slot
                        && ts > before
                    {
                        *period = ts - before;
                    }
                    *slot = Some((ts, v));
                }
            }
            shared.next_seq = self.next_seq;
            shared.figures = self.figures();
        }
    }

    /// The store's figures from memory, for `/v1/status` while the file cannot be read.
    fn figures(&self) -> handle::Figures {
        let (oldest_ms, newest_ms) = self.time_range().unzip();
        handle::Figures {
            file_bytes: self.file_bytes(),
            logical_bytes: self.logical_bytes(),
            blocks: self.index.len() as u64,
            sequences: self.sequence_range(),
            oldest_ms,
            newest_ms,
            series: self.metas.len() as u64,
            head_collections: self.next_head_row,
        }
    }

    /// A cheap, shareable read handle for this process (the endpoint).
    pub fn handle(&self) -> StoreHandle {
        StoreHandle::new(
            self.slot.clone(),
            self.path.clone(),
            self.agent_id,
            self.shared.clone(),
        )
    }

    /// Removes the oldest blocks while the logical size is over the fill target or
    /// their data is past the retention age.
    fn evict(&mut self, txn: &redb::WriteTransaction, now_ts: i64) -> Result<u64, StoreError> {
        let target = (self.capacity() as f64 * self.fill) as u64;
        let mut logical = self.logical_bytes();
        let mut evicted = 0;
        let mut blocks = txn.open_table(BLOCKS)?;
        let mut index = txn.open_table(BLOCK_INDEX)?;
        while let Some(oldest) = self.index.front().copied() {
            let expired = self.opts.retention_ms > 0
                && oldest.max_ts < now_ts.saturating_sub(self.opts.retention_ms);
            if logical <= target && !expired {
                break;
            }
            blocks.remove(oldest.seq)?;
            index.remove(oldest.seq)?;
            self.index.pop_front();
            logical -= oldest.bytes;
            evicted += 1;
        }
        Ok(evicted)
    }

    /// The largest size the store file may reach. redb doubles its file whenever it
    /// runs out of pages, so the file can only take the sizes `len × 2^k`; the largest
    /// of those within the budget plus 5 % is the room there is. Less when the
    /// filesystem holds less ([`health::room`]).
    fn capacity(&self) -> u64 {
        let cap = self.opts.max_bytes + self.opts.max_bytes / 20;
        let mut size = self.file_bytes().max(1);
        while size.saturating_mul(2) <= cap {
            size *= 2;
        }
        let budget = size.min(cap);
        health::room(&self.path).map_or(budget, |room| budget.min(room))
    }

    /// When the file has grown past the budget anyway, fill less of it from now on.
    fn adapt_fill(&mut self) {
        let file = self.file_bytes();
        if file > self.opts.max_bytes && self.fill > MIN_FILL {
            self.fill = (self.fill * 0.9).max(MIN_FILL);
            tracing::debug!(
                file,
                budget = self.opts.max_bytes,
                fill = self.fill,
                "store file over budget; evicting earlier"
            );
        }
    }

    /// Saves opaque bytes for another collector (log offsets, …).
    pub fn set_cursor(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let txn = self.db()?.begin_write()?;
        txn.open_table(CURSORS)?.insert(name, value)?;
        txn.commit()?;
        Ok(())
    }

    pub fn cursor(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db()?.begin_read()?;
        Ok(txn
            .open_table(CURSORS)?
            .get(name)?
            .map(|v| v.value().to_vec()))
    }

    /// A reader over this store's current contents, in this process.
    pub fn reader(&self) -> reader::StoreView<'_, Database> {
        reader::StoreView::new(self.db.as_deref(), &self.path)
    }
}

fn new_agent_id() -> AgentId {
    // A random UUID (version 4) from the process's hasher seed, the clock and the pid:
    // enough to tell agents apart, no cryptographic use.
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let h = std::collections::hash_map::RandomState::new().hash_one((
            now_ms(),
            std::process::id(),
            i,
        ));
        chunk.copy_from_slice(&h.to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    AgentId(bytes)
}

use std::hash::BuildHasher;

#[derive(Debug)]
enum OpenFailure {
    InUse,
    Io(std::io::Error),
    Damaged(String),
}

fn builder() -> redb::Builder {
    let mut b = Database::builder();
    b.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    b.set_cache_size(16 << 20);
    b
}

/// Opens the store file, or creates it; a damaged one is moved aside (never deleted)
/// and a fresh one created in its place, which `report` records.
fn open_or_move_aside(path: &Path, report: &mut OpenReport) -> Result<Database, StoreError> {
    match open_db(path) {
        Ok(db) => Ok(db),
        Err(OpenFailure::InUse) => Err(StoreError::InUse {
            path: path.to_owned(),
        }),
        Err(OpenFailure::Io(error)) => Err(StoreError::Io {
            path: path.to_owned(),
            op: "be opened",
            error,
        }),
        Err(OpenFailure::Damaged(why)) => {
            let aside = path.with_file_name(format!("{STORE_FILE}.damaged-{}", now_ms()));
            std::fs::rename(path, &aside).map_err(|error| StoreError::Unreadable {
                path: path.to_owned(),
                detail: format!(
                    "damaged ({why}) and could not be moved aside to {}: {error}",
                    aside.display()
                ),
            })?;
            report.moved_aside = Some((aside, why));
            open_db(path).map_err(|e| StoreError::Unreadable {
                path: path.to_owned(),
                detail: format!("a fresh store could not be created: {e:?}"),
            })
        }
    }
}

/// Whether an I/O error met while opening says the file is not a sound store
/// (truncated, not a redb file) rather than that the system failed (no space, no
/// permission, a failing device): only the first is damage.
fn is_damage(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
    )
}

/// Opens or creates the store file, telling damage apart from other failures.
fn open_db(path: &Path) -> Result<Database, OpenFailure> {
    let exists = path.exists();
    // The open checks every page's checksum and rebuilds the free-page state: a file
    // altered since redb wrote it is reported as damaged instead of trusted. redb may
    // still panic on some impossible states of a damaged file; that is damage too.
    let result = catch_quietly(|| {
        let mut b = builder();
        b.set_check_integrity_on_open(true);
        if exists { b.open(path) } else { b.create(path) }
    });
    match result {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(OpenFailure::InUse),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))) if !is_damage(&e) => {
            Err(OpenFailure::Io(e))
        }
        Ok(Err(e)) => Err(OpenFailure::Damaged(e.to_string())),
        Err(panic) => Err(OpenFailure::Damaged(format!(
            "the file's structure is inconsistent: {panic}"
        ))),
    }
}
