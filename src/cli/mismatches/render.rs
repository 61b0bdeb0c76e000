//! Incidents, examples and coverage as text for a terminal: aligned
//! tables for lists, labelled blocks for one incident.

use super::duration::format_duration;
use crate::alerts::message::{describe_difference, shorten_sql};
use crate::outcome::signature::IncidentKind;
use crate::store::{
    format_utc, now_ms, plan_outline, Coverage, Example, Incident, IncidentDetail, IncidentIds,
    IncidentStatus, StoredError,
};
use std::fmt::Write as _;
use std::time::Duration;

/// Characters of SQL in a table row.
const TABLE_SQL_CHARS: usize = 60;

/// Cells left-aligned under their headers, two spaces apart; the last
/// column is not padded (it holds the SQL, of any length).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
            .chain(std::iter::once(headers[i].chars().count()))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..headers.len()).map(width).collect();
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The incident list: one row per incident.
pub fn incident_table(incidents: &[Incident]) -> String {
    let rows: Vec<Vec<String>> = incidents
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                i.status.label().to_string(),
                kind(i),
                or_dash(differs(i)),
                i.count.to_string(),
                format_utc(i.first_seen_ms),
                format_utc(i.last_seen_ms),
                shorten_sql(&i.client_sql, TABLE_SQL_CHARS),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATUS",
            "KIND",
            "COLUMNS/SQLSTATE",
            "COUNT",
            "FIRST SEEN",
            "LAST SEEN",
            "SQL",
        ],
        &rows,
    )
}

/// An incident's differing row ids: a line of counts, then one row per id.
pub fn id_table(ids: &IncidentIds) -> String {
    let mut out = format!(
        "incident {}: {} distinct differing ids kept",
        ids.incident_id, ids.ids_count
    );
    if ids.ids_omitted > 0 {
        let _ = write!(
            out,
            ", {} more sightings not kept (store.max_ids_per_incident)",
            ids.ids_omitted
        );
    }
    out.push('\n');
    if ids.ids.is_empty() {
        out.push_str("no ids: the differing rows had no key in the output\n");
        return out;
    }
    let rows: Vec<Vec<String>> = ids
        .ids
        .iter()
        .map(|id| {
            let key: Vec<String> = id
                .columns
                .iter()
                .zip(&id.values)
                .map(|(c, v)| format!("{c}={}", v.as_deref().unwrap_or("NULL")))
                .collect();
            vec![
                id.change.label().to_string(),
                id.seen.to_string(),
                format_utc(id.first_seen_ms),
                format_utc(id.last_seen_ms),
                key.join(" "),
            ]
        })
        .collect();
    out.push_str(&table(
        &["CHANGE", "SEEN", "FIRST SEEN", "LAST SEEN", "KEY"],
        &rows,
    ));
    out
}

/// The coverage list: one row per fingerprint.
pub fn coverage_table(coverage: &[Coverage]) -> String {
    let rows: Vec<Vec<String>> = coverage
        .iter()
        .map(|c| {
            vec![
                c.fingerprint.clone(),
                c.compared.to_string(),
                c.matched.to_string(),
                c.mismatched.to_string(),
                c.noisy.to_string(),
                c.errored.to_string(),
                c.skipped.values().sum::<u64>().to_string(),
                c.mismatch_rate_upper_95.map_or("-".into(), percent),
                c.latency.as_ref().map_or("-".into(), |l| {
                    format!("{:.2}/{:.2}", l.old_p50_ms, l.old_p95_ms)
                }),
                c.latency.as_ref().map_or("-".into(), |l| {
                    format!("{:.2}/{:.2}", l.new_p50_ms, l.new_p95_ms)
                }),
                c.latency.as_ref().map_or("-".into(), |l| {
                    format!("{:.1}/{:.1}", l.p50_ratio, l.p95_ratio)
                }),
                shorten_sql(c.client_sql.as_deref().unwrap_or("-"), TABLE_SQL_CHARS),
            ]
        })
        .collect();
    table(
        &[
            "FINGERPRINT",
            "COMPARED",
            "MATCHED",
            "MISMATCHED",
            "NOISY",
            "ERRORED",
            "SKIPPED",
            "MAX RATE (95%)",
            "OLD MS P50/P95",
            "NEW MS P50/P95",
            "NEW/OLD P50/P95",
            "SQL",
        ],
        &rows,
    )
}

/// One incident with all its examples.
pub fn incident_detail(detail: &IncidentDetail) -> String {
    let i = &detail.incident;
    let mut out = String::new();
    let _ = writeln!(out, "incident {}  {}", i.id, status(i));
    let mut field = |label: &str, value: String| {
        let _ = writeln!(out, "  {label:<14}{value}");
    };
    field("kind", kind(i));
    if let Some(d) = differs(i) {
        field(
            if i.columns.is_empty() {
                "sqlstate"
            } else {
                "columns"
            },
            d,
        );
    }
    field("fingerprint", i.fingerprint.clone());
    field("database", i.database.clone());
    let confirmed = if i.kind == IncidentKind::Mismatch {
        format!(" ({} confirmed by a recheck)", i.confirmed_count)
    } else {
        String::new()
    };
    field(
        "count",
        format!(
            "{}{confirmed} of {} comparisons of this statement",
            i.count, i.fingerprint_comparisons
        ),
    );
    field("first seen", format_utc(i.first_seen_ms));
    field("last seen", format_utc(i.last_seen_ms));
    if i.kind == IncidentKind::Mismatch {
        let mut ids = format!(
            "{} distinct kept (pgshadow mismatches ids {})",
            i.ids_count, i.id
        );
        if i.ids_omitted > 0 {
            ids.push_str(&format!(", {} more sightings not kept", i.ids_omitted));
        }
        field("differing ids", ids);
    }
    field("signature", i.signature.clone());
    field("sql", i.client_sql.clone());
    let total = detail.examples.len();
    for (n, example) in detail.examples.iter().enumerate() {
        out.push('\n');
        out.push_str(&example_block(example, n + 1, total));
    }
    if total == 0 {
        out.push_str("\nno examples stored\n");
    }
    out
}

/// `open`, `acknowledged by alice at …`, `muted until … (1h 59m left) because "…"`.
pub fn status(i: &Incident) -> String {
    let mut s = i.status.label().to_string();
    if i.status == IncidentStatus::Muted {
        match i.muted_until_ms {
            Some(until) => {
                let left = Duration::from_millis(until.saturating_sub(now_ms()).max(0) as u64);
                let _ = write!(
                    s,
                    " until {} ({} left)",
                    format_utc(until),
                    format_duration(left)
                );
            }
            None => s.push_str(" until unmuted"),
        }
        if let Some(reason) = &i.mute_reason {
            let _ = write!(s, " because {reason:?}");
        }
    }
    if i.status != IncidentStatus::Open {
        if let Some(by) = &i.status_by {
            let _ = write!(s, " by {by}");
        }
        if let Some(at) = i.status_at_ms {
            let _ = write!(s, " at {}", format_utc(at));
        }
    }
    s
}

fn example_block(e: &Example, n: usize, total: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "example {n} of {total} (#{}, seen {})",
        e.id,
        format_utc(e.seen_at_ms)
    );
    let mut field = |label: &str, value: String| {
        let _ = writeln!(out, "  {label:<14}{value}");
    };
    field(
        "confirmed",
        match e.confirmed {
            Some(true) => "yes, a recheck in a fresh snapshot saw it again".into(),
            Some(false) => "no, a recheck in a fresh snapshot did not see it".into(),
            None => "not rechecked".into(),
        },
    );
    field(
        "snapshot xmin",
        e.snapshot_xmin.map_or("-".into(), |x| x.to_string()),
    );
    field("settings", settings(&e.settings));
    field("params", params(&e.params));
    field(
        "ordering",
        format!("{}, tiebreaker {}", e.ordering.label(), e.tiebreak.label()),
    );
    if !e.keys.is_empty() {
        field("keys", e.keys.clone());
    }
    field(
        "time",
        format!("old {:.1} ms, new {:.1} ms", e.old_ms, e.new_ms),
    );
    if let Some(ratio) = e.ratio {
        field(
            "ratio",
            format!("new/old {ratio:.1}× (median of paired samples)"),
        );
    }
    field("old sql", e.old_sql.clone());
    field("new sql", e.new_sql.clone());
    for (label, plan) in [("old plan", &e.old_plan), ("new plan", &e.new_plan)] {
        if let Some(plan) = plan {
            let outline = plan_outline(plan).replace('\n', &format!("\n  {:<14}", ""));
            field(label, outline);
        }
    }
    if let Some(error) = &e.old_error {
        field("old error", error_text(error));
    }
    if let Some(error) = &e.new_error {
        field("new error", error_text(error));
    }
    if let Some(detail) = &e.detail {
        field("detail", detail.clone());
    }
    if let Some(diff) = &e.diff {
        field("diff", diff.summary.clone());
        field(
            "rows",
            format!(
                "old {}, new {}{}",
                diff.old_rows,
                diff.new_rows,
                if diff.truncated {
                    " (beyond compare.max_rows compared by digest)"
                } else {
                    ""
                }
            ),
        );
        for change in &diff.column_changes {
            let _ = writeln!(out, "    column  {change}");
        }
        if !diff.changed.is_empty() {
            let _ = writeln!(out, "  differing rows (old → new):");
        }
        for row in &diff.changed {
            let _ = writeln!(out, "    {}", row.key);
            let width = row
                .cells
                .iter()
                .map(|c| c.column.chars().count())
                .max()
                .unwrap_or(0)
                .max(7);
            for cell in &row.cells {
                let _ = writeln!(
                    out,
                    "      {:<width$}  {} → {}",
                    cell.column,
                    value(&cell.old),
                    value(&cell.new)
                );
            }
            let _ = writeln!(
                out,
                "      {:<width$}  {}",
                "old row",
                named_row(&diff.old_columns, &row.old_row)
            );
            let _ = writeln!(
                out,
                "      {:<width$}  {}",
                "new row",
                named_row(&diff.new_columns, &row.new_row)
            );
        }
        for row in &diff.missing {
            let _ = writeln!(
                out,
                "    missing in new: {}  {}",
                row.key,
                named_row(&diff.old_columns, &row.row)
            );
        }
        for row in &diff.extra {
            let _ = writeln!(
                out,
                "    extra in new:   {}  {}",
                row.key,
                named_row(&diff.new_columns, &row.row)
            );
        }
    }
    out
}

/// A rate as a percentage with enough digits to tell small rates apart.
fn percent(rate: f64) -> String {
    let p = rate * 100.0;
    if p >= 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.3}%")
    }
}

fn kind(i: &Incident) -> String {
    match i.diff_kind {
        Some(d) => format!("{}/{}", i.kind.label(), d.label()),
        None => i.kind.label().to_string(),
    }
}

fn differs(i: &Incident) -> Option<String> {
    let d = describe_difference(
        i.kind,
        &i.columns,
        i.old_sqlstate.as_deref(),
        i.new_sqlstate.as_deref(),
    );
    (!d.is_empty()).then_some(d)
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

/// A cell as SQL would show it: quoted text, or NULL.
fn value(v: &Option<String>) -> String {
    match v {
        Some(v) => format!("'{}'", v.replace('\'', "''")),
        None => "NULL".into(),
    }
}

fn named_row(columns: &[String], row: &[Option<String>]) -> String {
    row.iter()
        .enumerate()
        .map(|(i, v)| match columns.get(i) {
            Some(name) => format!("{name}={}", value(v)),
            None => value(v),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn params(params: &[Option<String>]) -> String {
    if params.is_empty() {
        return "none".into();
    }
    params
        .iter()
        .enumerate()
        .map(|(i, v)| format!("${}={}", i + 1, value(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn settings(settings: &[(String, String)]) -> String {
    if settings.is_empty() {
        return "none".into();
    }
    settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn error_text(e: &StoredError) -> String {
    format!("{} {}: {}", e.severity, e.code, e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_every_column_but_the_last() {
        let out = table(
            &["ID", "N", "SQL"],
            &[
                vec!["a".into(), "12345".into(), "SELECT 1".into()],
                vec!["bbbb".into(), "1".into(), "SELECT 22".into()],
            ],
        );
        assert_eq!(
            out,
            "ID    N      SQL\na     12345  SELECT 1\nbbbb  1      SELECT 22\n"
        );
    }

    #[test]
    fn values_read_like_sql() {
        assert_eq!(value(&Some("it's".into())), "'it''s'");
        assert_eq!(value(&None), "NULL");
        assert_eq!(params(&[Some("7".into()), None]), "$1='7', $2=NULL");
    }
}
