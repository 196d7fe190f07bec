//! [`StoreError`]: why the store could not do what was asked, what to do about it,
//! and which failures close the database until it is opened again (see "Faults" in
//! the module documentation of `store`).

use std::path::PathBuf;

use super::migrate::SCHEMA;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(
        "cannot create the data directory {path}: {error}; create it and make it writable by the agent's user, or pick another with --data-dir"
    )]
    DataDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "the store {path} is in use by another pga-agent; stop it first, or give this one its own --data-dir"
    )]
    InUse { path: PathBuf },
    #[error(
        "no store at {path}: has pga-agent run with this data directory? (pass --data-dir or --config to point at it)"
    )]
    Missing { path: PathBuf },
    #[error("the store {path} cannot be read: {detail}")]
    Unreadable { path: PathBuf, detail: String },
    #[error(
        "the store {path} was written by a newer pga-agent (store schema {schema}; this one reads up to {SCHEMA}); run that version again, or move the file away to start a fresh store"
    )]
    TooNew { path: PathBuf, schema: u32 },
    /// An I/O failure under the store, with the file and what to do.
    #[error("the store {} cannot {op}: {error}; {}", path.display(), io_fix(error))]
    Io {
        path: PathBuf,
        op: &'static str,
        error: std::io::Error,
    },
    /// The store is closed after a failed write and not open again yet.
    #[error("the store is not available: {0}")]
    Unavailable(String),
    #[error("store database error: {0}")]
    Db(#[from] redb::Error),
    #[error("the store holds damaged data: {0}")]
    Damaged(String),
    #[error("{0}")]
    Encode(#[from] pga_format::EncodeError),
    #[error("series {name}: {error}")]
    InvalidSeries {
        name: String,
        error: pga_format::ModelError,
    },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What to do about an I/O error of the store.
fn io_fix(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            "the filesystem is full: free space there (or lower store.max_bytes); until then \
             collections are lost, old blocks are evicted to fit what the filesystem holds, and \
             the agent resumes by itself once writes succeed, without a restart"
        }
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            "make the data directory writable by the agent's user (is the filesystem read-only?); \
             the agent resumes by itself once writes succeed"
        }
        _ => {
            "check the device (dmesg, SMART); the agent closes the store, opens it again and \
             resumes by itself once writes succeed"
        }
    }
}

impl StoreError {
    /// The I/O error under this failure, when the store failed for an I/O reason
    /// (not damage, not a bug): the database must be closed and opened again.
    pub fn io_failure(&self) -> Option<&std::io::Error> {
        match self {
            StoreError::Io { error, .. } => Some(error),
            StoreError::Db(redb::Error::Io(e)) => Some(e),
            _ => None,
        }
    }

    /// Whether this failure leaves the redb database unusable until it is reopened.
    pub(super) fn needs_reopen(&self) -> bool {
        matches!(
            self,
            StoreError::Io { .. }
                | StoreError::Db(
                    redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
                )
        )
    }

    /// Whether the store file is damaged (as opposed to missing, in use, or the
    /// system failing): its bytes are not a sound store.
    pub fn is_damage(&self) -> bool {
        match self {
            StoreError::Damaged(_) | StoreError::Unreadable { .. } => true,
            StoreError::Db(redb::Error::Corrupted(_)) => true,
            StoreError::Db(redb::Error::Io(e)) => is_damage(e),
            _ => false,
        }
    }

    /// Whether the store is out of space.
    pub fn is_no_space(&self) -> bool {
        self.io_failure().is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        })
    }

    /// Whether the store is closed for now (a failed write, reopening): a client
    /// should retry later; not a fault of the request or of the data.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_)) || self.needs_reopen()
    }
}

/// Whether an I/O error met while opening says the file is not a sound store
/// (truncated, not a redb file) rather than that the system failed (no space, no
/// permission, a failing device): only the first is damage.
pub(super) fn is_damage(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
    )
}
