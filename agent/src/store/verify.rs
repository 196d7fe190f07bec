//! Reading every byte of a store that `pga-agent status` reports on, so that what
//! it shows is what the store holds: every table walked, every frame's checksum
//! checked, every head row and record decoded, the block index matched against the
//! blocks.

use pga_format::AgentId;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::Serialize;

use super::head::HeadRow;
use super::reader::StoreView;
use super::tables::{
    BLOCK_INDEX, BLOCKS, COLLECTORS, CURSORS, DICTIONARY, EVENTS, HEAD, HEAD_LOGS, META,
};
use super::{StoreError, logs};
use crate::collect::CollectorHealth;

/// What a verification read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Sealed blocks whose checksum was verified.
    pub blocks: u64,
    /// Dictionary frames decoded.
    pub dictionary_frames: u64,
    /// Series described.
    pub series: u64,
    /// Head rows (and their log events) decoded.
    pub head_rows: u64,
    /// Bytes of frames and rows read.
    pub bytes: u64,
}

fn damaged(what: impl std::fmt::Display) -> StoreError {
    StoreError::Damaged(what.to_string())
}

impl<D: ReadableDatabase + Sync> StoreView<'_, D> {
    /// Reads the whole store and checks it; the first inconsistency is an error
    /// ([`StoreError::Damaged`], or redb's own error for a damaged page).
    pub fn verify(&self) -> Result<Verified, StoreError> {
        let txn = self.db()?.begin_read()?;
        let mut v = Verified::default();

        let meta = txn.open_table(META)?;
        let agent = match meta.get("agent_id")? {
            Some(id) => AgentId(
                <[u8; 16]>::try_from(id.value())
                    .map_err(|_| damaged("meta agent_id is not 16 bytes"))?,
            ),
            None => return Err(damaged("meta has no agent_id")),
        };
        for key in ["schema"] {
            if meta.get(key)?.is_none() {
                return Err(damaged(format!("meta has no {key}")));
            }
        }
        let next_seq = super::tables::meta_u64(&meta, "next_seq")?.unwrap_or(1);

        let mut next_id = 0u64;
        for entry in txn.open_table(DICTIONARY)?.iter()? {
            let (first, frame) = entry?;
            v.bytes += frame.value().len() as u64;
            let (header, entries) = pga_format::dictionary::decode(frame.value())
                .map_err(|e| damaged(format!("dictionary frame {}: {e}", first.value())))?;
            if header.agent_id != agent {
                return Err(damaged(format!(
                    "dictionary frame {} belongs to agent {}",
                    first.value(),
                    header.agent_id
                )));
            }
            for m in entries {
                if m.id.0 != next_id {
                    return Err(damaged(format!(
                        "series id {} out of order (expected {next_id})",
                        m.id
                    )));
                }
                next_id += 1;
            }
            v.dictionary_frames += 1;
        }
        v.series = next_id;

        let index = txn.open_table(BLOCK_INDEX)?;
        let blocks = txn.open_table(BLOCKS)?;
        let mut indexed = 0u64;
        for entry in index.iter()? {
            let (seq, value) = entry?;
            let (seq, (min_ts, max_ts, len)) = (seq.value(), value.value());
            if seq >= next_seq {
                return Err(damaged(format!(
                    "block {seq} is at or past the next sequence {next_seq}"
                )));
            }
            let frame = blocks
                .get(seq)?
                .ok_or_else(|| damaged(format!("block {seq} is indexed but missing")))?;
            let bytes = frame.value();
            let (f, used) = pga_format::frame::read_frame(bytes)
                .map_err(|e| damaged(format!("block {seq}: {e}")))?;
            if used != bytes.len() || len != bytes.len() as u64 {
                return Err(damaged(format!(
                    "block {seq}: {} bytes stored, {len} indexed, {used} framed",
                    bytes.len()
                )));
            }
            if f.header.sequence != seq || f.header.agent_id != agent {
                return Err(damaged(format!(
                    "block {seq}: the frame says sequence {} of agent {}",
                    f.header.sequence, f.header.agent_id
                )));
            }
            if (f.header.min_ts, f.header.max_ts) != (min_ts, max_ts) {
                return Err(damaged(format!(
                    "block {seq}: indexed as {min_ts}..={max_ts}, the frame says {}..={}",
                    f.header.min_ts, f.header.max_ts
                )));
            }
            v.bytes += len;
            indexed += 1;
        }
        let stored = blocks.len()?;
        if stored != indexed {
            return Err(damaged(format!(
                "{stored} blocks stored, {indexed} indexed"
            )));
        }
        v.blocks = indexed;

        for entry in txn.open_table(HEAD)?.iter()? {
            let (k, row) = entry?;
            postcard::from_bytes::<HeadRow>(row.value())
                .map_err(|e| damaged(format!("head row {}: {e}", k.value())))?;
            v.bytes += row.value().len() as u64;
            v.head_rows += 1;
        }
        match txn.open_table(HEAD_LOGS) {
            Ok(table) => {
                for entry in table.iter()? {
                    let (k, events) = entry?;
                    logs::decode_events(k.value(), events.value())?;
                    v.bytes += events.value().len() as u64;
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        for entry in txn.open_table(COLLECTORS)?.iter()? {
            let (k, h) = entry?;
            postcard::from_bytes::<CollectorHealth>(h.value())
                .map_err(|e| damaged(format!("health of collector {}: {e}", k.value())))?;
        }
        for entry in txn.open_table(CURSORS)?.iter()? {
            entry?;
        }
        for entry in txn.open_table(EVENTS)?.iter()? {
            entry?;
        }
        Ok(v)
    }
}
