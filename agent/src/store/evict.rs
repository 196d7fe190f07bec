//! Eviction: the oldest sealed blocks go first, when the store's logical size passes
//! the fill target of its budget or their data is older than the retention age. The
//! budget is the room the file may take ([`Store::capacity`]), shrunk to what the
//! filesystem holds; the fill target drops when the file grows past the budget anyway.

use super::health;
use super::tables::{BLOCK_INDEX, BLOCKS};
use super::{Store, StoreError};

/// Share of the file's room (see `Store::capacity`) the logical contents may fill
/// before eviction; redb's pages, tree nodes, copy-on-write space and free space take
/// the rest. Lowered at run time when the file still grows past the budget.
pub(super) const INITIAL_FILL: f64 = 0.70;
/// Never fill less than this share, however the file behaves.
const MIN_FILL: f64 = 0.30;

impl Store {
    /// Removes the oldest blocks while the logical size is over the fill target or
    /// their data is past the retention age.
    pub(super) fn evict(
        &mut self,
        txn: &redb::WriteTransaction,
        now_ts: i64,
    ) -> Result<u64, StoreError> {
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
    pub(super) fn capacity(&self) -> u64 {
        let cap = self.opts.max_bytes + self.opts.max_bytes / 20;
        let mut size = self.file_bytes().max(1);
        while size.saturating_mul(2) <= cap {
            size *= 2;
        }
        let budget = size.min(cap);
        health::room(&self.path).map_or(budget, |room| budget.min(room))
    }

    /// When the file has grown past the budget anyway, fill less of it from now on.
    pub(super) fn adapt_fill(&mut self) {
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

    /// One transaction that only evicts what the budget (shrunk to the filesystem's
    /// room) no longer holds, so the next write finds free pages in the file.
    pub(super) fn evict_to_fit(&mut self) -> Result<u64, StoreError> {
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
}
