//! Table definitions of the ring store; the module documentation of `store` describes
//! each table's keys and values.

use redb::{ReadableTable, TableDefinition};

use super::StoreError;

pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(super) const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
pub(super) const BLOCK_INDEX: TableDefinition<u64, (i64, i64, u64)> =
    TableDefinition::new("block_index");
pub(super) const HEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("head");
pub(super) const DICTIONARY: TableDefinition<u64, &[u8]> = TableDefinition::new("dictionary");
pub(super) const COLLECTORS: TableDefinition<&str, &[u8]> = TableDefinition::new("collectors");
pub(super) const CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("cursors");
pub(super) const EVENTS: TableDefinition<i64, &str> = TableDefinition::new("events");
pub(super) const HEAD_LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("head_logs");

/// A `u64` of the `meta` table (little-endian), if set.
pub(super) fn meta_u64(
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
