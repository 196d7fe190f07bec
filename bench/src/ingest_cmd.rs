//! `pga-bench ingest`: the federator's ingest throughput into PostgreSQL, side by side
//! with a bare binary `COPY` of the same rows into the same table.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use pga_federator::db::sink::{SampleCopy, Sink, SinkOptions};
use pga_federator::pull::batch::{Batch, Cursor};
use pga_format::{
    AgentId, BlockBuilder, DEFAULT_ZSTD_LEVEL, DecodedBlock, FrameMeta, MetricKind, SeriesId,
    SeriesMeta, decode_block,
};
use pga_lab::Cluster;
use serde::Serialize;

use crate::report::group;

/// The agent's default block window.
const BLOCK_MS: i64 = 600_000;
const AGENT: AgentId = AgentId([0x42; 16]);

/// Measure the federator's ingest: samples/s from decoded blocks into PostgreSQL
/// through the sink, against a bare binary COPY of the same rows into the same table.
///
/// Starts a throwaway PostgreSQL cluster (pga-lab: fsync off, the system's binaries)
/// with two databases migrated alike. Builds --blocks real block frames (10-minute
/// windows ending now, --series series collected every --interval-secs; a third
/// counters, a third gauges, a third constants), encodes and decodes them. Then:
///   bare   per --blocks-per-batch blocks, one transaction: map to global ids, encode
///          binary COPY rows, `COPY samples FROM STDIN (FORMAT binary)`
///   sink   per --blocks-per-batch blocks, one `Sink::ingest` batch (series on the
///          first): samples already stored left out, binary COPY into samples, exact
///          1 m / 1 h rollups of the touched buckets, cursor advance
///   again  the sink once more with every block (all duplicates: what a re-pull costs)
/// The two measured phases take turns, batch by batch (each first every other
/// batch), so that background work falls on both alike; the ratio sink/bare is the
/// figure to watch (goal ≥ 0.8). The stored sample counts are checked; a shortfall fails.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct IngestArgs {
    /// Series per block.
    #[arg(long, default_value_t = 2000)]
    pub series: usize,
    /// Blocks (10-minute windows) ingested.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub blocks: u64,
    /// Collection interval in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=600))]
    pub interval_secs: u32,
    /// Blocks per batch (per transaction), in both phases. The default, 8 blocks of
    /// 2000 series (960,000 samples), is what the federator commits per transaction
    /// when it catches up with default settings (backfill.max_samples_per_transaction
    /// = 1,000,000); 1 is one sealed block per pull.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub blocks_per_batch: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What the command measured.
#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub series: usize,
    pub blocks: u64,
    pub blocks_per_batch: u64,
    pub samples: u64,
    pub bare_copy: Phase,
    pub sink: Phase,
    pub sink_duplicates: Phase,
    /// sink samples/s ÷ bare COPY samples/s.
    pub ratio: f64,
    pub rollups_1m: u64,
    pub rollups_1h: u64,
}

/// One timed phase.
#[derive(Debug, Serialize)]
pub struct Phase {
    pub secs: f64,
    pub samples_per_sec: f64,
}

impl Phase {
    fn new(samples: u64, took: Duration) -> Phase {
        let secs = took.as_secs_f64();
        Phase {
            secs,
            samples_per_sec: samples as f64 / secs.max(1e-9),
        }
    }
}

pub fn run(args: &IngestArgs) -> anyhow::Result<()> {
    crate::report::run_and_print(args.json, measure(args), render)
}

/// Builds the blocks, starts the cluster, runs the phases.
pub async fn measure(args: &IngestArgs) -> anyhow::Result<IngestReport> {
    if args.series == 0 {
        bail!("--series must be at least 1");
    }
    let (series, blocks) = build_blocks(args)?;
    let samples: u64 = blocks.iter().map(|b| b.sample_count() as u64).sum();

    let pg = Cluster::builder()
        .setting("max_wal_size", "4GB")
        .start()
        .context("starting a throwaway PostgreSQL cluster")?;
    for db in ["bare", "sink"] {
        pg.create_database(db)?;
    }
    let options = SinkOptions::default();
    let bare = Sink::connect(&pg.url("bare"), options.clone()).await?;
    bare.migrate().await?;
    let sink = Sink::connect(&pg.url("sink"), options).await?;
    sink.migrate().await?;
    // The days the data covers, partitioned in both databases before timing.
    let first_ms = blocks[0].header.min_ts;
    for s in [&bare, &sink] {
        sqlx::query(
            "SELECT pga_ensure_partitions(ARRAY[timestamptz 'epoch' + $1 * interval '1 ms', now()])",
        )
        .bind(first_ms)
        .execute(s.pool())
        .await?;
    }

    // The sink's batches: one per group of blocks, the dictionary on the first.
    let per = args.blocks_per_batch as usize;
    let batches: Vec<Batch> = blocks
        .chunks(per)
        .enumerate()
        .map(|(i, group)| batch(if i == 0 { series.clone() } else { vec![] }, group.to_vec()))
        .collect();

    // Bare COPY and the sink take turns, group by group (each going first every
    // other group), so that background work of the server and the machine (WAL
    // segments, writeback, other processes) falls on both alike.
    pg.psql("bare", "CHECKPOINT")?;
    let mut conn = bare.pool().acquire().await?;
    let (mut bare_time, mut sink_time) = (Duration::ZERO, Duration::ZERO);
    let (mut rollups_1m, mut rollups_1h) = (0, 0);
    for (i, (group, b)) in blocks.chunks(per).zip(&batches).enumerate() {
        for turn in 0..2 {
            let started = Instant::now();
            if (turn == 0) == (i % 2 == 0) {
                bare_copy(&mut conn, group).await?;
                bare_time += started.elapsed();
            } else {
                let r = sink.ingest(b).await?;
                sink_time += started.elapsed();
                rollups_1m += r.rollups_1m;
                rollups_1h += r.rollups_1h;
            }
        }
    }
    drop(conn);
    let bare_phase = Phase::new(samples, bare_time);
    let sink_phase = Phase::new(samples, sink_time);

    // Everything again: all duplicates.
    let again = batch(vec![], blocks.clone());
    let started = Instant::now();
    let r = sink.ingest(&again).await?;
    let dup_phase = Phase::new(samples, started.elapsed());
    if r.samples_inserted != 0 || r.samples_duplicate != samples {
        bail!("re-ingest stored {} samples again", r.samples_inserted);
    }

    for db in ["bare", "sink"] {
        let n: u64 = pg.psql(db, "SELECT count(*) FROM pga_samples")?.parse()?;
        if n != samples {
            bail!("database {db} holds {n} samples, {samples} were sent");
        }
    }
    Ok(IngestReport {
        series: args.series,
        blocks: args.blocks,
        blocks_per_batch: args.blocks_per_batch,
        samples,
        ratio: sink_phase.samples_per_sec / bare_phase.samples_per_sec,
        bare_copy: bare_phase,
        sink: sink_phase,
        sink_duplicates: dup_phase,
        rollups_1m,
        rollups_1h,
    })
}

/// One transaction of the bare phase: map to global ids (series i has id i + 1),
/// encode binary `COPY` rows, copy them into `samples`.
pub(crate) async fn bare_copy(
    conn: &mut sqlx::PgConnection,
    group: &[DecodedBlock],
) -> anyhow::Result<()> {
    let mut copy = SampleCopy::with_capacity(group.iter().map(|b| b.sample_count()).sum());
    for block in group {
        for col in &block.columns {
            let id = col.series.0 as i64 + 1;
            for (ts, &v) in col.timestamps(block).zip(&col.values) {
                copy.push(id, ts, v);
            }
        }
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let mut copy_in = tx
        .copy_in_raw("COPY samples (series_id, ts, value) FROM STDIN (FORMAT binary)")
        .await?;
    copy_in.send(copy.finish()).await?;
    copy_in.finish().await?;
    tx.commit().await?;
    Ok(())
}

fn batch(series: Vec<SeriesMeta>, blocks: Vec<DecodedBlock>) -> Batch {
    let last = blocks.last().map(|b| &b.header);
    let cursor = Cursor {
        last_sequence: last.map(|h| h.sequence),
        last_ts_ms: last.map(|h| h.max_ts),
        series_count: 0,
    };
    Batch {
        agent: "bench".to_owned(),
        agent_id: AGENT,
        series: series.into_iter().map(|m| (m.id, m)).collect(),
        blocks,
        head: None,
        gap: None,
        cursor,
        complete_through_ms: None,
    }
}

/// `n` series `{prefix}_metric_{i / 50}{labels…, n="{i % 50}"}`, every third a
/// counter, ids `0..n`.
pub fn synthetic_series(
    n: usize,
    prefix: &str,
    labels: &[(&str, &str)],
) -> anyhow::Result<Vec<SeriesMeta>> {
    (0..n)
        .map(|i| {
            let kind = if i % 3 == 0 {
                MetricKind::Counter
            } else {
                MetricKind::Gauge
            };
            let mut l = pga_format::owned_labels(labels);
            l.push(("n".into(), (i % 50).to_string()));
            SeriesMeta::new(
                SeriesId(i as u64),
                format!("{prefix}_metric_{}", i / 50),
                l,
                kind,
                "",
                "",
            )
            .map_err(anyhow::Error::from)
        })
        .collect()
}

/// The dictionary and the decoded blocks: windows aligned on 10 minutes, the last
/// one ending before now.
fn build_blocks(args: &IngestArgs) -> anyhow::Result<(Vec<SeriesMeta>, Vec<DecodedBlock>)> {
    let series = synthetic_series(args.series, "bench", &[("pg_instance", "db1:5432")])?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let end = now - now.rem_euclid(BLOCK_MS);
    let step = i64::from(args.interval_secs) * 1000;
    let mut blocks = Vec::new();
    let mut counters = vec![0.0f64; args.series];
    for b in 0..args.blocks {
        let window = end - (args.blocks - b) as i64 * BLOCK_MS;
        let mut builder = BlockBuilder::new();
        let mut ts = window;
        let mut k = 0u64;
        while ts < window + BLOCK_MS {
            let samples: Vec<(SeriesId, f64)> = (0..args.series)
                .map(|i| {
                    let v = match i % 3 {
                        0 => {
                            counters[i] += ((i as u64 * 31 + k * 17) % 97) as f64;
                            counters[i]
                        }
                        1 => ((i as u64 * 7 + k * 13) % 1000) as f64 / 8.0,
                        _ => 42.0,
                    };
                    (SeriesId(i as u64), v)
                })
                .collect();
            builder.push_collection(ts, &samples)?;
            ts += step;
            k += 1;
        }
        let frame = builder.encode(
            FrameMeta {
                agent_id: AGENT,
                sequence: b + 1,
            },
            DEFAULT_ZSTD_LEVEL,
        )?;
        blocks.push(decode_block(&frame)?);
    }
    Ok((series, blocks))
}

fn render(r: &IngestReport) -> String {
    let line = |name: &str, p: &Phase| {
        format!(
            "  {name:<24} {:>9.2} s {:>14} samples/s\n",
            p.secs,
            group(p.samples_per_sec as u64)
        )
    };
    let mut out = format!(
        "ingest: {} series × {} blocks = {} samples, {} block(s) per transaction\n",
        group(r.series as u64),
        r.blocks,
        group(r.samples),
        r.blocks_per_batch
    );
    out += &line("bare binary COPY", &r.bare_copy);
    out += &line("sink (COPY+dedup+rollups)", &r.sink);
    out += &line("sink, all duplicates", &r.sink_duplicates);
    out += &format!(
        "  ratio sink / bare COPY   {:.2}  (goal ≥ 0.80)\n  rollup rows written: 1 m {}, 1 h {}\n",
        r.ratio,
        group(r.rollups_1m),
        group(r.rollups_1h)
    );
    out
}
