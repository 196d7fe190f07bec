//! Appending one collector pass: its samples interned as series (new ones described
//! by a dictionary frame), one head row, its log events and cursor, the collector's
//! health, the sealing of the previous head ([`seal`](super::seal)) and eviction
//! ([`evict`](super::evict)), all in one redb transaction.

use std::hash::{Hash, Hasher};

use pga_format::{FrameMeta, SeriesId, SeriesMeta};

use super::faults::RETRY_MIN;
use super::head::HeadRow;
use super::logs;
use super::tables::{COLLECTORS, CURSORS, DICTIONARY, EVENTS, HEAD, HEAD_LOGS};
use super::{BLOCK_ZSTD_LEVEL, Store, StoreError};
use crate::collect::{CollectorHealth, Emitted, LogBatch};
use crate::now_ms;

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendReport {
    pub new_series: usize,
    /// Sequence number of the block sealed by this append, if one was.
    pub sealed: Option<u64>,
    pub evicted_blocks: u64,
    /// Samples left out because their series is not valid (a collector's bug).
    pub rejected_samples: u64,
    /// Log events left out because they are not valid (a collector's bug).
    pub rejected_events: u64,
}

pub(super) fn series_hash(name: &str, labels: &[(String, String)]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    labels.hash(&mut h);
    h.finish()
}

impl Store {
    /// Stores one collector pass: every sample shares `ts`. Seals the head into a
    /// block first when `ts` falls in a new window, and evicts what the budget and
    /// retention require. `health` updates that collector's status row.
    pub fn append(
        &mut self,
        ts: i64,
        samples: &[Emitted],
        health: Option<(&str, &CollectorHealth)>,
    ) -> Result<AppendReport, StoreError> {
        self.append_with_logs(ts, samples, &LogBatch::default(), health)
    }

    /// [`Store::append`] with the pass's log events (into the head block's log column)
    /// and its collector's cursor, all in the one transaction.
    ///
    /// While the store is closed after a failed write, first tries to open it again
    /// (see the module's "Faults"); an error means the collection was not stored, and
    /// [`Store::health`] counts it.
    pub fn append_with_logs(
        &mut self,
        ts: i64,
        samples: &[Emitted],
        logs: &LogBatch,
        health: Option<(&str, &CollectorHealth)>,
    ) -> Result<AppendReport, StoreError> {
        let result = match self.recover() {
            Ok(()) => self.append_pass(ts, samples, logs, health),
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => {
                self.retry_backoff = RETRY_MIN;
                if self.health.failing_since_ms.is_some() {
                    // append_interned wrote the failure among the events.
                    self.health.failure_recorded = true;
                }
                self.health.wrote(now_ms());
                self.health.budget_bytes = self.capacity();
                if let Some((name, h)) = health
                    && let Ok(mut shared) = self.shared.write()
                {
                    shared.collectors.insert(name.to_owned(), h.clone());
                }
            }
            Err(e) => {
                let error = (!matches!(e, StoreError::Unavailable(_))).then(|| e.to_string());
                self.health.failed(now_ms(), error);
            }
        }
        self.publish_health();
        result
    }

    /// The pass itself: see [`Store::append_with_logs`].
    fn append_pass(
        &mut self,
        ts: i64,
        samples: &[Emitted],
        logs: &LogBatch,
        health: Option<(&str, &CollectorHealth)>,
    ) -> Result<AppendReport, StoreError> {
        let mut report = AppendReport::default();
        let first_new = self.metas.len();
        let mut pairs = Vec::with_capacity(samples.len());
        for s in samples {
            // A collector's bad series name costs that sample only, never the pass.
            match self.intern_series(s) {
                Ok(id) => pairs.push((SeriesId(u64::from(id)), s.value)),
                Err(e) => {
                    report.rejected_samples += 1;
                    tracing::warn!(error = %e, "sample not stored");
                }
            }
        }
        report.new_series = self.metas.len() - first_new;
        // A collector's invalid event costs that event only; the batch is copied only then.
        let valid: Vec<bool> = logs.events.iter().map(|e| e.validate().is_ok()).collect();
        let filtered;
        let batch = if valid.iter().all(|v| *v) {
            logs
        } else {
            for (e, _) in logs.events.iter().zip(&valid).filter(|(_, ok)| !**ok) {
                if let Err(error) = e.validate() {
                    tracing::warn!(%error, "log event not stored");
                }
                report.rejected_events += 1;
            }
            filtered = LogBatch {
                events: logs
                    .events
                    .iter()
                    .zip(&valid)
                    .filter(|(_, ok)| **ok)
                    .map(|(e, _)| e.clone())
                    .collect(),
                cursor: logs.cursor.clone(),
            };
            &filtered
        };
        let result = self.append_interned(ts, &pairs, batch, first_new, health, &mut report);
        match result {
            Ok(()) => Ok(report),
            Err(e) if e.needs_reopen() => {
                let e = self.name_io(e, "write");
                self.fail(&e);
                Err(e)
            }
            Err(e) => {
                // Memory may be ahead of the file now; the file is the truth.
                self.load()?;
                Err(e)
            }
        }
    }

    /// A redb I/O error as one that names the store file.
    fn name_io(&self, e: StoreError, op: &'static str) -> StoreError {
        match e {
            StoreError::Db(redb::Error::Io(error)) => StoreError::Io {
                path: self.path.clone(),
                op,
                error,
            },
            e => e,
        }
    }

    fn intern_series(&mut self, s: &Emitted) -> Result<u32, StoreError> {
        let h = series_hash(&s.name, &s.labels);
        if let Some(ids) = self.intern.get(&h) {
            for &id in ids {
                let m = &self.metas[id as usize];
                if m.name == s.name && m.labels == s.labels {
                    return Ok(id);
                }
            }
        }
        let id = self.metas.len() as u32;
        let meta = SeriesMeta::new(
            SeriesId(u64::from(id)),
            s.name.clone(),
            s.labels.clone(),
            s.kind,
            s.unit,
            s.help,
        )
        .map_err(|error| StoreError::InvalidSeries {
            name: s.name.clone(),
            error,
        })?;
        self.intern.entry(h).or_default().push(id);
        self.metas.push(meta);
        Ok(id)
    }

    /// Writes one interned collection, sealing the head before it when it starts a
    /// new window, then evicts: one transaction.
    fn append_interned(
        &mut self,
        ts: i64,
        pairs: &[(SeriesId, f64)],
        logs: &LogBatch,
        first_new: usize,
        health: Option<(&str, &CollectorHealth)>,
        report: &mut AppendReport,
    ) -> Result<(), StoreError> {
        let sealed = self.seal_head(ts, logs.events.len())?;
        self.builder.push_collection(ts, pairs)?;
        for e in &logs.events {
            self.builder.push_log_event(e.clone())?;
        }
        self.head_window = Some(ts.div_euclid(self.opts.block_ms));

        let txn = self.db()?.begin_write()?;
        {
            if let Some(sealed) = &sealed {
                report.sealed = Some(self.write_sealed(&txn, sealed)?);
            }
            if first_new < self.metas.len() {
                let frame = pga_format::dictionary::encode(
                    FrameMeta {
                        agent_id: self.agent_id,
                        sequence: first_new as u64,
                    },
                    &self.metas[first_new..],
                    BLOCK_ZSTD_LEVEL,
                )?;
                self.dict_bytes += frame.len() as u64;
                txn.open_table(DICTIONARY)?
                    .insert(first_new as u64, frame.as_slice())?;
            }
            let bytes = HeadRow::encode(ts, pairs)?;
            txn.open_table(HEAD)?
                .insert(self.next_head_row, bytes.as_slice())?;
            self.head_bytes += bytes.len() as u64;
            if !logs.events.is_empty() {
                let bytes = logs::encode_events(&logs.events)?;
                txn.open_table(HEAD_LOGS)?
                    .insert(self.next_head_row, bytes.as_slice())?;
                self.head_bytes += bytes.len() as u64;
            }
            self.next_head_row += 1;
            if let Some((name, value)) = &logs.cursor {
                txn.open_table(CURSORS)?
                    .insert(name.as_str(), value.as_slice())?;
            }

            if let Some((name, h)) = health {
                let bytes = postcard::to_allocvec(h)
                    .map_err(|e| StoreError::Damaged(format!("encoding collector health: {e}")))?;
                txn.open_table(COLLECTORS)?.insert(name, bytes.as_slice())?;
            }
            report.evicted_blocks = self.evict(&txn, ts)?;
            // The first write after a failure records it, in the same transaction.
            if let Some(line) = self.failure_event() {
                txn.open_table(EVENTS)?.insert(now_ms(), line.as_str())?;
            }
        }
        txn.commit()?;
        self.adapt_fill();
        self.publish(&self.metas[first_new..], ts, pairs);
        Ok(())
    }
}
