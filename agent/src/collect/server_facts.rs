//! What the PostgreSQL collector learns about an instance on every (re)connect, for
//! the collectors that read the server's files rather than its views (the log
//! collector). It travels through a [`SharedServerFacts`] so that no second
//! connection is opened to learn it.

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
