//! The agent's own health, through `prometheus-client`: collection durations and
//! errors per collector, store size, blocks and time span, the endpoint's open and
//! refused connections.
//!
//! Names follow `pga_agent_<what>_<unit>[_total]`; the labels are `collector`, from
//! the bounded set of collector names, and `reason`, from [`Refusal::ALL`]. The
//! store's write health is served live by `/metrics` from the store itself
//! (`StoreHealth`), since a store that cannot write cannot store it either.
//!
//! [`SelfCollector`] stores the same figures as series every fast tick, like any
//! other collector's.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::collect::{CollectError, Collector, Emitter, Group};
use crate::endpoint::admission::Refusal;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// The store's figures as the self-metrics report them (`crate::store::Store::figures`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StoreFigures {
    pub file_bytes: u64,
    pub logical_bytes: u64,
    pub blocks: u64,
    pub series: u64,
    /// Oldest and newest sample held, ms since the epoch.
    pub time_range: Option<(i64, i64)>,
}

/// Self-metrics shared by the scheduler, the store writer and (later) `/metrics`.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    collector_duration: Family<Labels, Histogram>,
    collector_last_duration: Family<Labels, FloatGauge>,
    collector_errors: Family<Labels, Counter>,
    collector_samples: Family<Labels, Gauge>,
    store_file_bytes: Gauge,
    store_logical_bytes: Gauge,
    store_blocks: Gauge,
    store_series: Gauge,
    store_oldest: FloatGauge,
    store_newest: FloatGauge,
    store_evicted: Counter,
    store_write_errors: Counter,
    endpoint_refused: Family<Labels, Counter>,
    endpoint_handshakes: Gauge,
    endpoint_connections: Gauge,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

fn labels(collector: &str) -> Labels {
    vec![("collector".to_owned(), collector.to_owned())]
}

impl Telemetry {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pga_agent");
        let collector_duration = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let t = Telemetry {
            collector_duration,
            collector_last_duration: Family::default(),
            collector_errors: Family::default(),
            collector_samples: Family::default(),
            store_file_bytes: Gauge::default(),
            store_logical_bytes: Gauge::default(),
            store_blocks: Gauge::default(),
            store_series: Gauge::default(),
            store_oldest: FloatGauge::default(),
            store_newest: FloatGauge::default(),
            store_evicted: Counter::default(),
            store_write_errors: Counter::default(),
            endpoint_refused: Family::default(),
            endpoint_handshakes: Gauge::default(),
            endpoint_connections: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "collector_duration_seconds",
            "Time one pass of a collector took",
            t.collector_duration.clone(),
        );
        registry.register(
            "collector_last_duration_seconds",
            "Time the latest pass of a collector took",
            t.collector_last_duration.clone(),
        );
        registry.register(
            "collector_errors",
            "Errors met by a collector",
            t.collector_errors.clone(),
        );
        registry.register(
            "collector_samples",
            "Samples the latest pass of a collector produced",
            t.collector_samples.clone(),
        );
        registry.register(
            "store_file_bytes",
            "Size of the ring store file",
            t.store_file_bytes.clone(),
        );
        registry.register(
            "store_logical_bytes",
            "Bytes of blocks, head and dictionary the budget counts",
            t.store_logical_bytes.clone(),
        );
        registry.register(
            "store_blocks",
            "Sealed blocks held in the ring store",
            t.store_blocks.clone(),
        );
        registry.register(
            "store_series",
            "Series in the ring store's dictionary",
            t.store_series.clone(),
        );
        registry.register(
            "store_oldest_sample_timestamp_seconds",
            "Time of the oldest sample held",
            t.store_oldest.clone(),
        );
        registry.register(
            "store_newest_sample_timestamp_seconds",
            "Time of the newest sample held",
            t.store_newest.clone(),
        );
        registry.register(
            "store_evicted_blocks",
            "Blocks evicted by budget or retention",
            t.store_evicted.clone(),
        );
        registry.register(
            "store_write_errors",
            "Collections the store failed to write",
            t.store_write_errors.clone(),
        );
        registry.register(
            "endpoint_refused",
            "Connections the endpoint refused or closed, by reason",
            t.endpoint_refused.clone(),
        );
        registry.register(
            "endpoint_handshakes",
            "TLS handshakes in progress",
            t.endpoint_handshakes.clone(),
        );
        registry.register(
            "endpoint_connections",
            "Authenticated connections open",
            t.endpoint_connections.clone(),
        );
        Telemetry { registry, ..t }
    }

    /// Counts one connection the endpoint refused.
    pub fn endpoint_refused(&self, reason: &str) {
        self.endpoint_refused
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }

    /// Records the handshakes in progress and the authenticated connections open.
    pub fn endpoint_open(&self, handshakes: usize, connections: usize) {
        self.endpoint_handshakes.set(handshakes as i64);
        self.endpoint_connections.set(connections as i64);
    }

    /// Records one collector pass.
    pub fn collector_pass(&self, collector: &str, seconds: f64, samples: usize, errors: usize) {
        let l = labels(collector);
        self.collector_duration.get_or_create(&l).observe(seconds);
        self.collector_last_duration.get_or_create(&l).set(seconds);
        self.collector_samples.get_or_create(&l).set(samples as i64);
        self.collector_errors
            .get_or_create(&l)
            .inc_by(errors as u64);
    }

    /// Records the store's figures after a write.
    pub fn store(&self, s: &StoreFigures, evicted: u64) {
        self.store_file_bytes.set(s.file_bytes as i64);
        self.store_logical_bytes.set(s.logical_bytes as i64);
        self.store_blocks.set(s.blocks as i64);
        self.store_series.set(s.series as i64);
        if let Some((lo, hi)) = s.time_range {
            self.store_oldest.set(lo as f64 / 1000.0);
            self.store_newest.set(hi as f64 / 1000.0);
        }
        self.store_evicted.inc_by(evicted);
    }

    pub fn store_write_failed(&self) {
        self.store_write_errors.inc();
    }

    /// The Prometheus text exposition of every self-metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ignored = encode(&mut out, &self.registry);
        out
    }

    /// The current self-metrics as samples, so they are stored like any other series.
    pub fn emit(&self, collectors: &[&str], out: &mut Emitter) {
        for &c in collectors {
            let l = [("collector", c)];
            let key = labels(c);
            out.gauge(
                "pga_agent_collector_last_duration_seconds",
                "Time the latest pass of a collector took.",
                "seconds",
                &l,
                self.collector_last_duration.get_or_create(&key).get(),
            );
            out.counter(
                "pga_agent_collector_errors_total",
                "Errors met by a collector.",
                "",
                &l,
                self.collector_errors.get_or_create(&key).get() as f64,
            );
            out.gauge(
                "pga_agent_collector_samples",
                "Samples the latest pass of a collector produced.",
                "",
                &l,
                self.collector_samples.get_or_create(&key).get() as f64,
            );
        }
        out.gauge(
            "pga_agent_store_file_bytes",
            "Size of the ring store file.",
            "bytes",
            &[],
            self.store_file_bytes.get() as f64,
        );
        out.gauge(
            "pga_agent_store_blocks",
            "Sealed blocks held in the ring store.",
            "",
            &[],
            self.store_blocks.get() as f64,
        );
        out.gauge(
            "pga_agent_store_series",
            "Series in the ring store's dictionary.",
            "",
            &[],
            self.store_series.get() as f64,
        );
        out.counter(
            "pga_agent_store_evicted_blocks_total",
            "Blocks evicted by budget or retention.",
            "",
            &[],
            self.store_evicted.get() as f64,
        );
        for reason in Refusal::ALL {
            let key = vec![("reason".to_owned(), reason.as_str().to_owned())];
            out.counter(
                "pga_agent_endpoint_refused_total",
                "Connections the endpoint refused or closed, by reason (handshake failures, bounds, the allow-list).",
                "",
                &[("reason", reason.as_str())],
                self.endpoint_refused.get_or_create(&key).get() as f64,
            );
        }
        out.gauge(
            "pga_agent_endpoint_handshakes",
            "TLS handshakes in progress at the endpoint.",
            "",
            &[],
            self.endpoint_handshakes.get() as f64,
        );
        out.gauge(
            "pga_agent_endpoint_connections",
            "Authenticated connections open at the endpoint.",
            "",
            &[],
            self.endpoint_connections.get() as f64,
        );
    }
}

/// The agent's own health as a collector in the fast group.
#[derive(Debug)]
pub struct SelfCollector {
    pub telemetry: Arc<Telemetry>,
    pub collectors: Vec<&'static str>,
}

impl Collector for SelfCollector {
    fn name(&self) -> &'static str {
        "self"
    }

    fn group(&self) -> Group {
        Group::Fast
    }

    fn collect(&mut self, out: &mut Emitter) -> Vec<CollectError> {
        self.telemetry.emit(&self.collectors, out);
        Vec::new()
    }
}
