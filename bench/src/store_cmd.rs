//! `pga-bench store`: write cost per collection and query time of the agent's ring store.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pga_agent::collect::Emitted;
use pga_agent::query::{self, Format, Function, RenderOptions};
use pga_agent::store::{Store, StoreOptions, StoreReader};
use pga_format::MetricKind;
use serde::Serialize;

use crate::cli::StoreArgs;

/// What the command measured.
#[derive(Debug, Serialize)]
pub struct StoreReport {
    pub series: usize,
    pub collections: usize,
    pub samples: u64,
    pub file_bytes: u64,
    pub bytes_per_sample: f64,
    pub write_ms_mean: f64,
    pub write_ms_p50: f64,
    pub write_ms_p99: f64,
    pub write_us_per_sample: f64,
    pub query_points: usize,
    pub query_raw_ms_p50: f64,
    pub query_rate_ms_p50: f64,
    pub agent_bin_ms_p50: Option<f64>,
}

fn batch(series: usize, tick: u64) -> Vec<Emitted> {
    (0..series)
        .map(|i| {
            let h = (tick.wrapping_mul(0x9E37_79B9) ^ (i as u64).wrapping_mul(0x85EB_CA6B)) % 1000;
            let (name, kind, value) = match i % 3 {
                0 => ("bench_setting", MetricKind::Gauge, (i % 7) as f64),
                1 => (
                    "bench_ops_total",
                    MetricKind::Counter,
                    (tick * 50 + h) as f64,
                ),
                _ => ("bench_ratio", MetricKind::Gauge, (h as f64) / 100.0),
            };
            Emitted {
                name: name.to_owned(),
                labels: vec![("i".to_owned(), i.to_string())],
                kind,
                unit: "",
                help: "Benchmark series.",
                value,
            }
        })
        .collect()
}

/// The `p` quantile (0..=1) of ascending values, nearest rank; 0 when empty.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Milliseconds of a duration, as a float.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the query pipeline of `pga-agent query` in process, output discarded.
fn query_once(
    dir: &Path,
    selector: &str,
    start: i64,
    end: i64,
    function: Option<Function>,
    step: i64,
) -> anyhow::Result<usize> {
    let reader = StoreReader::open(dir)?;
    let sel = query::parse_selector(selector).map_err(|e| anyhow::anyhow!("{e}"))?;
    let results =
        pga_agent::cmd::query::evaluate(&reader.view(), &sel, function, start, end, step)?;
    let points = results.iter().map(|r| r.points.len()).sum();
    query::render(
        &results,
        Format::Table,
        &mut std::io::sink(),
        &RenderOptions::default(),
    )?;
    Ok(points)
}

/// `dir`, or a new temporary directory (removed when the returned guard drops).
pub fn dir_or_temp(
    dir: Option<&std::path::Path>,
) -> anyhow::Result<(std::path::PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(d) => Ok((d.to_owned(), None)),
        None => {
            let tmp = tempfile::tempdir().context("creating a temporary directory")?;
            Ok((tmp.path().to_owned(), Some(tmp)))
        }
    }
}

pub fn run(args: &StoreArgs) -> anyhow::Result<()> {
    let (dir, _tmp) = crate::store_cmd::dir_or_temp(args.dir.as_deref())?;
    let interval_ms = i64::from(args.interval_secs) * 1000;
    let collections = (u64::from(args.hours) * 3600 / u64::from(args.interval_secs)) as usize;
    let opts = StoreOptions {
        max_bytes: 1 << 30,
        retention_ms: 0,
        block_ms: 600_000,
    };
    let (mut store, _) = Store::open(&dir, opts).context("opening the store")?;
    if !store.series().is_empty() {
        bail!(
            "{} already holds a store; give an empty --dir",
            dir.display()
        );
    }
    // 2026-11-24T00:00:00Z, on a block boundary.
    let start = 1_795_500_000_000i64;
    let mut write_ms = Vec::with_capacity(collections);
    let mut batch_time = Duration::ZERO;
    eprintln!(
        "writing {collections} collections of {} series into {}",
        args.series,
        dir.display()
    );
    for tick in 0..collections {
        let t = Instant::now();
        let b = batch(args.series, tick as u64);
        batch_time += t.elapsed();
        let t = Instant::now();
        store.append(start + tick as i64 * interval_ms, &b, None)?;
        write_ms.push(ms(t.elapsed()));
    }
    let samples = (collections * args.series) as u64;
    let file_bytes = store.file_bytes();
    drop(store);
    let mean = write_ms.iter().sum::<f64>() / write_ms.len().max(1) as f64;
    write_ms.sort_by(f64::total_cmp);

    let end = start + (collections as i64 - 1) * interval_ms;
    let selector = r#"bench_ops_total{i="1"}"#;
    let mut raw_ms = Vec::new();
    let mut rate_ms = Vec::new();
    let mut points = 0;
    for _ in 0..15 {
        let t = Instant::now();
        points = query_once(&dir, selector, start, end, None, interval_ms)?;
        raw_ms.push(ms(t.elapsed()));
        let t = Instant::now();
        query_once(&dir, selector, start, end, Some(Function::Rate), 300_000)?;
        rate_ms.push(ms(t.elapsed()));
    }
    raw_ms.sort_by(f64::total_cmp);
    rate_ms.sort_by(f64::total_cmp);

    let agent_bin_ms_p50 = match &args.agent_bin {
        Some(bin) => {
            let mut times = Vec::new();
            for _ in 0..9 {
                let t = Instant::now();
                let out = Command::new(bin)
                    .args(["query", selector, "--data-dir"])
                    .arg(&dir)
                    .args([
                        "--since",
                        &start.to_string(),
                        "--until",
                        &end.to_string(),
                        "--format",
                        "csv",
                    ])
                    .output()
                    .with_context(|| format!("running {}", bin.display()))?;
                times.push(ms(t.elapsed()));
                if !out.status.success() {
                    bail!(
                        "pga-agent query failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
                if lines < collections {
                    bail!("pga-agent query printed {lines} lines, expected {collections} samples");
                }
            }
            times.sort_by(f64::total_cmp);
            Some(percentile(&times, 0.5))
        }
        None => None,
    };

    let report = StoreReport {
        series: args.series,
        collections,
        samples,
        file_bytes,
        bytes_per_sample: file_bytes as f64 / samples.max(1) as f64,
        write_ms_mean: mean,
        write_ms_p50: percentile(&write_ms, 0.5),
        write_ms_p99: percentile(&write_ms, 0.99),
        write_us_per_sample: mean * 1000.0 / args.series.max(1) as f64,
        query_points: points,
        query_raw_ms_p50: percentile(&raw_ms, 0.5),
        query_rate_ms_p50: percentile(&rate_ms, 0.5),
        agent_bin_ms_p50,
    };
    if points != collections {
        bail!("the query returned {points} samples, expected {collections}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "store      {} series × {} collections = {} samples, {} bytes on disk ({:.3} bytes/sample)",
            report.series,
            report.collections,
            report.samples,
            report.file_bytes,
            report.bytes_per_sample
        );
        println!(
            "write      one collection: mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms ({:.2} µs/sample; generating the batch took {:.1} s in all)",
            report.write_ms_mean,
            report.write_ms_p50,
            report.write_ms_p99,
            report.write_us_per_sample,
            batch_time.as_secs_f64()
        );
        println!(
            "query      {selector} over {} h: {} samples in {:.1} ms (p50, in process); rate at 5m steps {:.1} ms",
            args.hours, report.query_points, report.query_raw_ms_p50, report.query_rate_ms_p50
        );
        if let Some(t) = report.agent_bin_ms_p50 {
            println!(
                "pga-agent  the same query through the binary, process start to exit: {t:.1} ms (p50)"
            );
        }
    }
    Ok(())
}
