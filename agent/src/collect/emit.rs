//! What a collector pass produces: samples ([`Emitted`], gathered by an [`Emitter`])
//! and, from the log collector, log events with their cursor ([`LogBatch`]).

use pga_format::{LogEvent, MetricKind};

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

impl Emitted {
    /// A sample; `labels` need not be sorted.
    pub fn new(
        kind: MetricKind,
        name: &str,
        help: &'static str,
        unit: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Emitted {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        labels.sort();
        Emitted {
            name: name.to_owned(),
            labels,
            kind,
            unit,
            help,
            value,
        }
    }
}

/// Collects the samples of one collector pass, and the log events and cursor of a
/// collector that reads logs (stored in the same transaction as the samples).
#[derive(Debug, Default)]
pub struct Emitter {
    samples: Vec<Emitted>,
    logs: LogBatch,
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
        self.samples
            .push(Emitted::new(kind, name, help, unit, labels, value));
    }

    pub fn samples(&self) -> &[Emitted] {
        &self.samples
    }

    /// Each sample's name and value, in order: what a collector's test compares.
    #[cfg(test)]
    pub fn names_and_values(&self) -> Vec<(&str, f64)> {
        self.samples
            .iter()
            .map(|s| (s.name.as_str(), s.value))
            .collect()
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
    pub fn log_event(&mut self, event: LogEvent) {
        self.logs.events.push(event);
    }

    /// Log events recorded so far in this pass.
    pub fn log_events(&self) -> &[LogEvent] {
        &self.logs.events
    }

    /// Sets the cursor saved with this pass (replacing one set before).
    pub fn set_cursor(&mut self, name: &str, value: Vec<u8>) {
        self.logs.cursor = Some((name.to_owned(), value));
    }

    /// Takes the log events and cursor, leaving them empty.
    pub fn take_logs(&mut self) -> LogBatch {
        std::mem::take(&mut self.logs)
    }
}

/// What a collector hands the store with a pass besides its samples: log events and
/// the cursor (file offsets, running totals) that produced them. Both commit in the
/// transaction of the pass's samples, so a crash keeps all of them or none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogBatch {
    pub events: Vec<LogEvent>,
    /// `(name, bytes)` saved into the store's `cursors` table.
    pub cursor: Option<(String, Vec<u8>)>,
}

impl LogBatch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.cursor.is_none()
    }
}
