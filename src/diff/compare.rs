//! The entry point: does the new schema return what the old one returned?
//!
//! In order: drop ignored columns; compare the columns (a difference
//! there ends the comparison); match the rows as the query's ORDER BY
//! allows; name the differing rows by id where possible; report.

use super::columns::compare_columns;
use super::matching::find;
use super::options::CompareOptions;
use super::ordering::{Ordering, RowOrder};
use super::report::{columns_diff, rows_diff, Diff};
use super::result::ResultSet;
use super::view::{Sides, View};

/// Compares the old and the new result of one query; `None` when they
/// match.
///
/// `ordering` is what the query's ORDER BY promises; rows are compared by
/// position, within runs of equal sort keys, or as multisets accordingly
/// (see [`Diff::ordering`]). Memory stays proportional to the kept rows:
/// values are borrowed, never copied, except the few that are reported.
pub fn compare(
    old: &ResultSet,
    new: &ResultSet,
    ordering: &Ordering,
    opts: &CompareOptions,
) -> Option<Diff> {
    let old_view = View::new(old, &opts.ignore_columns);
    let new_view = View::new(new, &opts.ignore_columns);
    if let Some(columns) = compare_columns(&old_view, &new_view, opts.strict_types) {
        return Some(columns_diff(
            columns,
            old,
            new,
            RowOrder::of(ordering),
            opts,
        ));
    }
    let sides = Sides::new(old_view, new_view, opts);
    let findings = find(&sides, ordering, opts);
    rows_diff(&sides, &findings, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::testing::{partial, plain, table, titles, total, with_id, NULL};
    use crate::diff::types::{FLOAT8, INT4, NUMERIC, TEXT};
    use crate::diff::{CellChange, DiffKind, RowRef};

    fn text(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn identical_results_match_under_every_ordering() {
        let rows = titles(&[("1", "a"), ("2", "b"), ("3", NULL)]);
        for ordering in [
            Ordering::Unordered,
            total(&["id"]),
            partial(&["title"], true),
        ] {
            assert_eq!(compare(&rows, &rows, &ordering, &with_id()), None);
        }
        let empty = titles(&[]);
        assert_eq!(
            compare(&empty, &empty, &Ordering::Unordered, &plain()),
            None
        );
    }

    #[test]
    fn a_changed_value_is_reported_by_id_with_old_and_new() {
        let old = titles(&[("1", "a"), ("123", "a"), ("7", "c")]);
        let new = titles(&[("1", "a"), ("123", "b"), ("7", "c")]);
        let diff = compare(&old, &new, &total(&["id"]), &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::Values);
        assert_eq!(diff.differing_columns, ["title"]);
        assert_eq!(diff.summary, "id=123: title old='a' new='b'");
        assert_eq!(diff.ordering.label(), "total");
        let change = &diff.changed[0];
        assert_eq!(change.key, "id=123");
        assert_eq!(
            change.cells,
            [CellChange {
                column: "title".into(),
                old: text("a"),
                new: text("b")
            }]
        );
        assert_eq!(change.old_row, [text("123"), text("a")]);
        assert_eq!(change.new_row, [text("123"), text("b")]);
    }

    #[test]
    fn missing_and_extra_ids_are_listed_beside_changed_ones() {
        let old = titles(&[("5", "e"), ("9", "i"), ("123", "a")]);
        let new = titles(&[("77", "x"), ("123", "b")]);
        let diff = compare(&old, &new, &Ordering::Unordered, &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::MissingRows);
        assert_eq!(
            diff.summary,
            "id=123: title old='a' new='b'; 2 missing ids (5, 9); 1 extra id (77); row count old=3 new=2"
        );
        let keys = |refs: &[RowRef]| refs.iter().map(|r| r.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&diff.missing), ["id=5", "id=9"]);
        assert_eq!(keys(&diff.extra), ["id=77"]);
        assert_eq!(diff.changed.len(), 1);
        assert!(
            diff.differing_columns.is_empty(),
            "only Values diffs name columns"
        );
    }

    #[test]
    fn text_ids_are_quoted_in_keys() {
        let old = table(&[("sys_id", TEXT), ("n", INT4)], &[&["ab", "1"]]);
        let new = table(&[("sys_id", TEXT), ("n", INT4)], &[&["ab", "2"]]);
        let opts = CompareOptions {
            id_columns: vec!["SYS_ID".into()],
            ..plain()
        };
        let diff = compare(&old, &new, &Ordering::Unordered, &opts).expect("a diff");
        assert_eq!(diff.summary, "sys_id='ab': n old=1 new=2");
    }

    #[test]
    fn composite_keys_name_rows_and_every_differing_id_is_listed() {
        let columns = [("env_id", INT4), ("entry_id", INT4), ("title", TEXT)];
        let old = table(
            &columns,
            &[
                &["1", "5", "a"],
                &["1", "6", "b"],
                &["2", "5", "c"],
                &["2", "7", "d"],
            ],
        );
        let new = table(
            &columns,
            &[
                &["1", "5", "a"],
                &["1", "6", "B"],
                &["2", "5", "c"],
                &["3", "1", "x"],
            ],
        );
        let opts = CompareOptions {
            id_columns: vec!["env_id".into(), "entry_id".into()],
            id_unique: true,
            ..plain()
        };
        let diff = compare(&old, &new, &Ordering::Unordered, &opts).expect("a diff");
        assert_eq!(
            diff.summary,
            "(env_id, entry_id)=(1, 6): title old='b' new='B'; 1 missing id ((2, 7)); 1 extra id ((3, 1))"
        );
        assert_eq!(diff.changed[0].key, "(env_id, entry_id)=(1, 6)");
        let ids = &diff.ids;
        assert_eq!(ids.columns, ["env_id", "entry_id"]);
        assert_eq!(ids.changed, [vec![text("1"), text("6")]]);
        assert_eq!(ids.missing, [vec![text("2"), text("7")]]);
        assert_eq!(ids.extra, [vec![text("3"), text("1")]]);
        assert_eq!(ids.omitted, 0);
        // Bounded: beyond max_ids, ids are only counted.
        let bounded = CompareOptions {
            max_ids: 1,
            ..opts.clone()
        };
        let diff = compare(&old, &new, &Ordering::Unordered, &bounded).expect("a diff");
        assert_eq!(diff.ids.changed.len() + diff.ids.missing.len(), 1);
        assert_eq!(diff.ids.omitted, 2);
        // The list is for the store, not for the stored report.
        let json = serde_json::to_string(&diff).expect("serialises");
        assert!(!json.contains("\"ids\""), "{json}");
    }

    #[test]
    fn every_differing_row_id_is_listed_beyond_the_reported_few() {
        let rows: Vec<[String; 2]> = (0..50).map(|i| [i.to_string(), "t".into()]).collect();
        let changed: Vec<[String; 2]> = (0..50).map(|i| [i.to_string(), "u".into()]).collect();
        let as_table = |rows: &[[String; 2]]| {
            crate::diff::testing::table_owned(&[("id", INT4), ("title", TEXT)], rows)
        };
        let diff = compare(
            &as_table(&rows),
            &as_table(&changed),
            &total(&["id"]),
            &with_id(),
        )
        .expect("a diff");
        assert_eq!(diff.changed.len(), 10, "max_reported rows in the report");
        assert_eq!(diff.ids.changed.len(), 50, "but every id in the list");
    }

    #[test]
    fn an_id_column_missing_from_the_output_falls_back_to_rows() {
        let old = table(&[("title", TEXT)], &[&["a"], &["b"]]);
        let new = table(&[("title", TEXT)], &[&["a"], &["c"]]);
        let diff = compare(&old, &new, &Ordering::Unordered, &with_id()).expect("a diff");
        // Without ids a multiset cannot pair rows: one missing, one extra.
        assert_eq!(diff.kind, DiffKind::MissingRows);
        assert_eq!(
            diff.summary,
            "1 missing row (row 2: ('b')); 1 extra row (row 2: ('c'))"
        );
        assert_eq!(diff.missing[0].row, [text("b")]);
        assert_eq!(diff.extra[0].row, [text("c")]);
    }

    #[test]
    fn extra_rows_alone_are_an_extra_rows_mismatch() {
        let old = titles(&[("1", "a")]);
        let new = titles(&[("1", "a"), ("2", "b")]);
        let diff = compare(&old, &new, &Ordering::Unordered, &plain()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::ExtraRows);
        assert_eq!((diff.old_rows, diff.new_rows), (1, 2));
    }

    #[test]
    fn duplicated_ids_are_reported_by_position() {
        let old = titles(&[("1", "a"), ("1", "b"), ("2", "x")]);
        let new = titles(&[("1", "c"), ("1", "d"), ("2", "y")]);
        let diff = compare(&old, &new, &Ordering::Unordered, &with_id()).expect("a diff");
        assert_eq!(diff.changed.len(), 1);
        assert_eq!(diff.changed[0].key, "id=2");
        let keys: Vec<&str> = diff.missing.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["row 1", "row 2"]);
        assert_eq!(diff.extra.len(), 2);
        assert_eq!(diff.kind, DiffKind::MissingRows);
    }

    #[test]
    fn duplicate_rows_are_counted() {
        let old = titles(&[("1", "a"), ("1", "a")]);
        let new = titles(&[("1", "a")]);
        let diff = compare(&old, &new, &Ordering::Unordered, &plain()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::MissingRows);
        assert_eq!(diff.missing.len(), 1);
    }

    #[test]
    fn null_vs_empty_string_is_a_mismatch() {
        let old = titles(&[("1", NULL)]);
        let new = titles(&[("1", "")]);
        let diff = compare(&old, &new, &total(&["id"]), &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::Values);
        assert_eq!(diff.summary, "id=1: title old=NULL new=''");
        assert_eq!(diff.changed[0].cells[0].old, None);
        assert_eq!(diff.changed[0].cells[0].new, text(""));
        assert_eq!(compare(&old, &old, &total(&["id"]), &with_id()), None);
    }

    #[test]
    fn float_tolerance() {
        let columns = [("id", INT4), ("ratio", FLOAT8)];
        let old = table(
            &columns,
            &[
                &["1", "0.1"],
                &["2", "1e+20"],
                &["3", "NaN"],
                &["4", "-Infinity"],
            ],
        );
        let new = table(
            &columns,
            &[
                &["1", "0.10000000000000002"],
                &["2", "1.0000000000001e+20"],
                &["3", "NaN"],
                &["4", "-Infinity"],
            ],
        );
        assert!(
            compare(&old, &new, &total(&["id"]), &plain()).is_some(),
            "exact by default"
        );
        let tolerant = CompareOptions {
            float_tolerance: 1e-9,
            ..with_id()
        };
        assert_eq!(compare(&old, &new, &total(&["id"]), &tolerant), None);
        // Unordered and in another order, too: the second matching pass.
        let shuffled = table(
            &columns,
            &[
                &["4", "-Infinity"],
                &["2", "1e20"],
                &["1", "0.1000000001"],
                &["3", "NaN"],
            ],
        );
        assert_eq!(
            compare(&old, &shuffled, &Ordering::Unordered, &tolerant),
            None
        );
        let off = table(
            &columns,
            &[
                &["1", "0.2"],
                &["2", "1e20"],
                &["3", "NaN"],
                &["4", "-Infinity"],
            ],
        );
        let diff = compare(&old, &off, &Ordering::Unordered, &tolerant).expect("a diff");
        assert_eq!(diff.summary, "id=1: ratio old=0.1 new=0.2");
    }

    #[test]
    fn numeric_scale_makes_trailing_zeros_irrelevant() {
        let columns = [("id", INT4), ("price", NUMERIC)];
        let old = table(&columns, &[&["1", "1.50"], &["2", "2.0"], &["3", "-0.00"]]);
        let new = table(&columns, &[&["2", "2"], &["3", "0"], &["1", "1.5"]]);
        let scaled = CompareOptions {
            numeric_scale: true,
            ..with_id()
        };
        assert_eq!(compare(&old, &new, &Ordering::Unordered, &scaled), None);
        let diff = compare(&old, &new, &Ordering::Unordered, &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::Values);
        assert_eq!(diff.changed.len(), 3);
        assert_eq!(diff.differing_columns, ["price"]);
    }

    #[test]
    fn malformed_rows_do_not_panic() {
        let mut old = titles(&[("1", "a")]);
        old.rows.push(Vec::new());
        old.total_rows += 1;
        let new = titles(&[("1", "a"), (NULL, NULL)]);
        for ordering in [
            Ordering::Unordered,
            total(&["id"]),
            partial(&["title"], false),
        ] {
            assert_eq!(
                compare(&old, &new, &ordering, &with_id()),
                None,
                "a short row reads as NULLs"
            );
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::diff::result::{Column, ResultSet};
    use crate::diff::testing::{partial, total, with_id};
    use crate::diff::types::{INT4, NUMERIC, TEXT};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Option<Bytes>> {
        proptest::option::of("[ab0-9.]{0,3}".prop_map(Bytes::from))
    }

    /// Rows of any width, as a broken server might send them.
    fn ragged_rows() -> impl Strategy<Value = Vec<Vec<Option<Bytes>>>> {
        proptest::collection::vec(proptest::collection::vec(value(), 0..5), 0..12)
    }

    fn result(rows: Vec<Vec<Option<Bytes>>>) -> ResultSet {
        let columns = [("id", INT4), ("title", TEXT), ("price", NUMERIC)]
            .iter()
            .map(|(name, type_oid)| Column {
                name: (*name).into(),
                type_oid: *type_oid,
            })
            .collect();
        ResultSet {
            columns,
            total_rows: rows.len() as u64,
            rows,
            ..ResultSet::default()
        }
    }

    fn orderings() -> [Ordering; 3] {
        [
            Ordering::Unordered,
            total(&["id"]),
            partial(&["title"], true),
        ]
    }

    proptest! {
        #[test]
        fn a_result_matches_itself(rows in ragged_rows()) {
            let set = result(rows);
            for ordering in orderings() {
                prop_assert_eq!(compare(&set, &set, &ordering, &with_id()), None);
            }
        }

        #[test]
        fn a_shuffled_result_matches_when_unordered(rows in ragged_rows(), seed in any::<u64>()) {
            let mut shuffled = rows.clone();
            let len = shuffled.len().max(1) as u64;
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, ((seed.wrapping_mul(i as u64 + 7)) % len) as usize % (i + 1));
            }
            let opts = CompareOptions { numeric_scale: true, float_tolerance: 1e-9, ..with_id() };
            prop_assert_eq!(compare(&result(rows), &result(shuffled), &Ordering::Unordered, &opts), None);
        }

        #[test]
        fn any_two_results_compare_without_panicking(a in ragged_rows(), b in ragged_rows()) {
            let opts = CompareOptions { max_reported: 2, ..with_id() };
            for ordering in orderings() {
                if let Some(diff) = compare(&result(a.clone()), &result(b.clone()), &ordering, &opts) {
                    prop_assert!(diff.changed.len() <= 2 && diff.missing.len() <= 2);
                    prop_assert!(!diff.summary.is_empty());
                }
            }
        }
    }
}
