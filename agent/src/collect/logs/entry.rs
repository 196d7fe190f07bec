//! One PostgreSQL log entry as the parsers produce it, whatever the destination
//! (stderr with a `log_line_prefix`, csvlog, jsonlog), before classification and
//! redaction turn it into a [`pga_format::LogEvent`].

use pga_format::Severity;

/// A parsed log entry. Fields a destination or prefix does not carry are `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogEntry {
    /// Milliseconds since the Unix epoch (from `%m`/`%t`/`%n`, csvlog's or jsonlog's
    /// timestamp); `None` when the line carries no time.
    pub timestamp_ms: Option<i64>,
    /// `None` when the severity word is not one PostgreSQL prints.
    pub severity: Option<Severity>,
    /// Five characters of `0-9A-Z` (`%e`, csvlog/jsonlog `state_code`).
    pub sqlstate: Option<[u8; 5]>,
    pub pid: Option<u32>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub application: Option<String>,
    /// Client host (and port) as `%h`/`%r` print them.
    pub remote: Option<String>,
    /// Session id `%c`.
    pub session: Option<String>,
    /// Backend type (`%b`, jsonlog `backend_type`).
    pub backend_type: Option<String>,
    /// The primary message, continuation lines included.
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub context: Option<String>,
    /// The statement the entry is about (`STATEMENT:` line, csvlog `query`).
    pub statement: Option<String>,
}
