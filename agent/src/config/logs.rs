//! `[logs]`: how the log collector finds and reads each instance's server log, and
//! the rules that table follows.

use serde::{Deserialize, Serialize};

use super::validate::Problem;
use crate::collect::logs::{LogFormat, LogParser};

/// Smallest `logs.read_bytes_per_pass`: 64 KiB.
pub const READ_BYTES_PER_PASS_MIN: u64 = 64 << 10;
/// Largest `logs.read_bytes_per_pass`: 64 MiB (a pass's events stay well within a
/// block's limit of log events).
pub const READ_BYTES_PER_PASS_MAX: u64 = 64 << 20;
/// Largest `logs.max_files`.
pub const MAX_FILES_MAX: u32 = 10_000;

/// `[logs]`: the server logs the agent follows (when `collectors.logs` is on).
///
/// By default the agent finds the log from the server's own settings, read on its
/// PostgreSQL connection: `log_destination`, `logging_collector`, `log_directory`
/// (relative to `data_directory`), `log_filename` and `log_line_prefix`. When several
/// destinations are on it reads one: jsonlog, else csvlog, else stderr. The agent's
/// user must be able to read the log directory (add it to the group owning it, e.g.
/// `postgres`, or `adm` for `/var/log/postgresql`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// A log file, or a glob with `*` in its file name (`/var/log/postgresql/*.csv`),
    /// to read instead of what the server's settings say; a single file's rotations
    /// (`NAME.1`, `NAME-20240301`, not compressed ones) are followed too. Needed when
    /// `logging_collector` is off (Debian's `/var/log/postgresql/postgresql-16-main.log`).
    /// Only with one monitored instance. Default: none (from the server's settings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `stderr`, `csvlog` or `jsonlog`: the destination to read. Default: with `path`,
    /// from its extension (`.csv`, `.json`, else stderr); otherwise the most structured
    /// destination the server writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The `log_line_prefix` of stderr logs. Default: the server's setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Replace literals (strings, numbers) in messages and statements; passwords of
    /// `CREATE/ALTER ROLE … PASSWORD` are removed whatever this says. Default true.
    pub redact: bool,
    /// Store no event for entries that classify as nothing in particular ("other");
    /// they still count in `pg_log_messages_total`. Default false.
    pub drop_unclassified: bool,
    /// Most bytes of log read per instance and pass, so that a huge backlog is worked
    /// off over several passes without stalling the collector. 65536..=67108864,
    /// default 16777216 (16 MiB).
    pub read_bytes_per_pass: u64,
    /// Most files of one log followed, the newest ones. 1..=10000, default 64.
    pub max_files: u32,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            path: None,
            format: None,
            prefix: None,
            redact: true,
            drop_unclassified: false,
            read_bytes_per_pass: 16 << 20,
            max_files: 64,
        }
    }
}

impl LogsConfig {
    /// The forced format, if a valid one is set.
    pub fn log_format(&self) -> Option<LogFormat> {
        self.format.as_deref().and_then(|f| f.parse().ok())
    }

    /// Adds this table's problems; `instances` is how many instances are monitored.
    pub fn validate(&self, instances: usize, p: &mut Vec<Problem>) {
        if let Some(f) = &self.format
            && let Err(e) = f.parse::<LogFormat>()
        {
            p.push(Problem::error(
                "logs.format",
                e.to_string(),
                "write format = \"stderr\", \"csvlog\" or \"jsonlog\", or remove it",
            ));
        }
        if let Some(prefix) = &self.prefix
            && let Err(e) = LogParser::new(LogFormat::Stderr, prefix)
        {
            p.push(Problem::error(
                "logs.prefix",
                e.to_string(),
                "copy the server's log_line_prefix (SHOW log_line_prefix), or remove the key",
            ));
        }
        if !(READ_BYTES_PER_PASS_MIN..=READ_BYTES_PER_PASS_MAX).contains(&self.read_bytes_per_pass)
        {
            p.push(Problem::error(
                "logs.read_bytes_per_pass",
                format!("{} is out of range", self.read_bytes_per_pass),
                format!("use {READ_BYTES_PER_PASS_MIN}..={READ_BYTES_PER_PASS_MAX}"),
            ));
        }
        if !(1..=MAX_FILES_MAX).contains(&self.max_files) {
            p.push(Problem::error(
                "logs.max_files",
                format!("{} is out of range", self.max_files),
                format!("use 1..={MAX_FILES_MAX}"),
            ));
        }
        if let Some(path) = &self.path {
            if path.trim().is_empty() {
                p.push(Problem::error(
                    "logs.path",
                    "is empty",
                    "give the log file or glob, or remove the key",
                ));
            } else if instances > 1 {
                p.push(Problem::error(
                    "logs.path",
                    format!("\"{path}\" is set while {instances} instances are monitored"),
                    "remove logs.path: each instance's log is found from its own settings",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_named() {
        let mut p = Vec::new();
        LogsConfig::default().validate(1, &mut p);
        assert!(p.is_empty(), "{p:?}");
        let bad = LogsConfig {
            path: Some("/x/pg.log".into()),
            format: Some("syslog".into()),
            prefix: Some("%m %Z ".into()),
            read_bytes_per_pass: 10,
            max_files: 0,
            ..LogsConfig::default()
        };
        bad.validate(2, &mut p);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "logs.format",
                "logs.prefix",
                "logs.read_bytes_per_pass",
                "logs.max_files",
                "logs.path"
            ]
        );
    }
}
