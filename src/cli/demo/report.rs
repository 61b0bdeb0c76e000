//! The demo's summary: what was compared, matched, skipped and
//! mismatched, the incidents in the mismatch store, and whether they are
//! the seeded bug.
//!
//! Incidents are read back from the store through its query API, the way
//! the admin page and `pgshadow mismatches` read them, so the summary shows
//! what an on-call engineer would find, not what the demo expects.

use super::progress::{thousands, Counts};
use super::schema::{BUGGY_COLUMN, BUGGY_ENTRIES, SLOW_STATEMENT};
use super::traffic::TrafficStats;
use crate::outcome::signature::IncidentKind;
use crate::store::{plan_outline, IncidentDetail, IncidentFilter, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Differing rows listed per incident at most.
const ROWS_SHOWN: usize = 10;
/// Characters of an incident's SQL shown.
const SQL_SHOWN: usize = 110;

/// The incidents the store holds at the end of the run.
#[derive(Debug, Clone)]
pub struct Findings {
    /// Every incident with its examples, most recently seen first.
    pub incidents: Vec<IncidentDetail>,
}

/// One differing value, as a stored diff reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BadValue {
    /// The row, `sys_id=100017`.
    pub key: String,
    /// The column.
    pub column: String,
    /// The old schema's value (`None`: NULL).
    pub old: Option<String>,
    /// The new schema's value.
    pub new: Option<String>,
}

impl BadValue {
    /// The row's sys_id, when the diff named the row by it.
    pub fn sys_id(&self) -> Option<i64> {
        self.key.strip_prefix("sys_id=")?.parse().ok()
    }
}

/// Did the demo find what it seeded?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// At least one seeded row was reported.
    Found,
    /// No incident is about the seeded bug.
    NotFound,
}

impl Findings {
    /// Reads every incident and its examples from the store.
    pub async fn load(store: &Store) -> Result<Findings, StoreError> {
        let filter = IncidentFilter {
            limit: 1000,
            ..IncidentFilter::default()
        };
        let mut incidents = Vec::new();
        for incident in store.list_incidents(&filter).await? {
            if let Some(detail) = store.incident(&incident.id).await? {
                incidents.push(detail);
            }
        }
        Ok(Findings { incidents })
    }

    /// The incidents that are the seeded bug: mismatches in the buggy
    /// column only, at seeded rows only.
    pub fn seeded(&self) -> impl Iterator<Item = &IncidentDetail> {
        self.incidents.iter().filter(|d| is_seeded_bug(d))
    }

    /// The `slower` incidents about the statement the forgotten index
    /// makes slow.
    pub fn seeded_slower(&self) -> impl Iterator<Item = &IncidentDetail> {
        self.incidents.iter().filter(|d| is_seeded_slowness(d))
    }

    /// Every other incident: with a correct pgshadow, none.
    pub fn others(&self) -> impl Iterator<Item = &IncidentDetail> {
        self.incidents
            .iter()
            .filter(|d| !is_seeded_bug(d) && !is_seeded_slowness(d))
    }

    /// The seeded rows some incident reported.
    pub fn seeded_rows_found(&self) -> BTreeSet<i64> {
        self.seeded()
            .flat_map(bad_values)
            .filter_map(|v| v.sys_id())
            .collect()
    }

    /// Found or not.
    pub fn verdict(&self) -> Verdict {
        if self.seeded_rows_found().is_empty() {
            Verdict::NotFound
        } else {
            Verdict::Found
        }
    }
}

/// The differing values of an incident's examples, each row once.
pub fn bad_values(detail: &IncidentDetail) -> Vec<BadValue> {
    let mut values: BTreeMap<(String, String), BadValue> = BTreeMap::new();
    for diff in detail.examples.iter().filter_map(|e| e.diff.as_ref()) {
        for change in &diff.changed {
            for cell in &change.cells {
                values
                    .entry((change.key.clone(), cell.column.clone()))
                    .or_insert_with(|| BadValue {
                        key: change.key.clone(),
                        column: cell.column.clone(),
                        old: cell.old.clone(),
                        new: cell.new.clone(),
                    });
            }
        }
    }
    values.into_values().collect()
}

/// A mismatch in the buggy column only, whose examples differ in seeded
/// rows only (and have no missing or extra rows).
fn is_seeded_bug(detail: &IncidentDetail) -> bool {
    let incident = &detail.incident;
    if incident.kind != IncidentKind::Mismatch || incident.columns != [BUGGY_COLUMN] {
        return false;
    }
    let diffs: Vec<_> = detail
        .examples
        .iter()
        .filter_map(|e| e.diff.as_ref())
        .collect();
    let values = bad_values(detail);
    !values.is_empty()
        && diffs
            .iter()
            .all(|d| d.missing.is_empty() && d.extra.is_empty())
        && values.iter().all(|v| {
            v.column == BUGGY_COLUMN && v.sys_id().is_some_and(|id| BUGGY_ENTRIES.contains(&id))
        })
}

/// A `slower` incident about [`SLOW_STATEMENT`].
fn is_seeded_slowness(detail: &IncidentDetail) -> bool {
    detail.incident.kind == IncidentKind::Slower && detail.incident.client_sql == SLOW_STATEMENT
}

/// The summary printed at the end of a run.
pub fn summary(
    seconds: u64,
    counts: &Counts,
    traffic: &TrafficStats,
    findings: &Findings,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Summary after {seconds} s of traffic");
    let _ = writeln!(
        out,
        "  application   {} reads, {} dual-write transactions, {} errors",
        thousands(traffic.reads()),
        thousands(traffic.writes()),
        thousands(traffic.errors()),
    );
    if let Some(error) = traffic.first_error() {
        let _ = writeln!(out, "                first error: {error}");
    }
    let _ = writeln!(
        out,
        "  through proxy {} statements",
        thousands(counts.queries)
    );
    let _ = writeln!(
        out,
        "  compared      {}: matched {}, mismatched {}, errors {}",
        thousands(counts.compared()),
        thousands(counts.matched()),
        thousands(counts.mismatched()),
        thousands(counts.errors()),
    );
    let errors: Vec<String> = counts
        .comparisons
        .iter()
        .filter(|(result, n)| **n > 0 && !matches!(result.as_str(), "match" | "mismatch"))
        .map(|(result, n)| format!("{result} {}", thousands(*n)))
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "                errors by kind: {}", errors.join(", "));
    }
    let _ = writeln!(
        out,
        "  skipped       {}: {}",
        thousands(counts.skipped_total()),
        counts.skip_reasons()
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Incidents in the mismatch store: {}",
        findings.incidents.len()
    );
    for detail in &findings.incidents {
        write_incident(&mut out, detail);
    }
    let _ = writeln!(out);
    let found = findings.seeded_rows_found();
    let ids = |set: &BTreeSet<i64>| {
        set.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if found.is_empty() {
        let _ = writeln!(
            out,
            "The seeded bug was NOT found: no incident reports column {BUGGY_COLUMN} at sys_id {}. \
             Run longer (--duration) or with more traffic (--rate).",
            ids(&BUGGY_ENTRIES.into_iter().collect())
        );
    } else {
        let missed: BTreeSet<i64> = BUGGY_ENTRIES
            .into_iter()
            .filter(|id| !found.contains(id))
            .collect();
        let _ = writeln!(
            out,
            "Seeded bug found: column {BUGGY_COLUMN} differs at sys_id {} ({} of {} seeded rows{})",
            ids(&found),
            found.len(),
            BUGGY_ENTRIES.len(),
            if missed.is_empty() {
                String::new()
            } else {
                format!("; not seen yet: {}", ids(&missed))
            }
        );
    }
    match findings.seeded_slower().next() {
        Some(slower) => {
            let ratio = slower
                .examples
                .iter()
                .rev()
                .find_map(|e| e.ratio)
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "Slower statement found: {ratio:.0}x slower on the new schema (the forgotten index): {}",
                SLOW_STATEMENT
            );
        }
        None => {
            let _ = writeln!(
                out,
                "The slower statement was NOT found yet: {SLOW_STATEMENT} (run longer with --duration)"
            );
        }
    }
    let others = findings.others().count();
    let _ = writeln!(out, "Other incidents: {others}");
    if others > 0 {
        let _ = writeln!(
            out,
            "  (incidents not about the seeded bug point at a problem in pgshadow itself or \
             in this machine: please report them)"
        );
    }
    out
}

fn write_incident(out: &mut String, detail: &IncidentDetail) {
    let i = &detail.incident;
    let what = match i.kind {
        IncidentKind::Mismatch => format!(
            "mismatch ({}) in column {}",
            i.diff_kind.map_or("unknown", |k| k.label()),
            if i.columns.is_empty() {
                "-".to_string()
            } else {
                i.columns.join(", ")
            }
        ),
        IncidentKind::Slower => "slower: the new schema takes longer".to_string(),
        kind => format!(
            "{} (SQLSTATE old {}, new {})",
            kind.label(),
            i.old_sqlstate.as_deref().unwrap_or("-"),
            i.new_sqlstate.as_deref().unwrap_or("-")
        ),
    };
    if i.kind == IncidentKind::Slower {
        let _ = writeln!(
            out,
            "  {}  {what}: judged over the paired samples of {} comparisons of this statement",
            i.id,
            thousands(i.fingerprint_comparisons),
        );
    } else {
        let _ = writeln!(
            out,
            "  {}  {what}: seen {}, {} confirmed by a recheck, in {} comparisons of this statement",
            i.id,
            times(i.count),
            thousands(i.confirmed_count),
            thousands(i.fingerprint_comparisons),
        );
    }
    let _ = writeln!(out, "      {}", shorten(&i.client_sql, SQL_SHOWN));
    if let Some(e) = detail.examples.iter().rev().find(|e| e.ratio.is_some()) {
        let _ = writeln!(
            out,
            "      new/old {:.0}x: old {:.2} ms, new {:.2} ms (medians of paired samples)",
            e.ratio.unwrap_or_default(),
            e.old_ms,
            e.new_ms
        );
        for (side, plan) in [("old", &e.old_plan), ("new", &e.new_plan)] {
            if let Some(plan) = plan {
                let outline: Vec<String> = plan_outline(plan)
                    .lines()
                    .map(|l| l.trim().to_string())
                    .collect();
                let _ = writeln!(
                    out,
                    "      {side} plan: {}",
                    shorten(&outline.join(" > "), SQL_SHOWN)
                );
            }
        }
    }
    let values = bad_values(detail);
    for v in values.iter().take(ROWS_SHOWN) {
        let _ = writeln!(
            out,
            "      {}: {} old={} new={}",
            v.key,
            v.column,
            quoted(&v.old),
            quoted(&v.new)
        );
    }
    if values.len() > ROWS_SHOWN {
        let _ = writeln!(out, "      … and {} more", values.len() - ROWS_SHOWN);
    }
    let summary_only = values
        .is_empty()
        .then(|| detail.examples.iter().find_map(|e| e.diff.as_ref()))
        .flatten();
    if let Some(diff) = summary_only {
        let _ = writeln!(out, "      {}", shorten(&diff.summary, SQL_SHOWN));
    }
    if let Some(e) = detail
        .examples
        .iter()
        .find_map(|e| e.new_error.as_ref().or(e.old_error.as_ref()))
    {
        let _ = writeln!(out, "      {}: {}", e.code, shorten(&e.message, SQL_SHOWN));
    }
}

/// `1 time`, `12 times`.
fn times(n: u64) -> String {
    match n {
        1 => "1 time".into(),
        n => format!("{} times", thousands(n)),
    }
}

/// `'text'` or `NULL`.
fn quoted(value: &Option<String>) -> String {
    match value {
        Some(v) => format!("'{}'", v.replace('\'', "''")),
        None => "NULL".into(),
    }
}

/// One line of at most `max` characters.
fn shorten(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        line
    } else {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{CellChange, DiffKind, RowChange};
    use crate::store::{Example, Incident, IncidentStatus, StoredDiff};

    fn incident(
        kind: IncidentKind,
        columns: &[&str],
        changed: &[(&str, &str, &str, &str)],
    ) -> IncidentDetail {
        let diff = StoredDiff {
            kind: DiffKind::Values,
            differing_columns: columns.iter().map(|c| c.to_string()).collect(),
            summary: "values differ".into(),
            old_rows: 10,
            new_rows: 10,
            old_columns: vec![],
            new_columns: vec![],
            changed: changed
                .iter()
                .map(|(key, column, old, new)| RowChange {
                    key: key.to_string(),
                    cells: vec![CellChange {
                        column: column.to_string(),
                        old: Some(old.to_string()),
                        new: Some(new.to_string()),
                    }],
                    old_row: vec![],
                    new_row: vec![],
                })
                .collect(),
            missing: vec![],
            extra: vec![],
            column_changes: vec![],
            ordering: crate::diff::RowOrder::Total,
            truncated: false,
        };
        IncidentDetail {
            incident: Incident {
                id: "0123456789ab".into(),
                signature: String::new(),
                fingerprint: "0123456789abcdef".into(),
                kind,
                diff_kind: Some(DiffKind::Values),
                columns: columns.iter().map(|c| c.to_string()).collect(),
                old_sqlstate: None,
                new_sqlstate: None,
                client_sql:
                    "SELECT e.sys_id, f.value AS title FROM entries e JOIN entry_fields f ON true"
                        .into(),
                database: "demo".into(),
                first_seen_ms: 0,
                last_seen_ms: 0,
                count: 3,
                confirmed_count: 3,
                fingerprint_comparisons: 40,
                status: IncidentStatus::Open,
                status_by: None,
                status_at_ms: None,
                muted_until_ms: None,
                mute_reason: None,
                example_count: 1,
                ids_count: 0,
                ids_omitted: 0,
            },
            examples: vec![Example {
                id: 1,
                seen_at_ms: 0,
                database: "demo".into(),
                old_sql: String::new(),
                new_sql: String::new(),
                params: vec![],
                settings: vec![],
                snapshot_xmin: None,
                confirmed: Some(true),
                ordering: crate::diff::RowOrder::Total,
                tiebreak: crate::rewrite::TiebreakKind::Appended,
                keys: String::new(),
                old_ms: 1.0,
                new_ms: 1.0,
                diff: Some(diff),
                old_error: None,
                new_error: None,
                detail: None,
                ratio: None,
                old_plan: None,
                new_plan: None,
            }],
        }
    }

    #[test]
    fn an_incident_in_the_seeded_rows_and_column_is_the_seeded_bug() {
        let findings = Findings {
            incidents: vec![incident(
                IncidentKind::Mismatch,
                &["title"],
                &[
                    ("sys_id=100017", "title", "Café au lait", "CafÃ© au lait"),
                    ("sys_id=100242", "title", "Crème brûlée", "CrÃ¨me brÃ»lÃ©e"),
                ],
            )],
        };
        assert_eq!(findings.verdict(), Verdict::Found);
        assert_eq!(
            findings.seeded_rows_found().into_iter().collect::<Vec<_>>(),
            [100017, 100242]
        );
        assert_eq!(findings.others().count(), 0);
        let text = summary(10, &Counts::default(), &TrafficStats::default(), &findings);
        assert!(text.contains("Seeded bug found: column title differs at sys_id 100017, 100242 (2 of 5 seeded rows; not seen yet: 100468, 100613, 100891)"), "{text}");
        assert!(
            text.contains("sys_id=100017: title old='Café au lait' new='CafÃ© au lait'"),
            "{text}"
        );
        assert!(text.contains("Other incidents: 0"), "{text}");
    }

    #[test]
    fn a_difference_elsewhere_is_another_incident() {
        let findings = Findings {
            incidents: vec![
                incident(
                    IncidentKind::Mismatch,
                    &["title"],
                    &[("sys_id=300005", "title", "a", "b")],
                ),
                incident(
                    IncidentKind::Mismatch,
                    &["version"],
                    &[("sys_id=100017", "version", "1", "2")],
                ),
                incident(IncidentKind::NewError, &[], &[]),
            ],
        };
        assert_eq!(findings.others().count(), 3);
        assert_eq!(findings.verdict(), Verdict::NotFound);
        let text = summary(10, &Counts::default(), &TrafficStats::default(), &findings);
        assert!(text.contains("The seeded bug was NOT found"), "{text}");
        assert!(text.contains("Other incidents: 3"), "{text}");
    }

    #[test]
    fn long_sql_is_shortened_to_one_line() {
        assert_eq!(shorten("SELECT  a,\n  b FROM t", 100), "SELECT a, b FROM t");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }
}
