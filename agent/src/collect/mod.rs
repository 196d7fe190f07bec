//! Collectors and what they hand to the scheduler.
//!
//! A collector fills an [`Emitter`] with samples; the scheduler stamps every sample of
//! one pass with the pass's timestamp and hands the batch to the store, which interns
//! each distinct (name, labels) as a series id.

pub mod logs;
pub mod postgres;
pub mod server_facts;
pub mod system;

use std::fmt;

use pga_format::MetricKind;

/// The label naming the PostgreSQL instance (the `[[postgres]]` name) on every series
/// about it. Not `instance`: a Prometheus server sets that label on every scraped
/// series itself (the target's address), so the agent's would arrive renamed to
/// `exported_instance`. Stores written before store schema 2 named it `instance`;
/// opening one renames it in the dictionary (`store` module).
pub const INSTANCE_LABEL: &str = "pg_instance";

/// Which tick a collector runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// Activity, locks, replication, OS: every 10 s by default.
    Fast,
    /// Statistics views that change slowly: every 60 s by default.
    Slow,
    /// Database and relation sizes: every 300 s by default.
    Sizes,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Fast, Group::Slow, Group::Sizes];

    pub const fn as_str(self) -> &'static str {
        match self {
            Group::Fast => "fast",
            Group::Slow => "slow",
            Group::Sizes => "sizes",
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sample as a collector produces it, before it has a series id.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// Prometheus metric name, `_total` suffix on counters, base units.
    pub name: String,
    /// Label pairs sorted by name.
    pub labels: Vec<(String, String)>,
    pub kind: MetricKind,
    /// Base unit (`seconds`, `bytes`) or empty.
    pub unit: &'static str,
    pub help: &'static str,
    pub value: f64,
}

/// Collects the samples of one collector pass, and the log events and cursor of a
/// collector that reads logs (stored in the same transaction as the samples).
#[derive(Debug, Default)]
pub struct Emitter {
    samples: Vec<Emitted>,
    logs: crate::store::LogBatch,
}

impl Emitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a gauge sample. `labels` need not be sorted.
    pub fn gauge(
        &mut self,
        name: &str,
        help: &'static str,
        unit: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.push(MetricKind::Gauge, name, help, unit, labels, value);
    }

    /// Records a counter sample (`name` should end in `_total`). `labels` need not be sorted.
    pub fn counter(
        &mut self,
        name: &str,
        help: &'static str,
        unit: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.push(MetricKind::Counter, name, help, unit, labels, value);
    }

    fn push(
        &mut self,
        kind: MetricKind,
        name: &str,
        help: &'static str,
        unit: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        labels.sort();
        self.samples.push(Emitted {
            name: name.to_owned(),
            labels,
            kind,
            unit,
            help,
            value,
        });
    }

    pub fn samples(&self) -> &[Emitted] {
        &self.samples
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Moves every sample of `other` to the end of this one.
    pub fn append(&mut self, other: &mut Emitter) {
        self.samples.append(&mut other.samples);
    }

    /// Takes the samples, leaving the emitter empty.
    pub fn take(&mut self) -> Vec<Emitted> {
        std::mem::take(&mut self.samples)
    }

    /// Records a log event of this pass.
    pub fn log_event(&mut self, event: pga_format::LogEvent) {
        self.logs.events.push(event);
    }

    /// Log events recorded so far in this pass.
    pub fn log_events(&self) -> &[pga_format::LogEvent] {
        &self.logs.events
    }

    /// Sets the cursor saved with this pass (replacing one set before).
    pub fn set_cursor(&mut self, name: &str, value: Vec<u8>) {
        self.logs.cursor = Some((name.to_owned(), value));
    }

    /// Takes the log events and cursor, leaving them empty.
    pub fn take_logs(&mut self) -> crate::store::LogBatch {
        std::mem::take(&mut self.logs)
    }
}

/// Why a collector (or one part of it) failed in a pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    #[error("reading {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("parsing {path}: {detail}")]
    Parse { path: String, detail: String },
    #[error("{0}")]
    Other(String),
}

impl CollectError {
    pub fn io(path: impl AsRef<std::path::Path>, error: std::io::Error) -> Self {
        CollectError::Io {
            path: path.as_ref().display().to_string(),
            error,
        }
    }

    pub fn parse(path: impl AsRef<std::path::Path>, detail: impl Into<String>) -> Self {
        CollectError::Parse {
            path: path.as_ref().display().to_string(),
            detail: detail.into(),
        }
    }
}
