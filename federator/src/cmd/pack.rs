//! `pga-federator pack`: moves raw samples stored as rows into the packed layout,
//! in bounded batches, while the federator runs ([`crate::db::sink::Sink::pack`]).
//! The explicit migration of a database filled before packing.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use crate::db::rfc3339;
use crate::db::sink::{PackOptions, PackReport, PackedBatch, Sink};

/// The youngest rows `--older-than-secs` may reach: an agent's head block spans at
/// most an hour, and the ingest packs it itself once it is sealed.
const MIN_OLDER_THAN_SECS: u64 = 3600;

/// Exit code when the run stopped before the end (`--max-batches`, agents busy at
/// every try): run it again.
const EXIT_NOT_FINISHED: u8 = 2;

/// `pga-federator pack`'s arguments.
#[derive(Debug)]
pub struct Args {
    pub older_than_secs: u64,
    pub max_batches: Option<u64>,
    pub max_rows_per_batch: u64,
    pub json: bool,
}

pub(super) fn main(args: Args, path: Option<&Path>) -> anyhow::Result<ExitCode> {
    super::init_tracing();
    anyhow::ensure!(
        args.older_than_secs >= MIN_OLDER_THAN_SECS,
        "--older-than-secs {} is less than {MIN_OLDER_THAN_SECS}: an agent's open head \
         block (up to an hour) would be packed under the ingest; give 3600 or more",
        args.older_than_secs
    );
    anyhow::ensure!(
        args.max_rows_per_batch > 0,
        "--max-rows-per-batch must be at least 1"
    );
    let loaded = super::load_for_service(path)?;
    let report = super::runtime()?.block_on(async {
        let sink = Sink::connect(
            &loaded.config.database.url,
            crate::app::sink_options(&loaded.config)?,
        )
        .await?;
        // Checks the schema (applies pending migrations when the role may) and reads
        // whether TimescaleDB holds the samples.
        sink.start().await?;
        let options = PackOptions {
            older_than: Duration::from_secs(args.older_than_secs),
            max_rows_per_batch: args.max_rows_per_batch,
            max_batches: args.max_batches,
            budget: None,
            stop: None,
        };
        let mut total = (0u64, 0u64);
        let report = sink
            .pack(&options, |b| {
                total.0 += 1;
                total.1 += b.rows;
                progress(b, total);
            })
            .await?;
        anyhow::Ok(report)
    })?;
    let text = if args.json {
        let mut t = serde_json::to_string_pretty(&to_json(&report))?;
        t.push('\n');
        t
    } else {
        to_text(&report)
    };
    super::print(&text)?;
    Ok(if !report.failures.is_empty() {
        ExitCode::FAILURE
    } else if report.off.is_none() && !report.complete {
        ExitCode::from(EXIT_NOT_FINISHED)
    } else {
        ExitCode::SUCCESS
    })
}

/// One line per batch on standard error.
fn progress(b: &PackedBatch, (batches, rows): (u64, u64)) {
    let secs = b.elapsed.as_secs_f64();
    let line = format!(
        "packed {} hour {}: {} series, {} rows -> {} packed rows in {:.2} s ({:.0} rows/s); \
         so far {batches} batches, {rows} rows\n",
        b.agent,
        time(b.hour_ms),
        b.series,
        b.rows,
        b.packed_rows,
        secs,
        if secs > 0.0 {
            b.rows as f64 / secs
        } else {
            0.0
        }
    );
    // Progress is best effort: a closed standard error does not stop the packing.
    let _ignored = std::io::stderr().lock().write_all(line.as_bytes());
}

fn time(ms: i64) -> String {
    rfc3339(chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default())
}

/// The report as `--json` prints it.
pub fn to_json(r: &PackReport) -> serde_json::Value {
    json!({
        "off": r.off,
        "cutoff": (r.off.is_none()).then(|| time(r.cutoff_ms)),
        "complete": r.complete,
        "batches": r.batches,
        "rows_packed": r.rows_packed,
        "packed_rows_written": r.packed_rows,
        "sample_times_written": r.times_rows,
        "agents": r.agents,
        "agents_busy": r.agents_busy,
        "failures": r.failures.iter().map(|(agent, error)| json!({"agent": agent, "error": error})).collect::<Vec<_>>(),
        "remaining_rows": r.remaining_rows,
        "remaining_exact": r.complete,
        "seconds": r.elapsed.as_secs_f64(),
        "rows_per_second": r.rows_per_sec(),
    })
}

/// The report as text.
pub fn to_text(r: &PackReport) -> String {
    if let Some(off) = r.off {
        return format!("nothing to pack: {off}\n");
    }
    let mut out = format!(
        "packed {} rows older than {} into {} packed rows ({} timestamp lists) in {} batches \
         over {} agents, {:.1} s ({:.0} rows/s)\n",
        r.rows_packed,
        time(r.cutoff_ms),
        r.packed_rows,
        r.times_rows,
        r.batches,
        r.agents,
        r.elapsed.as_secs_f64(),
        r.rows_per_sec()
    );
    for (agent, error) in &r.failures {
        out.push_str(&format!("failed: agent {agent}: {error}\n"));
    }
    if r.complete {
        out.push_str("done: no raw sample older than the cutoff is left as a row\n");
    } else {
        if r.agents_busy > 0 {
            out.push_str(&format!(
                "{} agents were being ingested at every try and were left\n",
                r.agents_busy
            ));
        }
        out.push_str(&format!(
            "not finished: about {} rows older than the cutoff are left (planner estimate); \
             run `pga-federator pack` again to go on\n",
            r.remaining_rows
        ));
    }
    out
}
