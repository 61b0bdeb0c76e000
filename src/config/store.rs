//! `[store]`: where mismatches are kept.

use super::error::{check, Rejection};
use serde::Deserialize;

/// `[store]`: the mismatch store (incidents, examples, coverage).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://FILE` (relative to the working directory; `sqlite:///abs`
    /// for an absolute path) or `postgres://user@host:port/db`, which
    /// several proxy instances can share.
    pub url: String,
    /// Environment variable holding the PostgreSQL store's password, so it
    /// need not be written into `url`.
    pub password_env: Option<String>,
    /// Reproduction bundles kept per incident.
    pub max_examples: u64,
    /// Incidents kept; beyond, acknowledged ones go first, then open, then
    /// muted, least recently seen first.
    pub max_incidents: u64,
    /// Incidents, examples and coverage not seen for this many days are
    /// deleted.
    pub retention_days: u64,
    /// Longest time an outcome waits in memory before it is written.
    pub flush_interval_ms: u64,
    /// Outcomes that trigger a write at once.
    pub flush_max_outcomes: u64,
    /// Outcomes waiting for the store writer; beyond, they are dropped
    /// and counted (`pgshadow_store_dropped_total`).
    pub queue_capacity: usize,
    /// Distinct differing row ids kept per incident (with first and last
    /// seen); further ids are only counted.
    pub max_ids_per_incident: u64,
    /// `keep` (default): examples keep parameters and row values for
    /// on-call; `hash`: they are replaced by keyed hashes before writing.
    pub values: StoreValues,
    /// Longest any one store operation (a batch write, an admin query, the
    /// writer's upkeep) may take; past it the operation fails, the admin
    /// API answers 503 and the writer keeps its batch for a retry.
    pub op_timeout_ms: u64,
    /// Outcomes the writer holds in memory while the store cannot be
    /// written; beyond, further outcomes are dropped and counted
    /// (`pgshadow_store_dropped_total`) until a write succeeds.
    pub max_pending_outcomes: u64,
}

/// `store.values`: what examples keep of production values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreValues {
    /// Parameters and row values as they were.
    #[default]
    Keep,
    /// Each value replaced by its length and a keyed hash.
    Hash,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://pgshadow-mismatches.db".into(),
            password_env: None,
            max_examples: 5,
            max_incidents: 10_000,
            retention_days: 30,
            flush_interval_ms: 200,
            flush_max_outcomes: 500,
            queue_capacity: 10_000,
            max_ids_per_incident: 10_000,
            values: StoreValues::Keep,
            op_timeout_ms: 5_000,
            max_pending_outcomes: 100_000,
        }
    }
}

impl StoreConfig {
    /// `[store]` checks.
    pub(super) fn validate(&self) -> Result<(), Rejection> {
        let s = self;
        check(
            s.url.starts_with("sqlite://")
                || s.url.starts_with("postgres://")
                || s.url.starts_with("postgresql://"),
            "store.url",
            || format!("must start with sqlite:// or postgres://, got {:?}", s.url),
        )?;
        let at_least_1 = |ok: bool, key: &'static str| {
            if ok {
                Ok(())
            } else {
                Err((key, "must be at least 1".to_string()))
            }
        };
        if s.url == "sqlite://" {
            return Err(("store.url", "sqlite:// needs a file name".into()));
        }
        at_least_1(s.max_examples >= 1, "store.max_examples")?;
        if s.max_examples > 1000 {
            return Err((
                "store.max_examples",
                format!("must be at most 1000, got {}", s.max_examples),
            ));
        }
        at_least_1(s.max_incidents >= 1, "store.max_incidents")?;
        at_least_1(s.retention_days >= 1, "store.retention_days")?;
        at_least_1(s.flush_interval_ms >= 1, "store.flush_interval_ms")?;
        if s.flush_interval_ms > 60_000 {
            return Err((
                "store.flush_interval_ms",
                format!("must be at most 60000, got {}", s.flush_interval_ms),
            ));
        }
        at_least_1(s.flush_max_outcomes >= 1, "store.flush_max_outcomes")?;
        at_least_1(s.queue_capacity >= 1, "store.queue_capacity")?;
        at_least_1(s.max_ids_per_incident >= 1, "store.max_ids_per_incident")?;
        at_least_1(s.op_timeout_ms >= 1, "store.op_timeout_ms")?;
        if s.op_timeout_ms > 600_000 {
            return Err((
                "store.op_timeout_ms",
                format!("must be at most 600000, got {}", s.op_timeout_ms),
            ));
        }
        at_least_1(s.max_pending_outcomes >= 1, "store.max_pending_outcomes")?;
        Ok(())
    }
}
