//! Remote-write self-metrics, `pga_federator_remote_write_*`, registered in the
//! federator's registry at start. Labels from bounded sets: `destination` (the
//! configured ones), `agent` (the fleet) and `outcome` (fixed words).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Every value of the `outcome` label of `requests_total`.
pub const OUTCOMES: [&str; 4] = ["acknowledged", "rejected", "retried", "failed"];

/// Remote-write metrics, shared by every destination.
#[derive(Debug, Clone, Default)]
pub struct RemoteWriteMetrics {
    samples: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    requests: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    gap_blocks: Family<Labels, Counter>,
    up: Family<Labels, Gauge>,
    cursor: Family<Labels, Gauge>,
}

fn dest(d: &str) -> Labels {
    vec![("destination".to_owned(), d.to_owned())]
}

fn dest_agent(d: &str, a: &str) -> Labels {
    vec![
        ("destination".to_owned(), d.to_owned()),
        ("agent".to_owned(), a.to_owned()),
    ]
}

impl RemoteWriteMetrics {
    /// Registers the metrics in `registry` under `remote_write_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("remote_write");
        r.register(
            "samples_sent",
            "Samples a remote-write destination acknowledged, per destination",
            self.samples.clone(),
        );
        r.register(
            "samples_rejected",
            "Samples a destination refused for good (400 and the like: too old, out of \
             order), recorded in remote_write_rejections, per destination",
            self.rejected.clone(),
        );
        r.register(
            "requests",
            format!(
                "Remote-write requests per destination and outcome ({})",
                OUTCOMES.join(", ")
            ),
            self.requests.clone(),
        );
        r.register(
            "sent_bytes",
            "Compressed request bytes acknowledged, per destination",
            self.bytes.clone(),
        );
        r.register(
            "gap_blocks",
            "Blocks the agents evicted before a destination got them, per destination",
            self.gap_blocks.clone(),
        );
        r.register(
            "up",
            "1 while the destination takes requests, 0 while it is down or misconfigured",
            self.up.clone(),
        );
        r.register(
            "cursor_sequence",
            "Last sealed block a destination acknowledged, per destination and agent",
            self.cursor.clone(),
        );
    }

    pub fn acknowledged(&self, d: &str, samples: u64, bytes: u64) {
        self.samples.get_or_create(&dest(d)).inc_by(samples);
        self.bytes.get_or_create(&dest(d)).inc_by(bytes);
        self.request(d, "acknowledged");
    }

    pub fn rejected(&self, d: &str, samples: u64) {
        self.rejected.get_or_create(&dest(d)).inc_by(samples);
        self.request(d, "rejected");
    }

    pub fn request(&self, d: &str, outcome: &str) {
        let mut l = dest(d);
        l.push(("outcome".to_owned(), outcome.to_owned()));
        self.requests.get_or_create(&l).inc();
    }

    pub fn gap(&self, d: &str, blocks: u64) {
        self.gap_blocks.get_or_create(&dest(d)).inc_by(blocks);
    }

    pub fn set_up(&self, d: &str, up: bool) {
        self.up.get_or_create(&dest(d)).set(i64::from(up));
    }

    pub fn cursor(&self, d: &str, agent: &str, seq: u64) {
        self.cursor
            .get_or_create(&dest_agent(d, agent))
            .set(seq as i64);
    }
}
