//! The mismatch store: where comparison outcomes become incidents an
//! on-call engineer can act on (DESIGN §7).
//!
//! Outcomes reach the store off the relay's path: the shadow `try_send`s
//! each into a bounded channel (a full channel drops and counts it,
//! `pgshadow_store_dropped_total`), and the [`writer`] folds them in memory
//! and writes one transaction per batch. What is stored:
//!
//! - [`Incident`]s: outcomes grouped by [`Signature`](crate::outcome::signature::Signature) (fingerprint + kind +
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
//!
//! Files, each naming only those listed before it: `error.rs` (why an
//! operation failed), `health.rs` (whether the store answers), [`model`]
//! (what is stored), `db.rs` (what both backends must do), `schema.rs`
//! (tables and migrations), `sqlite.rs` and `postgres.rs` (the backends),
//! [`ids`] (differing row ids), `batch.rs` (outcomes folded in memory),
//! `ops.rs` (the writes) and `queries.rs` (the reads); this file opens a
//! [`Store`] on either backend, and [`writer`] feeds it.

mod batch;
mod db;
mod error;
mod health;
pub mod ids;
pub mod model;
mod ops;
mod postgres;
mod queries;
mod schema;
mod sqlite;
pub mod writer;

pub use error::StoreError;
pub use health::{StoreHealth, StoreOp};
pub use ids::{IdChange, IncidentIds, IncidentRowId};
pub use model::{
    mismatch_rate_upper_bound, now_ms, plan_outline, Coverage, CoverageLatency, Example, Incident,
    IncidentDetail, IncidentEvent, IncidentFilter, IncidentNotice, IncidentStatus, StoredDiff,
    StoredError,
};
pub use ops::Expired;
pub use writer::{StoreWriter, WriterOptions};
// Times in the store's views are printed by the crate-wide formatter.
pub use crate::utc::format_utc;

use crate::capture::fingerprint::Fingerprint;
use crate::capture::skip::SkipReason;
use crate::config::{StoreConfig, StoreUrl, StoreUrlError};
use batch::Batch;
use ops::Limits;
use postgres::PostgresStore;
use sqlite::{ready, SqliteStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

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
    /// Longest any one operation may take (`store.op_timeout_ms`).
    pub op_timeout: Duration,
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
            op_timeout: Duration::from_millis(c.op_timeout_ms),
        }
    }
}

/// The mismatch store: one of the two backends. Cheap to clone; clones
/// share the connection (the SQLite thread, the PostgreSQL client).
///
/// Every operation is bounded by `store.op_timeout_ms` and reports to the
/// store's [`StoreHealth`]. A store that could not be opened at startup
/// ([`Store::open_or_later`]) is opened by the first operation that
/// succeeds in doing so.
#[derive(Clone)]
pub struct Store {
    backend: Arc<OnceCell<Backend>>,
    /// What opening needs, for a store not open yet.
    opening: Arc<(StoreUrl, StoreOptions)>,
    limits: Limits,
    retention_days: u64,
    url: String,
    op_timeout: Duration,
    health: StoreHealth,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// Runs one [`ops`] function on whichever backend this is, within the
/// operation timeout, opening the store first if it is not open yet. On
/// SQLite the operation runs (and completes) on the store's thread; its
/// inputs must be owned, so callers clone them first.
macro_rules! on_backend {
    ($store:expr, $op:expr, $db:ident => $body:expr) => {
        $store
            .timed($op, async {
                match $store.backend().await? {
                    Backend::Sqlite(s) => s.run(move |$db| ready($body)).await,
                    Backend::Postgres(p) => {
                        let mut session = p.session().await?;
                        let result = {
                            let $db = &mut session.db();
                            $body.await
                        };
                        session.finish(result)
                    }
                }
            })
            .await
    };
}

impl Store {
    /// Opens (creating and migrating if needed) the store at `url`:
    /// `sqlite://FILE` (relative to the working directory, or
    /// `sqlite:///absolute/path`) or `postgres://user@host:port/db`.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        Self::unopened(url, options)?.opened().await
    }

    /// Like [`Store::open`], but a store that is configured right and only
    /// cannot be reached now (a read-only path, a PostgreSQL server down)
    /// is returned all the same, with the reason: it is opened by a later
    /// operation (the writer retries with backoff). Errors of
    /// configuration (bad URL, missing password, a newer schema) are
    /// returned as errors.
    pub async fn open_or_later(
        url: &str,
        options: StoreOptions,
    ) -> Result<(Store, Option<StoreError>), StoreError> {
        Self::unopened(url, options)?.opened_or_later().await
    }

    /// This store, opened now.
    async fn opened(self) -> Result<Store, StoreError> {
        self.timed(StoreOp::Open, self.backend()).await?;
        Ok(self)
    }

    /// This store, opened now or, when it cannot be reached, later.
    async fn opened_or_later(self) -> Result<(Store, Option<StoreError>), StoreError> {
        match self.timed(StoreOp::Open, self.backend()).await {
            Ok(_) => Ok((self, None)),
            Err(e) if e.is_unavailable() => Ok((self, Some(e))),
            Err(e) => Err(e),
        }
    }

    /// A store for `url` that is not open yet. Only text that is not a
    /// store address fails here; a [`StoreUrl`] from the config cannot.
    fn unopened(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let parsed = url.parse::<StoreUrl>().map_err(|e| StoreError::BadUrl {
            url: url.into(),
            reason: match e {
                StoreUrlError::Scheme(_) => "must start with sqlite:// or postgres://".into(),
                StoreUrlError::NoFile => "no file name after sqlite://".into(),
            },
        })?;
        Ok(Self::unopened_at(parsed, options))
    }

    fn unopened_at(url: StoreUrl, options: StoreOptions) -> Store {
        let shown = match &url {
            StoreUrl::Sqlite(_) => url.to_string(),
            StoreUrl::Postgres(text) => postgres::display_url(text),
        };
        Store {
            backend: Arc::new(OnceCell::new()),
            limits: Limits {
                max_examples: options.max_examples,
                max_ids: options.max_ids_per_incident,
                max_incidents: options.max_incidents.max(1),
            },
            retention_days: options.retention_days,
            url: shown,
            op_timeout: options.op_timeout,
            health: StoreHealth::new(false),
            opening: Arc::new((url, options)),
        }
    }

    /// The open backend, opening it if needed (one attempt at a time).
    async fn backend(&self) -> Result<&Backend, StoreError> {
        self.backend
            .get_or_try_init(|| async {
                let (url, options) = &*self.opening;
                match url {
                    StoreUrl::Sqlite(path) => {
                        Ok(Backend::Sqlite(SqliteStore::open(path.clone()).await?))
                    }
                    StoreUrl::Postgres(url) => Ok(Backend::Postgres(
                        PostgresStore::open(url, options.password.clone()).await?,
                    )),
                }
            })
            .await
    }

    /// Runs `operation` within `store.op_timeout_ms` and records how it
    /// ended in the store's health.
    async fn timed<T>(
        &self,
        op: StoreOp,
        operation: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.op_timeout, operation).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout {
                op: op.label(),
                ms: self.op_timeout.as_millis() as u64,
            }),
        };
        self.health.record(op, &result);
        result
    }

    /// The store's last known health (`pgshadow_store_up`).
    pub fn health(&self) -> &StoreHealth {
        &self.health
    }

    /// Opens the store `[store]` describes.
    pub async fn from_config(config: &StoreConfig) -> Result<Store, StoreError> {
        Self::configured(config)?.opened().await
    }

    /// Opens the store `[store]` describes, or returns it unopened when it
    /// cannot be reached now ([`Store::open_or_later`]): the proxy serves
    /// without a store rather than not at all.
    pub async fn from_config_or_later(
        config: &StoreConfig,
    ) -> Result<(Store, Option<StoreError>), StoreError> {
        Self::configured(config)?.opened_or_later().await
    }

    /// The store `[store]` describes, not open yet; fails only for want
    /// of the password `store.password_env` names.
    fn configured(config: &StoreConfig) -> Result<Store, StoreError> {
        let password = match &config.password_env {
            Some(var) => {
                Some(std::env::var(var).map_err(|_| StoreError::MissingPassword(var.clone()))?)
            }
            None => None,
        };
        Ok(Self::unopened_at(
            config.url.clone(),
            Self::options(config, password),
        ))
    }

    fn options(config: &StoreConfig, password: Option<String>) -> StoreOptions {
        StoreOptions {
            max_examples: config.max_examples,
            max_ids_per_incident: config.max_ids_per_incident,
            max_incidents: config.max_incidents,
            retention_days: config.retention_days,
            password,
            op_timeout: Duration::from_millis(config.op_timeout_ms),
        }
    }

    /// The store's address, without any password: for logs and errors.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Checks that the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, StoreOp::Read, db => queries::ping(db))
    }

    /// Incidents matching `filter`, most recently seen first.
    pub async fn list_incidents(
        &self,
        filter: &IncidentFilter,
    ) -> Result<Vec<Incident>, StoreError> {
        let (filter, now) = (filter.clone(), now_ms());
        on_backend!(self, StoreOp::Read, db => queries::list_incidents(db, &filter, now))
    }

    /// One incident with its examples (oldest first); `None` if there is
    /// no incident with this id.
    pub async fn incident(&self, id: &str) -> Result<Option<IncidentDetail>, StoreError> {
        let (id, now) = (id.to_owned(), now_ms());
        on_backend!(self, StoreOp::Read, db => queries::incident_detail(db, &id, now))
    }

    /// The differing row ids incident `id` kept, most recently seen first,
    /// at most `limit`; `None` if there is no incident with this id.
    pub async fn incident_ids(
        &self,
        id: &str,
        limit: u64,
    ) -> Result<Option<IncidentIds>, StoreError> {
        let id = id.to_owned();
        on_backend!(self, StoreOp::Read, db => ids::incident_ids(db, &id, limit))
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
        on_backend!(self, StoreOp::Status, db => async {
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
        on_backend!(self, StoreOp::Read, db => queries::coverage(db, fingerprint.as_deref(), limit))
    }

    /// Incidents currently open (mutes past their end count as open): the
    /// value of `pgshadow_incidents_open`.
    pub async fn open_incident_count(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        on_backend!(self, StoreOp::Maintain, db => queries::open_incident_count(db, now))
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
        on_backend!(self, StoreOp::Maintain, db => async {
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
        on_backend!(self, StoreOp::Retention, db => ops::expire(db, cutoff))
    }

    /// Writes one batch in one transaction; returns the ids of the
    /// incidents it opened.
    pub(crate) async fn write_batch(&self, batch: &Batch) -> Result<Vec<String>, StoreError> {
        let limits = self.limits;
        self.timed(StoreOp::Write, async {
            match self.backend().await? {
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
        })
        .await
    }
}
