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
/// through the sink, in both raw layouts, against a bare binary COPY of the same
/// rows into the row table; and what a raw sample costs on disk in each layout.
///
/// Starts a throwaway PostgreSQL cluster (pga-lab: fsync off, the system's binaries).
/// For each data set (synthetic blocks; with --corpus, the corpus too) three
/// databases are migrated alike, and the same decoded blocks go into each:
///   bare    per --blocks-per-batch blocks, one transaction: map to global ids,
///           encode binary COPY rows, `COPY samples FROM STDIN (FORMAT binary)`:
///           the floor of the row layout
///   rows    the sink with database.packed_samples = false: a row per sample,
///           samples already stored left out, exact 1 m / 1 h rollups, cursor
///   packed  the sink as shipped (plain PostgreSQL): one packed row per series and
///           sealed block, the same rollups and cursor
///   again   the packed sink once more with every block (all duplicates)
/// The three take turns, batch by batch (the order rotating), so that background
/// work falls on all alike. Figures to watch: packed / bare (goal ≥ 3), and bytes
/// per raw sample (heap + indexes + TOAST of every partition of the raw tables:
/// `samples`, and `samples_packed` + `sample_times` for the packed layout; goal
/// ≤ 8). The stored sample counts are checked in every database; a shortfall fails.
///
/// Synthetic blocks: 10-minute windows ending now, --series series collected every
/// --interval-secs (a third counters, a third gauges, a third constants). The
/// corpus (../shared/corpus/scrapes.txt.zst): its scrapes moved to end now, in
/// 10-minute blocks as the agent cuts them.
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
    /// Blocks per batch (per transaction), in every phase. The default, 8 blocks of
    /// 2000 series (960,000 samples), is what the federator commits per transaction
    /// when it catches up with default settings (backfill.max_samples_per_transaction
    /// = 1,000,000); 1 is one sealed block per pull.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub blocks_per_batch: u64,
    /// Also measure on a scrape corpus (Prometheus text, optionally zstd): every
    /// series and scrape of it, moved in time to end now.
    #[arg(long)]
    pub corpus: Option<std::path::PathBuf>,
    /// The corpus played this many times in a row (each copy after the previous
    /// one, its counters starting over as after a restart), for a longer history.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub corpus_repeat: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What the command measured, per data set.
#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub blocks_per_batch: u64,
    pub data: Vec<DataReport>,
}

/// One data set's figures.
#[derive(Debug, Serialize)]
pub struct DataReport {
    /// `synthetic` or `corpus`.
    pub name: String,
    pub series: usize,
    pub blocks: u64,
    pub samples: u64,
    pub bare_copy: Phase,
    /// The sink writing a row per sample.
    pub sink_rows: Phase,
    /// The sink writing sealed blocks packed.
    pub sink_packed: Phase,
    pub sink_duplicates: Phase,
    /// packed samples/s ÷ bare COPY samples/s.
    pub ratio_packed: f64,
    /// rows samples/s ÷ bare COPY samples/s.
    pub ratio_rows: f64,
    pub rollups_1m: u64,
    pub rollups_1h: u64,
    /// Bytes of the raw tables per raw sample: row layout (the sink's `rows`
    /// database), packed layout.
    pub bytes_per_sample_rows: f64,
    pub bytes_per_sample_packed: f64,
    /// Bytes of `samples_1m` per 1-minute row (the same in both layouts).
    pub bytes_per_rollup_1m: f64,
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

/// Builds the blocks, starts the cluster, measures each data set.
pub async fn measure(args: &IngestArgs) -> anyhow::Result<IngestReport> {
    if args.series == 0 {
        bail!("--series must be at least 1");
    }
    let pg = Cluster::builder()
        .setting("max_wal_size", "4GB")
        .start()
        .context("starting a throwaway PostgreSQL cluster")?;
    let mut data = Vec::new();
    let (series, blocks) = build_blocks(args)?;
    data.push(measure_data(&pg, args, "synthetic", series, blocks).await?);
    if let Some(path) = &args.corpus {
        let (series, blocks) = corpus_blocks(path, args.corpus_repeat)?;
        data.push(measure_data(&pg, args, "corpus", series, blocks).await?);
    }
    Ok(IngestReport {
        blocks_per_batch: args.blocks_per_batch,
        data,
    })
}

/// The three databases of one data set, filled in turns.
async fn measure_data(
    pg: &Cluster,
    args: &IngestArgs,
    name: &str,
    series: Vec<SeriesMeta>,
    blocks: Vec<DecodedBlock>,
) -> anyhow::Result<DataReport> {
    let samples: u64 = blocks.iter().map(|b| b.sample_count() as u64).sum();
    let dbs = [
        format!("{name}_bare"),
        format!("{name}_rows"),
        format!("{name}_packed"),
    ];
    let mut sinks = Vec::new();
    for (i, db) in dbs.iter().enumerate() {
        pg.create_database(db)?;
        let options = SinkOptions {
            packed_samples: i == 2,
            ..SinkOptions::default()
        };
        let sink = Sink::connect(&pg.url(db), options).await?;
        sink.migrate().await?;
        // The days the data covers, partitioned before timing.
        sqlx::query(
            "SELECT pga_ensure_partitions(ARRAY[timestamptz 'epoch' + $1 * interval '1 ms', now()])",
        )
        .bind(blocks[0].header.min_ts)
        .execute(sink.pool())
        .await?;
        pg.psql(db, "CHECKPOINT")?;
        sinks.push(sink);
    }

    // The series first, untimed (the bare phase maps ids without a lookup), then
    // one batch per group of blocks.
    for sink in &sinks[1..] {
        let mut dictionary = batch(series.clone(), vec![]);
        dictionary.cursor = Cursor::default();
        sink.ingest(&dictionary).await?;
    }
    let per = args.blocks_per_batch as usize;
    let batches: Vec<Batch> = blocks
        .chunks(per)
        .map(|group| batch(vec![], group.to_vec()))
        .collect();

    // The three take turns, group by group, the order rotating, so that background
    // work of the server and the machine (WAL segments, writeback, other processes)
    // falls on all alike.
    let mut conn = sinks[0].pool().acquire().await?;
    let mut took = [Duration::ZERO; 3];
    let (mut rollups_1m, mut rollups_1h) = (0, 0);
    for (i, (group, b)) in blocks.chunks(per).zip(&batches).enumerate() {
        for turn in 0..3 {
            let which = (i + turn) % 3;
            let started = Instant::now();
            if which == 0 {
                bare_copy(&mut conn, group).await?;
            } else {
                let r = sinks[which].ingest(b).await?;
                if which == 2 {
                    rollups_1m += r.rollups_1m;
                    rollups_1h += r.rollups_1h;
                }
            }
            took[which] += started.elapsed();
        }
    }
    drop(conn);
    let [bare_phase, rows_phase, packed_phase] = took.map(|t| Phase::new(samples, t));

    // Everything again: all duplicates.
    let again = batch(vec![], blocks.clone());
    let started = Instant::now();
    let r = sinks[2].ingest(&again).await?;
    let dup_phase = Phase::new(samples, started.elapsed());
    if r.samples_inserted != 0 || r.samples_duplicate != samples {
        bail!("re-ingest stored {} samples again", r.samples_inserted);
    }

    for db in &dbs {
        let n = stored_samples(pg, db)?;
        if n != samples {
            bail!("database {db} holds {n} samples, {samples} were sent");
        }
    }
    let per_sample =
        |db: &str| -> anyhow::Result<f64> { Ok(raw_bytes(pg, db)? as f64 / samples as f64) };
    let rollup_rows: f64 = pg
        .psql(&dbs[2], "SELECT count(*) FROM samples_1m")?
        .parse()?;
    let rollup_bytes = table_bytes(pg, &dbs[2], &["samples_1m"])? as f64;
    Ok(DataReport {
        name: name.to_owned(),
        series: series.len(),
        blocks: blocks.len() as u64,
        samples,
        ratio_packed: packed_phase.samples_per_sec / bare_phase.samples_per_sec,
        ratio_rows: rows_phase.samples_per_sec / bare_phase.samples_per_sec,
        bare_copy: bare_phase,
        sink_rows: rows_phase,
        sink_packed: packed_phase,
        sink_duplicates: dup_phase,
        rollups_1m,
        rollups_1h,
        bytes_per_sample_rows: per_sample(&dbs[1])?,
        bytes_per_sample_packed: per_sample(&dbs[2])?,
        bytes_per_rollup_1m: rollup_bytes / rollup_rows.max(1.0),
    })
}

/// Raw samples stored in database `db`, both layouts.
pub(crate) fn stored_samples(pg: &Cluster, db: &str) -> anyhow::Result<u64> {
    Ok(pg
        .psql(
            db,
            "SELECT (SELECT count(*) FROM samples) + (SELECT coalesce(sum(cardinality(t.offsets)), 0) \
             FROM samples_packed p JOIN sample_times t ON t.id = p.times_id AND t.lo = p.lo)",
        )?
        .parse()?)
}

/// Bytes on disk (heap, indexes, TOAST) of every partition of `tables` in `db`.
pub(crate) fn table_bytes(pg: &Cluster, db: &str, tables: &[&str]) -> anyhow::Result<u64> {
    let list = tables
        .iter()
        .map(|t| format!("'{t}'::regclass"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(pg
        .psql(
            db,
            &format!(
                "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits \
                 WHERE inhparent IN ({list})"
            ),
        )?
        .parse()?)
}

/// Bytes of the raw tables of `db`: `samples`, `samples_packed`, `sample_times`.
pub(crate) fn raw_bytes(pg: &Cluster, db: &str) -> anyhow::Result<u64> {
    table_bytes(pg, db, &["samples", "samples_packed", "sample_times"])
}

/// The corpus's series and its scrapes played `repeat` times in a row, in
/// 10-minute blocks, moved in time so that the last block ends before now.
fn corpus_blocks(
    path: &std::path::Path,
    repeat: u32,
) -> anyhow::Result<(Vec<SeriesMeta>, Vec<DecodedBlock>)> {
    let (corpus, _) = crate::corpus::load_corpus(path)?;
    let times = || corpus.scrapes.iter().map(|s| s.timestamp_ms);
    let (first, last) = (
        times().min().context("the corpus holds no scrape")?,
        times().max().unwrap_or_default(),
    );
    // Whole numbers of blocks, so that the windows keep their alignment.
    let span = (last - first).div_euclid(BLOCK_MS) * BLOCK_MS + BLOCK_MS;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let end = now - now.rem_euclid(BLOCK_MS);
    let shift = (end - BLOCK_MS - last).div_euclid(BLOCK_MS) * BLOCK_MS;
    let mut moved = corpus.clone();
    moved.scrapes.clear();
    for r in (0..i64::from(repeat)).rev() {
        moved.scrapes.extend(corpus.scrapes.iter().map(|s| {
            let mut s = s.clone();
            s.timestamp_ms += shift - r * span;
            s
        }));
    }
    let windows = crate::blocks::windows(&moved, BLOCK_MS);
    let mut builder = BlockBuilder::new();
    let frames = crate::blocks::encode_windows(&mut builder, &windows, DEFAULT_ZSTD_LEVEL)?;
    let blocks = frames
        .iter()
        .map(|f| {
            let frame = crate::simagent::stamp(f, AGENT, None);
            decode_block(&frame).context("decoding a corpus block")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((corpus.series, blocks))
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
            "  {name:<28} {:>9.2} s {:>14} samples/s\n",
            p.secs,
            group(p.samples_per_sec as u64)
        )
    };
    let mut out = String::new();
    for d in &r.data {
        out += &format!(
            "ingest ({}): {} series × {} blocks = {} samples, {} block(s) per transaction\n",
            d.name,
            group(d.series as u64),
            d.blocks,
            group(d.samples),
            r.blocks_per_batch
        );
        out += &line("bare binary COPY (rows)", &d.bare_copy);
        out += &line("sink, row per sample", &d.sink_rows);
        out += &line("sink, packed", &d.sink_packed);
        out += &line("sink, packed, all duplicates", &d.sink_duplicates);
        out += &format!(
            "  ratio packed / bare COPY   {:.2}  (goal ≥ 3)\n  ratio rows / bare COPY     {:.2}\n",
            d.ratio_packed, d.ratio_rows
        );
        out += &format!(
            "  bytes per raw sample: rows {:.1}, packed {:.2} (goal ≤ 8); per 1-minute rollup row {:.1}\n",
            d.bytes_per_sample_rows, d.bytes_per_sample_packed, d.bytes_per_rollup_1m
        );
        out += &format!(
            "  rollup rows written: 1 m {}, 1 h {}\n",
            group(d.rollups_1m),
            group(d.rollups_1h)
        );
    }
    out
}
