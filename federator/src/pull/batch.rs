//! What one pull from one agent hands to the sink.
//!
//! The scraper (`crate::pull`) builds a [`Batch`] from the agent's `/v1/series` and
//! `/v1/blocks` answers (storage-format/PROTOCOL.md); the sink (`crate::db::sink`) writes
//! all of it — series, samples, log events, the recorded gap and the cursor advance —
//! in **one** database transaction, so a failure anywhere leaves the cursor where it
//! was and the next pull fetches the same sealed blocks again.

use pga_format::{AgentId, DecodedBlock, SeriesId, SeriesMeta};

/// One pull's worth of data from one agent.
#[derive(Debug)]
pub struct Batch {
    /// The agent's name in the federator's configuration (`agents.name`).
    pub agent: String,
    /// The agent's identity (`Pga-Agent-Id`, the `agent_id` of every frame).
    pub agent_id: AgentId,
    /// Dictionary entries the sink has not seen yet, by the agent's local series id.
    /// The sink maps each to a global series id (inserting it when new).
    pub series: Vec<(SeriesId, SeriesMeta)>,
    /// Sealed blocks, ascending sequence, each complete and verified.
    pub blocks: Vec<DecodedBlock>,
    /// The agent's open head block, when it was received whole. Its samples are
    /// written as well (fresh data for dashboards); they come again in the sealed
    /// block and the overlap is dropped, never doubled. It never moves the cursor.
    pub head: Option<DecodedBlock>,
    /// Sealed blocks the agent evicted before they were pulled.
    pub gap: Option<Gap>,
    /// Where the agent's cursor stands once this batch is committed.
    pub cursor: Cursor,
    /// Set when this batch completes the agent's data up to this time (ms): the pull
    /// was caught up (no sealed block left behind the cursor) and the head it carries
    /// ends here. The agent's data watermark moves to it (alert rules are evaluated
    /// there); otherwise the watermark follows the cursor's `last_ts_ms`.
    pub complete_through_ms: Option<i64>,
}

/// The per-agent position the federator keeps in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Sequence of the last sealed block ingested; `None` before the first one.
    pub last_sequence: Option<u64>,
    /// Newest sample timestamp (ms) of that block; `None` before the first one.
    pub last_ts_ms: Option<i64>,
    /// How many dictionary entries have been ingested (ids `0..series_count`).
    pub series_count: u64,
}

/// Sealed blocks `first_sequence ..= last_sequence` expired on the agent before the
/// federator pulled them: their samples are gone. The time range is what the
/// federator can bound: after the newest sample it holds from that agent and before
/// the oldest sample of the first block (sealed, else the head) it received after
/// the gap. The sink makes the lower bound exact: the newest sample stored from the
/// agent, a head written before the gap was known included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub first_sequence: u64,
    pub last_sequence: u64,
    /// Exclusive lower bound (ms): the cursor's `last_ts_ms`, when known (the sink
    /// raises it to the newest sample stored from the agent).
    pub after_ts_ms: Option<i64>,
    /// Exclusive upper bound (ms): `min_ts` of the first block after the gap (the
    /// first sealed one, else the head), when one was received.
    pub before_ts_ms: Option<i64>,
}
