//! Read access for the agent's own endpoint, shared across threads: pages of sealed
//! blocks plus the current head for the federator, the series dictionary, the
//! latest value of every series for `/metrics`, and the store's health.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use pga_format::{AgentId, BlockBuilder, FrameMeta, SeriesMeta};
use redb::{Database, ReadableDatabase, ReadableTable};

use super::head::read_head;
use super::reader::StoreView;
use super::tables::meta_u64;
use super::tables::{BLOCK_INDEX, BLOCKS, DICTIONARY, META};
use super::{BLOCK_ZSTD_LEVEL, StoreError, StoreHealth, StoreStatus};
use crate::collect::CollectorHealth;

/// A series is left out of `/metrics` once its newest sample is older than this many
/// of its own collection intervals ...
const STALE_INTERVALS: i64 = 3;
/// ... plus this grace for a late pass.
const STALE_GRACE_MS: i64 = 5_000;

/// What the writer publishes after every commit.
#[derive(Debug, Default)]
pub(super) struct Published {
    pub(super) metas: Vec<SeriesMeta>,
    /// `latest[id]`: the newest committed sample of series `id`.
    pub(super) latest: Vec<Option<(i64, f64)>>,
    /// `periods[id]`: the time between the two newest samples of series `id`, 0
    /// while it has fewer than two.
    pub(super) periods: Vec<i64>,
    pub(super) next_seq: u64,
    /// The store's figures as of the last commit.
    pub(super) figures: Figures,
    /// The last stored pass of each collector.
    pub(super) collectors: BTreeMap<String, CollectorHealth>,
    /// How the writes go; `None` before the writer published any.
    pub(super) health: Option<StoreHealth>,
}

/// Store figures kept in memory.
#[derive(Debug, Default, Clone)]
pub(super) struct Figures {
    pub(super) file_bytes: u64,
    pub(super) logical_bytes: u64,
    pub(super) blocks: u64,
    pub(super) sequences: Option<(u64, u64)>,
    pub(super) oldest_ms: Option<i64>,
    pub(super) newest_ms: Option<i64>,
    pub(super) series: u64,
    pub(super) head_collections: u64,
}

/// The open database, shared by the writer with the handles; empty while the
/// writer has it closed after a failed write.
#[derive(Debug, Default)]
pub(super) struct DbSlot(RwLock<Option<Arc<Database>>>);

impl DbSlot {
    pub(super) fn set(&self, db: Option<Arc<Database>>) {
        match self.0.write() {
            Ok(mut slot) => *slot = db,
            Err(poisoned) => *poisoned.into_inner() = db,
        }
    }

    fn get(&self) -> Option<Arc<Database>> {
        match self.0.read() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// One response's worth of blocks for a puller.
#[derive(Debug, Clone, Default)]
pub struct BlocksPage {
    /// Sealed block frames with sequence numbers after the one asked for, oldest first.
    pub frames: Vec<Vec<u8>>,
    /// Sequence numbers of `frames`, in the same order.
    pub sequences: Vec<u64>,
    /// The open head as a block frame, when every sealed block after the one asked
    /// for is in `frames` and the head holds anything. Provisional: its sequence
    /// number is `head_sequence`, and the sealed block of that number will hold
    /// everything it holds and more.
    pub head: Option<Vec<u8>>,
    /// The sequence number the head will have when sealed.
    pub head_sequence: u64,
    /// Oldest and newest sealed sequence held.
    pub oldest: Option<u64>,
    pub newest: Option<u64>,
    /// Sealed blocks after the last one in `frames` remain: ask again.
    pub more: bool,
    /// Blocks after the one asked for that were evicted before this request:
    /// `first ..= last`.
    pub gap: Option<(u64, u64)>,
}

/// A shareable read handle on the store of this process.
#[derive(Clone)]
pub struct StoreHandle {
    slot: Arc<DbSlot>,
    path: PathBuf,
    agent_id: AgentId,
    shared: Arc<RwLock<Published>>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StoreHandle {
    pub(super) fn new(
        slot: Arc<DbSlot>,
        path: PathBuf,
        agent_id: AgentId,
        shared: Arc<RwLock<Published>>,
    ) -> Self {
        StoreHandle {
            slot,
            path,
            agent_id,
            shared,
        }
    }

    pub fn agent_id(&self) -> AgentId {
        self.agent_id
    }

    /// The open database, or why the store is not available now.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.slot.get().ok_or_else(|| {
            StoreError::Unavailable(
                self.health()
                    .map_or_else(|| "closed".to_owned(), |h| h.summary()),
            )
        })
    }

    /// How the store's writes go, as the writer last published it.
    pub fn health(&self) -> Option<StoreHealth> {
        self.shared.read().ok()?.health.clone()
    }

    /// Sealed blocks after `after`, oldest first, until `max_bytes` is reached (at
    /// least one block is returned however large), then the head when all sealed
    /// blocks were returned. One read transaction: a consistent snapshot.
    pub fn blocks_after(&self, after: u64, max_bytes: usize) -> Result<BlocksPage, StoreError> {
        let txn = self.db()?.begin_read()?;
        let index = txn.open_table(BLOCK_INDEX)?;
        let blocks = txn.open_table(BLOCKS)?;
        let mut page = BlocksPage {
            oldest: index.first()?.map(|(k, _)| k.value()),
            newest: index.last()?.map(|(k, _)| k.value()),
            head_sequence: meta_u64(&txn.open_table(META)?, "next_seq")?.unwrap_or(1),
            ..BlocksPage::default()
        };
        if let Some(oldest) = page.oldest
            && after.saturating_add(1) < oldest
        {
            page.gap = Some((after + 1, oldest - 1));
        } else if page.oldest.is_none() && after.saturating_add(1) < page.head_sequence {
            // Everything sealed was evicted.
            page.gap = Some((after + 1, page.head_sequence - 1));
        }
        let mut bytes = 0usize;
        let start = after.saturating_add(1);
        for entry in blocks.range(start..)? {
            let (k, v) = entry?;
            if !page.frames.is_empty() && bytes + v.value().len() > max_bytes {
                page.more = true;
                break;
            }
            bytes += v.value().len();
            page.sequences.push(k.value());
            page.frames.push(v.value().to_vec());
        }
        if !page.more {
            let mut builder = BlockBuilder::new();
            for row in read_head(&txn)? {
                builder.push_collection(row.ts, &row.pairs)?;
                for e in row.events {
                    builder.push_log_event(e)?;
                }
            }
            if !builder.is_empty() && page.head_sequence > after {
                let meta = FrameMeta {
                    agent_id: self.agent_id,
                    sequence: page.head_sequence,
                };
                page.head = Some(builder.encode(meta, BLOCK_ZSTD_LEVEL)?);
            }
        }
        Ok(page)
    }

    /// Dictionary frames describing series with ids after `after` (all with `None`),
    /// in id order. A frame may also describe some ids at or before `after`.
    pub fn dictionary_after(&self, after: Option<u64>) -> Result<Vec<Vec<u8>>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let mut out = Vec::new();
        for entry in txn.open_table(DICTIONARY)?.iter()? {
            let (first, frame) = entry?;
            let count = pga_format::frame::read_frame(frame.value())
                .map(|(f, _)| f.header.series_count)
                .map_err(|e| {
                    StoreError::Damaged(format!("dictionary frame {}: {e}", first.value()))
                })?;
            let last = first.value() + count.saturating_sub(1);
            if after.is_none_or(|a| last > a) {
                out.push(frame.value().to_vec());
            }
        }
        Ok(out)
    }

    /// Every series with its newest committed sample, if it has one.
    pub fn latest(&self) -> Vec<(SeriesMeta, Option<(i64, f64)>)> {
        match self.shared.read() {
            Ok(s) => s
                .metas
                .iter()
                .cloned()
                .zip(s.latest.iter().copied().chain(std::iter::repeat(None)))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// [`StoreHandle::latest`] with every series whose newest sample is stale at
    /// `now_ms` set to `None`: older than three of its own collection intervals plus
    /// 5 s (a series with one sample only: its value is kept).
    pub fn fresh(&self, now_ms: i64) -> Vec<(SeriesMeta, Option<(i64, f64)>)> {
        let Ok(s) = self.shared.read() else {
            return Vec::new();
        };
        s.metas
            .iter()
            .enumerate()
            .map(|(i, meta)| {
                let sample = s.latest.get(i).copied().flatten().filter(|&(ts, _)| {
                    let period = s.periods.get(i).copied().unwrap_or(0);
                    period <= 0
                        || now_ms.saturating_sub(ts) <= STALE_INTERVALS * period + STALE_GRACE_MS
                });
                (meta.clone(), sample)
            })
            .collect()
    }

    /// Store figures, as `pga-agent status` shows them, with the store's health.
    /// While the store file cannot be read (closed after a failed write), the figures
    /// of the last commit, from memory.
    pub fn status(&self) -> Result<StoreStatus, StoreError> {
        let read = self
            .db()
            .and_then(|db| StoreView::new(Some(&*db), &self.path).status());
        let mut status = match read {
            Ok(status) => status,
            Err(e) if e.is_unavailable() => self.remembered_status(),
            Err(e) => return Err(e),
        };
        status.health = self.health();
        Ok(status)
    }

    fn remembered_status(&self) -> StoreStatus {
        let (figures, collectors) = match self.shared.read() {
            Ok(s) => (
                s.figures.clone(),
                s.collectors
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            Err(_) => Default::default(),
        };
        StoreStatus {
            path: self.path.clone(),
            agent_id: self.agent_id.to_string(),
            created_ms: None,
            file_bytes: std::fs::metadata(&self.path).map_or(figures.file_bytes, |m| m.len()),
            logical_bytes: figures.logical_bytes,
            blocks: figures.blocks,
            oldest_sequence: figures.sequences.map(|s| s.0),
            newest_sequence: figures.sequences.map(|s| s.1),
            oldest_ms: figures.oldest_ms,
            newest_ms: figures.newest_ms,
            series: figures.series,
            head_collections: figures.head_collections,
            collectors,
            events: Vec::new(),
            health: None,
        }
    }
}
