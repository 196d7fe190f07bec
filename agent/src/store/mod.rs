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
//! | `collectors` | `&str` collector name | postcard [`CollectorHealth`](crate::collect::CollectorHealth) |
//! | `cursors` | `&str` name | opaque bytes owned by another collector (log offsets, …), written with the pass they belong to |
//! | `events` | `i64` ms | a line of text: what happened to the store (a corrupt file moved aside, …) |
//!
//! # Invariants
//!
//! - Every [`Store::append`] is one redb transaction: the collection's head row, its log
//!   events and the collector's cursor ([`LogBatch`](crate::collect::LogBatch)), any new dictionary entries, the
//!   sealing of the previous head into a block when the window changed, and evictions
//!   commit together or not at all. A crash loses at most the collection being written.
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
//!
//! # Modules, in the order a collection goes through them
//!
//! [`write_passes`] (`writer.rs`) takes the scheduler's passes off the channel and
//! appends each ([`Store::append_with_logs`], `append.rs`); an append seals the open
//! head (`head.rs`) into a block when a new window starts (`seal.rs`) and evicts the
//! oldest blocks (`evict.rs`). `open.rs` opens the file (upgrading an older schema,
//! `migrate.rs`), `faults.rs` closes and reopens it around a failed write, `health.rs`
//! tells how writes go. Readers: [`StoreHandle`] (the endpoint, in this process),
//! [`StoreReader`] and [`StoreView`] (`pga-agent query`, `series`, `status`, from
//! another process), `verify.rs` (`pga-agent status` checks every frame), `logs.rs`
//! (log events back out). `error.rs` holds [`StoreError`], `tables.rs` the tables.

mod append;
mod error;
mod evict;
mod faults;
mod handle;
mod head;
mod health;
mod logs;
mod migrate;
mod open;
mod reader;
mod seal;
mod tables;
mod unwind;
mod verify;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pga_format::{AgentId, BlockBuilder, SeriesId, SeriesMeta};
use redb::{Database, ReadableDatabase};

pub use append::AppendReport;
pub use error::StoreError;
pub use handle::{BlocksPage, StoreHandle};
pub use health::{HEALTH_FILE, HEALTHY_AFTER_MS, HealthState, StoreHealth, read_health_file};
pub use open::OpenReport;
pub use reader::{SeriesSamples, StoreReader, StoreStatus, StoreView};
use tables::CURSORS;
pub(crate) use unwind::catch_quietly;
pub use verify::Verified;
pub use writer::write_passes;

use crate::now_ms;
use crate::telemetry::StoreFigures;

/// File name of the store inside the data directory.
pub const STORE_FILE: &str = "store.redb";
/// zstd level of sealed blocks.
const BLOCK_ZSTD_LEVEL: i32 = pga_format::DEFAULT_ZSTD_LEVEL;

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
    shared: Arc<RwLock<handle::Published>>,
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
    index: VecDeque<IndexEntry>,
    fill: f64,
    health: StoreHealth,
    health_file: health::HealthFile,
    /// Set from a failed write until the store is open and writing again.
    failure: Option<faults::Failure>,
    /// The wait before the next attempt to open the store again.
    retry_backoff: Duration,
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

impl Store {
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
            shared.figures = self.shared_figures();
        }
    }

    /// The store's figures from memory, for `/v1/status` while the file cannot be read.
    fn shared_figures(&self) -> handle::Figures {
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

    /// The figures the self-metrics report after a write.
    pub fn figures(&self) -> StoreFigures {
        StoreFigures {
            file_bytes: self.file_bytes(),
            logical_bytes: self.logical_bytes(),
            blocks: self.index.len() as u64,
            series: self.metas.len() as u64,
            time_range: self.time_range(),
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
