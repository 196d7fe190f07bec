//! What goes wrong with one PostgreSQL instance in a pass, each with the instance
//! (and database) it concerns and, where there is one, the fix. A family's error is
//! reported every pass until the family recovers, so these are cheap to clone: a
//! source that is not `Clone` is shared.

use std::sync::Arc;

use super::conn::QueryError;
use crate::collect::Group;
use crate::config::{ConfigError, ConninfoError};

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    #[error("instance {instance}: {error}")]
    Conninfo {
        instance: String,
        error: ConninfoError,
    },
    #[error(
        "instance {instance}: sslmode={mode} is not supported by this build; connect over the unix socket or with sslmode=disable on a trusted network"
    )]
    SslMode { instance: String, mode: String },
    #[error("instance {instance}: port {port:?} is not a number")]
    Port { instance: String, port: String },
    #[error("instance {instance}: {error}")]
    PasswordFile {
        instance: String,
        error: Arc<ConfigError>,
    },
    /// The server refused or did not answer a new session; `fix` says what to do.
    #[error("instance {instance}: cannot connect to {target} database {database}: {cause}; {fix}")]
    Connect {
        instance: String,
        /// `host:port` or the socket's path.
        target: String,
        database: String,
        /// The server's message with its detail and hint, or the client's error.
        cause: String,
        fix: String,
        /// The database does not exist (any more).
        gone: bool,
    },
    #[error("instance {instance} database {database}: no connection before the pass's deadline")]
    ConnectLate { instance: String, database: String },
    #[error("instance {instance}: no connection within {waited_ms} ms")]
    NoConnection { instance: String, waited_ms: u64 },
    #[error("instance {instance}: the connection stayed busy past this pass's deadline")]
    Busy { instance: String },
    /// A group other than the fast one, while the fast one reports why.
    #[error("instance {instance}: not reachable (pg_up 0); the {group} families wait for it")]
    Unreachable { instance: String, group: Group },
    /// The server stopped answering on an open connection.
    #[error("instance {instance}: {error}")]
    NotAnswering {
        instance: String,
        error: Arc<QueryError>,
    },
    #[error("instance {instance}: cannot list the databases: {error}")]
    ListDatabases {
        instance: String,
        error: Arc<QueryError>,
    },
    /// The last-resort bound of a pass (the pass's own deadline failed to stop it).
    #[error("instance {instance}: the pass did not finish within {bound_ms} ms")]
    Overran { instance: String, bound_ms: u128 },
    #[error(
        "{}: family {family} failed: {error}; {fix}; it is retried with backoff",
        place(instance, database.as_deref())
    )]
    Family {
        instance: String,
        database: Option<String>,
        family: &'static str,
        error: Arc<QueryError>,
        fix: String,
    },
}

fn place(instance: &str, database: Option<&str>) -> String {
    match database {
        Some(d) => format!("instance {instance} database {d}"),
        None => format!("instance {instance}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::CollectError;

    #[test]
    fn messages_name_the_instance_the_database_and_the_fix() {
        let family = PostgresError::Family {
            instance: "main".into(),
            database: Some("app".into()),
            family: "pg_stat_user_tables",
            error: Arc::new(QueryError::Deadline),
            fix: "see the server's log".into(),
        };
        assert_eq!(
            family.to_string(),
            "instance main database app: family pg_stat_user_tables failed: no answer before \
             the pass's deadline (statement_timeout_ms + 1 s); the query was cancelled; see the \
             server's log; it is retried with backoff"
        );
        let connect = PostgresError::Connect {
            instance: "main".into(),
            target: "127.0.0.1:5432".into(),
            database: "postgres".into(),
            cause: "connection refused".into(),
            fix: "is the server running there?".into(),
            gone: false,
        };
        assert_eq!(
            CollectError::from(connect).to_string(),
            "instance main: cannot connect to 127.0.0.1:5432 database postgres: connection \
             refused; is the server running there?"
        );
        let waiting = PostgresError::Unreachable {
            instance: "main".into(),
            group: Group::Slow,
        };
        assert_eq!(
            waiting.to_string(),
            "instance main: not reachable (pg_up 0); the slow families wait for it"
        );
        let unreadable = CollectError::LogUnreadable {
            path: "/var/log/postgresql/pg.log".into(),
        };
        assert!(
            unreadable.to_string().starts_with(
                "cannot read /var/log/postgresql/pg.log: permission denied; set log_file_mode = 0640"
            ),
            "{unreadable}"
        );
    }
}
