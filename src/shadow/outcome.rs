//! The result of comparing one sample, as logged, counted and stored.

use super::latency::{LatencySummary, Verdict};
use crate::capture::fingerprint::Fingerprint;
use crate::capture::lexer::mask_literals;
use crate::diff::Diff;
use crate::privacy;
use crate::protocol::error_response::ErrorFields;
use crate::rewrite::OrderBasis;
use std::sync::Arc;
use std::time::Duration;

/// What a comparison found. Each is a value of the `result` label of
/// `pgshadow_comparisons_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// Both schemas returned the same rows.
    Match,
    /// They differ (see the diff).
    Mismatch,
    /// They differ, but the statement is nondeterministic: two runs of the
    /// old query in one snapshot differed too (the A/A baseline). Counted
    /// and shown, never an incident.
    Noisy,
    /// Only the old query failed.
    OldError,
    /// Only the new query failed: the new schema lacks something.
    NewError,
    /// Both failed (often: the statement depends on session state).
    BothError,
    /// A statement hit `shadow.statement_timeout_ms`.
    Timeout,
    /// The rewritten statement is invalid (a tiebreaker or table rule the
    /// statement does not support).
    RewriteError,
    /// The shadow could not run the sample at all (connection, login).
    ShadowError,
    /// Not a comparison but a latency verdict on a fingerprint: its new
    /// side became reliably slower than its old side, or recovered (see
    /// [`Outcome::slower`] and [`super::latency`]). Never counted in
    /// `pgshadow_comparisons_total`; it opens (or resolves) the
    /// fingerprint's `slower` incident.
    Slower,
}

impl OutcomeKind {
    /// Every comparison result, for pre-registering metric series
    /// ([`OutcomeKind::Slower`] is a verdict, not a comparison).
    pub const ALL: [OutcomeKind; 9] = [
        OutcomeKind::Match,
        OutcomeKind::Mismatch,
        OutcomeKind::Noisy,
        OutcomeKind::OldError,
        OutcomeKind::NewError,
        OutcomeKind::BothError,
        OutcomeKind::Timeout,
        OutcomeKind::RewriteError,
        OutcomeKind::ShadowError,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            OutcomeKind::Match => "match",
            OutcomeKind::Mismatch => "mismatch",
            OutcomeKind::Noisy => "noisy",
            OutcomeKind::OldError => "old_error",
            OutcomeKind::NewError => "new_error",
            OutcomeKind::BothError => "both_error",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::RewriteError => "rewrite_error",
            OutcomeKind::ShadowError => "shadow_error",
            OutcomeKind::Slower => "slower",
        }
    }
}

/// One comparison, with everything needed to reproduce it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The statement's fingerprint.
    pub fingerprint: Fingerprint,
    /// What was found.
    pub kind: OutcomeKind,
    /// For mismatches: whether a recheck in a fresh snapshot saw it again.
    pub confirmed: Option<bool>,
    /// The database.
    pub database: Arc<str>,
    /// The SQL the client ran.
    pub client_sql: Arc<str>,
    /// The old query as run.
    pub old_sql: Arc<str>,
    /// The new query as run.
    pub new_sql: Arc<str>,
    /// Parameters, shown as text where they are text (binary in hex).
    pub params: Vec<Option<String>>,
    /// Session settings applied with SET LOCAL.
    pub settings: Vec<(String, String)>,
    /// Snapshot xmin of the run.
    pub snapshot_xmin: Option<u64>,
    /// Time of the old and new query.
    pub old_time: Duration,
    /// Time of the new query.
    pub new_time: Duration,
    /// The difference, for mismatches.
    pub diff: Option<Diff>,
    /// The old side's error.
    pub old_error: Option<ErrorFields>,
    /// The new side's error.
    pub new_error: Option<ErrorFields>,
    /// Why the shadow could not run it (shadow errors).
    pub detail: Option<String>,
    /// How row order was compared (`total`, `tie_runs`, `unordered`, …).
    pub ordering: &'static str,
    /// What happened to the tiebreaker.
    pub tiebreak: &'static str,
    /// What made the order total, if anything.
    pub basis: OrderBasis,
    /// Per relation, the key the order ends in (appended or already
    /// there): `e (env_id, entry_id) primary_key; r no key (no_key)`.
    pub keys: Arc<str>,
    /// For noisy outcomes: how the two runs of the old query differed.
    pub noise: Option<String>,
    /// The fingerprint's old and new time distributions, now and then
    /// (at most once per [`super::latency::SUMMARY_INTERVAL`]), for the
    /// coverage.
    pub latency: Option<LatencySummary>,
    /// For [`OutcomeKind::Slower`]: the verdict and both plans.
    pub slower: Option<Box<SlowerFinding>>,
}

/// A `slower` verdict with what an on-call engineer needs to act on it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowerFinding {
    /// The verdict (slower, or recovered) and its statistics.
    pub verdict: Verdict,
    /// `EXPLAIN (FORMAT JSON)` of the old query with the sample's
    /// parameters (becoming slower only).
    pub old_plan: Option<String>,
    /// Same for the new query.
    pub new_plan: Option<String>,
}

impl Outcome {
    /// Writes the outcome as one structured log line: WARN for mismatches,
    /// INFO for errors, DEBUG for matches. Without `log.values` the line
    /// carries no parameter or row values ([`crate::privacy`]).
    pub fn log(&self) {
        let values = privacy::log_values();
        let code = |e: &Option<ErrorFields>| e.as_ref().map(|e| e.code.clone()).unwrap_or_default();
        let scrubbed = |text: &str| {
            if values {
                text.to_string()
            } else {
                privacy::scrub(text, &self.params)
            }
        };
        let message = |e: &Option<ErrorFields>| {
            scrubbed(e.as_ref().map(|e| e.message.as_str()).unwrap_or_default())
        };
        let sql = |text: &str| {
            if values {
                text.to_string()
            } else {
                mask_literals(text)
            }
        };
        // The incident the mismatch store files this outcome under.
        let incident = || {
            crate::store::Signature::of(self)
                .map(|s| s.incident_id())
                .unwrap_or_default()
        };
        match self.kind {
            OutcomeKind::Match => tracing::debug!(
                fingerprint = %self.fingerprint,
                ordering = self.ordering,
                keys = %self.keys,
                old_ms = self.old_time.as_secs_f64() * 1e3,
                new_ms = self.new_time.as_secs_f64() * 1e3,
                "shadow match"
            ),
            OutcomeKind::Mismatch => {
                let (kind, columns, summary) = self
                    .diff
                    .as_ref()
                    .map(|d| {
                        let summary = if values {
                            d.summary.clone()
                        } else {
                            privacy::value_free_summary(d)
                        };
                        (d.kind.label(), d.differing_columns.join(","), summary)
                    })
                    .unwrap_or_default();
                tracing::warn!(
                    fingerprint = %self.fingerprint,
                    incident = %incident(),
                    diff = kind,
                    columns = %columns,
                    confirmed = self.confirmed.unwrap_or(false),
                    snapshot_xmin = self.snapshot_xmin.unwrap_or(0),
                    ordering = self.ordering,
                    tiebreak = self.tiebreak,
                    keys = %self.keys,
                    summary = %summary,
                    params = %privacy::params_for_log(&self.params, values),
                    old_sql = %sql(&self.old_sql),
                    new_sql = %sql(&self.new_sql),
                    "shadow mismatch"
                )
            }
            OutcomeKind::Noisy => tracing::info!(
                fingerprint = %self.fingerprint,
                ordering = self.ordering,
                keys = %self.keys,
                old_vs_old = self.noise.as_deref().unwrap_or(""),
                old_vs_new = self.diff.as_ref().map(|d| d.summary.as_str()).unwrap_or(""),
                "shadow comparison noisy: the old query differs from itself within one snapshot"
            ),
            OutcomeKind::Slower => {
                let (slower, initial, ratio, pairs) = self
                    .slower
                    .as_ref()
                    .map(|f| {
                        let v = &f.verdict;
                        (v.slower, v.initial, v.median_ratio, v.pairs)
                    })
                    .unwrap_or_default();
                let old_ms = self.old_time.as_secs_f64() * 1e3;
                let new_ms = self.new_time.as_secs_f64() * 1e3;
                if slower {
                    tracing::warn!(
                        fingerprint = %self.fingerprint,
                        incident = %incident(),
                        ratio,
                        samples = pairs,
                        old_ms,
                        new_ms,
                        client_sql = %sql(&self.client_sql),
                        "new schema slower"
                    )
                } else if initial {
                    tracing::debug!(
                        fingerprint = %self.fingerprint,
                        incident = %incident(),
                        ratio,
                        samples = pairs,
                        "new schema not slower (first verdict since start; resolves a slower \
                         incident an earlier run left open, if any)"
                    )
                } else {
                    tracing::info!(
                        fingerprint = %self.fingerprint,
                        incident = %incident(),
                        ratio,
                        samples = pairs,
                        old_ms,
                        new_ms,
                        "new schema no longer slower; incident resolved"
                    )
                }
            }
            _ => tracing::info!(
                fingerprint = %self.fingerprint,
                incident = %incident(),
                result = self.kind.label(),
                old_sqlstate = %code(&self.old_error),
                old_error = %message(&self.old_error),
                new_sqlstate = %code(&self.new_error),
                new_error = %message(&self.new_error),
                detail = %scrubbed(self.detail.as_deref().unwrap_or("")),
                new_sql = %sql(&self.new_sql),
                "shadow comparison failed"
            ),
        }
    }
}

/// Renders bound parameters for reports: text-format values as text,
/// binary ones as `\x…` hex.
pub fn display_params(formats: &[i16], params: &[Option<bytes::Bytes>]) -> Vec<Option<String>> {
    params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let binary = match formats {
                [] => false,
                [one] => *one == 1,
                many => many.get(i).copied() == Some(1),
            };
            p.as_ref().map(|v| {
                if binary {
                    let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
                    format!("\\x{hex}")
                } else {
                    String::from_utf8_lossy(v).into_owned()
                }
            })
        })
        .collect()
}
