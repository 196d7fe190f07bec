//! `pga-agent run`: collect into the ring store until stopped.

use std::sync::Arc;

use anyhow::Context;

use crate::collect::postgres::PostgresProbe;
use crate::collect::system::{SystemCollector, SystemOptions};
use crate::config::{AgentConfig, Loaded};
use crate::scheduler::{self, Collector, Intervals, SelfCollector};
use crate::store::{Store, StoreOptions};
use crate::telemetry::Telemetry;

/// Store bounds from the configuration.
pub fn store_options(cfg: &AgentConfig) -> StoreOptions {
    StoreOptions {
        max_bytes: cfg.store.max_bytes,
        retention_ms: (cfg.store.retention_secs as i64).saturating_mul(1000),
        block_ms: (cfg.store.block_secs as i64).saturating_mul(1000).max(1),
    }
}

pub fn run(loaded: &Loaded) -> anyhow::Result<()> {
    let cfg = &loaded.config;
    let data_dir = &cfg.agent.data_dir;
    let (mut store, report) = Store::open(data_dir, store_options(cfg))
        .with_context(|| format!("opening the ring store in {}", data_dir.display()))?;
    if let Some((aside, why)) = &report.moved_aside {
        tracing::error!(
            moved_to = %aside.display(),
            reason = %why,
            "the store file was damaged: it was moved aside (not deleted) and a fresh store started"
        );
    }
    tracing::info!(
        agent = %cfg.agent.name,
        agent_id = %store.agent_id(),
        store = %store.path().display(),
        series = store.series().len(),
        blocks = store.block_count(),
        head_collections = report.head_collections,
        budget_bytes = cfg.store.max_bytes,
        "store open"
    );

    let telemetry = Arc::new(Telemetry::new());
    telemetry.store(&store, 0);
    let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
    let mut names = Vec::new();
    let system = SystemOptions::new(data_dir.clone());
    let paths = system.filesystems.clone();
    if cfg.collectors.system {
        collectors.push(Box::new(SystemCollector::new(system)));
        names.push("system");
    }
    if cfg.collectors.postgres {
        for instance in &loaded.instances {
            tracing::info!(instance = %instance.name, conninfo = %instance.resolved_conninfo(), "monitoring PostgreSQL");
            let probe = PostgresProbe::new(instance.clone(), paths.clone());
            names.push(probe.name());
            collectors.push(Box::new(probe));
        }
        tracing::info!(
            "this build collects reachability, version and start time of each instance; the statistics families arrive with the PostgreSQL collector"
        );
    }
    if cfg.collectors.logs {
        tracing::info!("the log collector is not part of this build yet");
    }
    names.push("self");
    collectors.push(Box::new(SelfCollector {
        telemetry: telemetry.clone(),
        collectors: names,
    }));
    let intervals = Intervals {
        fast: cfg.intervals.fast(),
        slow: cfg.intervals.slow(),
        sizes: cfg.intervals.sizes(),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .thread_name("pga-agent")
        .build()
        .context("starting the async runtime")?;
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let writer_telemetry = telemetry.clone();
    let writer = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            scheduler::write_passes(&mut store, rx, &writer_telemetry);
            store
        })
        .context("starting the store writer")?;
    runtime.block_on(scheduler::run(
        collectors,
        intervals,
        tx,
        telemetry,
        shutdown_signal(),
    ));
    let store = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the store writer panicked"))?;
    tracing::info!(
        blocks = store.block_count(),
        series = store.series().len(),
        "stopped"
    );
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with SIGINT");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping after the current passes"),
        () = term => tracing::info!("SIGTERM: stopping after the current passes"),
    }
}
