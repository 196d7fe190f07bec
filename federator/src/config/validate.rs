//! `validate()`: every rule a parsed configuration must follow, each broken rule
//! reported as a [`Problem`] naming the key and the fix; and the report of
//! `pga-federator check-config`.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;

use super::{FederatorConfig, Loaded};
use crate::pull::url::AgentUrl;

pub use pga_config::{MAX_NAME_LEN, Problem, Severity, has_errors, is_valid_name};

/// A schedule that is not a cron expression with seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Five fields: a crontab line, without the seconds a schedule starts with.
    #[error(
        "\"{expr}\" has 5 fields; a schedule starts with seconds \
         (sec min hour day-of-month month day-of-week): e.g. \"0 {expr}\""
    )]
    NoSeconds { expr: String },
    /// Anything else the `cron` crate refuses; its own message is kept.
    #[error("\"{expr}\" is not a cron expression: {reason}")]
    Invalid { expr: String, reason: String },
}

/// Parses a cron expression with seconds (`sec min hour dom month dow [year]`).
/// The `cron` crate's own message is kept; a five-field expression gets a hint.
pub fn parse_schedule(expr: &str) -> Result<cron::Schedule, ScheduleError> {
    cron::Schedule::from_str(expr).map_err(|e| {
        if expr.split_whitespace().count() == 5 {
            ScheduleError::NoSeconds {
                expr: expr.to_owned(),
            }
        } else {
            ScheduleError::Invalid {
                expr: expr.to_owned(),
                reason: e.to_string(),
            }
        }
    })
}

/// The problems found so far, with the checks every section makes.
#[derive(Default)]
pub(super) struct Check(pub(super) Vec<Problem>);

impl Check {
    pub(super) fn error(
        &mut self,
        key: impl Into<String>,
        message: String,
        fix: impl Into<String>,
    ) {
        self.0
            .push(Problem::new(Severity::Error, key, message, fix.into()));
    }
    pub(super) fn warning(
        &mut self,
        key: impl Into<String>,
        message: String,
        fix: impl Into<String>,
    ) {
        self.0
            .push(Problem::new(Severity::Warning, key, message, fix.into()));
    }
    pub(super) fn range(&mut self, key: &str, value: u64, lo: u64, hi: u64, default: &str) {
        if !(lo..=hi).contains(&value) {
            self.error(
                key,
                format!("{value} is out of range"),
                format!("set it between {lo} and {hi} (default {default})"),
            );
        }
    }
    fn schedule(&mut self, key: &str, expr: &str) {
        if let Err(e) = parse_schedule(expr) {
            self.error(
                key,
                e.to_string(),
                "write six or seven fields, seconds first, e.g. \"*/15 * * * * *\" for every 15 s",
            );
        }
    }
}

impl FederatorConfig {
    /// Checks every rule the parser cannot: ranges, cron expressions, URLs, names,
    /// relations between keys, files that must exist and read. Returns all
    /// problems; empty means valid. Reads the certificate and password files.
    pub fn validate(&self) -> Vec<Problem> {
        let mut c = Check(Vec::new());
        self.validate_database(&mut c);
        self.validate_tls(&mut c);
        self.validate_scrape(&mut c);
        self.validate_retention(&mut c);
        c.range(
            "rollups.max_silence_secs",
            self.rollups.max_silence_secs,
            10,
            86_400,
            "180 (three times the agents' slow interval)",
        );
        self.validate_agents(&mut c);
        c.0.extend(self.api.problems());
        c.0.extend(self.alerting.problems());
        c.0.extend(super::remote_write::problems(
            &self.remote_write,
            self.retention.raw_secs,
        ));
        c.0.extend(self.cluster.problems());
        let m = &self.metrics.listen;
        if !m.is_empty() && std::net::SocketAddr::from_str(m).is_err() {
            c.error(
                "metrics.listen",
                format!("\"{m}\" is not IP:PORT"),
                "write e.g. \"127.0.0.1:9188\" or \"0.0.0.0:9188\", or \"\" for no listener",
            );
        }
        c.0
    }

    fn validate_database(&self, c: &mut Check) {
        let d = &self.database;
        match sqlx::postgres::PgConnectOptions::from_str(&d.url) {
            Err(e) => c.error(
                "database.url",
                format!("\"{}\" cannot be read: {e}", redact_url(&d.url)),
                "write postgres://USER@HOST:PORT/DATABASE",
            ),
            Ok(_) if !(d.url.starts_with("postgres://") || d.url.starts_with("postgresql://")) => c
                .error(
                    "database.url",
                    format!("\"{}\" is not a postgres:// URL", redact_url(&d.url)),
                    "write postgres://USER@HOST:PORT/DATABASE",
                ),
            Ok(_) => {}
        }
        if url_has_password(&d.url) {
            if d.password_file.is_some() {
                c.error(
                    "database.password_file",
                    "set, but database.url carries a password too".to_owned(),
                    "remove the password from database.url",
                );
            } else {
                c.warning(
                    "database.url",
                    "carries a password in the configuration file".to_owned(),
                    "move it to a file readable only by the federator and name it in \
                     database.password_file",
                );
            }
        }
        if let Some(f) = &d.password_file {
            match std::fs::metadata(f) {
                Err(e) => c.error(
                    "database.password_file",
                    format!("{}: {e}", f.display()),
                    "create the file with the password on its first line, or remove the key",
                ),
                Ok(m) if m.permissions().mode() & 0o077 != 0 => c.warning(
                    "database.password_file",
                    format!(
                        "{} is readable by other users (mode {:o})",
                        f.display(),
                        m.permissions().mode() & 0o777
                    ),
                    format!("chmod 600 {}", f.display()),
                ),
                Ok(_) => {
                    if let Err(e) = std::fs::read_to_string(f) {
                        c.error(
                            "database.password_file",
                            format!("{}: {e}", f.display()),
                            "make it a readable UTF-8 text file",
                        );
                    }
                }
            }
        }
        c.range(
            "database.max_connections",
            d.max_connections.into(),
            1,
            200,
            "8",
        );
        c.range(
            "database.connect_timeout_secs",
            d.connect_timeout_secs,
            1,
            300,
            "10",
        );
        c.range(
            "database.statement_timeout_secs",
            d.statement_timeout_secs,
            0,
            86_400,
            "300",
        );
    }

    fn validate_tls(&self, c: &mut Check) {
        let t = &self.tls;
        let needed = self
            .agents
            .iter()
            .any(|a| AgentUrl::parse(&a.url).is_ok_and(|u| u.tls));
        let files = [
            (
                "tls.cert_file",
                &t.cert_file,
                "the federator's client certificate (PEM)",
            ),
            ("tls.key_file", &t.key_file, "its private key (PEM)"),
            (
                "tls.ca_file",
                &t.ca_file,
                "the CA that signed the agents' certificates (PEM)",
            ),
        ];
        for (key, file, what) in files {
            match file {
                None if needed => c.error(
                    key,
                    "missing, and an agent URL is https://".to_owned(),
                    format!(
                        "name {what}; `pga-agent certs dev` makes a development CA and certificates"
                    ),
                ),
                None => {}
                Some(path) => {
                    if let Err(e) = check_pem(key, path) {
                        c.error(
                            key,
                            format!("{}: {}", path.display(), e.problem),
                            format!("{}; name {what}", e.fix),
                        );
                    }
                }
            }
        }
    }

    fn validate_scrape(&self, c: &mut Check) {
        let s = &self.scrape;
        c.schedule("scrape.schedule", &s.schedule);
        c.range("scrape.jitter_ms", s.jitter_ms, 0, 60_000, "2000");
        c.range(
            "scrape.max_concurrent",
            s.max_concurrent.into(),
            1,
            10_000,
            "32",
        );
        c.range(
            "scrape.connect_timeout_secs",
            s.connect_timeout_secs,
            1,
            300,
            "5",
        );
        c.range(
            "scrape.request_timeout_secs",
            s.request_timeout_secs,
            1,
            3600,
            "30",
        );
        c.range(
            "scrape.max_response_bytes",
            s.max_response_bytes,
            1 << 20,
            u32::MAX.into(),
            "67108864",
        );
        c.range(
            "scrape.backoff_initial_secs",
            s.backoff_initial_secs,
            1,
            3600,
            "15",
        );
        c.range(
            "scrape.backoff_max_secs",
            s.backoff_max_secs,
            s.backoff_initial_secs.max(1),
            86_400,
            "300",
        );
        let b = &self.backfill;
        c.range(
            "backfill.request_bytes",
            b.request_bytes,
            64 << 10,
            s.max_response_bytes.max(64 << 10),
            "8388608, and at most scrape.max_response_bytes",
        );
        c.range(
            "backfill.max_requests_per_scrape",
            b.max_requests_per_scrape.into(),
            1,
            100_000,
            "64",
        );
        c.range("backfill.pause_ms", b.pause_ms, 0, 60_000, "50");
        c.range(
            "backfill.max_samples_per_transaction",
            b.max_samples_per_transaction,
            10_000,
            100_000_000,
            "1000000",
        );
    }

    fn validate_retention(&self, c: &mut Check) {
        let r = &self.retention;
        c.schedule("retention.schedule", &r.schedule);
        c.range(
            "retention.raw_secs",
            r.raw_secs,
            3600,
            u64::MAX / 1000,
            "604800",
        );
        c.range(
            "retention.rollup_1m_secs",
            r.rollup_1m_secs,
            r.raw_secs.max(3600),
            u64::MAX / 1000,
            "2592000, and at least retention.raw_secs",
        );
        c.range(
            "retention.rollup_10m_secs",
            r.rollup_10m_secs,
            r.rollup_1m_secs.max(3600),
            u64::MAX / 1000,
            "7776000, and at least retention.rollup_1m_secs",
        );
        c.range(
            "retention.rollup_1h_secs",
            r.rollup_1h_secs,
            r.rollup_1m_secs.max(3600),
            u64::MAX / 1000,
            "31536000, and at least retention.rollup_1m_secs",
        );
        c.range(
            "retention.log_events_secs",
            r.log_events_secs,
            3600,
            u64::MAX / 1000,
            "2592000",
        );
    }

    fn validate_agents(&self, c: &mut Check) {
        if self.agents.is_empty() {
            c.warning(
                "agents",
                "no [[agents]] configured: the federator has nothing to pull".to_owned(),
                "add an [[agents]] table with name and url for each agent",
            );
        }
        let mut names = BTreeSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            let key = |k: &str| format!("agents[{i}].{k}");
            if !is_valid_name(&a.name) {
                c.error(
                    key("name"),
                    format!("\"{}\" is not a valid agent name", a.name),
                    format!(
                        "use 1 to {MAX_NAME_LEN} letters, digits, '_', '.' or '-', e.g. the host name"
                    ),
                );
            } else if !names.insert(a.name.as_str()) {
                c.error(
                    key("name"),
                    format!("\"{}\" is used by another [[agents]] table", a.name),
                    "give every agent its own name",
                );
            }
            if let Err(e) = AgentUrl::parse(&a.url) {
                c.error(key("url"), e.to_string(), e.fix());
            }
            if let Some(s) = &a.schedule {
                c.schedule(&key("schedule"), s);
            }
            for name in a.labels.keys() {
                if !pga_format::is_valid_label_name(name) || name == "agent" {
                    c.error(
                        format!("agents[{i}].labels.{name}"),
                        format!("\"{name}\" is not a usable label name"),
                        "use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __, and not `agent` \
                         (the federator sets it)",
                    );
                }
            }
        }
    }
}

/// Reads a PEM file the way the TLS client will.
fn check_pem(key: &str, path: &Path) -> Result<(), pga_config::pem::FileError> {
    if key == "tls.key_file" {
        pga_config::pem::read_private_key(key, path).map(drop)
    } else {
        pga_config::pem::read_certs(key, path).map(drop)
    }
}

/// Whether a URL has `user:password@`.
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// The URL with its password (if any) replaced by `****`.
pub fn redact_url(url: &str) -> String {
    if !url_has_password(url) {
        return url.to_owned();
    }
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (userinfo, after) = rest.split_once('@').unwrap_or(("", rest));
    let user = userinfo.split(':').next().unwrap_or("");
    format!("{scheme}://{user}:****@{after}")
}

/// Renders the report of `pga-federator check-config`: the file, the effective
/// settings (never a password), every problem as `error: <key>: <message>` /
/// `  fix: <fix>`, and a last line `configuration OK` or `N problem(s)`
/// ([`pga_config::check_report`]).
pub fn render_check(loaded: &Loaded, problems: &[Problem]) -> String {
    let c = &loaded.config;
    pga_config::check_report(
        |line| {
            line(format!("configuration:  {}", loaded.path.display()));
            line(format!(
                "database:       {} (password: {}), pool of {}",
                redact_url(&c.database.url),
                match &c.database.password_file {
                    Some(f) => format!("from {}", f.display()),
                    None => "from the URL, PGPASSWORD, or none".to_owned(),
                },
                c.database.max_connections
            ));
            let file = |f: &Option<std::path::PathBuf>| {
                f.as_ref()
                    .map_or("(not set)".to_owned(), |p| p.display().to_string())
            };
            line(format!(
                "tls:            certificate {}, key {}, CA {}",
                file(&c.tls.cert_file),
                file(&c.tls.key_file),
                file(&c.tls.ca_file)
            ));
            let s = &c.scrape;
            line(format!(
                "scrape:         \"{}\" with up to {} ms jitter, {} at once, timeouts {} s connect / {} s \
         request, responses up to {} bytes, backoff {}..{} s",
                s.schedule,
                s.jitter_ms,
                s.max_concurrent,
                s.connect_timeout_secs,
                s.request_timeout_secs,
                s.max_response_bytes,
                s.backoff_initial_secs,
                s.backoff_max_secs
            ));
            let b = &c.backfill;
            line(format!(
                "backfill:       {} bytes per request, up to {} requests per scrape, {} ms apart, \
         at most {} samples per transaction",
                b.request_bytes,
                b.max_requests_per_scrape,
                b.pause_ms,
                b.max_samples_per_transaction
            ));
            let r = &c.retention;
            line(format!(
                "retention:      raw {} s, 1-minute rollups {} s, 10-minute rollups {} s, \
         1-hour rollups {} s, log events {} s, job \"{}\"",
                r.raw_secs,
                r.rollup_1m_secs,
                r.rollup_10m_secs,
                r.rollup_1h_secs,
                r.log_events_secs,
                r.schedule
            ));
            line(format!(
                "rollups:        no increase counted across a silence of more than {} s",
                c.rollups.max_silence_secs
            ));
            line(format!(
                "self-metrics:   {}",
                if c.metrics.listen.is_empty() {
                    "off".to_owned()
                } else {
                    format!("http://{}/metrics", c.metrics.listen)
                }
            ));
            line(format!("api:            {}", c.api.describe()));
            line(format!("alerting:       {}", c.alerting.describe()));
            for a in &c.alerting.alertmanagers {
                line(format!("  Alertmanager {} at {}", a.name, a.url));
            }
            for w in &c.alerting.webhooks {
                line(format!(
                    "  webhook {} at {}{}",
                    w.name,
                    w.url,
                    if w.hmac_secret_file.is_some() {
                        ", signed"
                    } else {
                        ", unsigned"
                    }
                ));
            }
            line(format!(
                "remote-write:   {} destination(s)",
                c.remote_write.len()
            ));
            for d in &c.remote_write {
                line(format!("  {}", d.describe()));
            }
            line(format!("agents:         {}", c.agents.len()));
            for a in &c.agents {
                line(format!(
                    "  {} at {} on \"{}\"{}",
                    a.name,
                    a.url,
                    a.schedule.as_deref().unwrap_or(&s.schedule),
                    if a.labels.is_empty() {
                        String::new()
                    } else {
                        let l: Vec<String> =
                            a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        format!(" labels {}", l.join(","))
                    }
                ));
            }
        },
        problems,
    )
}

/// The keys of some problems, in order (for tests).
#[cfg(test)]
pub(crate) fn keys(p: &[Problem]) -> Vec<&str> {
    p.iter().map(|p| p.key.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentEntry;

    #[test]
    fn defaults_are_valid_but_warn_about_no_agents() {
        let p = FederatorConfig::default().validate();
        assert_eq!(keys(&p), ["agents"]);
        assert!(!has_errors(&p));
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut c = FederatorConfig::default();
        c.scrape.schedule = "*/15 * * * *".into();
        c.scrape.max_concurrent = 0;
        c.retention.rollup_1m_secs = 10;
        c.metrics.listen = "localhost".into();
        c.database.url = "mysql://x".into();
        c.agents = vec![
            AgentEntry {
                name: "db 1".into(),
                url: "ftp://x".into(),
                ..Default::default()
            },
            AgentEntry {
                name: "db2".into(),
                url: "https://db2:9187".into(),
                schedule: Some("never".into()),
                ..Default::default()
            },
            AgentEntry {
                name: "db2".into(),
                url: "http://10.0.0.1:9187".into(),
                ..Default::default()
            },
        ];
        let p = c.validate();
        assert_eq!(
            keys(&p),
            [
                "database.url",
                "tls.cert_file",
                "tls.key_file",
                "tls.ca_file",
                "scrape.schedule",
                "scrape.max_concurrent",
                "retention.rollup_1m_secs",
                "agents[0].name",
                "agents[0].url",
                "agents[1].schedule",
                "agents[2].name",
                "agents[2].url",
                "metrics.listen",
            ]
        );
        assert!(p[4].message.contains("seconds"), "{}", p[4].message);
        assert!(p[11].message.contains("loopback"), "{}", p[11].message);
    }

    #[test]
    fn passwords_are_redacted_and_not_given_twice() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:****@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        let mut c = FederatorConfig::default();
        c.database.url = "postgres://u:secret@h/db".into();
        c.database.password_file = Some("/nonexistent/pw".into());
        let p = c.validate();
        assert_eq!(
            keys(&p)[..2],
            ["database.password_file", "database.password_file"]
        );
        assert!(!p.iter().any(|p| p.message.contains("secret")));
    }

    #[test]
    fn schedules_need_seconds() {
        assert!(parse_schedule("*/15 * * * * *").is_ok());
        assert!(parse_schedule("0 0 * * * * 2030").is_ok());
        let e = parse_schedule("*/5 * * * *").unwrap_err();
        assert!(e.to_string().contains("starts with seconds"), "{e}");
    }
}
