//! `pga-agent run`: collect into the ring store until stopped.

use std::sync::Arc;

use anyhow::Context;

use crate::collect::Collector;
use crate::collect::logs::collector::{LogCollector, LogOptions, cursor_name};
use crate::collect::postgres::PostgresProbe;
use crate::collect::system::{SystemCollector, SystemOptions};
use crate::config::{AgentConfig, Loaded};
use crate::endpoint::api::{self, ApiState};
use crate::endpoint::{self, Endpoint, EndpointSettings};
use crate::scheduler::{self, Intervals};
use crate::store::{self, Store, StoreOptions};
use crate::telemetry::{SelfCollector, Telemetry};

/// Store bounds from the configuration.
pub fn store_options(cfg: &AgentConfig) -> StoreOptions {
    StoreOptions {
        max_bytes: cfg.store.max_bytes,
        retention_ms: (cfg.store.retention_secs as i64).saturating_mul(1000),
        block_ms: (cfg.store.block_secs as i64).saturating_mul(1000).max(1),
    }
}

/// Open files the agent asks for: the endpoint's handshakes and connections, the
/// store, PostgreSQL connections and log files, with room for a flood of clients.
const OPEN_FILES: u64 = 65_536;

/// Raises the soft limit on open files towards [`OPEN_FILES`], within the hard
/// limit (systemd's default soft limit, 1024, is small for a flood of clients).
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let want = limit.maximum.map_or(OPEN_FILES, |max| max.min(OPEN_FILES));
    if limit.current.is_some_and(|cur| cur < want) {
        let raised = Rlimit {
            current: Some(want),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(open_files = want, "open-files limit raised"),
            Err(error) => tracing::debug!(%error, "the open-files limit stays as it is"),
        }
    }
}

pub fn run(loaded: &Loaded) -> anyhow::Result<()> {
    let cfg = &loaded.config;
    raise_open_files_limit();
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
    telemetry.store(&store.figures(), 0);
    let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
    let mut names = Vec::new();
    let system = SystemOptions::new(data_dir.clone());
    let paths = system.filesystems.clone();
    if cfg.collectors.system {
        collectors.push(Box::new(SystemCollector::new(system)));
        names.push("system");
    }
    let log_options = LogOptions::from_config(&cfg.logs);
    let log_collector = |instance: &str, facts| -> anyhow::Result<LogCollector> {
        let saved = store
            .cursor(&cursor_name(instance))
            .context("reading the log cursor from the store")?;
        Ok(LogCollector::new(
            instance,
            facts,
            log_options.clone(),
            saved.as_deref(),
        ))
    };
    let mut log_collectors = Vec::new();
    let mut reports = Vec::new();
    if cfg.collectors.postgres {
        for instance in &loaded.instances {
            tracing::info!(instance = %instance.name, conninfo = %instance.resolved_conninfo(), "monitoring PostgreSQL");
            let probe = PostgresProbe::new(instance.clone(), paths.clone());
            reports.push(probe.instance_report());
            for group in probe.companions() {
                names.push(group.name());
                collectors.push(Box::new(group));
            }
            if cfg.collectors.logs {
                log_collectors.push(log_collector(&instance.name, Some(probe.server_facts()))?);
            }
            names.push(probe.name());
            collectors.push(Box::new(probe));
        }
    } else if cfg.collectors.logs && cfg.logs.path.is_some() {
        // No server to ask: the configured log alone, under the instance it names.
        let name = cfg
            .postgres
            .first()
            .map_or(crate::config::DEFAULT_INSTANCE_NAME, |p| p.name.as_str());
        log_collectors.push(log_collector(name, None)?);
    } else if cfg.collectors.logs {
        tracing::warn!(
            "the log collector needs collectors.postgres (to learn where each server logs) or logs.path"
        );
    }
    for c in log_collectors {
        names.push(c.name());
        collectors.push(Box::new(c));
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

    // The endpoint: bound before collection starts, so a bad certificate or a
    // taken port stops the agent at once with the reason.
    let endpoint = match EndpointSettings::from_config(&cfg.endpoint) {
        None => {
            tracing::info!(
                how_to_turn_on = endpoint::OFF_HINT,
                "endpoint off: the agent collects and stores, and serves nothing; \
                 `pga-agent query` reads the store locally"
            );
            None
        }
        Some(settings) => {
            let max_response_bytes =
                usize::try_from(settings.limits.max_response_bytes).unwrap_or(usize::MAX);
            let bound = runtime
                .block_on(Endpoint::bind(settings))
                .context("starting the endpoint")?
                .with_telemetry(telemetry.clone());
            let router = api::router(ApiState {
                store: store.handle(),
                agent_name: cfg.agent.name.clone(),
                max_response_bytes,
                inventory: api::Inventory::new(reports),
            });
            Some((bound, router))
        }
    };

    // One stop signal for the scheduler and the endpoint.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    runtime.spawn(async move {
        shutdown_signal().await;
        if stop_tx.send(true).is_err() {
            tracing::debug!("nothing was left to stop");
        }
    });
    let endpoint_task = match endpoint {
        Some((bound, router)) => {
            Some(runtime.spawn(bound.serve(router, stop_requested(stop_rx.clone()))))
        }
        None => {
            runtime.spawn(hangup_without_endpoint(stop_rx.clone()));
            None
        }
    };

    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let writer_telemetry = telemetry.clone();
    let writer = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            store::write_passes(&mut store, rx, &writer_telemetry);
            store
        })
        .context("starting the store writer")?;
    runtime.block_on(async {
        scheduler::run(
            collectors,
            intervals,
            tx,
            telemetry,
            stop_requested(stop_rx.clone()),
        )
        .await;
        if let Some(task) = endpoint_task {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "the endpoint failed"),
                Err(e) => tracing::error!(error = %e, "the endpoint panicked"),
            }
        }
    });
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

/// Resolves once the stop signal is given (or its sender is gone).
async fn stop_requested(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _stopped = stop.wait_for(|s| *s).await.is_ok();
}

/// With the endpoint off there is nothing to reload, but SIGHUP (`systemctl
/// reload`) must not stop the agent.
async fn hangup_without_endpoint(stop: tokio::sync::watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        return;
    };
    let stop = stop_requested(stop);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            Some(()) = hangup.recv() => tracing::info!("SIGHUP: the endpoint is off, nothing to reload"),
            () = &mut stop => return,
        }
    }
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
