//! `pga-agent logs`: recent PostgreSQL log events from the ring store (read-only, while
//! the agent runs or after it stopped), and `pga-agent logs --parse FILE…`: log files
//! analysed offline.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use pga_format::{LogEvent, LogEventKind, Severity};
use serde_json::{Value, json};

use crate::cli::LogsArgs;
use crate::collect::logs::classify::{ClassDetails, classify, to_event};
use crate::collect::logs::{LogEntry, LogFormat, LogParser};
use crate::now_ms;
use crate::query::{Zone, format_rfc3339, parse_time};
/// Bytes read from a file at a time.
const CHUNK_BYTES: usize = 64 * 1024;
/// Message column width when the terminal's is unknown.
const DEFAULT_COLUMNS: usize = 120;

/// One event of the analysis, with the figures classification found.
struct Analysed {
    event: LogEvent,
    details: ClassDetails,
}

/// What the files held.
#[derive(Default)]
struct Analysis {
    events: Vec<Analysed>,
    /// Entries without a timestamp or severity: no event can be made of them.
    skipped_entries: u64,
    skipped_lines: u64,
    /// Events before this index count but are not listed (`--limit`).
    shown_from: usize,
}

/// `pga-agent logs` without `--parse`: the stored events matching the filters.
pub fn recent(data_dir: &Path, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let now = now_ms();
    let since = parse_time(&args.since, now).context("--since")?;
    let kinds = args
        .kind
        .iter()
        .map(|k| {
            LogEventKind::ALL
                .into_iter()
                .find(|x| x.as_str().eq_ignore_ascii_case(k.trim()))
                .ok_or_else(|| {
                    let all: Vec<&str> = LogEventKind::ALL.iter().map(|k| k.as_str()).collect();
                    anyhow::anyhow!("--kind {k:?} is not a kind; use one of {}", all.join(", "))
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let severity = args
        .severity
        .as_deref()
        .map(|s| {
            Severity::ALL
                .into_iter()
                .find(|x| x.as_str().eq_ignore_ascii_case(s.trim()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--severity {s:?} is not a severity; use debug5..debug1, log, info, \
                         notice, warning, error, fatal or panic"
                    )
                })
        })
        .transpose()?;
    let reader = super::open_store(data_dir)?;
    let keep = |e: &LogEvent| {
        (kinds.is_empty() || kinds.contains(&e.kind))
            && severity.is_none_or(|s| e.severity >= s)
            && args
                .instance
                .as_deref()
                .is_none_or(|i| e.instance.as_deref() == Some(i))
    };
    let view = reader.view();
    let events = super::read_store(view.path(), || view.log_events(since, i64::MAX, &keep))?;
    let shown_from = events.len().saturating_sub(args.limit);
    let analysis = Analysis {
        events: events
            .into_iter()
            .map(|event| Analysed {
                event,
                details: ClassDetails::default(),
            })
            .collect(),
        shown_from,
        ..Analysis::default()
    };
    print(&analysis, args.json)
}

pub fn logs(args: &LogsArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.parse.is_empty(),
        "no files to analyse: give --parse FILE…"
    );
    let forced = args
        .log_format
        .as_deref()
        .map(str::parse::<LogFormat>)
        .transpose()?;
    let mut analysis = Analysis::default();
    for path in &args.parse {
        let format = forced.unwrap_or_else(|| format_of(path));
        analyse_file(path, format, &args.prefix, !args.no_redact, &mut analysis)?;
    }
    print(&analysis, args.json)
}

fn print(analysis: &Analysis, json: bool) -> anyhow::Result<ExitCode> {
    let text = if json {
        serde_json::to_string_pretty(&to_json(analysis)).context("encoding the events")? + "\n"
    } else {
        render(analysis, columns())
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the analysis")?;
    Ok(ExitCode::SUCCESS)
}

/// The format a file's extension suggests: `.csv` → csvlog, `.json` → jsonlog, else stderr.
fn format_of(path: &Path) -> LogFormat {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("csv") => LogFormat::Csvlog,
        Some(e) if e.eq_ignore_ascii_case("json") => LogFormat::Jsonlog,
        _ => LogFormat::Stderr,
    }
}

fn analyse_file(
    path: &Path,
    format: LogFormat,
    prefix: &str,
    redact: bool,
    analysis: &mut Analysis,
) -> anyhow::Result<()> {
    let mut parser = LogParser::new(format, prefix).context("--prefix")?;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = vec![0; CHUNK_BYTES];
    let mut entries = Vec::new();
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        parser.feed(&buf[..n], &mut entries);
        take(&mut entries, redact, analysis);
    }
    parser.finish(&mut entries);
    take(&mut entries, redact, analysis);
    analysis.skipped_lines += parser.stats().skipped_lines;
    Ok(())
}

fn take(entries: &mut Vec<LogEntry>, redact: bool, analysis: &mut Analysis) {
    for entry in entries.drain(..) {
        match to_event(&entry, None, redact) {
            Some(event) => analysis.events.push(Analysed {
                event,
                details: classify(&entry).details,
            }),
            None => analysis.skipped_entries += 1,
        }
    }
}

/// Events per kind, every kind in code order.
type KindCounts = Vec<(LogEventKind, u64)>;
/// Events per severity, every severity in code order.
type SeverityCounts = Vec<(Severity, u64)>;

/// Counts per kind and per severity, every kind and severity listed (zeros included)
/// in code order, so the output's shape does not depend on the input.
fn counts(analysis: &Analysis) -> (KindCounts, SeverityCounts) {
    let mut kinds: BTreeMap<usize, u64> = BTreeMap::new();
    let mut sevs: BTreeMap<usize, u64> = BTreeMap::new();
    for a in &analysis.events {
        let k = LogEventKind::ALL.iter().position(|k| *k == a.event.kind);
        let s = Severity::ALL.iter().position(|s| *s == a.event.severity);
        *kinds.entry(k.unwrap_or_default()).or_default() += 1;
        *sevs.entry(s.unwrap_or_default()).or_default() += 1;
    }
    (
        LogEventKind::ALL
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, kinds.get(&i).copied().unwrap_or(0)))
            .collect(),
        Severity::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, sevs.get(&i).copied().unwrap_or(0)))
            .collect(),
    )
}

fn sqlstate(event: &LogEvent) -> Option<String> {
    event
        .sqlstate
        .map(|c| String::from_utf8_lossy(&c).into_owned())
}

fn to_json(analysis: &Analysis) -> Value {
    let (kinds, sevs) = counts(analysis);
    let by_kind: serde_json::Map<String, Value> = kinds
        .into_iter()
        .map(|(k, n)| (k.as_str().to_owned(), n.into()))
        .collect();
    let by_severity: serde_json::Map<String, Value> = sevs
        .into_iter()
        .map(|(s, n)| (s.as_str().to_owned(), n.into()))
        .collect();
    let events: Vec<Value> = analysis.events[analysis.shown_from..]
        .iter()
        .map(|Analysed { event: e, details }| {
            json!({
                "time": format_rfc3339(e.timestamp_ms, Zone::Utc, true),
                "timestamp_ms": e.timestamp_ms,
                "severity": e.severity.as_str(),
                "kind": e.kind.as_str(),
                "sqlstate": sqlstate(e),
                "duration_ms": e.duration_ms,
                "pid": e.pid,
                "instance": e.instance,
                "user": e.user,
                "database": e.database,
                "application": e.application,
                "message": e.message,
                "details": details,
            })
        })
        .collect();
    json!({
        "counts_by_kind": by_kind,
        "counts_by_severity": by_severity,
        "skipped_entries": analysis.skipped_entries,
        "skipped_lines": analysis.skipped_lines,
        "events": events,
    })
}

/// The terminal's width from `COLUMNS`, else [`DEFAULT_COLUMNS`].
fn columns() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&c: &usize| c >= 40)
        .unwrap_or(DEFAULT_COLUMNS)
}

/// Appends one formatted line to a `String`.
macro_rules! line {
    ($o:expr, $($fmt:tt)*) => {{
        $o.push_str(&format!($($fmt)*));
        $o.push('\n');
    }};
}

/// The tables: counts by kind (non-zero), by severity (non-zero), then the events, each
/// on one line with its message flattened and cut to the terminal width.
fn render(analysis: &Analysis, columns: usize) -> String {
    let (kinds, sevs) = counts(analysis);
    let mut o = String::new();
    line!(o, "{} events", analysis.events.len());
    if analysis.skipped_entries > 0 || analysis.skipped_lines > 0 {
        line!(
            o,
            "skipped: {} entries without time or severity, {} lines that are no entry",
            analysis.skipped_entries,
            analysis.skipped_lines
        );
    }
    o.push('\n');
    line!(o, "{:<16} {:>8}", "KIND", "COUNT");
    for (k, n) in kinds.iter().filter(|(_, n)| *n > 0) {
        line!(o, "{:<16} {n:>8}", k.as_str());
    }
    o.push('\n');
    line!(o, "{:<16} {:>8}", "SEVERITY", "COUNT");
    for (s, n) in sevs.iter().filter(|(_, n)| *n > 0) {
        line!(o, "{:<16} {n:>8}", s.as_str());
    }
    if analysis.events.is_empty() {
        return o;
    }
    o.push('\n');
    let head = format!(
        "{:<24} {:<8} {:<14} {:<5} {:>12} {:<20} ",
        "TIME", "SEVERITY", "KIND", "STATE", "DURATION", "USER@DB"
    );
    let room = columns.saturating_sub(head.chars().count()).max(20);
    line!(o, "{head}MESSAGE");
    if analysis.shown_from > 0 {
        line!(
            o,
            "the newest {} of {} events (--limit):",
            analysis.events.len() - analysis.shown_from,
            analysis.events.len()
        );
    }
    for Analysed { event: e, .. } in &analysis.events[analysis.shown_from..] {
        let who = match (&e.user, &e.database) {
            (None, None) => "-".to_owned(),
            (u, d) => format!(
                "{}@{}",
                u.as_deref().unwrap_or(""),
                d.as_deref().unwrap_or("")
            ),
        };
        let duration = e
            .duration_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.3} ms"));
        line!(
            o,
            "{:<24} {:<8} {:<14} {:<5} {:>12} {:<20} {}",
            format_rfc3339(e.timestamp_ms, Zone::Utc, true),
            e.severity.as_str(),
            e.kind.as_str(),
            sqlstate(e).unwrap_or_else(|| "-".to_owned()),
            duration,
            cut(&who, 20),
            cut(&flatten(&e.message), room)
        );
    }
    o
}

/// Whitespace runs (newlines included) as one space.
fn flatten(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `width` characters, the last one `…` when cut.
fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_extension() {
        assert_eq!(format_of(Path::new("pg.csv")), LogFormat::Csvlog);
        assert_eq!(format_of(Path::new("pg.JSON")), LogFormat::Jsonlog);
        assert_eq!(
            format_of(Path::new("postgresql-Mon.log")),
            LogFormat::Stderr
        );
        assert_eq!(format_of(Path::new("noext")), LogFormat::Stderr);
    }

    #[test]
    fn messages_are_flattened_and_cut() {
        assert_eq!(flatten("a\n  b\tc"), "a b c");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
        assert_eq!(cut("ééééé", 3), "éé…");
    }

    #[test]
    fn rejects_unknown_format_by_name() {
        let args = LogsArgs {
            parse: vec!["x.log".into()],
            log_format: Some("syslog".into()),
            prefix: "%m ".into(),
            json: false,
            no_redact: false,
            kind: Vec::new(),
            severity: None,
            instance: None,
            since: "1h".into(),
            limit: 100,
        };
        let err = logs(&args).unwrap_err().to_string();
        assert!(err.contains("syslog"), "{err}");
    }
}
