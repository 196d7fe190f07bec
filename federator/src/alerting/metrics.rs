//! The alerting's self-metrics, registered in the federator's registry
//! ([`crate::telemetry::Telemetry::alerting`]). Labels from bounded sets: `outcome`
//! (fixed words), `state` (pending, firing) and `receiver` (the configured receivers).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Alert evaluation and notification metrics.
#[derive(Debug, Clone)]
pub struct AlertingMetrics {
    cycles: Family<Labels, Counter>,
    cycle_duration: Histogram,
    rules: Gauge,
    alerts: Family<Labels, Gauge>,
    errors: Counter,
    notifications: Family<Labels, Counter>,
    failures_in_a_row: Family<Labels, Gauge>,
    latency: Histogram,
}

impl AlertingMetrics {
    /// Registers the metrics in `r` (prefixed `pga_federator_` by the registry).
    pub fn register(r: &mut Registry) -> AlertingMetrics {
        let m = AlertingMetrics {
            cycles: Family::default(),
            cycle_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            rules: Gauge::default(),
            alerts: Family::default(),
            errors: Counter::default(),
            notifications: Family::default(),
            failures_in_a_row: Family::default(),
            latency: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
        };
        r.register(
            "alert_cycles",
            "Alert evaluation cycles, by outcome (ok; skipped: another federator holds the \
             evaluation lock; failed)",
            m.cycles.clone(),
        );
        r.register(
            "alert_cycle_duration_seconds",
            "Duration of one evaluation cycle over every agent and rule",
            m.cycle_duration.clone(),
        );
        r.register(
            "alert_rules",
            "Enabled alert rules evaluated",
            m.rules.clone(),
        );
        r.register("alerts", "Open alerts, by state", m.alerts.clone());
        r.register(
            "alert_evaluation_errors",
            "Rule evaluations that failed (a query error, e.g. many-to-many matching)",
            m.errors.clone(),
        );
        r.register(
            "notifications",
            "Notifications handled per receiver, by outcome (delivered, rejected by the \
             receiver for good, muted by a maintenance window, failed and to be retried)",
            m.notifications.clone(),
        );
        r.register(
            "notification_failures_in_a_row",
            "Failed delivery attempts in a row at the head of a receiver's queue",
            m.failures_in_a_row.clone(),
        );
        r.register(
            "notification_delay_seconds",
            "From a notification's creation to its delivery",
            m.latency.clone(),
        );
        m
    }

    pub fn cycle(&self, outcome: &str, secs: Option<f64>) {
        self.cycles
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc();
        if let Some(s) = secs {
            self.cycle_duration.observe(s);
        }
    }

    pub fn set_rules(&self, n: usize) {
        self.rules.set(n as i64);
    }

    pub fn set_alerts(&self, pending: usize, firing: usize) {
        for (s, n) in [("pending", pending), ("firing", firing)] {
            self.alerts
                .get_or_create(&vec![("state".into(), s.into())])
                .set(n as i64);
        }
    }

    pub fn evaluation_errors(&self, n: u64) {
        self.errors.inc_by(n);
    }

    pub fn notified(&self, receiver: &str, outcome: &str, n: u64) {
        self.notifications
            .get_or_create(&vec![
                ("receiver".into(), receiver.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc_by(n);
    }

    pub fn set_failures(&self, receiver: &str, n: i64) {
        self.failures_in_a_row
            .get_or_create(&vec![("receiver".into(), receiver.into())])
            .set(n);
    }

    pub fn delay(&self, secs: f64) {
        self.latency.observe(secs);
    }
}
