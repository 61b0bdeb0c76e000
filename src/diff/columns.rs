//! The RowDescription check: same number of columns, same names, types of
//! the same family (or identical when strict).
//!
//! It runs first because rows of differently shaped results cannot be
//! compared meaningfully; a renamed or retyped output column is the
//! finding, not the thousand rows that follow from it.

use super::types::{type_name, types_match};
use super::view::View;
use std::collections::BTreeSet;

/// How the kept columns of the two sides differ.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ColumnDiff {
    /// Human descriptions, in column order.
    pub changes: Vec<String>,
    /// Names of the columns involved, sorted and deduplicated.
    pub columns: BTreeSet<String>,
}

impl ColumnDiff {
    fn add(&mut self, change: String, columns: &[&str]) {
        self.changes.push(change);
        self.columns.extend(columns.iter().map(|c| (*c).to_owned()));
    }
}

/// `None` when the columns agree.
pub(crate) fn compare_columns(old: &View<'_>, new: &View<'_>, strict: bool) -> Option<ColumnDiff> {
    let mut diff = ColumnDiff::default();
    if old.width() == new.width() {
        compare_positions(old, new, strict, &mut diff);
    } else {
        compare_by_name(old, new, strict, &mut diff);
    }
    (!diff.changes.is_empty()).then_some(diff)
}

/// Same count: column i against column i.
fn compare_positions(old: &View<'_>, new: &View<'_>, strict: bool, diff: &mut ColumnDiff) {
    for (i, (o, n)) in old.columns().zip(new.columns()).enumerate() {
        if o.name != n.name {
            let change = format!("column {}: name old={} new={}", i + 1, o.name, n.name);
            diff.add(change, &[&o.name, &n.name]);
        } else if !types_match(o.type_oid, n.type_oid, strict) {
            diff.add(type_change(o.type_oid, n.type_oid, &o.name), &[&o.name]);
        }
    }
}

/// Different counts: positions no longer line up, so columns are matched
/// by name (the first of each name).
fn compare_by_name(old: &View<'_>, new: &View<'_>, strict: bool, diff: &mut ColumnDiff) {
    diff.add(
        format!("column count old={} new={}", old.width(), new.width()),
        &[],
    );
    for o in old.columns() {
        match new.columns().find(|n| n.name == o.name) {
            None => diff.add(format!("column {} only in old", o.name), &[&o.name]),
            Some(n) if !types_match(o.type_oid, n.type_oid, strict) => {
                diff.add(type_change(o.type_oid, n.type_oid, &o.name), &[&o.name]);
            }
            Some(_) => {}
        }
    }
    for n in new.columns() {
        if !old.columns().any(|o| o.name == n.name) {
            diff.add(format!("column {} only in new", n.name), &[&n.name]);
        }
    }
}

fn type_change(old: u32, new: u32, column: &str) -> String {
    format!(
        "{} vs {} in column {column}",
        type_name(old),
        type_name(new)
    )
}

#[cfg(test)]
mod tests {
    use crate::diff::testing::{plain, table, total};
    use crate::diff::types::{INT4, INT8, TEXT, VARCHAR};
    use crate::diff::{compare, CompareOptions, DiffKind, Ordering};

    #[test]
    fn a_renamed_column_is_a_columns_mismatch() {
        let old = table(&[("id", INT4), ("title", TEXT)], &[&["1", "a"]]);
        let new = table(&[("id", INT4), ("headline", TEXT)], &[&["1", "a"]]);
        let diff = compare(&old, &new, &Ordering::Unordered, &plain()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::Columns);
        assert_eq!(diff.differing_columns, ["headline", "title"]);
        assert_eq!(
            diff.column_changes,
            ["column 2: name old=title new=headline"]
        );
        assert_eq!(diff.summary, "column 2: name old=title new=headline");
        assert_eq!((diff.old_rows, diff.new_rows), (1, 1));
        assert!(diff.changed.is_empty() && diff.missing.is_empty());
    }

    #[test]
    fn int4_vs_int8_is_equal_by_default_and_a_mismatch_when_strict() {
        let old = table(&[("id", INT4)], &[&["1"], &["2"]]);
        let new = table(&[("id", INT8)], &[&["1"], &["2"]]);
        assert_eq!(compare(&old, &new, &total(&["id"]), &plain()), None);
        let strict = CompareOptions {
            strict_types: true,
            ..plain()
        };
        let diff = compare(&old, &new, &total(&["id"]), &strict).expect("a diff");
        assert_eq!(diff.kind, DiffKind::Columns);
        assert_eq!(diff.summary, "int4 vs int8 in column id");
        assert_eq!(diff.differing_columns, ["id"]);
    }

    #[test]
    fn varchar_to_text_is_not_a_mismatch() {
        let old = table(&[("title", VARCHAR)], &[&["a"]]);
        let new = table(&[("title", TEXT)], &[&["a"]]);
        assert_eq!(compare(&old, &new, &Ordering::Unordered, &plain()), None);
    }

    #[test]
    fn a_type_change_across_families_is_a_columns_mismatch() {
        let old = table(&[("id", INT4), ("score", INT4)], &[&["1", "5"]]);
        let new = table(&[("id", INT4), ("score", TEXT)], &[&["1", "5"]]);
        let diff = compare(&old, &new, &Ordering::Unordered, &plain()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::Columns);
        assert_eq!(diff.summary, "int4 vs text in column score");
        assert_eq!(diff.differing_columns, ["score"]);
    }

    #[test]
    fn an_added_column_is_a_columns_mismatch_naming_it() {
        let old = table(&[("id", INT4)], &[&["1"]]);
        let new = table(&[("id", INT4), ("slug", TEXT)], &[&["1", "x"], &["2", "y"]]);
        let diff = compare(&old, &new, &Ordering::Unordered, &plain()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::Columns);
        assert_eq!(
            diff.column_changes,
            ["column count old=1 new=2", "column slug only in new"]
        );
        assert_eq!(diff.differing_columns, ["slug"]);
        assert_eq!((diff.old_rows, diff.new_rows), (1, 2));
    }

    #[test]
    fn ignored_columns_are_left_out() {
        let old = table(
            &[("id", INT4), ("Updated_At", TEXT), ("title", TEXT)],
            &[&["1", "monday", "a"]],
        );
        let new = table(&[("id", INT4), ("title", TEXT)], &[&["1", "a"]]);
        let opts = CompareOptions {
            ignore_columns: vec!["updated_at".to_owned()],
            ..plain()
        };
        assert_eq!(compare(&old, &new, &total(&["id"]), &opts), None);
        assert!(compare(&old, &new, &total(&["id"]), &plain()).is_some());

        // Left out of reports too.
        let changed = table(&[("id", INT4), ("title", TEXT)], &[&["1", "b"]]);
        let diff = compare(&old, &changed, &total(&["id"]), &opts).expect("a diff");
        assert_eq!(diff.differing_columns, ["title"]);
        assert_eq!(
            diff.changed[0].old_row,
            [Some("1".to_owned()), Some("a".to_owned())]
        );
    }

    #[test]
    fn column_changes_are_bounded_by_max_reported() {
        let wide = |prefix: &str| {
            let names: Vec<String> = (0..20).map(|i| format!("{prefix}{i}")).collect();
            let columns: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), INT4)).collect();
            table(&columns, &[])
        };
        let opts = CompareOptions {
            max_reported: 4,
            ..plain()
        };
        let diff = compare(&wide("a"), &wide("b"), &Ordering::Unordered, &opts).expect("a diff");
        assert_eq!(diff.column_changes.len(), 4);
        assert_eq!(diff.differing_columns.len(), 40);
        assert!(
            diff.summary.ends_with("; +17 more column differences"),
            "{}",
            diff.summary
        );
    }
}
