//! The pack job: raw samples left as rows, moved into the packed layout (migration
//! 0080) online, in bounded batches, resumably.
//!
//! Rows stay in `samples` for an agent's open head, for a database filled before
//! 0080, and wherever the ingest wrote a batch as rows. [`Sink::pack`] moves the
//! rows older than a cutoff (default [`PackOptions::default`]: two hours, so never a
//! head) into `samples_packed`; `pga-federator pack` runs it to the end as the
//! migration of an existing database, and `run` runs it after each retention run
//! with a time budget. Nothing records how far it got: what is left is whatever is
//! still a row, so a run stopped anywhere (budget, signal, a killed connection) is
//! resumed by the next one.
//!
//! One batch ([`Sink::pack_batch`]) is one transaction over one agent and one clock
//! hour (UTC):
//!
//! 1. the agent's row in `agents` is locked `FOR NO KEY UPDATE SKIP LOCKED`. The
//!    ingest locks the same row first in its transaction (its upsert of the agent,
//!    [`super::ingest`]), so the two serialize: the ingest never sees half a batch,
//!    and neither can store a sample the other moved. An agent being ingested is
//!    skipped ([`BatchOutcome::Busy`]) and tried again later; `NO KEY` leaves the
//!    rows that only reference the agent (alerts, counts) free to be written;
//! 2. the agent's oldest row-form sample older than the cutoff is found through
//!    the primary key `(series_id, ts)`, one probe per series of the agent, never a
//!    scan of a partition; its clock hour is the batch's window;
//! 3. the partitions of the packed tables for that day must exist; when one is
//!    missing, the transaction is given up, the partitions are created in a short
//!    transaction of their own (as the ingest does) and the batch starts again;
//! 4. the series with rows in the window are counted (through the same index) and
//!    taken in id order up to [`PackOptions::max_rows_per_batch`] rows (at least one
//!    series, whatever its count);
//! 5. one statement deletes those rows and writes, per series, one `samples_packed`
//!    row: `lo`/`hi` its first and last sample, the values in time order, or one
//!    value when all are bitwise equal (`float8send`, so -0 and 0 differ and NaN
//!    equals only the same NaN); and one `sample_times` row per distinct timestamp
//!    list, shared by every series of the batch that has it (the series of one
//!    collection group do).
//!
//! A window is a clock hour cut at the cutoff, so it spans less than an hour, as the
//! readers (`pga_raw` and its siblings) require, and lies within one day's partition.
//! The set of stored samples does not change, so rollups, gaps, tails and the
//! per-minute counts stay as they are. The packed layout holds milliseconds: a row
//! with a finer timestamp (never written by the federator) stops the batch with an
//! error naming the series, rather than being rounded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::PgConnection;
use tokio::sync::watch;

use super::{Sink, SinkError};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// How many times an agent found busy (being ingested) is tried again in one run.
const BUSY_RETRIES: u32 = 3;
/// The pause before trying a busy agent again.
const BUSY_PAUSE: Duration = Duration::from_millis(250);

/// The oldest row-form sample of the agent `$1` in `[$2, $3)` (ms): one probe of the
/// primary key per series.
const OLDEST: &str = "\
SELECT (extract(epoch FROM min(f.ts)) * 1000)::bigint
FROM series se
CROSS JOIN LATERAL (
    SELECT s.ts FROM samples s
    WHERE s.series_id = se.id
      AND s.ts >= timestamptz 'epoch' + $2::bigint * interval '1 millisecond'
      AND s.ts < timestamptz 'epoch' + $3::bigint * interval '1 millisecond'
    ORDER BY s.ts LIMIT 1) f
WHERE se.agent_id = $1";

/// The agent's series with rows in `[$2, $3)` (ms) and how many, by id.
const COUNTS: &str = "\
SELECT se.id, c.n
FROM series se
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM samples s
    WHERE s.series_id = se.id
      AND s.ts >= timestamptz 'epoch' + $2::bigint * interval '1 millisecond'
      AND s.ts < timestamptz 'epoch' + $3::bigint * interval '1 millisecond') c
WHERE se.agent_id = $1 AND c.n > 0
ORDER BY se.id";

/// Whether both packed tables have their partition for the instant `$1` (ms).
const PARTITIONS_EXIST: &str = "\
SELECT count(*) = 2 FROM pga_partitions
WHERE parent IN ('samples_packed', 'sample_times')
  AND lower_bound <= timestamptz 'epoch' + $1::bigint * interval '1 millisecond'
  AND upper_bound > timestamptz 'epoch' + $1::bigint * interval '1 millisecond'";

/// Moves the rows of the series `$2` (agent `$1`) in `[$3, $4)` (ms) into packed
/// rows (the module docs, 5.). Returns the rows moved, the packed rows and
/// timestamp lists written, and one series whose rows have a timestamp finer than
/// a millisecond (then the caller rolls back).
const MOVE: &str = "\
WITH moved AS (
    DELETE FROM samples s
    WHERE s.series_id = ANY($2)
      AND s.ts >= timestamptz 'epoch' + $3::bigint * interval '1 millisecond'
      AND s.ts < timestamptz 'epoch' + $4::bigint * interval '1 millisecond'
    RETURNING s.series_id, s.ts, s.value),
m AS (
    SELECT series_id, ts, value, min(ts) OVER (PARTITION BY series_id) AS lo FROM moved),
w AS (
    SELECT series_id, lo, max(ts) AS hi,
           array_agg((extract(epoch FROM ts - lo) * 1000)::integer ORDER BY ts) AS offsets,
           array_agg(value ORDER BY ts) AS vals,
           count(DISTINCT float8send(value)) = 1 AS flat,
           bool_or(date_trunc('milliseconds', ts) <> ts) AS fine
    FROM m GROUP BY series_id, lo),
times AS (
    INSERT INTO sample_times (id, lo, agent_id, offsets)
    SELECT nextval('sample_times_id_seq'), d.lo, $1, d.offsets
    FROM (SELECT DISTINCT lo, offsets FROM w) d
    RETURNING id, lo, offsets),
packed AS (
    INSERT INTO samples_packed (series_id, lo, hi, times_id, vals)
    SELECT w.series_id, w.lo, w.hi, t.id, CASE WHEN w.flat THEN w.vals[1:1] ELSE w.vals END
    FROM w JOIN times t ON t.lo = w.lo AND t.offsets = w.offsets
    RETURNING 1)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM packed), (SELECT count(*) FROM times),
       (SELECT min(series_id) FROM w WHERE fine)";

/// What a pack run may do.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Rows younger than this stay rows (an agent's head is never packed by this
    /// job; the ingest packs it when its block is sealed). Default 2 hours.
    pub older_than: Duration,
    /// The most rows one batch (one transaction, the agent's ingest waiting for
    /// it) moves, unless a single series has more in its hour. Default 500,000.
    pub max_rows_per_batch: u64,
    /// Stop after this many batches; `None`: no limit.
    pub max_batches: Option<u64>,
    /// Start no batch after this long; `None`: no limit.
    pub budget: Option<Duration>,
    /// Start no batch once this turns true (the federator's stop signal).
    pub stop: Option<watch::Receiver<bool>>,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            older_than: Duration::from_secs(2 * 3600),
            max_rows_per_batch: 500_000,
            max_batches: None,
            budget: None,
            stop: None,
        }
    }
}

/// One batch packed: one agent, one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedBatch {
    /// `agents.id` and name.
    pub agent_id: i64,
    pub agent: String,
    /// The clock hour packed (ms since the Unix epoch, UTC).
    pub hour_ms: i64,
    /// Series packed (one packed row each).
    pub series: u64,
    /// Rows moved out of `samples`.
    pub rows: u64,
    /// `samples_packed` rows written (one per series).
    pub packed_rows: u64,
    /// `sample_times` rows written (one per distinct timestamp list).
    pub times_rows: u64,
    /// Whether the agent has more rows in this hour (the batch was full).
    pub hour_left: bool,
    /// The transaction's duration, commit included.
    pub elapsed: Duration,
}

/// What [`Sink::pack_batch`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// A batch was packed and committed.
    Packed(PackedBatch),
    /// The agent has no row-form sample in the range asked.
    Done,
    /// The agent's row is locked (its ingest runs) or it no longer exists: nothing
    /// was done.
    Busy,
}

/// What one [`Sink::pack`] run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackReport {
    /// Why nothing was done: packing is off for this database.
    pub off: Option<&'static str>,
    /// Rows older than this instant (ms) were packed.
    pub cutoff_ms: i64,
    pub batches: u64,
    /// Rows moved out of `samples`.
    pub rows_packed: u64,
    /// `samples_packed` rows written.
    pub packed_rows: u64,
    /// `sample_times` rows written.
    pub times_rows: u64,
    /// Agents of which at least one batch was packed.
    pub agents: u64,
    /// Agents left because their ingest held them at every try.
    pub agents_busy: u64,
    /// Agents whose batch failed, with the error; the others went on.
    pub failures: Vec<(String, String)>,
    /// Every agent was looked at and none has a row older than the cutoff left.
    pub complete: bool,
    /// Rows older than the cutoff still in `samples`: 0 when complete, else the
    /// planner's estimate (from the table statistics, which lag behind).
    pub remaining_rows: u64,
    pub elapsed: Duration,
}

impl PackReport {
    /// Rows moved per second of the run.
    pub fn rows_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.rows_packed as f64 / secs
        } else {
            0.0
        }
    }
}

fn ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Sink {
    /// Why this sink does not pack, or `None` when it does ([`Sink::packs`]).
    pub fn packing_off(&self) -> Option<&'static str> {
        if !self.options.packed_samples {
            Some("database.packed_samples is false: raw samples stay rows")
        } else if self.timescale.load(std::sync::atomic::Ordering::Relaxed) {
            Some("raw samples are in TimescaleDB hypertables, which compress them")
        } else {
            None
        }
    }

    /// Packs the row-form samples older than [`PackOptions::older_than`], agent by
    /// agent (by `agents.id`), each agent's oldest hour first, batch after batch,
    /// until none is left, or `max_batches`, the `budget` or `stop` is reached.
    /// `on_batch` sees every batch committed. An agent whose batch fails is reported in
    /// [`PackReport::failures`] and the others go on; a database that becomes
    /// unavailable ends the run with the error. Does nothing when the sink does not
    /// pack ([`PackReport::off`]).
    pub async fn pack(
        &self,
        options: &PackOptions,
        mut on_batch: impl FnMut(&PackedBatch),
    ) -> Result<PackReport, SinkError> {
        let started = Instant::now();
        let mut report = PackReport {
            off: self.packing_off(),
            ..PackReport::default()
        };
        if report.off.is_some() {
            return Ok(report);
        }
        let cutoff_ms = ms_now().saturating_sub(options.older_than.as_millis() as i64);
        report.cutoff_ms = cutoff_ms;
        let agents: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM agents ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(SinkError::db("listing the agents to pack"))?;
        let names: HashMap<i64, String> = agents.iter().cloned().collect();
        let mut queue: VecDeque<i64> = agents.into_iter().map(|(id, _)| id).collect();
        let mut busy: HashMap<i64, u32> = HashMap::new();
        let mut packed_agents: HashSet<i64> = HashSet::new();
        let mut stopped = false;
        'agents: while let Some(agent) = queue.pop_front() {
            if busy.contains_key(&agent) {
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            // Within one run an agent's hours are packed in order: the next batch
            // looks from the last one's hour on (rows written behind it meanwhile
            // are for the next run).
            let mut from_ms = i64::MIN;
            loop {
                let over_batches = options.max_batches.is_some_and(|m| report.batches >= m);
                let over_budget = options.budget.is_some_and(|b| started.elapsed() >= b);
                let stopping = options.stop.as_ref().is_some_and(|s| *s.borrow());
                if over_batches || over_budget || stopping {
                    stopped = true;
                    break 'agents;
                }
                match self
                    .pack_batch(agent, from_ms, cutoff_ms, options.max_rows_per_batch)
                    .await
                {
                    Ok(BatchOutcome::Packed(b)) => {
                        report.batches += 1;
                        report.rows_packed += b.rows;
                        report.packed_rows += b.packed_rows;
                        report.times_rows += b.times_rows;
                        packed_agents.insert(agent);
                        from_ms = b.hour_ms;
                        on_batch(&b);
                    }
                    Ok(BatchOutcome::Done) => break,
                    Ok(BatchOutcome::Busy) => {
                        let tries = busy.entry(agent).or_insert(0);
                        *tries += 1;
                        if *tries <= BUSY_RETRIES {
                            queue.push_back(agent);
                        } else {
                            report.agents_busy += 1;
                        }
                        break;
                    }
                    Err(e) if e.is_unavailable() => return Err(e),
                    Err(e) => {
                        let name = names.get(&agent).cloned().unwrap_or_default();
                        tracing::warn!(agent = %name, error = %e, "packing the agent's raw samples failed; the other agents go on");
                        report.failures.push((name, e.to_string()));
                        break;
                    }
                }
            }
        }
        report.agents = packed_agents.len() as u64;
        report.complete = !stopped && report.agents_busy == 0 && report.failures.is_empty();
        report.remaining_rows = if report.complete {
            0
        } else {
            self.rows_before_estimate(cutoff_ms).await?
        };
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// One batch of agent `agent_id` (`agents.id`): its row-form samples of the
    /// clock hour of its oldest row in `[from_ms, cutoff_ms)`, cut at `cutoff_ms`,
    /// series by series up to `max_rows` rows (the module docs). `from_ms =
    /// i64::MIN` looks at everything older than the cutoff.
    pub async fn pack_batch(
        &self,
        agent_id: i64,
        from_ms: i64,
        cutoff_ms: i64,
        max_rows: u64,
    ) -> Result<BatchOutcome, SinkError> {
        // Ahead of any timestamptz PostgreSQL holds: no lower bound.
        let from_ms = from_ms.max(-210_866_803_200_000);
        let mut ensured = false;
        loop {
            let started = Instant::now();
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(SinkError::db("starting a pack transaction"))?;
            let conn: &mut PgConnection = &mut tx;
            let agent: Option<(String,)> = sqlx::query_as(
                "SELECT name FROM agents WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED",
            )
            .bind(agent_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(SinkError::db("locking the agent to pack"))?;
            let Some((agent,)) = agent else {
                return Ok(BatchOutcome::Busy);
            };
            sqlx::Executor::execute(
                &mut *conn,
                "SET LOCAL jit = off; SET LOCAL work_mem = '64MB'",
            )
            .await
            .map_err(SinkError::db("preparing the pack transaction"))?;
            let (oldest,): (Option<i64>,) = sqlx::query_as(OLDEST)
                .bind(agent_id)
                .bind(from_ms)
                .bind(cutoff_ms)
                .fetch_one(&mut *conn)
                .await
                .map_err(SinkError::db("finding the oldest raw samples to pack"))?;
            let Some(oldest) = oldest else {
                return Ok(BatchOutcome::Done);
            };
            let hour_ms = oldest - oldest.rem_euclid(HOUR_MS);
            let end_ms = (hour_ms + HOUR_MS).min(cutoff_ms);
            let (exist,): (bool,) = sqlx::query_as(PARTITIONS_EXIST)
                .bind(hour_ms)
                .fetch_one(&mut *conn)
                .await
                .map_err(SinkError::db("checking the packed tables' partitions"))?;
            if !exist && !ensured {
                // (Were they still missing after this, the insert would fail and say
                // which partition it lacks.)
                drop(tx);
                self.ensure_packed_partitions(hour_ms).await?;
                ensured = true;
                continue;
            }
            let counts: Vec<(i64, i64)> = sqlx::query_as(COUNTS)
                .bind(agent_id)
                .bind(hour_ms)
                .bind(end_ms)
                .fetch_all(&mut *conn)
                .await
                .map_err(SinkError::db("counting the raw samples to pack"))?;
            let mut ids = Vec::new();
            let mut rows = 0u64;
            for &(id, n) in &counts {
                if !ids.is_empty() && rows + n as u64 > max_rows {
                    break;
                }
                ids.push(id);
                rows += n as u64;
            }
            if ids.is_empty() {
                // The oldest row lies in the window, so this cannot be; nothing to do.
                return Ok(BatchOutcome::Done);
            }
            let hour_left = ids.len() < counts.len();
            let (moved, packed, times, fine): (i64, i64, i64, Option<i64>) = sqlx::query_as(MOVE)
                .bind(agent_id)
                .bind(&ids)
                .bind(hour_ms)
                .bind(end_ms)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
                        SinkError::bad(
                            &agent,
                            format!(
                                "packing the hour from {}: a packed window of one of its \
                                     series already starts at the time of a row, so that \
                                     sample is stored twice ({}); delete the duplicate row \
                                     from samples",
                                crate::db::rfc3339(hour_ms_to_time(hour_ms)),
                                db.message()
                            ),
                        )
                    }
                    _ => SinkError::db("moving raw samples into packed rows")(e),
                })?;
            if let Some(series) = fine {
                // Dropping the transaction rolls the move back.
                return Err(SinkError::bad(
                    &agent,
                    format!(
                        "series {series} has raw samples in the hour from {} stamped finer than \
                         a millisecond, which the packed layout cannot hold (the federator writes \
                         whole milliseconds; were they written by hand?): they stay rows until \
                         rounded or deleted",
                        crate::db::rfc3339(hour_ms_to_time(hour_ms))
                    ),
                ));
            }
            tx.commit()
                .await
                .map_err(SinkError::db("committing the pack transaction"))?;
            let batch = PackedBatch {
                agent_id,
                agent,
                hour_ms,
                series: ids.len() as u64,
                rows: moved as u64,
                packed_rows: packed as u64,
                times_rows: times as u64,
                hour_left,
                elapsed: started.elapsed(),
            };
            tracing::debug!(
                agent = %batch.agent, hour_ms, series = batch.series, rows = batch.rows,
                secs = batch.elapsed.as_secs_f64(), "raw samples packed"
            );
            return Ok(BatchOutcome::Packed(batch));
        }
    }

    /// Creates the day's partitions of every partitioned table that lacks them, in a
    /// transaction of its own.
    async fn ensure_packed_partitions(&self, at_ms: i64) -> Result<(), SinkError> {
        let day_ms = at_ms - at_ms.rem_euclid(DAY_MS);
        sqlx::query(
            "SELECT pga_ensure_partitions(ARRAY[ \
                 timestamptz 'epoch' + $1::bigint * interval '1 millisecond'])",
        )
        .bind(day_ms)
        .execute(&self.pool)
        .await
        .map_err(SinkError::db("creating partitions"))?;
        Ok(())
    }

    /// The planner's estimate of the rows in `samples` older than `cutoff_ms`.
    async fn rows_before_estimate(&self, cutoff_ms: i64) -> Result<u64, SinkError> {
        let (plan,): (serde_json::Value,) = sqlx::query_as(&format!(
            "EXPLAIN (FORMAT JSON) SELECT 1 FROM samples \
             WHERE ts < timestamptz 'epoch' + {cutoff_ms}::bigint * interval '1 millisecond'"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(SinkError::db("estimating the raw samples left to pack"))?;
        Ok(plan[0]["Plan"]["Plan Rows"]
            .as_f64()
            .unwrap_or(0.0)
            .max(0.0) as u64)
    }
}

/// `ms` as a time, for messages.
fn hour_ms_to_time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
