//! The diff as logs, the mismatch store, the web page and the CLI see it.
//!
//! A report is bounded whatever the size of the results: at most
//! `max_reported` rows per list, values cut to a readable length, and a
//! summary that fits on one log line.

use super::columns::ColumnDiff;
use super::identity::{Lone, Pair};
use super::matching::RowFindings;
use super::options::CompareOptions;
use super::ordering::RowOrder;
use super::render::{list, plural, report_value, summary_value, SUMMARY_CELLS, SUMMARY_ITEMS};
use super::result::{kept_columns, ResultSet};
use super::runs::Edge;
use super::types::reads_as_number;
use super::view::{Sides, View};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What is wrong, in one word: part of an incident's signature, so that
/// one bug makes one incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// The columns differ in count, name or type.
    Columns,
    /// Rows of the old result are not in the new one.
    MissingRows,
    /// The new result has rows the old one does not.
    ExtraRows,
    /// The same rows (by id or position) hold different values.
    Values,
    /// The same rows in another order, where the order is part of the
    /// query's meaning.
    Order,
}

impl DiffKind {
    /// A stable label for metrics, logs and the store.
    pub fn label(self) -> &'static str {
        match self {
            DiffKind::Columns => "columns",
            DiffKind::MissingRows => "missing_rows",
            DiffKind::ExtraRows => "extra_rows",
            DiffKind::Values => "values",
            DiffKind::Order => "order",
        }
    }
}

/// How two results differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    /// The most important kind found (Columns > MissingRows > ExtraRows >
    /// Values > Order).
    pub kind: DiffKind,
    /// For `Values`, the columns whose values differ; for `Columns`, the
    /// columns that differ in name, type or presence; else empty. Sorted,
    /// deduplicated.
    pub differing_columns: Vec<String>,
    /// One line for logs: `id=123: title old='a' new='b'; 2 missing ids (5, 9)`.
    pub summary: String,
    /// Rows the old query returned (all of them, kept or not).
    pub old_rows: u64,
    /// Rows the new query returned.
    pub new_rows: u64,
    /// Names of the old result's compared columns (ignored ones left
    /// out), in the order of [`RowChange::old_row`] and the old side's
    /// [`RowRef::row`]: lets a page show whole rows side by side.
    pub old_columns: Vec<String>,
    /// Names of the new result's compared columns, in the order of
    /// [`RowChange::new_row`] and the new side's [`RowRef::row`].
    pub new_columns: Vec<String>,
    /// Rows with different values, at most `max_reported`.
    pub changed: Vec<RowChange>,
    /// Rows only in the old result, at most `max_reported`.
    pub missing: Vec<RowRef>,
    /// Rows only in the new result, at most `max_reported`.
    pub extra: Vec<RowRef>,
    /// Descriptions of RowDescription differences, at most `max_reported`.
    pub column_changes: Vec<String>,
    /// How rows were compared: `total` (by position), `tie_runs` (as
    /// multisets within runs of equal sort keys), `unordered` (as
    /// multisets), `order_unverified` (as multisets, because a sort key
    /// is not an output column).
    pub ordering: RowOrder,
    /// Some rows were beyond `max_rows` and compared through digests only.
    /// Rows listed as missing or extra may then be in the other side's
    /// digested tail; the kind follows the row counts and digests.
    pub truncated: bool,
    /// The id of every differing row named by id (bounded by
    /// `max_ids`): what the mismatch store keeps per incident. Not part of
    /// the serialised report, which lists `max_reported` rows.
    #[serde(skip)]
    pub ids: RowIds,
}

/// The ids of the rows a diff found different, by how they differ.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowIds {
    /// The id columns (a key of one or several columns).
    pub columns: Vec<String>,
    /// Ids of rows on both sides with different values.
    pub changed: Vec<Vec<Option<String>>>,
    /// Ids of rows only in the old result.
    pub missing: Vec<Vec<Option<String>>>,
    /// Ids of rows only in the new result.
    pub extra: Vec<Vec<Option<String>>>,
    /// Differing ids beyond `max_ids`, not listed.
    pub omitted: u64,
}

impl RowIds {
    /// Whether no id is listed.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty() && self.extra.is_empty()
    }
}

/// A row present on both sides whose values differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    /// `id=123`, or `row 7` (old position) without a usable id.
    pub key: String,
    /// The differing cells.
    pub cells: Vec<CellChange>,
    /// The whole old row (ignored columns left out).
    pub old_row: Vec<Option<String>>,
    /// The whole new row.
    pub new_row: Vec<Option<String>>,
}

/// One differing value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellChange {
    /// Column name.
    pub column: String,
    /// Old value, `None` for NULL.
    pub old: Option<String>,
    /// New value.
    pub new: Option<String>,
}

/// A row found on one side only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowRef {
    /// `id=123`, or `row 7` (position on its own side).
    pub key: String,
    /// The row (ignored columns left out).
    pub row: Vec<Option<String>>,
}

/// The report for results whose columns differ.
pub(crate) fn columns_diff(
    columns: ColumnDiff,
    old: &ResultSet,
    new: &ResultSet,
    ordering: RowOrder,
    opts: &CompareOptions,
) -> Diff {
    let mut summary = columns
        .changes
        .iter()
        .take(SUMMARY_CELLS)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if columns.changes.len() > SUMMARY_CELLS {
        let more = columns.changes.len() - SUMMARY_CELLS;
        summary.push_str(&format!("; +{}", plural(more, "more column difference")));
    }
    Diff {
        kind: DiffKind::Columns,
        differing_columns: columns.columns.into_iter().collect(),
        summary,
        old_rows: old.total_rows,
        new_rows: new.total_rows,
        old_columns: kept_names(old, opts),
        new_columns: kept_names(new, opts),
        changed: Vec::new(),
        missing: Vec::new(),
        extra: Vec::new(),
        column_changes: columns
            .changes
            .into_iter()
            .take(opts.max_reported)
            .collect(),
        ordering,
        truncated: old.truncated() || new.truncated(),
        ids: RowIds::default(),
    }
}

/// The report for results with the same columns; `None` when they match.
pub(crate) fn rows_diff(
    sides: &Sides<'_>,
    findings: &RowFindings,
    opts: &CompareOptions,
) -> Option<Diff> {
    let (old_set, new_set) = (sides.old.set(), sides.new.set());
    if findings.is_empty() && old_set.total_rows == new_set.total_rows {
        return None;
    }
    let truncated = old_set.truncated() || new_set.truncated();
    let kind = kind_of(findings, old_set.total_rows, new_set.total_rows, truncated);
    let named = &findings.named;
    let differing_columns = match kind {
        DiffKind::Values => differing_columns(sides, &named.changed),
        _ => Vec::new(),
    };
    let id = findings.id.as_deref();
    let max = opts.max_reported;
    Some(Diff {
        ids: row_ids(sides, findings, opts),
        kind,
        differing_columns,
        summary: Summary { sides, findings }.line(),
        old_rows: old_set.total_rows,
        new_rows: new_set.total_rows,
        old_columns: sides.old.columns().map(|c| c.name.clone()).collect(),
        new_columns: sides.new.columns().map(|c| c.name.clone()).collect(),
        changed: named
            .changed
            .iter()
            .take(max)
            .map(|p| row_change(sides, id, p))
            .collect(),
        missing: named
            .missing
            .iter()
            .take(max)
            .map(|l| row_ref(&sides.old, id, l))
            .collect(),
        extra: named
            .extra
            .iter()
            .take(max)
            .map(|l| row_ref(&sides.new, id, l))
            .collect(),
        column_changes: Vec::new(),
        ordering: findings.ordering,
        truncated,
    })
}

/// Bytes of id values one diff lists at most, whatever `max_ids` says: the
/// list travels with the outcome to the mismatch store, through a queue
/// that may hold thousands of outcomes.
const MAX_ID_LIST_BYTES: usize = 256 * 1024;

/// The ids of every row the findings name by id, at most `max_ids` (and
/// [`MAX_ID_LIST_BYTES`]); the rest are counted.
fn row_ids(sides: &Sides<'_>, findings: &RowFindings, opts: &CompareOptions) -> RowIds {
    let Some(id) = findings.id.as_deref() else {
        return RowIds::default();
    };
    let named = &findings.named;
    let changed = named
        .changed
        .iter()
        .filter(|p| p.by_id)
        .map(|p| (0, &sides.old, p.old));
    let missing = named
        .missing
        .iter()
        .filter(|l| l.by_id)
        .map(|l| (1, &sides.old, l.row));
    let extra = named
        .extra
        .iter()
        .filter(|l| l.by_id)
        .map(|l| (2, &sides.new, l.row));
    let mut ids = RowIds {
        columns: id
            .iter()
            .map(|&c| sides.old.column_name(c).to_owned())
            .collect(),
        ..RowIds::default()
    };
    let (mut listed, mut bytes) = (0, 0);
    for (list, view, row) in changed.chain(missing).chain(extra) {
        if listed >= opts.max_ids || bytes >= MAX_ID_LIST_BYTES {
            ids.omitted += 1;
            continue;
        }
        let value: Vec<Option<String>> = id
            .iter()
            .map(|&c| report_value(view.cell(row, c)))
            .collect();
        bytes += value.iter().flatten().map(String::len).sum::<usize>() + id.len();
        listed += 1;
        match list {
            0 => ids.changed.push(value),
            1 => ids.missing.push(value),
            _ => ids.extra.push(value),
        }
    }
    ids
}

/// Names of `set`'s columns that take part in the comparison.
fn kept_names(set: &ResultSet, opts: &CompareOptions) -> Vec<String> {
    kept_columns(&set.columns, &opts.ignore_columns)
        .into_iter()
        .filter_map(|i| set.columns.get(i).map(|c| c.name.clone()))
        .collect()
}

/// Listed rows decide first; row counts only when no row is listed as
/// missing or extra (the listed rows are the better explanation).
///
/// When rows were cut at `max_rows`, a row listed as missing may be in the
/// other side's tail (the kept windows need not cover the same rows), so
/// only the counts and digests decide: the kind stays the same however
/// the windows fall, and one bug keeps making one incident.
fn kind_of(findings: &RowFindings, old_rows: u64, new_rows: u64, truncated: bool) -> DiffKind {
    let named = &findings.named;
    let listed = !truncated;
    if listed && !named.missing.is_empty() {
        DiffKind::MissingRows
    } else if listed && !named.extra.is_empty() {
        DiffKind::ExtraRows
    } else if old_rows > new_rows {
        DiffKind::MissingRows
    } else if new_rows > old_rows {
        DiffKind::ExtraRows
    } else if findings.order_only() {
        DiffKind::Order
    } else {
        DiffKind::Values
    }
}

fn differing_columns(sides: &Sides<'_>, changed: &[Pair]) -> Vec<String> {
    let mut columns = BTreeSet::new();
    for pair in changed {
        for c in sides.differing_columns(pair.old, pair.new) {
            columns.insert(sides.old.column_name(c));
        }
    }
    columns.into_iter().map(str::to_owned).collect()
}

fn row_change(sides: &Sides<'_>, id: Option<&[usize]>, pair: &Pair) -> RowChange {
    let cells = sides
        .differing_columns(pair.old, pair.new)
        .into_iter()
        .map(|c| CellChange {
            column: sides.old.column_name(c).to_owned(),
            old: report_value(sides.old.cell(pair.old, c)),
            new: report_value(sides.new.cell(pair.new, c)),
        })
        .collect();
    RowChange {
        key: key(&sides.old, id.filter(|_| pair.by_id), pair.old),
        cells,
        old_row: sides.old.cells(pair.old).map(report_value).collect(),
        new_row: sides.new.cells(pair.new).map(report_value).collect(),
    }
}

fn row_ref(view: &View<'_>, id: Option<&[usize]>, lone: &Lone) -> RowRef {
    RowRef {
        key: key(view, id.filter(|_| lone.by_id), lone.row),
        row: view.cells(lone.row).map(report_value).collect(),
    }
}

/// `id=123` (or `(env_id, entry_id)=(1, 5)` for a composite key) when
/// named by id, `row 7` otherwise.
fn key(view: &View<'_>, id: Option<&[usize]>, row: usize) -> String {
    match id {
        Some([one]) => format!("{}={}", view.column_name(*one), value(view, row, *one)),
        Some(id) => {
            let names: Vec<&str> = id.iter().map(|&c| view.column_name(c)).collect();
            format!("({})={}", names.join(", "), id_value(view, row, id))
        }
        None => format!("row {}", row + 1),
    }
}

/// The id of a row as a summary lists it: `5`, or `(1, 5)` for a
/// composite key.
fn id_value(view: &View<'_>, row: usize, id: &[usize]) -> String {
    match id {
        [one] => value(view, row, *one),
        _ => {
            let values: Vec<String> = id.iter().map(|&c| value(view, row, c)).collect();
            format!("({})", values.join(", "))
        }
    }
}

/// A cell for the summary, quoted unless its column holds numbers.
fn value(view: &View<'_>, row: usize, column: usize) -> String {
    let number = view
        .column(column)
        .is_some_and(|c| reads_as_number(c.type_oid));
    summary_value(view.cell(row, column), number)
}

/// Builds the one-line summary from the parts that apply.
struct Summary<'s, 'a> {
    sides: &'s Sides<'a>,
    findings: &'s RowFindings,
}

impl Summary<'_, '_> {
    fn line(&self) -> String {
        let f = self.findings;
        let (old_set, new_set) = (self.sides.old.set(), self.sides.new.set());
        let mut parts = Vec::new();
        parts.extend(self.changed());
        parts.extend(self.lone("missing", &self.sides.old, &f.named.missing));
        parts.extend(self.lone("extra", &self.sides.new, &f.named.extra));
        for &(edge, old, new) in &f.edge_counts {
            let which = match edge {
                Edge::Top => "first run after the offset",
                Edge::Bottom => "last run before the cut",
            };
            parts.push(format!("{which}: old {old} rows, new {new}"));
        }
        if old_set.total_rows != new_set.total_rows {
            parts.push(format!(
                "row count old={} new={}",
                old_set.total_rows, new_set.total_rows
            ));
        }
        if f.digest_differs {
            let kept = old_set.rows.len().min(new_set.rows.len());
            parts.push(format!(
                "rows beyond the first {kept} differ (compared by digest)"
            ));
        }
        parts.extend(self.order());
        parts.join("; ")
    }

    /// `id=123: title old='a' new='b' (+4 more changed ids)`.
    fn changed(&self) -> Option<String> {
        let changed = &self.findings.named.changed;
        let first = changed.first()?;
        let sides = self.sides;
        let columns = sides.differing_columns(first.old, first.new);
        let cells = columns.iter().map(|&c| {
            let (old, new) = (
                value(&sides.old, first.old, c),
                value(&sides.new, first.new, c),
            );
            format!("{} old={old} new={new}", sides.old.column_name(c))
        });
        let id = self.findings.id.as_deref().filter(|_| first.by_id);
        let mut part = format!(
            "{}: {}",
            key(&sides.old, id, first.old),
            list(cells, columns.len(), SUMMARY_CELLS)
        );
        if changed.len() > 1 {
            let noun = if id.is_some() {
                "more changed id"
            } else {
                "more changed row"
            };
            part.push_str(&format!(" (+{})", plural(changed.len() - 1, noun)));
        }
        Some(part)
    }

    /// `2 missing ids (5, 9)`, or `1 extra row (row 4: (5, 'x'))`.
    fn lone(&self, what: &str, view: &View<'_>, rows: &[Lone]) -> Option<String> {
        let first = rows.first()?;
        let id = self.findings.id.as_deref();
        match id {
            Some(id) if rows.iter().all(|l| l.by_id) => {
                let ids = rows.iter().map(|l| id_value(view, l.row, id));
                let noun = format!("{what} id");
                Some(format!(
                    "{} ({})",
                    plural(rows.len(), &noun),
                    list(ids, rows.len(), SUMMARY_ITEMS)
                ))
            }
            _ => {
                let values = (0..view.width()).map(|c| value(view, first.row, c));
                let shown = list(values, view.width(), SUMMARY_ITEMS);
                let key = key(view, id.filter(|_| first.by_id), first.row);
                let noun = format!("{what} row");
                Some(format!("{} ({key}: ({shown}))", plural(rows.len(), &noun)))
            }
        }
    }

    /// `same rows in a different order from row 3 (old id=5, new id=7)`.
    fn order(&self) -> Option<String> {
        let row = self.findings.order_at?;
        let sides = self.sides;
        let what = match self.findings.ordering {
            RowOrder::Total => "same rows in a different order",
            _ => "sort-key runs in a different order",
        };
        let mut part = format!("{what} from row {}", row + 1);
        if let Some(id) = self.findings.id.as_deref() {
            if row < sides.old.len() && row < sides.new.len() {
                let (old, new) = (
                    key(&sides.old, Some(id), row),
                    key(&sides.new, Some(id), row),
                );
                part.push_str(&format!(" (old {old}, new {new})"));
            }
        }
        Some(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::testing::{plain, titles, total, with_id};
    use crate::diff::{compare, Ordering};

    fn many(n: usize, title: &str) -> ResultSet {
        let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let rows: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), title)).collect();
        titles(&rows)
    }

    #[test]
    fn reports_are_bounded_by_max_reported() {
        let opts = CompareOptions {
            max_reported: 3,
            ..with_id()
        };
        let diff =
            compare(&many(100, "a"), &many(100, "b"), &total(&["id"]), &opts).expect("a diff");
        assert_eq!(diff.changed.len(), 3);
        assert_eq!(
            diff.summary,
            "id=0: title old='a' new='b' (+99 more changed ids)"
        );

        let diff =
            compare(&many(100, "a"), &many(0, "a"), &Ordering::Unordered, &opts).expect("a diff");
        assert_eq!(diff.missing.len(), 3);
        assert_eq!(
            diff.summary,
            "100 missing ids (0, 1, 2, 3, 4, …); row count old=100 new=0"
        );

        let diff = compare(
            &many(0, "a"),
            &many(100, "a"),
            &Ordering::Unordered,
            &plain(),
        )
        .expect("a diff");
        assert_eq!(diff.extra.len(), 10, "the default bound");
        assert_eq!(diff.kind, DiffKind::ExtraRows);
    }

    #[test]
    fn a_summary_is_one_line_of_bounded_length() {
        let long = format!("{}\n{}", "x".repeat(5000), "y".repeat(5000));
        let diff = compare(
            &titles(&[("1", &long)]),
            &titles(&[("1", "b")]),
            &total(&["id"]),
            &with_id(),
        )
        .expect("a diff");
        assert!(!diff.summary.contains('\n'));
        assert!(diff.summary.len() < 200, "{}", diff.summary);
        let stored = diff.changed[0].cells[0].old.clone().unwrap_or_default();
        assert!(stored.chars().count() <= 1001);
    }

    #[test]
    fn only_values_diffs_name_the_differing_columns() {
        let old = titles(&[("1", "a"), ("2", "b")]);
        let new = titles(&[("1", "z")]);
        let diff = compare(&old, &new, &total(&["id"]), &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::MissingRows);
        assert!(diff.differing_columns.is_empty());
        assert_eq!(diff.changed[0].key, "id=1");
    }

    #[test]
    fn kinds_have_stable_labels() {
        let labels: Vec<&str> = [
            DiffKind::Columns,
            DiffKind::MissingRows,
            DiffKind::ExtraRows,
            DiffKind::Values,
            DiffKind::Order,
        ]
        .into_iter()
        .map(DiffKind::label)
        .collect();
        assert_eq!(
            labels,
            ["columns", "missing_rows", "extra_rows", "values", "order"]
        );
    }

    #[test]
    fn a_diff_serialises_with_the_labels() {
        let diff = compare(
            &titles(&[("1", "a")]),
            &titles(&[("1", "b")]),
            &total(&["id"]),
            &with_id(),
        )
        .expect("a diff");
        let json = serde_json::to_value(&diff).unwrap_or_default();
        assert_eq!(json["kind"], "values");
        assert_eq!(json["ordering"], "total");
        assert_eq!(json["changed"][0]["key"], "id=1");
        assert_eq!(json["changed"][0]["cells"][0]["new"], "b");
        assert_eq!(json["old_columns"], serde_json::json!(["id", "title"]));
        assert_eq!(json["new_columns"], serde_json::json!(["id", "title"]));
    }
}
