//! The pack job as the migration of a database filled in the row layout: packed
//! online while the ingest keeps writing for the same agents, nothing lost or
//! doubled, rollups unchanged; and a pack run killed in the middle of a batch
//! leaves the data intact and the next run finishes.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pga_federator::db::sink::{PackOptions, PackReport, Sink, SinkOptions};
use pga_federator::pull::batch::Cursor;
use pga_format::{AgentId, DecodedBlock, MetricKind, SeriesId, SeriesMeta};
use sqlx::PgPool;
use support::sink::*;

const SERIES: u64 = 24;
const STEP_MS: i64 = 15_000;
const BLOCK_MS: i64 = 300_000;

/// The value of series `s` at collection `i`, or none when it skips it. Counters
/// with resets, noisy gauges, a constant, a constant NaN, a gauge flipping between
/// 0 and -0 (equal as numbers, not as bits), and a series collected irregularly (its
/// own timestamp list).
fn value(s: u64, i: i64) -> Option<f64> {
    let i_u = i as u64;
    match s % 8 {
        0 => Some(((i_u * (s + 3)) % 500) as f64),
        1 => Some(((i_u * 7919 + s * 31) % 400) as f64 * 0.5 - 50.0),
        2 => Some(7.0),
        3 => Some(f64::NAN),
        4 => Some(if i % 2 == 0 { 0.0 } else { -0.0 }),
        5 => (i % 7 != 3).then_some((i % 40) as f64),
        6 => Some(((i / 10) % 3) as f64),
        _ => Some(i as f64 * 2.0),
    }
}

fn series_metas() -> Vec<SeriesMeta> {
    (0..SERIES)
        .map(|s| {
            let kind = if s % 8 == 0 || s % 8 == 7 {
                MetricKind::Counter
            } else {
                MetricKind::Gauge
            };
            meta(s, &format!("m{s}"), &[("k", "v")], kind)
        })
        .collect()
}

/// One agent's collections every 15 s in `[from, to)`: the time, and the samples.
fn collections(from: i64, to: i64) -> Vec<(i64, Vec<(SeriesId, f64)>)> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        let i = t / STEP_MS;
        let samples: Vec<(SeriesId, f64)> = (0..SERIES)
            .filter_map(|s| value(s, i).map(|v| (SeriesId(s), v)))
            .collect();
        out.push((t, samples));
        t += STEP_MS;
    }
    out
}

/// An agent and the batches it delivers, in the order it delivers them.
struct Feed {
    name: &'static str,
    id: AgentId,
    sequence: u64,
    sent_series: bool,
    /// Every sample sent: (agent, metric, ts) → value bits.
    expected: BTreeMap<(String, String, i64), u64>,
}

impl Feed {
    fn new(name: &'static str, n: u8) -> Feed {
        Feed {
            name,
            id: AgentId([n; 16]),
            sequence: 0,
            sent_series: false,
            expected: BTreeMap::new(),
        }
    }

    fn block(&mut self, from: i64, to: i64) -> DecodedBlock {
        self.sequence += 1;
        let rows = collections(from, to);
        for (ts, samples) in &rows {
            for (s, v) in samples {
                self.expected.insert(
                    (self.name.to_owned(), format!("m{}", s.0), *ts),
                    v.to_bits(),
                );
            }
        }
        block(self.id, self.sequence, &rows, &[])
    }

    /// A batch of `blocks`, the cursor at the last one, with a head when given.
    fn batch(
        &mut self,
        blocks: Vec<DecodedBlock>,
        head: Option<DecodedBlock>,
    ) -> pga_federator::pull::batch::Batch {
        let series = if self.sent_series {
            Vec::new()
        } else {
            self.sent_series = true;
            series_metas()
        };
        let cursor = Cursor {
            last_sequence: blocks.iter().map(|b| b.header.sequence).max(),
            last_ts_ms: blocks.iter().map(|b| b.header.max_ts).max(),
            series_count: SERIES,
        };
        batch_of(self.name, self.id, series, blocks, head, None, cursor)
    }
}

fn options(packed: bool) -> SinkOptions {
    SinkOptions {
        packed_samples: packed,
        max_connections: 3,
        ..support::sink::options()
    }
}

async fn connect(pg: &Central, packed: bool) -> Sink {
    Sink::connect(&pg.url(), options(packed))
        .await
        .expect("connect")
}

/// Every stored raw sample, both forms, as `(agent, metric, ts) → value bits`,
/// through the readers' `pga_raw`; panics on a sample stored twice.
async fn raw_samples(pool: &PgPool) -> BTreeMap<(String, String, i64), u64> {
    let rows: Vec<(String, String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT a.name, se.metric, (extract(epoch FROM r.ts) * 1000)::bigint, float8send(r.value) \
         FROM pga_raw(ARRAY(SELECT id FROM series), '-infinity', 'infinity') r \
         JOIN series se ON se.id = r.series_id JOIN agents a ON a.id = se.agent_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for (agent, metric, ts, bits) in rows {
        let bits = u64::from_be_bytes(bits.try_into().unwrap());
        let key = (agent, metric, ts);
        assert!(
            out.insert(key.clone(), bits).is_none(),
            "{key:?} is stored twice"
        );
    }
    out
}

/// `(series, ts)` stored more than once across both forms, counted directly in the
/// tables (not through the readers).
async fn doubled(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM ( \
             SELECT series_id, ts FROM ( \
                 SELECT series_id, ts FROM samples \
                 UNION ALL \
                 SELECT p.series_id, p.lo + o * interval '1 millisecond' \
                 FROM samples_packed p \
                 JOIN sample_times t ON t.id = p.times_id AND t.lo = p.lo \
                 CROSS JOIN LATERAL unnest(t.offsets) AS o) x \
             GROUP BY series_id, ts HAVING count(*) > 1) d",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The rollup rows of `table`, keyed by agent and metric, as text.
async fn rollups(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!(
        "SELECT concat_ws('|', a.name, se.metric, r.bucket, r.count, r.sum, r.min, r.max, \
                          r.last, r.increase, r.increase_secs, r.after_gap) \
         FROM {table} r JOIN series se ON se.id = r.series_id \
         JOIN agents a ON a.id = se.agent_id ORDER BY 1"
    ))
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Rows of `samples` older than `cutoff_ms`.
async fn rows_before(pool: &PgPool, cutoff_ms: i64) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM samples \
         WHERE ts < timestamptz 'epoch' + $1::bigint * interval '1 millisecond'",
    )
    .bind(cutoff_ms)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn ingest_both(row: &Sink, mig: &Sink, batch: &pga_federator::pull::batch::Batch) {
    row.ingest(batch)
        .await
        .expect("ingest into the row database");
    mig.ingest(batch)
        .await
        .expect("ingest into the migrated database");
}

fn small_batches(max_batches: u64) -> PackOptions {
    PackOptions {
        max_rows_per_batch: 3_000,
        max_batches: Some(max_batches),
        ..PackOptions::default()
    }
}

#[tokio::test]
async fn a_row_database_is_packed_while_ingest_runs_and_nothing_is_lost_or_doubled() {
    let row_pg = central();
    let mig_pg = central();
    let row = connect(&row_pg, false).await;
    row.migrate().await.unwrap();
    let mig_rows = connect(&mig_pg, false).await;
    mig_rows.migrate().await.unwrap();
    let mig_packed = connect(&mig_pg, true).await;
    mig_packed.start().await.unwrap();
    let packer = Arc::new(connect(&mig_pg, true).await);
    packer.start().await.unwrap();
    assert!(packer.packs() && !mig_rows.packs());

    // Phase 1, before packing exists: two agents, 8 hours up to 90 minutes ago, in
    // the row layout, rollups computed as they came.
    let now = now_ms();
    let start = (now - 8 * 3_600_000) / BLOCK_MS * BLOCK_MS;
    let split = (now - 90 * 60_000) / BLOCK_MS * BLOCK_MS;
    let mut feeds = [Feed::new("db-a", 1), Feed::new("db-b", 2)];
    for feed in &mut feeds {
        let mut t = start;
        while t < split {
            let blocks: Vec<DecodedBlock> = (0..4)
                .map(|k| t + k * BLOCK_MS)
                .filter(|&b| b < split)
                .map(|b| feed.block(b, b + BLOCK_MS))
                .collect();
            t += 4 * BLOCK_MS;
            let batch = feed.batch(blocks, None);
            row.ingest(&batch).await.unwrap();
            mig_rows.ingest(&batch).await.unwrap();
        }
    }
    let mig_pool = mig_pg_pool(&mig_pg).await;
    let rows_at_start = rows_before(&mig_pool, now).await;
    assert!(rows_at_start > 50_000, "{rows_at_start}");

    // Phase 2: the pack job runs in a loop of small runs while both agents go on
    // live (5-minute blocks with heads, some delivered twice, through the staged
    // path; the two sinks, packing and not, take turns), and a third agent backfills
    // three old hours, which the pack job packs as they come.
    let done = AtomicBool::new(false);
    let mut late = Feed::new("db-late", 3);
    let ingest = async {
        let mut t = split;
        let mut k = 0u32;
        let mut late_t = start + 2 * 3_600_000;
        let mut previous: [Option<(i64, i64)>; 2] = [None, None];
        while t + BLOCK_MS <= now {
            for (n, feed) in feeds.iter_mut().enumerate() {
                let mut blocks = Vec::new();
                // Every third delivery repeats the previous block, grown into the
                // new one: blocks that overlap go the staged path.
                if k % 3 == 2
                    && let Some((a, _)) = previous[n]
                {
                    feed.sequence -= 1;
                    blocks.push(feed.block(a, t + BLOCK_MS / 2));
                }
                blocks.push(feed.block(t, t + BLOCK_MS));
                previous[n] = Some((t, t + BLOCK_MS));
                // The head: the first minute of the next block, sealed next time.
                let head_end = (t + BLOCK_MS + 60_000).min(now);
                let head = (t + BLOCK_MS < head_end).then(|| {
                    let rows = collections(t + BLOCK_MS, head_end);
                    for (ts, samples) in &rows {
                        for (s, v) in samples {
                            feed.expected.insert(
                                (feed.name.to_owned(), format!("m{}", s.0), *ts),
                                v.to_bits(),
                            );
                        }
                    }
                    block(feed.id, feed.sequence + 1, &rows, &[])
                });
                let batch = feed.batch(blocks, head);
                let mig = if k.is_multiple_of(2) {
                    &mig_packed
                } else {
                    &mig_rows
                };
                ingest_both(&row, mig, &batch).await;
            }
            // The late agent: 10 minutes per round, in order, one sink.
            if late_t < start + 5 * 3_600_000 {
                let blocks = vec![
                    late.block(late_t, late_t + BLOCK_MS),
                    late.block(late_t + BLOCK_MS, late_t + 2 * BLOCK_MS),
                ];
                late_t += 2 * BLOCK_MS;
                let batch = late.batch(blocks, None);
                ingest_both(&row, &mig_packed, &batch).await;
            }
            t += BLOCK_MS;
            k += 1;
            tokio::task::yield_now().await;
        }
        while late_t < start + 5 * 3_600_000 {
            let blocks = vec![late.block(late_t, late_t + BLOCK_MS)];
            late_t += BLOCK_MS;
            let batch = late.batch(blocks, None);
            ingest_both(&row, &mig_packed, &batch).await;
        }
        done.store(true, Ordering::SeqCst);
    };
    let pack = async {
        let mut runs = Vec::new();
        loop {
            let last = done.load(Ordering::SeqCst);
            let report = packer
                .pack(&small_batches(8), |_| {})
                .await
                .expect("pack run");
            assert!(report.failures.is_empty(), "{:?}", report.failures);
            let complete = report.complete;
            runs.push(report);
            if last && complete {
                break runs;
            }
            tokio::task::yield_now().await;
        }
    };
    let ((), runs) = tokio::join!(ingest, pack);
    let final_run: &PackReport = runs.last().unwrap();
    let batches: u64 = runs.iter().map(|r| r.batches).sum();
    let packed: u64 = runs.iter().map(|r| r.rows_packed).sum();
    eprintln!(
        "{} pack runs, {batches} batches, {packed} rows packed; last run: {final_run:?}",
        runs.len()
    );
    assert!(batches > 10 && packed > 50_000, "{batches} {packed}");
    assert_eq!(final_run.remaining_rows, 0);

    // Every sample sent is stored once, with its bits, in one form or the other.
    let mut expected = BTreeMap::new();
    for feed in feeds.iter().chain([&late]) {
        expected.extend(feed.expected.iter().map(|(k, v)| (k.clone(), *v)));
    }
    let stored = raw_samples(&mig_pool).await;
    assert_eq!(stored.len(), expected.len());
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(k, v)| stored.get(k) != Some(v))
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "missing or changed: {wrong:?}");
    assert_eq!(doubled(&mig_pool).await, 0);
    // The row database holds the same, all as rows.
    let row_pool = mig_pg_pool(&row_pg).await;
    assert_eq!(raw_samples(&row_pool).await, stored);

    // Nothing older than the last run's cutoff is left as a row; the packed rows
    // share their timestamp lists, and a series that holds still keeps one value
    // (bitwise: the 0/-0 series keeps them all).
    assert_eq!(rows_before(&mig_pool, final_run.cutoff_ms).await, 0);
    let (packed_rows, times_rows): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM samples_packed), (SELECT count(*) FROM sample_times)",
    )
    .fetch_one(&mig_pool)
    .await
    .unwrap();
    assert!(
        times_rows * 3 < packed_rows,
        "{times_rows} timestamp lists for {packed_rows} packed rows"
    );
    let flat: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT se.metric, min(cardinality(p.vals))::bigint, max(cardinality(p.vals))::bigint \
         FROM samples_packed p JOIN series se ON se.id = p.series_id \
         WHERE se.metric IN ('m2', 'm3', 'm4') GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&mig_pool)
    .await
    .unwrap();
    assert_eq!(flat.len(), 3, "{flat:?}");
    assert_eq!((flat[0].1, flat[0].2), (1, 1), "constant 7: {flat:?}");
    assert_eq!((flat[1].1, flat[1].2), (1, 1), "constant NaN: {flat:?}");
    assert!(flat[2].2 > 1, "0 and -0 are not one value: {flat:?}");

    // The rollups equal those of the row database.
    for table in ["samples_1m", "pga_hours"] {
        let (a, b) = (
            rollups(&row_pool, table).await,
            rollups(&mig_pool, table).await,
        );
        assert!(!a.is_empty());
        let differ: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).take(3).collect();
        assert!(
            a.len() == b.len() && differ.is_empty(),
            "{table}: {} vs {} rows, first differences {differ:?}",
            a.len(),
            b.len()
        );
    }
}

async fn mig_pg_pool(pg: &Central) -> PgPool {
    PgPool::connect(&pg.url()).await.unwrap()
}

#[tokio::test]
async fn a_pack_run_killed_mid_batch_loses_nothing_and_the_next_run_finishes() {
    let pg = central();
    let writer = connect(&pg, false).await;
    writer.migrate().await.unwrap();
    let mut feed = Feed::new("db-k", 9);
    let start = (now_ms() - 5 * 3_600_000) / 3_600_000 * 3_600_000;
    let blocks = (0..12)
        .map(|k| feed.block(start + k * BLOCK_MS, start + (k + 1) * BLOCK_MS))
        .collect();
    let batch = feed.batch(blocks, None);
    writer.ingest(&batch).await.unwrap();
    let pool = mig_pg_pool(&pg).await;
    let before = raw_samples(&pool).await;
    assert_eq!(before, feed.expected);

    // Another session holds the day's sample_times partition: the batch stops in
    // its statement, its transaction open, the agent locked, until it is killed.
    let day = chrono::DateTime::from_timestamp_millis(start)
        .unwrap()
        .format("%Y%m%d")
        .to_string();
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE sample_times_p{day} IN ACCESS EXCLUSIVE MODE"
    ))
    .execute(&mut *blocker)
    .await
    .unwrap();
    let packer = Arc::new(connect(&pg, true).await);
    packer.start().await.unwrap();
    let run = tokio::spawn({
        let packer = packer.clone();
        async move { packer.pack(&PackOptions::default(), |_| {}).await }
    });
    let mut killed = false;
    for _ in 0..200 {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' \
               AND query LIKE '%DELETE FROM samples%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if n > 0 {
            killed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(killed, "the pack batch never waited on the lock");
    let result = run.await.unwrap();
    assert!(result.is_err(), "{result:?}");
    blocker.rollback().await.unwrap();

    // Nothing moved: every sample is still there once, as a row.
    assert_eq!(raw_samples(&pool).await, before);
    let packed: i64 = sqlx::query_scalar("SELECT count(*) FROM samples_packed")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(packed, 0);

    // The next run (a fresh pool: the old one lost a connection) finishes.
    let again = connect(&pg, true).await;
    again.start().await.unwrap();
    let report = again.pack(&PackOptions::default(), |_| {}).await.unwrap();
    assert!(report.complete, "{report:?}");
    assert_eq!(report.rows_packed as usize, before.len());
    assert_eq!(report.batches, 1, "one hour, one batch: {report:?}");
    assert_eq!(report.packed_rows, SERIES);
    assert_eq!(raw_samples(&pool).await, before);
    assert_eq!(rows_before(&pool, now_ms()).await, 0);
    assert_eq!(doubled(&pool).await, 0);
}

/// Runs `pga-federator ARGS`: exit code, standard output, standard error.
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pga-federator"))
        .args(args)
        .output()
        .expect("run pga-federator");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn pga_federator_pack_migrates_an_existing_database_in_steps() {
    let pg = central();
    let writer = connect(&pg, false).await;
    writer.migrate().await.unwrap();
    let mut feed = Feed::new("db-cli", 11);
    // Two clock hours, 4 to 6 hours ago: two batches.
    let start = (now_ms() - 6 * 3_600_000) / 3_600_000 * 3_600_000;
    let blocks = (0..24)
        .map(|k| feed.block(start + k * BLOCK_MS, start + (k + 1) * BLOCK_MS))
        .collect();
    writer.ingest(&feed.batch(blocks, None)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("federator.toml");
    std::fs::write(&config, format!("[database]\nurl = \"{}\"\n", pg.url())).unwrap();
    let config = config.to_str().unwrap();

    let (code, help, _) = cli(&["pack", "--help"]);
    assert_eq!(code, 0);
    for word in [
        "online",
        "resumable",
        "--max-batches",
        "--older-than-secs",
        "--json",
    ] {
        assert!(
            help.to_lowercase().contains(word),
            "--help lacks {word}: {help}"
        );
    }
    let (code, _, err) = cli(&["--config", config, "pack", "--older-than-secs", "60"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--older-than-secs 60") && err.contains("3600"),
        "{err}"
    );

    // One batch, then stopped: exit 2, the JSON says what is left.
    let (code, out, err) = cli(&["--config", config, "pack", "--max-batches", "1", "--json"]);
    assert_eq!(code, 2, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(report["batches"], 1, "{report}");
    assert_eq!(report["packed_rows_written"], SERIES, "{report}");
    assert_eq!(report["complete"], false, "{report}");
    assert!(err.contains("packed db-cli hour"), "progress: {err}");
    let pool = mig_pg_pool(&pg).await;
    let half = rows_before(&pool, now_ms()).await;
    assert!(
        half > 0 && (half as usize) < feed.expected.len(),
        "one hour of two left: {half}"
    );

    // The next run goes on and finishes.
    let (code, out, err) = cli(&["--config", config, "pack"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("done: no raw sample older than the cutoff is left"),
        "{out}"
    );
    assert_eq!(rows_before(&pool, now_ms()).await, 0);
    assert_eq!(raw_samples(&pool).await, feed.expected);
}

#[tokio::test]
async fn retention_drops_a_packed_day_an_hour_after_its_rows_would_go() {
    let pg = central();
    let writer = connect(&pg, false).await;
    writer.migrate().await.unwrap();
    let mut feed = Feed::new("db-ret", 12);
    let start = (now_ms() - 5 * 3_600_000) / 3_600_000 * 3_600_000;
    let blocks = (0..6)
        .map(|k| feed.block(start + k * BLOCK_MS, start + (k + 1) * BLOCK_MS))
        .collect();
    writer.ingest(&feed.batch(blocks, None)).await.unwrap();
    let packer = connect(&pg, true).await;
    packer.start().await.unwrap();
    // A federator stopping packs nothing more.
    let (_stop_tx, stop) = tokio::sync::watch::channel(true);
    let stopped = PackOptions {
        stop: Some(stop),
        ..PackOptions::default()
    };
    let report = packer.pack(&stopped, |_| {}).await.unwrap();
    assert!(report.batches == 0 && !report.complete, "{report:?}");
    let report = packer.pack(&PackOptions::default(), |_| {}).await.unwrap();
    assert!(
        report.complete && report.packed_rows == SERIES,
        "{report:?}"
    );

    // The day of the packed samples ends at `day_end`; raw samples are kept 7 days.
    let day_end = (start / 86_400_000 + 1) * 86_400_000;
    let raw = 7 * 86_400_000;
    let pool = mig_pg_pool(&pg).await;
    let packed = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM samples_packed")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    // Half an hour after `samples` of that day goes, its packed windows stay (their
    // samples may reach into the next day).
    let r = packer.retention(day_end + raw + 1_800_000).await.unwrap();
    let day = chrono::DateTime::from_timestamp_millis(start)
        .unwrap()
        .format("%Y%m%d")
        .to_string();
    assert!(r.dropped.contains(&format!("samples_p{day}")), "{r:?}");
    assert!(!r.dropped.iter().any(|p| p.contains("packed")), "{r:?}");
    assert_eq!(packed().await, SERIES as i64);
    let r = packer.retention(day_end + raw + 3_600_000).await.unwrap();
    for table in ["samples_packed", "sample_times"] {
        assert!(r.dropped.contains(&format!("{table}_p{day}")), "{r:?}");
    }
    assert_eq!(packed().await, 0);
}
