//! One batch, one transaction.
//!
//! Before the transaction, the partitions the batch's days need (plain PostgreSQL)
//! are created, each in a short transaction of its own, by attaching a new table:
//! that locks nothing another agent's transaction or a reader waits on, and an
//! ingest transaction never holds a lock on a table's parent beyond what every
//! writer holds (ROW EXCLUSIVE). `pga-bench lockwait` measures what one agent's
//! long transaction makes another agent's `COPY` wait.
//!
//! Order of work inside the transaction:
//! 1. the agent's row (created on first sight; its identity updated), which also
//!    locks it, so two writers of one agent queue up;
//! 2. the gap, if any: its lower bound is the newest sample stored from the agent
//!    (a head written before the gap was known included), so that no stored sample
//!    lies inside it; a gap recorded before without an upper bound gets this batch's
//!    oldest sample as one;
//! 3. the batch's dictionary entries to global series ids;
//! 4. every sample (sealed blocks and head) by binary `COPY` ([`super::samples`]): a
//!    sample already stored (the head's overlap, a block delivered twice) is
//!    dropped, never doubled; the series and time ranges really inserted go to
//!    `pga_touched`;
//! 5. the rollups of the touched buckets ([`super::rollup`]), which attribute no
//!    increase across a gap (2.) or a silence longer than `max_silence`;
//! 6. log events of the sealed blocks (the head's come again once it is sealed);
//! 7. the gap, if any, and the cursor (with the agent's data watermark); for a
//!    fenced writer ([`super::Fence`]) the same statement checks the agent's lease
//!    (owner and epoch, and the owner's replica lease valid on the database's
//!    clock) and locks it, so a takeover waits for this commit or this statement
//!    sees it and writes nothing ([`SinkError::Fenced`]).
//!
//! The series cache learns the batch's new mappings, and the tail cache
//! ([`super::tails`]) the newest stored sample of each series, only after the commit.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use pga_format::DecodedBlock;
use sqlx::PgConnection;

use super::{Fence, IngestReport, Sink, SinkError, pg_text, rollup, samples, series, uuid_text};
use crate::pull::batch::Batch;
use std::sync::atomic::Ordering;

const DAY_MS: i64 = 86_400_000;
/// Samples and log events stamped more than this ahead of the federator's clock (an
/// agent host with a broken clock) are not stored, so they cannot create partitions
/// years ahead that retention would never reach; the report counts them.
const MAX_AHEAD_MS: i64 = DAY_MS;

/// first_seen always; last_seen when it moves by more than an hour (the staged
/// path, from `pga_touched`).
const SEEN: &str = "\
UPDATE series se
SET first_seen = least(se.first_seen, t.first_ts), last_seen = greatest(se.last_seen, t.last_ts)
FROM pga_touched t
WHERE se.id = t.series_id
  AND (se.first_seen IS NULL OR t.first_ts < se.first_seen
       OR t.last_ts > se.last_seen + interval '1 hour')";

/// The same for the series the direct path listed: `(id, first ms, last ms)`.
const SEEN_LISTED: &str = "\
UPDATE series se
SET first_seen = least(se.first_seen, timestamptz 'epoch' + t.first_ms * interval '1 millisecond'),
    last_seen = greatest(se.last_seen, timestamptz 'epoch' + t.last_ms * interval '1 millisecond')
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS t(id, first_ms, last_ms)
WHERE se.id = t.id";

/// The cursor's advance, unfenced.
const ADVANCE: &str = "\
INSERT INTO agent_cursors (agent_id, agent_uid, last_sequence, last_ts_ms, series_count, watermark_ms)
VALUES ($1, $2::uuid, $3, $4, $5, greatest($4, $6))
ON CONFLICT (agent_id) DO UPDATE SET agent_uid = EXCLUDED.agent_uid,
    last_sequence = EXCLUDED.last_sequence, last_ts_ms = EXCLUDED.last_ts_ms,
    series_count = EXCLUDED.series_count,
    watermark_ms = greatest(agent_cursors.watermark_ms, EXCLUDED.watermark_ms)
RETURNING xmin::text::bigint";

/// The cursor's advance by a fenced writer: no row unless the agent's lease names
/// replica `$8` with epoch `$9` and that replica's lease is valid now (the clock of
/// the database, at this statement); the lease row is locked until the commit.
const ADVANCE_FENCED: &str = concat!(
    "WITH fence AS (",
    super::fenced_lease_sql!("$7", "$8", "$9"),
    ")
INSERT INTO agent_cursors (agent_id, agent_uid, last_sequence, last_ts_ms, series_count, watermark_ms)
SELECT $1, $2::uuid, $3::bigint, $4::bigint, $5::bigint, greatest($4::bigint, $6::bigint)
FROM fence
ON CONFLICT (agent_id) DO UPDATE SET agent_uid = EXCLUDED.agent_uid,
    last_sequence = EXCLUDED.last_sequence, last_ts_ms = EXCLUDED.last_ts_ms,
    series_count = EXCLUDED.series_count,
    watermark_ms = greatest(agent_cursors.watermark_ms, EXCLUDED.watermark_ms)
RETURNING xmin::text::bigint"
);

pub(crate) async fn ingest(
    sink: &Sink,
    batch: &Batch,
    fence: Option<&Fence>,
) -> Result<IngestReport, SinkError> {
    validate(batch)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let raw_cutoff_ms = now_ms.saturating_sub(sink.options.retention.raw.as_millis() as i64);
    let log_cutoff_ms = now_ms.saturating_sub(sink.options.retention.log_events.as_millis() as i64);
    let future_ms = now_ms.saturating_add(MAX_AHEAD_MS);

    // Partitions first, committed on their own (see the module docs).
    let mut days = BTreeSet::new();
    for block in data_blocks(batch) {
        days.extend(
            block
                .timestamps
                .iter()
                .filter(|&&ts| ts >= raw_cutoff_ms && ts <= future_ms)
                .map(|ts| ts.div_euclid(DAY_MS)),
        );
    }
    for block in &batch.blocks {
        for event in &block.log_events {
            if (log_cutoff_ms..=future_ms).contains(&event.timestamp_ms) {
                days.insert(event.timestamp_ms.div_euclid(DAY_MS));
            }
        }
    }
    // Days whose partitions this sink created or found since its last error or
    // retention run need no check.
    days.retain(|d| {
        !sink
            .partition_days
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(d)
    });
    if !days.is_empty() {
        ensure_partitions(&sink.pool, &days).await?;
        sink.partition_days
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(days);
    }

    let mut tx = sink
        .pool
        .begin()
        .await
        .map_err(SinkError::db("starting the ingest transaction"))?;
    let conn: &mut PgConnection = &mut tx;
    if sink.timescale.load(Ordering::Relaxed) {
        // Late data into compressed chunks decompresses what it may conflict with;
        // TimescaleDB's default caps that at 100,000 tuples per transaction. The
        // batch is bounded already (backfill.max_samples_per_transaction).
        sqlx::Executor::execute(
            &mut *conn,
            "SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0",
        )
        .await
        .map_err(SinkError::db("preparing the transaction for TimescaleDB"))?;
    }
    let uid = uuid_text(&batch.agent_id);

    let (agent_row,): (i64,) = sqlx::query_as(
        "INSERT INTO agents (name, agent_uid, first_seen_at, last_seen_at) \
         VALUES ($1, $2::uuid, now(), now()) \
         ON CONFLICT (name) DO UPDATE \
             SET agent_uid = EXCLUDED.agent_uid, last_seen_at = EXCLUDED.last_seen_at, \
                 first_seen_at = coalesce(agents.first_seen_at, EXCLUDED.first_seen_at) \
         RETURNING id",
    )
    .bind(&batch.agent)
    .bind(&uid)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => SinkError::bad(
            &batch.agent,
            format!(
                "agent identity {} is already registered under another name; two \
                 configured agents reach the same agent store (a cloned host?): give the \
                 clone a fresh store or remove the duplicate from the configuration",
                batch.agent_id
            ),
        ),
        _ => SinkError::db("writing the agent")(e),
    })?;

    let oldest_ms = data_blocks(batch)
        .filter_map(|b| b.timestamps.first().copied())
        .filter(|&ts| ts >= raw_cutoff_ms && ts <= future_ms)
        .min();
    let gap_recorded = write_gap(conn, agent_row, &uid, batch, oldest_ms).await?;

    // The tails remembered for the agent, if nobody else wrote it since; the
    // newest gap's lower bound, for the rollups of the series that only grow; and
    // up to where the agent's hours, ten minutes and days are closed (the rows of
    // `samples_1h`, `samples_10m` and `samples_1d` it writes).
    type Marks = (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    let (token, gap_after_ms, hours_ms, tens_ms, days_ms): Marks = sqlx::query_as(
        "SELECT (SELECT xmin::text::bigint FROM agent_cursors WHERE agent_id = $1), \
                (SELECT (extract(epoch FROM max(after_ts)) * 1000)::bigint \
                 FROM gaps WHERE agent_id = $1), \
                (extract(epoch FROM k.hours_until) * 1000)::bigint, \
                (extract(epoch FROM k.tens_until) * 1000)::bigint, \
                (extract(epoch FROM k.days_until) * 1000)::bigint \
         FROM (VALUES (1)) AS one \
         LEFT JOIN closed_rollups k ON k.agent_id = $1",
    )
    .bind(agent_row)
    .fetch_one(&mut *conn)
    .await
    .map_err(SinkError::db("reading the agent's cursor"))?;
    let mut tails = sink
        .tails
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take(agent_row, token);
    tails.retain(|_, t| t.ts >= raw_cutoff_ms);

    // Dictionary: new entries, then whatever the blocks use that the cache lacks.
    let mut mapping = series::upsert(conn, agent_row, batch.agent_id, &batch.series).await?;
    // A dictionary entry may describe a known series anew (a recreated store).
    for global in mapping.values() {
        tails.remove(global);
    }
    let learned = mapping.clone();
    let mut missing = HashSet::new();
    {
        let cache = sink
            .series_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for col in data_blocks(batch).flat_map(|b| b.columns.iter()) {
            if mapping.contains_key(&col.series.0) {
                continue;
            }
            match cache.get(batch.agent_id, col.series) {
                Some(global) => {
                    mapping.insert(col.series.0, global);
                }
                None => {
                    missing.insert(col.series.0);
                }
            }
        }
    }
    let found = series::lookup(conn, batch.agent_id, &missing).await?;
    if let Some(unknown) = missing.iter().find(|l| !found.contains_key(l)) {
        return Err(SinkError::bad(
            &batch.agent,
            format!(
                "samples of series id {unknown}, which no dictionary entry received so far \
                 describes; the agent's /v1/series and /v1/blocks disagree"
            ),
        ));
    }
    mapping.extend(found.iter().map(|(&l, &g)| (l, g)));

    // Samples.
    let received: u64 = data_blocks(batch).map(|b| b.sample_count() as u64).sum();
    let future: u64 = data_blocks(batch)
        .flat_map(|b| b.columns.iter().map(move |c| (b, c)))
        .map(|(b, c)| c.timestamps(b).filter(|&ts| ts > future_ms).count() as u64)
        .sum();
    let to_write = samples::Samples {
        blocks: data_blocks(batch).collect(),
        sealed: batch.blocks.len(),
        packed: sink.packs(),
        agent_id: agent_row,
        mapping: &mapping,
        cutoff_ms: raw_cutoff_ms,
        future_ms,
    };
    let written = samples::write(conn, &to_write, tails).await?;
    let (mut rollups_1m, mut rollups_1h) = (0, 0);
    if written.inserted > 0 {
        if written.ranges.is_none() {
            sqlx::query(SEEN)
                .execute(&mut *conn)
                .await
                .map_err(SinkError::db("updating series first/last seen"))?;
        } else if !written.seen.is_empty() {
            let col =
                |f: fn(&(i64, i64, i64)) -> i64| written.seen.iter().map(f).collect::<Vec<_>>();
            sqlx::query(SEEN_LISTED)
                .bind(col(|s| s.0))
                .bind(col(|s| s.1))
                .bind(col(|s| s.2))
                .execute(&mut *conn)
                .await
                .map_err(SinkError::db("updating series first/last seen"))?;
        }
        let breaks = rollup::Breaks {
            max_silence_ms: sink.options.max_silence.as_millis() as i64,
            gap_after_ms,
        };
        (rollups_1m, rollups_1h) = rollup::recompute(
            conn,
            &written.fresh,
            written.ranges.as_deref(),
            breaks,
            rollup::Closed {
                hours_ms,
                tens_ms,
                days_ms,
            },
        )
        .await?;
        count_minutes(conn, agent_row, &written.minutes).await?;
    }

    let log_events_inserted =
        write_log_events(conn, agent_row, batch, log_cutoff_ms..=future_ms).await?;

    let advance = sqlx::query_as::<_, (i64,)>(if fence.is_some() {
        ADVANCE_FENCED
    } else {
        ADVANCE
    })
    .bind(agent_row)
    .bind(&uid)
    .bind(batch.cursor.last_sequence.map(|s| s as i64))
    .bind(batch.cursor.last_ts_ms)
    .bind(batch.cursor.series_count as i64)
    .bind(batch.complete_through_ms);
    let advance = match fence {
        Some(f) => advance.bind(&batch.agent).bind(&f.replica).bind(f.epoch),
        None => advance,
    };
    let Some((token,)) = advance
        .fetch_optional(&mut *conn)
        .await
        .map_err(SinkError::db("advancing the agent's cursor"))?
    else {
        // Dropping the transaction rolls every row of the batch back.
        return Err(SinkError::Fenced {
            agent: batch.agent.clone(),
            epoch: fence.map_or(0, |f| f.epoch),
        });
    };

    tx.commit()
        .await
        .map_err(SinkError::db("committing the ingest transaction"))?;

    let mut learned = learned;
    learned.extend(found);
    sink.series_cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .extend(batch.agent_id, &learned);
    if let Some(tails) = written.tails {
        sink.tails
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .put(agent_row, token, tails);
    }

    Ok(IngestReport {
        series_mapped: batch.series.len(),
        samples_received: received,
        samples_inserted: written.inserted,
        samples_duplicate: written.offered - written.inserted - written.damaged,
        samples_damaged: written.damaged,
        packed_rows: written.packed_rows,
        samples_expired: received - written.offered - future,
        samples_future: future,
        log_events_inserted,
        rollups_1m,
        rollups_1h,
        gap_recorded,
    })
}

/// The blocks whose samples are written: every sealed block, then the head.
fn data_blocks(batch: &Batch) -> impl Iterator<Item = &DecodedBlock> {
    batch.blocks.iter().chain(batch.head.as_ref())
}

/// Checks what PostgreSQL would otherwise reject less clearly.
fn validate(batch: &Batch) -> Result<(), SinkError> {
    let bad = |reason: String| Err(SinkError::bad(&batch.agent, reason));
    if batch.agent.is_empty() {
        return bad("the agent has no name".to_owned());
    }
    for block in data_blocks(batch) {
        if block.header.agent_id != batch.agent_id {
            return bad(format!(
                "block {} belongs to agent {}, not to {}",
                block.header.sequence, block.header.agent_id, batch.agent_id
            ));
        }
    }
    let sequences = batch
        .blocks
        .iter()
        .map(|b| b.header.sequence)
        .chain(batch.cursor.last_sequence)
        .chain(
            batch
                .gap
                .iter()
                .flat_map(|g| [g.first_sequence, g.last_sequence]),
        )
        .chain([batch.cursor.series_count]);
    for s in sequences {
        if s > i64::MAX as u64 {
            return bad(format!(
                "sequence or count {s} exceeds the database's bigint range"
            ));
        }
    }
    if let Some(gap) = &batch.gap
        && gap.first_sequence > gap.last_sequence
    {
        return bad(format!(
            "gap from sequence {} to {} runs backwards",
            gap.first_sequence, gap.last_sequence
        ));
    }
    Ok(())
}

/// Creates the partitions of `days` (days since the Unix epoch) that are missing,
/// in a transaction of its own.
async fn ensure_partitions(pool: &sqlx::PgPool, days: &BTreeSet<i64>) -> Result<(), SinkError> {
    let days: Vec<i64> = days.iter().copied().collect();
    sqlx::query(
        "SELECT pga_ensure_partitions(ARRAY( \
             SELECT timestamptz 'epoch' + d * interval '1 day' FROM unnest($1::bigint[]) AS d))",
    )
    .bind(&days)
    .execute(pool)
    .await
    .map_err(SinkError::db("creating partitions"))?;
    Ok(())
}

async fn write_log_events(
    conn: &mut PgConnection,
    agent_row: i64,
    batch: &Batch,
    window: std::ops::RangeInclusive<i64>,
) -> Result<u64, SinkError> {
    let mut ts = Vec::new();
    let mut seq = Vec::new();
    let mut index = Vec::new();
    let mut severity = Vec::new();
    let mut kind = Vec::new();
    let mut sqlstate = Vec::new();
    let mut pid = Vec::new();
    let mut instance = Vec::new();
    let mut user = Vec::new();
    let mut database = Vec::new();
    let mut application = Vec::new();
    let mut message = Vec::new();
    let mut duration = Vec::new();
    for block in &batch.blocks {
        for (i, e) in block.log_events.iter().enumerate() {
            if !window.contains(&e.timestamp_ms) {
                continue;
            }
            ts.push(e.timestamp_ms);
            seq.push(block.header.sequence as i64);
            index.push(i as i32);
            severity.push(e.severity.as_str());
            kind.push(e.kind.as_str());
            sqlstate.push(e.sqlstate.map(|c| String::from_utf8_lossy(&c).into_owned()));
            pid.push(e.pid.map(i64::from));
            instance.push(e.instance.as_deref().map(pg_text));
            user.push(e.user.as_deref().map(pg_text));
            database.push(e.database.as_deref().map(pg_text));
            application.push(e.application.as_deref().map(pg_text));
            message.push(pg_text(&e.message));
            duration.push(e.duration_ms);
        }
    }
    if ts.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "INSERT INTO log_events (agent_id, ts, block_sequence, event_index, severity, kind, \
             sqlstate, pid, instance, user_name, database_name, application, message, duration_ms) \
         SELECT $1, timestamptz 'epoch' + e.ts * interval '1 millisecond', e.seq, e.idx, \
             e.severity, e.kind, e.sqlstate, e.pid, e.instance, e.usr, e.db, e.app, e.msg, e.dur \
         FROM unnest($2::bigint[], $3::bigint[], $4::int[], $5::text[], $6::text[], $7::text[], \
                     $8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
                     $14::float8[]) \
              AS e(ts, seq, idx, severity, kind, sqlstate, pid, instance, usr, db, app, msg, dur) \
         ON CONFLICT DO NOTHING",
    )
    .bind(agent_row)
    .bind(&ts)
    .bind(&seq)
    .bind(&index)
    .bind(&severity)
    .bind(&kind)
    .bind(&sqlstate)
    .bind(&pid)
    .bind(&instance)
    .bind(&user)
    .bind(&database)
    .bind(&application)
    .bind(&message)
    .bind(&duration)
    .execute(&mut *conn)
    .await
    .map_err(SinkError::db("writing log events"))?;
    Ok(done.rows_affected())
}

/// The newest sample stored from the agent's series before `before_ms` (ms; no
/// bound when `None`): the exact lower bound of a gap.
const NEWEST_BEFORE: &str = "\
SELECT (extract(epoch FROM max(s.ts)) * 1000)::bigint
FROM series se
CROSS JOIN LATERAL pga_raw_before(
    se.id, coalesce(timestamptz 'epoch' + $2::bigint * interval '1 millisecond', 'infinity'),
    true) s
WHERE se.agent_id = $1";

/// Records the batch's gap with exact bounds (the module docs, 2.), and gives an
/// upper bound to the agent's gaps recorded without one: `oldest_ms`, the oldest
/// sample of this batch. Returns whether the batch's gap was new.
async fn write_gap(
    conn: &mut PgConnection,
    agent_row: i64,
    uid: &str,
    batch: &Batch,
    oldest_ms: Option<i64>,
) -> Result<bool, SinkError> {
    let mut recorded = false;
    if let Some(gap) = &batch.gap {
        let (stored,): (Option<i64>,) = sqlx::query_as(NEWEST_BEFORE)
            .bind(agent_row)
            .bind(gap.before_ts_ms)
            .fetch_one(&mut *conn)
            .await
            .map_err(SinkError::db("finding where the gap starts"))?;
        let after_ts_ms = stored.max(gap.after_ts_ms);
        let done = sqlx::query(
            "INSERT INTO gaps (agent_id, agent_uid, first_sequence, last_sequence, after_ts, before_ts) \
             VALUES ($1, $2::uuid, $3, $4, \
                     timestamptz 'epoch' + $5::bigint * interval '1 millisecond', \
                     timestamptz 'epoch' + $6::bigint * interval '1 millisecond') \
             ON CONFLICT (agent_uid, first_sequence, last_sequence) DO NOTHING",
        )
        .bind(agent_row)
        .bind(uid)
        .bind(gap.first_sequence as i64)
        .bind(gap.last_sequence as i64)
        .bind(after_ts_ms)
        .bind(gap.before_ts_ms)
        .execute(&mut *conn)
        .await
        .map_err(SinkError::db("recording the gap"))?;
        recorded = done.rows_affected() > 0;
    }
    if let Some(oldest) = oldest_ms {
        sqlx::query(
            "UPDATE gaps SET before_ts = timestamptz 'epoch' + $2::bigint * interval '1 millisecond' \
             WHERE agent_id = $1 AND before_ts IS NULL \
               AND (after_ts IS NULL \
                    OR after_ts < timestamptz 'epoch' + $2::bigint * interval '1 millisecond')",
        )
        .bind(agent_row)
        .bind(oldest)
        .execute(&mut *conn)
        .await
        .map_err(SinkError::db("closing a gap"))?;
    }
    Ok(recorded)
}

/// Adds the samples inserted per minute to the agent's per-minute count, which
/// "samples received" reads (`pga_agent_samples`) instead of summing every
/// series' rollups.
async fn count_minutes(
    conn: &mut PgConnection,
    agent_row: i64,
    minutes: &BTreeMap<i64, i64>,
) -> Result<(), SinkError> {
    if minutes.is_empty() {
        return Ok(());
    }
    let (at, n): (Vec<i64>, Vec<i64>) = minutes.iter().map(|(&m, &n)| (m, n)).unzip();
    sqlx::query(
        "INSERT INTO agent_samples_1m AS c (agent_id, bucket, samples) \
         SELECT $1, timestamptz 'epoch' + m.at_ms * interval '1 millisecond', m.n \
         FROM unnest($2::bigint[], $3::bigint[]) AS m(at_ms, n) \
         ON CONFLICT (bucket, agent_id) DO UPDATE SET samples = c.samples + EXCLUDED.samples",
    )
    .bind(agent_row)
    .bind(at)
    .bind(n)
    .execute(&mut *conn)
    .await
    .map_err(SinkError::db("counting the agent's samples per minute"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_floored_for_times_before_the_epoch() {
        assert_eq!((-1i64).div_euclid(DAY_MS), -1);
        assert_eq!(0i64.div_euclid(DAY_MS), 0);
        assert_eq!((DAY_MS - 1).div_euclid(DAY_MS), 0);
    }
}
