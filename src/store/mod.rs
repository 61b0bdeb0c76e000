//! The mismatch store: where comparison outcomes become incidents an
//! on-call engineer can act on (DESIGN §7).
//!
//! Outcomes reach the store off the relay's path: the shadow `try_send`s
//! each into a bounded channel (a full channel drops and counts it,
//! `pgshadow_store_dropped_total`), and the [`writer`] folds them in memory
//! and writes one transaction per batch. What is stored:
//!
//! - [`Incident`]s: outcomes grouped by [`Signature`] (fingerprint + kind +
//!   diff kind + differing columns, or + SQLSTATEs for errors), with
//!   counts, first/last seen, a status (open / acknowledged / muted until …
//!   because …), at most `store.max_examples` [`Example`]s, each a
//!   reproduction bundle, and every differing row id ([`ids`]);
//! - [`Coverage`] per fingerprint: comparisons, matches, mismatches,
//!   errors, skips by reason, and a 95% upper bound of the mismatch rate.
//!
//! Two backends behind one [`Store`]: an embedded SQLite file (default;
//! WAL, `synchronous = FULL`, on a thread of its own so blocking file I/O
//! never runs on the async runtime) and PostgreSQL, which several proxy
//! instances can share (every write is an atomic upsert). The store
//! creates and migrates its own tables ([`schema`]). Retention keeps it
//! bounded: `store.max_incidents` and `store.retention_days`.
//!
//! For the admin API, CLI and web page, [`Store`]'s methods are the query
//! interface: [`Store::list_incidents`], [`Store::incident`],
//! [`Store::incident_ids`], [`Store::ack`], [`Store::mute`], [`Store::unmute`],
//! [`Store::list_coverage`], [`Store::open_incident_count`],
//! [`Store::ping`]. For alerts, [`writer::StoreWriter::subscribe`].

mod batch;
mod db;
pub mod ids;
pub mod model;
mod ops;
mod postgres;
mod queries;
mod schema;
mod sqlite;
pub mod writer;

pub use ids::{IdChange, IncidentIds, IncidentRowId};
pub use model::{
    format_utc, incident_id, mismatch_rate_upper_bound, now_ms, plan_outline, Coverage,
    CoverageLatency, Example, Incident, IncidentDetail, IncidentEvent, IncidentFilter,
    IncidentKind, IncidentNotice, IncidentStatus, Signature, StoredDiff, StoredError,
};
pub use ops::Expired;
pub use writer::{StoreWriter, WriterOptions};

use crate::capture::fingerprint::Fingerprint;
use crate::capture::skip::SkipReason;
use crate::config::StoreConfig;
use batch::Batch;
use ops::Limits;
use postgres::PostgresStore;
use sqlite::{ready, SqliteStore};
use std::path::PathBuf;
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
}

/// Options of an open store (from `[store]`).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Examples kept per incident (`store.max_examples`).
    pub max_examples: u64,
    /// Differing row ids kept per incident (`store.max_ids_per_incident`).
    pub max_ids_per_incident: u64,
    /// Incidents kept (`store.max_incidents`).
    pub max_incidents: u64,
    /// Incidents, examples and coverage not seen for this many days are
    /// deleted (`store.retention_days`).
    pub retention_days: u64,
    /// PostgreSQL password, when not in the URL (`store.password_env`).
    pub password: Option<String>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        let c = StoreConfig::default();
        Self {
            max_examples: c.max_examples,
            max_ids_per_incident: c.max_ids_per_incident,
            max_incidents: c.max_incidents,
            retention_days: c.retention_days,
            password: None,
        }
    }
}

/// The mismatch store: one of the two backends. Cheap to clone; clones
/// share the connection (the SQLite thread, the PostgreSQL client).
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    limits: Limits,
    retention_days: u64,
    url: String,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// Runs one [`ops`] function on whichever backend this is. On SQLite the
/// operation runs (and completes) on the store's thread; its inputs must
/// be owned, so callers clone them first.
macro_rules! on_backend {
    ($store:expr, $db:ident => $op:expr) => {
        match &$store.backend {
            Backend::Sqlite(s) => s.run(move |$db| ready($op)).await,
            Backend::Postgres(p) => {
                let mut session = p.session().await?;
                let result = {
                    let $db = &mut session.db();
                    $op.await
                };
                session.finish(result)
            }
        }
    };
}

impl Store {
    /// Opens (creating and migrating if needed) the store at `url`:
    /// `sqlite://FILE` (relative to the working directory, or
    /// `sqlite:///absolute/path`) or `postgres://user@host:port/db`.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let limits = Limits {
            max_examples: options.max_examples,
            max_ids: options.max_ids_per_incident,
            max_incidents: options.max_incidents.max(1),
        };
        let (backend, shown) = if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::BadUrl {
                    url: url.into(),
                    reason: "no file name after sqlite://".into(),
                });
            }
            let store = SqliteStore::open(PathBuf::from(path)).await?;
            (Backend::Sqlite(store), url.to_owned())
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let store = PostgresStore::open(url, options.password.clone()).await?;
            let shown = store.display().to_owned();
            (Backend::Postgres(store), shown)
        } else {
            return Err(StoreError::BadUrl {
                url: url.into(),
                reason: "must start with sqlite:// or postgres://".into(),
            });
        };
        Ok(Store {
            backend,
            limits,
            retention_days: options.retention_days,
            url: shown,
        })
    }

    /// Opens the store `[store]` describes.
    pub async fn from_config(config: &StoreConfig) -> Result<Store, StoreError> {
        let password = match &config.password_env {
            Some(var) => {
                Some(std::env::var(var).map_err(|_| StoreError::MissingPassword(var.clone()))?)
            }
            None => None,
        };
        let options = StoreOptions {
            max_examples: config.max_examples,
            max_ids_per_incident: config.max_ids_per_incident,
            max_incidents: config.max_incidents,
            retention_days: config.retention_days,
            password,
        };
        Self::open(&config.url, options).await
    }

    /// The store's address, without any password: for logs and errors.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Checks that the store answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, db => queries::ping(db))
    }

    /// Incidents matching `filter`, most recently seen first.
    pub async fn list_incidents(
        &self,
        filter: &IncidentFilter,
    ) -> Result<Vec<Incident>, StoreError> {
        let (filter, now) = (filter.clone(), now_ms());
        on_backend!(self, db => queries::list_incidents(db, &filter, now))
    }

    /// One incident with its examples (oldest first); `None` if there is
    /// no incident with this id.
    pub async fn incident(&self, id: &str) -> Result<Option<IncidentDetail>, StoreError> {
        let (id, now) = (id.to_owned(), now_ms());
        on_backend!(self, db => queries::incident_detail(db, &id, now))
    }

    /// The differing row ids incident `id` kept, most recently seen first,
    /// at most `limit`; `None` if there is no incident with this id.
    pub async fn incident_ids(
        &self,
        id: &str,
        limit: u64,
    ) -> Result<Option<IncidentIds>, StoreError> {
        let id = id.to_owned();
        on_backend!(self, db => ids::incident_ids(db, &id, limit))
    }

    /// Acknowledges an incident (ending any mute): it keeps counting but
    /// alerts no more. `by` names who did it, when known. Returns the
    /// incident as it now is, `None` if there is none with this id.
    pub async fn ack(&self, id: &str, by: Option<&str>) -> Result<Option<Incident>, StoreError> {
        self.set_status(id, IncidentStatus::Acknowledged, None, None, by)
            .await
    }

    /// Mutes an incident until `until_ms` (`None`: until unmuted) because
    /// of `reason`. It keeps counting; when the mute ends it reads as open
    /// again and the writer raises [`IncidentEvent::Unmuted`].
    pub async fn mute(
        &self,
        id: &str,
        until_ms: Option<i64>,
        reason: &str,
        by: Option<&str>,
    ) -> Result<Option<Incident>, StoreError> {
        self.set_status(id, IncidentStatus::Muted, until_ms, Some(reason), by)
            .await
    }

    /// Reopens a muted or acknowledged incident now. Raises no event by
    /// itself: a caller that wants one publishes it through
    /// [`StoreWriter::publish`].
    pub async fn unmute(&self, id: &str, by: Option<&str>) -> Result<Option<Incident>, StoreError> {
        self.set_status(id, IncidentStatus::Open, None, None, by)
            .await
    }

    async fn set_status(
        &self,
        id: &str,
        status: IncidentStatus,
        until_ms: Option<i64>,
        reason: Option<&str>,
        by: Option<&str>,
    ) -> Result<Option<Incident>, StoreError> {
        let (id, now) = (id.to_owned(), now_ms());
        let (reason, by) = (reason.map(str::to_owned), by.map(str::to_owned));
        on_backend!(self, db => async {
            let found = ops::set_status(
                db, &id, status, until_ms, reason.as_deref(), by.as_deref(), now,
            )
            .await?;
            if found { queries::incident(db, &id, now).await } else { Ok(None) }
        })
    }

    /// Coverage per fingerprint (all, or the one given), most compared
    /// first, at most `limit` rows.
    pub async fn list_coverage(
        &self,
        fingerprint: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Coverage>, StoreError> {
        let fingerprint = fingerprint.map(str::to_owned);
        on_backend!(self, db => queries::coverage(db, fingerprint.as_deref(), limit))
    }

    /// Incidents currently open (mutes past their end count as open): the
    /// value of `pgshadow_incidents_open`.
    pub async fn open_incident_count(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        on_backend!(self, db => queries::open_incident_count(db, now))
    }

    /// Adds `n` executions of `fingerprint` skipped for `reason` to its
    /// coverage, in one write. The proxy counts skips through
    /// [`crate::capture::skip::SkipCounts`] instead, which batches them.
    pub async fn record_skips(
        &self,
        fingerprint: Fingerprint,
        reason: SkipReason,
        n: u64,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.add_skips(fingerprint, reason, n, now_ms());
        self.write_batch(&batch).await.map(|_| ())
    }

    /// Ends the mutes that are over; returns the incidents reopened.
    pub async fn reopen_expired_mutes(&self) -> Result<Vec<Incident>, StoreError> {
        let now = now_ms();
        on_backend!(self, db => async {
            let mut reopened = Vec::new();
            for id in ops::reopen_expired_mutes(db, now).await? {
                reopened.extend(queries::incident(db, &id, now).await?);
            }
            Ok(reopened)
        })
    }

    /// Deletes what was last seen more than `store.retention_days` ago.
    pub async fn expire(&self) -> Result<Expired, StoreError> {
        let days = i64::try_from(self.retention_days).unwrap_or(i64::MAX / 86_400_000);
        let cutoff = now_ms().saturating_sub(days.saturating_mul(86_400_000));
        on_backend!(self, db => ops::expire(db, cutoff))
    }

    /// Writes one batch in one transaction; returns the ids of the
    /// incidents it opened.
    pub(crate) async fn write_batch(&self, batch: &Batch) -> Result<Vec<String>, StoreError> {
        let limits = self.limits;
        match &self.backend {
            Backend::Sqlite(s) => {
                let batch = batch.clone();
                s.run(move |db| ready(ops::write_batch(db, &batch, limits)))
                    .await
            }
            Backend::Postgres(p) => {
                let mut session = p.session().await?;
                let result = ops::write_batch(&mut session.db(), batch, limits).await;
                session.finish(result)
            }
        }
    }
}
