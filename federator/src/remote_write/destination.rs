//! One remote-write destination as the puller's [`Destination`]: the pull walks an
//! agent from this destination's own cursor, and each batch of sealed blocks is
//! encoded, sent, and only then the cursor advanced.
//!
//! What it keeps in memory per agent: the agent's dictionary as labels (fetched from
//! the agent once after a start, then only its new entries), and which blocks (and
//! which requests of a block) the receiver already acknowledged, so that a batch
//! retried after a failure part-way (the receiver or the database) does not send
//! them again. Only a federator restart between an acknowledgement and the commit
//! of the cursor sends a batch twice; receivers take identical samples again
//! without storing them twice (Prometheus, Mimir; VictoriaMetrics with
//! `-dedup.minScrapeInterval`).
//!
//! The open head block is not sent: a block goes once it is sealed, in full, so
//! every sample is sent once, in order.
//!
//! Fencing ([`RemoteWrite::fenced_by`]): a replica sends an agent only while it
//! holds the agent's lease, and the statement that moves the destination's cursor
//! checks that lease (owner, epoch, the replica's lease valid on the database's
//! clock) as the database ingest does: a replica that lost the agent moves no
//! cursor of it ([`SinkError::Fenced`], counted in
//! `pga_federator_cluster_fenced_writes_total`), and its round walks the agent no
//! further; the next round follows the assignment.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use pga_format::AgentId;
use sqlx::PgPool;

use super::encode::{self, Label, Request};
use super::metrics::RemoteWriteMetrics;
use super::send::{self, GiveUp, Retry, Sent};
use crate::cluster::Cluster;
use crate::db::remote_write::{self as repo, Advance, Rejection};
use crate::db::sink::{Fence, SinkError};
use crate::notify::http::Client;
use crate::pull::batch::{Batch, Cursor};
use crate::pull::{AgentStatus, Destination, DestinationError};

/// Why a batch did not reach the destination.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("remote-write destination {destination}: {source}")]
    GaveUp {
        destination: String,
        #[source]
        source: GiveUp,
    },
    #[error("remote-write destination {destination}: agent {agent}: {source}")]
    Inconsistent {
        destination: String,
        agent: String,
        #[source]
        source: encode::MissingSeries,
    },
}

/// What is kept of one agent between pulls.
#[derive(Debug, Default)]
struct AgentState {
    agent_id: Option<AgentId>,
    /// Labels by the agent's local series id.
    dictionary: Vec<Arc<[Label]>>,
    /// The agent's configured labels.
    labels: BTreeMap<String, String>,
    /// The last block every request of which was acknowledged or refused.
    done_through: Option<u64>,
    /// Requests of a block already acknowledged or refused: (sequence, how many).
    partial: Option<(u64, usize)>,
    /// The cursor last committed.
    committed: Option<Cursor>,
}

/// One configured destination.
#[derive(Debug)]
pub struct RemoteWrite {
    pub(super) name: String,
    client: Client,
    pool: PgPool,
    max_samples: usize,
    pub(super) retry: Retry,
    pub(super) metrics: RemoteWriteMetrics,
    agents: Mutex<HashMap<String, AgentState>>,
    /// The replica's leases, when the writes are fenced.
    cluster: Option<Arc<Cluster>>,
}

impl RemoteWrite {
    pub fn new(
        name: String,
        client: Client,
        pool: PgPool,
        max_samples_per_request: u64,
        retry: Retry,
        metrics: RemoteWriteMetrics,
    ) -> RemoteWrite {
        RemoteWrite {
            name,
            client,
            pool,
            max_samples: max_samples_per_request as usize,
            retry,
            metrics,
            agents: Mutex::new(HashMap::new()),
            cluster: None,
        }
    }

    /// Sends an agent only while `cluster` holds its lease, and moves the cursors
    /// with the lease's epoch, checked by the database (DESIGN.md invariant 7).
    pub fn fenced_by(mut self, cluster: Arc<Cluster>) -> RemoteWrite {
        self.cluster = Some(cluster);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the labels of `agent` (its `agents[].labels`), before its pull.
    pub fn set_labels(&self, agent: &str, labels: &BTreeMap<String, String>) {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        let s = agents.entry(agent.to_owned()).or_default();
        if &s.labels != labels {
            // Labels already built carry the old ones: build them again.
            s.labels = labels.clone();
            s.dictionary.clear();
            s.agent_id = None;
        }
    }

    /// The batch's requests, block by block, with what of them is done already;
    /// takes the batch's dictionary entries in.
    fn plan(&self, batch: &Batch) -> Result<Vec<(u64, Vec<Request>, usize)>, WriteError> {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        let s = agents.entry(batch.agent.clone()).or_default();
        if s.agent_id != Some(batch.agent_id) {
            s.agent_id = Some(batch.agent_id);
            s.dictionary.clear();
            s.done_through = None;
            s.partial = None;
            s.committed = None;
        }
        for (id, meta) in &batch.series {
            if id.0 as usize == s.dictionary.len() {
                s.dictionary
                    .push(encode::series_labels(meta, &batch.agent, &s.labels));
            }
        }
        let mut plan = Vec::new();
        for b in &batch.blocks {
            let seq = b.header.sequence;
            if s.done_through.is_some_and(|d| d >= seq) {
                continue;
            }
            let reqs =
                encode::block_requests(b, |id| s.dictionary.get(id.0 as usize), self.max_samples)
                    .map_err(|source| WriteError::Inconsistent {
                    destination: self.name.clone(),
                    agent: batch.agent.clone(),
                    source,
                })?;
            let skip = match s.partial {
                Some((p, n)) if p == seq => n,
                _ => 0,
            };
            plan.push((seq, reqs, skip));
        }
        Ok(plan)
    }

    fn with_state<T>(&self, agent: &str, f: impl FnOnce(&mut AgentState) -> T) -> T {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        f(agents.entry(agent.to_owned()).or_default())
    }

    /// The fencing token to write `agent` with: `Ok(None)` when not fenced, a
    /// refusal (nothing sent) when this replica does not hold the agent's lease or
    /// its own lease is not valid.
    fn fence(&self, agent: &str) -> Result<Option<Fence>, DestinationError> {
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        match cluster.fence(agent) {
            Some(f) if cluster.lease_valid() => Ok(Some(f)),
            f => Err(self.fenced(SinkError::Fenced {
                agent: agent.to_owned(),
                epoch: f.map_or(0, |f| f.epoch),
            })),
        }
    }

    /// Counts and says a refusal by fencing.
    fn fenced(&self, e: SinkError) -> DestinationError {
        if let Some(c) = &self.cluster {
            c.count_fenced_write();
        }
        tracing::warn!(destination = %self.name, error = %e, "remote-write cursor not moved: this replica no longer holds the agent's lease; it sends the agent no more");
        DestinationError::Fenced(e)
    }

    fn gave_up(&self, source: GiveUp) -> DestinationError {
        self.metrics.request(&self.name, "failed");
        DestinationError::Other(Box::new(WriteError::GaveUp {
            destination: self.name.clone(),
            source,
        }))
    }
}

impl Destination for RemoteWrite {
    async fn cursor(&self, agent: &str) -> Result<Option<(AgentId, Cursor)>, DestinationError> {
        let Some(c) = repo::cursor(&self.pool, &self.name, agent).await? else {
            return Ok(None);
        };
        // The dictionary entries already in memory need not be fetched again.
        let series_count = self.with_state(agent, |s| {
            if s.agent_id == Some(c.agent_uid) {
                s.dictionary.len() as u64
            } else {
                0
            }
        });
        Ok(Some((
            c.agent_uid,
            Cursor {
                last_sequence: c.last_sequence,
                last_ts_ms: c.last_ts_ms,
                series_count,
            },
        )))
    }

    async fn ingest(&self, batch: &Batch) -> Result<u64, DestinationError> {
        let fence = self.fence(&batch.agent)?;
        let plan = self
            .plan(batch)
            .map_err(|e| DestinationError::Other(Box::new(e)))?;
        let unchanged = plan.is_empty()
            && batch.gap.is_none()
            && self.with_state(&batch.agent, |s| s.committed == Some(batch.cursor));
        if unchanged {
            return Ok(0);
        }
        let mut encoder = snap::raw::Encoder::new();
        let mut sent = 0u64;
        let mut rejected = Vec::new();
        for (seq, requests, skip) in plan {
            for (i, r) in requests.iter().enumerate().skip(skip) {
                let body = encode::compress(&r.message, &mut encoder);
                let bytes = body.len() as u64;
                let outcome = send::post(&self.client, body, self.retry, |detail| {
                    self.metrics.request(&self.name, "retried");
                    tracing::debug!(destination = %self.name, agent = %batch.agent, error = %detail, "remote-write request retried");
                })
                .await
                .map_err(|e| self.gave_up(e))?;
                match outcome {
                    Sent::Acknowledged { .. } => {
                        sent += r.samples;
                        self.metrics.acknowledged(&self.name, r.samples, bytes);
                    }
                    Sent::Rejected { status, detail } => {
                        self.metrics.rejected(&self.name, r.samples);
                        tracing::warn!(
                            destination = %self.name,
                            agent = %batch.agent,
                            block = seq,
                            samples = r.samples,
                            status,
                            error = %detail,
                            "the destination refused these samples for good; recorded in \
                             remote_write_rejections, not retried"
                        );
                        rejected.push(Rejection {
                            block_sequence: seq,
                            samples: r.samples,
                            min_ts_ms: r.min_ts_ms,
                            max_ts_ms: r.max_ts_ms,
                            status,
                            detail,
                        });
                    }
                }
                self.with_state(&batch.agent, |s| s.partial = Some((seq, i + 1)));
            }
            self.with_state(&batch.agent, |s| {
                s.done_through = Some(seq);
                s.partial = None;
            });
        }
        if let Some(g) = batch.gap {
            let blocks = g.last_sequence - g.first_sequence + 1;
            self.metrics.gap(&self.name, blocks);
            tracing::warn!(
                destination = %self.name,
                agent = %batch.agent,
                first = g.first_sequence,
                last = g.last_sequence,
                "the agent evicted blocks before this destination got them; the gap is \
                 recorded in remote_write_gaps"
            );
        }
        repo::advance(
            &self.pool,
            &Advance {
                destination: &self.name,
                agent: &batch.agent,
                agent_uid: batch.agent_id,
                cursor: batch.cursor,
                sent,
                rejected: &rejected,
                gap: batch.gap,
                fence: fence.as_ref(),
            },
        )
        .await
        .map_err(|e| match e {
            e @ SinkError::Fenced { .. } => self.fenced(e),
            e => DestinationError::from(e),
        })?;
        self.with_state(&batch.agent, |s| s.committed = Some(batch.cursor));
        if let Some(seq) = batch.cursor.last_sequence {
            self.metrics.cursor(&self.name, &batch.agent, seq);
        }
        Ok(sent)
    }

    async fn record_status(
        &self,
        _agent: &str,
        _url: &str,
        _labels: &BTreeMap<String, String>,
        _status: &AgentStatus,
    ) -> Result<Vec<String>, DestinationError> {
        // The inventory is the database pull's to record.
        Ok(Vec::new())
    }

    async fn ping(&self) -> Result<(), DestinationError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| {
                DestinationError::from(crate::db::sink::SinkError::db(
                    "checking the central database",
                )(e))
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::http::StatusCode;
    use pga_format::{BlockBuilder, FrameMeta, MetricKind, SeriesId, SeriesMeta};

    use super::*;

    /// A receiver that acknowledges the first `ok_first` requests, then answers 503
    /// until `up` is set; counts what it was sent.
    async fn receiver(ok_first: usize) -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (sent, up) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s, u) = (sent.clone(), up.clone());
        let app = axum::Router::new().route(
            "/api/v1/write",
            axum::routing::post(move || {
                let (s, u) = (s.clone(), u.clone());
                async move {
                    if s.load(Ordering::SeqCst) >= ok_first && u.load(Ordering::SeqCst) == 0 {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    s.fetch_add(1, Ordering::SeqCst);
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await.ok() });
        (port, sent, up)
    }

    fn batch(agent_id: AgentId) -> Batch {
        let series: Vec<(SeriesId, SeriesMeta)> = (0..10)
            .map(|i| {
                let m = SeriesMeta::new(
                    SeriesId(i),
                    "m",
                    vec![("i".into(), i.to_string())],
                    MetricKind::Gauge,
                    "",
                    "",
                )
                .unwrap();
                (m.id, m)
            })
            .collect();
        // Two blocks of 10 series × 30 collections: 3 requests of 100 samples each.
        let blocks: Vec<_> = (1..=2u64)
            .map(|seq| {
                let mut b = BlockBuilder::new();
                for t in 0..30 {
                    let ts = (seq as i64 * 100 + t) * 1000;
                    let samples: Vec<_> = (0..10).map(|i| (SeriesId(i), ts as f64)).collect();
                    b.push_collection(ts, &samples).unwrap();
                }
                let bytes = b
                    .encode(
                        FrameMeta {
                            agent_id,
                            sequence: seq,
                        },
                        1,
                    )
                    .unwrap();
                pga_format::decode_block(&bytes).unwrap()
            })
            .collect();
        Batch {
            agent: "a".into(),
            agent_id,
            cursor: Cursor {
                last_sequence: Some(2),
                last_ts_ms: Some(blocks[1].header.max_ts),
                series_count: 10,
            },
            series,
            blocks,
            head: None,
            gap: None,
            complete_through_ms: None,
        }
    }

    #[tokio::test]
    async fn a_batch_retried_after_a_failure_part_way_sends_nothing_twice() {
        // Four requests acknowledged (block 1's three and block 2's first), then the
        // receiver is down.
        let (port, sent, up) = receiver(4).await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(200))
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let client = Client::new(
            &format!("http://127.0.0.1:{port}/api/v1/write"),
            None,
            crate::notify::http::Auth::None,
            Duration::from_secs(2),
        )
        .unwrap();
        let retry = Retry {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(40),
        };
        let dest = RemoteWrite::new(
            "d".into(),
            client,
            pool,
            100,
            retry,
            RemoteWriteMetrics::default(),
        );
        let b = batch(AgentId([3; 16]));
        let e = dest.ingest(&b).await.unwrap_err();
        assert!(e.to_string().contains("remote-write destination d"), "{e}");
        assert_eq!(sent.load(Ordering::SeqCst), 4);
        // The receiver is back; the database is not: what was acknowledged is not
        // sent again, the rest is, and the cursor cannot be committed.
        up.store(1, Ordering::SeqCst);
        assert!(dest.ingest(&b).await.is_err());
        assert_eq!(sent.load(Ordering::SeqCst), 6);
        // Retried once more (the database still away): nothing more to send.
        assert!(dest.ingest(&b).await.is_err());
        assert_eq!(sent.load(Ordering::SeqCst), 6);
        // A new store identity starts over.
        assert!(dest.ingest(&batch(AgentId([4; 16]))).await.is_err());
        assert_eq!(sent.load(Ordering::SeqCst), 12);
    }
}
