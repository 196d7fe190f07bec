//! Classification of a parsed log entry into a [`LogEventKind`], with the duration and
//! figures its message states.
//!
//! The rules match the message texts of PostgreSQL 14 to 17 **in English**: a server
//! running with another `lc_messages` writes translated texts, whose entries fall back
//! to their severity (ERROR/FATAL/PANIC → [`LogEventKind::Error`], or the SQLSTATE rules
//! for deadlocks and authentication failures) and otherwise to
//! [`LogEventKind::Other`]. Set `lc_messages = 'C'` (or `en_US…`) for full classification.
//!
//! | kind | message (severity) |
//! |---|---|
//! | Deadlock | `deadlock detected` (ERROR, 40P01) |
//! | AuthFailure | `… authentication failed for user …`, `no pg_hba.conf entry …`, `pg_hba.conf rejects …` (FATAL, 28P01/28000) |
//! | Error | any other ERROR, FATAL or PANIC |
//! | SlowStatement | `duration: N ms  statement|execute|parse|bind …` |
//! | Checkpoint | `checkpoint|restartpoint starting: …`, `… complete: wrote N buffers …; write=X s, sync=Y s, total=Z s; …` |
//! | Autovacuum | `automatic [aggressive ]vacuum [to prevent wraparound ]of table …` |
//! | Autoanalyze | `automatic analyze of table …` |
//! | LockWait | `process N still waiting for|acquired|avoided deadlock|detected deadlock while waiting … [after N ms]` |
//! | TempFile | `temporary file: path "…", size N` |
//! | Connection | `connection received|authenticated|authorized: …`, `replication connection authorized: …` |
//! | Disconnection | `disconnection: session time: H:MM:SS.mmm …` |

use pga_format::{LogEvent, LogEventKind, MAX_STRING_LEN, Severity};
use serde::Serialize;

use super::entry::LogEntry;

/// An entry's kind and what its message states.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    pub kind: LogEventKind,
    /// Statement, checkpoint (total), vacuum/analyze (elapsed), lock wait or session
    /// duration in milliseconds, where the message states one.
    pub duration_ms: Option<f64>,
    pub details: ClassDetails,
}

/// Figures particular to some kinds; `None` where the kind or message has none.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClassDetails {
    /// Checkpoint: buffers written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffers_written: Option<u64>,
    /// Checkpoint: `write=` seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_secs: Option<f64>,
    /// Checkpoint: `sync=` seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_secs: Option<f64>,
    /// Checkpoint: `total=` seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_secs: Option<f64>,
    /// Autovacuum: `tuples: N removed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuples_removed: Option<u64>,
    /// Temporary file: `size N` in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_file_bytes: Option<u64>,
}

impl ClassDetails {
    pub fn is_empty(&self) -> bool {
        *self == ClassDetails::default()
    }
}

impl Classified {
    fn new(kind: LogEventKind) -> Self {
        Classified {
            kind,
            duration_ms: None,
            details: ClassDetails::default(),
        }
    }

    fn with_duration(mut self, ms: Option<f64>) -> Self {
        self.duration_ms = ms;
        self
    }
}

/// Classifies one entry; see the module documentation for the rules.
pub fn classify(entry: &LogEntry) -> Classified {
    let msg = entry.message.as_str();
    let state = entry.sqlstate.as_ref().map(|s| s.as_slice());
    let is_error = matches!(
        entry.severity,
        Some(Severity::Error | Severity::Fatal | Severity::Panic)
    );
    if is_error {
        if state == Some(b"40P01") || msg.starts_with("deadlock detected") {
            return Classified::new(LogEventKind::Deadlock);
        }
        if is_auth_failure(msg) || (state == Some(b"28P01")) {
            return Classified::new(LogEventKind::AuthFailure);
        }
        return Classified::new(LogEventKind::Error);
    }
    if let Some(c) = slow_statement(msg) {
        return c;
    }
    if let Some(c) = checkpoint(msg) {
        return c;
    }
    if let Some(c) = maintenance(msg) {
        return c;
    }
    if let Some(rest) = msg.strip_prefix("process ")
        && (rest.contains(" still waiting for ")
            || rest.contains(" acquired ")
            || rest.contains(" avoided deadlock ")
            || rest.contains(" detected deadlock while waiting "))
    {
        let ms = rest
            .rfind(" after ")
            .and_then(|at| number_before(&rest[at + 7..], " ms"));
        return Classified::new(LogEventKind::LockWait).with_duration(ms);
    }
    if let Some(rest) = msg.strip_prefix("temporary file: path ") {
        let mut c = Classified::new(LogEventKind::TempFile);
        c.details.temp_file_bytes = rest
            .rfind(", size ")
            .and_then(|at| leading_number(&rest[at + 7..]))
            .and_then(|(n, _)| n.parse().ok());
        return c;
    }
    if ["connection received: ", "connection authenticated: "]
        .iter()
        .chain(&[
            "connection authorized: ",
            "replication connection authorized: ",
        ])
        .any(|p| msg.starts_with(p))
    {
        return Classified::new(LogEventKind::Connection);
    }
    if let Some(rest) = msg.strip_prefix("disconnection: session time: ") {
        return Classified::new(LogEventKind::Disconnection).with_duration(session_ms(rest));
    }
    let other = Classified::new(LogEventKind::Other);
    if let Some(rest) = msg.strip_prefix("duration: ") {
        // `log_duration` without the statement.
        return other.with_duration(number_before(rest, " ms"));
    }
    other
}

fn is_auth_failure(msg: &str) -> bool {
    msg.starts_with("no pg_hba.conf entry ")
        || msg.starts_with("pg_hba.conf rejects ")
        || msg.contains("authentication failed for user ")
}

/// `duration: 1.234 ms  statement: …` (also `execute`, `parse`, `bind`).
fn slow_statement(msg: &str) -> Option<Classified> {
    let rest = msg.strip_prefix("duration: ")?;
    let (ms, after) = leading_number(rest)?;
    let after = after.strip_prefix(" ms")?.trim_start_matches(' ');
    let is_statement = after.starts_with("statement: ")
        || ["execute ", "parse ", "bind "]
            .iter()
            .any(|p| after.starts_with(p) && after.contains(": "));
    is_statement
        .then(|| Classified::new(LogEventKind::SlowStatement).with_duration(ms.parse::<f64>().ok()))
}

/// `checkpoint starting: …` or `checkpoint complete: wrote N buffers (…); …; write=X s,
/// sync=Y s, total=Z s; …` (and the same for `restartpoint`).
fn checkpoint(msg: &str) -> Option<Classified> {
    let rest = msg
        .strip_prefix("checkpoint ")
        .or_else(|| msg.strip_prefix("restartpoint "))?;
    if rest.starts_with("starting:") {
        return Some(Classified::new(LogEventKind::Checkpoint));
    }
    let rest = rest.strip_prefix("complete:")?;
    let mut c = Classified::new(LogEventKind::Checkpoint);
    c.details.buffers_written = rest
        .find("wrote ")
        .and_then(|at| leading_number(&rest[at + 6..]))
        .and_then(|(n, _)| n.parse().ok());
    let secs = |key: &str| {
        rest.find(key)
            .and_then(|at| number_before(&rest[at + key.len()..], " s"))
    };
    c.details.write_secs = secs("write=");
    c.details.sync_secs = secs("sync=");
    c.details.total_secs = secs("total=");
    c.duration_ms = c.details.total_secs.map(|s| s * 1000.0);
    Some(c)
}

/// `automatic [aggressive ]vacuum […]of table "…": …` and `automatic analyze of table`,
/// with `elapsed: X s` (from `system usage: …`) and `tuples: N removed`.
fn maintenance(msg: &str) -> Option<Classified> {
    let rest = msg.strip_prefix("automatic ")?;
    let head = &rest[..rest.find(" of table ")?];
    let kind = if head.starts_with("analyze") {
        LogEventKind::Autoanalyze
    } else if head.contains("vacuum") {
        LogEventKind::Autovacuum
    } else {
        return None;
    };
    let mut c = Classified::new(kind);
    c.duration_ms = rest
        .rfind("elapsed: ")
        .and_then(|at| number_before(&rest[at + 9..], " s"))
        .map(|s| s * 1000.0);
    if kind == LogEventKind::Autovacuum {
        c.details.tuples_removed = rest
            .find("tuples: ")
            .and_then(|at| leading_number(&rest[at + 8..]))
            .filter(|(_, after)| after.starts_with(" removed"))
            .and_then(|(n, _)| n.parse().ok());
    }
    Some(c)
}

/// `H:MM:SS.mmm` (hours unbounded) in milliseconds.
fn session_ms(text: &str) -> Option<f64> {
    let end = text.find(' ').unwrap_or(text.len());
    let mut parts = text[..end].split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || h < 0.0 || !(0.0..60.0).contains(&m) || !(0.0..60.0).contains(&s) {
        return None;
    }
    Some(((h * 60.0 + m) * 60.0 + s) * 1000.0)
}

/// The decimal number `text` starts with and the text after it.
fn leading_number(text: &str) -> Option<(&str, &str)> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    (end > 0 && text.as_bytes()[0].is_ascii_digit()).then(|| text.split_at(end))
}

/// The number `text` starts with when `unit` follows it directly.
fn number_before(text: &str, unit: &str) -> Option<f64> {
    let (n, after) = leading_number(text)?;
    after.starts_with(unit).then(|| n.parse().ok()).flatten()
}

/// The event an entry becomes: [`classify`] on the entry as read, then the password
/// rule always and literal redaction when `redact` is true (see [`super::redact`]).
///
/// The event's message is the (redacted) message, followed by a newline and
/// `statement: ` and the (redacted) statement when the entry carries one — a slow
/// statement's message already holds its statement, so nothing is appended there.
/// Detail, hint and context are left out: they echo parameters and row values
/// (`Key (id)=(42) already exists`, `parameters: $1 = '…'`). The message is cut to
/// [`pga_format::MAX_STRING_LEN`] bytes at a character boundary.
///
/// `None` when the entry has no timestamp or no severity: a block event needs both;
/// the caller counts those.
pub fn to_event(entry: &LogEntry, instance: Option<&str>, redact: bool) -> Option<LogEvent> {
    to_event_as(entry, &classify(entry), instance, redact)
}

/// [`to_event`] with the entry's classification already at hand.
pub fn to_event_as(
    entry: &LogEntry,
    class: &Classified,
    instance: Option<&str>,
    redact: bool,
) -> Option<LogEvent> {
    let timestamp_ms = entry.timestamp_ms?;
    let severity = entry.severity?;
    let mut clean = LogEntry {
        message: entry.message.clone(),
        statement: entry.statement.clone(),
        ..LogEntry::default()
    };
    super::redact::redact_entry(&mut clean, redact);
    let mut message = clean.message;
    if let Some(statement) = clean
        .statement
        .filter(|_| class.kind != LogEventKind::SlowStatement)
    {
        message.push_str("\nstatement: ");
        message.push_str(&statement);
    }
    truncate(&mut message, MAX_STRING_LEN);
    Some(LogEvent {
        sqlstate: entry.sqlstate,
        pid: entry.pid,
        instance: instance.map(str::to_owned),
        user: entry.user.clone(),
        database: entry.database.clone(),
        application: entry.application.clone(),
        duration_ms: class.duration_ms,
        ..LogEvent::new(timestamp_ms, severity, class.kind, message)
    })
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(severity: Severity, sqlstate: Option<&[u8; 5]>, message: &str) -> LogEntry {
        LogEntry {
            timestamp_ms: Some(1),
            severity: Some(severity),
            sqlstate: sqlstate.copied(),
            message: message.into(),
            ..LogEntry::default()
        }
    }

    fn kind(severity: Severity, message: &str) -> (LogEventKind, Option<f64>) {
        let c = classify(&entry(severity, None, message));
        (c.kind, c.duration_ms)
    }

    #[test]
    fn errors_deadlocks_and_auth_failures() {
        use LogEventKind::*;
        let cases: [(Severity, Option<&[u8; 5]>, &str, LogEventKind); 8] = [
            (
                Severity::Error,
                Some(b"42P01"),
                "relation \"nope\" does not exist",
                Error,
            ),
            (
                Severity::Panic,
                None,
                "could not locate a valid checkpoint record",
                Error,
            ),
            (
                Severity::Error,
                Some(b"40P01"),
                "deadlock detected",
                Deadlock,
            ),
            (Severity::Error, None, "deadlock detected", Deadlock),
            (
                Severity::Fatal,
                Some(b"28P01"),
                "password authentication failed for user \"bob\"",
                AuthFailure,
            ),
            (
                Severity::Fatal,
                Some(b"28000"),
                "no pg_hba.conf entry for host \"10.0.0.9\", user \"bob\", database \"x\", no encryption",
                AuthFailure,
            ),
            (
                Severity::Fatal,
                Some(b"28000"),
                "Peer authentication failed for user \"postgres\"",
                AuthFailure,
            ),
            // A translated message still classifies by its SQLSTATE.
            (
                Severity::Fatal,
                Some(b"28P01"),
                "la autentificación password falló para el usuario «bob»",
                AuthFailure,
            ),
        ];
        for (sev, state, msg, want) in cases {
            let c = classify(&entry(sev, state, msg));
            assert_eq!(c.kind, want, "{msg}");
            assert_eq!(c.duration_ms, None);
        }
        // The same texts at LOG are not errors.
        assert_eq!(kind(Severity::Log, "deadlock detected").0, Other);
    }

    #[test]
    fn slow_statements_carry_their_duration() {
        for (msg, ms) in [
            (
                "duration: 1234.567 ms  statement: SELECT pg_sleep(1.2)",
                1234.567,
            ),
            ("duration: 0.045 ms  execute <unnamed>: SELECT $1", 0.045),
            ("duration: 3.1 ms  parse S_1: SELECT 1", 3.1),
            (
                "duration: 12 ms  bind <unnamed>: SELECT * FROM t WHERE id = $1",
                12.0,
            ),
        ] {
            assert_eq!(
                kind(Severity::Log, msg),
                (LogEventKind::SlowStatement, Some(ms)),
                "{msg}"
            );
        }
        assert_eq!(
            kind(Severity::Log, "duration: 0.5 ms"),
            (LogEventKind::Other, Some(0.5))
        );
    }

    #[test]
    fn checkpoints_with_times_and_buffers() {
        let pg16 = "checkpoint complete: wrote 47 buffers (0.3%); 0 WAL file(s) added, 0 removed, \
                    1 recycled; write=4.512 s, sync=0.021 s, total=4.601 s; sync files=12, \
                    longest=0.004 s, average=0.002 s; distance=512 kB, estimate=1024 kB; \
                    lsn=0/1A2B3C4, redo lsn=0/1A2B300";
        let c = classify(&entry(Severity::Log, None, pg16));
        assert_eq!(c.kind, LogEventKind::Checkpoint);
        assert_eq!(c.duration_ms, Some(4601.0));
        assert_eq!(
            c.details,
            ClassDetails {
                buffers_written: Some(47),
                write_secs: Some(4.512),
                sync_secs: Some(0.021),
                total_secs: Some(4.601),
                ..ClassDetails::default()
            }
        );
        for start in [
            "checkpoint starting: time",
            "restartpoint starting: immediate force wait",
        ] {
            let c = classify(&entry(Severity::Log, None, start));
            assert_eq!((c.kind, c.duration_ms), (LogEventKind::Checkpoint, None));
            assert!(c.details.is_empty());
        }
        let c = classify(&entry(
            Severity::Log,
            None,
            "restartpoint complete: wrote 2 buffers (0.0%); 0 WAL file(s) added, 0 removed, 0 recycled; \
             write=0.001 s, sync=0.001 s, total=0.010 s; sync files=0, longest=0.000 s, average=0.000 s; \
             distance=0 kB, estimate=0 kB",
        ));
        assert_eq!(c.details.buffers_written, Some(2));
        assert_eq!(c.duration_ms, Some(10.0));
    }

    #[test]
    fn autovacuum_and_autoanalyze() {
        let vacuum = "automatic vacuum of table \"app.public.orders\": index scans: 1\n\
                      pages: 0 removed, 1234 remain, 1234 scanned (100.00% of total)\n\
                      tuples: 5000 removed, 100000 remain, 0 are dead but not yet removable\n\
                      removable cutoff: 7500, which was 0 XIDs old when operation ended\n\
                      index scan needed: 600 pages from table (48.62% of total) had 5000 dead item identifiers removed\n\
                      avg read rate: 12.345 MB/s, avg write rate: 6.789 MB/s\n\
                      buffer usage: 3000 hits, 200 misses, 100 dirtied\n\
                      WAL usage: 2500 records, 100 full page images, 800000 bytes\n\
                      system usage: CPU: user: 0.10 s, system: 0.02 s, elapsed: 0.25 s";
        let c = classify(&entry(Severity::Log, None, vacuum));
        assert_eq!(c.kind, LogEventKind::Autovacuum);
        assert_eq!(c.duration_ms, Some(250.0));
        assert_eq!(c.details.tuples_removed, Some(5000));

        let aggressive = "automatic aggressive vacuum to prevent wraparound of table \"db.pg_catalog.pg_class\": \
                          index scans: 0\ntuples: 0 removed, 400 remain\n\
                          system usage: CPU: user: 0.00 s, system: 0.00 s, elapsed: 1.50 s";
        let c = classify(&entry(Severity::Log, None, aggressive));
        assert_eq!(
            (c.kind, c.duration_ms),
            (LogEventKind::Autovacuum, Some(1500.0))
        );
        assert_eq!(c.details.tuples_removed, Some(0));

        let analyze = "automatic analyze of table \"app.public.orders\"\n\
                       avg read rate: 0.000 MB/s, avg write rate: 0.000 MB/s\n\
                       buffer usage: 100 hits, 0 misses, 0 dirtied\n\
                       system usage: CPU: user: 0.01 s, system: 0.00 s, elapsed: 0.03 s";
        let c = classify(&entry(Severity::Log, None, analyze));
        assert_eq!(
            (c.kind, c.duration_ms),
            (LogEventKind::Autoanalyze, Some(30.0))
        );
        assert_eq!(c.details.tuples_removed, None);
    }

    #[test]
    fn lock_waits_temp_files_connections() {
        use LogEventKind::*;
        assert_eq!(
            kind(
                Severity::Log,
                "process 4711 still waiting for ShareLock on transaction 1234 after 1000.123 ms"
            ),
            (LockWait, Some(1000.123))
        );
        assert_eq!(
            kind(
                Severity::Log,
                "process 4711 acquired ExclusiveLock on relation 16384 of database 5 after 2500.5 ms"
            ),
            (LockWait, Some(2500.5))
        );
        assert_eq!(
            kind(
                Severity::Log,
                "process 4711 detected deadlock while waiting for ShareLock on transaction 9 after 1000.1 ms"
            ),
            (LockWait, Some(1000.1))
        );
        let c = classify(&entry(
            Severity::Log,
            None,
            "temporary file: path \"base/pgsql_tmp/pgsql_tmp4711.0\", size 14680064",
        ));
        assert_eq!(c.kind, TempFile);
        assert_eq!(c.details.temp_file_bytes, Some(14_680_064));
        for msg in [
            "connection received: host=[local]",
            "connection received: host=10.1.2.3 port=50432",
            "connection authenticated: identity=\"bob\" method=scram-sha-256 (/etc/pg_hba.conf:90)",
            "connection authorized: user=bob database=app application_name=psql",
            "replication connection authorized: user=rep application_name=walreceiver",
        ] {
            assert_eq!(kind(Severity::Log, msg), (Connection, None), "{msg}");
        }
        assert_eq!(
            kind(
                Severity::Log,
                "disconnection: session time: 1:02:03.456 user=bob database=app host=[local]"
            ),
            (Disconnection, Some(3_723_456.0))
        );
        assert_eq!(
            kind(
                Severity::Log,
                "disconnection: session time: 0:00:00.004 user=x"
            ),
            (Disconnection, Some(4.0))
        );
    }

    #[test]
    fn the_rest_is_other() {
        for msg in [
            "database system is ready to accept connections",
            "statement: SELECT 1",
            "parameter \"work_mem\" changed to \"64MB\"",
            "checkpoints are occurring too frequently (9 seconds apart)",
            "automatic",
            "process 1",
            "duration: abc ms  statement: x",
        ] {
            assert_eq!(kind(Severity::Log, msg).0, LogEventKind::Other, "{msg}");
        }
        assert_eq!(
            kind(Severity::Warning, "there is no transaction in progress").0,
            LogEventKind::Other
        );
    }

    #[test]
    fn events_need_time_and_severity_and_carry_redacted_text() {
        let mut e = entry(
            Severity::Error,
            Some(b"22P02"),
            "invalid input syntax for type integer: \"x1\"",
        );
        e.statement = Some("SELECT 'x1'::int, 42".into());
        e.detail = Some("secret detail".into());
        e.user = Some("bob".into());
        let ev = to_event(&e, Some("main"), true).unwrap();
        assert_eq!(ev.kind, LogEventKind::Error);
        assert_eq!(ev.sqlstate, Some(*b"22P02"));
        assert_eq!(ev.instance.as_deref(), Some("main"));
        assert_eq!(ev.user.as_deref(), Some("bob"));
        assert_eq!(
            ev.message,
            "invalid input syntax for type integer: \"?\"\nstatement: SELECT '?'::int, ?"
        );
        ev.validate().unwrap();
        let raw = to_event(&e, None, false).unwrap();
        assert_eq!(
            raw.message,
            "invalid input syntax for type integer: \"x1\"\nstatement: SELECT 'x1'::int, 42"
        );

        let slow = entry(
            Severity::Log,
            None,
            "duration: 5.5 ms  statement: SELECT 'a'",
        );
        let ev = to_event(&slow, None, true).unwrap();
        assert_eq!(
            (ev.kind, ev.duration_ms),
            (LogEventKind::SlowStatement, Some(5.5))
        );
        assert_eq!(ev.message, "duration: 5.5 ms  statement: SELECT '?'");

        let mut pw = entry(
            Severity::Log,
            None,
            "statement: ALTER USER u PASSWORD 'hunter2'",
        );
        assert_eq!(
            to_event(&pw, None, false).unwrap().message,
            "ALTER USER … PASSWORD <redacted>"
        );
        pw.timestamp_ms = None;
        assert_eq!(to_event(&pw, None, true), None);
        let mut no_sev = slow.clone();
        no_sev.severity = None;
        assert_eq!(to_event(&no_sev, None, true), None);

        let mut huge = entry(Severity::Log, None, &"é".repeat(MAX_STRING_LEN));
        huge.statement = None;
        let ev = to_event(&huge, None, true).unwrap();
        assert!(ev.message.len() <= MAX_STRING_LEN);
        ev.validate().unwrap();
    }
}
