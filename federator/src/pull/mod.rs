//! Scrape and backfill: one pull of one agent, following the client algorithm of
//! storage-format/PROTOCOL.md.
//!
//! A pull reads the agent's cursor from the destination (the database), asks
//! `/v1/status` for the inventory (what the agent reports of itself and of the
//! PostgreSQL instances it watches: recorded, never a reason to stop), asks
//! `/v1/blocks?after=CURSOR`, records a declared gap, keeps the whole verified frames
//! of the body (all of them, or those before the point where a cut body stops),
//! fetches the dictionary entries the blocks need from `/v1/series`, and hands one
//! [`Batch`] per answer to the destination, which commits data and cursor in one
//! transaction. While the agent says `Pga-More` (or the body was cut short), it asks
//! again from the new cursor — at most `backfill.max_requests_per_scrape` times, with
//! `backfill.pause_ms` between requests; the next scrape continues. Each request
//! asks for at most `backfill.request_bytes` of sealed frames, which bounds one
//! transaction.

pub mod batch;
pub mod client;
pub mod destination;
pub mod fleet;
pub mod protocol;
pub mod scheduler;
pub mod status;
pub mod url;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use pga_format::protocol::routes;
use pga_format::{AgentId, DecodedBlock};

use crate::db::sink::SinkError;
use crate::pull::batch::{Batch, Cursor, Gap};
pub use client::{AgentClient, ClientError, ClientLimits, Response};
pub use protocol::{FramesProblem, HeadersProblem, ProtocolError, SeriesProblem};
pub use status::AgentStatus;

/// Where pulled batches go: the database sink, in production.
pub trait Destination: Send + Sync {
    /// The agent's identity and cursor as committed, `None` before its first batch.
    fn cursor(
        &self,
        agent: &str,
    ) -> impl Future<Output = Result<Option<(AgentId, Cursor)>, DestinationError>> + Send;
    /// Writes the batch and advances the cursor, in one transaction; the number of
    /// samples written (those already present not counted).
    fn ingest(&self, batch: &Batch) -> impl Future<Output = Result<u64, DestinationError>> + Send;
    /// Records what the agent `agent` (configured at `url` with `labels`) reports of
    /// itself in the inventory; what is worth saying about it, one sentence each.
    fn record_status(
        &self,
        agent: &str,
        url: &str,
        labels: &BTreeMap<String, String>,
        status: &AgentStatus,
    ) -> impl Future<Output = Result<Vec<String>, DestinationError>> + Send;
    /// Whether the destination takes writes now (used to resume after it was
    /// [`DestinationError::Unavailable`]).
    fn ping(&self) -> impl Future<Output = Result<(), DestinationError>> + Send;
}

/// Why the destination did not take a batch. Each keeps the sink's error, with its
/// SQLSTATE.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The database cannot be reached or takes no writes at all (unreachable,
    /// shutting down, read-only): nothing was written, the cursor did not move;
    /// every agent pauses until it answers again.
    #[error("database unavailable: {0}")]
    Unavailable(SinkError),
    /// A statement of this agent's batch failed (a constraint, a trigger, an
    /// impossible value, a deadlock, a timeout, a limit): that agent is reported
    /// and retried with its backoff; the others continue.
    #[error("the database refused this agent's batch: {0}")]
    Rejected(SinkError),
    /// A destination other than the database (a remote-write receiver) did not take
    /// the batch; its own error says why. Nothing advanced for that destination.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// This replica no longer holds the agent's lease ([`SinkError::Fenced`]): the
    /// batch was refused and nothing of it written; another replica pulls the
    /// agent now. Not a failure of the agent: no backoff.
    #[error("{0}")]
    Fenced(SinkError),
}

impl DestinationError {
    /// The SQLSTATE of a refused batch.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            DestinationError::Rejected(e) => e.sqlstate(),
            DestinationError::Unavailable(_)
            | DestinationError::Other(_)
            | DestinationError::Fenced(_) => None,
        }
    }
}

/// How pulls are paced.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// `max_bytes` of each `/v1/blocks` request.
    pub request_bytes: u64,
    /// Requests per pull, at most.
    pub max_requests: u32,
    /// Pause between two requests of one pull.
    pub pause: Duration,
    /// Samples of sealed blocks per transaction, at most (at least one block).
    pub max_samples: u64,
}

/// Splits blocks into runs of at most `max_samples` samples (at least one block
/// each); one empty run when there are no blocks.
fn split_blocks(blocks: Vec<DecodedBlock>, max_samples: u64) -> Vec<Vec<DecodedBlock>> {
    let mut out: Vec<Vec<DecodedBlock>> = vec![Vec::new()];
    let mut n = 0u64;
    for b in blocks {
        let s = b.sample_count() as u64;
        if out.last().is_some_and(|c| !c.is_empty()) && n + s > max_samples {
            out.push(Vec::new());
            n = 0;
        }
        n += s;
        if let Some(c) = out.last_mut() {
            c.push(b);
        }
    }
    out
}

/// Why a pull failed. What was committed before the failure stays committed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The agent could not be reached, or a request failed or was too large.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The agent answered with an HTTP error.
    #[error("{path} answered {status}: {message}")]
    Status {
        path: String,
        status: u16,
        message: String,
    },
    /// The agent's answer breaks the protocol; it was rejected.
    #[error("malformed answer from the agent, rejected: {0}")]
    Protocol(#[from] ProtocolError),
    /// The destination refused or could not take a batch.
    #[error(transparent)]
    Destination(#[from] DestinationError),
}

impl ScrapeError {
    /// Every value [`ScrapeError::reason`] gives.
    pub const REASONS: [&'static str; 9] = [
        "connect",
        "request",
        "oversized",
        "http_status",
        "malformed",
        "database_unavailable",
        "database_rejected",
        "destination",
        "fenced",
    ];

    /// A bounded name for the `reason` label of the failure counter.
    pub fn reason(&self) -> &'static str {
        match self {
            ScrapeError::Client(ClientError::Connect { .. }) => "connect",
            ScrapeError::Client(ClientError::Request { .. }) => "request",
            ScrapeError::Client(ClientError::Oversized { .. }) => "oversized",
            ScrapeError::Status { .. } => "http_status",
            ScrapeError::Protocol(_) => "malformed",
            ScrapeError::Destination(DestinationError::Unavailable(_)) => "database_unavailable",
            ScrapeError::Destination(DestinationError::Rejected(_)) => "database_rejected",
            ScrapeError::Destination(DestinationError::Other(_)) => "destination",
            ScrapeError::Destination(DestinationError::Fenced(_)) => "fenced",
        }
    }

    /// Whether the failure is the database's as a whole, not the agent's.
    pub fn is_database_unavailable(&self) -> bool {
        matches!(
            self,
            ScrapeError::Destination(DestinationError::Unavailable(_))
        )
    }

    /// Whether the batch was refused because this replica lost the agent's lease.
    pub fn is_fenced(&self) -> bool {
        matches!(self, ScrapeError::Destination(DestinationError::Fenced(_)))
    }

    /// The SQLSTATE of a batch the database refused.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            ScrapeError::Destination(d) => d.sqlstate(),
            _ => None,
        }
    }
}

/// What one request of a pull did, for logs and metrics.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// Sealed blocks committed.
    pub blocks: u64,
    /// Samples written (sealed and head).
    pub samples: u64,
    /// Dictionary entries added.
    pub series: u64,
    /// Blocks declared evicted before they were pulled.
    pub gap: Option<Gap>,
    /// The cursor after the round.
    pub cursor: u64,
    /// The agent's newest sealed sequence.
    pub newest: u64,
    /// Newest sample timestamp now in the database from this agent (ms).
    pub newest_ts_ms: Option<i64>,
}

/// What a whole pull did.
#[derive(Debug, Clone, Default)]
pub struct PullReport {
    /// The agent's identity.
    pub agent_id: Option<AgentId>,
    /// Requests made.
    pub requests: u32,
    /// Totals over the rounds.
    pub blocks: u64,
    pub samples: u64,
    pub series: u64,
    pub gap_blocks: u64,
    /// The cursor at the end and the agent's newest sealed sequence.
    pub cursor: u64,
    pub newest: u64,
    /// Whether the pull ended caught up (only the head left).
    pub caught_up: bool,
    /// A cut body or malformed part seen on the way (the pull still made progress).
    pub note: Option<String>,
    /// Newest sample timestamp written (ms).
    pub newest_ts_ms: Option<i64>,
}

fn series_path(count: u64) -> String {
    if count == 0 {
        routes::SERIES.to_owned()
    } else {
        format!("{}?after={}", routes::SERIES, count - 1)
    }
}

fn status_error(path: &str, r: &Response) -> ScrapeError {
    let text = String::from_utf8_lossy(&r.body[..r.body.len().min(300)]);
    ScrapeError::Status {
        path: path.to_owned(),
        status: r.status.as_u16(),
        message: text.lines().next().unwrap_or("").to_owned(),
    }
}

/// How much of an agent's open head block is already in the database, kept by the
/// caller from one pull of that agent to the next so that each pull writes only the
/// head's new collections instead of the whole head again. Starting empty (after a
/// restart) costs one full head write; the overlap is dropped by the sink.
///
/// Samples a collector adds to an already written collection timestamp (two
/// collectors of one tick finishing between two pulls) are left out of the head
/// preview; they arrive with the sealed block, which is always written whole.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadMemo {
    /// Agent identity, head sequence, newest collection timestamp written (ms).
    written: Option<(AgentId, u64, i64)>,
}

impl HeadMemo {
    /// Drops from `head` what an earlier pull wrote; `None` when nothing is new.
    fn trim(&self, agent_id: AgentId, head: Option<DecodedBlock>) -> Option<DecodedBlock> {
        let mut head = head?;
        if let Some((id, seq, through)) = self.written
            && id == agent_id
            && seq == head.header.sequence
        {
            head.retain_after(through);
        }
        (!head.timestamps.is_empty()).then_some(head)
    }

    /// Records a committed head.
    fn written(&mut self, agent_id: AgentId, head: &DecodedBlock) {
        if let Some(&last) = head.timestamps.last() {
            self.written = Some((agent_id, head.header.sequence, last));
        }
    }
}

/// What the federator keeps of one agent from one pull to the next: how much of
/// its head is written, and what of its status was recorded and said.
#[derive(Debug, Clone, Default)]
pub struct PullMemo {
    pub head: HeadMemo,
    pub inventory: InventoryMemo,
}

impl PullMemo {
    /// A memo for an agent configured with `labels` (recorded in the inventory).
    pub fn new(labels: BTreeMap<String, String>) -> Self {
        PullMemo {
            head: HeadMemo::default(),
            inventory: InventoryMemo {
                labels,
                ..InventoryMemo::default()
            },
        }
    }
}

/// How often an unchanged status is recorded again (its `last_seen_at`).
const STATUS_REFRESH: Duration = Duration::from_secs(60);

/// What of an agent's `/v1/status` was recorded and said.
#[derive(Debug, Clone, Default)]
pub struct InventoryMemo {
    labels: BTreeMap<String, String>,
    /// The status last recorded, and when.
    recorded: Option<(AgentStatus, Instant)>,
    /// The missing fields last said, so that the same are not said again.
    said_missing: Option<Vec<String>>,
    /// The status request's last failure said.
    said_failure: Option<String>,
}

impl InventoryMemo {
    fn due(&self, status: &AgentStatus) -> bool {
        match &self.recorded {
            Some((s, at)) => s != status || at.elapsed() >= STATUS_REFRESH,
            None => true,
        }
    }

    /// Says `why` unless it was the last thing said.
    fn fail(&mut self, agent: &str, why: String) {
        if self.said_failure.as_deref() != Some(why.as_str()) {
            tracing::warn!(agent = %agent, error = %why, "the agent's /v1/status was not recorded in the inventory; pulls go on");
            self.said_failure = Some(why);
        }
    }
}

/// Asks the agent's `/v1/status` and records it in the inventory, when it changed or
/// once a minute. Only an unavailable database is an error; anything else is said
/// once and the pull goes on. Returns whether the session is still usable.
async fn observe_status<D: Destination>(
    agent: &str,
    client: &AgentClient,
    session: &mut client::Session<'_>,
    dest: &D,
    memo: &mut InventoryMemo,
) -> Result<bool, ScrapeError> {
    let resp = match session.get(routes::STATUS).await {
        Ok(r) => r,
        Err(e) => {
            memo.fail(agent, e.to_string());
            return Ok(false);
        }
    };
    // The connection stays usable unless the answer was cut or closes it.
    let reusable = resp.cut.is_none()
        && !resp
            .headers
            .get(hyper::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if let Some(cut) = &resp.cut {
        memo.fail(agent, format!("/v1/status: {cut}"));
        return Ok(false);
    }
    if resp.status != hyper::StatusCode::OK {
        memo.fail(
            agent,
            format!("/v1/status answered {}", resp.status.as_u16()),
        );
        return Ok(reusable);
    }
    let status = match status::parse_status(&resp.body) {
        Ok(s) => s,
        Err(e) => {
            memo.fail(agent, e.to_string());
            return Ok(reusable);
        }
    };
    memo.said_failure = None;
    if !status.missing.is_empty() && memo.said_missing.as_ref() != Some(&status.missing) {
        tracing::warn!(
            agent = %agent,
            fields = %status.missing.join(", "),
            "the agent's /v1/status lacks fields (an older agent?); the inventory records what it has"
        );
        memo.said_missing = Some(status.missing.clone());
    }
    if !memo.due(&status) {
        return Ok(reusable);
    }
    match dest
        .record_status(agent, &client.url().to_string(), &memo.labels, &status)
        .await
    {
        Ok(notes) => {
            for note in notes {
                tracing::warn!(agent = %agent, "{note}");
            }
            memo.recorded = Some((status, Instant::now()));
            Ok(reusable)
        }
        Err(e @ DestinationError::Unavailable(_)) => Err(e.into()),
        Err(e) => {
            memo.fail(agent, e.to_string());
            Ok(reusable)
        }
    }
}

/// Pulls `agent` once (PROTOCOL.md, "The client algorithm"), calling `on_round`
/// after each committed request. `memo` carries what of the agent's head is
/// already written and what of its status recorded, from one pull to the next.
pub async fn pull<D: Destination>(
    agent: &str,
    client: &AgentClient,
    dest: &D,
    pacing: Pacing,
    memo: &mut PullMemo,
    mut on_round: impl FnMut(&Round),
) -> Result<PullReport, ScrapeError> {
    let mut report = PullReport::default();
    let committed = dest.cursor(agent).await?;
    let mut session = client.session().await?;
    if !observe_status(agent, client, &mut session, dest, &mut memo.inventory).await? {
        session = client.session().await?;
    }
    let memo = &mut memo.head;
    let (mut known_id, mut cursor) = match committed {
        Some((id, c)) => (Some(id), c),
        None => (None, Cursor::default()),
    };
    loop {
        let c = cursor.last_sequence.unwrap_or(0);
        let path = format!(
            "{}?after={c}&max_bytes={}",
            routes::BLOCKS,
            pacing.request_bytes
        );
        let resp = session.get(&path).await?;
        report.requests += 1;
        if resp.status != hyper::StatusCode::OK {
            return Err(status_error(&path, &resp));
        }
        let h = protocol::blocks_headers(&resp.headers, c)?;
        report.agent_id = Some(h.agent_id);
        if known_id.is_some_and(|id| id != h.agent_id) {
            tracing::warn!(
                agent = %agent,
                old_id = %known_id.map(|i| i.to_string()).unwrap_or_default(),
                new_id = %h.agent_id,
                "the agent's identity changed (a new store): pulling it from the beginning"
            );
            known_id = Some(h.agent_id);
            cursor = Cursor::default();
            continue;
        }
        known_id = Some(h.agent_id);
        if c > 0 && c >= h.head_sequence {
            return Err(ProtocolError::Headers(HeadersProblem::CursorAhead {
                cursor: c,
                head: h.head_sequence,
            })
            .into());
        }
        let mut after = c;
        let gap = h.gap.map(|(first, last)| {
            after = last;
            Gap {
                first_sequence: first,
                last_sequence: last,
                after_ts_ms: cursor.last_ts_ms,
                before_ts_ms: None,
            }
        });
        let walk = protocol::walk_blocks(&resp.body, &h, after);
        let gap = gap.map(|g| Gap {
            before_ts_ms: walk
                .sealed
                .first()
                .or(walk.head.as_ref())
                .map(|b| b.header.min_ts),
            ..g
        });
        // The dictionary entries the blocks need and the destination lacks.
        let mut series = Vec::new();
        let needed = protocol::max_series_id(walk.sealed.iter().chain(walk.head.iter()));
        let mut series_count = cursor.series_count;
        if needed.is_some_and(|n| n >= series_count) {
            if resp.cut.is_some() {
                // The connection broke under the blocks body: ask on a new one.
                session = client.session().await?;
            }
            let spath = series_path(series_count);
            let sresp = session.get(&spath).await?;
            if sresp.status != hyper::StatusCode::OK {
                return Err(status_error(&spath, &sresp));
            }
            if let Some(why) = sresp.cut {
                return Err(ClientError::Request {
                    url: client.url().to_string(),
                    path: spath,
                    detail: why,
                }
                .into());
            }
            if protocol::identity(&sresp.headers)? != h.agent_id {
                return Err(ProtocolError::Headers(HeadersProblem::SeriesOfAnotherAgent).into());
            }
            for (id, meta) in protocol::read_series(&sresp.body, h.agent_id, series_count)? {
                if id.0 != series_count {
                    break;
                }
                series_count += 1;
                series.push((id, meta));
            }
            if needed.is_some_and(|n| n >= series_count) {
                return Err(ProtocolError::Series(SeriesProblem::Missing {
                    needed: needed.unwrap_or(0),
                    last: series_count as i64 - 1,
                })
                .into());
            }
        }
        let head_ts = walk.head.as_ref().map(|b| b.header.max_ts);
        let newest = h.held.map_or(0, |(_, n)| n);
        let round_blocks = walk.sealed.len() as u64;
        // One transaction per chunk of at most `max_samples` samples (at least one
        // block), each advancing the cursor over its own blocks.
        let chunks = split_blocks(walk.sealed, pacing.max_samples);
        let n_chunks = chunks.len();
        let (mut series, mut head, mut gap_once) = (Some(series), walk.head, gap);
        for (i, blocks) in chunks.into_iter().enumerate() {
            let last_chunk = i + 1 == n_chunks;
            let last = blocks.last().map(|b| (b.header.sequence, b.header.max_ts));
            let new_cursor = Cursor {
                last_sequence: last
                    .map(|(s, _)| s)
                    .or(gap_once.map(|g| g.last_sequence))
                    .or(cursor.last_sequence),
                last_ts_ms: last.map(|(_, t)| t).or(cursor.last_ts_ms),
                series_count,
            };
            let head = if last_chunk {
                memo.trim(h.agent_id, head.take())
            } else {
                None
            };
            // Every sealed block the agent holds is in, and the whole head with it:
            // the agent's data is complete up to the head's newest collection.
            let complete = last_chunk
                && !h.more
                && resp.cut.is_none()
                && !walk.stopped_early
                && walk.violation.is_none()
                && new_cursor.last_sequence.unwrap_or(0) >= newest;
            let batch = Batch {
                agent: agent.to_owned(),
                agent_id: h.agent_id,
                series: series.take().unwrap_or_default(),
                blocks,
                complete_through_ms: head
                    .as_ref()
                    .filter(|_| complete)
                    .and_then(|b| b.timestamps.last().copied()),
                head,
                gap: gap_once.take(),
                cursor: new_cursor,
            };
            let changed = new_cursor != cursor
                || batch.head.is_some()
                || !batch.series.is_empty()
                || committed.is_none_or(|(id, _)| id != h.agent_id);
            let samples = if changed {
                dest.ingest(&batch).await?
            } else {
                0
            };
            if let Some(written) = &batch.head {
                memo.written(h.agent_id, written);
            }
            let round = Round {
                blocks: batch.blocks.len() as u64,
                samples,
                series: batch.series.len() as u64,
                gap: batch.gap,
                cursor: new_cursor.last_sequence.unwrap_or(0),
                newest,
                newest_ts_ms: if last_chunk {
                    head_ts.max(new_cursor.last_ts_ms)
                } else {
                    new_cursor.last_ts_ms
                },
            };
            on_round(&round);
            cursor = new_cursor;
            report.blocks += round.blocks;
            report.samples += round.samples;
            report.series += round.series;
            report.gap_blocks += batch
                .gap
                .map_or(0, |g| g.last_sequence - g.first_sequence + 1);
            report.cursor = round.cursor;
            report.newest = round.newest;
            report.newest_ts_ms = report.newest_ts_ms.max(round.newest_ts_ms);
        }
        if let Some(v) = walk.violation {
            return Err(v.into());
        }
        let cut = resp.cut.is_some() || walk.stopped_early;
        if walk.stopped_early && resp.cut.is_none() {
            // The whole body arrived and still did not read: damaged data, not a cut.
            return Err(ProtocolError::Frames(FramesProblem::Unreadable {
                path: path.to_string(),
            })
            .into());
        }
        if let Some(why) = &resp.cut {
            report.note = Some(why.clone());
        }
        let behind = h.last_sequence.is_some_and(|l| report.cursor < l);
        report.caught_up = !(h.more || cut || behind);
        if cut && round_blocks == 0 && gap.is_none() {
            // Cut before the first whole frame: no progress; the scheduler retries
            // with the same cursor after its backoff.
            return Err(ClientError::Request {
                url: client.url().to_string(),
                path,
                detail: report.note.take().unwrap_or_default(),
            }
            .into());
        }
        if report.caught_up || report.requests >= pacing.max_requests {
            return Ok(report);
        }
        if resp.cut.is_some() {
            session = client.session().await?;
        }
        if !pacing.pause.is_zero() {
            tokio::time::sleep(pacing.pause).await;
        }
    }
}
