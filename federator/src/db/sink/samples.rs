//! Writing a batch's samples: never doubled, as fast as a bare `COPY` where possible.
//!
//! Two paths, the same result:
//!
//! * **direct** (the usual case: the batch's blocks cover disjoint time ranges): the
//!   samples the database already holds in the batch's time range for the batch's
//!   series (the head written by the previous pull, a block pulled twice) are read
//!   and left out (the same round trip brings, per series, its stored predecessor and
//!   whether a stored sample follows, so that the rollups of series that only grow
//!   are computed without reading again), and the rest goes by binary `COPY`
//!   straight into `samples`, inside
//!   a savepoint. Nobody else writes these series meanwhile (the agent's row is
//!   locked for the transaction), so the `COPY` cannot meet a duplicate; should it
//!   anyway, the savepoint is rolled back and the staged path runs instead.
//! * **staged**: binary `COPY` into the session's `pga_stage`, then `INSERT … SELECT
//!   … ON CONFLICT DO NOTHING` into `samples`.
//!
//! The series and time ranges really inserted end up in `pga_touched` (the direct
//! path puts them there only when rollups must be recomputed in SQL), from which
//! the rollups are recomputed.

use std::collections::{BTreeMap, HashMap, HashSet};

use pga_format::DecodedBlock;
use sqlx::PgConnection;

use super::SinkError;
use super::copy::SampleCopy;
use super::tails::{Tail, Tails};

/// The session's staging tables, emptied by every commit or rollback; and settings
/// for the transaction: no JIT (compiling costs more than these queries), and room to
/// sort a batch in memory.
const STAGING: &str = "\
SET LOCAL client_min_messages = warning;
SET LOCAL jit = off;
SET LOCAL work_mem = '64MB';
CREATE TEMP TABLE IF NOT EXISTS pga_stage (
    series_id bigint NOT NULL, ts timestamptz NOT NULL, value double precision NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS pga_touched (
    series_id bigint NOT NULL, n bigint NOT NULL,
    first_ts timestamptz NOT NULL, last_ts timestamptz NOT NULL,
    lo timestamptz, hi timestamptz
) ON COMMIT DELETE ROWS;";

/// Moves the staged samples that are new into `samples`, lists them in
/// `pga_touched` and returns how many went into each minute `(minute_ms, n)`.
const MOVE_STAGED: &str = "\
WITH ins AS (
    INSERT INTO samples (series_id, ts, value)
    SELECT series_id, ts, value FROM pga_stage
    ON CONFLICT (series_id, ts) DO NOTHING
    RETURNING series_id, ts),
touched AS (
    INSERT INTO pga_touched (series_id, n, first_ts, last_ts)
    SELECT series_id, count(*), min(ts), max(ts) FROM ins GROUP BY series_id)
SELECT (extract(epoch FROM date_bin('1 minute', ts, timestamptz 'epoch')) * 1000)::bigint,
       count(*)::bigint
FROM ins GROUP BY 1";

/// In one round trip: the samples already stored for the series `$1` in the batch's
/// range `[$2, $3]` (ms; `ts` set, with their values), and for each series of `$4`
/// (those whose tail the sink does not remember) one row (`ts` NULL) telling whether
/// it is a counter, the time and value of its stored sample before the range and
/// whether a stored sample follows the range — what [`super::rollup`] needs to
/// compute the rollups of a fresh series without reading again.
const EXISTING: &str = "\
SELECT s.series_id, (extract(epoch FROM s.ts) * 1000)::bigint, s.value,
       NULL::boolean, NULL::boolean, NULL::bigint
FROM samples s
WHERE s.series_id = ANY($1)
  AND s.ts >= timestamptz 'epoch' + $2::bigint * interval '1 millisecond'
  AND s.ts <= timestamptz 'epoch' + $3::bigint * interval '1 millisecond'
UNION ALL
SELECT i.id, NULL::bigint, p.value, se.kind = 'counter', nx.ts IS NOT NULL,
       (extract(epoch FROM p.ts) * 1000)::bigint
FROM unnest($4::bigint[]) AS i(id)
JOIN series se ON se.id = i.id
LEFT JOIN LATERAL (
    SELECT s.ts, s.value FROM samples s
    WHERE s.series_id = i.id
      AND s.ts < timestamptz 'epoch' + $2::bigint * interval '1 millisecond'
    ORDER BY s.ts DESC LIMIT 1) p ON true
LEFT JOIN LATERAL (
    SELECT s.ts FROM samples s
    WHERE s.series_id = i.id
      AND s.ts > timestamptz 'epoch' + $3::bigint * interval '1 millisecond'
    ORDER BY s.ts LIMIT 1) nx ON true";

const TOUCHED: &str = "\
INSERT INTO pga_touched (series_id, n, first_ts, last_ts)
SELECT t.id, t.n, timestamptz 'epoch' + t.first_ms * interval '1 millisecond',
       timestamptz 'epoch' + t.last_ms * interval '1 millisecond'
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS t(id, n, first_ms, last_ms)";

/// The samples of a batch, by global series id.
pub(crate) struct Samples<'a> {
    pub blocks: Vec<&'a DecodedBlock>,
    pub mapping: &'a HashMap<u64, i64>,
    /// Samples older than this (ms) are not stored.
    pub cutoff_ms: i64,
    /// Samples newer than this (ms) are not stored.
    pub future_ms: i64,
}

/// What [`write`] did; `pga_touched` lists the inserted ranges per series.
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// Samples not expired, offered to the database.
    pub offered: u64,
    pub inserted: u64,
    /// The samples inserted per minute of their time, `minute_ms → n`: what the
    /// agent's per-minute count (`agent_samples_1m`) grows by.
    pub minutes: BTreeMap<i64, i64>,
    /// The series whose rollups can be computed from the batch alone (direct path
    /// only), see [`Fresh`].
    pub fresh: HashMap<i64, Fresh>,
    /// The direct path's inserted ranges per series, `[id, n, first_ms, last_ms]`,
    /// not yet in `pga_touched` ([`list_touched`] puts them there when SQL needs
    /// them); `None` after the staged path, which filled `pga_touched`.
    pub ranges: Option<Vec<[i64; 4]>>,
    /// The series whose `first_seen`/`last_seen` must move, `(id, first_ms,
    /// last_ms)` (direct path).
    pub seen: Vec<(i64, i64, i64)>,
    /// The agent's tails once this write commits; `None` when they are not known
    /// (staged path), so that the next ingest reads them.
    pub tails: Option<Tails>,
}

/// A series whose new 1-minute rows follow from its new samples and its stored
/// predecessor alone ([`super::rollup`]): every new sample is newer than every
/// stored one, and either no sample is stored from the start of the minute of its
/// oldest new sample onwards, or the newest stored one is known (`tail_ms`) and the
/// first new minute continues that sample's minute.
#[derive(Debug, Default)]
pub(crate) struct Fresh {
    pub counter: bool,
    /// The time (ms) and value of the newest sample stored before the new ones.
    pub prev: Option<(i64, f64)>,
    /// The time of the newest stored sample (ms), when the sink remembers it: a new
    /// sample in its minute is added to that minute's row.
    pub tail_ms: Option<i64>,
    /// The new samples, ascending.
    pub samples: Vec<(i64, f64)>,
}

impl Samples<'_> {
    /// Every column (one series in one block): its global id and its samples kept,
    /// `(ts_ms, value)`.
    fn columns(&self) -> impl Iterator<Item = (i64, impl Iterator<Item = (i64, f64)> + '_)> + '_ {
        self.blocks.iter().flat_map(move |block| {
            block.columns.iter().map(move |col| {
                let samples = col
                    .timestamps(block)
                    .zip(col.values.iter().copied())
                    .filter(move |(ts, _)| (self.cutoff_ms..=self.future_ms).contains(ts));
                (self.mapping[&col.series.0], samples)
            })
        })
    }

    /// Every sample kept: `(global id, ts_ms, value)`.
    fn each(&self) -> impl Iterator<Item = (i64, i64, f64)> + '_ {
        self.columns()
            .flat_map(|(id, samples)| samples.map(move |(ts, v)| (id, ts, v)))
    }

    /// Whether no two blocks overlap in time (then no sample repeats in the batch).
    fn disjoint(&self) -> bool {
        let mut ranges: Vec<(i64, i64)> = self
            .blocks
            .iter()
            .filter(|b| b.sample_count() > 0)
            .map(|b| {
                let lo = b.timestamps.first().copied().unwrap_or(0);
                let hi = b.timestamps.last().copied().unwrap_or(0);
                (lo, hi)
            })
            .collect();
        ranges.sort_unstable();
        ranges.windows(2).all(|w| w[0].1 < w[1].0)
    }
}

pub(crate) async fn write(
    conn: &mut PgConnection,
    samples: &Samples<'_>,
    tails: Tails,
) -> Result<Written, SinkError> {
    sqlx::Executor::execute(&mut *conn, STAGING)
        .await
        .map_err(SinkError::db("preparing the staging tables"))?;
    let mut written = Written::default();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    // Each series' oldest sample in the batch.
    let mut oldest: HashMap<i64, i64> = HashMap::new();
    for (id, column) in samples.columns() {
        for (ts, _) in column {
            written.offered += 1;
            lo = lo.min(ts);
            hi = hi.max(ts);
            let o = oldest.entry(id).or_insert(ts);
            *o = (*o).min(ts);
        }
    }
    if written.offered == 0 {
        written.tails = Some(tails);
        return Ok(written);
    }
    if samples.disjoint()
        && let Some(direct) = write_direct(conn, samples, oldest, tails, lo, hi).await?
    {
        written.inserted = direct.inserted;
        written.minutes = direct.minutes;
        written.fresh = direct.fresh;
        written.ranges = Some(direct.ranges);
        written.seen = direct.seen;
        written.tails = Some(direct.tails);
        return Ok(written);
    }
    written.minutes = write_staged(conn, samples, written.offered).await?;
    written.inserted = written.minutes.values().sum::<i64>() as u64;
    Ok(written)
}

/// What the direct path did.
struct Direct {
    inserted: u64,
    minutes: BTreeMap<i64, i64>,
    fresh: HashMap<i64, Fresh>,
    ranges: Vec<[i64; 4]>,
    seen: Vec<(i64, i64, i64)>,
    tails: Tails,
}

/// The direct path; `None` when the savepoint had to be rolled back.
///
/// A series whose tail the sink remembers and whose samples are all newer than it
/// needs no reading. The others (the head written by the previous pull, a block
/// pulled twice, a series not seen since the federator started) are read in one
/// round trip.
async fn write_direct(
    conn: &mut PgConnection,
    samples: &Samples<'_>,
    oldest: HashMap<i64, i64>,
    mut tails: Tails,
    lo: i64,
    hi: i64,
) -> Result<Option<Direct>, SinkError> {
    let mut read = Vec::new();
    let mut unknown = Vec::new();
    for (&id, &first) in &oldest {
        match tails.get(&id) {
            Some(t) if t.ts < first => {}
            Some(_) => read.push(id),
            None => {
                read.push(id);
                unknown.push(id);
            }
        }
    }
    // From the start of the minute: a stored sample there makes the series not fresh.
    let lo = lo - lo.rem_euclid(60_000);
    let mut stored: HashSet<(i64, i64)> = HashSet::new();
    // Per series read: its newest stored sample in the range.
    let mut newest_stored: HashMap<i64, (i64, f64)> = HashMap::new();
    // Per unknown series: counter, the stored predecessor `(ts, value)`, whether a
    // sample follows.
    type Around = (bool, Option<(i64, f64)>, bool);
    let mut around: HashMap<i64, Around> = HashMap::new();
    if !read.is_empty() {
        type Row = (
            i64,
            Option<i64>,
            Option<f64>,
            Option<bool>,
            Option<bool>,
            Option<i64>,
        );
        let rows: Vec<Row> = sqlx::query_as(EXISTING)
            .bind(&read)
            .bind(lo)
            .bind(hi)
            .bind(&unknown)
            .fetch_all(&mut *conn)
            .await
            .map_err(SinkError::db("reading samples already stored"))?;
        for (id, ts, value, counter, has_next, prev_ts) in rows {
            match ts {
                Some(ts) => {
                    stored.insert((id, ts));
                    let v = value.unwrap_or(f64::NAN);
                    let n = newest_stored.entry(id).or_insert((ts, v));
                    if ts > n.0 {
                        *n = (ts, v);
                    }
                }
                None => {
                    let prev = prev_ts.map(|t| (t, value.unwrap_or(f64::NAN)));
                    around.insert(
                        id,
                        (counter.unwrap_or(false), prev, has_next.unwrap_or(true)),
                    );
                }
            }
        }
    }
    let mut touched: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    let mut new: HashMap<i64, Vec<(i64, f64)>> = HashMap::new();
    for (id, column) in samples.columns() {
        let check = newest_stored.contains_key(&id);
        let mut range: Option<(i64, i64, i64)> = None;
        let kept = new.entry(id).or_default();
        for (ts, value) in column {
            if check && stored.contains(&(id, ts)) {
                continue;
            }
            kept.push((ts, value));
            let r = range.get_or_insert((0, ts, ts));
            r.0 += 1;
            r.1 = r.1.min(ts);
            r.2 = r.2.max(ts);
        }
        if let Some((n, first, last)) = range {
            let t = touched.entry(id).or_insert((0, first, last));
            t.0 += n;
            t.1 = t.1.min(first);
            t.2 = t.2.max(last);
        }
    }
    // Sent series by series, each in time order, whatever the blocks were: every
    // series' index entries go in as one run.
    let mut new: Vec<(i64, Vec<(i64, f64)>)> = new.into_iter().collect();
    new.sort_unstable_by_key(|&(id, _)| id);
    let mut copy = SampleCopy::with_capacity(touched.values().map(|t| t.0 as usize).sum());
    let mut minutes: BTreeMap<i64, i64> = BTreeMap::new();
    for (id, samples) in &mut new {
        samples.sort_unstable_by_key(|&(ts, _)| ts);
        for &(ts, value) in samples.iter() {
            copy.push(*id, ts, value);
            *minutes.entry(ts - ts.rem_euclid(60_000)).or_default() += 1;
        }
    }
    // Rollup shortcuts, `first_seen`/`last_seen` updates and the tails after this
    // write.
    let mut fresh: HashMap<i64, Fresh> = HashMap::new();
    let mut seen: Vec<(i64, i64, i64)> = Vec::new();
    for (id, samples) in new {
        let newest_new = samples.last().copied();
        let (candidate, tail) = match (tails.get(&id), around.get(&id)) {
            (Some(&t), _) => {
                let newer = samples.first().is_none_or(|&(ts, _)| ts > t.ts);
                let candidate = newer.then(|| Fresh {
                    counter: t.counter,
                    prev: Some((t.ts, t.value)),
                    tail_ms: Some(t.ts),
                    samples: Vec::new(),
                });
                (candidate, Some(t))
            }
            (None, Some(&(counter, prev, has_next))) => {
                let clean = !has_next && !newest_stored.contains_key(&id);
                let candidate = clean.then_some(Fresh {
                    counter,
                    prev,
                    tail_ms: None,
                    samples: Vec::new(),
                });
                // Unknown when a stored sample follows the batch.
                let tail = (!has_next).then(|| {
                    let (ts, value) = newest_stored
                        .get(&id)
                        .copied()
                        .unwrap_or((i64::MIN, f64::NAN));
                    Tail {
                        ts,
                        value,
                        counter,
                        seen_ms: i64::MIN,
                    }
                });
                (candidate, tail)
            }
            // Not read and not remembered cannot happen; leave it to SQL.
            (None, None) => (None, None),
        };
        // `first_seen`/`last_seen`: samples newer than a remembered tail cannot move
        // first_seen, and last_seen moves only when it falls an hour behind.
        let seen_ms = match touched.get(&id) {
            Some(&(_, first, last)) => {
                let (known, after_tail) = tails
                    .get(&id)
                    .map_or((i64::MIN, false), |t| (t.seen_ms, first > t.ts));
                if known == i64::MIN || !after_tail || last > known.saturating_add(3_600_000) {
                    seen.push((id, first, last));
                    known.max(last)
                } else {
                    known
                }
            }
            None => tails.get(&id).map_or(i64::MIN, |t| t.seen_ms),
        };
        match tail {
            Some(mut t) => {
                t.seen_ms = seen_ms;
                if let Some((ts, value)) = newest_new
                    && ts > t.ts
                {
                    t.ts = ts;
                    t.value = value;
                }
                if t.ts == i64::MIN {
                    tails.remove(&id);
                } else {
                    tails.insert(id, t);
                }
            }
            None => {
                tails.remove(&id);
            }
        }
        if let Some(mut f) = candidate
            && !samples.is_empty()
        {
            f.samples = samples;
            fresh.insert(id, f);
        }
    }
    let rows = copy.rows() as u64;
    if rows == 0 {
        return Ok(Some(Direct {
            inserted: 0,
            minutes: BTreeMap::new(),
            fresh: HashMap::new(),
            ranges: Vec::new(),
            seen: Vec::new(),
            tails,
        }));
    }
    sqlx::Executor::execute(&mut *conn, "SAVEPOINT pga_direct")
        .await
        .map_err(SinkError::db("starting the sample copy"))?;
    let copied = async {
        let mut copy_in = conn
            .copy_in_raw("COPY samples (series_id, ts, value) FROM STDIN (FORMAT binary)")
            .await?;
        copy_in.send(copy.finish()).await?;
        copy_in.finish().await
    }
    .await;
    match copied {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
            tracing::debug!(error = %e, "direct sample copy met a duplicate; staging instead");
            sqlx::Executor::execute(&mut *conn, "ROLLBACK TO SAVEPOINT pga_direct")
                .await
                .map_err(SinkError::db("rolling back the sample copy"))?;
            return Ok(None);
        }
        Err(e) => return Err(SinkError::db("copying samples")(e)),
    }
    sqlx::Executor::execute(&mut *conn, "RELEASE SAVEPOINT pga_direct")
        .await
        .map_err(SinkError::db("finishing the sample copy"))?;
    Ok(Some(Direct {
        inserted: rows,
        minutes,
        fresh,
        ranges: touched
            .into_iter()
            .map(|(id, (n, first, last))| [id, n, first, last])
            .collect(),
        seen,
        tails,
    }))
}

/// Lists the direct path's inserted ranges in `pga_touched`.
pub(crate) async fn list_touched(
    conn: &mut PgConnection,
    ranges: &[[i64; 4]],
) -> Result<(), SinkError> {
    let col = |i: usize| ranges.iter().map(|r| r[i]).collect::<Vec<i64>>();
    sqlx::query(TOUCHED)
        .bind(col(0))
        .bind(col(1))
        .bind(col(2))
        .bind(col(3))
        .execute(&mut *conn)
        .await
        .map_err(SinkError::db("listing the inserted ranges"))?;
    Ok(())
}

/// The staged path: returns how many samples were new in each minute.
async fn write_staged(
    conn: &mut PgConnection,
    samples: &Samples<'_>,
    offered: u64,
) -> Result<BTreeMap<i64, i64>, SinkError> {
    let mut copy = SampleCopy::with_capacity(offered as usize);
    for (id, ts, value) in samples.each() {
        copy.push(id, ts, value);
    }
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
    let minutes: Vec<(i64, i64)> = sqlx::query_as(MOVE_STAGED)
        .fetch_all(&mut *conn)
        .await
        .map_err(SinkError::db("moving staged samples into samples"))?;
    Ok(minutes.into_iter().collect())
}
