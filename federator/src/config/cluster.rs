//! `[cluster]`: the replica lease of this federator (docs/federator.md, "Replicas,
//! leases and fencing"). Every `pga-federator run` is a replica; without the table
//! it is one with the defaults, and alone it owns every agent.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problem, Severity};

/// `[cluster]`: how this replica holds its lease on the shared central database.
/// The defaults are those of Vault's PostgreSQL HA backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This replica's name in `cluster_replicas` and `pga-federator cluster status`
    /// (several may share one). Default `""`: the host name.
    pub replica_name: String,
    /// How long a lease lasts after each renewal, on the database's clock, in
    /// milliseconds: a replica that stopped renewing (killed, frozen, cut off) loses
    /// its agents this long after its last renewal, and they are taken over by the
    /// others. 1000..=600000, default 15000.
    pub lease_ttl_ms: u64,
    /// How often the lease is renewed (and the agents' assignment checked), in
    /// milliseconds. At most a third of `lease_ttl_ms`, at least 100; default 5000.
    pub renew_interval_ms: u64,
    /// After a failed renewal (the database unreachable), the next attempt comes
    /// this many milliseconds later. 100..=`renew_interval_ms`, default 1000.
    pub retry_interval_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            replica_name: String::new(),
            lease_ttl_ms: DEFAULT_LEASE_TTL_MS,
            renew_interval_ms: DEFAULT_RENEW_INTERVAL_MS,
            retry_interval_ms: DEFAULT_RETRY_INTERVAL_MS,
        }
    }
}

/// Default `cluster.lease_ttl_ms`.
pub const DEFAULT_LEASE_TTL_MS: u64 = 15_000;
/// Default `cluster.renew_interval_ms`.
pub const DEFAULT_RENEW_INTERVAL_MS: u64 = 5_000;
/// Default `cluster.retry_interval_ms`.
pub const DEFAULT_RETRY_INTERVAL_MS: u64 = 1_000;

impl ClusterConfig {
    pub const fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
    pub const fn renew_interval(&self) -> Duration {
        Duration::from_millis(self.renew_interval_ms)
    }
    pub const fn retry_interval(&self) -> Duration {
        Duration::from_millis(self.retry_interval_ms)
    }

    /// Every problem of `[cluster]`, each naming its key and the fix.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut error = |key: &str, message: String, fix: String| {
            out.push(Problem::new(Severity::Error, key, message, fix));
        };
        if !(1000..=600_000).contains(&self.lease_ttl_ms) {
            error(
                "cluster.lease_ttl_ms",
                format!("{} is out of range", self.lease_ttl_ms),
                format!("set it between 1000 and 600000 (default {DEFAULT_LEASE_TTL_MS})"),
            );
        } else if self.renew_interval_ms < 100 || self.renew_interval_ms * 3 > self.lease_ttl_ms {
            error(
                "cluster.renew_interval_ms",
                format!(
                    "{} ms with cluster.lease_ttl_ms = {}: a lease must be renewable at \
                     least three times before it runs out",
                    self.renew_interval_ms, self.lease_ttl_ms
                ),
                format!(
                    "set it between 100 and {} (a third of lease_ttl_ms; default {DEFAULT_RENEW_INTERVAL_MS} \
                     with lease_ttl_ms {DEFAULT_LEASE_TTL_MS})",
                    self.lease_ttl_ms / 3
                ),
            );
        } else if !(100..=self.renew_interval_ms).contains(&self.retry_interval_ms) {
            error(
                "cluster.retry_interval_ms",
                format!(
                    "{} ms is outside 100..=cluster.renew_interval_ms ({})",
                    self.retry_interval_ms, self.renew_interval_ms
                ),
                format!(
                    "set it between 100 and {} (default {DEFAULT_RETRY_INTERVAL_MS})",
                    self.renew_interval_ms
                ),
            );
        }
        if self.replica_name.chars().count() > 128
            || self.replica_name.chars().any(char::is_control)
        {
            error(
                "cluster.replica_name",
                "longer than 128 characters or holding control characters".to_owned(),
                "use a short printable name, or leave it out for the host name".to_owned(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(c: &ClusterConfig) -> Vec<String> {
        c.problems().into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn defaults_are_valid_and_vaults() {
        let c = ClusterConfig::default();
        assert!(c.problems().is_empty());
        assert_eq!(
            (c.lease_ttl(), c.renew_interval(), c.retry_interval()),
            (
                Duration::from_secs(15),
                Duration::from_secs(5),
                Duration::from_secs(1)
            )
        );
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let mut c = ClusterConfig {
            lease_ttl_ms: 500,
            ..ClusterConfig::default()
        };
        assert_eq!(keys(&c), ["cluster.lease_ttl_ms"]);
        c.lease_ttl_ms = 3000;
        c.renew_interval_ms = 2000;
        let p = c.problems();
        assert_eq!(p[0].key, "cluster.renew_interval_ms");
        assert!(p[0].fix.contains("between 100 and 1000"), "{}", p[0].fix);
        c.renew_interval_ms = 1000;
        c.retry_interval_ms = 1500;
        assert_eq!(keys(&c), ["cluster.retry_interval_ms"]);
        c.retry_interval_ms = 500;
        assert!(c.problems().is_empty());
        c.replica_name = "a\nb".into();
        assert_eq!(keys(&c), ["cluster.replica_name"]);
    }
}
