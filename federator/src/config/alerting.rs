//! `[alerting]` of `federator.toml`: the evaluation schedule, rule files, and the
//! receivers (Alertmanagers, webhooks) notifications go to.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::client::{ClientKeys, file_problems};
use super::validate::{Check, Problem, parse_schedule};

/// Where the federator package installs the built-in rule pack.
pub const BUILTIN_RULES_DIR: &str = "/usr/share/pganalytics/rules";

/// `[alerting]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertingConfig {
    /// Evaluate rules and deliver notifications. Default true.
    pub enabled: bool,
    /// Cron expression with seconds for the evaluation cycle. Default
    /// `"*/30 * * * * *"`: every 30 seconds. Each cycle evaluates every agent at each
    /// `step_secs` of data time up to the agent's data watermark.
    pub schedule: String,
    /// The data-time grid rules are evaluated on, in seconds: an incident's start and
    /// end are known to this precision, also when found late. 1..=3600, default 15.
    pub step_secs: u64,
    /// A step evaluated more than this behind the wall clock is late (data that
    /// arrived by backfill); alerts that fire there are marked late. At least
    /// `step_secs`, default 120.
    pub late_after_secs: u64,
    /// How long a series may be missing from a rule's result, while its agent's data
    /// keeps arriving, before its alert resolves (firing) or is dropped (pending).
    /// Default 900.
    pub no_data_for_secs: u64,
    /// The longest silence between two samples across which `rate` and `increase`
    /// still count a counter's growth. Default 900.
    pub max_silence_secs: u64,
    /// Steps one agent is evaluated for in one cycle, at most; a longer backlog
    /// continues next cycle. 1..=100000, default 240.
    pub max_steps_per_cycle: u32,
    /// `statement_timeout` of the evaluator's reads, in seconds: a rule whose query
    /// would scan too much fails alone and never holds ingest up. 1..=600, default 20.
    pub query_timeout_secs: u64,
    /// Database connections of the evaluator and the notifier (their own pool, so
    /// they never take the ingest's). 1..=50, default 3.
    pub max_connections: u32,
    /// Rule files and directories of them (`*.toml`), loaded into the database at
    /// start (and by `pga-federator rules load`). Default: the built-in pack,
    /// `/usr/share/pganalytics/rules`.
    pub rule_files: Vec<PathBuf>,
    /// The federator's public base URL, for the `generatorURL` of notifications
    /// (`<external_url>/api/v1/alerts/<id>`). Default `""`: generatorURL is left out.
    pub external_url: String,
    /// Firing alerts are re-sent to Alertmanagers this often (Prometheus'
    /// `resend-delay`), in seconds. 1..=3600, default 60.
    pub resend_secs: u64,
    /// Resolved alerts are re-sent to Alertmanagers, with their endsAt, for this
    /// long after they resolve, in seconds. Default 900.
    pub resolved_resend_secs: u64,
    /// First retry delay of a failed delivery, in milliseconds; it doubles at each
    /// failure up to `retry_max_secs`. 10..=600000, default 1000.
    pub retry_initial_ms: u64,
    /// Longest delay between two delivery attempts, in seconds. 1..=3600, default 60.
    pub retry_max_secs: u64,
    /// `[[alerting.alertmanagers]]`: Alertmanagers (API v2) to notify.
    pub alertmanagers: Vec<AlertmanagerEntry>,
    /// `[[alerting.webhooks]]`: webhooks given the Alertmanager webhook payload.
    pub webhooks: Vec<WebhookEntry>,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            schedule: "*/30 * * * * *".into(),
            step_secs: 15,
            late_after_secs: 120,
            no_data_for_secs: 900,
            max_silence_secs: 900,
            max_steps_per_cycle: 240,
            query_timeout_secs: 20,
            max_connections: 3,
            rule_files: vec![PathBuf::from(BUILTIN_RULES_DIR)],
            external_url: String::new(),
            resend_secs: 60,
            resolved_resend_secs: 900,
            retry_initial_ms: 1000,
            retry_max_secs: 60,
            alertmanagers: Vec::new(),
            webhooks: Vec::new(),
        }
    }
}

/// `[[alerting.alertmanagers]]`: one Alertmanager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerEntry {
    /// A name for logs, metrics and the delivery record. Required, unique among
    /// receivers.
    pub name: String,
    /// Base URL: `https://HOST:9093` (or with a path prefix); the federator posts to
    /// `<url>/api/v2/alerts`. Required.
    pub url: String,
    /// CA bundle (PEM) for an https:// URL; the system's roots when not set.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) when the Alertmanager requires one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Basic authentication: the user, and the file holding the password.
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Bearer authentication: the file holding the token.
    pub bearer_token_file: Option<PathBuf>,
    /// Bound on one request, connect included, in seconds. 1..=300, default 10.
    pub timeout_secs: u64,
}

/// `[[alerting.webhooks]]`: one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookEntry {
    /// A name for logs, metrics and the delivery record. Required, unique among
    /// receivers.
    pub name: String,
    /// The URL the payload is posted to. Required.
    pub url: String,
    /// File holding the shared secret (first line) the body is signed with:
    /// header `X-Pga-Signature: t=<unix seconds>,sha256=<hex HMAC-SHA256 of
    /// "<t>.<body>">`. Strongly advised; without it nothing is signed.
    pub hmac_secret_file: Option<PathBuf>,
    /// CA bundle (PEM) for an https:// URL; the system's roots when not set.
    pub ca_file: Option<PathBuf>,
    /// Bearer authentication: the file holding the token.
    pub bearer_token_file: Option<PathBuf>,
    /// Bound on one request, connect included, in seconds. 1..=300, default 10.
    pub timeout_secs: u64,
}

impl AlertingConfig {
    /// Every problem of `[alerting]`.
    pub fn problems(&self) -> Vec<Problem> {
        let mut c = Check::default();
        if let Err(e) = parse_schedule(&self.schedule) {
            c.error(
                "alerting.schedule",
                e.to_string(),
                "write six or seven fields, seconds first, e.g. \"*/30 * * * * *\"",
            );
        }
        let ranges: [(&str, u64, u64, u64, &str); 9] = [
            ("step_secs", self.step_secs, 1, 3600, "15"),
            (
                "late_after_secs",
                self.late_after_secs,
                self.step_secs.max(1),
                86_400,
                "120, and at least step_secs",
            ),
            (
                "no_data_for_secs",
                self.no_data_for_secs,
                0,
                7 * 86_400,
                "900",
            ),
            (
                "max_silence_secs",
                self.max_silence_secs,
                1,
                7 * 86_400,
                "900",
            ),
            (
                "max_steps_per_cycle",
                self.max_steps_per_cycle.into(),
                1,
                100_000,
                "240",
            ),
            ("query_timeout_secs", self.query_timeout_secs, 1, 600, "20"),
            ("max_connections", self.max_connections.into(), 1, 50, "3"),
            ("resend_secs", self.resend_secs, 1, 3600, "60"),
            (
                "retry_initial_ms",
                self.retry_initial_ms,
                10,
                600_000,
                "1000",
            ),
        ];
        for (k, v, lo, hi, d) in ranges {
            c.range(&format!("alerting.{k}"), v, lo, hi, d);
        }
        if !(1..=3600).contains(&self.retry_max_secs)
            || self.retry_max_secs * 1000 < self.retry_initial_ms
        {
            c.error(
                "alerting.retry_max_secs",
                format!("{} is out of range", self.retry_max_secs),
                "set it between 1 and 3600 and at least retry_initial_ms (default 60)",
            );
        }
        let u = &self.external_url;
        if !(u.is_empty() || u.starts_with("http://") || u.starts_with("https://")) {
            c.error(
                "alerting.external_url",
                format!("{:?} is not an http(s) URL", self.external_url),
                "write the federator's public URL, e.g. https://federator.example.com:9443",
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, a) in self.alertmanagers.iter().enumerate() {
            let key = format!("alerting.alertmanagers[{i}]");
            receiver_problems(&mut c, &mut names, &key, &a.name, &a.url, a.timeout_secs);
            a.client_keys().problems(&key, &mut c.0);
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            let key = format!("alerting.webhooks[{i}]");
            receiver_problems(&mut c, &mut names, &key, &w.name, &w.url, w.timeout_secs);
            file_problems(
                &key,
                &[
                    ("hmac_secret_file", w.hmac_secret_file.as_deref()),
                    ("ca_file", w.ca_file.as_deref()),
                    ("bearer_token_file", w.bearer_token_file.as_deref()),
                ],
                &mut c.0,
            );
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            if w.hmac_secret_file.is_none() {
                c.warning(
                    format!("alerting.webhooks[{i}].hmac_secret_file"),
                    "not set: the receiver cannot tell the federator's posts from anyone's".into(),
                    "write a random secret to a file readable only by the federator \
                     (head -c 32 /dev/urandom | base64 > FILE) and name it here",
                );
            }
        }
        // The built-in pack's directory may be missing (running from a source tree);
        // `run` says so. A file named by the user must exist.
        for (i, p) in self.rule_files.iter().enumerate() {
            if p.as_path() != std::path::Path::new(BUILTIN_RULES_DIR) && !p.exists() {
                c.error(
                    format!("alerting.rule_files[{i}]"),
                    format!("{} does not exist", p.display()),
                    "name an existing rule file or directory of them (*.toml);                           `pga-federator rules check FILE` checks one",
                );
            }
        }
        c.0
    }

    /// The evaluator's settings.
    pub fn engine_settings(&self) -> crate::alerting::engine::Settings {
        crate::alerting::engine::Settings {
            step_ms: self.step_secs as i64 * 1000,
            late_after_ms: self.late_after_secs as i64 * 1000,
            no_data_for_ms: self.no_data_for_secs as i64 * 1000,
            max_steps_per_cycle: self.max_steps_per_cycle as usize,
        }
    }

    /// One line for `check-config`.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "off".into();
        }
        format!(
            "\"{}\" every {} s of data time, rules from {}, {} Alertmanager(s), {} webhook(s)",
            self.schedule,
            self.step_secs,
            self.rule_files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            self.alertmanagers.len(),
            self.webhooks.len()
        )
    }
}

impl Default for AlertmanagerEntry {
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
            timeout_secs: 10,
        }
    }
}

impl Default for WebhookEntry {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            hmac_secret_file: None,
            ca_file: None,
            bearer_token_file: None,
            timeout_secs: 10,
        }
    }
}

impl WebhookEntry {
    /// The webhook's TLS and authentication keys (a CA bundle, a bearer token).
    pub fn client_keys(&self) -> ClientKeys<'_> {
        ClientKeys {
            ca_file: self.ca_file.as_deref(),
            bearer_token_file: self.bearer_token_file.as_deref(),
            ..ClientKeys::default()
        }
    }
}

/// The problems of a receiver's name (unique among `names`), URL and timeout.
fn receiver_problems<'a>(
    c: &mut Check,
    names: &mut std::collections::BTreeSet<&'a str>,
    key: &str,
    name: &'a str,
    url: &str,
    timeout: u64,
) {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        c.error(
            format!("{key}.name"),
            format!("{name:?} is not a usable receiver name"),
            "use letters, digits, '_', '-' or '.', e.g. \"am-primary\"",
        );
    } else if !names.insert(name) {
        c.error(
            format!("{key}.name"),
            format!("{name:?} names another receiver too"),
            "give every Alertmanager and webhook its own name",
        );
    }
    if let Err(e) = crate::notify::http::Target::parse(url) {
        c.error(
            format!("{key}.url"),
            e,
            "write http(s)://HOST[:PORT][/PATH]",
        );
    }
    c.range(&format!("{key}.timeout_secs"), timeout, 1, 300, "10");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::Severity;

    fn keys(c: &AlertingConfig) -> Vec<String> {
        c.problems().into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(keys(&AlertingConfig::default()), Vec::<String>::new());
    }

    #[test]
    fn every_problem_names_its_key() {
        let c = AlertingConfig {
            schedule: "*/30 * * * *".into(),
            step_secs: 0,
            retry_initial_ms: 5,
            external_url: "federator:9443".into(),
            rule_files: vec![PathBuf::from("/nonexistent/rules.toml")],
            alertmanagers: vec![AlertmanagerEntry {
                name: "am".into(),
                url: "am:9093".into(),
                cert_file: Some("/nonexistent/c.pem".into()),
                username: Some("u".into()),
                ..Default::default()
            }],
            webhooks: vec![WebhookEntry {
                name: "am".into(),
                url: "https://hooks.example/x".into(),
                timeout_secs: 0,
                ..Default::default()
            }],
            ..Default::default()
        };
        let got = keys(&c);
        assert_eq!(
            got,
            [
                "alerting.schedule",
                "alerting.step_secs",
                "alerting.retry_initial_ms",
                "alerting.external_url",
                "alerting.alertmanagers[0].url",
                "alerting.alertmanagers[0].cert_file",
                "alerting.alertmanagers[0].cert_file",
                "alerting.alertmanagers[0].username",
                "alerting.webhooks[0].name",
                "alerting.webhooks[0].timeout_secs",
                "alerting.webhooks[0].hmac_secret_file",
                "alerting.rule_files[0]",
            ]
        );
        let p = c.problems();
        assert!(p[0].message.contains("seconds"), "{}", p[0]);
        assert!(p[8].message.contains("another receiver"), "{}", p[8]);
        assert_eq!(p[10].severity, Severity::Warning);
        let warning = p[10].key.clone();
        assert!(
            p.iter()
                .filter(|q| q.key != warning)
                .all(|q| q.severity == Severity::Error)
        );
    }
}
