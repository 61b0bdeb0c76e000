//! What the mismatch store holds, as the admin API, the CLI and the web
//! page see it.
//!
//! An [`Incident`] groups outcomes by [`Signature`](crate::outcome::signature::Signature): one bug, one incident,
//! however often it is hit. Each keeps a few [`Example`]s, every one a
//! reproduction bundle. [`Coverage`] says, per fingerprint, how much was
//! compared and how confident a clean record is.
//!
//! Times are Unix epoch milliseconds (UTC) throughout, named `*_ms`;
//! [`format_utc`](crate::utc::format_utc) renders them for people.

use crate::diff::{DiffKind, RowChange, RowOrder, RowRef};
use crate::outcome::signature::IncidentKind;
use crate::rewrite::TiebreakKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Parses a [`DiffKind`] label (`values`, `missing_rows`, …).
pub fn parse_diff_kind(label: &str) -> Option<DiffKind> {
    [
        DiffKind::Columns,
        DiffKind::MissingRows,
        DiffKind::ExtraRows,
        DiffKind::Values,
        DiffKind::Order,
    ]
    .into_iter()
    .find(|k| k.label() == label)
}

/// Where an incident stands with the on-call engineer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// New, or seen again after a mute expired: needs a look.
    Open,
    /// Someone has looked at it; it keeps counting but alerts no more.
    Acknowledged,
    /// Silenced until `muted_until_ms` (or until unmuted): keeps counting,
    /// alerts no more. An expired mute reads as `Open`.
    Muted,
    /// Over by itself: a `slower` statement whose new side is no longer
    /// slower (an index was added). Opens again if it turns slower again.
    Resolved,
}

impl IncidentStatus {
    /// The stored label: `open`, `acknowledged`, `muted`.
    pub fn label(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Acknowledged => "acknowledged",
            IncidentStatus::Muted => "muted",
            IncidentStatus::Resolved => "resolved",
        }
    }

    /// Parses a label.
    pub fn parse(label: &str) -> Option<IncidentStatus> {
        [
            IncidentStatus::Open,
            IncidentStatus::Acknowledged,
            IncidentStatus::Muted,
            IncidentStatus::Resolved,
        ]
        .into_iter()
        .find(|s| s.label() == label)
    }
}

/// One incident: a group of outcomes with one signature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    /// Stable short id (see [`Signature::incident_id`](crate::outcome::signature::Signature::incident_id)).
    pub id: String,
    /// The grouping key, as text (see [`Signature::text`](crate::outcome::signature::Signature::text)).
    pub signature: String,
    /// Fingerprint, 16 hex digits.
    pub fingerprint: String,
    /// What happened.
    pub kind: IncidentKind,
    /// For mismatches: the kind of difference.
    pub diff_kind: Option<DiffKind>,
    /// For mismatches with differing values or columns: which columns.
    pub columns: Vec<String>,
    /// For errors: the old side's SQLSTATE.
    pub old_sqlstate: Option<String>,
    /// For errors: the new side's SQLSTATE.
    pub new_sqlstate: Option<String>,
    /// The client's SQL of the first outcome (one representative text).
    pub client_sql: String,
    /// The database it ran in.
    pub database: String,
    /// When it was first and last seen.
    pub first_seen_ms: i64,
    /// When it was last seen.
    pub last_seen_ms: i64,
    /// Outcomes with this signature.
    pub count: u64,
    /// Of those, mismatches a recheck in a fresh snapshot saw again.
    pub confirmed_count: u64,
    /// Comparisons of this fingerprint so far (from [`Coverage`]), so a
    /// reader sees "12 of 40,000".
    pub fingerprint_comparisons: u64,
    /// Open, acknowledged or muted (an expired mute reads as open).
    pub status: IncidentStatus,
    /// Who last changed the status, when known.
    pub status_by: Option<String>,
    /// When the status last changed.
    pub status_at_ms: Option<i64>,
    /// For muted incidents: until when (`None`: until unmuted).
    pub muted_until_ms: Option<i64>,
    /// For muted incidents: why.
    pub mute_reason: Option<String>,
    /// Examples stored (at most `store.max_examples`).
    pub example_count: u64,
    /// Distinct differing row ids kept (at most
    /// `store.max_ids_per_incident`; see [`super::Store::incident_ids`]).
    pub ids_count: u64,
    /// Sightings of differing ids not kept (beyond the bound).
    pub ids_omitted: u64,
}

/// An incident with its examples, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentDetail {
    /// The incident.
    #[serde(flatten)]
    pub incident: Incident,
    /// Its reproduction bundles.
    pub examples: Vec<Example>,
}

/// One reproduction bundle: everything needed to re-run a comparison by
/// hand and see the same thing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    /// Store-assigned number, increasing.
    pub id: i64,
    /// When the outcome reached the store writer.
    pub seen_at_ms: i64,
    /// The database.
    pub database: String,
    /// The old query as run (rewritten: tiebreaker, search_path).
    pub old_sql: String,
    /// The new query as run.
    pub new_sql: String,
    /// Bound parameters as text (`None` = NULL; binary ones as `\x…`).
    pub params: Vec<Option<String>>,
    /// Session settings applied with SET LOCAL, name → value.
    pub settings: Vec<(String, String)>,
    /// The snapshot's xmin.
    pub snapshot_xmin: Option<u64>,
    /// Whether a recheck in a fresh snapshot saw the mismatch again.
    pub confirmed: Option<bool>,
    /// How row order was compared.
    pub ordering: RowOrder,
    /// What happened to the tiebreaker.
    pub tiebreak: TiebreakKind,
    /// Per relation, the key the order ended in (`e (env_id, entry_id)
    /// primary_key; r no key (no_key)`); empty for examples stored before
    /// keys were recorded.
    pub keys: String,
    /// Time of the old query, in milliseconds.
    pub old_ms: f64,
    /// Time of the new query, in milliseconds.
    pub new_ms: f64,
    /// For mismatches: the diff, with the differing rows and cells.
    pub diff: Option<StoredDiff>,
    /// The old side's error.
    pub old_error: Option<StoredError>,
    /// The new side's error.
    pub new_error: Option<StoredError>,
    /// Why the shadow could not run it (shadow errors); for `slower`
    /// incidents, the verdict in words.
    pub detail: Option<String>,
    /// For `slower` incidents: the median of new/old time over the paired
    /// samples the verdict rests on (`old_ms`/`new_ms` are their medians).
    pub ratio: Option<f64>,
    /// For `slower` incidents: `EXPLAIN (FORMAT JSON)` of the old query
    /// with the sample's parameters.
    pub old_plan: Option<serde_json::Value>,
    /// Same for the new query.
    pub new_plan: Option<serde_json::Value>,
}

/// A [`crate::diff::Diff`] as stored (JSON) and read back: the one-line
/// summary plus the differing rows and cells, so a page can show old and
/// new values side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDiff {
    /// The kind of difference.
    pub kind: DiffKind,
    /// Differing columns.
    pub differing_columns: Vec<String>,
    /// One line for people.
    pub summary: String,
    /// Rows the old query returned.
    pub old_rows: u64,
    /// Rows the new query returned.
    pub new_rows: u64,
    /// Names of the old side's columns, in row order.
    #[serde(default)]
    pub old_columns: Vec<String>,
    /// Names of the new side's columns, in row order.
    #[serde(default)]
    pub new_columns: Vec<String>,
    /// Rows with different values (bounded).
    pub changed: Vec<RowChange>,
    /// Rows only in the old result (bounded).
    pub missing: Vec<RowRef>,
    /// Rows only in the new result (bounded).
    pub extra: Vec<RowRef>,
    /// RowDescription differences.
    pub column_changes: Vec<String>,
    /// How rows were compared.
    pub ordering: RowOrder,
    /// Some rows were compared through digests only.
    pub truncated: bool,
}

/// A side's error, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredError {
    /// Severity (`ERROR`, `FATAL`).
    pub severity: String,
    /// SQLSTATE.
    pub code: String,
    /// The server's message.
    pub message: String,
}

/// Per fingerprint: how much was compared and how it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    /// Fingerprint, 16 hex digits.
    pub fingerprint: String,
    /// A representative client SQL text (`None` when only skips were seen).
    pub client_sql: Option<String>,
    /// Comparisons run, whatever their result.
    pub compared: u64,
    /// Of those, matches.
    pub matched: u64,
    /// Mismatches.
    pub mismatched: u64,
    /// Errors of any kind (old/new/both error, timeout, rewrite, shadow).
    pub errored: u64,
    /// Differences of a nondeterministic statement (its A/A runs differed):
    /// counted apart, never incidents.
    pub noisy: u64,
    /// Executions not compared, by skip reason label.
    pub skipped: BTreeMap<String, u64>,
    /// First and last time this fingerprint was counted.
    pub first_seen_ms: i64,
    /// Last time.
    pub last_seen_ms: i64,
    /// Upper bound of the mismatch rate at 95% confidence, over the
    /// comparisons that produced two results (see
    /// [`mismatch_rate_upper_bound`]); `None` before any.
    pub mismatch_rate_upper_95: Option<f64>,
    /// Old and new execution times, as the shadow timed them (`None`
    /// before the first summary).
    pub latency: Option<CoverageLatency>,
}

/// A fingerprint's old and new execution times (server-timed, same
/// snapshot and parameters, order alternated), from the proxy's
/// histograms; with several instances sharing a store, the last one to
/// write.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoverageLatency {
    /// Samples the histograms hold.
    pub samples: u64,
    /// Old side, median (ms).
    pub old_p50_ms: f64,
    /// Old side, 95th percentile (ms).
    pub old_p95_ms: f64,
    /// New side, median (ms).
    pub new_p50_ms: f64,
    /// New side, 95th percentile (ms).
    pub new_p95_ms: f64,
    /// new p50 / old p50.
    pub p50_ratio: f64,
    /// new p95 / old p95.
    pub p95_ratio: f64,
}

impl CoverageLatency {
    /// The coverage's view of a summary, with its ratios.
    pub fn new(
        samples: u64,
        old_p50_ms: f64,
        old_p95_ms: f64,
        new_p50_ms: f64,
        new_p95_ms: f64,
    ) -> Self {
        // A side faster than the histograms' 1 µs resolution counts as 1 µs.
        let ratio = |new: f64, old: f64| new / old.max(0.001);
        Self {
            samples,
            old_p50_ms,
            old_p95_ms,
            new_p50_ms,
            new_p95_ms,
            p50_ratio: ratio(new_p50_ms, old_p50_ms),
            p95_ratio: ratio(new_p95_ms, old_p95_ms),
        }
    }
}

/// The outline of an `EXPLAIN (FORMAT JSON)` plan, one node per line,
/// indented by depth: `Sort`, `  Bitmap Heap Scan on orders`, `    Bitmap
/// Index Scan using orders_customer`. What differs between two plans (a Seq
/// Scan where the other has an Index Scan) stands out in it. A plan that is
/// not EXPLAIN's JSON (an error kept as a string) is shown as it is.
pub fn plan_outline(plan: &serde_json::Value) -> String {
    fn node(out: &mut Vec<String>, n: &serde_json::Value, depth: usize) {
        let text = |key: &str| n.get(key).and_then(|v| v.as_str());
        let mut line = format!("{}{}", "  ".repeat(depth), text("Node Type").unwrap_or("?"));
        if let Some(index) = text("Index Name") {
            line.push_str(&format!(" using {index}"));
        }
        if let Some(relation) = text("Relation Name") {
            line.push_str(&format!(" on {relation}"));
        }
        if let Some(rows) = n.get("Plan Rows").and_then(|v| v.as_f64()) {
            line.push_str(&format!(" (rows={rows})"));
        }
        out.push(line);
        for child in n
            .get("Plans")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
        {
            node(out, child, depth + 1);
        }
    }
    let root = plan.get(0).and_then(|p| p.get("Plan"));
    match root {
        Some(root) => {
            let mut lines = Vec::new();
            node(&mut lines, root, 0);
            lines.join("\n")
        }
        None => match plan {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

/// Upper bound of a fingerprint's true mismatch rate at 95% confidence,
/// given `mismatched` mismatches in `compared` comparisons that produced
/// two results (matches + mismatches).
///
/// - 0 in n: the "rule of three", 3/n (the exact one-sided 95% bound is
///   1 − 0.05^(1/n) ≈ 3/n);
/// - k > 0: the upper end of the Wilson score interval with z = 1.96, which
///   stays sensible for small n and k near 0 or n.
///
/// `None` when nothing was compared.
pub fn mismatch_rate_upper_bound(mismatched: u64, compared: u64) -> Option<f64> {
    if compared == 0 {
        return None;
    }
    let n = compared as f64;
    let k = mismatched.min(compared) as f64;
    if k == 0.0 {
        return Some((3.0 / n).min(1.0));
    }
    let z = 1.96_f64;
    let p = k / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let margin = z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt();
    Some(((centre + margin) / (1.0 + z2 / n)).min(1.0))
}

/// Which incidents [`crate::store::Store::list_incidents`] returns.
/// Every field narrows the list; the default lists the newest 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentFilter {
    /// Only this status (an expired mute counts as open).
    pub status: Option<IncidentStatus>,
    /// Only this kind.
    pub kind: Option<IncidentKind>,
    /// Only this fingerprint (16 hex digits).
    pub fingerprint: Option<String>,
    /// Only incidents last seen at or after this time.
    pub since_ms: Option<i64>,
    /// At most this many, most recently seen first.
    pub limit: u64,
}

impl Default for IncidentFilter {
    fn default() -> Self {
        Self {
            status: None,
            kind: None,
            fingerprint: None,
            since_ms: None,
            limit: 100,
        }
    }
}

/// Something the webhook (and anyone else subscribed) should hear about.
/// Only new incidents and expired mutes raise events; more outcomes of a
/// known incident, muted or not, do not.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum IncidentEvent {
    /// A signature seen for the first time was stored.
    Opened(IncidentNotice),
    /// A muted incident's mute expired (or it was unmuted).
    Unmuted(IncidentNotice),
}

/// The facts an alert about an incident needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentNotice {
    /// Incident id.
    pub id: String,
    /// Fingerprint.
    pub fingerprint: String,
    /// What happened.
    pub kind: IncidentKind,
    /// For mismatches: the kind of difference.
    pub diff_kind: Option<DiffKind>,
    /// Differing columns.
    pub columns: Vec<String>,
    /// Old side's SQLSTATE.
    pub old_sqlstate: Option<String>,
    /// New side's SQLSTATE.
    pub new_sqlstate: Option<String>,
    /// A representative client SQL text.
    pub client_sql: String,
    /// The database.
    pub database: String,
    /// The diff summary or error message of an example, when there is one.
    pub summary: Option<String>,
    /// Outcomes counted so far.
    pub count: u64,
}

/// Now, as Unix epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_record_bounds_the_rate_by_the_rule_of_three() {
        assert_eq!(mismatch_rate_upper_bound(0, 0), None);
        assert_eq!(mismatch_rate_upper_bound(0, 300), Some(0.01));
        assert_eq!(mismatch_rate_upper_bound(0, 1), Some(1.0));
    }

    #[test]
    fn mismatches_raise_the_bound_above_the_observed_rate() {
        let bound = mismatch_rate_upper_bound(10, 1000).unwrap_or_default();
        assert!(bound > 0.01 && bound < 0.02, "{bound}");
        assert_eq!(mismatch_rate_upper_bound(5, 5), Some(1.0));
    }

    #[test]
    fn a_plan_outline_names_each_node_by_depth() {
        let plan = serde_json::json!([{"Plan": {
            "Node Type": "Sort", "Plan Rows": 10,
            "Plans": [{"Node Type": "Index Scan", "Index Name": "orders_customer",
                       "Relation Name": "orders", "Plan Rows": 10}]
        }}]);
        assert_eq!(
            plan_outline(&plan),
            "Sort (rows=10)\n  Index Scan using orders_customer on orders (rows=10)"
        );
        assert_eq!(
            plan_outline(&serde_json::json!("cannot explain")),
            "cannot explain"
        );
    }

    #[test]
    fn labels_round_trip() {
        assert_eq!(parse_diff_kind("missing_rows"), Some(DiffKind::MissingRows));
        assert_eq!(
            IncidentStatus::parse("acknowledged"),
            Some(IncidentStatus::Acknowledged)
        );
    }
}
