//! The sample model shared by agent and federator: series, samples and log events.

use std::fmt;

/// Identifier of a series in one agent's series dictionary.
///
/// Ids are assigned by the agent, are stable for the life of its store and are
/// only meaningful together with the agent's [`AgentId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeriesId(pub u64);

impl fmt::Display for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The 16-byte identity of an agent (a random UUID chosen when its store is created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AgentId(pub [u8; 16]);

impl fmt::Display for AgentId {
    /// Formats as a hyphenated UUID: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Whether a series only grows (and resets) or moves freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Monotonic except for resets; rates and increases make sense.
    Counter,
    /// A value that can go up and down.
    Gauge,
}

impl MetricKind {
    pub(crate) const fn code(self) -> u8 {
        match self {
            MetricKind::Counter => 0,
            MetricKind::Gauge => 1,
        }
    }

    pub(crate) const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            _ => None,
        }
    }

    /// The Prometheus `# TYPE` word.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// One sample of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub value: f64,
}

/// Why a series description or log event is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error(
        "invalid metric name {name:?}: use letters, digits, '_' and ':' and do not start with a digit"
    )]
    InvalidMetricName { name: String },
    #[error(
        "invalid label name {name:?}: use letters, digits and '_', do not start with a digit or with '__'"
    )]
    InvalidLabelName { name: String },
    #[error("label {name:?} appears twice; every label name may appear once per series")]
    DuplicateLabel { name: String },
    #[error("labels are not sorted by name: {first:?} comes before {second:?}")]
    UnsortedLabels { first: String, second: String },
    #[error("{what} is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("SQLSTATE {code:?} is not five characters of 0-9 or A-Z")]
    InvalidSqlState { code: String },
}

/// The longest text field (metric name, label, unit, help, log message, …) a frame carries.
pub const MAX_STRING_LEN: usize = 1 << 20;
/// The most labels one series may carry.
pub const MAX_LABELS: usize = 256;

/// Description of one series: a metric name plus a sorted label set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesMeta {
    pub id: SeriesId,
    /// Prometheus metric name, e.g. `pg_stat_database_xact_commit_total`.
    pub name: String,
    /// Label pairs sorted by name, names unique.
    pub labels: Vec<(String, String)>,
    pub kind: MetricKind,
    /// Base unit (`seconds`, `bytes`, …) or empty.
    pub unit: String,
    pub help: String,
}

/// Label pairs as [`SeriesMeta::new`] takes them, from borrowed ones.
pub fn owned_labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl SeriesMeta {
    /// Builds a series description, sorting the labels and checking every name.
    pub fn new(
        id: SeriesId,
        name: impl Into<String>,
        mut labels: Vec<(String, String)>,
        kind: MetricKind,
        unit: impl Into<String>,
        help: impl Into<String>,
    ) -> Result<Self, ModelError> {
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let meta = SeriesMeta {
            id,
            name: name.into(),
            labels,
            kind,
            unit: unit.into(),
            help: help.into(),
        };
        meta.validate()?;
        Ok(meta)
    }

    /// Checks names, label order and sizes.
    pub fn validate(&self) -> Result<(), ModelError> {
        if !is_valid_metric_name(&self.name) {
            return Err(ModelError::InvalidMetricName {
                name: self.name.clone(),
            });
        }
        if self.labels.len() > MAX_LABELS {
            return Err(ModelError::TooLong {
                what: "label set",
                len: self.labels.len(),
                max: MAX_LABELS,
            });
        }
        for (what, s) in [
            ("metric name", &self.name),
            ("unit", &self.unit),
            ("help", &self.help),
        ] {
            check_len(what, s)?;
        }
        for (i, (name, value)) in self.labels.iter().enumerate() {
            if !is_valid_label_name(name) {
                return Err(ModelError::InvalidLabelName { name: name.clone() });
            }
            check_len("label value", value)?;
            if let Some((prev, _)) = i.checked_sub(1).map(|p| &self.labels[p]) {
                if prev == name {
                    return Err(ModelError::DuplicateLabel { name: name.clone() });
                }
                if prev > name {
                    return Err(ModelError::UnsortedLabels {
                        first: prev.clone(),
                        second: name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The label value for `name`, if the series has that label.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.labels[i].1.as_str())
    }
}

pub(crate) fn check_len(what: &'static str, s: &str) -> Result<(), ModelError> {
    if s.len() > MAX_STRING_LEN {
        return Err(ModelError::TooLong {
            what,
            len: s.len(),
            max: MAX_STRING_LEN,
        });
    }
    Ok(())
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, the Prometheus metric name rule.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with the reserved `__`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && !name.starts_with("__")
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// PostgreSQL message severity, as the server writes it in its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Debug5,
    Debug4,
    Debug3,
    Debug2,
    Debug1,
    Log,
    Info,
    Notice,
    Warning,
    Error,
    Fatal,
    Panic,
}

impl Severity {
    /// Every severity, in code order.
    pub const ALL: [Severity; 12] = [
        Severity::Debug5,
        Severity::Debug4,
        Severity::Debug3,
        Severity::Debug2,
        Severity::Debug1,
        Severity::Log,
        Severity::Info,
        Severity::Notice,
        Severity::Warning,
        Severity::Error,
        Severity::Fatal,
        Severity::Panic,
    ];

    /// The word PostgreSQL prints (`ERROR`, `LOG`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Debug5 => "DEBUG5",
            Severity::Debug4 => "DEBUG4",
            Severity::Debug3 => "DEBUG3",
            Severity::Debug2 => "DEBUG2",
            Severity::Debug1 => "DEBUG1",
            Severity::Log => "LOG",
            Severity::Info => "INFO",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Panic => "PANIC",
        }
    }
}

/// What a log entry is about, as classified by the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogEventKind {
    /// ERROR, FATAL or PANIC with its SQLSTATE.
    Error,
    /// A statement slower than `log_min_duration_statement`, with its duration.
    SlowStatement,
    Checkpoint,
    Autovacuum,
    Autoanalyze,
    LockWait,
    Deadlock,
    TempFile,
    Connection,
    Disconnection,
    AuthFailure,
    Other,
}

impl LogEventKind {
    /// Every kind, in code order.
    pub const ALL: [LogEventKind; 12] = [
        LogEventKind::Error,
        LogEventKind::SlowStatement,
        LogEventKind::Checkpoint,
        LogEventKind::Autovacuum,
        LogEventKind::Autoanalyze,
        LogEventKind::LockWait,
        LogEventKind::Deadlock,
        LogEventKind::TempFile,
        LogEventKind::Connection,
        LogEventKind::Disconnection,
        LogEventKind::AuthFailure,
        LogEventKind::Other,
    ];

    /// A stable snake_case name, used in labels and output.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogEventKind::Error => "error",
            LogEventKind::SlowStatement => "slow_statement",
            LogEventKind::Checkpoint => "checkpoint",
            LogEventKind::Autovacuum => "autovacuum",
            LogEventKind::Autoanalyze => "autoanalyze",
            LogEventKind::LockWait => "lock_wait",
            LogEventKind::Deadlock => "deadlock",
            LogEventKind::TempFile => "temp_file",
            LogEventKind::Connection => "connection",
            LogEventKind::Disconnection => "disconnection",
            LogEventKind::AuthFailure => "auth_failure",
            LogEventKind::Other => "other",
        }
    }
}

/// One parsed PostgreSQL log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub severity: Severity,
    pub kind: LogEventKind,
    /// Five characters of `0-9A-Z`, e.g. `40P01`.
    pub sqlstate: Option<[u8; 5]>,
    pub pid: Option<u32>,
    /// The monitored instance the entry came from, when an agent watches several.
    pub instance: Option<String>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub application: Option<String>,
    /// The message, literals redacted by the agent unless configured otherwise.
    pub message: String,
    /// Statement or operation duration in milliseconds, where the entry states one.
    pub duration_ms: Option<f64>,
}

impl LogEvent {
    /// A bare event with only the required fields set.
    pub fn new(
        timestamp_ms: i64,
        severity: Severity,
        kind: LogEventKind,
        message: impl Into<String>,
    ) -> Self {
        LogEvent {
            timestamp_ms,
            severity,
            kind,
            sqlstate: None,
            pid: None,
            instance: None,
            user: None,
            database: None,
            application: None,
            message: message.into(),
            duration_ms: None,
        }
    }

    /// Checks the SQLSTATE and the text sizes.
    pub fn validate(&self) -> Result<(), ModelError> {
        if let Some(code) = self.sqlstate.as_ref().filter(|c| !is_valid_sqlstate(c)) {
            return Err(ModelError::InvalidSqlState {
                code: String::from_utf8_lossy(code).into_owned(),
            });
        }
        check_len("log message", &self.message)?;
        for s in [
            &self.instance,
            &self.user,
            &self.database,
            &self.application,
        ]
        .into_iter()
        .flatten()
        {
            check_len("log field", s)?;
        }
        Ok(())
    }
}

pub(crate) fn is_valid_sqlstate(code: &[u8; 5]) -> bool {
    code.iter()
        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// `code()` and `from_code()` of a fieldless enum whose `ALL` lists every variant
/// in code order (the code is the variant's index, as FORMAT.md numbers them).
macro_rules! codes_in_order {
    ($($t:ty),*) => {$(
        impl $t {
            pub(crate) fn code(self) -> u8 {
                self as u8
            }

            pub(crate) fn from_code(code: u8) -> Option<Self> {
                Self::ALL.get(usize::from(code)).copied()
            }
        }
    )*};
}

codes_in_order!(Severity, LogEventKind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_rules() {
        assert!(is_valid_metric_name("pg_up"));
        assert!(is_valid_metric_name("node:cpu_seconds:rate5m"));
        assert!(!is_valid_metric_name("9lives"));
        assert!(!is_valid_metric_name(""));
        assert!(!is_valid_metric_name("pg-up"));
        assert!(is_valid_label_name("datname"));
        assert!(!is_valid_label_name("__name__"));
        assert!(!is_valid_label_name("a:b"));
    }

    #[test]
    fn series_meta_sorts_and_rejects_duplicates() {
        let meta = SeriesMeta::new(
            SeriesId(1),
            "pg_stat_database_xact_commit_total",
            vec![
                ("instance".into(), "db1:5432".into()),
                ("datname".into(), "app".into()),
            ],
            MetricKind::Counter,
            "",
            "Transactions committed.",
        )
        .unwrap();
        assert_eq!(meta.labels[0].0, "datname");
        assert_eq!(meta.label("instance"), Some("db1:5432"));
        let err = SeriesMeta::new(
            SeriesId(1),
            "x",
            vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            MetricKind::Gauge,
            "",
            "",
        )
        .unwrap_err();
        assert_eq!(err, ModelError::DuplicateLabel { name: "a".into() });
    }

    #[test]
    fn agent_id_formats_as_uuid() {
        let id = AgentId([
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 7,
        ]);
        assert_eq!(id.to_string(), "12345678-9abc-def0-0001-020304050607");
    }

    #[test]
    fn enum_codes_round_trip() {
        for s in Severity::ALL {
            assert_eq!(Severity::from_code(s.code()), Some(s));
        }
        for k in LogEventKind::ALL {
            assert_eq!(LogEventKind::from_code(k.code()), Some(k));
        }
        assert_eq!(Severity::from_code(12), None);
        assert_eq!(LogEventKind::from_code(200), None);
    }
}
