//! The result of comparing one sample, as logged, counted and stored.
//!
//! The shadow produces [`Outcome`]s, the store groups them into incidents
//! by [`signature::Signature`], metrics count them by [`OutcomeKind`]. This
//! module depends on neither the shadow nor the store, so both can depend
//! on it.
//!
//! - this file: what an outcome is;
//! - [`signature`]: what makes two outcomes the same problem (the incident
//!   key and id);
//! - `log.rs`: the outcome's log line.

mod log;
pub mod signature;

use crate::capture::fingerprint::Fingerprint;
use crate::capture::lexer::mask_literals;
use crate::diff::{Diff, RowOrder};
use crate::privacy;
use crate::protocol::error_response::ErrorFields;
use crate::rewrite::{OrderBasis, TiebreakKind};
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
    /// [`Outcome::slower`] and [`crate::shadow::latency`]). Never counted in
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
    /// How row order was compared.
    pub ordering: RowOrder,
    /// What happened to the tiebreaker.
    pub tiebreak: TiebreakKind,
    /// What made the order total, if anything.
    pub basis: OrderBasis,
    /// Per relation, the key the order ends in (appended or already
    /// there): `e (env_id, entry_id) primary_key; r no key (no_key)`.
    pub keys: Arc<str>,
    /// For noisy outcomes: how the two runs of the old query differed.
    pub noise: Option<String>,
    /// The fingerprint's old and new time distributions, now and then
    /// (at most once per [`crate::shadow::latency::SUMMARY_INTERVAL`]), for the
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

/// A fingerprint's distributions, as the coverage shows them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Samples recorded (both sides timed).
    pub samples: u64,
    /// Old side, median, in milliseconds.
    pub old_p50_ms: f64,
    /// Old side, 95th percentile.
    pub old_p95_ms: f64,
    /// New side, median.
    pub new_p50_ms: f64,
    /// New side, 95th percentile.
    pub new_p95_ms: f64,
}

/// A change of verdict: the new side became reliably slower, or recovered.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `true`: became slower; `false`: recovered.
    pub slower: bool,
    /// The first verdict on the fingerprint since this proxy began to track
    /// it, and it is "not slower": no change here, but it resolves a
    /// `slower` incident that an earlier run of the proxy left open (an
    /// index added while it was down).
    pub initial: bool,
    /// Median of new/old over the pairs the verdict rests on.
    pub median_ratio: f64,
    /// Pairs the verdict rests on.
    pub pairs: usize,
    /// Of those, clearly slower ones.
    pub clearly_slower: usize,
    /// Median old time of those pairs, in milliseconds.
    pub old_median_ms: f64,
    /// Median new time of those pairs, in milliseconds.
    pub new_median_ms: f64,
    /// The distributions so far.
    pub summary: LatencySummary,
}

impl Outcome {
    /// The outcome as `store.values = "hash"` keeps it: parameters, row
    /// values and row keys hashed, literals masked in every SQL text, error
    /// messages scrubbed ([`crate::privacy`]). Column names, kinds, counts
    /// and SQLSTATEs stay.
    pub fn hashed(&self) -> Outcome {
        let mut o = self.clone();
        let params = std::mem::take(&mut o.params);
        o.params = params
            .iter()
            .map(|p| p.as_deref().map(privacy::masked))
            .collect();
        o.client_sql = mask_literals(&o.client_sql).into();
        o.old_sql = mask_literals(&o.old_sql).into();
        o.new_sql = mask_literals(&o.new_sql).into();
        if let Some(diff) = o.diff.as_mut() {
            privacy::hash_diff(diff);
        }
        for error in [o.old_error.as_mut(), o.new_error.as_mut()]
            .into_iter()
            .flatten()
        {
            error.message = privacy::scrub(&error.message, &params);
        }
        if let Some(detail) = o.detail.as_mut() {
            *detail = privacy::scrub(detail, &params);
        }
        if let Some(finding) = o.slower.as_mut() {
            for plan in [&mut finding.old_plan, &mut finding.new_plan] {
                *plan = plan.as_deref().map(privacy::masked_plan);
            }
        }
        o
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
