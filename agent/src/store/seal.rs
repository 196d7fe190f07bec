//! Sealing: when a collection falls in a new block window, or the head's log events
//! would pass [`HEAD_LOG_EVENTS`] with it, the open head is encoded into one
//! `pga-format` block frame; the append of that collection writes the block and its
//! index entry and empties the head tables in its own transaction, so the head's rows
//! and the block never both hold (or both lack) a collection.

use pga_format::FrameMeta;

use super::tables::{BLOCK_INDEX, BLOCKS, HEAD, HEAD_LOGS, META};
use super::{BLOCK_ZSTD_LEVEL, IndexEntry, Store, StoreError};

/// Log events the open head holds before it is sealed early (well under the format's
/// [`pga_format::MAX_LOG_EVENTS_PER_BLOCK`], to bound the head's memory).
pub(super) const HEAD_LOG_EVENTS: usize = 100_000;

/// A head encoded into a block frame, for the append that sealed it to write.
#[derive(Debug)]
pub(super) struct Sealed {
    frame: Vec<u8>,
    min_ts: i64,
    max_ts: i64,
}

impl Store {
    /// Seals the open head when `ts` starts a new block window or `incoming_events`
    /// more log events would pass [`HEAD_LOG_EVENTS`] (a large log backlog makes more
    /// blocks, not one huge head in memory): encodes it and empties the head in
    /// memory. `None` when the head stays open.
    pub(super) fn seal_head(
        &mut self,
        ts: i64,
        incoming_events: usize,
    ) -> Result<Option<Sealed>, StoreError> {
        let window = ts.div_euclid(self.opts.block_ms);
        let events = self.builder.log_event_count();
        let full = events > 0 && events + incoming_events > HEAD_LOG_EVENTS;
        if self.builder.is_empty() || (self.head_window == Some(window) && !full) {
            return Ok(None);
        }
        let meta = FrameMeta {
            agent_id: self.agent_id,
            sequence: self.next_seq,
        };
        let frame = self.builder.encode(meta, BLOCK_ZSTD_LEVEL)?;
        let range = self.builder.time_range();
        self.builder.clear();
        self.next_head_row = 0;
        self.head_bytes = 0;
        Ok(range.map(|(min_ts, max_ts)| Sealed {
            frame,
            min_ts,
            max_ts,
        }))
    }

    /// Writes a sealed head in the append's transaction: the block and its index
    /// entry, the head tables emptied, the next sequence number. Returns the block's
    /// sequence number.
    pub(super) fn write_sealed(
        &mut self,
        txn: &redb::WriteTransaction,
        sealed: &Sealed,
    ) -> Result<u64, StoreError> {
        let seq = self.next_seq;
        let bytes = sealed.frame.len() as u64;
        txn.open_table(BLOCKS)?
            .insert(seq, sealed.frame.as_slice())?;
        txn.open_table(BLOCK_INDEX)?
            .insert(seq, (sealed.min_ts, sealed.max_ts, bytes))?;
        txn.open_table(HEAD)?.retain(|_, _| false)?;
        txn.open_table(HEAD_LOGS)?.retain(|_, _| false)?;
        self.index.push_back(IndexEntry {
            seq,
            min_ts: sealed.min_ts,
            max_ts: sealed.max_ts,
            bytes,
        });
        self.next_seq += 1;
        txn.open_table(META)?
            .insert("next_seq", self.next_seq.to_le_bytes().as_slice())?;
        Ok(seq)
    }
}
