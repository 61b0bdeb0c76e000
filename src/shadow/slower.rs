//! From timed samples to `slower` verdicts: each compared sample's old and
//! new time goes into the fingerprint's [`LatencyBook`]; a change of
//! verdict becomes an outcome of kind [`OutcomeKind::Slower`] (with both
//! plans when it became slower), which the store files as the
//! fingerprint's `slower` incident, or resolves.
//!
//! Per sample this costs one lock and a few hundred operations; the only
//! extra round trip, the EXPLAIN of both sides ([`super::plans`]), happens
//! once per change of verdict.

use super::executor::{compared_rows, Executor, Handled};
use super::latency::describe_verdict;
use super::plans::{explain_both, ExplainSpec, PlanResult};
use crate::capture::tracker::Sample;
use crate::observability::metrics::SLOWER_STATEMENTS;
use crate::outcome::Verdict;
use crate::outcome::{display_params, Outcome, OutcomeKind, SlowerFinding};
use std::time::Duration;

impl Executor {
    /// Records the times of `handled` (the results of `samples`, in
    /// order), attaches a distribution summary to the outcomes that are
    /// due one, and returns the verdicts that changed, as outcomes.
    pub async fn time_batch(&self, samples: &[Sample], handled: &mut [Handled]) -> Vec<Outcome> {
        let mut verdicts = Vec::new();
        for (sample, handled) in samples.iter().zip(handled.iter_mut()) {
            let Handled::Compared(outcome) = handled else {
                continue;
            };
            if !compared_rows(outcome.kind) {
                continue;
            }
            let recorded =
                self.latency
                    .record(sample.fingerprint, outcome.old_time, outcome.new_time);
            outcome.latency = recorded.summary;
            if let Some(verdict) = recorded.verdict {
                verdicts.push((sample, outcome.clone(), verdict));
            }
        }
        if verdicts.is_empty() {
            return Vec::new();
        }
        metrics::gauge!(SLOWER_STATEMENTS).set(self.latency.slower_count() as f64);
        let mut findings = Vec::with_capacity(verdicts.len());
        for (sample, outcome, verdict) in verdicts {
            findings.push(self.slower_outcome(sample, &outcome, verdict).await);
        }
        findings
    }

    /// The outcome that reports `verdict` on `sample`'s fingerprint; when
    /// it became slower, with both plans.
    async fn slower_outcome(
        &self,
        sample: &Sample,
        compared: &Outcome,
        verdict: Verdict,
    ) -> Outcome {
        let (old_plan, new_plan) = if verdict.slower {
            self.explain(sample, compared).await
        } else {
            (None, None)
        };
        let millis = |ms: f64| Duration::try_from_secs_f64(ms / 1e3).unwrap_or_default();
        let mut outcome = Outcome {
            kind: OutcomeKind::Slower,
            old_time: millis(verdict.old_median_ms),
            new_time: millis(verdict.new_median_ms),
            params: display_params(&sample.param_formats, &sample.params),
            settings: sample
                .settings
                .pairs()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            detail: Some(describe_verdict(&verdict, self.latency.rule())),
            latency: Some(verdict.summary),
            diff: None,
            old_error: None,
            new_error: None,
            noise: None,
            confirmed: None,
            slower: None,
            ..compared.clone()
        };
        outcome.slower = Some(Box::new(SlowerFinding {
            verdict,
            old_plan,
            new_plan,
        }));
        outcome
    }

    /// Both plans of `compared`'s queries with `sample`'s parameters; a
    /// side that cannot be explained gets its error as its plan (a JSON
    /// string), a connection that fails none.
    async fn explain(
        &self,
        sample: &Sample,
        compared: &Outcome,
    ) -> (Option<String>, Option<String>) {
        let spec = ExplainSpec {
            old_sql: &compared.old_sql,
            new_sql: &compared.new_sql,
            old_search_path: &self.old_search_path,
            new_search_path: &self.new_search_path,
            statement_timeout: self.statement_timeout,
            lock_timeout: self.lock_timeout,
        };
        let mut conn = match self.pool.get(&sample.database).await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, fingerprint = %sample.fingerprint, "cannot explain the slower statement");
                return (None, None);
            }
        };
        let limit = self.statement_timeout * 2 + Duration::from_secs(5);
        let explained = tokio::time::timeout(limit, explain_both(&mut conn, sample, &spec)).await;
        match explained {
            Ok(Ok([old, new])) => {
                self.pool.put(&sample.database, conn);
                (Some(plan_text(old)), Some(plan_text(new)))
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, fingerprint = %sample.fingerprint, "cannot explain the slower statement");
                (None, None)
            }
            Err(_) => {
                tracing::warn!(fingerprint = %sample.fingerprint, "explaining the slower statement timed out");
                (None, None)
            }
        }
    }
}

/// A plan as kept: EXPLAIN's JSON, or the error as a JSON string.
fn plan_text(plan: PlanResult) -> String {
    match plan {
        Ok(json) => json,
        Err(e) => serde_json::to_string(&format!("cannot explain: {} ({})", e.message, e.code))
            .unwrap_or_default(),
    }
}
