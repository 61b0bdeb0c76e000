//! Why a store operation failed, named by every file of the store.

use thiserror::Error;

/// Why the store could not be opened, read or written.
#[derive(Debug, Error)]
pub enum StoreError {
    /// `store.url` is not a store address.
    #[error("store.url {url:?}: {reason}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store could not be opened or created.
    #[error("cannot open the mismatch store {url}: {message}")]
    Open {
        /// The store (without password).
        url: String,
        /// Why.
        message: String,
    },
    /// `store.password_env` names a variable that is not set.
    #[error("store.password_env: environment variable {0} is not set")]
    MissingPassword(String),
    /// An SQLite error.
    #[error("SQLite mismatch store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A PostgreSQL error.
    #[error("PostgreSQL mismatch store: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The store was created by a newer pgshadow.
    #[error(
        "the mismatch store has schema version {found}, this pgshadow supports up to \
         {supported}: upgrade pgshadow or use another store.url"
    )]
    TooNew {
        /// Version found.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// Stored data this build cannot read.
    #[error("unexpected data in the mismatch store: {0}")]
    Corrupt(String),
    /// The SQLite store's thread has stopped.
    #[error("the SQLite mismatch store's thread has stopped")]
    Closed,
    /// An operation did not finish within `store.op_timeout_ms`.
    #[error("the mismatch store did not answer within {ms} ms ({op}; store.op_timeout_ms)")]
    Timeout {
        /// What the operation was doing ([`StoreOp::label`](super::StoreOp::label)).
        op: &'static str,
        /// The timeout.
        ms: u64,
    },
    /// The SQLite store's thread is still busy with earlier operations that
    /// timed out (a hung disk): new ones are refused rather than queued.
    #[error("the SQLite mismatch store is still busy with {0} earlier operations")]
    Busy(usize),
}

impl StoreError {
    /// Whether the error says the store cannot be reached or does not
    /// answer (as opposed to a bad URL, a newer schema or bad data): the
    /// store is down, and the admin API answers 503.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Open { .. }
            | StoreError::Sqlite(_)
            | StoreError::Closed
            | StoreError::Timeout { .. }
            | StoreError::Busy(_) => true,
            StoreError::Postgres(e) => e.as_db_error().is_none() || e.is_closed(),
            StoreError::BadUrl { .. }
            | StoreError::MissingPassword(_)
            | StoreError::TooNew { .. }
            | StoreError::Corrupt(_) => false,
        }
    }
}
