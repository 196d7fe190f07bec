//! `[[remote_write]]` of `federator.toml`: Prometheus remote-write destinations
//! (VictoriaMetrics, Grafana Mimir, Thanos Receive, Prometheus) that are given every
//! agent's raw samples besides the central database (docs/scaling.md).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::{Check, Problem};

/// `[[remote_write]]`: one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteEntry {
    /// A name for logs, metrics and the destination's cursors in the database.
    /// Letters, digits, `_`, `-` or `.`, unique. Required. Renaming a destination
    /// starts it over from what the agents still hold.
    pub name: String,
    /// The receiver's remote-write URL, e.g.
    /// `http://vm:8428/api/v1/write` (VictoriaMetrics),
    /// `https://mimir:8080/api/v1/push` (Mimir),
    /// `http://prometheus:9090/api/v1/write` (Prometheus started with
    /// `--web.enable-remote-write-receiver`). Required.
    pub url: String,
    /// CA bundle (PEM) for an https:// URL; the system's roots when not set.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) when the receiver requires one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Basic authentication: the user, and the file holding the password.
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Bearer authentication: the file holding the token.
    pub bearer_token_file: Option<PathBuf>,
    /// Bound on one request, connect included, in seconds. 1..=300, default 30.
    pub timeout_secs: u64,
    /// Agents sent to this destination at the same time, at most (each with one
    /// request in flight; one agent's samples always go in order). 1..=1000,
    /// default 4.
    pub max_shards: u32,
    /// Samples in one request, at most. 100..=1000000, default 5000.
    pub max_samples_per_request: u64,
    /// First retry delay after a 5xx, a 429 or no answer, in milliseconds; it
    /// doubles at each failure up to `retry_max_secs` (a `Retry-After` answer is
    /// honoured up to that bound). 10..=600000, default 500.
    pub retry_initial_ms: u64,
    /// Longest delay between two attempts, in seconds. While the receiver stays
    /// down, the destination is tried again this often and falls behind alone: it
    /// is caught up from the agents' stores once it answers. 1..=3600, default 30.
    pub retry_max_secs: u64,
    /// Cron expression with seconds for this destination's rounds over the agents.
    /// Default: `scrape.schedule`.
    pub schedule: Option<String>,
    /// This destination is where raw samples live for the long term: the central
    /// database then keeps raw samples only for `retention.raw_secs` (which may be
    /// as short as one hour, what rollups and alert rules need), the rollups,
    /// inventory and alerts for their own ages. Recorded in
    /// `remote_write_destinations` for the query layer and dashboards. At most one
    /// destination. Default false.
    pub raw_home: bool,
}

impl Default for RemoteWriteEntry {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password_file: None,
            bearer_token_file: None,
            timeout_secs: 30,
            max_shards: 4,
            max_samples_per_request: 5000,
            retry_initial_ms: 500,
            retry_max_secs: 30,
            schedule: None,
            raw_home: false,
        }
    }
}

impl RemoteWriteEntry {
    /// Bound on one request.
    pub const fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// One line for `check-config`.
    pub fn describe(&self) -> String {
        let auth = match (&self.username, &self.bearer_token_file) {
            (Some(u), _) => format!(", basic auth as {u}"),
            (None, Some(_)) => ", bearer token".to_owned(),
            _ => String::new(),
        };
        format!(
            "{} at {}{auth}, {} shard(s), {} samples per request, retries {} ms..{} s{}",
            self.name,
            self.url,
            self.max_shards,
            self.max_samples_per_request,
            self.retry_initial_ms,
            self.retry_max_secs,
            if self.raw_home {
                ", home of raw samples"
            } else {
                ""
            }
        )
    }
}

/// Every problem of the `[[remote_write]]` tables (`raw_secs`: `retention.raw_secs`).
pub fn problems(entries: &[RemoteWriteEntry], raw_secs: u64) -> Vec<Problem> {
    let mut c = Check::default();
    let mut names = BTreeSet::new();
    for (i, d) in entries.iter().enumerate() {
        let key = |k: &str| format!("remote_write[{i}].{k}");
        if d.name.is_empty()
            || d.name.len() > 64
            || !d
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            c.error(
                key("name"),
                format!("{:?} is not a usable destination name", d.name),
                "use 1 to 64 letters, digits, '_', '-' or '.', e.g. \"victoria\"",
            );
        } else if !names.insert(d.name.as_str()) {
            c.error(
                key("name"),
                format!(
                    "{:?} names another [[remote_write]] destination too",
                    d.name
                ),
                "give every destination its own name",
            );
        }
        match crate::notify::http::Target::parse(&d.url) {
            Err(e) => c.error(
                key("url"),
                e,
                "write the receiver's remote-write URL, e.g. http://vm:8428/api/v1/write",
            ),
            Ok(t) if t.path == "/" => c.error(
                key("url"),
                format!("{:?} has no path: receivers take writes on a path", d.url),
                "write the remote-write path too: /api/v1/write (VictoriaMetrics, \
                 Prometheus), /api/v1/push (Mimir), /api/v1/receive (Thanos)",
            ),
            Ok(_) => {}
        }
        c.range(&key("timeout_secs"), d.timeout_secs, 1, 300, "30");
        c.range(&key("max_shards"), d.max_shards.into(), 1, 1000, "4");
        c.range(
            &key("max_samples_per_request"),
            d.max_samples_per_request,
            100,
            1_000_000,
            "5000",
        );
        c.range(
            &key("retry_initial_ms"),
            d.retry_initial_ms,
            10,
            600_000,
            "500",
        );
        c.range(&key("retry_max_secs"), d.retry_max_secs, 1, 3600, "30");
        if d.retry_max_secs.saturating_mul(1000) < d.retry_initial_ms {
            c.error(
                key("retry_max_secs"),
                format!(
                    "{} s is shorter than retry_initial_ms ({} ms)",
                    d.retry_max_secs, d.retry_initial_ms
                ),
                "make retry_max_secs at least retry_initial_ms",
            );
        }
        if let Some(s) = &d.schedule
            && let Err(e) = super::parse_schedule(s)
        {
            c.error(
                key("schedule"),
                e.to_string(),
                "write six or seven fields, seconds first, e.g. \"*/15 * * * * *\", or \
                 remove the key to follow scrape.schedule",
            );
        }
        d.client_keys()
            .problems(&format!("remote_write[{i}]"), &mut c.0);
    }
    if let Some(i) = entries.iter().position(|d| d.raw_home)
        && raw_secs > 86_400
    {
        c.warning(
            format!("remote_write[{i}].raw_home"),
            format!(
                "set, and retention.raw_secs keeps {raw_secs} s of raw samples in the \
                 central database too"
            ),
            "lower retention.raw_secs (3600 is enough for rollups and alert rules), \
             or leave raw_home unset",
        );
    }
    if entries.iter().filter(|d| d.raw_home).count() > 1 {
        c.error(
            "remote_write.raw_home",
            "set on more than one destination".into(),
            "name one destination as the home of raw samples; the others are copies",
        );
    }
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::keys;

    #[test]
    fn a_plain_destination_is_valid() {
        let d = RemoteWriteEntry {
            name: "vm".into(),
            url: "http://127.0.0.1:8428/api/v1/write".into(),
            ..Default::default()
        };
        assert!(problems(std::slice::from_ref(&d), 604_800).is_empty());
        let home = RemoteWriteEntry {
            raw_home: true,
            ..d
        };
        let p = problems(std::slice::from_ref(&home), 604_800);
        assert_eq!(keys(&p), ["remote_write[0].raw_home"]);
        assert!(!crate::config::validate::has_errors(&p));
        assert!(problems(&[home], 3600).is_empty());
    }

    #[test]
    fn every_mistake_names_its_key() {
        let bad = RemoteWriteEntry {
            name: "vm 1".into(),
            url: "http://127.0.0.1:8428".into(),
            max_shards: 0,
            retry_initial_ms: 5_000,
            retry_max_secs: 1,
            username: Some("u".into()),
            bearer_token_file: Some("/nonexistent/token".into()),
            cert_file: Some("/nonexistent/c.pem".into()),
            schedule: Some("*/5 * * * *".into()),
            raw_home: true,
            ..Default::default()
        };
        let dup = RemoteWriteEntry {
            name: "m".into(),
            url: "ftp://x/y".into(),
            raw_home: true,
            ..Default::default()
        };
        let p = problems(&[bad, dup.clone(), dup], 3600);
        assert_eq!(
            keys(&p),
            [
                "remote_write[0].name",
                "remote_write[0].url",
                "remote_write[0].max_shards",
                "remote_write[0].retry_max_secs",
                "remote_write[0].schedule",
                "remote_write[0].cert_file",
                "remote_write[0].bearer_token_file",
                "remote_write[0].cert_file",
                "remote_write[0].username",
                "remote_write[0].bearer_token_file",
                "remote_write[1].url",
                "remote_write[2].name",
                "remote_write[2].url",
                "remote_write.raw_home",
            ]
        );
        assert!(p[1].fix.contains("/api/v1/write"), "{}", p[1].fix);
    }
}
