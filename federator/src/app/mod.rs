//! The composition root: the one place where the federator is built from its
//! configuration and run. `pga-federator run` ([`run`]) builds, in order:
//!
//! 1. the stop signal (SIGTERM, SIGINT) and the self-metrics ([`Telemetry`]);
//! 2. the HTTP API ([`api`]: bound first, so a wrong address or certificate fails
//!    the start) and the self-metrics listener;
//! 3. the database sink ([`Sink`]: connected, then its schema checked, both waiting
//!    while the database is unavailable; pending migrations applied when the role
//!    may; TimescaleDB only read);
//! 4. this replica's lease ([`crate::cluster`]: joined, then the agents it is
//!    assigned claimed), the fleet (configured agents written to the `agents`
//!    table, the API's ones read) and the pull jobs of the agents this replica
//!    holds ([`crate::pull`]), each batch written fenced by the agent's epoch;
//! 5. the scheduled jobs ([`crate::jobs`]): retention, the fleet's upkeep, alerting;
//!
//! then runs until the signal and stops them together: no pull starts after the
//! signal, a transaction in flight is rolled back (its cursor did not move), the
//! replica's leases are released (other replicas take its agents at once) and the
//! process exits 0. `migrate` ([`migrate`]) is the owner's: it also converts to
//! TimescaleDB hypertables and sets their policies.
//!
//! Configuration values become the options of the parts here ([`sink_options`],
//! [`pool_options`], [`settings`]), so `config` depends on no part it configures.
//! Errors are `anyhow` from here on up: this is an edge, where they are said to the
//! operator.

pub mod alerting;
pub mod api;
pub mod remote_write;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio::sync::watch;

use crate::config::{FederatorConfig, parse_schedule};
use crate::db::PoolOptions;
use crate::db::sink::{RetentionOptions, Sink, SinkError, SinkOptions};
use crate::jobs::{self, Backoff, Every};
use crate::pull::fleet::JobBuilder;
use crate::pull::scheduler::{self, AgentJob, SchedulerSettings};
use crate::pull::url::AgentUrl;
use crate::pull::{ClientLimits, Pacing};
use crate::telemetry::Telemetry;

/// What builds the agents' pull jobs: the client limits and default schedule of
/// `[scrape]`, and `[tls]` (loaded when it is set or `need_tls`).
pub fn job_builder(cfg: &FederatorConfig, need_tls: bool) -> anyhow::Result<JobBuilder> {
    let t = &cfg.tls;
    let configured = t.cert_file.is_some() && t.key_file.is_some() && t.ca_file.is_some();
    let tls = if configured || need_tls {
        Some(crate::pull::client::tls_config(&cfg.tls)?)
    } else {
        None
    };
    let limits = ClientLimits {
        connect_timeout: cfg.scrape.connect_timeout(),
        request_timeout: cfg.scrape.request_timeout(),
        max_response_bytes: cfg.scrape.max_response_bytes,
    };
    Ok(JobBuilder::new(limits, cfg.scrape.schedule.clone(), tls))
}

/// Builds one job per configured agent. Assumes the configuration validated.
pub fn jobs(cfg: &FederatorConfig) -> anyhow::Result<Vec<AgentJob>> {
    let builder = job_builder(cfg, needs_tls(cfg))?;
    Ok(crate::pull::fleet::config_jobs(cfg, &builder)?
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

/// What the sink is given: pool, timeouts, TimescaleDB use and retention ages.
pub fn sink_options(cfg: &FederatorConfig) -> anyhow::Result<SinkOptions> {
    let d = &cfg.database;
    let r = &cfg.retention;
    Ok(SinkOptions {
        password: cfg.database_password()?,
        max_connections: d.max_connections,
        acquire_timeout: Duration::from_secs(d.connect_timeout_secs),
        statement_timeout: (d.statement_timeout_secs > 0)
            .then(|| Duration::from_secs(d.statement_timeout_secs)),
        // A replica frozen or cut off in the middle of a batch holds its agent's
        // rows locked: the server ends that transaction once its lease would have
        // run out, so that the agent can be taken over.
        idle_in_transaction_timeout: Some(cfg.cluster.lease_ttl()),
        timescaledb: d.timescaledb,
        packed_samples: d.packed_samples,
        max_silence: Duration::from_secs(cfg.rollups.max_silence_secs),
        retention: RetentionOptions {
            raw: Duration::from_secs(r.raw_secs),
            rollup_1m: Duration::from_secs(r.rollup_1m_secs),
            rollup_10m: Duration::from_secs(r.rollup_10m_secs),
            rollup_1h: Duration::from_secs(r.rollup_1h_secs),
            log_events: Duration::from_secs(r.log_events_secs),
            ..Default::default()
        },
    })
}

/// The database pool options of `cfg` with `max_connections` connections (the API's
/// pool, the administration commands' pool).
pub fn pool_options(cfg: &FederatorConfig, max_connections: u32) -> anyhow::Result<PoolOptions> {
    let d = &cfg.database;
    Ok(PoolOptions {
        password: cfg.database_password()?,
        max_connections,
        acquire_timeout: Duration::from_secs(d.connect_timeout_secs),
        statement_timeout: (d.statement_timeout_secs > 0)
            .then(|| Duration::from_secs(d.statement_timeout_secs)),
    })
}

/// The lease's own pool (two connections, connecting on first use): renewals never
/// wait behind pulls for a connection, and a statement that cannot finish within
/// one renewal interval (a lock, a stalled network) fails and is retried.
fn cluster_pool(cfg: &FederatorConfig) -> anyhow::Result<sqlx::PgPool> {
    let c = &cfg.cluster;
    let bound = c.renew_interval().as_millis().to_string();
    let mut o =
        <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&cfg.database.url)
            .context("database.url")?
            .application_name("pga-federator cluster")
            .options([
                ("statement_timeout", bound.as_str()),
                ("lock_timeout", bound.as_str()),
            ]);
    if let Some(p) = cfg.database_password()? {
        o = o.password(&p);
    }
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(c.renew_interval())
        .connect_lazy_with(o))
}

/// How long the start waits between attempts while the database is unavailable.
fn database_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
}

/// A sink error with the fix, when there is a known one.
fn with_hint(e: SinkError) -> anyhow::Error {
    match e.hint() {
        Some(hint) => anyhow::anyhow!("{e}\n  fix: {hint}"),
        None => anyhow::Error::new(e),
    }
}

/// Connects the sink and checks the schema ([`Sink::start`]), waiting while the
/// database is unavailable; `None` when stopped first.
async fn start_sink(
    cfg: &FederatorConfig,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<Sink>> {
    let options = sink_options(cfg)?;
    let connected = jobs::retry(
        "database unavailable; waiting for it",
        database_backoff(),
        stop,
        SinkError::is_transient,
        || Sink::connect(&cfg.database.url, options.clone()),
    )
    .await
    .map_err(with_hint)?;
    let Some(sink) = connected else {
        return Ok(None);
    };
    let started = jobs::retry(
        "the start waits for the database",
        database_backoff(),
        stop,
        SinkError::is_transient,
        || sink.start(),
    )
    .await
    .map_err(with_hint)?;
    let Some(report) = started else {
        return Ok(None);
    };
    tracing::info!(schema = %report, "database ready");
    for note in &report.notes {
        tracing::warn!("{note}");
    }
    Ok(Some(sink))
}

/// `pga-federator migrate`: what it did, then what the operator should know.
pub async fn migrate(cfg: &FederatorConfig) -> anyhow::Result<String> {
    let sink = Sink::connect(&cfg.database.url, sink_options(cfg)?)
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

/// How long the pack run after each retention run may start batches.
const PACK_BUDGET: Duration = Duration::from_secs(15 * 60);

/// A job of the sink: `work` at each instant of `every`, retried with backoff when
/// it fails.
fn sink_job<Fut>(
    name: &'static str,
    every: Every,
    sink: Arc<Sink>,
    telemetry: Arc<Telemetry>,
    stop: watch::Receiver<bool>,
    work: fn(Arc<Sink>, Arc<Telemetry>, watch::Receiver<bool>) -> Fut,
) -> impl Future<Output = ()>
where
    Fut: Future<Output = Result<(), SinkError>>,
{
    let job_stop = stop.clone();
    jobs::run(
        jobs::Schedule {
            name,
            every,
            backoff: Backoff::new(Duration::from_secs(60), Duration::from_secs(3600)),
            wake: None,
        },
        stop,
        move || work(sink.clone(), telemetry.clone(), job_stop.clone()),
    )
}

/// The retention job: drops what is older than the `[retention]` ages at each
/// instant of `retention.schedule`, then packs raw samples left as rows
/// ([`Sink::pack`]) for at most [`PACK_BUDGET`], where the sink packs.
async fn retention(
    sink: Arc<Sink>,
    telemetry: Arc<Telemetry>,
    stop: watch::Receiver<bool>,
) -> Result<(), SinkError> {
    let r = sink.retention(Utc::now().timestamp_millis()).await;
    telemetry.retention(r.is_ok());
    let r = r?;
    tracing::info!(dropped = ?r.dropped, partitions_created = r.partitions_created, "retention done");
    if sink.packs() {
        pack_after_retention(&sink, &telemetry, &stop).await;
    }
    Ok(())
}

/// How often the hours job looks for buckets to close.
const HOURS_EVERY: Duration = Duration::from_secs(5 * 60);
/// How long one hours job run may start agents' transactions.
const HOURS_BUDGET: Duration = Duration::from_secs(4 * 60);

/// The hours job, every [`HOURS_EVERY`]: closes each agent's ended ten minutes and
/// hours ([`Sink::close_hours`]), whose rollups are written from the 1-minute ones
/// once instead of at every pull.
async fn close_hours(
    sink: Arc<Sink>,
    telemetry: Arc<Telemetry>,
    stop: watch::Receiver<bool>,
) -> Result<(), SinkError> {
    let r = sink.close_hours(Some(HOURS_BUDGET), Some(&stop)).await;
    telemetry.hours_ended(r.as_ref().ok());
    let r = r?;
    if r.rows > 0 || !r.complete {
        tracing::info!(
            agents = r.agents,
            rows = r.rows,
            agents_busy = r.agents_busy,
            failed = r.failures.len(),
            complete = r.complete,
            secs = r.elapsed.as_secs_f64(),
            "10-minute and 1-hour rollups closed"
        );
    }
    Ok(())
}

/// The pack run after retention: its outcome is logged and counted, a failure
/// waits for the next run (nothing of a failed batch is kept).
async fn pack_after_retention(sink: &Sink, telemetry: &Telemetry, stop: &watch::Receiver<bool>) {
    let options = crate::db::sink::PackOptions {
        budget: Some(PACK_BUDGET),
        stop: Some(stop.clone()),
        ..Default::default()
    };
    let result = sink.pack(&options, |b| telemetry.pack_batch(b.rows)).await;
    match result {
        Ok(p) => {
            telemetry.pack_ended(p.failures.len() as u64, Some(p.remaining_rows));
            if p.batches > 0 || !p.complete {
                tracing::info!(
                    batches = p.batches,
                    rows = p.rows_packed,
                    packed_rows = p.packed_rows,
                    agents = p.agents,
                    agents_busy = p.agents_busy,
                    complete = p.complete,
                    remaining_rows = p.remaining_rows,
                    secs = p.elapsed.as_secs_f64(),
                    "raw samples packed"
                );
            }
        }
        Err(e) => {
            telemetry.pack_ended(1, None);
            tracing::warn!(error = %e, "packing raw samples failed; the next retention run goes on where it stopped");
        }
    }
}

/// Writes the configured agents to the agents table, unless other replicas run
/// with different ones: then each difference is said and the table's agents are
/// pulled ([`crate::cluster::agreement`]). The configuration's jobs to pull.
async fn agree_on_agents(
    cfg: &FederatorConfig,
    sink: &Sink,
    builder: &JobBuilder,
    config_jobs: Vec<crate::pull::scheduler::FleetJob>,
) -> anyhow::Result<Vec<crate::pull::scheduler::FleetJob>> {
    let pool = sink.pool();
    crate::cluster::end_dead_on_host(pool, "")
        .await
        .context("reading the replicas of this host")?;
    let others = crate::cluster::lease::live(pool)
        .await
        .context("reading the live replicas")?;
    if !others.is_empty() {
        let table = crate::db::agents::config_fleet(pool)
            .await
            .context("reading the agents table")?;
        let differences = crate::cluster::agreement::differences(&cfg.agents, &table);
        if !differences.is_empty() {
            for d in &differences {
                tracing::warn!(replicas = others.len(), "{d}");
            }
            tracing::warn!(
                differences = differences.len(),
                "this replica's [[agents]] differ from the agents table the running replicas \
                 wrote: the table wins, this replica pulls its agents; give every replica the \
                 same [[agents]]"
            );
            let mut jobs = Vec::new();
            for a in &table {
                match builder.job(&a.name, &a.url, a.schedule.as_deref(), &a.labels.0) {
                    Ok(j) => jobs.push(j),
                    Err(e) => {
                        tracing::warn!(agent = %a.name, error = %e, "agent from the table cannot be pulled by this replica")
                    }
                }
            }
            return Ok(jobs);
        }
    }
    crate::db::agents::sync_config(pool, &cfg.agents)
        .await
        .context("writing the configured agents to the agents table")?;
    Ok(config_jobs)
}

/// `pga-federator run`.
pub async fn run(cfg: FederatorConfig) -> anyhow::Result<()> {
    let builder = job_builder(&cfg, needs_tls(&cfg))?;
    let config_jobs = crate::pull::fleet::config_jobs(&cfg, &builder)?;
    let retention_schedule = parse_schedule(&cfg.retention.schedule)?;
    let mut stop = stop_on_signals()?;
    let mut telemetry = Telemetry::new();
    let api_metrics = Arc::new(crate::http::metrics::ApiMetrics::default());
    api_metrics.register(telemetry.registry_mut());
    let remote_write_metrics = crate::remote_write::RemoteWriteMetrics::default();
    remote_write_metrics.register(telemetry.registry_mut());
    let telemetry = Arc::new(telemetry);
    let fleet_changed = Arc::new(tokio::sync::Notify::new());
    // Bind before anything else, so a wrong address or certificate fails the start.
    let api = api::Api::bind(&cfg, api_metrics, fleet_changed.clone()).await?;
    let listener = if cfg.metrics.listen.is_empty() {
        None
    } else {
        let (listen, t, s) = (cfg.metrics.listen.clone(), telemetry.clone(), stop.clone());
        let l = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("metrics.listen = \"{listen}\": cannot listen"))?;
        drop(l);
        Some(tokio::spawn(async move {
            crate::listener::serve(&listen, t, s)
                .await
                .with_context(|| format!("metrics.listen = \"{listen}\""))
        }))
    };
    let Some(sink) = start_sink(&cfg, &mut stop).await? else {
        return Ok(());
    };
    let sink = Arc::new(sink);
    let config_jobs = agree_on_agents(&cfg, &sink, &builder, config_jobs).await?;
    telemetry.set_database_up(true);
    telemetry.set_ready(true);
    let api = api.map(|a| tokio::spawn(a.serve(stop.clone())));
    let fleet = match crate::pull::fleet::load(sink.pool(), &config_jobs, &builder).await {
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
    let mut membership = crate::cluster::Membership::join(
        cluster_pool(&cfg)?,
        cfg.cluster.clone(),
        telemetry.cluster.clone(),
    )
    .await
    .context("joining the cluster (the cluster_replica_leases table)")?;
    let cluster = membership.cluster();
    let (assigned_tx, assigned_rx) = watch::channel(Vec::new());
    if let Err(e) = membership.tick(&fleet, &assigned_tx).await {
        tracing::warn!(error = %e, "the first assignment failed; retried");
    }
    let (fleet_tx, fleet_rx) = watch::channel(fleet);
    let membership = tokio::spawn(membership.run(fleet_rx, assigned_tx, stop.clone()));
    let maintain = tokio::spawn(crate::pull::fleet::maintain(
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
        let leader = cluster.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::app::alerting::run(c, m, leader, s).await {
                tracing::error!(error = %format!("{e:#}"), "alerting stopped: no rule is evaluated, no notification sent");
            }
        })
    });
    // Each replica sends the agents it holds, as it pulls them into the database.
    let remote_writes = remote_write::start(
        &cfg,
        sink.pool(),
        &remote_write_metrics,
        &assigned_rx,
        &cluster,
        &stop,
    )
    .await?;
    let retention = tokio::spawn(sink_job(
        "retention",
        Every::Cron(Box::new(retention_schedule)),
        sink.clone(),
        telemetry.clone(),
        stop.clone(),
        retention,
    ));
    let hours = tokio::spawn(sink_job(
        "hours",
        Every::Interval(HOURS_EVERY),
        sink.clone(),
        telemetry.clone(),
        stop.clone(),
        close_hours,
    ));
    scheduler::run_fleet(
        assigned_rx,
        Arc::new(crate::cluster::FencedSink::new(sink.clone(), cluster)),
        telemetry.clone(),
        settings(&cfg),
        stop.clone(),
    )
    .await;
    retention.await.ok();
    hours.await.ok();
    maintain.await.ok();
    for r in remote_writes {
        r.await.ok();
    }
    if let Some(a) = alerting {
        a.await.ok();
    }
    if let Ok(m) = membership.await {
        m.leave().await;
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
