//! Faults: a write that fails for an I/O reason (a full disk, a failing device)
//! leaves the redb database refusing every later operation until it is closed and
//! opened again. The store closes it at once ([`Store::fail`]), and opens it again by
//! itself ([`Store::recover`]) at the next collection once the filesystem has more
//! room than at the failure, else after a back-off; the first write after the failure
//! records it among the store's events. See "Faults" in the module documentation of
//! `store`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::open::open_or_move_aside;
use super::{OpenReport, Store, StoreError, health};
use crate::now_ms;

/// First wait before opening the store again after a failed write ...
pub(super) const RETRY_MIN: Duration = Duration::from_secs(1);
/// ... doubling up to this.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// More free bytes than at the failure that make the store try again at once.
const MORE_ROOM_BYTES: u64 = 64 << 10;
/// How long closing the store waits for reads in flight (the endpoint's).
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// A write failed: the store is closed until [`Store::recover`] opens it again.
#[derive(Debug, Clone, Copy)]
pub(super) struct Failure {
    /// Do not try again before this ...
    next_attempt: Instant,
    /// ... unless the filesystem has more room than this (free bytes at the failure).
    free_then: Option<u64>,
    /// The failure was a full filesystem: evict to fit before writing again.
    no_space: bool,
}

impl Store {
    /// A failure that the first write after it records among the events: once per
    /// failure, however often writes fail and succeed by turns until it is over.
    pub(super) fn failure_event(&self) -> Option<String> {
        let since = self.health.failing_since_ms?;
        if self.health.failure_recorded {
            return None;
        }
        Some(format!(
            "writes failed from {} for {} s: {} collection(s) lost; last error: {}",
            since,
            (now_ms() - since).max(0) / 1000,
            self.health.lost_in_failure,
            self.health.last_error.as_deref().unwrap_or("-")
        ))
    }

    /// Opens the store again after a failed write, when it is time to try: at once
    /// when the filesystem has more room than at the failure, else after the back-off.
    /// After a full filesystem, first evicts what no longer fits.
    pub(super) fn recover(&mut self) -> Result<(), StoreError> {
        let Some(failure) = self.failure else {
            return Ok(());
        };
        let free = health::free_bytes(&self.path);
        let more_room = matches!((free, failure.free_then), (Some(now), Some(then)) if now > then + MORE_ROOM_BYTES);
        if Instant::now() < failure.next_attempt && !more_room {
            return Err(StoreError::Unavailable(format!(
                "{}; trying again in {} s",
                self.health.summary(),
                failure
                    .next_attempt
                    .saturating_duration_since(Instant::now())
                    .as_secs()
                    + 1
            )));
        }
        let result = self.reopen(failure.no_space);
        if let Err(e) = &result {
            self.fail(e);
        } else {
            self.failure = None;
        }
        result
    }

    fn reopen(&mut self, no_space: bool) -> Result<(), StoreError> {
        if self.db.is_none() {
            let mut report = OpenReport::default();
            let db = open_or_move_aside(&self.path, &mut report)?;
            self.db = Some(Arc::new(db));
            self.init(&report)?;
            self.load()?;
            self.slot.set(self.db.clone());
            self.health.reopens_total += 1;
            if let Some((aside, why)) = &report.moved_aside {
                tracing::error!(moved_to = %aside.display(), reason = %why, "the store file was damaged when opened again: it was moved aside (not deleted) and a fresh store started");
            }
            tracing::info!(store = %self.path.display(), "store opened again after a failed write");
        }
        if no_space {
            let evicted = self.evict_to_fit()?;
            if evicted > 0 {
                tracing::info!(
                    evicted_blocks = evicted,
                    budget_bytes = self.capacity(),
                    "evicted old blocks to fit what the filesystem holds"
                );
            }
        }
        Ok(())
    }

    /// Closes the store after a failed write; [`Store::recover`] opens it again.
    pub(super) fn fail(&mut self, error: &StoreError) {
        self.close_db();
        self.failure = Some(Failure {
            next_attempt: Instant::now() + self.retry_backoff,
            free_then: health::free_bytes(&self.path),
            no_space: error.is_no_space()
                || self.failure.is_some_and(|f| f.no_space)
                || health::free_bytes(&self.path).is_some_and(|f| f < MORE_ROOM_BYTES),
        });
        self.retry_backoff = (self.retry_backoff * 2).min(RETRY_MAX);
    }

    /// Closes the database: the handles see none; reads in flight finish first.
    fn close_db(&mut self) {
        self.slot.set(None);
        let Some(mut db) = self.db.take() else {
            return;
        };
        let deadline = Instant::now() + CLOSE_WAIT;
        loop {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    if let Err(error) = db.close() {
                        tracing::debug!(%error, "closing the failed store");
                    }
                    return;
                }
                Err(shared) if Instant::now() < deadline => {
                    db = shared;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => {
                    // A read outlived the wait; it closes the file when it ends, and
                    // opening again waits for that.
                    tracing::warn!("a read of the store did not end within 30 s of a failed write");
                    return;
                }
            }
        }
    }
}
