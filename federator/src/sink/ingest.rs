//! One batch, one transaction.
//!
//! Order of work inside the transaction:
//! 1. the agent's row (created on first sight; its identity updated), which also
//!    locks it, so two writers of one agent queue up;
//! 2. the batch's dictionary entries to global series ids;
//! 3. the partitions the batch's days need (plain PostgreSQL);
//! 4. every sample (sealed blocks and head) by binary `COPY` into the session's
//!    staging table `pga_stage`, then `INSERT … SELECT … ON CONFLICT DO NOTHING`
//!    into `samples`: a sample already stored (the head's overlap, a block delivered
//!    twice) is dropped, never doubled; the series and time ranges really inserted
//!    go to `pga_touched`;
//! 5. the rollups of the touched buckets ([`super::rollup`]);
//! 6. log events of the sealed blocks (the head's come again once it is sealed);
//! 7. the gap, if any, and the cursor.
//!
//! The series cache learns the batch's new mappings only after the commit.

use std::collections::{BTreeSet, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use pga_format::DecodedBlock;
use sqlx::PgConnection;

use super::copy::SampleCopy;
use super::{IngestReport, Sink, SinkError, rollup, series, uuid_text};
use crate::batch::Batch;

const DAY_MS: i64 = 86_400_000;

/// The session's staging tables; emptied by every commit or rollback.
const STAGING: &str = "\
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS pga_stage (
    series_id bigint NOT NULL, ts timestamptz NOT NULL, value double precision NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS pga_touched (
    series_id bigint NOT NULL, n bigint NOT NULL,
    first_ts timestamptz NOT NULL, last_ts timestamptz NOT NULL,
    lo timestamptz, hi timestamptz
) ON COMMIT DELETE ROWS;";

const MOVE_STAGED: &str = "\
WITH ins AS (
    INSERT INTO samples (series_id, ts, value)
    SELECT series_id, ts, value FROM pga_stage
    ON CONFLICT (series_id, ts) DO NOTHING
    RETURNING series_id, ts)
INSERT INTO pga_touched (series_id, n, first_ts, last_ts)
SELECT series_id, count(*), min(ts), max(ts) FROM ins GROUP BY series_id";

/// first_seen always; last_seen when it moves by more than five minutes.
const SEEN: &str = "\
UPDATE series se
SET first_seen = least(se.first_seen, t.first_ts), last_seen = greatest(se.last_seen, t.last_ts)
FROM pga_touched t
WHERE se.id = t.series_id
  AND (se.first_seen IS NULL OR t.first_ts < se.first_seen
       OR t.last_ts > se.last_seen + interval '5 minutes')";

pub(crate) async fn ingest(sink: &Sink, batch: &Batch) -> Result<IngestReport, SinkError> {
    validate(batch)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let raw_cutoff_ms = now_ms.saturating_sub(sink.options.retention.raw.as_millis() as i64);
    let log_cutoff_ms = now_ms.saturating_sub(sink.options.retention.log_events.as_millis() as i64);

    let mut tx = sink
        .pool
        .begin()
        .await
        .map_err(SinkError::db("starting the ingest transaction"))?;
    let conn: &mut PgConnection = &mut tx;
    let uid = uuid_text(&batch.agent_id);

    let (agent_row,): (i64,) = sqlx::query_as(
        "INSERT INTO agents (name, agent_uid, last_seen_at) VALUES ($1, $2::uuid, now()) \
         ON CONFLICT (name) DO UPDATE \
             SET agent_uid = EXCLUDED.agent_uid, last_seen_at = EXCLUDED.last_seen_at \
         RETURNING id",
    )
    .bind(&batch.agent)
    .bind(&uid)
    .fetch_one(&mut *conn)
    .await
    .map_err(SinkError::db("writing the agent"))?;

    // Dictionary: new entries, then whatever the blocks use that the cache lacks.
    let mut mapping = series::upsert(conn, agent_row, batch.agent_id, &batch.series).await?;
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
    let mut copy = SampleCopy::with_capacity(received as usize);
    let mut days = BTreeSet::new();
    let mut expired = 0u64;
    for block in data_blocks(batch) {
        for col in &block.columns {
            let global = mapping[&col.series.0];
            for (ts, &value) in col.timestamps(block).zip(&col.values) {
                if ts < raw_cutoff_ms {
                    expired += 1;
                    continue;
                }
                days.insert(ts.div_euclid(DAY_MS));
                copy.push(global, ts, value);
            }
        }
    }
    for block in &batch.blocks {
        for event in &block.log_events {
            if event.timestamp_ms >= log_cutoff_ms {
                days.insert(event.timestamp_ms.div_euclid(DAY_MS));
            }
        }
    }
    ensure_partitions(conn, &days).await?;

    let staged = copy.rows() as u64;
    let mut inserted = 0;
    let (mut rollups_1m, mut rollups_1h) = (0, 0);
    // A plain `&str` runs through the simple query protocol (several statements,
    // like `raw_sql`), and keeps the ingest future `Send`: rustc cannot prove that
    // through `raw_sql(..).execute`'s higher-ranked `Executor` bound.
    sqlx::Executor::execute(&mut *conn, STAGING)
        .await
        .map_err(SinkError::db("preparing the staging tables"))?;
    if staged > 0 {
        let mut copy_in = conn
            .copy_in_raw("COPY pga_stage (series_id, ts, value) FROM STDIN (FORMAT binary)")
            .await
            .map_err(SinkError::db("starting COPY into the staging table"))?;
        copy_in
            .send(copy.finish())
            .await
            .map_err(SinkError::db("sending samples"))?;
        copy_in
            .finish()
            .await
            .map_err(SinkError::db("copying samples into the staging table"))?;
        sqlx::query(MOVE_STAGED)
            .execute(&mut *conn)
            .await
            .map_err(SinkError::db("moving staged samples into samples"))?;
        let (n,): (i64,) = sqlx::query_as("SELECT coalesce(sum(n), 0)::bigint FROM pga_touched")
            .fetch_one(&mut *conn)
            .await
            .map_err(SinkError::db("counting inserted samples"))?;
        inserted = n as u64;
        if inserted > 0 {
            sqlx::query(SEEN)
                .execute(&mut *conn)
                .await
                .map_err(SinkError::db("updating series first/last seen"))?;
            (rollups_1m, rollups_1h) = rollup::recompute(conn).await?;
        }
    }

    let log_events_inserted = write_log_events(conn, agent_row, batch, log_cutoff_ms).await?;
    let gap_recorded = write_gap(conn, agent_row, &uid, batch).await?;

    sqlx::query(
        "INSERT INTO agent_cursors (agent_id, agent_uid, last_sequence, last_ts_ms, series_count) \
         VALUES ($1, $2::uuid, $3, $4, $5) \
         ON CONFLICT (agent_id) DO UPDATE SET agent_uid = EXCLUDED.agent_uid, \
             last_sequence = EXCLUDED.last_sequence, last_ts_ms = EXCLUDED.last_ts_ms, \
             series_count = EXCLUDED.series_count",
    )
    .bind(agent_row)
    .bind(&uid)
    .bind(batch.cursor.last_sequence.map(|s| s as i64))
    .bind(batch.cursor.last_ts_ms)
    .bind(batch.cursor.series_count as i64)
    .execute(&mut *conn)
    .await
    .map_err(SinkError::db("advancing the agent's cursor"))?;

    tx.commit()
        .await
        .map_err(SinkError::db("committing the ingest transaction"))?;

    let mut learned = learned;
    learned.extend(found);
    sink.series_cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .extend(batch.agent_id, &learned);

    Ok(IngestReport {
        series_mapped: batch.series.len(),
        samples_received: received,
        samples_inserted: inserted,
        samples_duplicate: staged - inserted,
        samples_expired: expired,
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

/// Creates the partitions of `days` (days since the Unix epoch) that are missing.
async fn ensure_partitions(conn: &mut PgConnection, days: &BTreeSet<i64>) -> Result<(), SinkError> {
    if days.is_empty() {
        return Ok(());
    }
    let days: Vec<i64> = days.iter().copied().collect();
    sqlx::query(
        "SELECT pga_ensure_partitions(ARRAY( \
             SELECT timestamptz 'epoch' + d * interval '1 day' FROM unnest($1::bigint[]) AS d))",
    )
    .bind(&days)
    .execute(&mut *conn)
    .await
    .map_err(SinkError::db("creating partitions"))?;
    Ok(())
}

async fn write_log_events(
    conn: &mut PgConnection,
    agent_row: i64,
    batch: &Batch,
    cutoff_ms: i64,
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
            if e.timestamp_ms < cutoff_ms {
                continue;
            }
            ts.push(e.timestamp_ms);
            seq.push(block.header.sequence as i64);
            index.push(i as i32);
            severity.push(e.severity.as_str());
            kind.push(e.kind.as_str());
            sqlstate.push(e.sqlstate.map(|c| String::from_utf8_lossy(&c).into_owned()));
            pid.push(e.pid.map(i64::from));
            instance.push(e.instance.as_deref());
            user.push(e.user.as_deref());
            database.push(e.database.as_deref());
            application.push(e.application.as_deref());
            message.push(e.message.as_str());
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

async fn write_gap(
    conn: &mut PgConnection,
    agent_row: i64,
    uid: &str,
    batch: &Batch,
) -> Result<bool, SinkError> {
    let Some(gap) = &batch.gap else {
        return Ok(false);
    };
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
    .bind(gap.after_ts_ms)
    .bind(gap.before_ts_ms)
    .execute(&mut *conn)
    .await
    .map_err(SinkError::db("recording the gap"))?;
    Ok(done.rows_affected() > 0)
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
