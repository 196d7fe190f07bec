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
//!
//! **Packed** (plain PostgreSQL, `database.packed_samples`, migration 0080): the
//! direct path writes each series of a sealed block as one `samples_packed` row,
//! its timestamps shared with the block's other series through `sample_times`,
//! instead of a row per sample. The head's rows that the sealed block covers (the
//! previous pulls wrote them) move into that packed row and are deleted in the same
//! transaction, so a sample is stored once, in one form. Samples stored packed are
//! read back (in Rust, checked) and left out like stored rows. A packed row that is
//! damaged (changed by hand: lengths that differ, times out of order) is never
//! merged into: that series' samples of the batch are not written, and counted in
//! [`Written::damaged`]; the agent's other series go on. The staged path writes rows
//! only; the pack job packs them later.

use std::collections::{BTreeMap, HashMap, HashSet};

use pga_format::DecodedBlock;
use sqlx::PgConnection;

use super::SinkError;
use super::copy::{PackedCopy, SampleCopy, TimesCopy};
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

/// In one round trip: the samples already stored as rows for the series `$1` in the
/// batch's range `[$2, $3]` (ms; `ts` set, with their values; [`PACKED_EXISTING`]
/// reads the packed ones), and for each series of `$4`
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
LEFT JOIN LATERAL pga_raw_before(
    i.id, timestamptz 'epoch' + $2::bigint * interval '1 millisecond', true) p ON true
LEFT JOIN LATERAL pga_raw_after(
    i.id, timestamptz 'epoch' + $3::bigint * interval '1 millisecond', true) nx ON true";

/// The packed rows of the series `$1` that may hold samples in `[$2, $3]` (ms): their
/// window (`lo`, `hi`, ms), timestamps (NULL when the `sample_times` row is missing)
/// and values, to be checked and unpacked by [`unpack`].
const PACKED_EXISTING: &str = "\
SELECT p.series_id, (extract(epoch FROM p.lo) * 1000)::bigint,
       (extract(epoch FROM p.hi) * 1000)::bigint, t.offsets, p.vals
FROM samples_packed p
LEFT JOIN sample_times t ON t.id = p.times_id AND t.lo = p.lo
WHERE p.series_id = ANY($1)
  AND p.lo <= timestamptz 'epoch' + $3::bigint * interval '1 millisecond'
  AND p.lo > timestamptz 'epoch' + $2::bigint * interval '1 millisecond' - interval '1 hour'
  AND p.hi >= timestamptz 'epoch' + $2::bigint * interval '1 millisecond'";

/// Deletes the head's rows that packed rows replace: per series `$1`, its rows in
/// `[$2, $3]` (ms).
const DELETE_REPLACED: &str = "\
DELETE FROM samples s
USING unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS d(id, lo, hi)
WHERE s.series_id = d.id
  AND s.ts >= timestamptz 'epoch' + d.lo * interval '1 millisecond'
  AND s.ts <= timestamptz 'epoch' + d.hi * interval '1 millisecond'";

/// A packed window spans less than this (migration 0080: the readers rely on it).
pub(crate) const MAX_WINDOW_MS: i64 = 3_600_000;

const TOUCHED: &str = "\
INSERT INTO pga_touched (series_id, n, first_ts, last_ts)
SELECT t.id, t.n, timestamptz 'epoch' + t.first_ms * interval '1 millisecond',
       timestamptz 'epoch' + t.last_ms * interval '1 millisecond'
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS t(id, n, first_ms, last_ms)";

/// The samples of a batch, by global series id.
pub(crate) struct Samples<'a> {
    pub blocks: Vec<&'a DecodedBlock>,
    /// How many of `blocks`, from the first, are sealed; the rest is the head.
    pub sealed: usize,
    /// Write sealed blocks packed ([`super::Sink::packs`]).
    pub packed: bool,
    /// The agent's `agents.id` (`sample_times.agent_id`).
    pub agent_id: i64,
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
    /// Samples not written because their series has a damaged packed row where they
    /// would go (see the module docs).
    pub damaged: u64,
    /// Packed rows written (sealed blocks' series, with the head rows they replace).
    pub packed_rows: u64,
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
        self.indexed_columns().map(|(_, id, samples)| (id, samples))
    }

    /// [`Samples::columns`] with the index of each column's block.
    fn indexed_columns(
        &self,
    ) -> impl Iterator<Item = (usize, i64, impl Iterator<Item = (i64, f64)> + '_)> + '_ {
        self.blocks.iter().enumerate().flat_map(move |(b, block)| {
            block.columns.iter().map(move |col| {
                let samples = col
                    .timestamps(block)
                    .zip(col.values.iter().copied())
                    .filter(move |(ts, _)| (self.cutoff_ms..=self.future_ms).contains(ts));
                (b, self.mapping[&col.series.0], samples)
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
        // A column's samples are in time order: its first is its oldest.
        let mut range: Option<(i64, i64)> = None;
        for (ts, _) in column {
            written.offered += 1;
            let r = range.get_or_insert((ts, ts));
            r.0 = r.0.min(ts);
            r.1 = r.1.max(ts);
        }
        if let Some((first, last)) = range {
            lo = lo.min(first);
            hi = hi.max(last);
            let o = oldest.entry(id).or_insert(first);
            *o = (*o).min(first);
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
        written.damaged = direct.damaged;
        written.packed_rows = direct.packed_rows;
        written.minutes = direct.minutes;
        written.fresh = direct.fresh;
        written.ranges = Some(direct.ranges);
        written.seen = direct.seen;
        written.tails = Some(direct.tails);
        return Ok(written);
    }
    let (minutes, damaged) = write_staged(conn, samples, written.offered, lo, hi).await?;
    written.minutes = minutes;
    written.damaged = damaged;
    written.inserted = written.minutes.values().sum::<i64>() as u64;
    Ok(written)
}

/// What the direct path did.
struct Direct {
    inserted: u64,
    damaged: u64,
    packed_rows: u64,
    minutes: BTreeMap<i64, i64>,
    fresh: HashMap<i64, Fresh>,
    ranges: Vec<[i64; 4]>,
    seen: Vec<(i64, i64, i64)>,
    tails: Tails,
}

/// The samples of one packed row, `(ts_ms, value)` ascending, or what is wrong with
/// it: the checks of `pga_packed_values` (migration 0080).
pub(crate) fn unpack(
    lo: i64,
    hi: i64,
    offsets: Option<&[i32]>,
    vals: &[f64],
) -> Result<Vec<(i64, f64)>, &'static str> {
    let Some(offsets) = offsets else {
        return Err("its timestamps (sample_times row) are missing");
    };
    if offsets.first() != Some(&0) || offsets.last().map(|&o| lo + i64::from(o)) != Some(hi) {
        return Err("the timestamps do not run from lo to hi");
    }
    if offsets.windows(2).any(|w| w[0] >= w[1]) {
        return Err("the timestamps are not in ascending order");
    }
    let one = vals.len() == 1;
    if !one && vals.len() != offsets.len() {
        return Err("it holds a different number of values and timestamps");
    }
    Ok(offsets
        .iter()
        .enumerate()
        .map(|(i, &o)| (lo + i64::from(o), if one { vals[0] } else { vals[i] }))
        .collect())
}

/// What the database holds of some series in a time range.
#[derive(Default)]
struct Stored {
    /// Every stored sample `(series, ts)`: its value and whether it is packed.
    samples: HashMap<(i64, i64), (f64, bool)>,
    /// Per series, the samples stored as rows, ascending.
    rows: HashMap<i64, Vec<(i64, f64)>>,
    /// Series with a damaged packed row in the range.
    damaged: HashSet<i64>,
}

/// Reads the packed samples of the series `ids` in `[lo, hi]` into `stored`.
async fn read_packed(
    conn: &mut PgConnection,
    ids: &[i64],
    lo: i64,
    hi: i64,
    stored: &mut Stored,
) -> Result<(), SinkError> {
    type Row = (i64, i64, i64, Option<Vec<Option<i32>>>, Vec<Option<f64>>);
    let rows: Vec<Row> = sqlx::query_as(PACKED_EXISTING)
        .bind(ids)
        .bind(lo)
        .bind(hi)
        .fetch_all(&mut *conn)
        .await
        .map_err(SinkError::db("reading packed samples already stored"))?;
    for (id, wlo, whi, offsets, vals) in rows {
        // A NULL element is damage too.
        let offsets: Option<Vec<i32>> = offsets.and_then(|o| o.into_iter().collect());
        let vals: Option<Vec<f64>> = vals.into_iter().collect();
        let checked = match vals {
            Some(vals) => unpack(wlo, whi, offsets.as_deref(), &vals),
            None => Err("a value is NULL"),
        };
        match checked {
            Ok(unpacked) => {
                for (ts, v) in unpacked {
                    stored.samples.insert((id, ts), (v, true));
                }
            }
            Err(why) => {
                tracing::error!(
                    series_id = id,
                    window_start_ms = wlo,
                    "the packed samples of series {id} in the window starting at {wlo} ms are \
                     damaged: {why}; this series' new samples there are not written (delete or \
                     restore the samples_packed row to let them in)"
                );
                stored.damaged.insert(id);
            }
        }
    }
    Ok(())
}

/// A sealed block's series, to be written packed: `(block, series, samples)`.
type PackedSeries = (usize, i64, Vec<(i64, f64)>);

/// The direct path; `None` when the savepoint had to be rolled back.
///
/// A series whose tail the sink remembers and whose samples are all newer than it
/// needs no reading. The others (the head written by the previous pull, a block
/// pulled twice, a series not seen since the federator started) are read in one
/// round trip (two when packed rows may hold some).
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
    let mut stored = Stored::default();
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
                    let v = value.unwrap_or(f64::NAN);
                    stored.samples.insert((id, ts), (v, false));
                    stored.rows.entry(id).or_default().push((ts, v));
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
        read_packed(conn, &read, lo, hi, &mut stored).await?;
        for rows in stored.rows.values_mut() {
            rows.sort_unstable_by_key(|&(ts, _)| ts);
        }
        for (&(id, ts), &(v, _)) in &stored.samples {
            let n = newest_stored.entry(id).or_insert((ts, v));
            if ts > n.0 {
                *n = (ts, v);
            }
        }
    }
    let mut touched: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    let mut new: HashMap<i64, Vec<(i64, f64)>> = HashMap::new();
    // The new samples that go in as rows (the head; everything when not packing).
    let mut as_rows: HashMap<i64, Vec<(i64, f64)>> = HashMap::new();
    let mut packed: Vec<PackedSeries> = Vec::new();
    // Per series, the range of head rows its packed rows replace.
    let mut replaced: Vec<(i64, i64, i64)> = Vec::new();
    let mut replaced_rows = 0usize;
    let mut damaged = 0u64;
    for (b, id, column) in samples.indexed_columns() {
        if stored.damaged.contains(&id) {
            damaged += column.count() as u64;
            continue;
        }
        let check = newest_stored.contains_key(&id);
        let mut range: Option<(i64, i64, i64)> = None;
        let kept = new.entry(id).or_default();
        let from = kept.len();
        // The block's samples of this series not stored packed: new or head rows.
        let mut window: Vec<(i64, f64)> = Vec::new();
        for (ts, value) in column {
            if check && let Some(&(_, is_packed)) = stored.samples.get(&(id, ts)) {
                if !is_packed {
                    window.push((ts, value));
                }
                continue;
            }
            window.push((ts, value));
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
        let sealed = samples.packed && b < samples.sealed;
        let (first, last) = match (window.first(), window.last()) {
            (Some(f), Some(l)) => (f.0, l.0),
            _ => continue,
        };
        if sealed && last - first < MAX_WINDOW_MS {
            // Head rows of the series in the window go into the packed row (with the
            // value stored, which wins as it does for rows), and are deleted.
            let rows = stored.rows.get(&id).map_or(&[][..], |r| {
                let a = r.partition_point(|&(ts, _)| ts < first);
                let z = r.partition_point(|&(ts, _)| ts <= last);
                &r[a..z]
            });
            if !rows.is_empty() {
                let own: HashSet<i64> = rows.iter().map(|&(ts, _)| ts).collect();
                window.retain(|(ts, _)| !own.contains(ts));
                window.extend_from_slice(rows);
                window.sort_unstable_by_key(|&(ts, _)| ts);
                replaced.push((id, first, last));
                replaced_rows += rows.len();
            }
            packed.push((b, id, window));
        } else {
            as_rows
                .entry(id)
                .or_default()
                .extend_from_slice(&kept[from..]);
        }
    }
    // Sent series by series, each in time order, whatever the blocks were: every
    // series' index entries go in as one run.
    let mut rows_out: Vec<(i64, Vec<(i64, f64)>)> = as_rows.into_iter().collect();
    rows_out.sort_unstable_by_key(|&(id, _)| id);
    let mut copy = SampleCopy::with_capacity(rows_out.iter().map(|r| r.1.len()).sum());
    for (id, samples) in &mut rows_out {
        samples.sort_unstable_by_key(|&(ts, _)| ts);
        for &(ts, value) in samples.iter() {
            copy.push(*id, ts, value);
        }
    }
    let mut minutes: BTreeMap<i64, i64> = BTreeMap::new();
    let mut new: Vec<(i64, Vec<(i64, f64)>)> = new.into_iter().collect();
    new.sort_unstable_by_key(|&(id, _)| id);
    for (_, samples) in &mut new {
        samples.sort_unstable_by_key(|&(ts, _)| ts);
        // A series' samples in time order: one map update per minute, not per sample.
        let mut run: Option<(i64, i64)> = None;
        for &(ts, _) in samples.iter() {
            let minute = ts - ts.rem_euclid(60_000);
            match &mut run {
                Some((m, n)) if *m == minute => *n += 1,
                _ => {
                    if let Some((m, n)) = run.replace((minute, 1)) {
                        *minutes.entry(m).or_default() += n;
                    }
                }
            }
        }
        if let Some((m, n)) = run {
            *minutes.entry(m).or_default() += n;
        }
    }
    let inserted: u64 = new.iter().map(|(_, s)| s.len() as u64).sum();
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
    let packed_rows = packed.len() as u64;
    if copy.rows() == 0 && packed.is_empty() {
        return Ok(Some(Direct {
            inserted: 0,
            damaged,
            packed_rows: 0,
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
        if copy.rows() > 0 {
            let mut copy_in = conn
                .copy_in_raw("COPY samples (series_id, ts, value) FROM STDIN (FORMAT binary)")
                .await?;
            copy_in.send(copy.finish()).await?;
            copy_in.finish().await?;
        }
        write_packed(conn, samples.agent_id, packed, &replaced, replaced_rows).await
    }
    .await;
    match copied {
        Ok(true) => {}
        Ok(false) => {
            sqlx::Executor::execute(&mut *conn, "ROLLBACK TO SAVEPOINT pga_direct")
                .await
                .map_err(SinkError::db("rolling back the sample copy"))?;
            return Ok(None);
        }
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
        inserted,
        damaged,
        packed_rows,
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

/// Writes the packed rows of sealed blocks (their timestamps shared per block) and
/// deletes the head rows they replace. `Ok(false)` when the rows deleted are not
/// the ones read (then the caller rolls back and stages instead).
async fn write_packed(
    conn: &mut PgConnection,
    agent_id: i64,
    mut packed: Vec<PackedSeries>,
    replaced: &[(i64, i64, i64)],
    replaced_rows: usize,
) -> Result<bool, sqlx::Error> {
    if packed.is_empty() {
        return Ok(true);
    }
    if !replaced.is_empty() {
        let col = |f: fn(&(i64, i64, i64)) -> i64| replaced.iter().map(f).collect::<Vec<i64>>();
        let deleted = sqlx::query(DELETE_REPLACED)
            .bind(col(|r| r.0))
            .bind(col(|r| r.1))
            .bind(col(|r| r.2))
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if deleted as usize != replaced_rows {
            tracing::warn!(
                deleted,
                "the head rows a sealed block replaces were not the ones read; staging instead"
            );
            return Ok(false);
        }
    }
    // One `sample_times` row per distinct timestamp list of a block.
    let mut lists: HashMap<(usize, Vec<i64>), usize> = HashMap::new();
    let mut refs: Vec<usize> = Vec::with_capacity(packed.len());
    for (i, (b, _, window)) in packed.iter().enumerate() {
        // Neighbours in a block mostly share their timestamps: compare with the
        // previous series before hashing.
        if let Some(prev) = i.checked_sub(1)
            && packed[prev].0 == *b
            && packed[prev].2.len() == window.len()
            && packed[prev].2.iter().zip(window).all(|(a, z)| a.0 == z.0)
        {
            refs.push(refs[prev]);
            continue;
        }
        let key = (*b, window.iter().map(|&(ts, _)| ts).collect::<Vec<i64>>());
        let next = lists.len();
        refs.push(*lists.entry(key).or_insert(next));
    }
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT nextval('sample_times_id_seq') FROM generate_series(1, $1)")
            .bind(lists.len() as i64)
            .fetch_all(&mut *conn)
            .await?;
    let mut times = TimesCopy::new();
    let mut by_index: Vec<(usize, Vec<i64>)> =
        lists.into_iter().map(|((_, ts), i)| (i, ts)).collect();
    by_index.sort_unstable_by_key(|&(i, _)| i);
    for (i, ts) in &by_index {
        times.push(ids[*i], agent_id, ts);
    }
    let mut order: Vec<usize> = (0..packed.len()).collect();
    order.sort_unstable_by_key(|&i| (packed[i].1, packed[i].2[0].0));
    let mut rows = PackedCopy::new();
    for i in order {
        let (_, id, window) = &mut packed[i];
        rows.push(*id, ids[refs[i]], window);
    }
    for (sql, payload) in [
        (
            "COPY sample_times (id, lo, agent_id, offsets) FROM STDIN (FORMAT binary)",
            times.finish(),
        ),
        (
            "COPY samples_packed (series_id, lo, hi, times_id, vals) FROM STDIN (FORMAT binary)",
            rows.finish(),
        ),
    ] {
        let mut copy_in = conn.copy_in_raw(sql).await?;
        copy_in.send(payload).await?;
        copy_in.finish().await?;
    }
    Ok(true)
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

/// The staged path: returns how many samples were new in each minute, and how many
/// were not written for a damaged packed row. Samples stored packed are left out
/// here; `ON CONFLICT` leaves out those stored as rows.
async fn write_staged(
    conn: &mut PgConnection,
    samples: &Samples<'_>,
    offered: u64,
    lo: i64,
    hi: i64,
) -> Result<(BTreeMap<i64, i64>, u64), SinkError> {
    let mut ids: Vec<i64> = samples.columns().map(|(id, _)| id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut stored = Stored::default();
    read_packed(conn, &ids, lo, hi, &mut stored).await?;
    let mut damaged = 0u64;
    let mut copy = SampleCopy::with_capacity(offered as usize);
    for (id, ts, value) in samples.each() {
        if stored.damaged.contains(&id) {
            damaged += 1;
        } else if !stored.samples.contains_key(&(id, ts)) {
            copy.push(id, ts, value);
        }
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
    Ok((minutes.into_iter().collect(), damaged))
}
