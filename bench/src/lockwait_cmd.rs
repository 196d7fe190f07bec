//! `pga-bench lockwait`: how long one agent's long ingest transaction makes another
//! agent's writes wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use pga_federator::db::sink::{Sink, SinkOptions};
use pga_federator::pull::batch::{Batch, Cursor};
use pga_format::{
    AgentId, BlockBuilder, DEFAULT_ZSTD_LEVEL, DecodedBlock, FrameMeta, SeriesId, SeriesMeta,
    decode_block,
};
use pga_lab::Cluster;
use serde::Serialize;

use crate::report::group;

const BLOCK_MS: i64 = 600_000;
const DAY_MS: i64 = 86_400_000;
const LATE: AgentId = AgentId([0x1a; 16]);
const LIVE: AgentId = AgentId([0x2b; 16]);

/// Measure what one agent's long ingest transaction makes another agent's writes
/// wait: the lock queue between agents in the central database.
///
/// Starts a throwaway cluster and migrates a central database. Agent "live" commits
/// one collection of --live-series series every 100 ms through the sink (what a
/// fleet's live pulls do), and its commit latencies are recorded throughout.
/// Meanwhile agent "late", which already stored its newest collection, delivers in
/// one transaction --late-blocks 10-minute blocks of --series series collected every
/// 10 s six days ago: late data on days whose partitions do not exist yet, whose
/// rollups are recomputed from the raw samples (the sink's slowest path). Then, for
/// comparison, the way partitions were made before migration 0005: `CREATE TABLE …
/// PARTITION OF` in a transaction left open as long as the late batch took.
///
/// Every 50 ms the federator's sessions waiting on a lock are sampled
/// (pg_stat_activity, wait_event_type = 'Lock'). Reports per phase: the late
/// transaction's time, the live agent's commits and their latency (p50, p99, max),
/// and the longest lock wait seen.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct LockwaitArgs {
    /// Series of the late agent.
    #[arg(long, default_value_t = 2000)]
    pub series: usize,
    /// 10-minute blocks in the late agent's transaction (8 × 2000 series at 10 s is
    /// 960,000 samples: backfill.max_samples_per_transaction's default bound).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=144))]
    pub late_blocks: u64,
    /// Series of the live agent.
    #[arg(long, default_value_t = 200)]
    pub live_series: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One phase's figures.
#[derive(Debug, Default, Serialize)]
pub struct PhaseReport {
    pub name: String,
    /// The long transaction's duration (s); 0 for the baseline.
    pub long_transaction_secs: f64,
    /// The live agent's commits during the phase and their latency (ms).
    pub live_commits: usize,
    pub live_p50_ms: f64,
    pub live_p99_ms: f64,
    pub live_max_ms: f64,
    /// The longest wait on a lock of any federator session seen (ms).
    pub max_lock_wait_ms: f64,
}

/// What the command measured.
#[derive(Debug, Serialize)]
pub struct LockwaitReport {
    pub late_samples: u64,
    pub rollups_1m: u64,
    pub phases: Vec<PhaseReport>,
}

pub fn run(args: &LockwaitArgs) -> anyhow::Result<()> {
    crate::report::run_and_print(args.json, measure(args), render)
}

fn series(n: usize, prefix: &str) -> anyhow::Result<Vec<SeriesMeta>> {
    crate::ingest_cmd::synthetic_series(n, prefix, &[])
}

/// One block of `n` series, collections every 10 s from `from` (ms) until `until`.
fn block(
    agent: AgentId,
    seq: u64,
    n: usize,
    from: i64,
    until: i64,
) -> anyhow::Result<DecodedBlock> {
    let mut b = BlockBuilder::new();
    let mut ts = from;
    while ts < until {
        let k = ts / 10_000;
        let samples: Vec<(SeriesId, f64)> = (0..n)
            .map(|i| {
                let v = if i % 3 == 0 {
                    (k * (i as i64 % 7 + 1)) as f64
                } else {
                    ((k + i as i64) % 100) as f64 * 1.5
                };
                (SeriesId(i as u64), v)
            })
            .collect();
        b.push_collection(ts, &samples)?;
        ts += 10_000;
    }
    let frame = b.encode(
        FrameMeta {
            agent_id: agent,
            sequence: seq,
        },
        DEFAULT_ZSTD_LEVEL,
    )?;
    Ok(decode_block(&frame)?)
}

fn batch(
    name: &str,
    agent: AgentId,
    series: Vec<SeriesMeta>,
    blocks: Vec<DecodedBlock>,
    count: u64,
) -> Batch {
    let last = blocks.last().map(|b| (b.header.sequence, b.header.max_ts));
    Batch {
        agent: name.to_owned(),
        agent_id: agent,
        series: series.into_iter().map(|m| (m.id, m)).collect(),
        blocks,
        head: None,
        gap: None,
        complete_through_ms: None,
        cursor: Cursor {
            last_sequence: last.map(|l| l.0),
            last_ts_ms: last.map(|l| l.1),
            series_count: count,
        },
    }
}

/// Latencies (ms) recorded by the live agent, and whether to go on.
struct Live {
    latencies: std::sync::Mutex<Vec<(Instant, f64)>>,
    lock_waits: std::sync::Mutex<Vec<(Instant, f64)>>,
    stop: AtomicBool,
}

pub async fn measure(args: &LockwaitArgs) -> anyhow::Result<LockwaitReport> {
    if args.series == 0 || args.live_series == 0 {
        bail!("--series and --live-series must be at least 1");
    }
    let pg = Cluster::builder()
        .setting("max_wal_size", "4GB")
        .start()
        .context("starting a throwaway PostgreSQL cluster")?;
    pg.create_database("central")?;
    let late_sink = Sink::connect(&pg.url("central"), SinkOptions::default()).await?;
    late_sink.migrate().await?;
    let live_sink = Sink::connect(&pg.url("central"), SinkOptions::default()).await?;
    live_sink.start().await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let window = now - now.rem_euclid(BLOCK_MS);

    // The late agent's newest collection is stored; its late blocks come after.
    let late_series = series(args.series, "late")?;
    let count = late_series.len() as u64;
    let newest = block(LATE, 1, args.series, window - 60_000, window - 50_000)?;
    late_sink
        .ingest(&batch("late", LATE, late_series, vec![newest], count))
        .await?;
    let six_days_ago = now - 6 * DAY_MS;
    let start = six_days_ago - six_days_ago.rem_euclid(DAY_MS);
    let late_blocks: Vec<DecodedBlock> = (0..args.late_blocks)
        .map(|b| {
            let from = start + b as i64 * BLOCK_MS;
            block(LATE, 2 + b, args.series, from, from + BLOCK_MS)
        })
        .collect::<anyhow::Result<_>>()?;
    let late_samples: u64 = late_blocks.iter().map(|b| b.sample_count() as u64).sum();

    // The live agent, and the lock sampler.
    let live = Arc::new(Live {
        latencies: Default::default(),
        lock_waits: Default::default(),
        stop: AtomicBool::new(false),
    });
    let live_series = series(args.live_series, "live")?;
    let live_task = {
        let (live, n) = (live.clone(), args.live_series);
        tokio::spawn(async move {
            let mut seq = 1u64;
            let mut first = Some(live_series);
            while !live.stop.load(Ordering::Relaxed) {
                let ts = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let b = block(LIVE, seq, n, ts, ts + 1)?;
                let started = Instant::now();
                live_sink
                    .ingest(&batch(
                        "live",
                        LIVE,
                        first.take().unwrap_or_default(),
                        vec![b],
                        n as u64,
                    ))
                    .await?;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                live.latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((Instant::now(), ms));
                seq += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(())
        })
    };
    let sampler = {
        let live = live.clone();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&pg.url("central"))
            .await?;
        tokio::spawn(async move {
            while !live.stop.load(Ordering::Relaxed) {
                let wait: Option<f64> = sqlx::query_scalar(
                    "SELECT max(extract(epoch FROM clock_timestamp() - state_change) * 1000)::float8 \
                     FROM pg_stat_activity \
                     WHERE application_name = 'pga-federator' AND wait_event_type = 'Lock'",
                )
                .fetch_one(&pool)
                .await
                .unwrap_or(None);
                live.lock_waits
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((Instant::now(), wait.unwrap_or(0.0)));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let mut phases = Vec::new();
    // Baseline: the live agent alone.
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    phases.push(phase(&live, "live agent alone", t0, Instant::now(), 0.0));

    // The late batch, through the sink.
    let t1 = Instant::now();
    let r = late_sink
        .ingest(&batch("late", LATE, vec![], late_blocks, count))
        .await?;
    let late_secs = t1.elapsed().as_secs_f64();
    if r.samples_inserted != late_samples {
        bail!(
            "the late batch stored {} of {late_samples} samples",
            r.samples_inserted
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    phases.push(phase(
        &live,
        "late batch (sink)",
        t1,
        Instant::now(),
        late_secs,
    ));

    // For comparison: a partition created inside a transaction held as long.
    let t2 = Instant::now();
    let day = start + 2 * DAY_MS;
    let mut tx = late_sink.pool().begin().await?;
    sqlx::query(&format!(
        "CREATE TABLE pga_bench_old_way PARTITION OF samples \
         FOR VALUES FROM (timestamptz 'epoch' + {day} * interval '1 ms') \
         TO (timestamptz 'epoch' + {} * interval '1 ms')",
        day + DAY_MS
    ))
    .execute(&mut *tx)
    .await?;
    tokio::time::sleep(Duration::from_secs_f64(late_secs)).await;
    tx.rollback().await?;
    let old_secs = t2.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    phases.push(phase(
        &live,
        "PARTITION OF in the transaction (before 0005)",
        t2,
        Instant::now(),
        old_secs,
    ));

    live.stop.store(true, Ordering::Relaxed);
    live_task.await??;
    sampler.await?;
    Ok(LockwaitReport {
        late_samples,
        rollups_1m: r.rollups_1m,
        phases,
    })
}

fn phase(live: &Live, name: &str, from: Instant, until: Instant, long_secs: f64) -> PhaseReport {
    let mut lat: Vec<f64> = live
        .latencies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(at, _)| *at >= from && *at <= until)
        .map(|(_, ms)| *ms)
        .collect();
    lat.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let max_wait = live
        .lock_waits
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(at, _)| *at >= from && *at <= until)
        .map(|(_, ms)| *ms)
        .fold(0.0, f64::max);
    PhaseReport {
        name: name.to_owned(),
        long_transaction_secs: long_secs,
        live_commits: lat.len(),
        live_p50_ms: pick(0.5),
        live_p99_ms: pick(0.99),
        live_max_ms: lat.last().copied().unwrap_or(0.0),
        max_lock_wait_ms: max_wait,
    }
}

fn render(r: &LockwaitReport) -> String {
    let mut out = format!(
        "lockwait: late batch of {} samples (rollups recomputed: {} 1-minute rows), live agent committing every 100 ms\n",
        group(r.late_samples),
        group(r.rollups_1m)
    );
    out += &format!(
        "  {:<46} {:>10} {:>8} {:>9} {:>9} {:>9} {:>11}\n",
        "phase", "long tx s", "commits", "p50 ms", "p99 ms", "max ms", "lock wait ms"
    );
    for p in &r.phases {
        out += &format!(
            "  {:<46} {:>10.2} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>11.0}\n",
            p.name,
            p.long_transaction_secs,
            p.live_commits,
            p.live_p50_ms,
            p.live_p99_ms,
            p.live_max_ms,
            p.max_lock_wait_ms
        );
    }
    out
}
