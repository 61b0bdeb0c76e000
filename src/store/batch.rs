//! Outcomes aggregated in memory between two writes.
//!
//! At thousands of comparisons a second the store cannot take one
//! transaction per outcome. The writer folds outcomes into a [`Batch`]:
//! one counter set per fingerprint, one per incident signature (with at
//! most `max_examples` outcomes kept as examples), one per skipped
//! fingerprint and reason. A batch's size depends on how many distinct
//! things it saw, not on how many outcomes.

use super::ids::IdsDelta;
use crate::capture::fingerprint::Fingerprint;
use crate::capture::skip::SkipReason;
use crate::outcome::signature::{incident_id, Signature};
use crate::outcome::LatencySummary;
use crate::outcome::{Outcome, OutcomeKind};
use std::collections::HashMap;
use std::sync::Arc;

/// Everything to write in one transaction.
#[derive(Debug, Clone, Default)]
pub(crate) struct Batch {
    /// Per incident signature.
    pub(crate) incidents: HashMap<Signature, IncidentDelta>,
    /// Per fingerprint compared.
    pub(crate) coverage: HashMap<Fingerprint, CoverageDelta>,
    /// Per fingerprint and skip reason.
    pub(crate) skips: HashMap<(Fingerprint, SkipReason), SkipDelta>,
    /// `slower` incidents whose statement recovered, to mark resolved
    /// (after the batch's incidents are written).
    pub(crate) resolved: Vec<String>,
    /// Comparison outcomes folded in.
    pub(crate) outcomes: u64,
    /// `slower` verdicts folded in (not comparisons).
    pub(crate) verdicts: u64,
}

/// New outcomes of one signature.
#[derive(Debug, Clone)]
pub(crate) struct IncidentDelta {
    /// [`Signature::text`], computed once.
    pub(crate) signature_text: String,
    /// [`Signature::incident_id`], computed once.
    pub(crate) id: String,
    /// Client SQL of the first outcome in the batch.
    pub(crate) client_sql: Arc<str>,
    /// Its database.
    pub(crate) database: Arc<str>,
    /// Outcomes.
    pub(crate) count: u64,
    /// Of those, confirmed by a recheck.
    pub(crate) confirmed: u64,
    /// First seen in this batch.
    pub(crate) first_seen_ms: i64,
    /// Last seen in this batch.
    pub(crate) last_seen_ms: i64,
    /// The first few outcomes, with the time they arrived.
    pub(crate) examples: Vec<(i64, Arc<Outcome>)>,
    /// The differing row ids of all of them.
    pub(crate) ids: IdsDelta,
}

/// New comparisons of one fingerprint.
#[derive(Debug, Clone)]
pub(crate) struct CoverageDelta {
    /// Client SQL of the first outcome in the batch.
    pub(crate) client_sql: Arc<str>,
    /// All comparisons.
    pub(crate) compared: u64,
    /// Matches.
    pub(crate) matched: u64,
    /// Mismatches.
    pub(crate) mismatched: u64,
    /// Errors of any kind.
    pub(crate) errored: u64,
    /// Differences of a nondeterministic statement.
    pub(crate) noisy: u64,
    /// The latest old/new time distributions.
    pub(crate) latency: Option<LatencySummary>,
    /// First seen in this batch.
    pub(crate) first_seen_ms: i64,
    /// Last seen in this batch.
    pub(crate) last_seen_ms: i64,
}

/// New skips of one fingerprint for one reason.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SkipDelta {
    /// Executions skipped.
    pub(crate) count: u64,
    /// Last time counted.
    pub(crate) last_seen_ms: i64,
}

impl Batch {
    /// Folds one outcome in. Keeps it as an example while its signature
    /// has fewer than `max_examples` in this batch, and up to `max_ids` of
    /// its signature's differing row ids.
    pub(crate) fn add(
        &mut self,
        outcome: Arc<Outcome>,
        now_ms: i64,
        max_examples: usize,
        max_ids: usize,
    ) {
        if outcome.kind == OutcomeKind::Slower {
            self.verdicts += 1;
            self.add_latency_verdict(outcome, now_ms, max_examples);
            return;
        }
        self.outcomes += 1;
        let cov = self
            .coverage
            .entry(outcome.fingerprint)
            .or_insert_with(|| CoverageDelta {
                client_sql: outcome.client_sql.clone(),
                compared: 0,
                matched: 0,
                mismatched: 0,
                errored: 0,
                noisy: 0,
                latency: None,
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
            });
        cov.compared += 1;
        if outcome.latency.is_some() {
            cov.latency = outcome.latency;
        }
        cov.last_seen_ms = cov.last_seen_ms.max(now_ms);
        match outcome.kind {
            OutcomeKind::Match => cov.matched += 1,
            OutcomeKind::Mismatch => cov.mismatched += 1,
            OutcomeKind::Noisy => cov.noisy += 1,
            _ => cov.errored += 1,
        }
        let Some(signature) = Signature::of(&outcome) else {
            return;
        };
        let delta = self.delta(signature, &outcome, now_ms);
        delta.count += 1;
        if outcome.confirmed == Some(true) {
            delta.confirmed += 1;
        }
        delta.last_seen_ms = delta.last_seen_ms.max(now_ms);
        if let Some(diff) = &outcome.diff {
            delta.ids.add(&diff.ids, now_ms, max_ids);
        }
        if delta.examples.len() < max_examples {
            delta.examples.push((now_ms, outcome));
        }
    }

    /// A `slower` verdict: the fingerprint's `slower` incident counts one
    /// more (and opens again if it was resolved), or is to be resolved.
    fn add_latency_verdict(&mut self, outcome: Arc<Outcome>, now_ms: i64, max_examples: usize) {
        let Some(signature) = Signature::of(&outcome) else {
            return;
        };
        let slower = outcome.slower.as_ref().is_some_and(|f| f.verdict.slower);
        let id = signature.incident_id();
        self.resolved.retain(|r| *r != id);
        if !slower {
            self.resolved.push(id);
            return;
        }
        let delta = self.delta(signature, &outcome, now_ms);
        delta.count += 1;
        delta.last_seen_ms = delta.last_seen_ms.max(now_ms);
        if delta.examples.len() < max_examples {
            delta.examples.push((now_ms, outcome));
        }
    }

    /// The delta of `signature`, new if the batch has none yet.
    fn delta(
        &mut self,
        signature: Signature,
        outcome: &Outcome,
        now_ms: i64,
    ) -> &mut IncidentDelta {
        self.incidents.entry(signature).or_insert_with_key(|s| {
            let signature_text = s.text();
            IncidentDelta {
                id: incident_id(&signature_text),
                signature_text,
                client_sql: outcome.client_sql.clone(),
                database: outcome.database.clone(),
                count: 0,
                confirmed: 0,
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
                examples: Vec::new(),
                ids: IdsDelta::default(),
            }
        })
    }

    /// Adds `n` skips of `fingerprint` for `reason`.
    pub(crate) fn add_skips(
        &mut self,
        fingerprint: Fingerprint,
        reason: SkipReason,
        n: u64,
        now_ms: i64,
    ) {
        let skip = self
            .skips
            .entry((fingerprint, reason))
            .or_insert(SkipDelta {
                count: 0,
                last_seen_ms: now_ms,
            });
        skip.count += n;
        skip.last_seen_ms = skip.last_seen_ms.max(now_ms);
    }

    /// Nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.incidents.is_empty()
            && self.coverage.is_empty()
            && self.skips.is_empty()
            && self.resolved.is_empty()
    }

    /// Distinct rows the batch will touch: what its memory grows with.
    pub(crate) fn distinct(&self) -> usize {
        self.incidents.len() + self.coverage.len() + self.skips.len() + self.resolved.len()
    }
}
