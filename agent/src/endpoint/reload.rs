//! Certificate reload without a restart.
//!
//! The current [`ServerConfig`] sits behind a lock; each new connection takes the
//! one current when it arrives, and keeps it for its life, so a reload never
//! touches a connection already open. A task watches the files (modification
//! time, size and inode, every [`POLL_INTERVAL`]) and SIGHUP. A change is loaded
//! once the files have stood still for one poll, so a certificate and key written
//! one after the other are read as a pair; SIGHUP loads at once. A reload that
//! fails keeps the configuration in use and logs which file is wrong and why.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use tokio::sync::watch;

use super::TlsFiles;
use super::tls::{self, LoadedTls};
use crate::config::Problem;

pub use pga_config::reload::POLL_INTERVAL;

/// The TLS configuration in use, and the files it comes from.
#[derive(Debug)]
pub struct TlsState {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsState {
    /// The state after a first successful [`tls::load`].
    pub fn new(files: TlsFiles, loaded: &LoadedTls) -> Self {
        TlsState {
            files,
            current: RwLock::new(loaded.config.clone()),
        }
    }

    /// The configuration a new connection uses.
    pub fn current(&self) -> Arc<ServerConfig> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc: the
        // value inside is still a whole configuration.
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, config: Arc<ServerConfig>) {
        match self.current.write() {
            Ok(mut g) => *g = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.files
            .all()
            .into_iter()
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Loads the files again; on success new connections use the result, on
    /// failure the configuration in use stays and the error is logged. Returns
    /// whether the new configuration took effect.
    pub async fn reload(self: &Arc<Self>, trigger: &'static str) -> bool {
        let me = self.clone();
        let loaded = tokio::task::spawn_blocking(move || tls::load(&me.files)).await;
        match loaded {
            Ok(Ok(loaded)) => {
                self.set(loaded.config.clone());
                log_warnings(&loaded.warnings);
                tracing::info!(
                    trigger,
                    certificate = %loaded.server_subject,
                    not_after = %loaded.server_not_after,
                    crls = loaded.crls,
                    "endpoint certificates reloaded; new connections use them"
                );
                true
            }
            Ok(Err(e)) => {
                let p = e.to_problem();
                tracing::error!(
                    trigger,
                    key = %p.key,
                    fix = %p.fix,
                    error = %p.message,
                    "endpoint certificate reload failed; the previous certificates stay in use"
                );
                false
            }
            Err(e) => {
                tracing::error!(trigger, error = %e, "endpoint certificate reload panicked; the previous certificates stay in use");
                false
            }
        }
    }

    /// Watches the files and SIGHUP until `stop` turns true, reloading on change.
    pub async fn watch(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let paths = self.paths();
        pga_config::reload::watch_files(paths, stop, |trigger| {
            let state = Arc::clone(&self);
            async move {
                state.reload(trigger).await;
            }
        })
        .await;
    }
}

pub(super) use pga_config::reload::stopped;

/// Logs the warnings of a load.
pub fn log_warnings(warnings: &[Problem]) {
    for w in warnings {
        tracing::warn!(key = %w.key, fix = %w.fix, "{}", w.message);
    }
}
