//! Replicas, leases and fencing (docs/federator.md, "Replicas, leases and
//! fencing"; DESIGN.md, Scale-out and invariant 7).
//!
//! Any number of `pga-federator run` processes share one central database. Each
//! is a replica with a lease: a row of `cluster_replica_leases` whose `valid_until`
//! is set from the database's clock at every renewal (`[cluster]`: TTL 15 s, renewed
//! every 5 s, retried every 1 s by default). Every renewal ([`Membership::tick`]):
//!
//! 1. renews this replica's lease (a lease that had run out is said, and renewed);
//! 2. reads the live replicas and computes, by rendezvous hashing over their ids
//!    ([`assign`]), which agents of the fleet (and whether the alerting leader
//!    lease) are this replica's;
//! 3. hands the scheduler only the agents this replica holds and keeps, releases
//!    the leases it no longer should hold, and claims those it should: a lease
//!    nobody holds, or whose holder's lease ran out, is granted with a new epoch
//!    from one sequence ([`lease::claim`]); one a live replica holds waits until
//!    that replica releases it (at its own next renewal);
//! 4. publishes what it holds ([`Holdings`]) to the pulls and the evaluator.
//!
//! A dead replica's agents are taken over once its lease ran out: the next renewal
//! is timed for the moment the earliest other lease would run out, so the takeover
//! comes within one TTL of the last renewal, and the first pull at the agent's next
//! scheduled instant.
//!
//! **Fencing** ([`FencedSink`]): each batch is written with the epoch this replica
//! holds for the agent ([`crate::db::sink::Fence`]); the statement that moves the
//! cursor checks the lease (owner, epoch, and the owner's lease valid on the
//! database's clock) and locks it, so a replica that lost the agent (frozen, cut
//! off, slow) commits nothing more for it: the batch is refused with
//! [`crate::db::sink::SinkError::Fenced`], whatever the replica believes.
//!
//! A lease whose epoch a hand edit set back is refused by the database (a trigger);
//! one this replica finds lower than the epoch it was granted is said and not used.
//!
//! A single federator needs no `[cluster]` table: it is the only replica and owns
//! every agent and the leader lease. A clean stop ends its lease and releases what
//! it holds, so a restart (or another replica) takes over at once; a replica
//! started on the same host as one whose process is gone (killed) ends that one's
//! lease at start.

pub mod agreement;
pub mod assign;
pub mod lease;
pub mod metrics;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pga_format::AgentId;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::config::ClusterConfig;
use crate::db::sink::{Fence, Sink, SinkError};
use crate::pull::batch::{Batch, Cursor};
use crate::pull::scheduler::FleetJob;
use crate::pull::{AgentStatus, Destination, DestinationError};
use lease::{AGENT, Key, Renewed};
pub use metrics::ClusterMetrics;

/// What this replica holds, as the last renewal read it from the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    /// The agents whose leases it holds, with their epochs.
    pub agents: BTreeMap<String, i64>,
    /// The alerting leader lease's epoch, when it holds it.
    pub leader: Option<i64>,
}

/// This replica: its id and what it holds, shared by the pulls, the evaluator and
/// the membership loop.
#[derive(Debug)]
pub struct Cluster {
    id: String,
    holdings: watch::Sender<Holdings>,
    /// Until when this replica's lease is surely valid (measured from before the
    /// renewal was sent); `None` before the first renewal or after a failed one
    /// past it.
    valid_until: std::sync::Mutex<Option<Instant>>,
    metrics: ClusterMetrics,
}

impl Cluster {
    /// This replica's id (`cluster_replica_leases.replica_id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What it holds now.
    pub fn holdings(&self) -> Holdings {
        self.holdings.borrow().clone()
    }

    /// The fencing token of `agent`, when this replica holds it.
    pub fn fence(&self, agent: &str) -> Option<Fence> {
        self.holdings
            .borrow()
            .agents
            .get(agent)
            .map(|&epoch| Fence {
                replica: self.id.clone(),
                epoch,
            })
    }

    /// The alerting leader lease: `(replica, epoch)` when this replica holds it.
    pub fn leader(&self) -> Option<Fence> {
        self.holdings.borrow().leader.map(|epoch| Fence {
            replica: self.id.clone(),
            epoch,
        })
    }

    /// Counts a write refused by fencing (`pga_federator_cluster_fenced_writes_total`).
    pub fn count_fenced_write(&self) {
        self.metrics.fenced_write();
    }

    /// Whether this replica's lease is valid by its own reckoning.
    pub fn lease_valid(&self) -> bool {
        self.valid_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| Instant::now() < t)
    }

    fn set_valid_until(&self, t: Option<Instant>) {
        *self.valid_until.lock().unwrap_or_else(|p| p.into_inner()) = t;
        self.metrics.set_lease_held(t.is_some());
    }
}

/// The membership loop's state: who this replica is and what it was granted.
pub struct Membership {
    pool: PgPool,
    cluster: Arc<Cluster>,
    me: lease::Replica,
    cfg: ClusterConfig,
    /// The highest epoch granted to this replica per lease, to notice one set back.
    granted: HashMap<Key, i64>,
    /// Leases said to be set back (said once).
    refused: BTreeSet<Key>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("id", &self.cluster.id)
            .finish_non_exhaustive()
    }
}

/// The host name, for `cluster_replica_leases.host`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Whether process `pid` runs on this host.
fn process_alive(pid: i32) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Ends the leases of the replicas registered from this host, other than `me`,
/// whose process is gone (killed): their agents are taken over at once rather than
/// when their leases run out.
pub async fn end_dead_on_host(pool: &PgPool, me: &str) -> Result<(), sqlx::Error> {
    for (other, pid) in lease::live_on_host(pool, &host_name(), me).await? {
        if !process_alive(pid) {
            let n = lease::end(pool, &other).await?;
            tracing::info!(replica = %other, pid, released = n, "a replica of this host whose process is gone: its lease ended, its agents taken over now");
        }
    }
    Ok(())
}

impl Membership {
    /// Registers this process as a replica (a lease of `cfg.lease_ttl_ms` from now)
    /// and ends the leases of replicas registered from this host whose process is
    /// gone (a federator killed and started again takes its agents back at once).
    pub async fn join(
        pool: PgPool,
        cfg: ClusterConfig,
        metrics: ClusterMetrics,
    ) -> Result<Membership, sqlx::Error> {
        let host = host_name();
        let me = lease::Replica {
            name: if cfg.replica_name.is_empty() {
                host.clone()
            } else {
                cfg.replica_name.clone()
            },
            host,
            pid: std::process::id() as i32,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ttl_ms: cfg.lease_ttl_ms as i32,
        };
        let sent = Instant::now();
        let id = lease::register(&pool, &me).await?;
        end_dead_on_host(&pool, &id).await?;
        let cluster = Arc::new(Cluster {
            id: id.clone(),
            holdings: watch::Sender::new(Holdings::default()),
            valid_until: std::sync::Mutex::new(Some(sent + cfg.lease_ttl())),
            metrics,
        });
        cluster.metrics.set_lease_held(true);
        tracing::info!(replica = %id, name = %me.name, ttl_ms = cfg.lease_ttl_ms, renew_ms = cfg.renew_interval_ms, "joined the cluster");
        Ok(Membership {
            pool,
            cluster,
            me,
            cfg,
            granted: HashMap::new(),
            refused: BTreeSet::new(),
        })
    }

    /// The replica, for the pulls and the evaluator.
    pub fn cluster(&self) -> Arc<Cluster> {
        self.cluster.clone()
    }

    /// One renewal (the module docs, 1.–4.): publishes the agents of `fleet` this
    /// replica holds to `assigned`; returns how long until the next one.
    pub async fn tick(
        &mut self,
        fleet: &[FleetJob],
        assigned: &watch::Sender<Vec<FleetJob>>,
    ) -> Result<Duration, sqlx::Error> {
        let me = self.cluster.id.clone();
        let sent = Instant::now();
        let renewed = lease::renew(&self.pool, &me, &self.me).await;
        match renewed {
            Ok(r) => {
                self.cluster
                    .set_valid_until(Some(sent + self.cfg.lease_ttl()));
                match r {
                    Renewed::Valid => {}
                    Renewed::Expired => {
                        self.cluster.metrics.lease_expired();
                        tracing::warn!(replica = %me, ttl_ms = self.cfg.lease_ttl_ms, "this replica's lease had run out (frozen, cut off from the database or too slow); renewed: agents taken over meanwhile are the other replicas', and writes with the old epochs are refused");
                    }
                    Renewed::Missing => {
                        self.cluster.metrics.lease_expired();
                        tracing::warn!(replica = %me, "this replica's lease row was gone (deleted by hand?); written again");
                    }
                }
            }
            Err(e) => {
                if !self.cluster.lease_valid() {
                    self.cluster.set_valid_until(None);
                }
                return Err(e);
            }
        }
        let live = lease::live(&self.pool).await?;
        let ids: Vec<String> = live.iter().map(|(id, _)| id.clone()).collect();
        // After a lease that ran out, nothing held before is trusted: every pull
        // stops, and what is still this replica's is read back below.
        let holding = match renewed {
            Ok(Renewed::Valid) => self.cluster.holdings(),
            _ => {
                publish(&self.cluster, &Holdings::default(), fleet, assigned);
                Holdings::default()
            }
        };
        let plan = plan::plan(
            &me,
            &ids,
            fleet.iter().map(|j| j.job.name.as_str()),
            &holding,
        );
        // Stop the pulls of agents to give up before their leases go.
        publish(&self.cluster, &plan.keep, fleet, assigned);
        for (kind, name) in lease::release_others(&self.pool, &me, &plan.wanted).await? {
            self.granted.remove(&(kind.clone(), name.clone()));
            tracing::info!(kind = %kind, name = %name, "lease released: the assignment moved it to another replica");
        }
        for g in lease::claim(&self.pool, &me, &plan.claim).await? {
            let (kind, name) = &g.key;
            match &g.taken_from {
                Some(from) => {
                    self.cluster.metrics.takeover();
                    tracing::info!(kind = %kind, name = %name, epoch = g.epoch, from = %from, "taken over from a replica whose lease ran out");
                }
                None => {
                    tracing::info!(kind = %kind, name = %name, epoch = g.epoch, "lease granted")
                }
            }
            self.granted.insert(g.key.clone(), g.epoch);
        }
        let mut now = Holdings::default();
        for (key, epoch) in lease::held(&self.pool, &me).await? {
            if !plan::epoch_acceptable(&self.granted, &key, epoch) {
                let mine = self.granted.get(&key).copied().unwrap_or_default();
                if self.refused.insert(key.clone()) {
                    self.cluster.metrics.epoch_refused();
                    tracing::error!(kind = %key.0, name = %key.1, epoch, granted = mine, "the lease's epoch went backwards (edited by hand?): refused, this replica does not write it; release it (owner = NULL) to have it granted anew");
                }
                continue;
            }
            self.refused.remove(&key);
            self.granted.entry(key.clone()).or_insert(epoch);
            match key.0.as_str() {
                AGENT => {
                    now.agents.insert(key.1, epoch);
                }
                _ => now.leader = Some(epoch),
            }
        }
        publish(&self.cluster, &now, fleet, assigned);
        self.cluster.metrics.set_replicas(live.len());
        // Renew again in one interval, or when the first other lease runs out
        // (its agents are taken over then).
        let next_expiry = live
            .iter()
            .filter(|(id, _)| *id != me)
            .map(|(_, left)| Duration::from_millis((*left).max(0) as u64 + 20))
            .min();
        Ok(next_expiry.map_or(self.cfg.renew_interval(), |e| {
            e.min(self.cfg.renew_interval())
        }))
    }

    /// Renews and reassigns until `stop`, following `fleet` (every change is looked
    /// at once); hands the scheduler the held agents' jobs through `assigned`.
    pub async fn run(
        mut self,
        mut fleet: watch::Receiver<Vec<FleetJob>>,
        assigned: watch::Sender<Vec<FleetJob>>,
        mut stop: watch::Receiver<bool>,
    ) -> Membership {
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                r = fleet.changed() => if r.is_err() { return self },
                _ = stop.wait_for(|s| *s) => return self,
            }
            let jobs = fleet.borrow_and_update().clone();
            wait = match self.tick(&jobs, &assigned).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, retry_ms = self.cfg.retry_interval_ms, "renewing this replica's lease failed; writes are refused once it runs out");
                    self.cfg.retry_interval()
                }
            };
        }
    }

    /// A clean stop (after the pulls and the evaluator stopped): ends this replica's
    /// lease and releases what it holds, so the others take over at once.
    pub async fn leave(self) {
        match lease::end(&self.pool, &self.cluster.id).await {
            Ok(n) => {
                tracing::info!(replica = %self.cluster.id, released = n, "left the cluster")
            }
            Err(e) => {
                tracing::warn!(error = %e, "leaving the cluster failed; the lease runs out by itself")
            }
        }
        self.cluster.set_valid_until(None);
    }
}

/// Publishes `h` and the jobs of its agents.
fn publish(
    cluster: &Cluster,
    h: &Holdings,
    fleet: &[FleetJob],
    assigned: &watch::Sender<Vec<FleetJob>>,
) {
    cluster.metrics.set_held(h.agents.len(), h.leader.is_some());
    cluster.holdings.send_if_modified(|old| {
        let changed = old != h;
        *old = h.clone();
        changed
    });
    let jobs: Vec<FleetJob> = fleet
        .iter()
        .filter(|j| h.agents.contains_key(&j.job.name))
        .cloned()
        .collect();
    let names = |v: &[FleetJob]| -> Vec<(String, String)> {
        v.iter()
            .map(|j| (j.job.name.clone(), j.spec.clone()))
            .collect()
    };
    if names(&jobs) != names(&assigned.borrow()) {
        assigned.send_replace(jobs);
    }
}

/// The sink as a fenced [`Destination`]: every batch is written with this
/// replica's epoch for its agent, and refused when the replica does not hold it.
#[derive(Debug)]
pub struct FencedSink {
    sink: Arc<Sink>,
    cluster: Arc<Cluster>,
}

impl FencedSink {
    pub fn new(sink: Arc<Sink>, cluster: Arc<Cluster>) -> FencedSink {
        FencedSink { sink, cluster }
    }
}

impl Destination for FencedSink {
    fn cursor(
        &self,
        agent: &str,
    ) -> impl Future<Output = Result<Option<(AgentId, Cursor)>, DestinationError>> + Send {
        Destination::cursor(&*self.sink, agent)
    }

    async fn ingest(&self, batch: &Batch) -> Result<u64, DestinationError> {
        let result = match self.cluster.fence(&batch.agent) {
            Some(fence) => self.sink.ingest_fenced(batch, Some(&fence)).await,
            None => Err(SinkError::Fenced {
                agent: batch.agent.clone(),
                epoch: 0,
            }),
        };
        if let Err(SinkError::Fenced { agent, epoch }) = &result {
            self.cluster.metrics.fenced_write();
            tracing::warn!(agent = %agent, epoch, "write refused by fencing: this replica no longer holds the agent's lease; nothing of the batch was written");
        }
        result
            .map(|r| r.samples_inserted)
            .map_err(DestinationError::from)
    }

    fn record_status(
        &self,
        agent: &str,
        url: &str,
        labels: &BTreeMap<String, String>,
        status: &AgentStatus,
    ) -> impl Future<Output = Result<Vec<String>, DestinationError>> + Send {
        Destination::record_status(&*self.sink, agent, url, labels, status)
    }

    async fn ping(&self) -> Result<(), DestinationError> {
        Destination::ping(&*self.sink).await?;
        if !self.cluster.lease_valid() {
            return Err(DestinationError::Unavailable(SinkError::Config(
                "this replica's lease is not renewed yet".to_owned(),
            )));
        }
        Ok(())
    }
}
