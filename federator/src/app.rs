//! `pga-federator run` and `pga-federator migrate`.
//!
//! `run` connects to the database (waiting while it is unreachable), checks the
//! schema ([`Sink::start`]: pending migrations applied when the role may; TimescaleDB
//! only read), then runs the scrape scheduler, the retention job and the
//! self-metrics listener until SIGTERM or SIGINT, and stops them cleanly: no pull
//! starts after the signal, a transaction in flight is rolled back (its cursor did
//! not move) and the process exits 0. `migrate` is the owner's: it also converts to
//! TimescaleDB hypertables and sets their policies.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio::sync::watch;

use crate::config::{FederatorConfig, parse_schedule};
use crate::fleet::JobBuilder;
use crate::scheduler::{self, AgentJob, SchedulerSettings};
use crate::scrape::Pacing;
use crate::sink::Sink;
use crate::telemetry::Telemetry;
use crate::url::AgentUrl;

/// Builds one job per configured agent. Assumes the configuration validated.
pub fn jobs(cfg: &FederatorConfig) -> anyhow::Result<Vec<AgentJob>> {
    let builder = JobBuilder::new(cfg, needs_tls(cfg))?;
    Ok(crate::fleet::config_jobs(cfg, &builder)?
        .into_iter()
        .map(|f| f.job)
        .collect())
}

/// Whether a configured agent is https://.
fn needs_tls(cfg: &FederatorConfig) -> bool {
    cfg.agents
        .iter()
        .any(|a| AgentUrl::parse(&a.url).is_ok_and(|u| u.tls))
}

/// The scheduler's settings from the configuration.
pub fn settings(cfg: &FederatorConfig) -> SchedulerSettings {
    SchedulerSettings {
        jitter: Duration::from_millis(cfg.scrape.jitter_ms),
        max_concurrent: cfg.scrape.max_concurrent as usize,
        backoff_initial: Duration::from_secs(cfg.scrape.backoff_initial_secs),
        backoff_max: Duration::from_secs(cfg.scrape.backoff_max_secs),
        pacing: Pacing {
            request_bytes: cfg.backfill.request_bytes,
            max_requests: cfg.backfill.max_requests_per_scrape,
            pause: Duration::from_millis(cfg.backfill.pause_ms),
            max_samples: cfg.backfill.max_samples_per_transaction,
        },
    }
}

/// Connects to the database, retrying every few seconds while it is unavailable,
/// until `stop`.
async fn connect(
    cfg: &FederatorConfig,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<Sink>> {
    let options = cfg.sink_options()?;
    let mut delay = Duration::from_secs(1);
    loop {
        match Sink::connect(&cfg.database.url, options.clone()).await {
            Ok(sink) => return Ok(Some(sink)),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, retry_in_secs = delay.as_secs(), "database unavailable; waiting for it");
            }
            Err(e) => return Err(with_hint(e)),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return Ok(None),
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// A sink error with the fix, when there is a known one.
fn with_hint(e: crate::sink::SinkError) -> anyhow::Error {
    match e.hint() {
        Some(hint) => anyhow::anyhow!("{e}\n  fix: {hint}"),
        None => anyhow::Error::new(e),
    }
}

/// Checks the schema at start ([`Sink::start`]), retrying while the database is
/// unavailable.
async fn start_when_up(sink: &Sink, stop: &mut watch::Receiver<bool>) -> anyhow::Result<bool> {
    let mut delay = Duration::from_secs(1);
    loop {
        match sink.start().await {
            Ok(report) => {
                tracing::info!(schema = %report, "database ready");
                for note in &report.notes {
                    tracing::warn!("{note}");
                }
                return Ok(true);
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, retry_in_secs = delay.as_secs(), "the start waits for the database");
            }
            Err(e) => return Err(with_hint(e)),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return Ok(false),
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// `pga-federator migrate`: what it did, then what the operator should know.
pub async fn migrate(cfg: &FederatorConfig) -> anyhow::Result<String> {
    let sink = Sink::connect(&cfg.database.url, cfg.sink_options()?)
        .await
        .map_err(with_hint)?;
    let report = sink.migrate().await.map_err(with_hint)?;
    let mut out = format!("migrated: {report}\n");
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    Ok(out)
}

/// Turns true on SIGTERM or SIGINT.
fn stop_on_signals() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = which,
            "stopping: no new pulls; in-flight transactions roll back"
        );
        tx.send_replace(true);
    });
    Ok(rx)
}

async fn retention_loop(
    sink: Arc<Sink>,
    schedule: cron::Schedule,
    telemetry: Arc<Telemetry>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let Some(next) = schedule.upcoming(Utc).next() else {
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match sink.retention(Utc::now().timestamp_millis()).await {
            Ok(r) => {
                telemetry.retention(true);
                tracing::info!(dropped = ?r.dropped, partitions_created = r.partitions_created, "retention done");
            }
            Err(e) => {
                telemetry.retention(false);
                tracing::warn!(error = %e, "retention failed; it runs again at the next instant of retention.schedule");
            }
        }
    }
}

/// `pga-federator run`.
pub async fn run(cfg: FederatorConfig) -> anyhow::Result<()> {
    let builder = JobBuilder::new(&cfg, needs_tls(&cfg))?;
    let config_jobs = crate::fleet::config_jobs(&cfg, &builder)?;
    let retention_schedule = parse_schedule(&cfg.retention.schedule).map_err(anyhow::Error::msg)?;
    let mut stop = stop_on_signals()?;
    let mut telemetry = Telemetry::new();
    let api_metrics = Arc::new(crate::http::metrics::ApiMetrics::default());
    api_metrics.register(telemetry.registry_mut());
    let telemetry = Arc::new(telemetry);
    let fleet_changed = Arc::new(tokio::sync::Notify::new());
    // Bind before anything else, so a wrong address or certificate fails the start.
    let api = crate::api::Api::bind(&cfg, api_metrics, fleet_changed.clone()).await?;
    let listener = if cfg.metrics.listen.is_empty() {
        None
    } else {
        let (listen, t, s) = (cfg.metrics.listen.clone(), telemetry.clone(), stop.clone());
        let l = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("metrics.listen = \"{listen}\": cannot listen"))?;
        drop(l);
        Some(tokio::spawn(async move {
            crate::listener::serve(&listen, t, s).await
        }))
    };
    let Some(sink) = connect(&cfg, &mut stop).await? else {
        return Ok(());
    };
    if !start_when_up(&sink, &mut stop).await? {
        return Ok(());
    }
    let sink = Arc::new(sink);
    crate::db::agents::sync_config(sink.pool(), &cfg.agents)
        .await
        .context("writing the configured agents to the agents table")?;
    telemetry.set_database_up(true);
    telemetry.set_ready(true);
    let api = api.map(|a| tokio::spawn(a.serve(stop.clone())));
    let fleet = match crate::fleet::load(sink.pool(), &config_jobs, &builder).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the agents added through the API yet; pulling the configured ones");
            config_jobs.clone()
        }
    };
    tracing::info!(
        agents = fleet.len(),
        from_config = cfg.agents.len(),
        schedule = %cfg.scrape.schedule,
        max_concurrent = cfg.scrape.max_concurrent,
        "scheduling pulls"
    );
    let (fleet_tx, fleet_rx) = watch::channel(fleet);
    let maintain = tokio::spawn(crate::fleet::maintain(
        sink.pool().clone(),
        config_jobs,
        builder,
        fleet_changed,
        fleet_tx,
        Duration::from_secs(cfg.api.agents_poll_secs),
        stop.clone(),
    ));
    let alerting = cfg.alerting.enabled.then(|| {
        let (c, m, s) = (cfg.clone(), telemetry.alerting.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::alerting::job::run(c, m, s).await {
                tracing::error!(error = %format!("{e:#}"), "alerting stopped: no rule is evaluated, no notification sent");
            }
        })
    });
    let retention = tokio::spawn(retention_loop(
        sink.clone(),
        retention_schedule,
        telemetry.clone(),
        stop.clone(),
    ));
    scheduler::run_fleet(
        fleet_rx,
        sink.clone(),
        telemetry.clone(),
        settings(&cfg),
        stop.clone(),
    )
    .await;
    retention.await.ok();
    maintain.await.ok();
    if let Some(a) = alerting {
        a.await.ok();
    }
    if let Some(a) = api {
        a.await.ok();
    }
    if let Some(l) = listener {
        match l.await {
            Ok(r) => r?,
            Err(e) => tracing::warn!(error = %e, "self-metrics listener task"),
        }
    }
    tracing::info!("stopped");
    Ok(())
}
