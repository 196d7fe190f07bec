//! `[[remote_write]]` built from the configuration: one [`RemoteWrite`] per
//! destination (its HTTP client, auth and TLS read from their files now, so a wrong
//! file fails the start), each run by its own loop over the agents this replica holds.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::config::{FederatorConfig, parse_schedule};
use crate::pull::scheduler::FleetJob;
use crate::remote_write::send::Retry;
use crate::remote_write::{self, RemoteWrite, RemoteWriteMetrics};

/// Builds every destination, records them and the retention ages in the database
/// (`pga_raw_home` reads them) and starts their loops.
pub async fn start(
    cfg: &FederatorConfig,
    pool: &PgPool,
    metrics: &RemoteWriteMetrics,
    // The agents this replica holds (the cluster's assignment).
    fleet: &watch::Receiver<Vec<FleetJob>>,
    // Its leases: a cursor moves only while the replica holds the agent.
    cluster: &Arc<Cluster>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let listed: Vec<(String, String, bool)> = cfg
        .remote_write
        .iter()
        .map(|d| (d.name.clone(), d.url.clone(), d.raw_home))
        .collect();
    let r = &cfg.retention;
    let ages = crate::db::remote_write::RetentionAges {
        raw_secs: r.raw_secs,
        rollup_1m_secs: r.rollup_1m_secs,
        rollup_1h_secs: r.rollup_1h_secs,
    };
    crate::db::remote_write::sync_destinations(pool, &listed, ages)
        .await
        .context("recording the remote-write destinations")?;
    let pacing = crate::app::settings(cfg).pacing;
    let mut tasks = Vec::new();
    for d in &cfg.remote_write {
        let ctx = || format!("remote_write {}", d.name);
        let client = crate::app::alerting::client_for(&d.url, d.client_keys(), d.timeout())
            .with_context(ctx)?;
        let schedule = parse_schedule(d.schedule.as_deref().unwrap_or(&cfg.scrape.schedule))
            .with_context(ctx)?;
        let dest = Arc::new(
            RemoteWrite::new(
                d.name.clone(),
                client,
                pool.clone(),
                d.max_samples_per_request,
                Retry {
                    initial: Duration::from_millis(d.retry_initial_ms),
                    max: Duration::from_secs(d.retry_max_secs),
                },
                metrics.clone(),
            )
            .fenced_by(cluster.clone()),
        );
        tracing::info!(destination = %d.name, url = %d.url, shards = d.max_shards, "remote-write destination");
        tasks.push(tokio::spawn(remote_write::run(
            dest,
            fleet.clone(),
            schedule,
            pacing,
            d.max_shards as usize,
            stop.clone(),
        )));
    }
    Ok(tasks)
}
