//! The log collector: one per instance, in the fast group. Each pass it finds the
//! instance's log ([`super::discover`]), reads what is new within a byte budget
//! ([`super::tail`]), turns entries into redacted events for the block's log column,
//! and counts them. Events, counters and the cursor (file offsets and the counters'
//! running totals) leave in one pass and are stored in one transaction, so a crash
//! neither loses nor repeats an event and counters continue across restarts.
//!
//! # Counters (all with the `instance` label)
//!
//! | series | what |
//! |---|---|
//! | `pg_log_messages_total{severity,sqlstate_class}` | entries by severity and SQLSTATE class (`""` when none) |
//! | `pg_log_events_total{kind}` | entries by event kind |
//! | `pg_log_slow_statements_total`, `pg_log_slow_statement_seconds_total` | statements over `log_min_duration_statement`, and their summed duration |
//! | `pg_log_slow_statements_by_duration_total{le_seconds}` | the same, cumulative by duration bound (`0.01` … `300`, `+Inf`): a histogram whose bound label is `le_seconds`, since the block format has no histogram type (promtool rejects `le` on counters); `label_replace` it to `le` for `histogram_quantile` |
//! | `pg_log_checkpoints_total` | completed checkpoints and restartpoints |
//! | `pg_log_autovacuum_runs_total`, `pg_log_autoanalyze_runs_total` | automatic vacuum and analyze runs |
//! | `pg_log_deadlocks_total`, `pg_log_lock_waits_total` | deadlocks, lock-wait reports (`log_lock_waits`) |
//! | `pg_log_temp_files_total`, `pg_log_temp_file_bytes_total` | temporary files and their bytes |
//! | `pg_log_auth_failures_total` | failed authentications |
//! | `pga_agent_log_bytes_read_total`, `pga_agent_log_lines_skipped_total`, `pga_agent_log_lines_oversized_total`, `pga_agent_log_entries_skipped_total`, `pga_agent_log_truncations_total`, `pga_agent_log_files`, `pga_agent_log_behind` | the collector's own health |

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pga_format::LogEventKind;
use serde::{Deserialize, Serialize};

use super::classify::{classify, to_event_as};
use super::discover::{DiscoverError, Explicit, LogLocation, locate};
use super::stderr::PrefixError;
use super::tail::{FileCursor, Tailer};
use super::{LogEntry, LogParser};
use crate::collect::INSTANCE_LABEL;
use crate::collect::server_facts::SharedServerFacts;
use crate::collect::{CollectError, Collector, Emitter, Group};
use crate::config::LogsConfig;

/// Upper bounds (seconds) of the slow-statement histogram; `+Inf` follows.
pub const SLOW_BUCKETS: [f64; 9] = [0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];
/// At most one warning about skipped lines per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Version of the saved cursor's layout.
const CURSOR_VERSION: u32 = 1;

/// How the collector reads, from `[logs]`.
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub explicit: Explicit,
    pub redact: bool,
    pub drop_unclassified: bool,
    pub read_bytes_per_pass: u64,
    pub max_files: usize,
}

impl LogOptions {
    pub fn from_config(c: &LogsConfig) -> Self {
        LogOptions {
            explicit: Explicit {
                path: c.path.clone(),
                format: c.log_format(),
                prefix: c.prefix.clone(),
            },
            redact: c.redact,
            drop_unclassified: c.drop_unclassified,
            read_bytes_per_pass: c.read_bytes_per_pass,
            max_files: c.max_files as usize,
        }
    }
}

/// Running totals of the counters, saved with the cursor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub messages: BTreeMap<(String, String), u64>,
    pub kinds: BTreeMap<String, u64>,
    pub slow_count: u64,
    pub slow_seconds: f64,
    /// Per bucket of [`SLOW_BUCKETS`] plus `+Inf`, not cumulative.
    pub slow_buckets: Vec<u64>,
    pub checkpoints: u64,
    pub autovacuum: u64,
    pub autoanalyze: u64,
    pub deadlocks: u64,
    pub lock_waits: u64,
    pub temp_files: u64,
    pub temp_bytes: u64,
    pub auth_failures: u64,
    pub bytes_read: u64,
    pub lines_skipped: u64,
    pub lines_oversized: u64,
    pub entries_skipped: u64,
    pub truncations: u64,
}

/// What the store keeps for one instance's log.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    version: u32,
    /// The log followed: files of another location are not this one's.
    location: String,
    files: Vec<FileCursor>,
    totals: Totals,
}

/// Follows one instance's server log.
pub struct LogCollector {
    name: &'static str,
    cursor_name: String,
    instance: String,
    facts: Option<SharedServerFacts>,
    opts: LogOptions,
    tail: Option<(LogLocation, Tailer)>,
    /// The saved cursor not yet taken up by a tailer.
    saved: Option<Saved>,
    totals: Totals,
    files: usize,
    behind: bool,
    last_warn: Option<Instant>,
    unwarned_skipped: u64,
}

impl std::fmt::Debug for LogCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCollector")
            .field(INSTANCE_LABEL, &self.instance)
            .field("location", &self.tail.as_ref().map(|t| &t.0))
            .finish_non_exhaustive()
    }
}

/// The store cursor name of an instance's log collector.
pub fn cursor_name(instance: &str) -> String {
    format!("logs:{instance}")
}

impl LogCollector {
    /// A collector for `instance`, finding the log from `facts` (the instance's
    /// PostgreSQL collector fills them) unless `opts` name it. `saved` is what the
    /// store holds under [`cursor_name`] from a previous run.
    pub fn new(
        instance: &str,
        facts: Option<SharedServerFacts>,
        opts: LogOptions,
        saved: Option<&[u8]>,
    ) -> Self {
        let name: &'static str = Box::leak(format!("logs:{instance}").into_boxed_str());
        let saved = saved.and_then(|bytes| match postcard::from_bytes::<Saved>(bytes) {
            Ok(s) if s.version == CURSOR_VERSION => Some(s),
            Ok(s) => {
                tracing::warn!(instance, version = s.version, "log cursor of another version; reading the log as new");
                None
            }
            Err(e) => {
                tracing::warn!(instance, error = %e, "log cursor unreadable; reading the log as new");
                None
            }
        });
        let totals = saved.as_ref().map(|s| s.totals.clone()).unwrap_or_default();
        LogCollector {
            name,
            cursor_name: cursor_name(instance),
            instance: instance.to_owned(),
            facts,
            opts,
            tail: None,
            saved,
            totals,
            files: 0,
            behind: false,
            last_warn: None,
            unwarned_skipped: 0,
        }
    }

    /// The running totals (for tests and `status`).
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    fn read(&mut self, pass_ms: i64, out: &mut Emitter) -> Result<Vec<CollectError>, CollectError> {
        let facts = self
            .facts
            .as_ref()
            .and_then(|f| f.read().ok().and_then(|g| g.clone()));
        let loc = match locate(&self.opts.explicit, facts.as_ref()) {
            Ok(loc) => loc,
            // The PostgreSQL collector reports an unreachable server; not said twice.
            Err(DiscoverError::NoFacts) => {
                tracing::debug!(instance = %self.instance, "log: waiting for the server's log settings");
                return Ok(Vec::new());
            }
            Err(error) => {
                return Err(CollectError::LogLocation {
                    instance: self.instance.clone(),
                    error,
                });
            }
        };
        if self.tail.as_ref().map(|t| &t.0) != Some(&loc) {
            self.start_tailer(loc)?;
        }
        let Some((loc, tailer)) = self.tail.as_mut() else {
            return Ok(Vec::new());
        };
        let paths = loc.list().map_err(|error| CollectError::LogLocation {
            instance: self.instance.clone(),
            error,
        })?;
        if paths.is_empty() {
            return Err(CollectError::LogLocation {
                instance: self.instance.clone(),
                error: DiscoverError::NoFiles {
                    dir: loc.dir.clone(),
                    pattern: loc.pattern.clone(),
                },
            });
        }
        let mut entries = Vec::new();
        let report = tailer.pass(&paths, self.opts.read_bytes_per_pass, &mut entries);
        self.files = report.files;
        self.behind = report.behind;
        let t = &mut self.totals;
        t.bytes_read += report.bytes_read;
        t.lines_skipped += report.stats.skipped_lines;
        t.lines_oversized += report.stats.oversized_lines;
        t.truncations += report.truncations;
        for mut entry in entries {
            if entry.timestamp_ms.is_none() {
                // A prefix without a time: the time the agent read it.
                entry.timestamp_ms = Some(pass_ms);
            }
            self.take_entry(&entry, out);
        }
        let skipped = report.stats.skipped_lines + report.stats.oversized_lines;
        self.unwarned_skipped += skipped;
        if self.unwarned_skipped > 0 && self.last_warn.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                instance = %self.instance,
                lines = self.unwarned_skipped,
                "skipped log lines that are no entry of the expected format (garbage, binary junk, \
                 a log_line_prefix that does not match) or were cut off (over 1 MiB); see \
                 pga_agent_log_lines_skipped_total"
            );
            self.unwarned_skipped = 0;
            self.last_warn = Some(Instant::now());
        }
        Ok(report.errors)
    }

    fn start_tailer(&mut self, loc: LogLocation) -> Result<(), CollectError> {
        let prefix = usable_prefix(&loc.prefix, &self.instance);
        let mut tailer =
            Tailer::new(loc.format, &prefix, self.opts.max_files).map_err(|error| {
                CollectError::LogPrefix {
                    instance: self.instance.clone(),
                    error,
                }
            })?;
        let key = location_key(&loc);
        if let Some(saved) = self.saved.take().filter(|s| s.location == key) {
            tailer.restore(saved.files);
        }
        tracing::info!(
            instance = %self.instance,
            dir = %loc.dir.display(),
            files = %loc.pattern,
            format = %loc.format,
            "following the server log"
        );
        self.tail = Some((loc, tailer));
        Ok(())
    }

    fn take_entry(&mut self, entry: &LogEntry, out: &mut Emitter) {
        let class = classify(entry);
        let Some(event) = to_event_as(entry, &class, Some(&self.instance), self.opts.redact) else {
            self.totals.entries_skipped += 1;
            return;
        };
        let t = &mut self.totals;
        let state_class = event
            .sqlstate
            .map(|s| String::from_utf8_lossy(&s[..2]).into_owned())
            .unwrap_or_default();
        *t.messages
            .entry((event.severity.as_str().to_owned(), state_class))
            .or_default() += 1;
        *t.kinds.entry(event.kind.as_str().to_owned()).or_default() += 1;
        match event.kind {
            LogEventKind::SlowStatement => {
                let secs = event.duration_ms.unwrap_or(0.0) / 1000.0;
                t.slow_count += 1;
                t.slow_seconds += secs;
                t.slow_buckets.resize(SLOW_BUCKETS.len() + 1, 0);
                let i = SLOW_BUCKETS
                    .iter()
                    .position(|&b| secs <= b)
                    .unwrap_or(SLOW_BUCKETS.len());
                t.slow_buckets[i] += 1;
            }
            LogEventKind::Checkpoint if class.details.total_secs.is_some() => t.checkpoints += 1,
            LogEventKind::Autovacuum => t.autovacuum += 1,
            LogEventKind::Autoanalyze => t.autoanalyze += 1,
            LogEventKind::Deadlock => t.deadlocks += 1,
            LogEventKind::LockWait => t.lock_waits += 1,
            LogEventKind::TempFile => {
                t.temp_files += 1;
                t.temp_bytes += class.details.temp_file_bytes.unwrap_or(0);
            }
            LogEventKind::AuthFailure => t.auth_failures += 1,
            _ => {}
        }
        if !(self.opts.drop_unclassified && event.kind == LogEventKind::Other) {
            out.log_event(event);
        }
    }

    fn emit_counters(&self, out: &mut Emitter) {
        let i = self.instance.as_str();
        let t = &self.totals;
        for ((severity, class), n) in &t.messages {
            out.counter(
                "pg_log_messages_total",
                "Server log entries by severity and SQLSTATE class.",
                "",
                &[
                    (INSTANCE_LABEL, i),
                    ("severity", severity),
                    ("sqlstate_class", class),
                ],
                *n as f64,
            );
        }
        for kind in LogEventKind::ALL {
            let n = t.kinds.get(kind.as_str()).copied().unwrap_or(0);
            out.counter(
                "pg_log_events_total",
                "Server log entries by event kind.",
                "",
                &[(INSTANCE_LABEL, i), ("kind", kind.as_str())],
                n as f64,
            );
        }
        let plain: [(&str, &'static str, &'static str, f64); 13] = [
            (
                "pg_log_slow_statements_total",
                "Statements logged as slower than log_min_duration_statement.",
                "",
                t.slow_count as f64,
            ),
            (
                "pg_log_slow_statement_seconds_total",
                "Summed duration of the slow statements logged.",
                "seconds",
                t.slow_seconds,
            ),
            (
                "pg_log_checkpoints_total",
                "Checkpoints and restartpoints logged as complete.",
                "",
                t.checkpoints as f64,
            ),
            (
                "pg_log_autovacuum_runs_total",
                "Automatic vacuum runs logged.",
                "",
                t.autovacuum as f64,
            ),
            (
                "pg_log_autoanalyze_runs_total",
                "Automatic analyze runs logged.",
                "",
                t.autoanalyze as f64,
            ),
            (
                "pg_log_deadlocks_total",
                "Deadlocks logged.",
                "",
                t.deadlocks as f64,
            ),
            (
                "pg_log_lock_waits_total",
                "Lock waits logged (log_lock_waits).",
                "",
                t.lock_waits as f64,
            ),
            (
                "pg_log_temp_files_total",
                "Temporary files logged (log_temp_files).",
                "",
                t.temp_files as f64,
            ),
            (
                "pg_log_temp_file_bytes_total",
                "Bytes of the temporary files logged.",
                "bytes",
                t.temp_bytes as f64,
            ),
            (
                "pg_log_auth_failures_total",
                "Failed authentications logged.",
                "",
                t.auth_failures as f64,
            ),
            (
                "pga_agent_log_bytes_read_total",
                "Bytes of server log read by the agent.",
                "bytes",
                t.bytes_read as f64,
            ),
            (
                "pga_agent_log_lines_skipped_total",
                "Server log lines that were no entry (garbage, binary junk, unmatched prefix).",
                "",
                t.lines_skipped as f64,
            ),
            (
                "pga_agent_log_entries_skipped_total",
                "Server log entries without a severity, not stored.",
                "",
                t.entries_skipped as f64,
            ),
        ];
        for (name, help, unit, v) in plain {
            out.counter(name, help, unit, &[(INSTANCE_LABEL, i)], v);
        }
        out.counter(
            "pga_agent_log_lines_oversized_total",
            "Server log lines or entries over 1 MiB, cut off.",
            "",
            &[(INSTANCE_LABEL, i)],
            t.lines_oversized as f64,
        );
        out.counter(
            "pga_agent_log_truncations_total",
            "Log files found truncated or rewritten, read again from their start.",
            "",
            &[(INSTANCE_LABEL, i)],
            t.truncations as f64,
        );
        let mut cumulative = 0;
        for (b, bound) in SLOW_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_owned()])
            .enumerate()
        {
            cumulative += t.slow_buckets.get(b).copied().unwrap_or(0);
            out.counter(
                "pg_log_slow_statements_by_duration_total",
                "Slow statements logged with a duration of at most le_seconds seconds.",
                "",
                &[(INSTANCE_LABEL, i), ("le_seconds", &bound)],
                cumulative as f64,
            );
        }
        out.gauge(
            "pga_agent_log_files",
            "Server log files followed.",
            "",
            &[(INSTANCE_LABEL, i)],
            self.files as f64,
        );
        out.gauge(
            "pga_agent_log_behind",
            "1 when the last pass stopped at its read budget with more log to read.",
            "",
            &[(INSTANCE_LABEL, i)],
            f64::from(u8::from(self.behind)),
        );
    }
}

/// Identifies the log followed: format, directory and file pattern.
fn location_key(loc: &LogLocation) -> String {
    format!("{}|{}|{}", loc.format, loc.dir.display(), loc.pattern)
}

/// The server's `log_line_prefix` as the parser can take it: PostgreSQL prints nothing
/// for an escape it does not know, so such escapes are dropped (and said once).
fn usable_prefix(prefix: &str, instance: &str) -> String {
    let mut p = prefix.to_owned();
    for _ in 0..64 {
        match LogParser::new(super::LogFormat::Stderr, &p) {
            Ok(_) => return p,
            Err(PrefixError::UnknownEscape { escape, .. }) => {
                tracing::warn!(instance, escape = %format!("%{escape}"), "log_line_prefix has an escape PostgreSQL does not know; it prints nothing for it");
                p = remove_escape(&p, escape);
            }
            Err(PrefixError::TrailingPercent { .. }) => {
                p.pop();
            }
        }
    }
    p
}

/// `prefix` without its first `%[-][digits]escape`.
fn remove_escape(prefix: &str, escape: char) -> String {
    let b: Vec<char> = prefix.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '%' {
            let mut j = i + 1;
            if b.get(j) == Some(&'%') {
                i += 2;
                continue;
            }
            if b.get(j) == Some(&'-') {
                j += 1;
            }
            while b.get(j).is_some_and(char::is_ascii_digit) {
                j += 1;
            }
            if b.get(j) == Some(&escape) {
                return b[..i].iter().chain(&b[j + 1..]).collect();
            }
            i = j + 1;
        } else {
            i += 1;
        }
    }
    prefix.to_owned()
}

impl Collector for LogCollector {
    fn name(&self) -> &'static str {
        self.name
    }

    fn group(&self) -> Group {
        Group::Fast
    }

    /// One pass: read, classify, count; events and the cursor go into `out`.
    fn collect(&mut self, out: &mut Emitter) -> Vec<CollectError> {
        let mut errors = Vec::new();
        let pass_ms = crate::now_ms();
        match self.read(pass_ms, out) {
            Ok(mut errs) => errors.append(&mut errs),
            Err(e) => errors.push(e),
        }
        self.emit_counters(out);
        let saved = Saved {
            version: CURSOR_VERSION,
            location: self
                .tail
                .as_ref()
                .map(|t| location_key(&t.0))
                .unwrap_or_default(),
            files: self
                .tail
                .as_ref()
                .map(|t| t.1.cursors())
                .unwrap_or_default(),
            totals: self.totals.clone(),
        };
        if self.tail.is_some() {
            match postcard::to_allocvec(&saved) {
                Ok(bytes) => out.set_cursor(&self.cursor_name, bytes),
                Err(e) => errors.push(CollectError::LogCursor(e)),
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_pass(log: &str, drop_unclassified: bool) -> (Emitter, Totals) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg.log");
        std::fs::write(&path, log).unwrap();
        let opts = LogOptions {
            explicit: Explicit {
                path: Some(path.display().to_string()),
                format: None,
                prefix: Some("%m [%p] %e ".into()),
            },
            redact: true,
            drop_unclassified,
            read_bytes_per_pass: 1 << 20,
            max_files: 4,
        };
        let mut c = LogCollector::new("main", None, opts, None);
        let mut out = Emitter::new();
        assert!(c.collect(&mut out).is_empty());
        (out, c.totals().clone())
    }

    const LOG: &str = "\
2024-03-01 12:00:00.000 UTC [1] 22012 ERROR:  division by zero
2024-03-01 12:00:01.000 UTC [1] 00000 LOG:  duration: 2500.5 ms  statement: SELECT 1
2024-03-01 12:00:02.000 UTC [2] 00000 LOG:  temporary file: path \"base/pgsql_tmp/pgsql_tmp2.0\", size 8192
2024-03-01 12:00:03.000 UTC [3] 00000 LOG:  database system is ready to accept connections
2024-03-01 12:00:04.000 UTC [4] 28P01 FATAL:  password authentication failed for user \"x\"
";

    fn value(out: &Emitter, name: &str, labels: &[(&str, &str)]) -> f64 {
        out.samples()
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
            })
            .unwrap_or_else(|| panic!("{name} {labels:?}"))
            .value
    }

    #[test]
    fn counters_follow_the_events() {
        let (out, t) = one_pass(LOG, false);
        assert_eq!(out.log_events().len(), 5);
        assert_eq!(t.slow_count, 1);
        assert_eq!((t.temp_files, t.temp_bytes, t.auth_failures), (1, 8192, 1));
        let m = "pg_log_messages_total";
        assert_eq!(
            value(&out, m, &[("severity", "ERROR"), ("sqlstate_class", "22")]),
            1.0
        );
        assert_eq!(
            value(&out, m, &[("severity", "LOG"), ("sqlstate_class", "")]),
            3.0
        );
        assert_eq!(
            value(&out, m, &[("severity", "FATAL"), ("sqlstate_class", "28")]),
            1.0
        );
        assert_eq!(
            value(&out, "pg_log_slow_statement_seconds_total", &[]),
            2.5005
        );
        let h = "pg_log_slow_statements_by_duration_total";
        assert_eq!(value(&out, h, &[("le_seconds", "1")]), 0.0);
        assert_eq!(value(&out, h, &[("le_seconds", "5")]), 1.0);
        assert_eq!(value(&out, h, &[("le_seconds", "+Inf")]), 1.0);
        assert_eq!(
            value(&out, "pg_log_events_total", &[("kind", "other")]),
            1.0
        );
    }

    #[test]
    fn unclassified_entries_count_but_are_not_stored_when_dropped() {
        let (out, t) = one_pass(LOG, true);
        assert_eq!(out.log_events().len(), 4);
        assert!(
            out.log_events()
                .iter()
                .all(|e| e.kind != LogEventKind::Other)
        );
        assert_eq!(t.kinds["other"], 1);
    }

    #[test]
    fn unknown_escapes_are_dropped_like_postgresql_does() {
        assert_eq!(usable_prefix("%m %z[%p] %-5Z", "t"), "%m [%p] ");
        assert_eq!(remove_escape("%%z %z", 'z'), "%%z ");
    }
}
