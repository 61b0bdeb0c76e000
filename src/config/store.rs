//! `[store]`: where mismatches are kept.

use super::error::Rejection;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// `[store]`: the mismatch store (incidents, examples, coverage).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://FILE` (relative to the working directory; `sqlite:///abs`
    /// for an absolute path) or `postgres://user@host:port/db`, which
    /// several proxy instances can share.
    pub url: StoreUrl,
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

/// `store.url`, parsed once: which backend, and where. The config, the
/// `--store` flag of `pgshadow mismatches` and [`Store::open`] all read
/// it through [`FromStr`], so the store never meets an address it cannot
/// tell apart.
///
/// [`Store::open`]: crate::store::Store::open
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StoreUrl {
    /// `sqlite://FILE`: the file, relative to the working directory
    /// (`sqlite:///abs` gives `/abs`).
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, whole: the PostgreSQL client
    /// reads user, host, password and `sslmode` from it when connecting.
    Postgres(String),
}

/// Why a text is not a store address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreUrlError {
    /// Neither `sqlite://` nor `postgres://` (nor `postgresql://`).
    #[error("must start with sqlite:// or postgres://, got {0:?}")]
    Scheme(String),
    /// `sqlite://` and nothing after it.
    #[error("sqlite:// needs a file name")]
    NoFile,
}

impl FromStr for StoreUrl {
    type Err = StoreUrlError;

    fn from_str(url: &str) -> Result<StoreUrl, StoreUrlError> {
        match url.strip_prefix("sqlite://") {
            Some("") => Err(StoreUrlError::NoFile),
            Some(file) => Ok(StoreUrl::Sqlite(PathBuf::from(file))),
            None if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(StoreUrl::Postgres(url.to_owned()))
            }
            None => Err(StoreUrlError::Scheme(url.to_owned())),
        }
    }
}

impl TryFrom<String> for StoreUrl {
    type Error = StoreUrlError;

    fn try_from(url: String) -> Result<StoreUrl, StoreUrlError> {
        url.parse()
    }
}

impl fmt::Display for StoreUrl {
    /// The address as written, with any password replaced: this form may
    /// go into logs and messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            StoreUrl::Postgres(url) => f.write_str(&crate::privacy::redact_url(url)),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: StoreUrl::Sqlite("pgshadow-mismatches.db".into()),
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
        let at_least_1 = |ok: bool, key: &'static str| {
            if ok {
                Ok(())
            } else {
                Err((key, "must be at least 1".to_string()))
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_their_backend_once() {
        assert_eq!(
            "sqlite://m.db".parse(),
            Ok(StoreUrl::Sqlite(PathBuf::from("m.db")))
        );
        assert_eq!(
            "sqlite:///var/m.db".parse(),
            Ok(StoreUrl::Sqlite(PathBuf::from("/var/m.db")))
        );
        for url in [
            "postgres://u@h/db",
            "postgresql://u@h:5433/db?sslmode=require",
        ] {
            assert_eq!(url.parse(), Ok(StoreUrl::Postgres(url.into())));
        }
        assert_eq!("sqlite://".parse::<StoreUrl>(), Err(StoreUrlError::NoFile));
        let err = "mysql://x".parse::<StoreUrl>().unwrap_err().to_string();
        assert_eq!(
            err,
            "must start with sqlite:// or postgres://, got \"mysql://x\""
        );
    }

    #[test]
    fn a_shown_store_url_has_no_password() {
        let url: StoreUrl = "postgres://app:secret@db/x?password=s2".parse().unwrap();
        let shown = url.to_string();
        assert!(
            !shown.contains("secret") && !shown.contains("s2"),
            "{shown}"
        );
        assert_eq!(
            StoreUrl::Sqlite("/var/m.db".into()).to_string(),
            "sqlite:///var/m.db"
        );
    }
}
