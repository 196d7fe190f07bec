//! The fleet the scheduler pulls: the configuration file's agents plus the agents
//! added through the API (the `agents` table), kept in step without a restart.
//!
//! At start the configuration's agents are written to the table (source
//! `config`). Then [`maintain`] reads the API's agents every `api.agents_poll_secs`
//! (and at once when this federator's API changes one) and hands the scheduler
//! the new set when it differs ([`crate::scheduler::run_fleet`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::ClientConfig;
use sqlx::PgPool;
use tokio::sync::{Notify, watch};

use crate::config::{FederatorConfig, parse_schedule};
use crate::db::agents;
use crate::scheduler::{AgentJob, FleetJob};
use crate::scrape::{AgentClient, ClientLimits};
use crate::url::AgentUrl;

/// Builds jobs from agent definitions.
#[derive(Debug, Clone)]
pub struct JobBuilder {
    limits: ClientLimits,
    default_schedule: String,
    /// The federator's client certificate, when `[tls]` is set.
    tls: Option<Arc<ClientConfig>>,
}

impl JobBuilder {
    /// From the configuration; loads `[tls]` when it is set or `need_tls`.
    pub fn new(cfg: &FederatorConfig, need_tls: bool) -> anyhow::Result<JobBuilder> {
        let t = &cfg.tls;
        let configured = t.cert_file.is_some() && t.key_file.is_some() && t.ca_file.is_some();
        let tls = if configured || need_tls {
            Some(crate::scrape::client::tls_config(&cfg.tls)?)
        } else {
            None
        };
        Ok(JobBuilder {
            limits: ClientLimits {
                connect_timeout: cfg.scrape.connect_timeout(),
                request_timeout: cfg.scrape.request_timeout(),
                max_response_bytes: cfg.scrape.max_response_bytes,
            },
            default_schedule: cfg.scrape.schedule.clone(),
            tls,
        })
    }

    /// The job of one agent.
    pub fn job(
        &self,
        name: &str,
        url: &str,
        schedule: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> anyhow::Result<FleetJob> {
        let parsed = AgentUrl::parse(url).with_context(|| format!("agent {name}"))?;
        anyhow::ensure!(
            !parsed.tls || self.tls.is_some(),
            "agent {name}: {url} is https:// and [tls] is not configured"
        );
        let expr = schedule.unwrap_or(&self.default_schedule);
        let schedule = parse_schedule(expr)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("agent {name}"))?;
        Ok(FleetJob {
            spec: format!("{url} {expr} {labels:?}"),
            job: AgentJob {
                name: name.to_owned(),
                client: AgentClient::new(parsed, self.tls.clone(), self.limits),
                schedule,
                labels: labels.clone(),
            },
        })
    }
}

/// The configuration file's jobs.
pub fn config_jobs(cfg: &FederatorConfig, b: &JobBuilder) -> anyhow::Result<Vec<FleetJob>> {
    cfg.agents
        .iter()
        .map(|a| b.job(&a.name, &a.url, a.schedule.as_deref(), &a.labels))
        .collect()
}

/// The whole fleet: the configuration's jobs and the API's (a name in both is the
/// configuration's; an API agent that cannot be built is left out and logged).
pub async fn load(
    pool: &PgPool,
    config: &[FleetJob],
    b: &JobBuilder,
) -> Result<Vec<FleetJob>, sqlx::Error> {
    let mut jobs = config.to_vec();
    for a in agents::api_fleet(pool).await? {
        if jobs.iter().any(|j| j.job.name == a.name) {
            continue;
        }
        match b.job(&a.name, &a.url, a.schedule.as_deref(), &a.labels.0) {
            Ok(j) => jobs.push(j),
            Err(e) => {
                tracing::warn!(agent = %a.name, error = format!("{e:#}"), "agent from the API cannot be pulled; fix it through the API")
            }
        }
    }
    Ok(jobs)
}

fn specs(jobs: &[FleetJob]) -> Vec<(String, String)> {
    let mut v: Vec<_> = jobs
        .iter()
        .map(|j| (j.job.name.clone(), j.spec.clone()))
        .collect();
    v.sort();
    v
}

/// Keeps `tx` at the current fleet until `stop`.
pub async fn maintain(
    pool: PgPool,
    config: Vec<FleetJob>,
    builder: JobBuilder,
    changed: Arc<Notify>,
    tx: watch::Sender<Vec<FleetJob>>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = changed.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match load(&pool, &config, &builder).await {
            Ok(jobs) => {
                if specs(&jobs) != specs(&tx.borrow()) {
                    tracing::info!(
                        agents = jobs.len(),
                        "fleet changed: pulls follow the agents table"
                    );
                    tx.send_replace(jobs);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the agents table; the fleet stays as it is")
            }
        }
    }
}
