//! `[shadow]`: sampling and shadow execution of reads.

use super::error::{check, Rejection};
use crate::capture::fingerprint::Fingerprint;
use crate::tls::TlsMode;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[shadow]`: sampling and shadow execution of reads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowConfig {
    /// Master switch for shadow comparison.
    pub enabled: bool,
    /// Fraction of eligible reads compared, 0 to 1.
    pub sample_rate: f64,
    /// Host of the shadow connections; defaults to `upstream.host`.
    pub host: Option<String>,
    /// Port of the shadow connections; defaults to `upstream.port`.
    pub port: Option<u16>,
    /// Role the shadow connections log in as (ideally read-only).
    pub user: String,
    /// Environment variable holding that role's password.
    pub password_env: Option<String>,
    /// search_path of the schema the application uses today.
    pub old_search_path: String,
    /// search_path of the migrated schema.
    pub new_search_path: String,
    /// Shadow comparisons running at once (and shadow connections per
    /// database).
    pub max_in_flight: usize,
    /// Samples waiting for a worker; beyond this they are dropped.
    pub queue_capacity: usize,
    /// Samples a worker runs together on one connection at most.
    pub max_batch: usize,
    /// How long the dispatcher lets samples gather before handing a batch
    /// that is not full to a worker (0: at once).
    pub batch_window_ms: u64,
    /// `statement_timeout` of each shadow statement.
    pub statement_timeout_ms: u64,
    /// Samples started per second at most, over all sessions (0 = no cap).
    pub max_samples_per_second: u64,
    /// Each fingerprint's first executions are sampled whatever the rate,
    /// so rare queries are covered too.
    pub first_executions: u32,
    /// Per-fingerprint sample rates (fingerprint in hex → rate 0..1).
    #[serde(deserialize_with = "fingerprint_rates")]
    pub fingerprint_sample_rates: BTreeMap<Fingerprint, f64>,
    /// Fingerprints (hex, as logged) never sampled: their executions are
    /// skipped as `muted`. Reloaded on SIGHUP.
    #[serde(deserialize_with = "fingerprints")]
    pub muted_fingerprints: Vec<Fingerprint>,
    /// More functions that must never run on the shadow (lowercase; a
    /// trailing `*` matches a prefix), added to the built-in deny list.
    pub deny_functions: Vec<String>,
    /// Relations renamed by the migration: old name → new name (`table` or
    /// `schema.table`), applied to the new query.
    pub table_map: BTreeMap<String, String>,
    /// Largest Query/Parse/Bind message copied for capture; larger
    /// statements are skipped as `too_large` (they still run normally).
    pub max_capture_bytes: usize,
    /// Bytes of named prepared statements one session's capture remembers
    /// (text, name, parameter types); statements prepared beyond are not
    /// tracked and their executions are skipped as `too_large`. The relay
    /// forwards them all the same.
    pub max_session_statement_bytes: usize,
    /// Re-run a mismatch once in a fresh snapshot before reporting it, and
    /// say whether it was confirmed.
    pub recheck_mismatches: bool,
    /// Distinct SQL texts whose parse and rewrite are cached.
    pub plan_cache_size: usize,
    /// `shared` (default): old and new run in one snapshot. `separate`:
    /// in two transactions, so concurrent writes cause false alarms; only
    /// for showing why the shared snapshot matters.
    pub snapshot: SnapshotMode,
    /// Fraction of comparisons that also run the old query a second time in
    /// the same snapshot (the A/A baseline): a statement whose two old runs
    /// differ is nondeterministic and labelled noisy instead of raising
    /// incidents. Every recheck of a mismatch runs the A/A pair as well.
    pub baseline_rate: f64,
    /// TLS of the shadow connections; unset: `upstream.tls`.
    pub tls: Option<TlsMode>,
    /// CAs for the shadow connections; unset: `upstream.tls_root_cert`.
    pub tls_root_cert: Option<PathBuf>,
    /// `lock_timeout` of every shadow statement: a shadow statement that
    /// would wait this long for a lock (DDL holds or awaits it) gives up,
    /// skipped as `lock_timeout`, so the shadow never queues behind DDL.
    pub lock_timeout_ms: u64,
    /// Wall-clock budget of a batch's shadow transaction(s): no transaction
    /// is started once it is spent (samples left are skipped as
    /// `transaction_budget`), one still open past it is cancelled, and
    /// each statement's `statement_timeout` is cut to what is left of it.
    pub max_transaction_ms: u64,
    /// While shadow transactions are open, how often one connection per
    /// database looks for backends they block (`pg_locks`,
    /// `pg_blocking_pids`); a blocking shadow transaction is cancelled
    /// (`gave_way`). 0 switches the check off.
    pub give_way_check_ms: u64,
    /// User-defined functions (lower-case names) replayed although the
    /// catalog says they are VOLATILE; other statements calling a volatile
    /// function outside pg_catalog are skipped as `volatile_function`.
    pub allow_functions: Vec<String>,
    /// Result rows kept per side at most in bytes; further rows are
    /// compared through digests only (like rows beyond `compare.max_rows`).
    pub max_result_bytes: usize,
    /// Result rows kept at most in bytes over all sides of a batch; once
    /// spent, later sides of the batch are compared through digests only.
    pub max_batch_result_bytes: usize,
    /// Bytes (SQL and parameters) of the samples waiting in the queue at
    /// most; beyond, samples are skipped as `queue_full`.
    pub max_queue_bytes: usize,
    /// Idle shadow connections are closed after this long.
    pub pool_idle_timeout_ms: u64,
    /// Shadow connections open at most over all databases (the give-way
    /// watchers' included).
    pub max_connections: usize,
}

/// How the old and new query share a snapshot.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotMode {
    /// One REPEATABLE READ READ ONLY transaction for both.
    Shared,
    /// Two transactions (demonstrations only).
    Separate,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            sample_rate: 0.01,
            host: None,
            port: None,
            user: "pgshadow".into(),
            password_env: None,
            old_search_path: "public".into(),
            new_search_path: "v2".into(),
            max_in_flight: 2,
            queue_capacity: 1024,
            max_batch: 32,
            batch_window_ms: 500,
            statement_timeout_ms: 5_000,
            max_samples_per_second: 0,
            first_executions: 3,
            fingerprint_sample_rates: BTreeMap::new(),
            muted_fingerprints: Vec::new(),
            deny_functions: Vec::new(),
            table_map: BTreeMap::new(),
            max_capture_bytes: 1024 * 1024,
            max_session_statement_bytes: crate::capture::tracker::DEFAULT_STATEMENT_BUDGET,
            recheck_mismatches: true,
            plan_cache_size: 10_000,
            snapshot: SnapshotMode::Shared,
            baseline_rate: 0.01,
            tls: None,
            tls_root_cert: None,
            lock_timeout_ms: 50,
            max_transaction_ms: 500,
            give_way_check_ms: 20,
            allow_functions: Vec::new(),
            max_result_bytes: 16 * 1024 * 1024,
            max_batch_result_bytes: 64 * 1024 * 1024,
            max_queue_bytes: 16 * 1024 * 1024,
            pool_idle_timeout_ms: 60_000,
            max_connections: 16,
        }
    }
}

impl ShadowConfig {
    /// `[shadow]` checks; `password_env` only matters when the shadow runs.
    pub(super) fn validate(&self) -> Result<(), Rejection> {
        let s = self;
        check(
            (0.0..=1.0).contains(&s.sample_rate),
            "shadow.sample_rate",
            || format!("must be between 0 and 1, got {}", s.sample_rate),
        )?;
        check(!s.user.is_empty(), "shadow.user", || {
            "must not be empty".into()
        })?;
        check(s.max_in_flight > 0, "shadow.max_in_flight", || {
            "must be at least 1".into()
        })?;
        check(s.queue_capacity > 0, "shadow.queue_capacity", || {
            "must be at least 1".into()
        })?;
        check(s.max_batch > 0, "shadow.max_batch", || {
            "must be at least 1".into()
        })?;
        check(
            s.batch_window_ms <= 10_000,
            "shadow.batch_window_ms",
            || format!("must be at most 10000 (10 s), got {}", s.batch_window_ms),
        )?;
        check(
            s.statement_timeout_ms > 0,
            "shadow.statement_timeout_ms",
            || "must be greater than 0".into(),
        )?;
        check(s.lock_timeout_ms > 0, "shadow.lock_timeout_ms", || {
            "must be greater than 0 (0 would let the shadow wait for locks forever)".into()
        })?;
        check(
            s.max_transaction_ms > 0,
            "shadow.max_transaction_ms",
            || "must be greater than 0".into(),
        )?;
        check(
            s.give_way_check_ms <= 10_000,
            "shadow.give_way_check_ms",
            || format!("must be at most 10000 (10 s), got {}", s.give_way_check_ms),
        )?;
        check(
            s.max_result_bytes >= 1024,
            "shadow.max_result_bytes",
            || format!("must be at least 1024, got {}", s.max_result_bytes),
        )?;
        check(
            s.max_batch_result_bytes >= s.max_result_bytes,
            "shadow.max_batch_result_bytes",
            || {
                format!(
                    "must be at least shadow.max_result_bytes ({}), got {}",
                    s.max_result_bytes, s.max_batch_result_bytes
                )
            },
        )?;
        check(
            s.max_queue_bytes >= s.max_capture_bytes,
            "shadow.max_queue_bytes",
            || {
                format!(
                    "must be at least shadow.max_capture_bytes ({}), got {}",
                    s.max_capture_bytes, s.max_queue_bytes
                )
            },
        )?;
        check(s.max_connections > 0, "shadow.max_connections", || {
            "must be at least 1".into()
        })?;
        // The give-way watcher needs a connection of its own while the
        // workers hold theirs, or it waits exactly when it is needed.
        check(
            s.give_way_check_ms == 0 || s.max_connections > s.max_in_flight,
            "shadow.max_connections",
            || {
                format!(
                    "must be greater than shadow.max_in_flight ({}) so the give-way watcher \
                     has a connection while every worker holds one, got {} \
                     (or set shadow.give_way_check_ms = 0)",
                    s.max_in_flight, s.max_connections
                )
            },
        )?;
        check(
            s.pool_idle_timeout_ms > 0,
            "shadow.pool_idle_timeout_ms",
            || "must be greater than 0".into(),
        )?;
        check(
            !s.old_search_path.trim().is_empty(),
            "shadow.old_search_path",
            || "must not be empty".into(),
        )?;
        check(
            !s.new_search_path.trim().is_empty(),
            "shadow.new_search_path",
            || "must not be empty".into(),
        )?;
        check(
            s.max_capture_bytes >= 1024,
            "shadow.max_capture_bytes",
            || format!("must be at least 1024, got {}", s.max_capture_bytes),
        )?;
        check(
            s.max_session_statement_bytes >= 1024,
            "shadow.max_session_statement_bytes",
            || {
                format!(
                    "must be at least 1024, got {}",
                    s.max_session_statement_bytes
                )
            },
        )?;
        check(s.plan_cache_size > 0, "shadow.plan_cache_size", || {
            "must be at least 1".into()
        })?;
        check(
            (0.0..=1.0).contains(&s.baseline_rate),
            "shadow.baseline_rate",
            || format!("must be between 0 and 1, got {}", s.baseline_rate),
        )?;
        for (fingerprint, rate) in &s.fingerprint_sample_rates {
            check(
                (0.0..=1.0).contains(rate),
                "shadow.fingerprint_sample_rates",
                || format!("rate for {fingerprint} must be between 0 and 1, got {rate}"),
            )?;
        }
        if s.enabled {
            if let Some(var) = &s.password_env {
                check(
                    std::env::var_os(var).is_some(),
                    "shadow.password_env",
                    || format!("environment variable {var} is not set"),
                )?;
            }
        }
        Ok(())
    }
}

/// A fingerprint as logs and the admin page show it: 16 hex digits.
fn parse_fingerprint(text: &str) -> Result<Fingerprint, String> {
    match text.parse() {
        Ok(fingerprint) if text.len() == 16 => Ok(fingerprint),
        _ => Err(format!(
            "{text:?} is not a fingerprint (16 hex digits, as shown in logs)"
        )),
    }
}

/// `shadow.muted_fingerprints`, parsed once at load.
fn fingerprints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Fingerprint>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| parse_fingerprint(text).map_err(D::Error::custom))
        .collect()
}

/// `shadow.fingerprint_sample_rates`, keys parsed once at load.
fn fingerprint_rates<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<Fingerprint, f64>, D::Error> {
    BTreeMap::<String, f64>::deserialize(d)?
        .into_iter()
        .map(|(text, rate)| Ok((parse_fingerprint(&text).map_err(D::Error::custom)?, rate)))
        .collect()
}
