//! Judging a sample's runs: match, mismatch, noise or error, and the
//! recheck that decides whether a mismatch is reported as confirmed.
//!
//! **Noise.** Some statements are not deterministic even within one
//! snapshot (a function mislabelled STABLE that calls `random()`, a
//! `TABLESAMPLE`): their old and new results differ for no fault of the
//! migration. Such a statement is caught by the A/A baseline: the old
//! query run twice in the same snapshot. A share of first runs
//! (`shadow.baseline_rate`) includes it, and so does every recheck of a
//! mismatch, so a noisy statement never raises an incident, even before its
//! first baseline sample. Two runs of a deterministic statement cannot
//! differ: the shadow transaction switches off what could reorder rows
//! between them (synchronized scans, parallel plans), and the two runs are
//! compared under the statement's own ordering, ties tolerated. A
//! fingerprint found noisy is remembered; its differences are counted as
//! `noisy` (and shown in the coverage), never as mismatches.
//!
//! **Recheck.** A mismatch is run again in a fresh snapshot. Its relations'
//! keys are looked up again first: if DDL changed a key since the plan was
//! made, the statement is compared anew with the new keys instead.

use super::answers::{SampleResult, SideResult};
use super::conn::ConnError;
use super::executor::{Executor, Handled};
use super::job::Judged;
use super::transaction::Snapshot;
use crate::capture::fingerprint::Fingerprint;
use crate::capture::skip::SkipReason;
use crate::capture::tracker::Sample;
use crate::diff::{compare, CompareOptions, Diff, ResultSet, RowOrder};
use crate::observability::metrics::BASELINES_TOTAL;
use crate::outcome::{display_params, Outcome, OutcomeKind};
use crate::protocol::error_response::ErrorFields;
use crate::rewrite::Plan;
use std::sync::PoisonError;
use std::time::Duration;

/// SQLSTATE of `lock_not_available`, which `lock_timeout` raises.
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// SQLSTATE of `query_canceled`, which a statement timeout raises.
const QUERY_CANCELED: &str = "57014";
/// SQLSTATE of `undefined_column`: a key column the plan appended may be
/// gone.
const UNDEFINED_COLUMN: &str = "42703";
/// SQLSTATEs that, when both rewritten queries fail with them, point at the
/// rewrite (an appended key the statement does not allow) rather than at
/// the schemas.
const REWRITE_SQLSTATES: [&str; 4] = [UNDEFINED_COLUMN, "42P10", "42803", "42601"];

/// Fingerprints remembered as noisy; beyond this the set starts over (a
/// forgotten one is found again by its next recheck).
const MAX_NOISY: usize = 10_000;

/// When a mismatch is rechecked, its relations' keys are looked up again
/// whatever their age: DDL may have changed one a moment ago, and a
/// mismatch is rare enough to afford the round trip.
const RECHECK_KEY_AGE: Duration = Duration::ZERO;

impl Executor {
    /// Judges a sample's first run, runs the follow-ups it needs and
    /// returns the outcome.
    pub(super) async fn finish(
        &self,
        sample: &Sample,
        plan: &Plan,
        options: &CompareOptions,
        first: Result<SampleResult, ConnError>,
    ) -> Judged {
        let mut outcome = self.outcome_shell(sample, plan);
        let first = match first {
            Ok(r) => r,
            // Given up to stay out of a migration's way: counted, not an
            // outcome.
            Err(ConnError::GaveUp(reason)) => return Judged::skipped(reason),
            Err(e) => {
                outcome.kind = OutcomeKind::ShadowError;
                outcome.detail = Some(e.to_string());
                add_reproduction_details(&mut outcome, sample);
                return Judged {
                    handled: Handled::Compared(Box::new(outcome)),
                    keys_suspect: false,
                };
            }
        };
        let mut suspect = first.relation_changed;
        self.judge_run(sample, plan, options, first, &mut outcome)
            .await;
        if [&outcome.old_error, &outcome.new_error]
            .into_iter()
            .flatten()
            .any(|e| e.code == LOCK_NOT_AVAILABLE)
        {
            // A side waited shadow.lock_timeout_ms for a lock (DDL holds
            // or awaits it): the shadow stepped aside.
            return Judged::skipped(SkipReason::LockTimeout);
        }
        suspect |= [&outcome.old_error, &outcome.new_error]
            .into_iter()
            .flatten()
            .any(|e| e.code == UNDEFINED_COLUMN);
        if outcome.kind == OutcomeKind::Mismatch {
            if self.is_noisy(sample.fingerprint) {
                outcome.kind = OutcomeKind::Noisy;
                outcome.noise = Some("found nondeterministic by an earlier A/A baseline".into());
            } else if self.recheck && self.recheck(sample, plan, options, &mut outcome).await {
                suspect = false;
            }
        }
        if outcome.kind == OutcomeKind::Noisy {
            self.mark_noisy(sample.fingerprint);
        }
        if outcome.kind != OutcomeKind::Match {
            add_reproduction_details(&mut outcome, sample);
        }
        Judged {
            handled: Handled::Compared(Box::new(outcome)),
            keys_suspect: suspect && !plan.relations.is_empty(),
        }
    }

    /// Judges one run of `plan` into `out`.
    async fn judge_run(
        &self,
        sample: &Sample,
        plan: &Plan,
        options: &CompareOptions,
        r: SampleResult,
        out: &mut Outcome,
    ) {
        let SampleResult {
            old,
            new,
            baseline,
            snapshot_xmin,
            old_time,
            new_time,
            new_first,
            ..
        } = r;
        out.snapshot_xmin = snapshot_xmin;
        out.old_time = old_time;
        out.new_time = new_time;
        let shared = self.snapshot == Snapshot::Shared;
        let failed = |side: &SideResult| matches!(side, SideResult::Error(_));
        // In one transaction, the side that runs second never ran after the
        // first one failed: run it alone to see whether it fails too.
        let (old, new) = if shared && new_first && failed(&new) {
            let alone = self.rerun_old_side(sample, plan, options).await;
            (alone.unwrap_or(old), new)
        } else if shared && !new_first && failed(&old) {
            let alone = self.rerun_new_side(sample, plan, options).await;
            (old, alone.unwrap_or(new))
        } else {
            (old, new)
        };
        match (old, new) {
            (SideResult::Rows(old), SideResult::Rows(new)) => {
                let diff = compare(&old, &new, &plan.ordering, options);
                if let Some(diff) = &diff {
                    out.ordering = diff.ordering;
                }
                out.kind = if diff.is_some() {
                    OutcomeKind::Mismatch
                } else {
                    OutcomeKind::Match
                };
                out.diff = diff;
                if let Some(SideResult::Rows(again)) = &baseline {
                    if let Some(noise) = baseline_differs(&old, again, plan, options) {
                        out.kind = OutcomeKind::Noisy;
                        out.noise = Some(noise.summary);
                    }
                }
            }
            (old, new) => {
                let old_error = error_of(old);
                let new_error = error_of(new);
                out.kind = error_kind(plan, old_error.as_ref(), new_error.as_ref());
                out.old_error = old_error;
                out.new_error = new_error;
            }
        }
    }

    /// Rechecks a mismatch; returns whether it compared with keys looked
    /// up again (so the caller need not).
    async fn recheck(
        &self,
        sample: &Sample,
        plan: &Plan,
        options: &CompareOptions,
        outcome: &mut Outcome,
    ) -> bool {
        if !self.catalog || plan.relations.is_empty() {
            self.confirm(sample, plan, options, outcome).await;
            return false;
        }
        let fresh = self.plan_all(&[sample], Some(RECHECK_KEY_AGE)).await.pop();
        let newer = fresh
            .as_deref()
            .and_then(|p| p.as_ref().ok())
            .filter(|p| p.key_choices != plan.key_choices);
        let Some(newer) = newer else {
            self.confirm(sample, plan, options, outcome).await;
            return true;
        };
        tracing::info!(
            fingerprint = %sample.fingerprint,
            keys = %newer.keys,
            "relation keys changed since the statement was planned; comparing again with the new keys"
        );
        let options = self.options_for(newer);
        let mut again = self.outcome_shell(sample, newer);
        match self
            .execute_one(sample, self.spec(newer, &options, false))
            .await
        {
            Ok(r) => self.judge_run(sample, newer, &options, r, &mut again).await,
            Err(e) => {
                again.kind = OutcomeKind::ShadowError;
                again.detail = Some(e.to_string());
            }
        }
        if again.kind == OutcomeKind::Mismatch {
            self.confirm(sample, newer, &options, &mut again).await;
        }
        *outcome = again;
        true
    }

    /// Runs a mismatch again in a fresh snapshot, with the A/A baseline:
    /// the old query differing from itself makes it noisy; otherwise the
    /// outcome says whether the same kind of difference was seen again.
    async fn confirm(
        &self,
        sample: &Sample,
        plan: &Plan,
        options: &CompareOptions,
        outcome: &mut Outcome,
    ) {
        let rerun = self
            .execute_one(sample, self.spec(plan, options, true))
            .await;
        let confirmed = match rerun {
            Ok(SampleResult {
                old: SideResult::Rows(old),
                new: SideResult::Rows(new),
                baseline,
                ..
            }) => {
                if let Some(SideResult::Rows(again)) = &baseline {
                    if let Some(noise) = baseline_differs(&old, again, plan, options) {
                        outcome.kind = OutcomeKind::Noisy;
                        outcome.noise = Some(noise.summary);
                        return;
                    }
                }
                let again = compare(&old, &new, &plan.ordering, options);
                again.is_some_and(|d| Some(d.kind) == outcome.diff.as_ref().map(|o| o.kind))
            }
            _ => false,
        };
        outcome.confirmed = Some(confirmed);
    }

    fn is_noisy(&self, fingerprint: Fingerprint) -> bool {
        self.noisy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&fingerprint)
    }

    fn mark_noisy(&self, fingerprint: Fingerprint) {
        let mut noisy = self.noisy.lock().unwrap_or_else(PoisonError::into_inner);
        if noisy.len() >= MAX_NOISY && !noisy.contains(&fingerprint) {
            noisy.clear();
        }
        if noisy.insert(fingerprint) {
            tracing::info!(
                %fingerprint,
                "statement labelled noisy: two runs of the old query differed within one snapshot; \
                 its differences are counted as noisy, not raised as mismatches"
            );
        }
    }

    fn outcome_shell(&self, sample: &Sample, plan: &Plan) -> Outcome {
        Outcome {
            fingerprint: sample.fingerprint,
            kind: OutcomeKind::Match,
            confirmed: None,
            database: sample.database.clone(),
            client_sql: sample.sql.clone(),
            old_sql: plan.old_sql.clone(),
            new_sql: plan.new_sql.clone(),
            params: Vec::new(),
            settings: Vec::new(),
            snapshot_xmin: None,
            old_time: Duration::ZERO,
            new_time: Duration::ZERO,
            diff: None,
            old_error: None,
            new_error: None,
            detail: None,
            ordering: RowOrder::of(&plan.ordering),
            tiebreak: plan.tiebreak.kind(),
            basis: plan.basis,
            keys: plan.keys.clone(),
            noise: None,
            latency: None,
            slower: None,
        }
    }
}

/// How the A/A baseline's two runs of the old query differ, if they do
/// (compared as the statement's own ordering allows); counted.
fn baseline_differs(
    old: &ResultSet,
    again: &ResultSet,
    plan: &Plan,
    options: &CompareOptions,
) -> Option<Diff> {
    let noise = compare(old, again, &plan.ordering, options);
    let result = if noise.is_some() { "differ" } else { "same" };
    metrics::counter!(BASELINES_TOTAL, "result" => result).increment(1);
    noise
}

/// The parameters and session settings of a reported outcome. Only what is
/// reported needs them; a match is counted and forgotten.
fn add_reproduction_details(outcome: &mut Outcome, sample: &Sample) {
    outcome.params = display_params(&sample.param_formats, &sample.params);
    outcome.settings = sample
        .settings
        .pairs()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
}

fn error_of(side: SideResult) -> Option<ErrorFields> {
    match side {
        SideResult::Error(e) => Some(e),
        SideResult::Rows(_) => None,
    }
}

/// Errors are kept apart from mismatches: a timeout is not a difference,
/// and a rewrite the statement does not allow is pgshadow's problem.
fn error_kind(plan: &Plan, old: Option<&ErrorFields>, new: Option<&ErrorFields>) -> OutcomeKind {
    let timed_out = |e: Option<&ErrorFields>| e.is_some_and(|e| e.code == QUERY_CANCELED);
    if timed_out(old) || timed_out(new) {
        return OutcomeKind::Timeout;
    }
    match (old, new) {
        (Some(o), Some(n)) => {
            if plan.rewritten && o.code == n.code && REWRITE_SQLSTATES.contains(&o.code.as_str()) {
                OutcomeKind::RewriteError
            } else {
                OutcomeKind::BothError
            }
        }
        (Some(_), None) => OutcomeKind::OldError,
        (None, Some(_)) => OutcomeKind::NewError,
        (None, None) => OutcomeKind::Match,
    }
}
