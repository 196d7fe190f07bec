//! The alerting service of `pga-federator run`: loads the rule files into the
//! database, starts one delivery worker per receiver, and runs the evaluation cycle
//! on its cron schedule until stopped.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::{Notify, watch};

use crate::alerting::evaluator::{Evaluator, EvaluatorSettings};
use crate::alerting::metrics::AlertingMetrics;
use crate::alerting::rulefile::{self, RuleFile};
use crate::config::{AlertingConfig, ClientKeys, FederatorConfig, parse_schedule};
use crate::db::{outbox, rules};
use crate::jobs::{Backoff, Every, Schedule};
use crate::notify::http::{self, Auth, Client};
use crate::notify::worker::{DeliverySettings, Kind, Receiver, Worker};

/// How long notifications are kept in the outbox after every receiver passed them.
const OUTBOX_KEEP_MS: i64 = 30 * 86_400_000;

/// Connection options of the alerting's sessions: the database of `[database]`,
/// `statement_timeout` = `alerting.query_timeout_secs`.
pub fn connect_options(cfg: &FederatorConfig) -> anyhow::Result<PgConnectOptions> {
    let mut o = PgConnectOptions::from_str(&cfg.database.url)
        .context("database.url")?
        .application_name("pga-federator alerting");
    if let Some(p) = cfg.database_password()? {
        o = o.password(&p);
    }
    Ok(o.options([(
        "statement_timeout",
        format!("{}", cfg.alerting.query_timeout_secs * 1000),
    )]))
}

/// The alerting's own pool (reads of the evaluator).
pub async fn pool(cfg: &FederatorConfig) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(cfg.alerting.max_connections.max(1))
        .acquire_timeout(Duration::from_secs(
            cfg.database.connect_timeout_secs.max(1),
        ))
        .connect_with(connect_options(cfg)?)
        .await
        .context("connecting to the database for alerting (database.url)")
}

/// The receivers of `[alerting]`, with their clients.
pub fn receivers(cfg: &AlertingConfig) -> anyhow::Result<Vec<Receiver>> {
    let mut out = Vec::new();
    for a in &cfg.alertmanagers {
        let ctx = || format!("alerting.alertmanagers {}", a.name);
        out.push(Receiver {
            name: a.name.clone(),
            kind: Kind::Alertmanager,
            client: client_for(&a.url, a.client_keys(), Duration::from_secs(a.timeout_secs))
                .with_context(ctx)?,
        });
    }
    for w in &cfg.webhooks {
        let ctx = || format!("alerting.webhooks {}", w.name);
        let secret = match &w.hmac_secret_file {
            Some(f) => Some(http::read_secret(f).with_context(ctx)?.into_bytes()),
            None => None,
        };
        out.push(Receiver {
            name: w.name.clone(),
            kind: Kind::Webhook { secret },
            client: client_for(&w.url, w.client_keys(), Duration::from_secs(w.timeout_secs))
                .with_context(ctx)?,
        });
    }
    Ok(out)
}

/// The HTTP client of a destination (a receiver, a remote-write receiver): TLS for
/// an https:// URL, basic authentication (a user and the file of its password) or a
/// bearer token (from its file), as configured; the files are read now.
pub(crate) fn client_for(
    url: &str,
    keys: ClientKeys<'_>,
    timeout: Duration,
) -> anyhow::Result<Client> {
    let tls = if url.starts_with("https://") {
        Some(http::tls_config(
            keys.ca_file,
            keys.cert_file.zip(keys.key_file),
        )?)
    } else {
        None
    };
    let auth = match (keys.username, keys.password_file, keys.bearer_token_file) {
        (Some(user), Some(pw), _) => Auth::Basic {
            user: user.to_owned(),
            password: http::read_secret(pw)?,
        },
        (_, _, Some(t)) => Auth::Bearer(http::read_secret(t)?),
        _ => Auth::None,
    };
    Ok(Client::new(url, tls, auth, timeout)?)
}

/// The evaluation interval of a cron schedule: the gap between its next two instants.
pub fn interval_of(schedule: &cron::Schedule) -> Duration {
    let mut it = schedule.upcoming(Utc);
    match (it.next(), it.next()) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or(Duration::from_secs(30)),
        _ => Duration::from_secs(30),
    }
}

/// The delivery settings of `[alerting]`.
pub fn delivery_settings(cfg: &AlertingConfig) -> anyhow::Result<DeliverySettings> {
    let schedule = parse_schedule(&cfg.schedule)?;
    let resend = Duration::from_secs(cfg.resend_secs);
    Ok(DeliverySettings {
        retry_initial: Duration::from_millis(cfg.retry_initial_ms),
        retry_max: Duration::from_secs(cfg.retry_max_secs),
        resend,
        resolved_resend: Duration::from_secs(cfg.resolved_resend_secs),
        valid_for: 4 * interval_of(&schedule).max(resend),
        external_url: cfg.external_url.clone(),
        poll: Duration::from_secs(1),
    })
}

/// Loads the configured rule files and makes the stored file rules equal to them.
/// A file with a problem stops the reload (every problem is returned): the rules
/// stored before stay as they were.
pub async fn load_rule_files(
    pool: &PgPool,
    cfg: &AlertingConfig,
) -> anyhow::Result<(Vec<RuleFile>, rules::SyncReport)> {
    let existing: Vec<_> = cfg
        .rule_files
        .iter()
        .filter(|p| p.exists())
        .cloned()
        .collect();
    let files = rulefile::load_all(&existing).map_err(|errors| {
        anyhow::anyhow!(
            "{}\nthe rule files were not loaded; the rules stored before stay in force",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let report = rules::sync_files(&mut tx, &files).await?;
    tx.commit().await?;
    Ok((files, report))
}

/// Runs the alerting until `stop`.
pub async fn run(
    cfg: FederatorConfig,
    metrics: AlertingMetrics,
    cluster: Arc<crate::cluster::Cluster>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let a = &cfg.alerting;
    let schedule = parse_schedule(&a.schedule)?;
    let receivers = receivers(a)?;
    let delivery = delivery_settings(a)?;
    let pool = pool(&cfg).await?;
    match load_rule_files(&pool, a).await {
        Ok((files, r)) => tracing::info!(
            files = files.len(),
            rules = files.iter().map(|f| f.rules.len()).sum::<usize>(),
            added = r.added.len(),
            updated = r.updated.len(),
            removed = r.removed.len(),
            replaced_api_rules = ?r.replaced,
            "rule files loaded"
        ),
        Err(e) => tracing::error!(error = %e, "rule files refused"),
    }
    outbox::ensure_receivers(
        &pool,
        &receivers
            .iter()
            .map(|r| (r.name.clone(), r.kind.as_str()))
            .collect::<Vec<_>>(),
    )
    .await
    .context("registering the receivers")?;
    let wake = Arc::new(Notify::new());
    let mut workers = tokio::task::JoinSet::new();
    for r in receivers {
        let w = Worker::new(r, delivery.clone(), connect_options(&cfg)?, metrics.clone());
        workers.spawn(w.run(wake.clone(), stop.clone()));
    }
    let only: HashSet<String> = cfg.agents.iter().map(|a| a.name.clone()).collect();
    let evaluator = Evaluator::new(
        pool.clone(),
        connect_options(&cfg)?,
        EvaluatorSettings {
            engine: a.engine_settings(),
            max_silence_ms: a.max_silence_secs as i64 * 1000,
            external_url: a.external_url.clone(),
            only_agents: Some(only),
        },
        Some(metrics.clone()),
    )
    .with_leader(cluster);
    tracing::info!(schedule = %a.schedule, step_secs = a.step_secs, "alert evaluation scheduled");
    let evaluator = Arc::new(tokio::sync::Mutex::new(evaluator));
    let cycles = crate::jobs::run(
        Schedule {
            name: "alert evaluation",
            every: Every::Cron(Box::new(schedule)),
            backoff: Backoff::new(Duration::from_secs(1), interval_of_secs(a)),
            wake: None,
        },
        stop.clone(),
        || {
            let (evaluator, wake) = (evaluator.clone(), wake.clone());
            async move { cycle(&mut *evaluator.lock().await, &wake).await }
        },
    );
    let purge = crate::jobs::run(
        Schedule {
            name: "outbox purge",
            every: Every::Interval(Duration::from_secs(3600)),
            backoff: Backoff::new(Duration::from_secs(60), Duration::from_secs(3600)),
            wake: None,
        },
        stop,
        || {
            let pool = pool.clone();
            async move {
                let n = outbox::purge(&pool, OUTBOX_KEEP_MS).await?;
                if n > 0 {
                    tracing::info!(notifications = n, "old delivered notifications purged");
                }
                Ok::<(), sqlx::Error>(())
            }
        },
    );
    tokio::join!(cycles, purge);
    while workers.join_next().await.is_some() {}
    Ok(())
}

/// The longest wait before a failed evaluation is tried again: the schedule's
/// interval.
fn interval_of_secs(a: &AlertingConfig) -> Duration {
    parse_schedule(&a.schedule).map_or(Duration::from_secs(30), |s| interval_of(&s))
}

/// One evaluation cycle, logged; wakes the delivery workers when it queued
/// notifications.
async fn cycle(evaluator: &mut Evaluator, wake: &Notify) -> Result<(), sqlx::Error> {
    let now = Utc::now().timestamp_millis();
    let r = evaluator.cycle(now).await?;
    if !r.ran {
        tracing::debug!("another federator evaluates the rules now");
        return Ok(());
    }
    if r.notifications > 0 {
        wake.notify_waiters();
    }
    // Said at info when something happened, else at debug; the same fields.
    macro_rules! said {
        ($level:expr) => {
            tracing::event!(
                $level,
                agents = r.agents,
                steps = r.steps,
                late_steps = r.late_steps,
                held_agents = r.held_agents,
                fired = r.fired,
                resolved = r.resolved,
                firing = r.firing,
                pending = r.pending,
                notifications = r.notifications,
                errors = r.errors,
                series = r.series_read,
                samples = r.samples_read,
                read_secs = r.read_secs,
                eval_secs = r.eval_secs,
                write_secs = r.write_secs,
                "alert evaluation"
            )
        };
    }
    if r.fired + r.resolved > 0 || r.late_steps > 0 {
        said!(tracing::Level::INFO);
    } else {
        said!(tracing::Level::DEBUG);
    }
    Ok(())
}
