//! The agent's configuration: `/etc/pganalytics/agent.toml`.
//!
//! The file is TOML. Every table rejects keys it does not know, every quantity
//! carries its unit in its name (`_secs`, `_ms`, `_bytes`), and every key has a
//! default, so an empty file (or no file at all) is a valid configuration.
//!
//! Loading happens in three steps:
//!
//! 1. [`load`] finds the file (`--config FILE`, else [`DEFAULT_CONFIG_PATH`] when it
//!    exists, else the built-in defaults with the data directory `./pga-data`),
//!    parses it, and fails on TOML syntax errors, unknown keys and values of the
//!    wrong type, each reported with its line, column and key.
//! 2. [`Loaded::validate`] (or [`AgentConfig::validate`] for the file alone) checks
//!    ranges and cross-key rules and returns *every* [`Problem`], each naming its
//!    key and the fix.
//! 3. [`render_check`] prints what `pga-agent check-config` shows.
//!
//! With no `[[postgres]]` table the agent monitors the server `psql` would reach:
//! [`default_instance`] resolves `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE` and
//! `PGPASSFILE` the way libpq does.
//!
//! The doc comments on the fields below are the reference documentation of the
//! file; `packaging/agent.toml` is the annotated example and is parsed by a test.

mod conninfo;
mod endpoint;
mod libpq;
mod load;
mod logs;
mod parse;
mod render;
mod validate;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use conninfo::{
    ConninfoError, LIBPQ_KEYWORDS, parse_conninfo, quote_conninfo_value, render_conninfo,
};
pub use endpoint::{
    DEFAULT_LISTEN, EndpointConfig, EndpointMode, HEADER_TIMEOUT_SECS_MAX, MAX_CONNECTIONS_MAX,
    MAX_RESPONSE_BYTES_MAX, MIN_RESPONSE_BYTES, REQUEST_TIMEOUT_SECS_MAX, is_loopback_host,
    parse_listen,
};
pub use libpq::{
    DEBIAN_SOCKET_DIR, DEFAULT_INSTANCE_NAME, DEFAULT_PORT, UPSTREAM_SOCKET_DIR, default_instance,
    default_socket_dir, host_name, os_user_name,
};
pub use load::{
    ConfigSource, DEFAULT_CONFIG_PATH, Loaded, NO_CONFIG_DATA_DIR, load, load_with_system_path,
};
pub use logs::LogsConfig;
pub use parse::{ConfigError, Location, UnknownKey, schema_keys};
pub use render::{format_bytes, render_check};
pub use validate::{
    BLOCK_SECS_MAX, BLOCK_SECS_MIN, FAST_SECS_MAX, MAX_NAME_LEN, MIN_STORE_BYTES, Problem,
    SIZES_SECS_MAX, SLOW_SECS_MAX, STATEMENT_TIMEOUT_MS_MAX, STATEMENT_TIMEOUT_MS_MIN,
    STATEMENTS_TOP_N_MAX, Severity, has_errors, is_valid_name,
};

/// Where the agent keeps its state when the configuration comes from a file that
/// does not say otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/pganalytics/agent";

/// The whole `agent.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// `[agent]`: identity and state directory of this agent.
    pub agent: AgentSection,
    /// `[intervals]`: how often each collector group runs.
    pub intervals: Intervals,
    /// `[store]`: size and age bounds of the local ring store.
    pub store: StoreConfig,
    /// `[collectors]`: which collectors run.
    pub collectors: Collectors,
    /// `[endpoint]`: the mutual-TLS endpoint the federator and Prometheus pull
    /// from; off unless configured.
    pub endpoint: EndpointConfig,
    /// `[logs]`: how each instance's server log is found and read.
    pub logs: LogsConfig,
    /// `[[postgres]]`: the PostgreSQL instances to monitor, zero or more. With none
    /// and `collectors.postgres = true`, the agent monitors the server libpq's
    /// defaults reach (see [`default_instance`]).
    pub postgres: Vec<PostgresInstance>,
}

/// `[agent]`: who this agent is and where it keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSection {
    /// Name of this agent as the federator and every label see it. Letters, digits,
    /// `_`, `.` and `-`, at most 128 characters. Default: the host name (from
    /// `/proc/sys/kernel/hostname`).
    pub name: String,
    /// Directory of the ring store and the agent's other state; created if missing.
    /// Default: `/var/lib/pganalytics/agent` when the configuration comes from a
    /// file, `./pga-data` when there is no file. `--data-dir DIR` overrides it.
    pub data_dir: PathBuf,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            name: host_name(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
        }
    }
}

/// `[intervals]`: the collection period of each collector group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Intervals {
    /// Period of the fast group (activity, database and WAL counters, replication,
    /// locks, system metrics), in seconds. 1..=300, default 10.
    pub fast_secs: u64,
    /// Period of the slow group (table and index statistics, statements, settings,
    /// wraparound age), in seconds. At least `fast_secs`, at most 3600, default 60.
    pub slow_secs: u64,
    /// Period of the sizes group (database and relation sizes), in seconds. At
    /// least `slow_secs`, at most 86400, default 300.
    pub sizes_secs: u64,
}

const fn default_fast_secs() -> u64 {
    10
}
const fn default_slow_secs() -> u64 {
    60
}
const fn default_sizes_secs() -> u64 {
    300
}

impl Intervals {
    /// The defaults: 10 s, 60 s, 300 s.
    pub const DEFAULT: Self = Self {
        fast_secs: default_fast_secs(),
        slow_secs: default_slow_secs(),
        sizes_secs: default_sizes_secs(),
    };

    /// Period of the fast group.
    pub const fn fast(&self) -> Duration {
        Duration::from_secs(self.fast_secs)
    }

    /// Period of the slow group.
    pub const fn slow(&self) -> Duration {
        Duration::from_secs(self.slow_secs)
    }

    /// Period of the sizes group.
    pub const fn sizes(&self) -> Duration {
        Duration::from_secs(self.sizes_secs)
    }
}

impl Default for Intervals {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `[store]`: bounds of the local ring store. The oldest blocks go first when
/// either bound is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Byte budget of the ring store file; the store never grows past it. At least
    /// 4 MiB (4194304), default 1 GiB (1073741824).
    pub max_bytes: u64,
    /// Age of the oldest data kept, in seconds; `0` keeps whatever fits in
    /// `max_bytes`. Otherwise at least `block_secs`. Default 1209600 (14 days).
    pub retention_secs: u64,
    /// Time span of one sealed block, in seconds. 60..=3600 and a multiple of
    /// `intervals.fast_secs`. Default 600.
    pub block_secs: u64,
}

const fn default_max_bytes() -> u64 {
    1 << 30
}
const fn default_retention_secs() -> u64 {
    14 * 24 * 3600
}
const fn default_block_secs() -> u64 {
    600
}

impl StoreConfig {
    /// The defaults: 1 GiB, 14 days, 10-minute blocks.
    pub const DEFAULT: Self = Self {
        max_bytes: default_max_bytes(),
        retention_secs: default_retention_secs(),
        block_secs: default_block_secs(),
    };

    /// The retention age, or `None` when only the byte budget bounds the store.
    pub const fn retention(&self) -> Option<Duration> {
        if self.retention_secs == 0 {
            None
        } else {
            Some(Duration::from_secs(self.retention_secs))
        }
    }

    /// The time span of one sealed block.
    pub const fn block(&self) -> Duration {
        Duration::from_secs(self.block_secs)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `[collectors]`: switch collectors on and off. All are on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Collectors {
    /// Operating-system metrics from `/proc` and `statvfs`.
    pub system: bool,
    /// PostgreSQL statistics of every `[[postgres]]` instance (or of the libpq
    /// default instance when none is configured).
    pub postgres: bool,
    /// PostgreSQL log files, found through `pg_settings`; needs `postgres`.
    pub logs: bool,
}

const fn default_collector_enabled() -> bool {
    true
}

impl Collectors {
    /// The defaults: everything on.
    pub const DEFAULT: Self = Self {
        system: default_collector_enabled(),
        postgres: default_collector_enabled(),
        logs: default_collector_enabled(),
    };
}

impl Default for Collectors {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `[[postgres]]`: one PostgreSQL instance to monitor.
///
/// Say where it is either with `conninfo` or with the separate keys `host`, `port`,
/// `user`, `dbname` and `passfile`, not both. Whatever is left out comes from the
/// libpq environment variables and defaults, as for `psql`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresInstance {
    /// Name of the instance, unique within this agent; becomes the `pg_instance`
    /// label. Letters, digits, `_`, `.` and `-`. Required.
    pub name: String,
    /// Connection string: libpq `key=value` pairs
    /// (`host=/var/run/postgresql port=5432 user=pga_monitor dbname=postgres`) or a
    /// `postgresql://` URL. Must not contain a password: use `password_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conninfo: Option<String>,
    /// Host name, IP address, or unix-socket directory (a path starting with `/`).
    /// Default: `PGHOST`, else the default socket directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// TCP port, or the number in the socket file name. Default: `PGPORT`, else 5432.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Role to connect as; give it `pg_monitor` and nothing more. Default: `PGUSER`,
    /// else the operating-system user running the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Database of the first connection (instance-wide statistics). Default:
    /// `PGDATABASE`, else the user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dbname: Option<String>,
    /// A libpq password file (`hostname:port:database:username:password` lines,
    /// mode 0600). Default: `PGPASSFILE`, else `~/.pgpass`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passfile: Option<PathBuf>,
    /// A file holding the password itself on its first line (mode 0600 or 0640,
    /// never world-readable). When set, it wins over any password file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// `statement_timeout` of every monitoring session, in milliseconds.
    /// 100..=60000, default 5000.
    pub statement_timeout_ms: u64,
    /// `lock_timeout` of every monitoring session, in milliseconds, so no
    /// monitoring query waits behind user DDL. 1..=`statement_timeout_ms`,
    /// default 1000.
    pub lock_timeout_ms: u64,
    /// Databases to cover, as glob patterns (`*` any run of characters, `?` one
    /// character). Default `["*"]`.
    pub databases_include: Vec<String>,
    /// Databases to skip even when included, as glob patterns. Default
    /// `["template0", "template1"]`.
    pub databases_exclude: Vec<String>,
    /// How many `pg_stat_statements` entries (by total time) to keep per
    /// collection; `0` turns statement statistics off. At most 1000, default 100.
    pub statements_top_n: u32,
    /// Relations (tables, indexes) kept per database by the per-relation families,
    /// the busiest or largest first. 1..=10000, default 300.
    pub relations_top_n: u32,
    /// Statistics families not to collect, by name (`statements`, `relation_size`,
    /// `io`, …; an unknown name is an error that lists them all). Default: none.
    pub families_exclude: Vec<String>,
}

const fn default_statement_timeout_ms() -> u64 {
    5000
}
const fn default_lock_timeout_ms() -> u64 {
    1000
}
const fn default_statements_top_n() -> u32 {
    100
}
const fn default_relations_top_n() -> u32 {
    300
}

impl Default for PostgresInstance {
    /// Every key at its default; `name` is empty and must be set.
    fn default() -> Self {
        Self {
            name: String::new(),
            conninfo: None,
            host: None,
            port: None,
            user: None,
            dbname: None,
            passfile: None,
            password_file: None,
            statement_timeout_ms: default_statement_timeout_ms(),
            lock_timeout_ms: default_lock_timeout_ms(),
            databases_include: vec!["*".to_owned()],
            databases_exclude: vec!["template0".to_owned(), "template1".to_owned()],
            statements_top_n: default_statements_top_n(),
            relations_top_n: default_relations_top_n(),
            families_exclude: Vec::new(),
        }
    }
}

impl std::fmt::Debug for PostgresInstance {
    /// Like a derived `Debug`, but a password inside `conninfo` is masked.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresInstance")
            .field("name", &self.name)
            .field(
                "conninfo",
                &self.conninfo.as_deref().map(conninfo::redact_conninfo),
            )
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("passfile", &self.passfile)
            .field("password_file", &self.password_file)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("lock_timeout_ms", &self.lock_timeout_ms)
            .field("databases_include", &self.databases_include)
            .field("databases_exclude", &self.databases_exclude)
            .field("statements_top_n", &self.statements_top_n)
            .field("relations_top_n", &self.relations_top_n)
            .field("families_exclude", &self.families_exclude)
            .finish()
    }
}

impl PostgresInstance {
    /// `statement_timeout` of every monitoring session.
    pub const fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    /// `lock_timeout` of every monitoring session.
    pub const fn lock_timeout(&self) -> Duration {
        Duration::from_millis(self.lock_timeout_ms)
    }

    /// Whether the database `datname` is covered: it matches an include pattern
    /// and no exclude pattern.
    pub fn covers_database(&self, datname: &str) -> bool {
        self.databases_include
            .iter()
            .any(|p| glob_match(p, datname))
            && !self
                .databases_exclude
                .iter()
                .any(|p| glob_match(p, datname))
    }

    /// Reads the password from `password_file`: its first line, without the line
    /// ending. `Ok(None)` when no `password_file` is configured.
    pub fn read_password(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let first = text.lines().next().unwrap_or("");
        Ok(Some(first.to_owned()))
    }
}

/// Matches `text` against a glob `pattern`: `*` matches any run of characters
/// (including none), `?` exactly one character, everything else itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with backtracking to the last `*`: O(len(p) * len(t)).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_values() {
        let c = AgentConfig::default();
        assert_eq!(c.agent.name, host_name());
        assert_eq!(
            c.agent.data_dir,
            PathBuf::from("/var/lib/pganalytics/agent")
        );
        assert_eq!(
            (
                c.intervals.fast_secs,
                c.intervals.slow_secs,
                c.intervals.sizes_secs
            ),
            (10, 60, 300)
        );
        assert_eq!(c.store.max_bytes, 1_073_741_824);
        assert_eq!(c.store.retention_secs, 1_209_600);
        assert_eq!(c.store.block_secs, 600);
        assert_eq!(c.store.retention(), Some(Duration::from_secs(14 * 86_400)));
        assert!(c.collectors.system && c.collectors.postgres && c.collectors.logs);
        assert!(c.postgres.is_empty());
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        let c: AgentConfig = toml::from_str("").unwrap();
        assert_eq!(c, AgentConfig::default());
    }

    #[test]
    fn instance_defaults_fill_unset_keys() {
        let c: AgentConfig = toml::from_str("[[postgres]]\nname = \"main\"\n").unwrap();
        let p = &c.postgres[0];
        assert_eq!(p.name, "main");
        assert_eq!(p.statement_timeout_ms, 5000);
        assert_eq!(p.lock_timeout_ms, 1000);
        assert_eq!(p.databases_include, ["*"]);
        assert_eq!(p.databases_exclude, ["template0", "template1"]);
        assert_eq!(p.statements_top_n, 100);
        assert_eq!(p.conninfo, None);
        assert_eq!(p.port, None);
    }

    #[test]
    fn retention_zero_means_budget_only() {
        let s = StoreConfig {
            retention_secs: 0,
            ..StoreConfig::DEFAULT
        };
        assert_eq!(s.retention(), None);
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "postgres"));
        assert!(glob_match("app_*", "app_orders"));
        assert!(!glob_match("app_*", "xapp_orders"));
        assert!(glob_match("db?", "db1"));
        assert!(!glob_match("db?", "db12"));
        assert!(glob_match("*_test*", "shop_test_2"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(glob_match("template0", "template0"));
        assert!(!glob_match("template0", "template01"));
    }

    #[test]
    fn database_selection_applies_excludes_after_includes() {
        let p = PostgresInstance {
            databases_include: vec!["app_*".into(), "postgres".into()],
            databases_exclude: vec!["app_tmp*".into()],
            ..PostgresInstance::default()
        };
        assert!(p.covers_database("app_orders"));
        assert!(p.covers_database("postgres"));
        assert!(!p.covers_database("app_tmp1"));
        assert!(!p.covers_database("billing"));
        let d = PostgresInstance::default();
        assert!(d.covers_database("shop"));
        assert!(!d.covers_database("template0"));
        assert!(!d.covers_database("template1"));
    }

    #[test]
    fn debug_masks_a_password_in_conninfo() {
        let p = PostgresInstance {
            name: "x".into(),
            conninfo: Some("host=h password=hunter2".into()),
            ..PostgresInstance::default()
        };
        let shown = format!("{p:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("host=h"), "{shown}");
    }

    #[test]
    fn password_file_first_line_is_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret pass\nignored\n").unwrap();
        let p = PostgresInstance {
            password_file: Some(path),
            ..PostgresInstance::default()
        };
        assert_eq!(p.read_password().unwrap().as_deref(), Some("s3cret pass"));
        assert_eq!(PostgresInstance::default().read_password().unwrap(), None);
    }
}
