//! The store's tables, created and migrated by the store itself.
//!
//! `schema_version` holds one row, the number of the last migration
//! applied. Migrations run in one transaction, under a lock (SQLite's
//! write lock, a PostgreSQL advisory lock), so several proxy instances
//! starting at once against one store migrate it exactly once. A store
//! written by a newer pgshadow is refused rather than misread.

use super::db::{Db, Dialect};
use super::error::StoreError;

/// The migration this build ends at.
pub(crate) const CURRENT_VERSION: i64 = 3;

/// Key of the PostgreSQL advisory lock held while migrating ("pgshadow"
/// in ASCII).
const MIGRATION_LOCK: i64 = 0x7067_7368_6164_6f77;

/// Migration 1: everything.
///
/// `{id}` is the auto-numbered primary key, spelled per dialect. Times are
/// epoch milliseconds; `columns`, `params`, `settings`, `diff` and the
/// errors are JSON text; `confirmed` is 0/1/NULL.
const MIGRATION_1: &str = "
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    signature TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL,
    diff_kind TEXT,
    columns TEXT NOT NULL,
    old_sqlstate TEXT,
    new_sqlstate TEXT,
    client_sql TEXT NOT NULL,
    database TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    count BIGINT NOT NULL,
    confirmed_count BIGINT NOT NULL DEFAULT 0,
    example_count BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'open',
    status_by TEXT,
    status_at BIGINT,
    muted_until BIGINT,
    mute_reason TEXT
);
CREATE INDEX incidents_last_seen ON incidents (last_seen);
CREATE INDEX incidents_fingerprint ON incidents (fingerprint);
CREATE TABLE examples (
    id {id},
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    seen_at BIGINT NOT NULL,
    database TEXT NOT NULL,
    old_sql TEXT NOT NULL,
    new_sql TEXT NOT NULL,
    params TEXT NOT NULL,
    settings TEXT NOT NULL,
    snapshot_xmin BIGINT,
    confirmed BIGINT,
    ordering TEXT NOT NULL,
    tiebreak TEXT NOT NULL,
    old_ms DOUBLE PRECISION NOT NULL,
    new_ms DOUBLE PRECISION NOT NULL,
    diff_summary TEXT,
    diff TEXT,
    old_error TEXT,
    new_error TEXT,
    detail TEXT
);
CREATE INDEX examples_incident ON examples (incident_id);
CREATE INDEX examples_seen_at ON examples (seen_at);
CREATE TABLE coverage (
    fingerprint TEXT PRIMARY KEY,
    client_sql TEXT,
    compared BIGINT NOT NULL DEFAULT 0,
    matched BIGINT NOT NULL DEFAULT 0,
    mismatched BIGINT NOT NULL DEFAULT 0,
    errored BIGINT NOT NULL DEFAULT 0,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE INDEX coverage_last_seen ON coverage (last_seen);
CREATE TABLE coverage_skips (
    fingerprint TEXT NOT NULL,
    reason TEXT NOT NULL,
    count BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (fingerprint, reason)
);
";

/// Migration 2: every differing row id per incident (`incident_ids`, with
/// the incident's counts of ids kept and not kept), noisy comparisons per
/// fingerprint, and the keys an example's order ended in.
const MIGRATION_2: &str = "
CREATE TABLE incident_ids (
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    key_columns TEXT NOT NULL,
    key_values TEXT NOT NULL,
    change TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    seen BIGINT NOT NULL,
    PRIMARY KEY (incident_id, key_columns, key_values)
);
CREATE INDEX incident_ids_last_seen ON incident_ids (incident_id, last_seen);
ALTER TABLE incidents ADD COLUMN ids_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN ids_omitted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE coverage ADD COLUMN noisy BIGINT NOT NULL DEFAULT 0;
ALTER TABLE examples ADD COLUMN keys TEXT;
";

/// Migration 3: latency. `slower` incidents' examples keep the median
/// paired ratio and both plans; coverage keeps old/new p50/p95 and the
/// samples they rest on.
const MIGRATION_3: &str = "
ALTER TABLE examples ADD COLUMN ratio DOUBLE PRECISION;
ALTER TABLE examples ADD COLUMN old_plan TEXT;
ALTER TABLE examples ADD COLUMN new_plan TEXT;
ALTER TABLE coverage ADD COLUMN latency_samples BIGINT;
ALTER TABLE coverage ADD COLUMN old_p50_ms DOUBLE PRECISION;
ALTER TABLE coverage ADD COLUMN old_p95_ms DOUBLE PRECISION;
ALTER TABLE coverage ADD COLUMN new_p50_ms DOUBLE PRECISION;
ALTER TABLE coverage ADD COLUMN new_p95_ms DOUBLE PRECISION;
";

/// Brings the store's tables up to [`CURRENT_VERSION`].
pub(crate) async fn migrate(db: &mut impl Db) -> Result<(), StoreError> {
    db.begin().await?;
    let result = migrate_locked(db).await;
    match result {
        Ok(()) => db.commit().await,
        Err(e) => {
            db.rollback().await;
            Err(e)
        }
    }
}

async fn migrate_locked(db: &mut impl Db) -> Result<(), StoreError> {
    if db.dialect() == Dialect::Postgres {
        db.execute("SELECT pg_advisory_xact_lock($1)", &[MIGRATION_LOCK.into()])
            .await?;
    }
    db.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await?;
    let rows = db
        .query("SELECT max(version) FROM schema_version", &[])
        .await?;
    let version = match rows.first() {
        Some(row) => row.opt_int(0)?.unwrap_or(0),
        None => 0,
    };
    if version > CURRENT_VERSION {
        return Err(StoreError::TooNew {
            found: version,
            supported: CURRENT_VERSION,
        });
    }
    if version < 1 {
        let id = match db.dialect() {
            Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Dialect::Postgres => "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        };
        db.batch(&MIGRATION_1.replace("{id}", id)).await?;
    }
    if version < 2 {
        db.batch(MIGRATION_2).await?;
    }
    if version < 3 {
        db.batch(MIGRATION_3).await?;
    }
    if version < CURRENT_VERSION {
        db.execute("DELETE FROM schema_version", &[]).await?;
        db.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[CURRENT_VERSION.into()],
        )
        .await?;
    }
    Ok(())
}
