//! Log events in the store: the open head's events (table `head_logs`, one row per
//! collection, keyed like `head`), and reading recent events back out of sealed blocks
//! and the head for `pga-agent logs`.
//!
//! Sealed blocks carry their events in the block's log column (FORMAT.md, "Log
//! events"); the head keeps them as postcard rows until it is sealed.

use pga_format::{LogEvent, LogEventKind, Severity};
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::reader::{StoreView, blocks_overlapping};
use super::tables::{BLOCKS, HEAD_LOGS};

/// A [`LogEvent`] as a head row stores it.
#[derive(Debug, Deserialize)]
struct StoredEvent {
    ts: i64,
    severity: u8,
    kind: u8,
    sqlstate: Option<[u8; 5]>,
    pid: Option<u32>,
    instance: Option<String>,
    user: Option<String>,
    database: Option<String>,
    application: Option<String>,
    message: String,
    duration_ms: Option<f64>,
}

/// [`StoredEvent`] borrowing from the event, for writing without copies (postcard
/// encodes `&str` and `String` alike).
#[derive(Serialize)]
struct StoredEventRef<'a> {
    ts: i64,
    severity: u8,
    kind: u8,
    sqlstate: Option<[u8; 5]>,
    pid: Option<u32>,
    instance: Option<&'a str>,
    user: Option<&'a str>,
    database: Option<&'a str>,
    application: Option<&'a str>,
    message: &'a str,
    duration_ms: Option<f64>,
}

fn position<T: PartialEq>(all: &[T], v: &T) -> u8 {
    all.iter().position(|x| x == v).unwrap_or_default() as u8
}

pub(super) fn encode_events(events: &[LogEvent]) -> Result<Vec<u8>, StoreError> {
    let stored: Vec<StoredEventRef<'_>> = events
        .iter()
        .map(|e| StoredEventRef {
            ts: e.timestamp_ms,
            severity: position(&Severity::ALL, &e.severity),
            kind: position(&LogEventKind::ALL, &e.kind),
            sqlstate: e.sqlstate,
            pid: e.pid,
            instance: e.instance.as_deref(),
            user: e.user.as_deref(),
            database: e.database.as_deref(),
            application: e.application.as_deref(),
            message: &e.message,
            duration_ms: e.duration_ms,
        })
        .collect();
    postcard::to_allocvec(&stored)
        .map_err(|e| StoreError::Damaged(format!("encoding head log events: {e}")))
}

pub(super) fn decode_events(key: u64, bytes: &[u8]) -> Result<Vec<LogEvent>, StoreError> {
    let stored: Vec<StoredEvent> = postcard::from_bytes(bytes)
        .map_err(|e| StoreError::Damaged(format!("head log events {key}: {e}")))?;
    stored
        .into_iter()
        .map(|s| {
            let severity = *Severity::ALL.get(usize::from(s.severity)).ok_or_else(|| {
                StoreError::Damaged(format!("head log events {key}: severity {}", s.severity))
            })?;
            let kind = *LogEventKind::ALL.get(usize::from(s.kind)).ok_or_else(|| {
                StoreError::Damaged(format!("head log events {key}: kind {}", s.kind))
            })?;
            Ok(LogEvent {
                sqlstate: s.sqlstate,
                pid: s.pid,
                instance: s.instance,
                user: s.user,
                database: s.database,
                application: s.application,
                duration_ms: s.duration_ms,
                ..LogEvent::new(s.ts, severity, kind, s.message)
            })
        })
        .collect()
}

/// The head's events and their stored size by row key; empty for a store written
/// before the table existed.
pub(super) fn read_head_logs(
    txn: &redb::ReadTransaction,
) -> Result<std::collections::BTreeMap<u64, (Vec<LogEvent>, usize)>, StoreError> {
    let table = match txn.open_table(HEAD_LOGS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Default::default()),
        Err(e) => return Err(e.into()),
    };
    let mut out = std::collections::BTreeMap::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        let events = decode_events(k.value(), v.value())?;
        out.insert(k.value(), (events, v.value().len()));
    }
    Ok(out)
}

impl<D: ReadableDatabase + Sync> StoreView<'_, D> {
    /// Every stored log event with a timestamp in `from ..= to` for which `keep` is
    /// true, oldest first (sealed blocks, then the open head).
    pub fn log_events(
        &self,
        from: i64,
        to: i64,
        keep: &dyn Fn(&LogEvent) -> bool,
    ) -> Result<Vec<LogEvent>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let seqs = blocks_overlapping(&txn, from, to)?;
        let mut out = Vec::new();
        let blocks = txn.open_table(BLOCKS)?;
        let in_range = |e: &LogEvent| e.timestamp_ms >= from && e.timestamp_ms <= to && keep(e);
        for seq in seqs {
            let Some(frame) = blocks.get(seq)? else {
                continue;
            };
            let block = pga_format::decode_block_filtered(frame.value(), &|_| false)
                .map_err(|e| StoreError::Damaged(format!("block {seq}: {e}")))?;
            out.extend(block.log_events.into_iter().filter(|e| in_range(e)));
        }
        for (_, (events, _)) in read_head_logs(&txn)? {
            out.extend(events.into_iter().filter(|e| in_range(e)));
        }
        out.sort_by_key(|e| e.timestamp_ms);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::LogBatch;
    use crate::store::{Store, StoreOptions};

    fn event(ts: i64, msg: &str) -> LogEvent {
        LogEvent {
            sqlstate: Some(*b"22012"),
            instance: Some("main".into()),
            duration_ms: Some(1.5),
            ..LogEvent::new(ts, Severity::Error, LogEventKind::Error, msg)
        }
    }

    #[test]
    fn events_survive_a_reopen_are_sealed_into_blocks_and_commit_with_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            max_bytes: 64 << 20,
            retention_ms: 0,
            block_ms: 60_000,
        };
        let (mut store, _) = Store::open(dir.path(), opts).unwrap();
        let mut bad = event(1_000, "bad");
        bad.sqlstate = Some(*b"x2012");
        let batch = LogBatch {
            events: vec![event(1_000, "one"), bad, event(2_000, "two")],
            cursor: Some(("logs:main".into(), vec![1, 2, 3])),
        };
        let r = store.append_with_logs(60_000, &[], &batch, None).unwrap();
        assert_eq!(r.rejected_events, 1);
        drop(store);
        let (mut store, _) = Store::open(dir.path(), opts).unwrap();
        assert_eq!(store.cursor("logs:main").unwrap(), Some(vec![1, 2, 3]));
        let all = |s: &Store| {
            s.reader()
                .log_events(i64::MIN, i64::MAX, &|_| true)
                .unwrap()
        };
        let head = all(&store);
        assert_eq!(head, vec![event(1_000, "one"), event(2_000, "two")]);
        // The next window seals the head: the events move into the block's log column.
        let batch = LogBatch {
            events: vec![event(130_000, "three")],
            cursor: Some(("logs:main".into(), vec![4])),
        };
        let r = store.append_with_logs(130_000, &[], &batch, None).unwrap();
        assert!(r.sealed.is_some());
        assert_eq!(store.block_count(), 1);
        let messages: Vec<String> = all(&store).into_iter().map(|e| e.message).collect();
        assert_eq!(messages, ["one", "two", "three"]);
        let only_new = store
            .reader()
            .log_events(100_000, i64::MAX, &|_| true)
            .unwrap();
        assert_eq!(only_new.len(), 1);
        assert_eq!(store.cursor("logs:main").unwrap(), Some(vec![4]));
    }

    #[test]
    fn a_large_backlog_seals_the_head_early() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            max_bytes: 256 << 20,
            retention_ms: 0,
            block_ms: 600_000,
        };
        let (mut store, _) = Store::open(dir.path(), opts).unwrap();
        let half = crate::store::seal::HEAD_LOG_EVENTS / 2 + 1;
        let batch = LogBatch {
            events: (0..half as i64).map(|i| event(i, "e")).collect(),
            cursor: None,
        };
        let first = store.append_with_logs(1_000, &[], &batch, None).unwrap();
        assert_eq!(first.sealed, None);
        // Same window, but the head would pass its bound: sealed first.
        let second = store.append_with_logs(2_000, &[], &batch, None).unwrap();
        assert!(second.sealed.is_some());
        let events = store
            .reader()
            .log_events(i64::MIN, i64::MAX, &|_| true)
            .unwrap();
        assert_eq!(events.len(), 2 * half);
    }
}
