//! What every handler shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};

use super::error::ApiError;
use super::metrics::ApiMetrics;
use crate::auth::jwt::JwtKeys;
use crate::auth::password::Hasher;
use crate::auth::throttle::Throttle;

/// Settings of the API that handlers read.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    /// How long a login waits for a hashing slot before it is answered 503.
    pub hash_wait: Duration,
    /// Whether the federator has a client certificate (`[tls]`): https agents
    /// need it.
    pub agent_tls: bool,
    /// How long raw samples are kept: older ranges read rollups.
    pub raw_retention: Duration,
    /// The default scrape schedule, shown for agents without their own.
    pub default_schedule: String,
}

/// The shared state.
#[derive(Debug)]
pub struct Inner {
    pub pool: PgPool,
    pub jwt: JwtKeys,
    pub hasher: Arc<Hasher>,
    /// Bounds concurrent password hashing, so logins cannot take the CPU ingest
    /// needs.
    pub hash_permits: Arc<Semaphore>,
    pub throttle: Mutex<Throttle>,
    pub metrics: Arc<ApiMetrics>,
    /// Notified when agents change through the API: the scheduler reloads.
    pub fleet_changed: Arc<Notify>,
    pub token_touched: Mutex<HashMap<i64, Instant>>,
    pub settings: ApiSettings,
}

/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiState(pub Arc<Inner>);

impl std::ops::Deref for ApiState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl ApiState {
    /// The login throttle (a panic elsewhere while it was held leaves it usable).
    pub fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.0
            .throttle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a password hash or check on the blocking pool, under the hashing
    /// bound; answers 503 when no slot frees up within `hash_wait`.
    pub async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Hasher) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(
            self.settings.hash_wait,
            self.hash_permits.clone().acquire_owned(),
        )
        .await;
        let permit = match permit {
            Ok(Ok(p)) => p,
            _ => {
                self.metrics.hashing_busy();
                return Err(ApiError::Unavailable {
                    message: "too many sign-ins at once; try again in a moment".to_owned(),
                    retry_after_secs: 2,
                });
            }
        };
        let hasher = self.hasher.clone();
        let out = tokio::task::spawn_blocking(move || {
            let out = work(&hasher);
            drop(permit);
            out
        })
        .await
        .map_err(ApiError::internal)?;
        Ok(out)
    }
}
