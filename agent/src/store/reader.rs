//! Reading the store: by the agent itself and, read-only, by `pga-agent query`,
//! `series` and `status` while the agent runs or after it stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pga_format::{AgentId, Sample, SeriesId, SeriesMeta};
use redb::{ReadOnlyDatabase, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::Serialize;

use super::head::{HeadRow, read_head};
use super::open::{OpenFailure, builder, open_db};
use super::tables::{BLOCK_INDEX, BLOCKS, COLLECTORS, DICTIONARY, EVENTS, HEAD, META};
use super::unwind::catch_quietly;
use super::{STORE_FILE, StoreError, StoreHealth, migrate};
use crate::collect::CollectorHealth;

/// Fewer blocks than this per thread are not worth a thread of their own.
const BLOCKS_PER_THREAD: usize = 8;

/// Samples of one series, oldest first.
pub type SeriesSamples = HashMap<SeriesId, Vec<Sample>>;

/// Store health, for `pga-agent status`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    pub path: PathBuf,
    pub agent_id: String,
    pub created_ms: Option<i64>,
    pub file_bytes: u64,
    pub logical_bytes: u64,
    pub blocks: u64,
    pub oldest_sequence: Option<u64>,
    pub newest_sequence: Option<u64>,
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
    pub series: u64,
    pub head_collections: u64,
    pub collectors: Vec<(String, CollectorHealth)>,
    pub events: Vec<(i64, String)>,
    /// How the store's writes go, when the agent writing it reports that.
    pub health: Option<StoreHealth>,
}

/// The sequence numbers of the sealed blocks holding a timestamp in `from ..= to`,
/// in order.
pub(super) fn blocks_overlapping(
    txn: &redb::ReadTransaction,
    from: i64,
    to: i64,
) -> Result<Vec<u64>, StoreError> {
    let mut seqs = Vec::new();
    for entry in txn.open_table(BLOCK_INDEX)?.iter()? {
        let (k, v) = entry?;
        let (min_ts, max_ts, _) = v.value();
        if max_ts >= from && min_ts <= to {
            seqs.push(k.value());
        }
    }
    Ok(seqs)
}

/// Read access to a store through any open redb handle.
pub struct StoreView<'a, D> {
    /// `None` while the store is closed after a failed write.
    db: Option<&'a D>,
    path: &'a Path,
}

impl<D> std::fmt::Debug for StoreView<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreView")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<'a, D: ReadableDatabase + Sync> StoreView<'a, D> {
    pub(super) fn new(db: Option<&'a D>, path: &'a Path) -> Self {
        StoreView { db, path }
    }

    pub(super) fn db(&self) -> Result<&'a D, StoreError> {
        self.db.ok_or_else(|| {
            StoreError::Unavailable("closed after a failed write, opening again".into())
        })
    }

    /// The store file.
    pub fn path(&self) -> &'a Path {
        self.path
    }

    /// Every series in the dictionary, by id, with the labels this build uses (a
    /// store of an older schema that the agent has not upgraded yet is read as if it
    /// had).
    pub fn series(&self) -> Result<Vec<SeriesMeta>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let schema = txn
            .open_table(META)?
            .get("schema")?
            .and_then(|v| <[u8; 4]>::try_from(v.value()).ok())
            .map_or(migrate::SCHEMA, u32::from_le_bytes);
        let mut out = Vec::new();
        for entry in txn.open_table(DICTIONARY)?.iter()? {
            let (_, frame) = entry?;
            let (_, entries) = pga_format::dictionary::decode(frame.value())
                .map_err(|e| StoreError::Damaged(format!("dictionary frame: {e}")))?;
            out.extend(entries.into_iter().map(|mut m| {
                migrate::upgrade_labels(schema, &mut m);
                m
            }));
        }
        Ok(out)
    }

    /// The samples of `ids` with timestamps in `from ..= to`, oldest first.
    pub fn samples(
        &self,
        ids: &[SeriesId],
        from: i64,
        to: i64,
    ) -> Result<SeriesSamples, StoreError> {
        let mut wanted: Vec<SeriesId> = ids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let keep = |s: SeriesId| wanted.binary_search(&s).is_ok();
        let mut out: SeriesSamples = wanted.iter().map(|&id| (id, Vec::new())).collect();
        if wanted.is_empty() {
            return Ok(out);
        }
        let txn = self.db()?.begin_read()?;
        let seqs = blocks_overlapping(&txn, from, to)?;
        // Blocks decode independently: spread them over the cores, keep their order.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(seqs.len().div_ceil(BLOCKS_PER_THREAD))
            .max(1);
        let decode_share = |t: usize| -> Result<Vec<pga_format::DecodedBlock>, StoreError> {
            let blocks = txn.open_table(BLOCKS)?;
            let mut decoded = Vec::new();
            for &seq in seqs.iter().skip(t).step_by(threads) {
                // Evicted since the index was read: nothing to read.
                let Some(frame) = blocks.get(seq)? else {
                    continue;
                };
                let block = pga_format::decode_block_filtered(frame.value(), &keep)
                    .map_err(|e| StoreError::Damaged(format!("block {seq}: {e}")))?;
                decoded.push(block);
            }
            Ok(decoded)
        };
        let shares: Vec<Result<Vec<pga_format::DecodedBlock>, StoreError>> = if threads == 1 {
            vec![decode_share(0)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| scope.spawn(move || decode_share(t)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(StoreError::Damaged("a block decoder panicked".into()))
                        })
                    })
                    .collect()
            })
        };
        let mut blocks = Vec::new();
        for share in shares {
            blocks.extend(share?);
        }
        blocks.sort_by_key(|b| b.header.sequence);
        for block in &blocks {
            for col in &block.columns {
                if let Some(dst) = out.get_mut(&col.series) {
                    dst.extend(
                        col.samples(block)
                            .filter(|s| s.timestamp_ms >= from && s.timestamp_ms <= to),
                    );
                }
            }
        }
        for row in read_head(&txn)? {
            if row.ts < from || row.ts > to {
                continue;
            }
            for (id, value) in row.pairs {
                if let Some(dst) = out.get_mut(&id) {
                    dst.push(Sample {
                        timestamp_ms: row.ts,
                        value,
                    });
                }
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|s| s.timestamp_ms);
        }
        Ok(out)
    }

    /// Figures about the store.
    pub fn status(&self) -> Result<StoreStatus, StoreError> {
        let txn = self.db()?.begin_read()?;
        let meta = txn.open_table(META)?;
        let agent_id = meta
            .get("agent_id")?
            .and_then(|v| <[u8; 16]>::try_from(v.value()).ok())
            .map(|b| AgentId(b).to_string())
            .unwrap_or_default();
        let created_ms = meta
            .get("created_ms")?
            .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
            .map(i64::from_le_bytes);
        let index = txn.open_table(BLOCK_INDEX)?;
        let mut logical = 0;
        let (mut oldest_ms, mut newest_ms) = (None::<i64>, None::<i64>);
        for entry in index.iter()? {
            let (_, v) = entry?;
            let (min_ts, max_ts, bytes) = v.value();
            logical += bytes;
            oldest_ms = Some(oldest_ms.map_or(min_ts, |o| o.min(min_ts)));
            newest_ms = Some(newest_ms.map_or(max_ts, |n| n.max(max_ts)));
        }
        let head = txn.open_table(HEAD)?;
        for entry in head.iter()? {
            let (_, v) = entry?;
            logical += v.value().len() as u64;
            if let Ok(row) = postcard::from_bytes::<HeadRow>(v.value()) {
                oldest_ms = Some(oldest_ms.map_or(row.ts, |o| o.min(row.ts)));
                newest_ms = Some(newest_ms.map_or(row.ts, |n| n.max(row.ts)));
            }
        }
        let mut series = 0;
        for entry in txn.open_table(DICTIONARY)?.iter()? {
            let (_, frame) = entry?;
            logical += frame.value().len() as u64;
            if let Ok((frame, _)) = pga_format::frame::read_frame(frame.value()) {
                series += frame.header.series_count;
            }
        }
        let mut collectors = Vec::new();
        for entry in txn.open_table(COLLECTORS)?.iter()? {
            let (k, v) = entry?;
            if let Ok(h) = postcard::from_bytes::<CollectorHealth>(v.value()) {
                collectors.push((k.value().to_owned(), h));
            }
        }
        let mut events = Vec::new();
        for entry in txn.open_table(EVENTS)?.iter()? {
            let (k, v) = entry?;
            events.push((k.value(), v.value().to_owned()));
        }
        Ok(StoreStatus {
            path: self.path.to_owned(),
            agent_id,
            created_ms,
            file_bytes: std::fs::metadata(self.path).map_or(0, |m| m.len()),
            logical_bytes: logical,
            blocks: index.len()?,
            oldest_sequence: index.first()?.map(|(k, _)| k.value()),
            newest_sequence: index.last()?.map(|(k, _)| k.value()),
            oldest_ms,
            newest_ms,
            series,
            head_collections: head.len()?,
            collectors,
            events,
            health: None,
        })
    }
}

/// A read-only handle on a store that another process (the running agent) may be
/// writing.
pub struct StoreReader {
    db: ReadOnlyDatabase,
    path: PathBuf,
}

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StoreReader {
    /// Opens the store in `data_dir` read-only. A store left unclean by a crash is
    /// recovered first when no agent has it open (an agent recovers it itself).
    pub fn open(data_dir: &Path) -> Result<StoreReader, StoreError> {
        let path = data_dir.join(STORE_FILE);
        if !path.exists() {
            return Err(StoreError::Missing { path });
        }
        // redb's debug builds assert on some states of a damaged file: a panic while
        // opening is reported like any damage.
        let open = || match catch_quietly(|| builder().open_read_only(&path)) {
            Ok(r) => r.map_err(|e| {
                (
                    matches!(e, redb::DatabaseError::RepairAborted),
                    e.to_string(),
                )
            }),
            Err(panic) => Err((
                false,
                format!("the file's structure is inconsistent: {panic}"),
            )),
        };
        let db = match open() {
            Ok(db) => db,
            Err((true, _)) => {
                // Needs recovery and nobody is writing it: recover, then read.
                match open_db(&path) {
                    Ok(db) => drop(db),
                    Err(OpenFailure::InUse) => return Err(StoreError::InUse { path }),
                    Err(e) => {
                        return Err(StoreError::Unreadable {
                            path,
                            detail: format!("needs recovery, which failed: {e:?}"),
                        });
                    }
                }
                open().map_err(|(_, detail)| StoreError::Unreadable {
                    path: path.clone(),
                    detail,
                })?
            }
            Err((false, detail)) => return Err(StoreError::Unreadable { path, detail }),
        };
        Ok(StoreReader { db, path })
    }

    pub fn view(&self) -> StoreView<'_, ReadOnlyDatabase> {
        StoreView::new(Some(&self.db), &self.path)
    }
}
