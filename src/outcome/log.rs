//! The outcome's log line (DESIGN §8, Logs).

use super::signature::Signature;
use super::{Outcome, OutcomeKind};
use crate::capture::lexer::mask_literals;
use crate::privacy;
use crate::protocol::error_response::ErrorFields;

impl Outcome {
    /// Writes the outcome as one structured log line: WARN for mismatches,
    /// INFO for errors, DEBUG for matches. Without `log.values` the line
    /// carries no parameter or row values ([`crate::privacy`]).
    pub fn log(&self) {
        let values = crate::observability::logs::log_values();
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
            Signature::of(self)
                .map(|s| s.incident_id())
                .unwrap_or_default()
        };
        match self.kind {
            OutcomeKind::Match => tracing::debug!(
                fingerprint = %self.fingerprint,
                ordering = self.ordering.label(),
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
                    ordering = self.ordering.label(),
                    tiebreak = self.tiebreak.label(),
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
                ordering = self.ordering.label(),
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
