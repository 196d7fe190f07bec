//! Starting the HTTP API from `[api]`: the JWT key, the password hasher, the API's
//! own database pool, the listener.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, Semaphore, watch};

use crate::auth::jwt::JwtKeys;
use crate::auth::password::{HashParams, Hasher};
use crate::auth::throttle::Throttle;
use crate::config::{ApiConfig, FederatorConfig, read_jwt_key};
use crate::db;
use crate::http::metrics::ApiMetrics;
use crate::http::server::{ApiServer, ServerSettings};
use crate::http::{self, ApiSettings, ApiState, Inner};

/// Keys held in the login throttle, at most.
const THROTTLE_KEYS: usize = 100_000;

/// The password hasher `[api]` asks for.
pub fn hasher(api: &ApiConfig) -> anyhow::Result<Hasher> {
    Hasher::new(HashParams {
        memory_kib: api.argon2_memory_kib,
        iterations: api.argon2_iterations,
        parallelism: api.argon2_parallelism,
    })
    .context("api.argon2_*")
}

/// The API's shared state from the configuration. `fleet_changed` is notified
/// when agents change through the API.
pub fn state(
    cfg: &FederatorConfig,
    metrics: Arc<ApiMetrics>,
    fleet_changed: Arc<Notify>,
) -> anyhow::Result<ApiState> {
    let api = &cfg.api;
    let key_file = api
        .jwt_key_file
        .as_ref()
        .context("api.jwt_key_file is not set (run check-config)")?;
    let key = read_jwt_key(key_file).map_err(anyhow::Error::msg)?;
    let jwt = JwtKeys::new(&key, &api.jwt_issuer, &api.jwt_audience).map_err(anyhow::Error::msg)?;
    let pool = db::connect_lazy(
        &cfg.database.url,
        &super::pool_options(cfg, api.max_db_connections)?,
    )
    .context("database.url")?;
    let t = &cfg.tls;
    Ok(ApiState(Arc::new(Inner {
        pool,
        jwt,
        hasher: Arc::new(hasher(api)?),
        hash_permits: Arc::new(Semaphore::new(api.hash_concurrency.max(1) as usize)),
        throttle: Mutex::new(Throttle::new(
            Duration::from_millis(api.login_backoff_initial_ms),
            Duration::from_secs(api.login_backoff_max_secs),
            THROTTLE_KEYS,
        )),
        metrics,
        fleet_changed,
        token_touched: Mutex::default(),
        settings: ApiSettings {
            access_ttl_secs: api.access_token_ttl_secs as i64,
            refresh_ttl_secs: api.refresh_token_ttl_secs as i64,
            hash_wait: Duration::from_millis(api.hash_wait_ms),
            agent_tls: t.cert_file.is_some() && t.key_file.is_some() && t.ca_file.is_some(),
            raw_retention: Duration::from_secs(cfg.retention.raw_secs),
            default_schedule: cfg.scrape.schedule.clone(),
        },
    })))
}

/// The API, bound and ready to serve.
#[derive(Debug)]
pub struct Api {
    pub state: ApiState,
    pub server: ApiServer,
}

impl Api {
    /// Builds the state and binds `api.listen`; `None` when the API is off.
    pub async fn bind(
        cfg: &FederatorConfig,
        metrics: Arc<ApiMetrics>,
        fleet_changed: Arc<Notify>,
    ) -> anyhow::Result<Option<Api>> {
        let api = &cfg.api;
        if !api.enabled() {
            return Ok(None);
        }
        let state = state(cfg, metrics, fleet_changed)?;
        let tls = match (&api.cert_file, &api.key_file) {
            (Some(c), Some(k)) if !api.insecure_plaintext => Some((c.clone(), k.clone())),
            _ => None,
        };
        let server = ApiServer::bind(ServerSettings {
            listen: api.listen.clone(),
            tls,
            max_connections: api.max_connections as usize,
            request_timeout: Duration::from_secs(api.request_timeout_secs),
        })
        .await?;
        Ok(Some(Api { state, server }))
    }

    /// Serves until `stop`; expired refresh tokens are purged every hour.
    pub async fn serve(self, stop: watch::Receiver<bool>) {
        let (router, _) = http::app(self.state.clone());
        let pool = self.state.pool.clone();
        let purge = tokio::spawn(crate::jobs::run(
            crate::jobs::Schedule {
                name: "refresh-token purge",
                every: crate::jobs::Every::Interval(Duration::from_secs(3600)),
                backoff: crate::jobs::Backoff::new(
                    Duration::from_secs(60),
                    Duration::from_secs(3600),
                ),
                wake: None,
            },
            stop.clone(),
            move || {
                let pool = pool.clone();
                async move {
                    let n = crate::db::tokens::purge_expired_refresh(&pool).await?;
                    if n > 0 {
                        tracing::debug!(purged = n, "expired refresh tokens removed");
                    }
                    Ok::<(), sqlx::Error>(())
                }
            },
        ));
        self.server.serve(router, stop).await;
        purge.abort();
    }
}
