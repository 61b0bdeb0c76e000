//! What makes two outcomes "the same problem": the grouping key of the
//! mismatch store's incidents, and the incident id derived from it.

use super::{Outcome, OutcomeKind};
use crate::capture::fingerprint::Fingerprint;
use crate::diff::DiffKind;
use serde::{Deserialize, Serialize};

/// The kinds of outcome that make incidents: every [`OutcomeKind`] but
/// `Match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// The two schemas returned different results.
    Mismatch,
    /// Only the old query failed.
    OldError,
    /// Only the new query failed.
    NewError,
    /// Both failed.
    BothError,
    /// A side hit the statement timeout.
    Timeout,
    /// The rewritten statement is invalid.
    RewriteError,
    /// The shadow could not run the sample.
    ShadowError,
    /// The new side is reliably slower than the old one (latency, not
    /// values); resolved by itself when it recovers.
    Slower,
}

impl IncidentKind {
    /// Every kind, for filters and help text.
    pub const ALL: [IncidentKind; 8] = [
        IncidentKind::Mismatch,
        IncidentKind::OldError,
        IncidentKind::NewError,
        IncidentKind::BothError,
        IncidentKind::Timeout,
        IncidentKind::RewriteError,
        IncidentKind::ShadowError,
        IncidentKind::Slower,
    ];

    /// The incident kind of an outcome; `None` for a match.
    pub fn of(kind: OutcomeKind) -> Option<IncidentKind> {
        Some(match kind {
            // A noisy statement's differences are counted, never incidents.
            OutcomeKind::Match | OutcomeKind::Noisy => return None,
            OutcomeKind::Mismatch => IncidentKind::Mismatch,
            OutcomeKind::OldError => IncidentKind::OldError,
            OutcomeKind::NewError => IncidentKind::NewError,
            OutcomeKind::BothError => IncidentKind::BothError,
            OutcomeKind::Timeout => IncidentKind::Timeout,
            OutcomeKind::RewriteError => IncidentKind::RewriteError,
            OutcomeKind::ShadowError => IncidentKind::ShadowError,
            OutcomeKind::Slower => IncidentKind::Slower,
        })
    }

    /// The outcome kind this incident kind stands for.
    pub fn outcome_kind(self) -> OutcomeKind {
        match self {
            IncidentKind::Mismatch => OutcomeKind::Mismatch,
            IncidentKind::OldError => OutcomeKind::OldError,
            IncidentKind::NewError => OutcomeKind::NewError,
            IncidentKind::BothError => OutcomeKind::BothError,
            IncidentKind::Timeout => OutcomeKind::Timeout,
            IncidentKind::RewriteError => OutcomeKind::RewriteError,
            IncidentKind::ShadowError => OutcomeKind::ShadowError,
            IncidentKind::Slower => OutcomeKind::Slower,
        }
    }

    /// The same label as the outcome's (`mismatch`, `new_error`, …), so
    /// incidents and `pgshadow_comparisons_total{result}` share one name.
    pub fn label(self) -> &'static str {
        self.outcome_kind().label()
    }

    /// Parses a label, as given to `--kind` or `?kind=`.
    pub fn parse(label: &str) -> Option<IncidentKind> {
        Self::ALL.into_iter().find(|k| k.label() == label)
    }
}

/// What makes two outcomes "the same problem": the grouping key of
/// incidents (DESIGN §7). Deterministic, so every proxy instance sharing a
/// store computes the same signature and incident id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The statement's fingerprint.
    pub fingerprint: Fingerprint,
    /// What happened.
    pub kind: IncidentKind,
    /// For mismatches: the kind of difference.
    pub diff_kind: Option<DiffKind>,
    /// For mismatches: the differing columns, sorted and deduplicated.
    pub columns: Vec<String>,
    /// For errors: the old side's SQLSTATE.
    pub old_sqlstate: Option<String>,
    /// For errors: the new side's SQLSTATE.
    pub new_sqlstate: Option<String>,
}

impl Signature {
    /// The signature of an outcome; `None` for a match.
    pub fn of(outcome: &Outcome) -> Option<Signature> {
        let kind = IncidentKind::of(outcome.kind)?;
        let (diff_kind, mut columns) = match (&outcome.diff, kind) {
            (Some(d), IncidentKind::Mismatch) => (Some(d.kind), d.differing_columns.clone()),
            _ => (None, Vec::new()),
        };
        columns.sort();
        columns.dedup();
        let code = |e: &Option<crate::protocol::error_response::ErrorFields>| {
            e.as_ref().map(|e| e.code.clone()).filter(|c| !c.is_empty())
        };
        let errors = !matches!(kind, IncidentKind::Mismatch | IncidentKind::Slower);
        Some(Signature {
            fingerprint: outcome.fingerprint,
            kind,
            diff_kind,
            columns,
            old_sqlstate: code(&outcome.old_error).filter(|_| errors),
            new_sqlstate: code(&outcome.new_error).filter(|_| errors),
        })
    }

    /// The signature as stored and shown:
    /// `90356c2a5f55a6f1 mismatch values ["title"]` or
    /// `90356c2a5f55a6f1 new_error old=- new=42P01`.
    pub fn text(&self) -> String {
        match self.kind {
            IncidentKind::Mismatch => format!(
                "{} mismatch {} {}",
                self.fingerprint,
                self.diff_kind.map_or("unknown", DiffKind::label),
                serde_json::to_string(&self.columns).unwrap_or_default()
            ),
            IncidentKind::Slower => format!("{} slower", self.fingerprint),
            kind => format!(
                "{} {} old={} new={}",
                self.fingerprint,
                kind.label(),
                self.old_sqlstate.as_deref().unwrap_or("-"),
                self.new_sqlstate.as_deref().unwrap_or("-")
            ),
        }
    }

    /// The incident's id: 12 hex digits of the FNV-1a hash of
    /// [`Signature::text`]. Short enough to type, stable across restarts
    /// and instances, so logs, the CLI and webhooks name an incident the
    /// same way.
    pub fn incident_id(&self) -> String {
        incident_id(&self.text())
    }
}

/// The incident id of a signature text (see [`Signature::incident_id`]).
pub fn incident_id(signature: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in signature.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", hash >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_ids_are_twelve_stable_hex_digits() {
        let id = incident_id("90356c2a5f55a6f1 mismatch values [\"title\"]");
        assert_eq!(id.len(), 12);
        assert_eq!(
            id,
            incident_id("90356c2a5f55a6f1 mismatch values [\"title\"]")
        );
        assert_ne!(
            id,
            incident_id("90356c2a5f55a6f1 mismatch values [\"body\"]")
        );
    }

    #[test]
    fn incident_kind_labels_round_trip() {
        for k in IncidentKind::ALL {
            assert_eq!(IncidentKind::parse(k.label()), Some(k));
            assert_eq!(IncidentKind::of(k.outcome_kind()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.label()), "stored and shown alike");
        }
    }
}
