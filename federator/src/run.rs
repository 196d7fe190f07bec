//! `pga-federator run` and `pga-federator migrate`.
//!
//! `run` connects to the database (waiting while it is unreachable), applies the
//! migrations, then runs the scrape scheduler, the retention job and the
//! self-metrics listener until SIGTERM or SIGINT, and stops them cleanly: no pull
//! starts after the signal, a transaction in flight is rolled back (its cursor did
//! not move) and the process exits 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio::sync::watch;

use crate::config::{FederatorConfig, parse_schedule};
use crate::scheduler::{self, AgentJob, SchedulerSettings};
use crate::scrape::{AgentClient, ClientLimits, Pacing};
use crate::sink::Sink;
use crate::telemetry::Telemetry;
use crate::url::AgentUrl;

/// Builds one job per configured agent. Assumes the configuration validated.
pub fn jobs(cfg: &FederatorConfig) -> anyhow::Result<Vec<AgentJob>> {
    let limits = ClientLimits {
        connect_timeout: cfg.scrape.connect_timeout(),
        request_timeout: cfg.scrape.request_timeout(),
        max_response_bytes: cfg.scrape.max_response_bytes,
    };
    let urls = cfg
        .agents
        .iter()
        .map(|a| AgentUrl::parse(&a.url).with_context(|| format!("agent {}", a.name)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tls = if urls.iter().any(|u| u.tls) {
        Some(crate::scrape::client::tls_config(&cfg.tls)?)
    } else {
        None
    };
    cfg.agents
        .iter()
        .zip(urls)
        .map(|(a, url)| {
            let expr = a.schedule.as_deref().unwrap_or(&cfg.scrape.schedule);
            let schedule = parse_schedule(expr)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("agent {}", a.name))?;
            Ok(AgentJob {
                name: a.name.clone(),
                client: AgentClient::new(url, tls.clone(), limits),
                schedule,
            })
        })
        .collect()
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
            Err(e) => return Err(e).context("connecting to the database (database.url)"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return Ok(None),
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Migrates, retrying while the database is unavailable.
async fn migrate_when_up(sink: &Sink, stop: &mut watch::Receiver<bool>) -> anyhow::Result<bool> {
    let mut delay = Duration::from_secs(1);
    loop {
        match sink.migrate().await {
            Ok(report) => {
                tracing::info!(report = ?report, "database schema up to date");
                return Ok(true);
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, retry_in_secs = delay.as_secs(), "migration waits for the database");
            }
            Err(e) => return Err(e).context("migrating the database"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return Ok(false),
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// `pga-federator migrate`.
pub async fn migrate(cfg: &FederatorConfig) -> anyhow::Result<String> {
    let sink = Sink::connect(&cfg.database.url, cfg.sink_options()?)
        .await
        .context("connecting to the database (database.url)")?;
    let report = sink.migrate().await.context("migrating the database")?;
    Ok(format!("{report:?}"))
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
    let jobs = jobs(&cfg)?;
    let retention_schedule = parse_schedule(&cfg.retention.schedule).map_err(anyhow::Error::msg)?;
    let mut stop = stop_on_signals()?;
    let telemetry = Arc::new(Telemetry::new());
    let listener = if cfg.metrics.listen.is_empty() {
        None
    } else {
        let (listen, t, s) = (cfg.metrics.listen.clone(), telemetry.clone(), stop.clone());
        // Bind before anything else, so a wrong address fails the start at once.
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
    if !migrate_when_up(&sink, &mut stop).await? {
        return Ok(());
    }
    let sink = Arc::new(sink);
    telemetry.set_database_up(true);
    telemetry.set_ready(true);
    tracing::info!(
        agents = jobs.len(),
        schedule = %cfg.scrape.schedule,
        max_concurrent = cfg.scrape.max_concurrent,
        "scheduling pulls"
    );
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
    scheduler::run(
        jobs,
        sink.clone(),
        telemetry.clone(),
        settings(&cfg),
        stop.clone(),
    )
    .await;
    retention.await.ok();
    if let Some(a) = alerting {
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
