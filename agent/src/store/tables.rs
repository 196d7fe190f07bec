//! Table definitions of the ring store; the module documentation of `store` describes
//! each table's keys and values.

use redb::TableDefinition;

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
