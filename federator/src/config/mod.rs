//! The federator's configuration: `/etc/pganalytics/federator.toml`.
//!
//! The file is TOML, with the agent's conventions: every table rejects keys it does
//! not know (naming the valid ones and the one probably meant), every quantity
//! carries its unit in its name (`_secs`, `_ms`, `_bytes`), secrets and certificates
//! are given by file path, and every key but the agents has a default.
//!
//! Loading happens in three steps:
//!
//! 1. [`load`] reads the file (`--config FILE`, else [`DEFAULT_CONFIG_PATH`]) and
//!    fails on TOML syntax errors, unknown keys and values of the wrong type, each
//!    reported with its line, column and key ([`ConfigError`]).
//! 2. [`FederatorConfig::validate`] checks ranges, cron expressions, URLs, files and
//!    cross-key rules and returns *every* [`Problem`], each naming its key and fix.
//! 3. [`render_check`] prints what `pga-federator check-config` shows.
//!
//! The doc comments on the fields below are the reference documentation of the
//! file; `packaging/federator.toml` is the annotated example and a test parses it.

mod alerting;
mod api;
mod client;
mod cluster;
mod parse;
mod remote_write;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use alerting::{AlertingConfig, AlertmanagerEntry, BUILTIN_RULES_DIR, WebhookEntry};
pub use api::{ApiConfig, MIN_JWT_KEY_BYTES, read_jwt_key};
pub use client::ClientKeys;
pub use cluster::ClusterConfig;
pub use parse::{ConfigError, Location, UnknownKey, schema_keys};
pub use remote_write::RemoteWriteEntry;
pub use validate::{
    MAX_NAME_LEN, Problem, ScheduleError, Severity, has_errors, is_valid_name, parse_schedule,
    render_check,
};

/// Where the federator looks for its configuration without `--config`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pganalytics/federator.toml";

impl FederatorConfig {
    /// The database password from `database.password_file` (its first line), if set.
    pub fn database_password(&self) -> Result<Option<String>, SecretFileError> {
        let Some(f) = &self.database.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(f).map_err(|source| SecretFileError {
            key: "database.password_file",
            path: f.clone(),
            source,
        })?;
        Ok(Some(text.lines().next().unwrap_or("").to_owned()))
    }
}

/// A file named by a key (a password, a secret) cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{key} {}: {source}", path.display())]
pub struct SecretFileError {
    pub key: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The whole `federator.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederatorConfig {
    /// `[database]`: the central PostgreSQL the federator writes into.
    pub database: DatabaseConfig,
    /// `[tls]`: the client certificate the federator presents to agents and the CA
    /// their certificates are verified against.
    pub tls: TlsConfig,
    /// `[scrape]`: when and how agents are pulled.
    pub scrape: ScrapeConfig,
    /// `[backfill]`: pacing of the catch-up after an outage.
    pub backfill: BackfillConfig,
    /// `[retention]`: how long raw samples and rollups are kept.
    pub retention: RetentionConfig,
    /// `[rollups]`: what the 1-minute and 1-hour rollups count.
    pub rollups: RollupsConfig,
    /// `[metrics]`: the self-metrics and health listener.
    pub metrics: MetricsConfig,
    /// `[api]`: the HTTP API.
    pub api: ApiConfig,
    /// `[alerting]`: rule evaluation and notifications.
    pub alerting: AlertingConfig,
    /// `[cluster]`: this replica's lease on the shared central database.
    pub cluster: ClusterConfig,
    /// `[[agents]]`: the agents to pull, one table each.
    pub agents: Vec<AgentEntry>,
    /// `[[remote_write]]`: Prometheus remote-write destinations given every agent's
    /// raw samples besides the central database, one table each.
    pub remote_write: Vec<RemoteWriteEntry>,
}

/// `[database]`: the central PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connection URL, `postgres://USER@HOST:PORT/DATABASE[?sslmode=…]`, without the
    /// password (give it in `password_file`). Default
    /// `postgres://pganalytics@localhost:5432/pganalytics`.
    pub url: String,
    /// File holding the password (its first line; trailing newline ignored). Keep it
    /// readable only by the federator's user. Optional: without it the URL's own
    /// password, `PGPASSWORD`, or no password (peer/trust) is used.
    pub password_file: Option<PathBuf>,
    /// Connections in the federator's pool. 1..=200, default 8.
    pub max_connections: u32,
    /// Bound on establishing a connection (or waiting for a free one), in seconds.
    /// 1..=300, default 10.
    pub connect_timeout_secs: u64,
    /// `statement_timeout` of the federator's sessions, in seconds; `0` keeps the
    /// server's. Default 300.
    pub statement_timeout_secs: u64,
    /// Use TimescaleDB hypertables (compression, retention policies) where the
    /// `timescaledb` extension is created in the central database (`CREATE
    /// EXTENSION timescaledb`, before the first `migrate`); plain PostgreSQL
    /// partitioning otherwise. Default true.
    pub timescaledb: bool,
    /// On plain PostgreSQL, store sealed raw samples packed: one row per series per
    /// sealed window, about a tenth of the space of a row per sample and several
    /// times faster to write (docs/central-database.md, "Raw samples, rows and
    /// packed"). `false` writes one row per sample, as before 0.3; rows already
    /// packed stay readable either way. Ignored where TimescaleDB hypertables hold
    /// the samples (they compress by themselves). Default true.
    pub packed_samples: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_DATABASE_URL.to_owned(),
            password_file: None,
            max_connections: 8,
            connect_timeout_secs: 10,
            statement_timeout_secs: 300,
            timescaledb: true,
            packed_samples: true,
        }
    }
}

/// The database URL when the file does not name one.
pub const DEFAULT_DATABASE_URL: &str = "postgres://pganalytics@localhost:5432/pganalytics";

/// `[tls]`: the federator's side of mutual TLS. Required as soon as one agent URL
/// is `https://`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The federator's client certificate chain (PEM), signed by the CA the agents
    /// trust (`endpoint.client_ca_file` in their `agent.toml`).
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// The CA bundle (PEM) that signed the agents' server certificates.
    pub ca_file: Option<PathBuf>,
}

/// `[scrape]`: the pull schedule and its bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeConfig {
    /// Cron expression with seconds (`sec min hour day-of-month month day-of-week
    /// [year]`, UTC) for every agent without its own `schedule`. Default
    /// `"*/15 * * * * *"`: every 15 seconds.
    pub schedule: String,
    /// Each agent's scrapes start up to this many milliseconds after the scheduled
    /// instant (a fixed offset per agent, from its name), so a fleet is not pulled in
    /// one burst. 0..=60000, default 2000.
    pub jitter_ms: u64,
    /// Agents pulled at the same time, at most. 1..=10000, default 32.
    pub max_concurrent: u32,
    /// Bound on TCP connect plus TLS handshake, in seconds. 1..=300, default 5.
    pub connect_timeout_secs: u64,
    /// Bound on one HTTP request, from sending it to the last body byte, in seconds.
    /// 1..=3600, default 30.
    pub request_timeout_secs: u64,
    /// Largest response body accepted; a larger one is rejected for that agent. At
    /// least 1 MiB, default 64 MiB (67108864).
    pub max_response_bytes: u64,
    /// First retry delay after a failed scrape, in seconds; it doubles at each
    /// further failure up to `backoff_max_secs`. 1..=3600, default 15.
    pub backoff_initial_secs: u64,
    /// Longest retry delay of a failing agent, in seconds. At least
    /// `backoff_initial_secs`, at most 86400, default 300.
    pub backoff_max_secs: u64,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        Self {
            schedule: DEFAULT_SCHEDULE.to_owned(),
            jitter_ms: 2000,
            max_concurrent: 32,
            connect_timeout_secs: 5,
            request_timeout_secs: 30,
            max_response_bytes: 64 << 20,
            backoff_initial_secs: 15,
            backoff_max_secs: 300,
        }
    }
}

/// The default scrape schedule: every 15 seconds.
pub const DEFAULT_SCHEDULE: &str = "*/15 * * * * *";

impl ScrapeConfig {
    /// Bound on connect plus handshake.
    pub const fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
    /// Bound on one request.
    pub const fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// `[backfill]`: how an agent that is behind is walked forward. Each request asks
/// for at most `request_bytes` of sealed blocks and is written in one transaction;
/// one scrape makes at most `max_requests_per_scrape` such rounds, pausing
/// `pause_ms` between them, and the next scrape continues where it stopped. A
/// returning fleet therefore writes at most `max_concurrent × request_bytes` at a
/// time, with room for the other agents in between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackfillConfig {
    /// Bytes of sealed block frames asked for per request (`max_bytes` of
    /// `/v1/blocks`; the agent may cap it lower and always sends at least one
    /// block). 64 KiB..=`scrape.max_response_bytes`, default 8 MiB (8388608).
    pub request_bytes: u64,
    /// Requests (transactions) one scrape makes while the agent has more, at most.
    /// 1..=100000, default 64.
    pub max_requests_per_scrape: u32,
    /// Pause between two requests of one scrape, in milliseconds. 0..=60000,
    /// default 50.
    pub pause_ms: u64,
    /// Samples written per transaction, at most: the sealed blocks of one answer
    /// are committed in runs of at most this many samples (at least one block
    /// each), each with its cursor advance. 10000..=100000000, default 1000000.
    pub max_samples_per_transaction: u64,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        Self {
            request_bytes: 8 << 20,
            max_requests_per_scrape: 64,
            pause_ms: 50,
            max_samples_per_transaction: 1_000_000,
        }
    }
}

/// `[retention]`: how long each kind of data is kept in the central database, and
/// when the retention job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Cron expression with seconds for the retention job. Default
    /// `"0 17 * * * *"`: hourly at minute 17.
    pub schedule: String,
    /// Raw samples and log events, in seconds. At least 3600, default 604800
    /// (7 days).
    pub raw_secs: u64,
    /// 1-minute rollups, in seconds. At least `raw_secs`, default 2592000 (30 days).
    pub rollup_1m_secs: u64,
    /// 10-minute rollups, in seconds. At least `rollup_1m_secs`, default 7776000 (90
    /// days).
    pub rollup_10m_secs: u64,
    /// 1-hour and 1-day rollups, in seconds. At least `rollup_1m_secs`, default 31536000
    /// (365 days).
    pub rollup_1h_secs: u64,
    /// Log events, in seconds. At least 3600, default 2592000 (30 days).
    pub log_events_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            schedule: "0 17 * * * *".to_owned(),
            raw_secs: 7 * 86_400,
            rollup_1m_secs: 30 * 86_400,
            rollup_10m_secs: 90 * 86_400,
            rollup_1h_secs: 365 * 86_400,
            log_events_secs: 30 * 86_400,
        }
    }
}

/// `[rollups]`: what the 1-minute and 1-hour rollups count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RollupsConfig {
    /// Two consecutive samples of a series further apart than this, in seconds, are
    /// a silence: the counter's increase between them is not attributed to any
    /// bucket (the bucket after says `after_gap`), as across a recorded gap. Keep it
    /// a few times the agents' slowest counter interval (`intervals.slow_secs`, 60 by
    /// default). 10..=86400, default 180.
    pub max_silence_secs: u64,
}

impl Default for RollupsConfig {
    fn default() -> Self {
        Self {
            max_silence_secs: 180,
        }
    }
}

/// `[metrics]`: the federator's own HTTP listener: `/metrics` (Prometheus text),
/// `/healthz` (the process runs) and `/readyz` (the database answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `IP:PORT` to listen on, or `""` for no listener. Default `127.0.0.1:9188`.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9188".to_owned(),
        }
    }
}

/// `[[agents]]`: one agent to pull.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentEntry {
    /// The agent's name in the central database and in the federator's metrics.
    /// Letters, digits, `_`, `.` and `-`, at most 128 characters, unique. Required.
    pub name: String,
    /// Base URL of the agent's endpoint: `https://HOST:PORT` (mutual TLS, the
    /// certificate must name HOST), or `http://127.0.0.1:PORT` for a plaintext
    /// endpoint on this host (tests only). Required.
    pub url: String,
    /// Labels added to this agent in the central database (`env = "prod"`).
    pub labels: BTreeMap<String, String>,
    /// Cron expression with seconds overriding `scrape.schedule` for this agent.
    pub schedule: Option<String>,
}

/// The configuration as loaded: where it came from and what it says.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file read.
    pub path: PathBuf,
    /// Its contents.
    pub config: FederatorConfig,
}

/// Reads and parses `path` (or [`DEFAULT_CONFIG_PATH`]). Does not validate.
pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigError> {
    let path = path.unwrap_or(Path::new(DEFAULT_CONFIG_PATH)).to_owned();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::NotFound { path });
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let config = FederatorConfig::parse(&text, &path)?;
    Ok(Loaded { path, config })
}
