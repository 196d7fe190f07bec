//! Reloading the files a configuration names (certificates, keys, revocation lists)
//! while the program runs: the files are polled (modification time, size, inode
//! and device, every [`POLL_INTERVAL`]) and a change is loaded once the files have
//! stood still for a whole poll, so a certificate and key written one after the
//! other are read as a pair; SIGHUP loads at once.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// How often the files are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What identifies one version of a file: modification time, size, inode, device.
type FileStamp = Option<(SystemTime, u64, u64, u64)>;

fn stamps(paths: &[PathBuf]) -> Vec<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p).ok().map(|m| {
                (
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    m.len(),
                    m.ino(),
                    m.dev(),
                )
            })
        })
        .collect()
}

/// Watches `paths` and SIGHUP until `stop` turns true, calling `reload` with what
/// triggered it (`"files changed"` or `"SIGHUP"`). What `reload` does with a
/// failure (keep the files in use, log why) is its own business.
pub async fn watch_files<F, Fut>(
    paths: Vec<PathBuf>,
    mut stop: watch::Receiver<bool>,
    mut reload: F,
) where
    F: FnMut(&'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut loaded_from = stamps(&paths);
    let mut seen = loaded_from.clone();
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the files still reload when they change");
            None
        }
    };
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = stamps(&paths);
                // Load once a change has stood still for a whole poll.
                if now != loaded_from && now == seen {
                    reload("files changed").await;
                    loaded_from = now.clone();
                }
                seen = now;
            }
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                loaded_from = stamps(&paths);
                seen = loaded_from.clone();
                reload("SIGHUP").await;
            }
            () = stopped(&mut stop) => return,
        }
    }
}

/// Resolves once `stop` turns true, or its sender is gone.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Either way the answer is "stop"; the guard is dropped before returning.
    let _stopped = stop.wait_for(|s| *s).await.is_ok();
}
