//! Repositories over the central database for the HTTP API and the command line:
//! users ([`users`]), API and refresh tokens ([`tokens`]), agents ([`agents`]),
//! the inventory ([`inventory`]), series and range queries ([`query`]), the
//! hash-chained audit log ([`audit`]), and alerting's rules ([`rules`]), alerts
//! ([`alerts`]), notification outbox ([`outbox`]) and maintenance windows
//! ([`maintenance`]). Each function takes a pool or an open
//! transaction; every value is bound, never spliced into SQL.
//!
//! The API has its own pool (`api.max_connections`), so a flood of API requests
//! cannot take the connections ingest needs.

pub mod agents;
pub mod alerts;
pub mod audit;
pub mod inventory;
pub mod maintenance;
pub mod outbox;
pub mod query;
pub mod remote_write;
pub mod rules;
pub mod sink;
pub mod tokens;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// How the API's pool connects.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub password: Option<String>,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Option<Duration>,
}

fn connect_options(url: &str, options: &PoolOptions) -> Result<PgConnectOptions, sqlx::Error> {
    let mut connect = PgConnectOptions::from_str(url)?.application_name("pga-federator-api");
    if let Some(p) = &options.password {
        connect = connect.password(p);
    }
    if let Some(t) = options.statement_timeout {
        connect = connect.options([("statement_timeout", format!("{}", t.as_millis()))]);
    }
    Ok(connect)
}

/// A pool on the central database, with `application_name` `pga-federator-api`;
/// connects now, so a wrong URL or password fails here.
pub async fn connect(url: &str, options: &PoolOptions) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect_options(url, options)?)
        .await
}

/// The same pool, connecting on first use (the API starts while the database may
/// still be down; its requests answer 503 until it is up). A connection is not
/// pinged before each use (a request makes two or three short queries; a broken
/// connection fails its query, is dropped, and the request is answered 503).
pub fn connect_lazy(url: &str, options: &PoolOptions) -> Result<PgPool, sqlx::Error> {
    Ok(PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(false)
        .connect_lazy_with(connect_options(url, options)?))
}

/// How long a session of its own (the evaluator's, a delivery worker's) may take to
/// connect: a connection that hangs (a half-open network path, a stalled proxy)
/// must fail, or the work behind it would wait forever.
pub const SESSION_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects one session with `options`, failing after [`SESSION_CONNECT_TIMEOUT`].
pub async fn connect_session(
    options: &PgConnectOptions,
) -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::ConnectOptions;
    tokio::time::timeout(SESSION_CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_| {
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting to the database timed out",
            ))
        })?
}

/// RFC 3339 with milliseconds, in UTC: how the API writes times.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// [`rfc3339`] of an optional time.
pub fn rfc3339_opt(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(rfc3339)
}

/// Whether the error is a unique-constraint violation (SQLSTATE 23505).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}

/// Whether the error is a check-constraint violation (SQLSTATE 23514).
pub fn is_check_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23514")
}
