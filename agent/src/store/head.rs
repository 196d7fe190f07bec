//! The open head block: one row per collection in the `head` table (and its log
//! events in `head_logs`, see `logs.rs`) until the head is sealed into a block.

use pga_format::{LogEvent, SeriesId};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::logs;
use super::tables::HEAD;

/// One collection of the open head block, as stored in the `head` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct HeadRow {
    pub(super) ts: i64,
    /// Series id and the value's bits (kept as bits so NaN payloads survive).
    pub(super) samples: Vec<(u64, u64)>,
}

impl HeadRow {
    /// The row of one collection, encoded for the `head` table.
    pub(super) fn encode(ts: i64, pairs: &[(SeriesId, f64)]) -> Result<Vec<u8>, StoreError> {
        let row = HeadRow {
            ts,
            samples: pairs.iter().map(|&(id, v)| (id.0, v.to_bits())).collect(),
        };
        postcard::to_allocvec(&row)
            .map_err(|e| StoreError::Damaged(format!("encoding a head row: {e}")))
    }
}

/// One row of the `head` table, decoded.
pub(super) struct HeadEntry {
    pub(super) key: u64,
    pub(super) ts: i64,
    pub(super) pairs: Vec<(SeriesId, f64)>,
    /// The log events stored with the collection.
    pub(super) events: Vec<LogEvent>,
    /// Bytes the row (and its events) take in the tables.
    pub(super) bytes: usize,
}

/// The open head's collections, in the order they were stored.
pub(super) fn read_head(txn: &redb::ReadTransaction) -> Result<Vec<HeadEntry>, StoreError> {
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
