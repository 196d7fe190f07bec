//! Store schema versions, and the upgrades `Store::open` runs on older stores.
//!
//! | schema | written by | change |
//! | --- | --- | --- |
//! | 1 | 3.0.0-alpha.1 | first version |
//! | 2 | 3.0.0-alpha.2 | the PostgreSQL instance label is `pg_instance` (was `instance`, which a Prometheus server overrides with its own target label) |
//!
//! An upgrade runs in the transaction that opens the store, so a store is either
//! wholly at its old schema or wholly at the new one. Series keep their ids: the
//! federator's mapping of this agent's ids, and the sealed blocks (which name series
//! by id only), stay valid.

use pga_format::{FrameMeta, SeriesMeta};
use redb::{ReadableTable, WriteTransaction};

use super::tables::DICTIONARY;
use super::{BLOCK_ZSTD_LEVEL, StoreError};
use crate::collect::INSTANCE_LABEL;

/// The schema this build writes.
pub(super) const SCHEMA: u32 = 2;

/// The label schema 1 named the PostgreSQL instance with.
const V1_INSTANCE_LABEL: &str = "instance";

/// Gives a series described by a store of `schema` the labels this build uses;
/// true when it changed anything.
pub(super) fn upgrade_labels(schema: u32, meta: &mut SeriesMeta) -> bool {
    if schema >= 2 || meta.label(INSTANCE_LABEL).is_some() {
        return false;
    }
    let Some(at) = meta.labels.iter().position(|(k, _)| k == V1_INSTANCE_LABEL) else {
        return false;
    };
    let (_, value) = meta.labels.remove(at);
    meta.labels.push((INSTANCE_LABEL.to_owned(), value));
    meta.labels.sort();
    true
}

/// Schema 1 → 2: rewrites the dictionary frames of series labelled `instance`
/// (same frame identity and ids, the label renamed). Returns the series renamed.
pub(super) fn v1_to_v2(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut table = txn.open_table(DICTIONARY)?;
    let mut rewrites = Vec::new();
    let mut renamed = 0;
    for entry in table.iter()? {
        let (first, frame) = entry?;
        let (header, mut entries) = pga_format::dictionary::decode(frame.value())
            .map_err(|e| StoreError::Damaged(format!("dictionary frame {}: {e}", first.value())))?;
        let changed = entries
            .iter_mut()
            .filter_map(|m| upgrade_labels(1, m).then_some(()))
            .count() as u64;
        if changed > 0 {
            let meta = FrameMeta {
                agent_id: header.agent_id,
                sequence: header.sequence,
            };
            let bytes = pga_format::dictionary::encode(meta, &entries, BLOCK_ZSTD_LEVEL)?;
            rewrites.push((first.value(), bytes));
            renamed += changed;
        }
    }
    for (first, bytes) in rewrites {
        table.insert(first, bytes.as_slice())?;
    }
    Ok(renamed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pga_format::{MetricKind, SeriesId};

    fn meta(labels: &[(&str, &str)]) -> SeriesMeta {
        SeriesMeta::new(
            SeriesId(0),
            "pg_up",
            pga_format::owned_labels(labels),
            MetricKind::Gauge,
            "",
            "",
        )
        .unwrap()
    }

    #[test]
    fn the_instance_label_is_renamed_once_and_kept_sorted() {
        let mut m = meta(&[("datname", "app"), ("instance", "main"), ("state", "idle")]);
        assert!(upgrade_labels(1, &mut m));
        assert_eq!(
            m.labels,
            meta(&[
                ("datname", "app"),
                ("pg_instance", "main"),
                ("state", "idle")
            ])
            .labels
        );
        assert!(!upgrade_labels(1, &mut m));
        let mut m = meta(&[("instance", "main")]);
        assert!(!upgrade_labels(2, &mut m), "schema 2 stores are current");
        let mut m = meta(&[("mode", "user")]);
        assert!(!upgrade_labels(1, &mut m));
    }
}
