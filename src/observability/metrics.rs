//! Every metric pgshadow emits: names, label sets and help text in one
//! place.
//!
//! Labels are always drawn from small fixed sets (an enum's labels), never
//! from SQL text, user names or addresses, so the series count is bounded.

use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Client connections currently open.
pub const CLIENT_CONNECTIONS: &str = "pgshadow_client_connections";
/// Client connections accepted since start.
pub const CLIENT_CONNECTIONS_TOTAL: &str = "pgshadow_client_connections_total";
/// Sessions ended, by `reason` ([`crate::proxy::SessionEnd::label`]).
pub const SESSIONS_ENDED_TOTAL: &str = "pgshadow_sessions_ended_total";
/// Cancel requests received, by `result` (`forwarded` to a local
/// session's backend, `forwarded_unknown_key` to the upstream for a key no
/// local session owns, `rate_limited`, `failed`).
pub const CANCEL_REQUESTS_TOTAL: &str = "pgshadow_cancel_requests_total";
/// Failed attempts to reach the upstream server.
pub const UPSTREAM_CONNECT_ERRORS_TOTAL: &str = "pgshadow_upstream_connect_errors_total";

/// Statements executed by clients (simple Queries and Binds).
pub const QUERIES_TOTAL: &str = "pgshadow_queries_total";
/// Comparisons, by `result` ([`crate::outcome::OutcomeKind::label`]).
pub const COMPARISONS_TOTAL: &str = "pgshadow_comparisons_total";
/// Statements not compared, by `reason` ([`crate::capture::skip::SkipReason::label`]).
pub const SKIPPED_TOTAL: &str = "pgshadow_skipped_total";
/// Time of the old and new query of a comparison, by `side` (`old`, `new`).
pub const SHADOW_DURATION_SECONDS: &str = "pgshadow_shadow_duration_seconds";
/// Samples waiting for a shadow worker.
pub const QUEUE_DEPTH: &str = "pgshadow_queue_depth";
/// Samples per batch handed to a shadow worker.
pub const SHADOW_BATCH_SAMPLES: &str = "pgshadow_shadow_batch_samples";
/// Mismatches rechecked in a fresh snapshot, by `confirmed` (`true`, `false`).
pub const RECHECKS_TOTAL: &str = "pgshadow_rechecks_total";

/// Config reloads (SIGHUP), by `result`: `ok` (the file was valid; what
/// can change at run time was applied) or `error` (the file was unreadable
/// or invalid; the running config stays).
pub const CONFIG_RELOADS_TOTAL: &str = "pgshadow_config_reloads_total";

/// Outcomes that never reached the mismatch store: the store writer's
/// channel was full, or the store stayed unwritable too long.
pub const STORE_DROPPED_TOTAL: &str = "pgshadow_store_dropped_total";
/// Batches the store writer failed to write (kept and retried).
pub const STORE_WRITE_ERRORS_TOTAL: &str = "pgshadow_store_write_errors_total";
/// 1 while the mismatch store answers, 0 since an operation on it failed
/// or timed out (until one succeeds). Readiness does not depend on it.
pub const STORE_UP: &str = "pgshadow_store_up";
/// Store operations that failed or timed out, by `op`
/// ([`crate::store::StoreOp::label`]).
pub const STORE_ERRORS_TOTAL: &str = "pgshadow_store_errors_total";
/// Incidents open in the store (mutes past their end count as open). With
/// several instances sharing a PostgreSQL store every instance reports the
/// same store-wide number: aggregate with `max`, not `sum`.
pub const INCIDENTS_OPEN: &str = "pgshadow_incidents_open";
/// Statements whose new side this instance currently judges reliably
/// slower than their old side (`slower` incidents not yet recovered).
pub const SLOWER_STATEMENTS: &str = "pgshadow_slower_statements";
/// Incidents this instance created (signatures stored for the first time).
pub const INCIDENTS_OPENED_TOTAL: &str = "pgshadow_incidents_opened_total";

/// Webhook alerts, by `result`: `ok` (the receiver answered 2xx), `error`
/// (no 2xx after the retries) or `dropped` (the alert queue was full, or
/// the webhook fell behind the incident events).
pub const WEBHOOK_DELIVERIES_TOTAL: &str = "pgshadow_webhook_deliveries_total";

/// Comparisons, by how their rows were ordered (`ordering`:
/// [`crate::rewrite::OrderBasis::label`]: `catalog_key`, `config`,
/// `partial`, `unordered`).
pub const COMPARISON_ORDERING_TOTAL: &str = "pgshadow_comparison_ordering_total";
/// A/A baselines (the old query run twice in one snapshot), by `result`:
/// `same`, or `differ` (the statement is nondeterministic: noisy).
pub const BASELINES_TOTAL: &str = "pgshadow_baselines_total";
/// Catalog lookups of relation keys, by `result` (`ok`, `error`).
pub const KEY_LOOKUPS_TOTAL: &str = "pgshadow_key_lookups_total";
/// Relations whose keys were looked up in the catalog.
pub const KEY_LOOKUP_RELATIONS_TOTAL: &str = "pgshadow_key_lookup_relations_total";
/// Time of one catalog lookup of relation keys (one round trip for all
/// the relations of a batch).
pub const KEY_LOOKUP_SECONDS: &str = "pgshadow_key_lookup_seconds";
/// Queries the give-way watchers ran (`pg_locks`/`pg_blocking_pids`, only
/// while shadow transactions are open).
pub const GIVE_WAY_CHECKS_TOTAL: &str = "pgshadow_give_way_checks_total";
/// Shadow result sides whose rows stopped being kept in memory because of
/// a byte budget, by `budget` (`side`: `shadow.max_result_bytes`, `batch`:
/// `shadow.max_batch_result_bytes`); the rest was compared by digest.
pub const RESULT_BYTES_EXCEEDED_TOTAL: &str = "pgshadow_result_bytes_exceeded_total";

/// Bucket bounds of [`SHADOW_DURATION_SECONDS`], in seconds.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Bucket bounds of [`SHADOW_BATCH_SAMPLES`].
pub const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// Registers help text for every metric with the installed recorder.
/// Harmless when no recorder is installed.
pub fn describe() {
    describe_gauge!(
        CLIENT_CONNECTIONS,
        Unit::Count,
        "Client connections currently open."
    );
    describe_counter!(
        CLIENT_CONNECTIONS_TOTAL,
        Unit::Count,
        "Client connections accepted since start."
    );
    describe_counter!(
        SESSIONS_ENDED_TOTAL,
        Unit::Count,
        "Client sessions ended, by reason."
    );
    describe_counter!(
        CANCEL_REQUESTS_TOTAL,
        Unit::Count,
        "Cancel requests received, by result (forwarded, forwarded_unknown_key, rate_limited, failed)."
    );
    describe_counter!(
        UPSTREAM_CONNECT_ERRORS_TOTAL,
        Unit::Count,
        "Failed attempts to connect to the upstream server."
    );
    describe_counter!(
        QUERIES_TOTAL,
        Unit::Count,
        "Statements executed by clients (simple Queries and extended-protocol Binds)."
    );
    describe_counter!(
        COMPARISONS_TOTAL,
        Unit::Count,
        "Shadow comparisons, by result (match, mismatch, noisy, old_error, new_error, both_error, timeout, rewrite_error, shadow_error)."
    );
    describe_counter!(
        GIVE_WAY_CHECKS_TOTAL,
        Unit::Count,
        "Checks for backends blocked by open shadow transactions (shadow.give_way_check_ms)."
    );
    describe_counter!(
        RESULT_BYTES_EXCEEDED_TOTAL,
        Unit::Count,
        "Shadow result sides compared by digest beyond a byte budget, by budget (side, batch)."
    );
    describe_counter!(
        SKIPPED_TOTAL,
        Unit::Count,
        "Statements not compared, by reason."
    );
    describe_histogram!(
        SHADOW_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of the old and new query of a shadow comparison, by side."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        Unit::Count,
        "Samples waiting for a shadow worker."
    );
    describe_histogram!(
        SHADOW_BATCH_SAMPLES,
        Unit::Count,
        "Samples per batch handed to a shadow worker (shadow.max_batch, shadow.batch_window_ms)."
    );
    describe_counter!(
        CONFIG_RELOADS_TOTAL,
        Unit::Count,
        "Config file reloads on SIGHUP, by result (ok: applied; error: invalid file, running config kept)."
    );
    describe_counter!(
        STORE_DROPPED_TOTAL,
        Unit::Count,
        "Outcomes that never reached the mismatch store (writer channel full, or store unwritable too long)."
    );
    describe_counter!(
        STORE_WRITE_ERRORS_TOTAL,
        Unit::Count,
        "Mismatch store batch writes that failed (the batch is kept and retried)."
    );
    describe_gauge!(
        STORE_UP,
        Unit::Count,
        "1 while the mismatch store answers, 0 since an operation on it failed or timed out."
    );
    describe_counter!(
        STORE_ERRORS_TOTAL,
        Unit::Count,
        "Mismatch store operations that failed or timed out, by op (open, write, read, status, maintain, retention)."
    );
    describe_gauge!(
        INCIDENTS_OPEN,
        Unit::Count,
        "Incidents open in the mismatch store (store-wide; aggregate instances with max)."
    );
    describe_gauge!(
        SLOWER_STATEMENTS,
        Unit::Count,
        "Statements whose new side is currently judged reliably slower than their old side."
    );
    describe_counter!(
        INCIDENTS_OPENED_TOTAL,
        Unit::Count,
        "Incidents this instance created in the mismatch store."
    );
    describe_counter!(
        WEBHOOK_DELIVERIES_TOTAL,
        Unit::Count,
        "Webhook alerts about incidents, by result (ok: receiver answered 2xx; error: failed after retries; dropped: alert queue full)."
    );
    describe_counter!(
        COMPARISON_ORDERING_TOTAL,
        Unit::Count,
        "Shadow comparisons, by how their rows were ordered (catalog_key: total by keys from the catalog; config: total with a configured key or the default column; partial: ties compared tolerantly; unordered: compared as multisets)."
    );
    describe_counter!(
        BASELINES_TOTAL,
        Unit::Count,
        "A/A baselines (the old query twice in one snapshot), by result (same; differ: the statement is nondeterministic, its differences count as noisy)."
    );
    describe_counter!(
        KEY_LOOKUPS_TOTAL,
        Unit::Count,
        "Catalog lookups of relation keys, by result (ok, error)."
    );
    describe_counter!(
        KEY_LOOKUP_RELATIONS_TOTAL,
        Unit::Count,
        "Relations whose keys were looked up in the catalog."
    );
    describe_histogram!(
        KEY_LOOKUP_SECONDS,
        Unit::Seconds,
        "Duration of one catalog lookup of relation keys (all relations of a batch in one round trip)."
    );
    describe_counter!(
        RECHECKS_TOTAL,
        Unit::Count,
        "Mismatches rechecked in a fresh snapshot, by whether the recheck confirmed them."
    );
}
