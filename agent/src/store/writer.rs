//! The store writer: a thread of its own that owns the [`Store`] and appends every
//! [`Pass`] the scheduler sends, reporting a store that cannot write without flooding
//! the log.
//!
//! Each stored pass is logged at DEBUG (`stored`, with the collector, timestamp and
//! counts): the line says the pass is durable.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Store, StoreError};
use crate::collect::Pass;
use crate::telemetry::Telemetry;

/// A store that keeps failing is reported at most this often ...
const STORE_REPORT_EVERY: Duration = Duration::from_secs(60);
/// ... and its cause named at ERROR level at most this often (a filesystem that
/// stays nearly full makes writes fail and succeed by turns).
const STORE_ERROR_EVERY: Duration = Duration::from_secs(600);

/// What the store writer has said about failed writes, so that it says little.
#[derive(Debug, Default)]
struct StoreReport {
    /// The last write failed.
    failing: bool,
    /// When the cause was last named (ERROR), and when anything was last said.
    error_at: Option<Instant>,
    said_at: Option<Instant>,
    /// Collections lost since the last line.
    lost: u64,
}

impl StoreReport {
    fn due(at: Option<Instant>, every: Duration) -> bool {
        at.is_none_or(|t| t.elapsed() >= every)
    }

    fn failed(&mut self, e: &StoreError, store: &Store, collector: &str, ts: i64) {
        self.lost += 1;
        if !self.failing && Self::due(self.error_at, STORE_ERROR_EVERY) {
            tracing::error!(collector, ts, error = %e, "could not store a collection; it is lost, and so is every collection until the store writes again");
            self.error_at = Some(Instant::now());
            self.said_at = self.error_at;
            self.lost = 0;
        } else if Self::due(self.said_at, STORE_REPORT_EVERY) {
            let h = store.health();
            tracing::warn!(
                lost = self.lost,
                lost_total = h.write_errors_total,
                last_error = h.last_error.as_deref().unwrap_or("-"),
                "the store still cannot write every collection"
            );
            self.said_at = Some(Instant::now());
            self.lost = 0;
        } else {
            tracing::debug!(collector, ts, error = %e, "collection not stored");
        }
        self.failing = true;
    }

    fn stored(&mut self, store: &Store) {
        if !self.failing {
            return;
        }
        self.failing = false;
        if Self::due(self.said_at, STORE_REPORT_EVERY) || self.said_at == self.error_at {
            tracing::warn!(
                store = %store.path().display(),
                lost = self.lost,
                reopens = store.health().reopens_total,
                "the store writes again; the collections it could not write were lost (pga-agent status lists the failure among the store's events)"
            );
            self.said_at = Some(Instant::now());
            self.lost = 0;
        }
    }
}

/// Writes passes into the store on the calling thread until the channel closes.
///
/// A store that cannot write is reported with its cause once (an ERROR naming the
/// error and the file; again only after ten minutes), then at most once a minute
/// with the collections lost, and when it writes again; the store reopens itself
/// (see `store`).
pub fn write_passes(store: &mut Store, mut rx: mpsc::Receiver<Pass>, telemetry: &Telemetry) {
    let mut report = StoreReport::default();
    while let Some(pass) = rx.blocking_recv() {
        let health = Some((pass.collector, &pass.health));
        match store.append_with_logs(pass.ts, &pass.samples, &pass.logs, health) {
            Ok(r) => {
                report.stored(store);
                telemetry.store(&store.figures(), r.evicted_blocks);
                if let Some(seq) = r.sealed {
                    tracing::debug!(sequence = seq, "block sealed");
                }
                // Tests and operators key on this line: the pass is durable now.
                tracing::debug!(
                    collector = pass.collector,
                    ts = pass.ts,
                    samples = pass.samples.len(),
                    log_events = pass.logs.events.len(),
                    "stored"
                );
            }
            Err(e) => {
                telemetry.store_write_failed();
                report.failed(&e, store, pass.collector, pass.ts);
            }
        }
    }
}
