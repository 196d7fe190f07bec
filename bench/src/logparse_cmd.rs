//! `pga-bench logparse`: parse throughput of the agent's log parsers, per format.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, ensure};
use pga_agent::collect::logs::{LogFormat, LogParser};
use serde::Serialize;

use crate::cli::LogparseArgs;

/// The `log_line_prefix` of the generated stderr log.
pub const PREFIX: &str = "%m [%p] %q%u@%d/%a ";

/// Bytes handed to `feed` at a time, like a tailer's read buffer.
const CHUNK_BYTES: usize = 64 * 1024;

/// One format's measurement.
#[derive(Debug, Serialize)]
pub struct FormatReport {
    pub format: &'static str,
    pub bytes: u64,
    pub entries: u64,
    pub skipped_lines: u64,
    pub secs: f64,
    pub mb_per_sec: f64,
    pub entries_per_sec: f64,
}

/// One logical entry of the generated workload.
struct Sample {
    pid: u32,
    session: bool,
    severity: &'static str,
    state: &'static str,
    message: String,
    statement: Option<String>,
}

/// The i-th entry of a realistic mix: mostly duration lines, some errors with their
/// statement (multi-line), checkpoints, connections.
fn sample(i: u64) -> Sample {
    let pid = 1000 + (i % 97) as u32;
    let s = |severity, state, message: String, statement: Option<String>| Sample {
        pid,
        session: true,
        severity,
        state,
        message,
        statement,
    };
    match i % 20 {
        0..=11 => s(
            "LOG",
            "00000",
            format!(
                "duration: {}.{:03} ms  statement: SELECT id, name, email FROM users WHERE id = {} AND tenant_id = {}",
                i % 500,
                i % 1000,
                i,
                i % 13
            ),
            None,
        ),
        12 => s(
            "ERROR",
            "22012",
            "division by zero".to_owned(),
            Some(format!("SELECT total / count FROM stats WHERE id = {i}")),
        ),
        13 => s(
            "ERROR",
            "42601",
            "syntax error at or near \"FORM\" at character 10".to_owned(),
            Some(format!(
                "SELECT *\n  FORM orders o\n  JOIN customers c ON c.id = o.customer_id\n WHERE o.id = {i}"
            )),
        ),
        14 => Sample {
            pid: 77,
            session: false,
            severity: "LOG",
            state: "00000",
            message: "checkpoint starting: time".to_owned(),
            statement: None,
        },
        15 => Sample {
            pid: 77,
            session: false,
            severity: "LOG",
            state: "00000",
            message: format!(
                "checkpoint complete: wrote {} buffers (0.1%); 0 WAL file(s) added, 0 removed, 1 recycled; write=1.204 s, sync=0.002 s, total=1.219 s; sync files=12, longest=0.001 s, average=0.001 s; distance=4096 kB, estimate=4096 kB",
                i % 4000
            ),
            statement: None,
        },
        16 => s(
            "LOG",
            "00000",
            "connection received: host=10.1.2.3 port=51234".to_owned(),
            None,
        ),
        17 => s(
            "LOG",
            "00000",
            "connection authorized: user=app database=shop application_name=web".to_owned(),
            None,
        ),
        18 => s(
            "LOG",
            "00000",
            "disconnection: session time: 0:00:01.234 user=app database=shop host=10.1.2.3 port=51234".to_owned(),
            None,
        ),
        _ => s(
            "WARNING",
            "01000",
            "there is no transaction in progress".to_owned(),
            None,
        ),
    }
}

fn timestamp(i: u64) -> String {
    let ms = i * 7;
    let secs = ms / 1000;
    format!(
        "2024-03-01 {:02}:{:02}:{:02}.{:03} UTC",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ms % 1000
    )
}

fn csv_quote(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(&s.replace('"', "\"\""));
    out.push('"');
}

fn write_entry(out: &mut String, format: LogFormat, i: u64, e: &Sample) -> anyhow::Result<()> {
    let ts = timestamp(i);
    let (user, db, app) = if e.session {
        ("app", "shop", "web")
    } else {
        ("", "", "")
    };
    match format {
        LogFormat::Stderr => {
            let session = if e.session {
                format!("{user}@{db}/{app} ")
            } else {
                String::new()
            };
            let head = format!("{ts} [{}] {session}", e.pid);
            writeln!(out, "{head}{}:  {}", e.severity, e.message)?;
            if let Some(stmt) = &e.statement {
                writeln!(out, "{head}STATEMENT:  {}", stmt.replace('\n', "\n\t"))?;
            }
        }
        LogFormat::Csvlog => {
            write!(out, "{ts},")?;
            for v in [user, db] {
                if !v.is_empty() {
                    csv_quote(out, v);
                }
                out.push(',');
            }
            write!(
                out,
                "{},,65e1f2a0.{:x},{},,{ts},3/{},0,{},{},",
                e.pid, e.pid, i, i, e.severity, e.state
            )?;
            csv_quote(out, &e.message);
            out.push_str(",,,,,,");
            if let Some(stmt) = &e.statement {
                csv_quote(out, stmt);
            }
            out.push_str(",,,");
            csv_quote(out, app);
            out.push(',');
            csv_quote(
                out,
                if e.session {
                    "client backend"
                } else {
                    "checkpointer"
                },
            );
            out.push_str(",,0\n");
        }
        LogFormat::Jsonlog => {
            let mut v = serde_json::json!({
                "timestamp": ts,
                "pid": e.pid,
                "session_id": format!("65e1f2a0.{:x}", e.pid),
                "line_num": i,
                "error_severity": e.severity,
                "state_code": e.state,
                "message": e.message,
                "backend_type": if e.session { "client backend" } else { "checkpointer" },
                "query_id": 0,
            });
            if e.session {
                v["user"] = user.into();
                v["dbname"] = db.into();
                v["application_name"] = app.into();
            }
            if let Some(stmt) = &e.statement {
                v["statement"] = stmt.as_str().into();
            }
            out.push_str(&serde_json::to_string(&v)?);
            out.push('\n');
        }
    }
    Ok(())
}

/// A log of about `size` bytes in `format`, and how many entries it holds.
pub fn generate(format: LogFormat, size: usize) -> anyhow::Result<(Vec<u8>, u64)> {
    let mut out = String::with_capacity(size + 4096);
    let mut i = 0;
    while out.len() < size {
        write_entry(&mut out, format, i, &sample(i))?;
        i += 1;
    }
    Ok((out.into_bytes(), i))
}

/// Generates and parses one log per format.
pub fn measure(size_mb: u64) -> anyhow::Result<Vec<FormatReport>> {
    let size = usize::try_from(size_mb << 20).context("--size-mb too large")?;
    let mut reports = Vec::new();
    for format in LogFormat::ALL {
        let (log, expected) = generate(format, size)?;
        let mut parser = LogParser::new(format, PREFIX)?;
        let mut out = Vec::with_capacity(1024);
        let mut entries = 0u64;
        let start = Instant::now();
        for chunk in log.chunks(CHUNK_BYTES) {
            parser.feed(chunk, &mut out);
            entries += out.len() as u64;
            out.clear();
        }
        parser.finish(&mut out);
        entries += out.len() as u64;
        let secs = start.elapsed().as_secs_f64();
        let stats = parser.stats();
        ensure!(
            entries == expected && stats.skipped_lines == 0,
            "{format}: parsed {entries} entries of {expected}, {} lines skipped",
            stats.skipped_lines
        );
        reports.push(FormatReport {
            format: format.as_str(),
            bytes: log.len() as u64,
            entries,
            skipped_lines: stats.skipped_lines,
            secs,
            mb_per_sec: log.len() as f64 / (1 << 20) as f64 / secs,
            entries_per_sec: entries as f64 / secs,
        });
    }
    Ok(reports)
}

pub fn run(args: &LogparseArgs) -> anyhow::Result<()> {
    let reports = measure(args.size_mb)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!(
            "{:<8} {:>10} {:>11} {:>8} {:>10} {:>13}",
            "format", "MiB", "entries", "secs", "MiB/s", "entries/s"
        );
        for r in &reports {
            println!(
                "{:<8} {:>10.1} {:>11} {:>8.3} {:>10.1} {:>13.0}",
                r.format,
                r.bytes as f64 / (1 << 20) as f64,
                r.entries,
                r.secs,
                r.mb_per_sec,
                r.entries_per_sec
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_logs_parse_completely() {
        let reports = measure(1).unwrap();
        assert_eq!(reports.len(), 3);
        // `measure` fails unless every generated entry came back and nothing was skipped.
        assert!(
            reports
                .iter()
                .all(|r| r.entries > 1000 && r.bytes >= 1 << 20)
        );
    }
}
