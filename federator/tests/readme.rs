//! docs/federator.md says what the federator does: every self-metric and failure
//! reason of "Self-metrics", every key of "Configuration", and no other.

use std::collections::BTreeSet;

use pga_federator::config::schema_keys;
use pga_federator::db::sink::SinkError;
use pga_federator::pull::batch::Gap;
use pga_federator::pull::{DestinationError, Round, ScrapeError};
use pga_federator::telemetry::Telemetry;

fn page() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/federator.md")).unwrap()
}

/// The rows of the first table under `heading`, as cells.
fn table(heading: &str) -> Vec<Vec<String>> {
    let text = page();
    let section = text
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("docs/federator.md has {heading}"));
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The `code` spans of a cell.
fn spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_self_metric_is_documented_and_exists() {
    let mut documented = BTreeSet::new();
    for row in table("## Self-metrics") {
        for name in spans(&row[0]) {
            let name = name.split('{').next().unwrap_or_default();
            let name = match name.strip_prefix('…') {
                Some(rest) => format!("pga_federator{rest}"),
                None => name.to_owned(),
            };
            documented.insert(name);
        }
    }
    // Every series shown once something happened to it.
    let mut t = Telemetry::new();
    // The API's metrics share the registry (`run.rs`).
    let api = pga_federator::http::metrics::ApiMetrics::default();
    api.register(t.registry_mut());
    api.request("/api/v1/agents", "GET", 200, 0.01);
    api.login("success");
    api.auth_refused("expired");
    // Remote-write's, likewise (`app/remote_write.rs`).
    let rw = pga_federator::remote_write::RemoteWriteMetrics::default();
    rw.register(t.registry_mut());
    rw.acknowledged("vm", 1, 1);
    rw.rejected("vm", 1);
    rw.gap("vm", 1);
    rw.set_up("vm", true);
    rw.cursor("vm", "a", 1);
    t.agent_configured("a");
    t.round(
        "a",
        &Round {
            blocks: 1,
            samples: 1,
            series: 1,
            gap: Some(Gap {
                first_sequence: 1,
                last_sequence: 1,
                after_ts_ms: None,
                before_ts_ms: None,
            }),
            cursor: 2,
            newest: 3,
            newest_ts_ms: Some(1),
        },
    );
    t.scrape_ended(
        "a",
        0.1,
        &Err(ScrapeError::Destination(DestinationError::Unavailable(
            SinkError::ReadOnly,
        ))),
    );
    t.retention(false);
    // Alert evaluation and notifications (`alerting/metrics.rs`).
    t.alerting.cycle("ok", Some(0.5));
    t.alerting.set_rules(1);
    t.alerting.set_alerts(1, 1);
    t.alerting.evaluation_errors(1);
    t.alerting.notified("am1", "delivered", 1);
    t.alerting.set_failures("am1", 0);
    t.alerting.delay(0.1);
    let text = t.render();
    let mut served = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            served.insert(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            });
        }
    }
    assert_eq!(documented, served);
}

#[test]
fn every_failure_reason_is_documented() {
    let rows = table("## Self-metrics");
    let row = rows
        .iter()
        .find(|r| r[0].contains("scrape_failures_total"))
        .unwrap();
    let documented: BTreeSet<String> = spans(&row[1]).into_iter().collect();
    let code: BTreeSet<String> = ScrapeError::REASONS.iter().map(|r| r.to_string()).collect();
    assert_eq!(documented, code);
}

#[test]
fn every_configuration_key_is_documented() {
    let mut documented = BTreeSet::new();
    for row in table("## Configuration") {
        for key in spans(&row[0]) {
            documented.insert(key.replace("[]", ""));
        }
    }
    let code: BTreeSet<String> = schema_keys().into_iter().collect();
    assert_eq!(documented, code);
}
