//! What can go wrong in the sink, and what the caller should do about it.
//!
//! The decisions that matter to the scraper are made here, in one place:
//!
//! * [`SinkError::is_unavailable`]: the database cannot be reached or takes no
//!   writes at all (unreachable, shutting down, read-only, refusing connections).
//!   Nothing was written and the cursor did not move; every pull pauses until the
//!   database answers again.
//! * anything else a batch meets is that agent's failure: the batch was refused
//!   ([`SinkError::is_bad_batch`]: invalid values, a constraint, a trigger) or met a
//!   passing condition ([`SinkError::is_transient`]: a deadlock, a lock or statement
//!   timeout, memory, disk, a configured limit). The agent is retried with its own
//!   backoff; the other agents go on.
//!
//! [`SinkError::hint`] gives the fix for the errors an operator meets first (a wrong
//! password, a missing database, missing rights).

/// An error of the PostgreSQL sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The connection URL or options cannot be used.
    #[error("invalid database connection settings: {0}; fix the database URL")]
    Config(String),
    /// A database operation failed. (The database's message is part of this one,
    /// not a separate source, so that it is said once.)
    #[error("{context}: {}", describe(cause))]
    Database {
        context: &'static str,
        cause: sqlx::Error,
    },
    /// Applying the migrations failed.
    #[error("applying the database migrations: {}", describe_migrate(.0))]
    Migrate(sqlx::migrate::MigrateError),
    /// The role may not do what was asked; the message says which role to use.
    #[error("{0}")]
    Privilege(String),
    /// The database answers but takes no writes (a standby, or
    /// `default_transaction_read_only`).
    #[error("the database is read-only")]
    ReadOnly,
    /// The batch cannot be stored as it is; the agent's data must be looked at.
    #[error("rejected batch from agent {agent:?}: {reason}")]
    BadBatch { agent: String, reason: String },
    /// Fencing: the writer no longer holds the agent's lease with this epoch (another
    /// replica took the agent over, or this replica's own lease ran out). Nothing of
    /// the batch was written; this replica must not write the agent again before it
    /// holds a new lease.
    #[error(
        "agent {agent:?}: fenced: this replica no longer holds the agent's lease with epoch \
         {epoch} (another replica took it over, or this replica's lease expired); nothing \
         of the batch was written"
    )]
    Fenced { agent: String, epoch: i64 },
}

impl From<sqlx::migrate::MigrateError> for SinkError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        SinkError::Migrate(e)
    }
}

/// A database error as one line: PostgreSQL's message with its SQLSTATE, or
/// sqlx's description of what failed on the way.
fn describe(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::PoolTimedOut => {
            "no connection to the database within database.connect_timeout_secs".to_owned()
        }
        other => other.to_string(),
    }
}

fn describe_migrate(err: &sqlx::migrate::MigrateError) -> String {
    match err {
        sqlx::migrate::MigrateError::Execute(e) => describe(e),
        other => other.to_string(),
    }
}

impl SinkError {
    pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> SinkError {
        move |cause| SinkError::Database { context, cause }
    }

    pub(crate) fn bad(agent: &str, reason: impl Into<String>) -> SinkError {
        SinkError::BadBatch {
            agent: agent.to_owned(),
            reason: reason.into(),
        }
    }

    fn sqlx(&self) -> Option<&sqlx::Error> {
        match self {
            SinkError::Database { cause, .. } => Some(cause),
            SinkError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => Some(e),
            _ => None,
        }
    }

    /// The database cannot be reached or takes no writes at all: unreachable,
    /// shutting down, read-only, refusing connections. Pause every pull, keep the
    /// cursors and try again once it answers.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SinkError::ReadOnly) || self.sqlx().is_some_and(is_unavailable_sqlx)
    }

    /// The same work may succeed later: the database is unavailable, or the
    /// statement met a passing condition (a deadlock, a serialization failure, a
    /// lock or statement timeout, memory, disk, a configured limit).
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::ReadOnly)
            || self.sqlx().is_some_and(|e| {
                is_unavailable_sqlx(e) || sqlstate_of(e).is_some_and(|c| is_passing_sqlstate(&c))
            })
    }

    /// The batch itself was refused (invalid values, an unknown series id, a
    /// constraint or a trigger that rejects its rows): that agent's batch waits for
    /// someone to look; the other agents continue.
    pub fn is_bad_batch(&self) -> bool {
        match self {
            SinkError::BadBatch { .. } => true,
            _ => self.sqlstate().is_some_and(|s| {
                // 22: data exception (out-of-range value, NUL byte in text, …);
                // 23: integrity constraint violation (a check, an identity clash);
                // P0: raised by a trigger or function (RAISE EXCEPTION).
                s.starts_with("22") || s.starts_with("23") || s.starts_with("P0")
            }),
        }
    }

    /// The SQLSTATE of the underlying database error, if any.
    pub fn sqlstate(&self) -> Option<String> {
        self.sqlx().and_then(sqlstate_of)
    }

    /// What to do about it, for the errors a newcomer meets first.
    pub fn hint(&self) -> Option<&'static str> {
        if matches!(self, SinkError::Config(_)) {
            return Some("database.url must read postgres://USER@HOST:PORT/DATABASE");
        }
        let err = self.sqlx()?;
        let hint = match sqlstate_of(err).as_deref() {
            Some("28P01" | "28000") => {
                "check the password: the first line of database.password_file (or the \
                 URL's password, or PGPASSWORD) must be the role's password, and \
                 pg_hba.conf must let this role connect from this host"
            }
            Some("3D000") => {
                "create the database (as a superuser: CREATE DATABASE pganalytics OWNER \
                 pga_owner;) or fix its name in database.url"
            }
            Some("42501") => {
                "the role lacks a right: the federator's role must be a member of \
                 pga_writer, and `pga-federator migrate` must run as the owner \
                 (docs/central-database.md, \"Roles\")"
            }
            Some("42P01" | "42883") => {
                "the schema is missing or older than this federator: run `pga-federator \
                 migrate` as the owner"
            }
            Some("53300") => {
                "the server has no connection slot left: lower database.max_connections \
                 or raise the server's max_connections"
            }
            Some(_) => return None,
            None => match err {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
                    "is PostgreSQL running, and listening on the host and port of \
                     database.url (listen_addresses, port, a firewall)?"
                }
                sqlx::Error::Tls(_) => {
                    "check the TLS settings of database.url (sslmode, sslrootcert) against \
                     the server's"
                }
                _ => return None,
            },
        };
        Some(hint)
    }
}

fn sqlstate_of(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Whether `err` says the database as a whole is out of reach.
fn is_unavailable_sqlx(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_unavailable_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs (PostgreSQL appendix A) that say the database as a whole cannot take
/// writes now, whatever is sent.
fn is_unavailable_sqlstate(code: &str) -> bool {
    matches!(
        code,
        // read_only_sql_transaction: a standby or default_transaction_read_only
        "25006"
        // admin_shutdown, crash_shutdown, cannot_connect_now
        | "57P01" | "57P02" | "57P03"
        // too_many_connections
        | "53300"
    ) || code.starts_with("08") // connection exception
}

/// SQLSTATEs after which the same statement may succeed later, though the database
/// as a whole is up: a property of this batch's transaction, not of the database.
fn is_passing_sqlstate(code: &str) -> bool {
    matches!(
        code,
        // serialization_failure, deadlock_detected
        "40001" | "40P01"
        // lock_not_available, query_canceled (statement_timeout)
        | "55P03" | "57014"
    ) || code.starts_with("53") // insufficient resources: disk full, out of memory, a configured limit
        || code.starts_with("58") // system error: I/O error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        // Only what stops the database as a whole pauses every pull.
        for code in ["25006", "57P01", "57P03", "08006", "53300"] {
            assert!(is_unavailable_sqlstate(code), "{code}");
        }
        // One batch's trouble: the agent retries with its own backoff. Among them
        // TimescaleDB's "tuple decompression limit exceeded" (53400).
        for code in [
            "40001", "40P01", "55P03", "57014", "53100", "53200", "53400", "58030",
        ] {
            assert!(!is_unavailable_sqlstate(code), "{code}");
            assert!(is_passing_sqlstate(code), "{code}");
        }
        for code in ["22021", "23505", "42P01", "42501", "P0001", "XX000"] {
            assert!(!is_unavailable_sqlstate(code), "{code}");
            assert!(!is_passing_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn io_and_pool_errors_are_transient_bad_batches_are_not() {
        let io = SinkError::db("ingesting")(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(io.is_transient());
        assert!(io.is_unavailable());
        assert!(!io.is_bad_batch());
        assert!(io.hint().unwrap().contains("listening"), "{io:?}");
        assert!(SinkError::db("x")(sqlx::Error::PoolTimedOut).is_transient());
        let bad = SinkError::bad("a1", "unknown series 7");
        assert!(bad.is_bad_batch());
        assert!(!bad.is_transient());
        assert!(!bad.is_unavailable());
        assert!(bad.to_string().contains("a1"), "{bad}");
    }
}
