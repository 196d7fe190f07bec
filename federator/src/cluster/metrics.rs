//! The cluster's self-metrics, registered in the federator's registry
//! ([`crate::telemetry::Telemetry::cluster`]); no labels.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Lease, assignment and fencing metrics of this replica.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    lease_held: Gauge,
    replicas: Gauge,
    agents_owned: Gauge,
    leader: Gauge,
    takeovers: Counter,
    lease_expired: Counter,
    fenced_writes: Counter,
    epochs_refused: Counter,
}

impl ClusterMetrics {
    /// Registers the metrics in `r` (prefixed `pga_federator_` by the registry).
    pub fn register(r: &mut Registry) -> ClusterMetrics {
        let m = ClusterMetrics::default();
        r.register(
            "cluster_lease_held",
            "1 while this replica's lease is valid (renewed within cluster.lease_ttl_ms)",
            m.lease_held.clone(),
        );
        r.register(
            "cluster_replicas",
            "Live replicas seen at the last renewal, this one included",
            m.replicas.clone(),
        );
        r.register(
            "cluster_agents_owned",
            "Agents whose leases this replica holds (and pulls)",
            m.agents_owned.clone(),
        );
        r.register(
            "cluster_leader",
            "1 while this replica holds the alerting leader lease",
            m.leader.clone(),
        );
        r.register(
            "cluster_takeovers",
            "Leases taken over from a replica whose lease ran out",
            m.takeovers.clone(),
        );
        r.register(
            "cluster_lease_expirations",
            "Renewals that found this replica's own lease run out (frozen, cut off, slow)",
            m.lease_expired.clone(),
        );
        r.register(
            "cluster_fenced_writes",
            "Batches refused by fencing: written with an epoch this replica no longer holds",
            m.fenced_writes.clone(),
        );
        r.register(
            "cluster_epochs_refused",
            "Leases found with an epoch below the one granted (a hand edit), not used",
            m.epochs_refused.clone(),
        );
        m
    }

    pub fn set_lease_held(&self, held: bool) {
        self.lease_held.set(i64::from(held));
    }
    pub fn set_replicas(&self, n: usize) {
        self.replicas.set(n as i64);
    }
    pub fn set_held(&self, agents: usize, leader: bool) {
        self.agents_owned.set(agents as i64);
        self.leader.set(i64::from(leader));
    }
    pub fn takeover(&self) {
        self.takeovers.inc();
    }
    pub fn lease_expired(&self) {
        self.lease_expired.inc();
    }
    pub fn fenced_write(&self) {
        self.fenced_writes.inc();
    }
    pub fn epoch_refused(&self) {
        self.epochs_refused.inc();
    }
}
