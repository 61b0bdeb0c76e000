//! Comparing results whose ORDER BY does not identify every row.
//!
//! Rows with equal sort keys (a *run*) may come in any order, so each run
//! is compared as a multiset, and the runs must come in the same sequence.
//! When the result is a page, the runs at its edges may be cut: OFFSET
//! skipped an unknown share of the first run's tied rows, LIMIT (or
//! `max_rows`) dropped some of the last run's, and which ones is up to the
//! plan. Such an edge run is compared by its keys and row count, and its
//! unmatched rows are kept apart, so that only a row found on both sides
//! (by a unique id) with other values counts against it. Complete runs
//! between the edges are compared in full.

use super::multiset::{match_rows, Unmatched};
use super::view::{Sides, View};
use std::ops::Range;

/// An edge of a page where a run of ties may be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edge {
    /// The first run, after the rows OFFSET skipped.
    Top,
    /// The last run, before LIMIT (or `max_rows`) cut the rest.
    Bottom,
}

/// What comparing run by run found.
#[derive(Debug, Default)]
pub(crate) struct RunsOutcome {
    /// Rows without an equal partner.
    pub unmatched: Unmatched,
    /// Old row index from which the order differs while the rows agree.
    pub order_at: Option<usize>,
    /// Row counts (old, new) of cut edge runs whose counts differ.
    pub edge_counts: Vec<(Edge, usize, usize)>,
    /// Unmatched rows of the cut runs: missing or extra there is expected.
    pub cut_unmatched: Unmatched,
}

/// Compares the two sides run by run. `keys` are column positions (the
/// same on both sides); `top` says the first run may be cut (OFFSET),
/// `bottom` the last one (LIMIT, `max_rows`).
pub(crate) fn compare_runs(
    sides: &Sides<'_>,
    keys: &[usize],
    top: bool,
    bottom: bool,
) -> RunsOutcome {
    let mut old_runs = split(&sides.old, sides, keys);
    let mut new_runs = split(&sides.new, sides, keys);
    let mut outcome = RunsOutcome::default();
    for (edge, cut) in [(Edge::Top, top), (Edge::Bottom, bottom)] {
        if !cut {
            continue;
        }
        if let Some((old, new)) = take_edge(sides, keys, edge, &mut old_runs, &mut new_runs) {
            if old.len() != new.len() {
                outcome.edge_counts.push((edge, old.len(), new.len()));
            }
            // Top rows come before bottom rows: the order holds.
            outcome.cut_unmatched.append(match_rows(sides, old, new));
        }
    }
    let (unmatched, order_at) = match first_divergence(sides, keys, &old_runs, &new_runs) {
        None => compare_aligned(sides, &old_runs, &new_runs),
        Some(diverges_at) => {
            let all =
                |runs: &[Range<usize>]| runs.iter().flat_map(Clone::clone).collect::<Vec<_>>();
            let unmatched = match_rows(sides, all(&old_runs), all(&new_runs));
            // The same rows, with their keys in another sequence: the
            // order is wrong. Otherwise the changed rows tell the story.
            let order_at = unmatched.is_empty().then_some(diverges_at);
            (unmatched, order_at)
        }
    };
    outcome.unmatched = unmatched;
    outcome.order_at = order_at;
    outcome
}

/// Runs with the same keys in the same sequence: each run is a multiset.
fn compare_aligned(
    sides: &Sides<'_>,
    old_runs: &[Range<usize>],
    new_runs: &[Range<usize>],
) -> (Unmatched, Option<usize>) {
    let mut pooled = Unmatched::default();
    for (old, new) in old_runs.iter().zip(new_runs) {
        pooled.append(match_rows(sides, old.clone(), new.clone()));
    }
    if pooled.is_empty() {
        return (pooled, None);
    }
    // A row can only be in another run if a key value repeats out of
    // sequence; such a row is misplaced, not changed.
    let rest = match_rows(
        sides,
        pooled.old.iter().copied(),
        pooled.new.iter().copied(),
    );
    let order_at = pooled
        .old
        .iter()
        .copied()
        .find(|row| rest.old.binary_search(row).is_err());
    (rest, order_at)
}

/// Consecutive rows with equal sort keys, as index ranges.
fn split(view: &View<'_>, sides: &Sides<'_>, keys: &[usize]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for row in 0..view.len() {
        match runs.last_mut() {
            Some(run) if same_keys(sides, keys, (view, run.start), (view, row)) => {
                run.end = row + 1
            }
            _ => runs.push(row..row + 1),
        }
    }
    runs
}

/// Whether two rows (each from either side) have equal sort keys.
fn same_keys(
    sides: &Sides<'_>,
    keys: &[usize],
    a: (&View<'_>, usize),
    b: (&View<'_>, usize),
) -> bool {
    keys.iter()
        .all(|&k| sides.rules.equal(k, a.0.cell(a.1, k), b.0.cell(b.1, k)))
}

/// Removes and returns the first (`Top`) or last (`Bottom`) run of each
/// side when both have the same keys.
fn take_edge(
    sides: &Sides<'_>,
    keys: &[usize],
    edge: Edge,
    old_runs: &mut Vec<Range<usize>>,
    new_runs: &mut Vec<Range<usize>>,
) -> Option<(Range<usize>, Range<usize>)> {
    let (old, new) = match edge {
        Edge::Top => (old_runs.first()?, new_runs.first()?),
        Edge::Bottom => (old_runs.last()?, new_runs.last()?),
    };
    if !same_keys(
        sides,
        keys,
        (&sides.old, old.start),
        (&sides.new, new.start),
    ) {
        return None;
    }
    match edge {
        Edge::Top => Some((old_runs.remove(0), new_runs.remove(0))),
        Edge::Bottom => Some((old_runs.pop()?, new_runs.pop()?)),
    }
}

/// The old row index where the run sequences first differ in keys or
/// number; `None` when they agree.
fn first_divergence(
    sides: &Sides<'_>,
    keys: &[usize],
    old_runs: &[Range<usize>],
    new_runs: &[Range<usize>],
) -> Option<usize> {
    let differs = old_runs
        .iter()
        .zip(new_runs)
        .position(|(o, n)| !same_keys(sides, keys, (&sides.old, o.start), (&sides.new, n.start)));
    match differs {
        Some(i) => Some(old_runs.get(i).map_or(0, |r| r.start)),
        None if old_runs.len() == new_runs.len() => None,
        None => {
            let i = old_runs.len().min(new_runs.len());
            Some(old_runs.get(i).map_or(sides.old.len(), |r| r.start))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::diff::testing::{page, partial, plain, table, with_id};
    use crate::diff::types::{INT4, TEXT};
    use crate::diff::{compare, DiffKind, ResultSet};

    /// `(id, day, title)` ordered by `day`, which ties.
    fn by_day(rows: &[(&str, &str, &str)]) -> ResultSet {
        let rows: Vec<[&str; 3]> = rows.iter().map(|(i, d, t)| [*i, *d, *t]).collect();
        let rows: Vec<&[&str]> = rows.iter().map(|r| r.as_slice()).collect();
        table(&[("id", INT4), ("day", TEXT), ("title", TEXT)], &rows)
    }

    #[test]
    fn ties_within_a_run_in_a_different_order_are_not_a_mismatch() {
        let old = by_day(&[
            ("1", "mon", "a"),
            ("2", "mon", "b"),
            ("3", "tue", "c"),
            ("4", "tue", "d"),
        ]);
        let new = by_day(&[
            ("2", "mon", "b"),
            ("1", "mon", "a"),
            ("4", "tue", "d"),
            ("3", "tue", "c"),
        ]);
        assert_eq!(
            compare(&old, &new, &partial(&["day"], false), &with_id()),
            None
        );
    }

    #[test]
    fn a_row_crossing_into_another_run_is_a_mismatch() {
        let old = by_day(&[("1", "mon", "a"), ("2", "mon", "b"), ("3", "tue", "c")]);
        let new = by_day(&[("1", "mon", "a"), ("2", "tue", "b"), ("3", "tue", "c")]);
        let diff = compare(&old, &new, &partial(&["day"], false), &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::Values);
        assert_eq!(diff.ordering.label(), "tie_runs");
        assert_eq!(diff.summary, "id=2: day old='mon' new='tue'");
    }

    #[test]
    fn a_changed_value_inside_a_run_is_found() {
        let old = by_day(&[("1", "mon", "a"), ("2", "mon", "b")]);
        let new = by_day(&[("2", "mon", "x"), ("1", "mon", "a")]);
        let diff = compare(&old, &new, &partial(&["day"], false), &with_id()).expect("a diff");
        assert_eq!(diff.summary, "id=2: title old='b' new='x'");
        let diff = compare(&old, &new, &partial(&["day"], false), &plain()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::MissingRows);
        assert_eq!(
            diff.summary,
            "1 missing row (row 2: (2, 'mon', 'b')); 1 extra row (row 1: (2, 'mon', 'x'))"
        );
    }

    #[test]
    fn runs_in_another_sequence_are_an_order_mismatch() {
        let old = by_day(&[("1", "mon", "a"), ("2", "tue", "b")]);
        let new = by_day(&[("2", "tue", "b"), ("1", "mon", "a")]);
        let diff = compare(&old, &new, &partial(&["day"], false), &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::Order);
        assert_eq!(
            diff.summary,
            "sort-key runs in a different order from row 1 (old id=1, new id=2)"
        );
    }

    #[test]
    fn limit_cut_in_a_partial_order_compares_the_last_run_by_count() {
        // LIMIT 3 over mon, mon, tue, tue, tue: which tue made it is up to the plan.
        let old = by_day(&[("1", "mon", "a"), ("2", "mon", "b"), ("3", "tue", "c")]);
        let new = by_day(&[("2", "mon", "b"), ("1", "mon", "a"), ("5", "tue", "e")]);
        assert_eq!(
            compare(&old, &new, &partial(&["day"], true), &with_id()),
            None
        );
        // Without the LIMIT, the same rows are a real difference.
        let diff = compare(&old, &new, &partial(&["day"], false), &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::MissingRows);
        // Earlier runs are still compared in full.
        let changed = by_day(&[("2", "mon", "b"), ("1", "mon", "z"), ("5", "tue", "e")]);
        let diff = compare(&old, &changed, &partial(&["day"], true), &with_id()).expect("a diff");
        assert_eq!(diff.summary, "id=1: title old='a' new='z'");
    }

    #[test]
    fn a_changed_row_in_a_cut_last_run_is_still_found_by_id() {
        let old = by_day(&[("1", "mon", "a"), ("3", "tue", "c"), ("4", "tue", "d")]);
        let new = by_day(&[("1", "mon", "a"), ("4", "tue", "x"), ("5", "tue", "e")]);
        let diff = compare(&old, &new, &partial(&["day"], true), &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::Values);
        assert_eq!(diff.summary, "id=4: title old='d' new='x'");
        assert!(diff.missing.is_empty() && diff.extra.is_empty());
        // Without ids a changed row and a replaced one look alike.
        assert_eq!(
            compare(&old, &new, &partial(&["day"], true), &plain()),
            None
        );
    }

    #[test]
    fn a_cut_last_run_of_another_size_is_reported_by_count() {
        let old = by_day(&[("1", "mon", "a"), ("3", "tue", "c"), ("4", "tue", "d")]);
        let new = by_day(&[("1", "mon", "a"), ("5", "tue", "e")]);
        let diff = compare(&old, &new, &partial(&["day"], true), &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::MissingRows);
        assert_eq!(
            diff.summary,
            "last run before the cut: old 2 rows, new 1; row count old=3 new=2"
        );
        assert!(diff.missing.is_empty());
    }

    #[test]
    fn a_cut_last_run_with_another_key_is_compared_in_full() {
        let old = by_day(&[("1", "mon", "a"), ("3", "tue", "c")]);
        let new = by_day(&[("1", "mon", "a"), ("6", "wed", "f")]);
        let diff = compare(&old, &new, &partial(&["day"], true), &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::MissingRows);
        assert_eq!(diff.summary, "1 missing id (3); 1 extra id (6)");
    }

    #[test]
    fn an_offset_cut_first_run_is_compared_by_count() {
        // OFFSET 1 over mon, mon, mon, tue: which two mons made it is up to
        // the plan.
        let old = by_day(&[("1", "mon", "a"), ("2", "mon", "b"), ("4", "tue", "d")]);
        let new = by_day(&[("3", "mon", "c"), ("1", "mon", "a"), ("4", "tue", "d")]);
        assert_eq!(
            compare(&old, &new, &page(&["day"], true, false), &with_id()),
            None
        );
        // Without the offset the first run is complete, and differs.
        let diff = compare(&old, &new, &page(&["day"], false, false), &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::MissingRows);
        // A complete run after the top edge is still compared in full.
        let changed = by_day(&[("3", "mon", "c"), ("1", "mon", "a"), ("4", "tue", "x")]);
        let diff =
            compare(&old, &changed, &page(&["day"], true, false), &with_id()).expect("a diff");
        assert_eq!(diff.summary, "id=4: title old='d' new='x'");
    }

    #[test]
    fn both_edges_of_a_page_may_hold_other_members_of_their_runs() {
        let old = by_day(&[
            ("1", "mon", "a"),
            ("2", "mon", "b"),
            ("5", "tue", "e"),
            ("7", "wed", "g"),
            ("8", "wed", "h"),
        ]);
        let new = by_day(&[
            ("3", "mon", "c"),
            ("1", "mon", "a"),
            ("5", "tue", "e"),
            ("9", "wed", "i"),
            ("7", "wed", "g"),
        ]);
        assert_eq!(
            compare(&old, &new, &page(&["day"], true, true), &with_id()),
            None
        );
        // A changed value in the complete middle run is found.
        let mut wrong = new.clone();
        wrong.rows[2][2] = Some(bytes::Bytes::from_static(b"E"));
        let diff = compare(&old, &wrong, &page(&["day"], true, true), &plain()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::MissingRows);
        assert_eq!(diff.ordering.label(), "tie_runs");
    }

    #[test]
    fn a_page_inside_one_run_is_compared_by_count() {
        let old = by_day(&[("1", "mon", "a"), ("2", "mon", "b")]);
        let new = by_day(&[("3", "mon", "c"), ("4", "mon", "d")]);
        assert_eq!(
            compare(&old, &new, &page(&["day"], true, true), &with_id()),
            None
        );
        let short = by_day(&[("3", "mon", "c")]);
        let diff = compare(&old, &short, &page(&["day"], true, true), &with_id()).expect("a diff");
        assert_eq!(
            diff.summary,
            "first run after the offset: old 2 rows, new 1; row count old=2 new=1"
        );
    }

    #[test]
    fn a_changed_row_in_a_cut_run_counts_only_with_a_unique_id() {
        let old = by_day(&[("1", "mon", "a"), ("3", "tue", "c"), ("4", "tue", "d")]);
        let new = by_day(&[("1", "mon", "a"), ("4", "tue", "x"), ("5", "tue", "e")]);
        let partial_key = crate::diff::CompareOptions {
            id_unique: false,
            ..with_id()
        };
        // `id` might be only part of the row's identity (a join's first
        // relation): two different rows could share it.
        assert_eq!(
            compare(&old, &new, &partial(&["day"], true), &partial_key),
            None
        );
        assert!(compare(&old, &new, &partial(&["day"], true), &with_id()).is_some());
    }

    #[test]
    fn runs_follow_the_sort_keys_the_output_has() {
        use crate::diff::{Ordering, SortKey};
        // ORDER BY day, <a key not in the output>: runs of `day` are
        // coarser but just as sound.
        let ordering = Ordering::Ordered {
            keys: vec![SortKey::Name("day".into()), SortKey::Unknown],
            total: false,
            offset: false,
            limit: true,
        };
        let old = by_day(&[("1", "mon", "a"), ("2", "mon", "b"), ("3", "tue", "c")]);
        let new = by_day(&[("2", "mon", "b"), ("1", "mon", "a"), ("5", "tue", "e")]);
        assert_eq!(compare(&old, &new, &ordering, &plain()), None);
        let moved = by_day(&[("1", "mon", "a"), ("3", "tue", "c"), ("2", "mon", "b")]);
        let diff = compare(&old, &moved, &ordering, &plain()).expect("a diff");
        assert_eq!(diff.ordering.label(), "tie_runs");
    }
}

#[cfg(test)]
mod never_cries_wolf {
    use crate::diff::testing::{page, table_owned};
    use crate::diff::types::{INT4, TEXT};
    use crate::diff::{compare, CompareOptions};
    use proptest::prelude::*;

    /// Rows `(id, key)` of a table, and one page of it ordered by `key`
    /// only, as a plan would return it with ties in the order of `shuffle`.
    fn page_of(rows: &[(u32, u8)], shuffle: u64, offset: usize, limit: usize) -> Vec<[String; 2]> {
        let mut sorted: Vec<(u8, u64, u32)> = rows
            .iter()
            .map(|&(id, key)| {
                (
                    key,
                    (u64::from(id)).wrapping_mul(shuffle | 1).rotate_left(17),
                    id,
                )
            })
            .collect();
        sorted.sort();
        sorted
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(key, _, id)| [id.to_string(), key.to_string()])
            .collect()
    }

    fn result(rows: &[[String; 2]]) -> crate::diff::ResultSet {
        table_owned(&[("id", INT4), ("key", TEXT)], rows)
    }

    proptest! {
        #[test]
        fn two_plans_of_the_same_page_always_match(
            keys in proptest::collection::vec(0u8..4, 1..40),
            a in any::<u64>(),
            b in any::<u64>(),
            offset in 0usize..30,
            limit in 1usize..30,
        ) {
            let rows: Vec<(u32, u8)> = keys.iter().enumerate().map(|(i, &k)| (i as u32, k)).collect();
            let old = result(&page_of(&rows, a, offset, limit));
            let new = result(&page_of(&rows, b, offset, limit));
            let ordering = page(&["key"], offset > 0, true);
            for opts in [
                CompareOptions::default(),
                CompareOptions { id_columns: vec!["id".into()], id_unique: true, ..CompareOptions::default() },
            ] {
                prop_assert_eq!(compare(&old, &new, &ordering, &opts), None);
            }
        }
    }
}
