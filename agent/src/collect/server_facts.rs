//! What the PostgreSQL collector learns about an instance on every (re)connect, for
//! the collectors that read the server's files rather than its views (the log
//! collector). It travels through a [`SharedServerFacts`] so that no second
//! connection is opened to learn it.
//!
//! Also what `/v1/status` reports of each instance for the federator's inventory
//! ([`InstanceReport`], storage-format/PROTOCOL.md, "GET /v1/status"), learned on
//! the same connection at each connect and each slow pass.

use std::sync::{Arc, RwLock};

/// Settings of one instance that say where and how it writes its log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFacts {
    /// `server_version_num`, e.g. `150004`.
    pub server_version_num: u32,
    /// `data_directory`: relative `log_directory` values are relative to it.
    pub data_directory: String,
    /// `log_destination`, e.g. `stderr,csvlog`.
    pub log_destination: String,
    /// `logging_collector`: without it, stderr goes wherever the postmaster's
    /// stderr goes and only an explicit path can be followed.
    pub logging_collector: bool,
    /// `log_directory`, absolute or relative to `data_directory`.
    pub log_directory: String,
    /// `log_filename`, a strftime pattern such as `postgresql-%Y-%m-%d_%H%M%S.log`.
    pub log_filename: String,
    /// `log_line_prefix` of stderr entries.
    pub log_line_prefix: String,
    /// `log_timezone`, the zone of timestamps in the log.
    pub log_timezone: String,
}

/// One instance's facts, `None` until the collector has connected once.
pub type SharedServerFacts = Arc<RwLock<Option<ServerFacts>>>;

/// The query that fills [`ServerFacts`]; settings the role may not read come back
/// as NULL rather than failing the query.
pub const SERVER_FACTS_QUERY: &str = "\
SELECT current_setting('server_version_num')::int4,
       current_setting('data_directory', true),
       current_setting('log_destination', true),
       current_setting('logging_collector', true),
       current_setting('log_directory', true),
       current_setting('log_filename', true),
       current_setting('log_line_prefix', true),
       current_setting('log_timezone', true)";

/// One instance as `/v1/status` reports it; `None` where not known yet (the agent has
/// not reached the server since it started).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InstanceReport {
    /// The `[[postgres]] name`.
    pub name: String,
    /// Where the agent connects: host name, address or socket directory, and port.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `server_version` (`15.4 (Debian 15.4-1)`) and `server_version_num`.
    pub server_version: Option<String>,
    pub server_version_num: Option<u32>,
    /// `system_identifier` of `pg_control_system()`, as decimal text: the cluster's
    /// identity, shared by a primary and its physical standbys.
    pub system_identifier: Option<String>,
    /// `pg_is_in_recovery()`: a standby (true) or a primary (false).
    pub in_recovery: Option<bool>,
    /// The cluster's databases, templates left out, sorted.
    pub databases: Option<Vec<String>>,
    /// When the above was last learned, ms since the epoch.
    pub updated_ms: Option<i64>,
}

/// One instance's report, shared by its collectors and the endpoint.
pub type SharedInstanceReport = Arc<RwLock<InstanceReport>>;

/// The query that fills [`InstanceReport`]; every role may run it.
pub const INSTANCE_REPORT_QUERY: &str = "\
SELECT current_setting('server_version'), current_setting('server_version_num')::int4,
       (SELECT system_identifier::text FROM pg_control_system()),
       pg_is_in_recovery(),
       ARRAY(SELECT datname::text FROM pg_database WHERE NOT datistemplate ORDER BY 1)";
