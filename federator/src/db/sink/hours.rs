//! The hours job: 1-hour, 10-minute and 1-day rollups written once, when their time
//! has passed (migrations 0090 and 0094).
//!
//! The ingest keeps an agent's 1-minute rows current at every pull, but its 1-hour
//! and 10-minute rows only for the buckets before the agent's marks in
//! `closed_rollups` (`hours_until`, `tens_until`): rewriting each series' current
//! hour at every pull (240 times an hour at a 15-second schedule) cost more than the
//! rest of the pull (docs/benchmarks.md, "Pull speed"). Readers see the same rows
//! either way: `pga_hours` and `pga_rollups_in` (0091_closed_hours_query.sql) sum the
//! 1-minute rows of the buckets not closed.
//!
//! [`Sink::close_hours`] moves each agent's marks up to the database's clock less
//! [`SETTLE`], rounded down to the hour and to the ten minutes, and its days mark up to
//! the last whole day of closed hours: one transaction per agent and at most
//! [`MAX_SPAN_MS`] per mark, which
//!
//! 1. locks the agent's row in `agents` `FOR NO KEY UPDATE`, the lock the ingest
//!    takes first in its transaction, waiting at most [`LOCK_WAIT`]: the two
//!    serialize, so an ingest either wrote its minutes before they are summed, or
//!    reads the new marks and keeps those buckets exact itself from then on;
//! 2. writes the rows of `[mark, to)` from the 1-minute rows, replacing any row
//!    there (a database migrated from before 0090 has a partial row for the hour it
//!    was migrated in), then the days' rows from the 1-hour rows just closed;
//! 3. moves the marks to `to`.
//!
//! A mark not set yet (a new agent; the 10-minute rows of a database migrated from
//! before 0090) starts at the hour of the agent's oldest 1-minute row, and a days
//! mark not set yet (the 1-day rows of a database migrated from before 0094) at the
//! day of its oldest 1-hour row, so an existing history is filled a day per
//! transaction, online. Buckets closed before
//! their data arrived (an agent unreachable for a while, then backfilled) are kept
//! exact by the ingest as late data, as 1-hour rows were before 0090. Nothing else
//! records progress: a run stopped anywhere is resumed by the next one.

use std::time::{Duration, Instant};

use sqlx::PgConnection;
use tokio::sync::watch;

use super::{Sink, SinkError, rollup};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// The most time one transaction closes per mark for one agent: a day.
pub const MAX_SPAN_MS: i64 = 24 * HOUR_MS;
/// How far behind the clock buckets are closed: the data of a bucket that just ended
/// is still on its way (the next pull brings it). What comes later is merged as late
/// data.
pub const SETTLE: Duration = Duration::from_secs(120);
/// How long a transaction waits for the agent's ingest to commit.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The agents with a mark behind its target, and the targets (ms): the database's
/// clock less `$1` seconds, rounded down to the hour, to the ten minutes and to the
/// day (the last day whose hours are all closed then).
const DUE: &str = "\
WITH c AS (SELECT now() - $1::bigint * interval '1 second' AS at)
SELECT a.id, a.name,
       (extract(epoch FROM date_bin('1 hour', c.at, timestamptz 'epoch')) * 1000)::bigint,
       (extract(epoch FROM date_bin('10 minutes', c.at, timestamptz 'epoch')) * 1000)::bigint,
       (extract(epoch FROM date_bin('1 day', c.at, timestamptz 'epoch')) * 1000)::bigint
FROM agents a
CROSS JOIN c
LEFT JOIN closed_rollups k ON k.agent_id = a.id
WHERE k.hours_until IS NULL OR k.hours_until < date_bin('1 hour', c.at, timestamptz 'epoch')
   OR k.tens_until IS NULL OR k.tens_until < date_bin('10 minutes', c.at, timestamptz 'epoch')
   OR k.days_until IS NULL OR k.days_until < date_bin('1 day', c.at, timestamptz 'epoch')
ORDER BY a.id";

/// The agent's oldest 1-minute row (ms): one probe of the primary key per series.
const OLDEST_MINUTE: &str = "\
SELECT (extract(epoch FROM min(f.bucket)) * 1000)::bigint
FROM series se
CROSS JOIN LATERAL (
    SELECT m.bucket FROM samples_1m m WHERE m.series_id = se.id ORDER BY m.bucket LIMIT 1) f
WHERE se.agent_id = $1";

/// The agent's oldest 1-hour row (ms), where its days start when they have no mark.
const OLDEST_HOUR: &str = "\
SELECT (extract(epoch FROM min(f.bucket)) * 1000)::bigint
FROM series se
CROSS JOIN LATERAL (
    SELECT h.bucket FROM samples_1h h WHERE h.series_id = se.id ORDER BY h.bucket LIMIT 1) f
WHERE se.agent_id = $1";

const MARKS: &str = "\
SELECT (extract(epoch FROM hours_until) * 1000)::bigint,
       (extract(epoch FROM tens_until) * 1000)::bigint,
       (extract(epoch FROM days_until) * 1000)::bigint
FROM closed_rollups WHERE agent_id = $1";

const SET_MARKS: &str = "\
INSERT INTO closed_rollups (agent_id, hours_until, tens_until, days_until)
VALUES ($1, timestamptz 'epoch' + $2::bigint * interval '1 millisecond',
        timestamptz 'epoch' + $3::bigint * interval '1 millisecond',
        timestamptz 'epoch' + $4::bigint * interval '1 millisecond')
ON CONFLICT (agent_id) DO UPDATE
SET hours_until = EXCLUDED.hours_until, tens_until = EXCLUDED.tens_until,
    days_until = EXCLUDED.days_until, updated_at = now()";

/// What one [`Sink::close_hours`] run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HoursReport {
    /// The hour every agent's hours were to be closed up to (ms; the database's
    /// clock less [`SETTLE`]), 0 when no agent was due.
    pub hours_until_ms: i64,
    /// The same for the 10-minute rows.
    pub tens_until_ms: i64,
    /// The same for the 1-day rows: the day the hours were closed in.
    pub days_until_ms: i64,
    /// Agents whose marks reached them.
    pub agents: u64,
    /// Agents due whose marks did not (busy, failed, or not reached before the
    /// budget or stop).
    pub agents_left: u64,
    /// 1-hour, 10-minute and 1-day rows written.
    pub rows: u64,
    /// Agents whose ingest held them past [`LOCK_WAIT`]: left for the next run.
    pub agents_busy: u64,
    /// Agents whose transaction failed, with the error; the others went on.
    pub failures: Vec<(String, String)>,
    /// Every agent's marks reached them.
    pub complete: bool,
    pub elapsed: Duration,
}

/// What one agent's transaction found.
enum Step {
    /// Buckets closed, this many rows written; `done` when both marks reached their
    /// targets.
    Closed { done: bool, rows: u64 },
    /// The agent's ingest held its row past [`LOCK_WAIT`], or it no longer exists.
    Busy,
}

impl Sink {
    /// Closes every agent's ended hours and ten minutes, agent by agent (module
    /// docs), until done or `budget` or `stop` is reached. An agent whose
    /// transaction fails is reported in [`HoursReport::failures`] and the others go
    /// on; a database that becomes unavailable ends the run with the error.
    pub async fn close_hours(
        &self,
        budget: Option<Duration>,
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<HoursReport, SinkError> {
        let started = Instant::now();
        let mut report = HoursReport::default();
        let due: Vec<(i64, String, i64, i64, i64)> = sqlx::query_as(DUE)
            .bind(SETTLE.as_secs() as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(SinkError::db("listing the agents whose rollups are due"))?;
        let mut stopped = false;
        report.agents_left = due.len() as u64;
        'agents: for (agent, name, hours_ms, tens_ms, days_ms) in due {
            (
                report.hours_until_ms,
                report.tens_until_ms,
                report.days_until_ms,
            ) = (hours_ms, tens_ms, days_ms);
            loop {
                let over_budget = budget.is_some_and(|b| started.elapsed() >= b);
                if over_budget || stop.is_some_and(|s| *s.borrow()) {
                    stopped = true;
                    break 'agents;
                }
                match self.close_agent(agent, [hours_ms, tens_ms, days_ms]).await {
                    Ok(Step::Closed { done, rows }) => {
                        report.rows += rows;
                        if done {
                            report.agents += 1;
                            report.agents_left -= 1;
                            break;
                        }
                    }
                    Ok(Step::Busy) => {
                        report.agents_busy += 1;
                        break;
                    }
                    Err(e) if e.is_unavailable() => return Err(e),
                    Err(e) => {
                        tracing::warn!(agent = %name, error = %e, "closing the agent's 1-hour, 10-minute and 1-day rollups failed; the other agents go on");
                        report.failures.push((name, e.to_string()));
                        break;
                    }
                }
            }
        }
        report.complete = !stopped && report.agents_busy == 0 && report.failures.is_empty();
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// One transaction: the agent's buckets from its marks (read under the lock) up
    /// to at most the `targets` (hours, ten minutes, days), [`MAX_SPAN_MS`] per mark;
    /// the days only as far as the hours are closed.
    async fn close_agent(&self, agent: i64, targets: [i64; 3]) -> Result<Step, SinkError> {
        let [hours_ms, tens_ms, days_ms] = targets;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(SinkError::db("starting the hours transaction"))?;
        let conn: &mut PgConnection = &mut tx;
        sqlx::Executor::execute(
            &mut *conn,
            format!("SET LOCAL lock_timeout = {}", LOCK_WAIT.as_millis()).as_str(),
        )
        .await
        .map_err(SinkError::db("preparing the hours transaction"))?;
        let locked = sqlx::query("SELECT FROM agents WHERE id = $1 FOR NO KEY UPDATE")
            .bind(agent)
            .fetch_optional(&mut *conn)
            .await;
        match locked {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(Step::Busy),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                return Ok(Step::Busy);
            }
            Err(e) => return Err(SinkError::db("locking the agent")(e)),
        }
        // Another run (another replica) may have moved them since the list was read.
        type Marks = (Option<i64>, Option<i64>, Option<i64>);
        let marks: Option<Marks> = sqlx::query_as(MARKS)
            .bind(agent)
            .fetch_optional(&mut *conn)
            .await
            .map_err(SinkError::db("reading the agent's closed rollups"))?;
        let (hours_from, tens_from, days_from) = marks.unwrap_or_default();
        let start = if hours_from.is_none() || tens_from.is_none() {
            let (oldest,): (Option<i64>,) = sqlx::query_as(OLDEST_MINUTE)
                .bind(agent)
                .fetch_one(&mut *conn)
                .await
                .map_err(SinkError::db("finding the agent's oldest 1-minute rollup"))?;
            // No minutes yet: nothing to write below the targets.
            oldest.map(|t| t - t.rem_euclid(HOUR_MS))
        } else {
            None
        };
        // Days without a mark start at the day of the oldest hour: for a new agent the
        // hours written here from its oldest minute, for a database migrated from
        // before 0094 its 1-hour history.
        let days_start = match (days_from, hours_from) {
            (Some(_), _) => None,
            (None, None) => start,
            (None, Some(_)) => {
                let (oldest,): (Option<i64>,) = sqlx::query_as(OLDEST_HOUR)
                    .bind(agent)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(SinkError::db("finding the agent's oldest 1-hour rollup"))?;
                oldest
            }
        }
        .map(|t| t - t.rem_euclid(DAY_MS));
        let mut series: Option<Vec<i64>> = None;
        let mut rows = 0;
        let mut done = true;
        let mut to = [0i64; 3];
        for (k, (from, target, statement, what)) in [
            (
                hours_from,
                hours_ms,
                rollup::CLOSE_1H,
                "writing 1-hour rollups",
            ),
            (
                tens_from,
                tens_ms,
                rollup::CLOSE_10M,
                "writing 10-minute rollups",
            ),
            (
                days_from.or(days_start),
                days_ms,
                rollup::CLOSE_1D,
                "writing 1-day rollups",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            // A day is closed from its hours once they all are (to[0]: written above).
            let target = if k == 2 {
                target.min(to[0] - to[0].rem_euclid(DAY_MS))
            } else {
                target
            };
            // (The days' start is day-aligned above, not the hours' start.)
            let from = if k == 2 { from } else { from.or(start) }.unwrap_or(target);
            to[k] = target.min(from.saturating_add(MAX_SPAN_MS)).max(from);
            done &= to[k] >= target;
            if from >= to[k] {
                continue;
            }
            if series.is_none() {
                series = Some(
                    sqlx::query_scalar("SELECT id FROM series WHERE agent_id = $1")
                        .bind(agent)
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(SinkError::db("listing the agent's series"))?,
                );
            }
            rows += sqlx::query(statement)
                .bind(series.as_deref().unwrap_or_default())
                .bind(from)
                .bind(to[k])
                .execute(&mut *conn)
                .await
                .map_err(SinkError::db(what))?
                .rows_affected();
        }
        sqlx::query(SET_MARKS)
            .bind(agent)
            .bind(to[0])
            .bind(to[1])
            .bind(to[2])
            .execute(&mut *conn)
            .await
            .map_err(SinkError::db("moving the agent's closed rollups"))?;
        tx.commit()
            .await
            .map_err(SinkError::db("committing the hours transaction"))?;
        Ok(Step::Closed { done, rows })
    }
}
