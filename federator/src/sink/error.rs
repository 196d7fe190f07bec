//! What can go wrong in the sink, and whether the caller should retry.
//!
//! The one decision that matters to the scraper is made here, in
//! [`SinkError::is_transient`]: either the database is unavailable (down, read-only,
//! overloaded, a deadlock) and the batch should be retried later with the cursor
//! untouched, or the batch itself cannot be stored and must be rejected for that
//! agent ([`SinkError::is_bad_batch`]). Anything else (a schema that was never
//! migrated, missing privileges, a bad connection URL) needs an operator.

/// An error of the PostgreSQL sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The connection URL or options cannot be used.
    #[error("invalid database connection settings: {0}; fix the database URL")]
    Config(String),
    /// A database operation failed.
    #[error("{context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// Applying the migrations failed.
    #[error("applying the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The batch cannot be stored as it is; the agent's data must be looked at.
    #[error("rejected batch from agent {agent:?}: {reason}")]
    BadBatch { agent: String, reason: String },
}

impl SinkError {
    pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> SinkError {
        move |source| SinkError::Database { context, source }
    }

    pub(crate) fn bad(agent: &str, reason: impl Into<String>) -> SinkError {
        SinkError::BadBatch {
            agent: agent.to_owned(),
            reason: reason.into(),
        }
    }

    /// The database is unavailable for now (unreachable, shutting down, read-only,
    /// out of connections or disk, a deadlock or a timeout): pause, keep the cursor
    /// where it is and try the same batch again later.
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Database { source, .. } => is_transient_sqlx(source),
            SinkError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => is_transient_sqlx(e),
            _ => false,
        }
    }

    /// The batch itself cannot be stored (invalid values, an unknown series id, text
    /// PostgreSQL cannot hold): reject it for this agent; other agents continue.
    pub fn is_bad_batch(&self) -> bool {
        match self {
            SinkError::BadBatch { .. } => true,
            SinkError::Database { source, .. } => sqlstate(source)
                // 22: data exception (out-of-range value, NUL byte in text, …);
                // 23: integrity constraint violation (a check, an identity clash).
                .is_some_and(|s| s.starts_with("22") || s.starts_with("23")),
            _ => false,
        }
    }

    /// The SQLSTATE of the underlying database error, if any.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            SinkError::Database { source, .. } => sqlstate(source),
            SinkError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => sqlstate(e),
            _ => None,
        }
    }
}

fn sqlstate(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Whether `err` says "not now" rather than "never".
fn is_transient_sqlx(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs (PostgreSQL appendix A) after which the same statement may succeed later.
fn is_transient_sqlstate(code: &str) -> bool {
    matches!(
        code,
        // read_only_sql_transaction: a read-only server or default_transaction_read_only
        "25006"
        // serialization_failure, deadlock_detected
        | "40001" | "40P01"
        // lock_not_available, query_canceled (statement_timeout)
        | "55P03" | "57014"
        // admin_shutdown, crash_shutdown, cannot_connect_now
        | "57P01" | "57P02" | "57P03"
    ) || code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources: disk full, out of memory, too many connections
        || code.starts_with("58") // system error: I/O error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        for code in [
            "25006", "40001", "40P01", "57P01", "08006", "53100", "53300", "58030",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        for code in ["22021", "23505", "42P01", "42501", "XX000"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn io_and_pool_errors_are_transient_bad_batches_are_not() {
        let io = SinkError::db("ingesting")(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(io.is_transient());
        assert!(!io.is_bad_batch());
        assert!(SinkError::db("x")(sqlx::Error::PoolTimedOut).is_transient());
        let bad = SinkError::bad("a1", "unknown series 7");
        assert!(bad.is_bad_batch());
        assert!(!bad.is_transient());
        assert!(bad.to_string().contains("a1"), "{bad}");
    }
}
