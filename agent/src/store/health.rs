//! Whether the store can write, and how much its filesystem lets it hold.
//!
//! - [`StoreHealth`]: what the writer reports after every pass: healthy or failing
//!   (since when, the last error), collections lost, the last committed write, and the
//!   budget in force. The endpoint serves it (`/v1/status`, `/metrics`) from memory,
//!   so it answers while the store file cannot be read.
//! - [`HealthFile`]: the same, for `pga-agent status` in another process. A full disk
//!   refuses new files and growing ones, so the file is made once at its full size
//!   ([`HEALTH_FILE_BYTES`]) and rewritten in place: an overwrite needs no new space.
//! - [`room`]: the bytes the store file may take on its filesystem: what it holds now
//!   plus what is free, minus a reserve the store leaves to others.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the health file inside the data directory.
pub const HEALTH_FILE: &str = "store.health";
/// Its fixed size: a JSON object padded with spaces.
pub const HEALTH_FILE_BYTES: usize = 4096;
/// The store leaves this share of its filesystem free for others (PostgreSQL may
/// share it) ...
const RESERVE_SHARE: u64 = 50;
/// ... but never more than this.
const RESERVE_MAX_BYTES: u64 = 128 << 20;

/// A store whose writes failed is healthy again once no write has failed for this
/// long (a nearly full filesystem makes small writes succeed and large ones fail by
/// turns: the store is not healthy while it loses collections).
pub const HEALTHY_AFTER_MS: i64 = 60_000;

/// Where the store's writes stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// No write failed in the last minute.
    Ok,
    /// The last write failed.
    Failing,
    /// Writes succeed again, but one failed less than a minute ago.
    Recovering,
}

/// How the store's writes go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// `state` is `ok`.
    pub healthy: bool,
    pub state: HealthState,
    /// When the current failure began, ms since the epoch.
    pub failing_since_ms: Option<i64>,
    /// When a write last failed.
    pub last_failure_ms: Option<i64>,
    /// The last write error, naming the cause and the file.
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// Collections the store could not write (lost), since the agent started.
    pub write_errors_total: u64,
    /// Collections lost in the current failure.
    pub lost_in_failure: u64,
    /// Times the store was closed and opened again after a failed write.
    pub reopens_total: u64,
    /// When the last collection was committed.
    pub last_write_ms: Option<i64>,
    /// The budget in force: `store.max_bytes`, or less when the filesystem holds less.
    pub budget_bytes: u64,
    /// The agent process that reports this.
    pub pid: u32,
    /// When this was written.
    pub updated_ms: i64,
    /// The current failure is recorded among the store's events.
    #[serde(skip)]
    pub(super) failure_recorded: bool,
}

impl StoreHealth {
    pub(super) fn new(budget_bytes: u64) -> Self {
        StoreHealth {
            healthy: true,
            state: HealthState::Ok,
            failing_since_ms: None,
            last_failure_ms: None,
            last_error: None,
            last_error_ms: None,
            write_errors_total: 0,
            lost_in_failure: 0,
            reopens_total: 0,
            last_write_ms: None,
            budget_bytes,
            pid: std::process::id(),
            updated_ms: crate::now_ms(),
            failure_recorded: false,
        }
    }

    /// A collection was written at `now`.
    pub(super) fn wrote(&mut self, now: i64) {
        self.last_write_ms = Some(now);
        match self.last_failure_ms {
            Some(failed) if now - failed < HEALTHY_AFTER_MS => {
                self.state = HealthState::Recovering;
            }
            _ => {
                self.state = HealthState::Ok;
                self.failing_since_ms = None;
                self.lost_in_failure = 0;
                self.failure_recorded = false;
            }
        }
        self.healthy = self.state == HealthState::Ok;
    }

    /// A collection could not be written at `now`, because of `error` (`None`:
    /// skipped while the store waits to open again; the last error stands).
    pub(super) fn failed(&mut self, now: i64, error: Option<String>) {
        self.state = HealthState::Failing;
        self.healthy = false;
        self.failing_since_ms.get_or_insert(now);
        self.last_failure_ms = Some(now);
        self.write_errors_total += 1;
        self.lost_in_failure += 1;
        if let Some(e) = error {
            self.last_error = Some(e);
            self.last_error_ms = Some(now);
        }
    }

    /// The health as live series for `/metrics`, not stored (a failing store could not
    /// store them): `pga_agent_store_healthy`, `…_write_errors_total`,
    /// `…_reopens_total`, `…_budget_bytes`, `…_last_write_timestamp_seconds`.
    pub fn as_series(&self) -> Vec<(pga_format::SeriesMeta, f64)> {
        use pga_format::MetricKind::{Counter, Gauge};
        let mut all = vec![
            (
                "pga_agent_store_healthy",
                Gauge,
                "",
                "Whether the ring store's writes succeed (1) or one failed in the last minute (0).",
                f64::from(u8::from(self.healthy)),
            ),
            (
                "pga_agent_store_write_errors_total",
                Counter,
                "",
                "Collections the ring store could not write (lost).",
                self.write_errors_total as f64,
            ),
            (
                "pga_agent_store_reopens_total",
                Counter,
                "",
                "Times the ring store was opened again after a failed write.",
                self.reopens_total as f64,
            ),
            (
                "pga_agent_store_budget_bytes",
                Gauge,
                "bytes",
                "The ring store's budget in force: store.max_bytes, or less when its filesystem holds less.",
                self.budget_bytes as f64,
            ),
        ];
        if let Some(ms) = self.last_write_ms {
            all.push((
                "pga_agent_store_last_write_timestamp_seconds",
                Gauge,
                "seconds",
                "When the ring store last committed a collection.",
                ms as f64 / 1000.0,
            ));
        }
        all.into_iter()
            .enumerate()
            .filter_map(|(i, (name, kind, unit, help, value))| {
                let id = pga_format::SeriesId(u64::MAX - i as u64);
                pga_format::SeriesMeta::new(id, name, Vec::new(), kind, unit, help)
                    .ok()
                    .map(|m| (m, value))
            })
            .collect()
    }

    /// `ok`, or `failing: error`.
    pub fn summary(&self) -> String {
        match self.state {
            HealthState::Ok => "ok".to_owned(),
            HealthState::Failing => format!(
                "failing: {}",
                self.last_error.as_deref().unwrap_or("a write failed")
            ),
            HealthState::Recovering => format!(
                "writing again after failures: {}",
                self.last_error.as_deref().unwrap_or("a write failed")
            ),
        }
    }
}

/// The health file of a data directory, written in place.
#[derive(Debug)]
pub(super) struct HealthFile {
    file: Option<std::fs::File>,
    path: PathBuf,
}

impl HealthFile {
    /// Creates (or reuses) the file at its full size. Without it, health is still
    /// served by the endpoint; only `pga-agent status` misses it.
    pub(super) fn open(data_dir: &Path) -> Self {
        let path = data_dir.join(HEALTH_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .and_then(|mut f| {
                if f.metadata()?.len() != HEALTH_FILE_BYTES as u64 {
                    f.set_len(0)?;
                    f.write_all(&[b' '; HEALTH_FILE_BYTES])?;
                    f.sync_data()?;
                }
                Ok(f)
            });
        match file {
            Ok(f) => HealthFile {
                file: Some(f),
                path,
            },
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot write the store's health file; `pga-agent status` will not see the agent's store health");
                HealthFile { file: None, path }
            }
        }
    }

    /// Overwrites the file with `health`; a failure is logged at debug level (the
    /// endpoint still serves the health).
    pub(super) fn write(&mut self, health: &StoreHealth) {
        let Some(file) = &mut self.file else {
            return;
        };
        let Ok(mut text) = serde_json::to_vec(health) else {
            return;
        };
        if text.len() >= HEALTH_FILE_BYTES {
            // An error text longer than the file: keep the head of it.
            let mut h = health.clone();
            if let Some(e) = &mut h.last_error {
                e.truncate(1024);
            }
            text = serde_json::to_vec(&h).unwrap_or_default();
        }
        text.resize(HEALTH_FILE_BYTES - 1, b' ');
        text.push(b'\n');
        if let Err(error) = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&text))
        {
            tracing::debug!(file = %self.path.display(), %error, "the health file was not updated");
        }
    }
}

/// The health the agent using `data_dir` last wrote, and whether that agent still
/// runs. `None` when there is no readable health file.
pub fn read_health_file(data_dir: &Path) -> Option<(StoreHealth, bool)> {
    let mut text = String::new();
    std::fs::File::open(data_dir.join(HEALTH_FILE))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    let health: StoreHealth = serde_json::from_str(text.trim()).ok()?;
    let running = Path::new(&format!("/proc/{}", health.pid)).exists();
    Some((health, running))
}

/// The bytes the store file at `path` may take on its filesystem: what it occupies
/// now plus what the filesystem has free, less a reserve of 2 % of the filesystem
/// (at most 128 MiB) left to others. `None` when the filesystem cannot be asked.
pub(super) fn room(path: &Path) -> Option<u64> {
    let dir = path.parent()?;
    let fs = rustix::fs::statvfs(dir).ok()?;
    let block = fs.f_frsize.max(1);
    let free = fs.f_bavail.saturating_mul(block);
    let size = fs.f_blocks.saturating_mul(block);
    let reserve = (size / RESERVE_SHARE).min(RESERVE_MAX_BYTES);
    let occupied = std::fs::metadata(path).map_or(0, |m| m.blocks().saturating_mul(512));
    Some((occupied + free).saturating_sub(reserve))
}

/// Free bytes on the filesystem of `path`'s directory.
pub(super) fn free_bytes(path: &Path) -> Option<u64> {
    let fs = rustix::fs::statvfs(path.parent()?).ok()?;
    Some(fs.f_bavail.saturating_mul(fs.f_frsize.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_file_keeps_its_size_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = HealthFile::open(dir.path());
        let mut h = StoreHealth::new(1 << 30);
        h.failed(1_000, Some("x".repeat(10_000)));
        f.write(&h);
        h.failed(2_000, Some("no space".into()));
        f.write(&h);
        let len = std::fs::metadata(dir.path().join(HEALTH_FILE))
            .unwrap()
            .len();
        assert_eq!(len, HEALTH_FILE_BYTES as u64);
        let (back, running) = read_health_file(dir.path()).unwrap();
        assert_eq!(back, h);
        assert!(running, "this process wrote it");
        assert_eq!(back.summary(), "failing: no space");
    }

    #[test]
    fn healthy_again_a_minute_after_the_last_failure() {
        let mut h = StoreHealth::new(1 << 30);
        h.wrote(1_000);
        assert!(h.healthy);
        h.failed(2_000, Some("no space".into()));
        h.failed(3_000, None);
        assert_eq!(
            (h.state, h.lost_in_failure, h.write_errors_total),
            (HealthState::Failing, 2, 2)
        );
        assert_eq!(h.last_error.as_deref(), Some("no space"));
        h.wrote(4_000);
        assert_eq!(h.state, HealthState::Recovering);
        assert!(!h.healthy);
        h.wrote(3_000 + HEALTHY_AFTER_MS);
        assert!(h.healthy);
        assert_eq!(
            (h.failing_since_ms, h.lost_in_failure, h.write_errors_total),
            (None, 0, 2)
        );
    }

    #[test]
    fn room_counts_the_file_and_the_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 1 << 20]).unwrap();
        let room = room(&path).unwrap();
        let free = free_bytes(&path).unwrap();
        assert!(room >= 1 << 20, "{room}");
        assert!(room <= free + (2 << 20), "{room} {free}");
    }
}
