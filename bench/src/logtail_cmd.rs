//! `pga-bench logtail`: the agent's log collector end to end, per format: read a log
//! file in passes of `read_bytes_per_pass`, parse, classify, redact, count, and store
//! each pass's events, counters and cursor in one transaction of a real ring store.

use std::time::Instant;

use anyhow::{Context, ensure};
use pga_agent::collect::logs::LogFormat;
use pga_agent::collect::logs::collector::{LogCollector, LogOptions};
use pga_agent::collect::logs::discover::Explicit;
use pga_agent::collect::{Collector as _, Emitter};
use pga_agent::store::{Store, StoreOptions};
use serde::Serialize;

use crate::cli::LogtailArgs;
use crate::logparse_cmd::{PREFIX, generate};

/// One format's measurement.
#[derive(Debug, Serialize)]
pub struct TailReport {
    pub format: &'static str,
    pub bytes: u64,
    pub events: u64,
    pub passes: u64,
    pub secs: f64,
    pub mb_per_sec: f64,
    pub events_per_sec: f64,
    /// The slowest pass, read to commit.
    pub max_pass_ms: f64,
}

/// Writes one generated log per format and runs the collector over it to the end.
pub fn measure(size_mb: u64, budget: u64) -> anyhow::Result<Vec<TailReport>> {
    let size = usize::try_from(size_mb << 20).context("--size-mb too large")?;
    let mut reports = Vec::new();
    for format in LogFormat::ALL {
        let dir = tempfile::tempdir()?;
        let (log, expected) = generate(format, size)?;
        let name = match format {
            LogFormat::Stderr => "postgresql.log",
            LogFormat::Csvlog => "postgresql.csv",
            LogFormat::Jsonlog => "postgresql.json",
        };
        let path = dir.path().join(name);
        std::fs::write(&path, &log)?;
        let (mut store, _) = Store::open(
            &dir.path().join("data"),
            StoreOptions {
                max_bytes: 8 << 30,
                retention_ms: 0,
                block_ms: 600_000,
            },
        )?;
        let opts = LogOptions {
            explicit: Explicit {
                path: Some(path.display().to_string()),
                format: Some(format),
                prefix: Some(PREFIX.to_owned()),
            },
            redact: true,
            drop_unclassified: false,
            read_bytes_per_pass: budget,
            max_files: 64,
        };
        let mut collector = LogCollector::new("bench", None, opts, None);
        let (mut events, mut passes, mut max_pass) = (0u64, 0u64, 0f64);
        let mut ts = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis(),
        )?;
        let start = Instant::now();
        loop {
            let pass = Instant::now();
            let mut out = Emitter::new();
            let errors = collector.collect(&mut out);
            ensure!(errors.is_empty(), "{format}: {errors:?}");
            let logs = out.take_logs();
            let samples = out.take();
            ts += 1000;
            store.append_with_logs(ts, &samples, &logs, None)?;
            max_pass = max_pass.max(pass.elapsed().as_secs_f64());
            passes += 1;
            if logs.events.is_empty() {
                break;
            }
            events += logs.events.len() as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        ensure!(
            events == expected,
            "{format}: {events} events stored, {expected} entries written"
        );
        reports.push(TailReport {
            format: format.as_str(),
            bytes: log.len() as u64,
            events,
            passes,
            secs,
            mb_per_sec: log.len() as f64 / (1 << 20) as f64 / secs,
            events_per_sec: events as f64 / secs,
            max_pass_ms: max_pass * 1000.0,
        });
    }
    Ok(reports)
}

pub fn run(args: &LogtailArgs) -> anyhow::Result<()> {
    let reports = measure(args.size_mb, args.read_bytes_per_pass)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!(
            "{:<8} {:>8} {:>10} {:>7} {:>8} {:>8} {:>11} {:>12}",
            "format", "MiB", "events", "passes", "secs", "MiB/s", "events/s", "max pass ms"
        );
        for r in &reports {
            println!(
                "{:<8} {:>8.1} {:>10} {:>7} {:>8.2} {:>8.1} {:>11.0} {:>12.1}",
                r.format,
                r.bytes as f64 / (1 << 20) as f64,
                r.events,
                r.passes,
                r.secs,
                r.mb_per_sec,
                r.events_per_sec,
                r.max_pass_ms
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_entry_is_stored() {
        let reports = measure(1, 256 << 10).unwrap();
        assert_eq!(reports.len(), 3);
        assert!(reports.iter().all(|r| r.passes >= 4 && r.events > 1000));
    }
}
