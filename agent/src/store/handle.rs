//! Read access for the agent's own endpoint, shared across threads: pages of sealed
//! blocks plus the current head for the federator, the series dictionary, and the
//! latest value of every series for `/metrics`.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use pga_format::{AgentId, BlockBuilder, FrameMeta, SeriesMeta};
use redb::{Database, ReadableDatabase, ReadableTable};

use super::tables::{BLOCK_INDEX, BLOCKS, DICTIONARY, META};
use super::{BLOCK_ZSTD_LEVEL, StoreError, StoreStatus, meta_u64, read_head, reader::StoreView};

/// What the writer publishes after every commit.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) metas: Vec<SeriesMeta>,
    /// `latest[id]`: the newest committed sample of series `id`.
    pub(super) latest: Vec<Option<(i64, f64)>>,
    pub(super) next_seq: u64,
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
    db: Arc<Database>,
    path: PathBuf,
    agent_id: AgentId,
    shared: Arc<RwLock<Shared>>,
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
        db: Arc<Database>,
        path: PathBuf,
        agent_id: AgentId,
        shared: Arc<RwLock<Shared>>,
    ) -> Self {
        StoreHandle {
            db,
            path,
            agent_id,
            shared,
        }
    }

    pub fn agent_id(&self) -> AgentId {
        self.agent_id
    }

    /// Sealed blocks after `after`, oldest first, until `max_bytes` is reached (at
    /// least one block is returned however large), then the head when all sealed
    /// blocks were returned. One read transaction: a consistent snapshot.
    pub fn blocks_after(&self, after: u64, max_bytes: usize) -> Result<BlocksPage, StoreError> {
        let txn = self.db.begin_read()?;
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
        let txn = self.db.begin_read()?;
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

    /// Store figures, as `pga-agent status` shows them.
    pub fn status(&self) -> Result<StoreStatus, StoreError> {
        StoreView::new(&*self.db, &self.path).status()
    }

    /// Read access to samples and series.
    pub fn view(&self) -> StoreView<'_, Database> {
        StoreView::new(&self.db, &self.path)
    }
}
