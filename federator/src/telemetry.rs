//! The federator's own health, through `prometheus-client`, served on `/metrics` of
//! the self-metrics listener.
//!
//! Names follow `pga_federator_<what>_<unit>[_total]`. Labels come from bounded
//! sets only: `agent` (the configured agents) and `reason` (the fixed failure kinds
//! of [`crate::pull::ScrapeError::reason`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::pull::{PullReport, Round, ScrapeError};

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Self-metrics shared by the scheduler, the retention job and the listener.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    scrapes: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    samples: Family<Labels, Counter>,
    blocks: Family<Labels, Counter>,
    series: Family<Labels, Counter>,
    gaps: Family<Labels, Counter>,
    gap_blocks: Family<Labels, Counter>,
    up: Family<Labels, Gauge>,
    cursor: Family<Labels, Gauge>,
    lag_blocks: Family<Labels, Gauge>,
    lag_seconds: Family<Labels, FloatGauge>,
    scrape_duration: Histogram,
    database_up: Gauge,
    retention_runs: Counter,
    retention_failures: Counter,
    pack_batches: Counter,
    pack_rows: Counter,
    pack_failures: Counter,
    pack_remaining: Gauge,
    hours_rows: Counter,
    hours_failures: Counter,
    hours_behind: Gauge,
    ready: AtomicBool,
    /// Alert evaluation and notification metrics.
    pub alerting: crate::alerting::metrics::AlertingMetrics,
    /// Lease, assignment and fencing metrics.
    pub cluster: crate::cluster::ClusterMetrics,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

fn agent(name: &str) -> Labels {
    vec![("agent".to_owned(), name.to_owned())]
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Telemetry {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("pga_federator");
        let t = Telemetry {
            registry: Registry::default(),
            scrapes: Family::default(),
            failures: Family::default(),
            samples: Family::default(),
            blocks: Family::default(),
            series: Family::default(),
            gaps: Family::default(),
            gap_blocks: Family::default(),
            up: Family::default(),
            cursor: Family::default(),
            lag_blocks: Family::default(),
            lag_seconds: Family::default(),
            scrape_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            database_up: Gauge::default(),
            retention_runs: Counter::default(),
            retention_failures: Counter::default(),
            pack_batches: Counter::default(),
            pack_rows: Counter::default(),
            pack_failures: Counter::default(),
            pack_remaining: Gauge::default(),
            hours_rows: Counter::default(),
            hours_failures: Counter::default(),
            hours_behind: Gauge::default(),
            ready: AtomicBool::new(false),
            alerting: crate::alerting::metrics::AlertingMetrics::register(&mut r),
            cluster: crate::cluster::ClusterMetrics::register(&mut r),
        };
        r.register("scrapes", "Pulls started, per agent", t.scrapes.clone());
        r.register(
            "scrape_failures",
            format!(
                "Pulls that failed, per agent and reason ({})",
                ScrapeError::REASONS.join(", ")
            ),
            t.failures.clone(),
        );
        r.register(
            "samples_ingested",
            "Samples written to the database (sealed blocks and heads; rewrites of a \
             stored sample not counted), per agent",
            t.samples.clone(),
        );
        r.register(
            "blocks_ingested",
            "Sealed blocks committed, per agent",
            t.blocks.clone(),
        );
        r.register(
            "series_ingested",
            "Series descriptions added, per agent",
            t.series.clone(),
        );
        r.register(
            "gaps",
            "Gaps recorded: runs of blocks an agent evicted before they were pulled",
            t.gaps.clone(),
        );
        r.register(
            "gap_blocks",
            "Blocks lost in recorded gaps, per agent",
            t.gap_blocks.clone(),
        );
        r.register(
            "agent_up",
            "1 when the last pull of the agent succeeded, else 0",
            t.up.clone(),
        );
        r.register(
            "agent_cursor_sequence",
            "The last sealed block sequence committed, per agent",
            t.cursor.clone(),
        );
        r.register(
            "agent_lag_blocks",
            "Sealed blocks the agent holds that are not yet committed (backfill left)",
            t.lag_blocks.clone(),
        );
        r.register(
            "agent_lag_seconds",
            "Age of the newest sample committed from the agent",
            t.lag_seconds.clone(),
        );
        r.register(
            "scrape_duration_seconds",
            "Duration of one pull of one agent, all requests and commits included",
            t.scrape_duration.clone(),
        );
        r.register(
            "database_up",
            "1 when the database took the last write, 0 while scrapes are paused for it",
            t.database_up.clone(),
        );
        r.register(
            "retention_runs",
            "Retention job runs",
            t.retention_runs.clone(),
        );
        r.register(
            "retention_failures",
            "Retention job runs that failed",
            t.retention_failures.clone(),
        );
        r.register(
            "pack_batches",
            "Batches of raw samples moved from rows into the packed layout (one \
             transaction each)",
            t.pack_batches.clone(),
        );
        r.register(
            "pack_rows",
            "Raw samples moved from rows into the packed layout",
            t.pack_rows.clone(),
        );
        r.register(
            "pack_failures",
            "Pack runs that failed, and agents whose batch failed in a run",
            t.pack_failures.clone(),
        );
        r.register(
            "pack_remaining_rows",
            "Raw samples older than the pack cutoff still stored as rows after the last \
             pack run (0 when it finished; else the planner's estimate)",
            t.pack_remaining.clone(),
        );
        r.register(
            "hours_rows",
            "1-hour, 10-minute and 1-day rollup rows written by the hours job as it closed agents' buckets",
            t.hours_rows.clone(),
        );
        r.register(
            "hours_failures",
            "Hours job runs that failed, and agents whose hours failed to close in a run",
            t.hours_failures.clone(),
        );
        r.register(
            "hours_agents_behind",
            "Agents whose hours were not closed up to the current hour at the end of the \
             last hours job run (busy, failed or out of time); their hours are read from \
             1-minute rollups meanwhile",
            t.hours_behind.clone(),
        );
        Telemetry { registry: r, ..t }
    }

    /// The registry (prefix `pga_federator`), for other parts to register their
    /// metrics in before the telemetry is shared (the API's).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// A pull of `name` starts.
    pub fn scrape_started(&self, name: &str) {
        self.scrapes.get_or_create(&agent(name)).inc();
    }

    /// One request of a pull was committed.
    pub fn round(&self, name: &str, r: &Round) {
        let l = agent(name);
        self.samples.get_or_create(&l).inc_by(r.samples);
        self.blocks.get_or_create(&l).inc_by(r.blocks);
        self.series.get_or_create(&l).inc_by(r.series);
        if let Some(g) = r.gap {
            self.gaps.get_or_create(&l).inc();
            self.gap_blocks
                .get_or_create(&l)
                .inc_by(g.last_sequence - g.first_sequence + 1);
        }
        self.cursor.get_or_create(&l).set(r.cursor as i64);
        self.lag_blocks
            .get_or_create(&l)
            .set(r.newest.saturating_sub(r.cursor) as i64);
        if let Some(ts) = r.newest_ts_ms {
            self.lag_seconds
                .get_or_create(&l)
                .set((now_ms() - ts).max(0) as f64 / 1000.0);
        }
        self.database_up.set(1);
    }

    /// A pull of `name` ended.
    pub fn scrape_ended(&self, name: &str, secs: f64, result: &Result<PullReport, ScrapeError>) {
        self.scrape_duration.observe(secs);
        let l = agent(name);
        match result {
            Ok(_) => {
                self.up.get_or_create(&l).set(1);
                self.database_up.set(1);
            }
            Err(e) if e.is_database_unavailable() => {
                self.database_up.set(0);
                let mut l = l;
                l.push(("reason".to_owned(), e.reason().to_owned()));
                self.failures.get_or_create(&l).inc();
            }
            Err(e) => {
                self.up.get_or_create(&l).set(0);
                let mut l = l;
                l.push(("reason".to_owned(), e.reason().to_owned()));
                self.failures.get_or_create(&l).inc();
            }
        }
    }

    /// While pulls are paused for the database: the agent holds sealed blocks up to
    /// `newest`, the last committed cursor is `cursor`.
    pub fn lag_while_paused(&self, name: &str, newest: u64, cursor: u64) {
        self.lag_blocks
            .get_or_create(&agent(name))
            .set(newest.saturating_sub(cursor) as i64);
    }

    /// The agent is configured: its series exist from the start (up 0 until pulled).
    pub fn agent_configured(&self, name: &str) {
        let l = agent(name);
        self.up.get_or_create(&l).set(0);
        self.scrapes.get_or_create(&l).inc_by(0);
        self.samples.get_or_create(&l).inc_by(0);
        self.gaps.get_or_create(&l).inc_by(0);
    }

    /// The retention job ran.
    pub fn retention(&self, ok: bool) {
        self.retention_runs.inc();
        if !ok {
            self.retention_failures.inc();
        }
    }

    /// A batch of raw samples was packed (`rows` moved).
    pub fn pack_batch(&self, rows: u64) {
        self.pack_batches.inc();
        self.pack_rows.inc_by(rows);
    }

    /// A pack run ended: `failures` agents (or the run itself) failed; `remaining`
    /// rows are left when known.
    pub fn pack_ended(&self, failures: u64, remaining: Option<u64>) {
        self.pack_failures.inc_by(failures);
        if let Some(r) = remaining {
            self.pack_remaining.set(r as i64);
        }
    }

    /// An hours job run ended (`None`: it failed as a whole).
    pub fn hours_ended(&self, report: Option<&crate::db::sink::HoursReport>) {
        match report {
            Some(r) => {
                self.hours_rows.inc_by(r.rows);
                self.hours_failures.inc_by(r.failures.len() as u64);
                self.hours_behind.set(r.agents_left as i64);
            }
            None => {
                self.hours_failures.inc();
            }
        }
    }

    /// Whether the database was reachable at the last attempt.
    pub fn set_database_up(&self, up: bool) {
        self.database_up.set(i64::from(up));
    }

    /// Ready: migrated and scheduling (for `/readyz`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `/readyz` should answer 200: started and the database up.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.database_up.get() == 1
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ignored = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_agent_series() {
        let t = Telemetry::new();
        t.agent_configured("db-1");
        t.round(
            "db-1",
            &Round {
                blocks: 2,
                samples: 40,
                newest: 5,
                cursor: 3,
                ..Default::default()
            },
        );
        let text = t.render();
        assert!(
            text.contains("pga_federator_samples_ingested_total{agent=\"db-1\"} 40"),
            "{text}"
        );
        assert!(
            text.contains("pga_federator_agent_lag_blocks{agent=\"db-1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("pga_federator_agent_up{agent=\"db-1\"} 0"),
            "{text}"
        );
        t.lag_while_paused("db-1", 9, 3);
        assert!(
            t.render()
                .contains("pga_federator_agent_lag_blocks{agent=\"db-1\"} 6"),
            "{text}"
        );
    }

    #[test]
    fn a_paused_pull_counts_as_database_unavailable_for_its_agent() {
        use crate::db::sink::SinkError;
        use crate::pull::DestinationError;
        let t = Telemetry::new();
        let err = ScrapeError::Destination(DestinationError::Unavailable(SinkError::ReadOnly));
        t.scrape_ended("db-1", 0.1, &Err(err));
        let text = t.render();
        assert!(
            text.contains(
                "pga_federator_scrape_failures_total{agent=\"db-1\",reason=\"database_unavailable\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("pga_federator_database_up 0"), "{text}");
    }
}
