//! The fleet the scheduler pulls: the configuration file's agents plus the agents
//! added through the API (the `agents` table), kept in step without a restart.
//!
//! At start the configuration's agents are written to the table (source
//! `config`). Then [`maintain`] reads the API's agents every `api.agents_poll_secs`
//! (and at once when this federator's API changes one) and hands the scheduler
//! the new set when it differs ([`crate::pull::scheduler::run_fleet`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use sqlx::PgPool;
use tokio::sync::{Notify, watch};

use crate::config::{FederatorConfig, ScheduleError, parse_schedule};
use crate::db::agents;
use crate::jobs::{self, Backoff, Every, Schedule};
use crate::pull::scheduler::{AgentJob, FleetJob};
use crate::pull::url::{AgentUrl, UrlError};
use crate::pull::{AgentClient, ClientLimits};

/// Builds jobs from agent definitions.
#[derive(Debug, Clone)]
pub struct JobBuilder {
    limits: ClientLimits,
    default_schedule: String,
    /// The federator's client certificate, when `[tls]` is set.
    tls: Option<Arc<ClientConfig>>,
}

/// Why an agent's definition cannot be pulled.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("agent {agent}: {source}")]
    Url {
        agent: String,
        #[source]
        source: UrlError,
    },
    #[error("agent {agent}: {url} is https:// and [tls] is not configured")]
    NoTls { agent: String, url: String },
    #[error("agent {agent}: {source}")]
    Schedule {
        agent: String,
        #[source]
        source: ScheduleError,
    },
}

impl JobBuilder {
    /// Jobs with these client limits, this default schedule and, for https://
    /// agents, this client configuration (the federator's certificate).
    pub fn new(
        limits: ClientLimits,
        default_schedule: String,
        tls: Option<Arc<ClientConfig>>,
    ) -> JobBuilder {
        JobBuilder {
            limits,
            default_schedule,
            tls,
        }
    }

    /// The job of one agent.
    pub fn job(
        &self,
        name: &str,
        url: &str,
        schedule: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> Result<FleetJob, JobError> {
        let parsed = AgentUrl::parse(url).map_err(|source| JobError::Url {
            agent: name.to_owned(),
            source,
        })?;
        if parsed.tls && self.tls.is_none() {
            return Err(JobError::NoTls {
                agent: name.to_owned(),
                url: url.to_owned(),
            });
        }
        let expr = schedule.unwrap_or(&self.default_schedule);
        let schedule = parse_schedule(expr).map_err(|source| JobError::Schedule {
            agent: name.to_owned(),
            source,
        })?;
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
pub fn config_jobs(cfg: &FederatorConfig, b: &JobBuilder) -> Result<Vec<FleetJob>, JobError> {
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
                tracing::warn!(agent = %a.name, error = %e, "agent from the API cannot be pulled; fix it through the API")
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

/// Keeps `tx` at the current fleet until `stop`: the agents table is read every
/// `poll`, and at once when `changed` is notified.
pub async fn maintain(
    pool: PgPool,
    config: Vec<FleetJob>,
    builder: JobBuilder,
    changed: Arc<Notify>,
    tx: watch::Sender<Vec<FleetJob>>,
    poll: Duration,
    stop: watch::Receiver<bool>,
) {
    let schedule = Schedule {
        name: "fleet upkeep (reading the agents table)",
        every: Every::Interval(poll),
        backoff: Backoff::new(poll.min(Duration::from_secs(1)), poll),
        wake: Some(changed),
    };
    jobs::run(schedule, stop, || async {
        let jobs = load(&pool, &config, &builder).await?;
        if specs(&jobs) != specs(&tx.borrow()) {
            tracing::info!(
                agents = jobs.len(),
                "fleet changed: pulls follow the agents table"
            );
            tx.send_replace(jobs);
        }
        Ok::<(), sqlx::Error>(())
    })
    .await;
}
