//! Comparing results whose ORDER BY does not identify every row.
//!
//! Rows with equal sort keys (a *run*) may come in any order, so each run
//! is compared as a multiset, and the runs must come in the same sequence.
//! When the result was cut (LIMIT, or `max_rows`), which of the tied rows
//! made it into the last run is up to the plan: that run is compared by
//! its row count, and its unmatched rows are kept apart, so that only a
//! row found on both sides (by id) with other values counts against it.

use super::multiset::{match_rows, Unmatched};
use super::view::{Sides, View};
use std::ops::Range;

/// What comparing run by run found.
#[derive(Debug, Default)]
pub(crate) struct RunsOutcome {
    /// Rows without an equal partner.
    pub unmatched: Unmatched,
    /// Old row index from which the order differs while the rows agree.
    pub order_at: Option<usize>,
    /// Row counts (old, new) of the last, cut run, when they differ.
    pub cut_run: Option<(usize, usize)>,
    /// Unmatched rows of the cut runs: missing or extra there is expected.
    pub cut_unmatched: Unmatched,
}

/// Compares the two sides run by run. `keys` are column positions (the
/// same on both sides); `cut` says the last run may be incomplete.
pub(crate) fn compare_runs(sides: &Sides<'_>, keys: &[usize], cut: bool) -> RunsOutcome {
    let mut old_runs = split(&sides.old, sides, keys);
    let mut new_runs = split(&sides.new, sides, keys);
    let mut outcome = RunsOutcome::default();
    if let Some((old, new)) = cut
        .then(|| drop_cut_runs(sides, keys, &mut old_runs, &mut new_runs))
        .flatten()
    {
        outcome.cut_run = (old.len() != new.len()).then_some((old.len(), new.len()));
        outcome.cut_unmatched = match_rows(sides, old, new);
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

/// Removes and returns the last run of each side when both have the same
/// keys.
fn drop_cut_runs(
    sides: &Sides<'_>,
    keys: &[usize],
    old_runs: &mut Vec<Range<usize>>,
    new_runs: &mut Vec<Range<usize>>,
) -> Option<(Range<usize>, Range<usize>)> {
    let (old, new) = (old_runs.last()?, new_runs.last()?);
    if !same_keys(
        sides,
        keys,
        (&sides.old, old.start),
        (&sides.new, new.start),
    ) {
        return None;
    }
    Some((old_runs.pop()?, new_runs.pop()?))
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
    use crate::diff::testing::{partial, plain, table, with_id};
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
        assert_eq!(diff.ordering, "tie_runs");
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
}
