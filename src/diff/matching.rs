//! Which rows differ, given how the query orders them.
//!
//! - A total order fixes every row's position: row i against row i. Rows
//!   that are all there but elsewhere are an order mismatch.
//! - A partial order fixes only the sequence of runs of equal sort keys
//!   (see [`runs`](super::runs)). Sort keys are followed as far as they
//!   are output columns: runs of a prefix of the keys are unions of the
//!   runs of all of them, so comparing those is as sound, only coarser.
//! - No order, or an order the diff cannot follow (its first key is not an
//!   output column): rows are compared as multisets; but when LIMIT or
//!   OFFSET cut such a result, which rows made it onto the page is up to
//!   the plan, so only the row counts are compared (and, with a unique id,
//!   rows found on both sides).
//!
//! Rows beyond `max_rows` are compared through digests: the ordered one
//! for a total order; otherwise the order-insensitive digest of the whole
//! result, because which rows were kept is itself up to the plan.

use super::identity::{by_position, pair_by_id, Lone, Named, Pair};
use super::multiset::{match_rows, Unmatched};
use super::options::CompareOptions;
use super::ordering::{Ordering, RowOrder, SortKey};
use super::result::whole_unordered_digest;
use super::runs::{compare_runs, Edge};
use super::view::{Sides, View};

/// Everything found about the rows; turned into a report by
/// [`report`](super::report).
#[derive(Debug)]
pub(crate) struct RowFindings {
    /// How rows were compared.
    pub ordering: RowOrder,
    /// Positions of the id columns, when both sides have all of them.
    pub id: Option<Vec<usize>>,
    /// The differing rows.
    pub named: Named,
    /// Old row index from which the same rows come in another order.
    pub order_at: Option<usize>,
    /// Row counts (old, new) of cut edge runs whose counts differ.
    pub edge_counts: Vec<(Edge, usize, usize)>,
    /// Rows beyond `max_rows` differ.
    pub digest_differs: bool,
}

impl RowFindings {
    /// Whether nothing differs (row counts aside).
    pub(crate) fn is_empty(&self) -> bool {
        let n = &self.named;
        n.changed.is_empty()
            && n.missing.is_empty()
            && n.extra.is_empty()
            && self.order_at.is_none()
            && self.edge_counts.is_empty()
            && !self.digest_differs
    }

    /// Whether the rows agree and only their order differs.
    pub(crate) fn order_only(&self) -> bool {
        let n = &self.named;
        self.order_at.is_some()
            && n.changed.is_empty()
            && n.missing.is_empty()
            && n.extra.is_empty()
            && self.edge_counts.is_empty()
            && !self.digest_differs
    }
}

/// How the rows will be matched.
enum MatchPlan {
    Positional,
    /// Runs of equal `keys`; `top`/`bottom`: the first/last run may be cut.
    Runs {
        keys: Vec<usize>,
        top: bool,
        bottom: bool,
    },
    /// Multisets; `cut`: LIMIT/OFFSET chose the rows, compare counts only.
    Multiset {
        label: RowOrder,
        cut: bool,
    },
}

impl MatchPlan {
    /// How this plan compares rows.
    fn row_order(&self) -> RowOrder {
        match self {
            MatchPlan::Positional => RowOrder::Total,
            MatchPlan::Runs { .. } => RowOrder::TieRuns,
            MatchPlan::Multiset { label, .. } => *label,
        }
    }
}

/// Compares the rows of two results whose columns agree.
pub(crate) fn find(sides: &Sides<'_>, ordering: &Ordering, opts: &CompareOptions) -> RowFindings {
    let id = (!opts.id_columns.is_empty())
        .then(|| {
            opts.id_columns
                .iter()
                .map(|name| {
                    let old = sides.old.find(name)?;
                    (sides.new.find(name)? == old).then_some(old)
                })
                .collect::<Option<Vec<usize>>>()
        })
        .flatten();
    // Only a whole key tells that a row of a cut run is the same row.
    let unique_id = id.clone().filter(|_| opts.id_unique);
    let (old_set, new_set) = (sides.old.set(), sides.new.set());
    let truncated = old_set.truncated() || new_set.truncated();
    let whole_digests_differ = || {
        truncated && whole_unordered_digest(old_set, opts) != whole_unordered_digest(new_set, opts)
    };
    let plan = plan(ordering, sides);
    let mut findings = RowFindings {
        ordering: plan.row_order(),
        id: id.clone(),
        named: Named::default(),
        order_at: None,
        edge_counts: Vec::new(),
        digest_differs: false,
    };
    match plan {
        MatchPlan::Positional => {
            (findings.named, findings.order_at) = positional(sides, id.as_deref());
            findings.digest_differs = truncated && old_set.tail.ordered != new_set.tail.ordered;
        }
        MatchPlan::Runs { keys, top, bottom } => {
            let outcome = compare_runs(sides, &keys, top, bottom || truncated);
            findings.named = name(sides, id.as_deref(), &outcome.unmatched);
            if let Some(id) = &unique_id {
                // In a cut run only the same row with other values counts.
                let cut = pair_by_id(sides, id, &outcome.cut_unmatched);
                findings.named.changed.extend(cut.changed);
            }
            findings.order_at = outcome.order_at;
            findings.edge_counts = outcome.edge_counts;
            findings.digest_differs = whole_digests_differ();
        }
        MatchPlan::Multiset { cut: true, .. } => {
            // Which rows made it onto the page is up to the plan: only the
            // counts (compared by the report) and rows found on both sides
            // by a unique id tell.
            if let Some(id) = &unique_id {
                let unmatched = match_rows(sides, 0..sides.old.len(), 0..sides.new.len());
                findings.named.changed = pair_by_id(sides, id, &unmatched).changed;
            }
        }
        MatchPlan::Multiset { cut: false, .. } => {
            findings.digest_differs = whole_digests_differ();
            // The whole result agrees: a difference among the kept rows
            // only says the two plans returned the rows in another order.
            if !truncated || findings.digest_differs {
                let unmatched = match_rows(sides, 0..sides.old.len(), 0..sides.new.len());
                findings.named = name(sides, id.as_deref(), &unmatched);
            }
        }
    }
    findings
}

fn plan(ordering: &Ordering, sides: &Sides<'_>) -> MatchPlan {
    match ordering {
        Ordering::Unordered => MatchPlan::Multiset {
            label: RowOrder::Unordered,
            cut: false,
        },
        Ordering::Ordered { total: true, .. } => MatchPlan::Positional,
        Ordering::Ordered {
            keys,
            offset,
            limit,
            ..
        } => {
            let resolved: Vec<usize> = keys.iter().map_while(|k| resolve(k, sides)).collect();
            if resolved.is_empty() {
                MatchPlan::Multiset {
                    label: RowOrder::OrderUnverified,
                    cut: *offset || *limit,
                }
            } else {
                MatchPlan::Runs {
                    keys: resolved,
                    top: *offset,
                    bottom: *limit,
                }
            }
        }
    }
}

/// The column position of a sort key, when it names the same kept column
/// on both sides. A key on an ignored column is unresolved: its values
/// are not trusted to agree.
fn resolve(key: &SortKey, sides: &Sides<'_>) -> Option<usize> {
    let on = |view: &View<'_>| match key {
        SortKey::Ordinal(n) => view.position_of_original(n.checked_sub(1)?),
        SortKey::Name(name) => view.find(name),
        SortKey::Unknown => None,
    };
    let old = on(&sides.old)?;
    (on(&sides.new)? == old).then_some(old)
}

fn name(sides: &Sides<'_>, id: Option<&[usize]>, unmatched: &Unmatched) -> Named {
    match id {
        Some(id) => pair_by_id(sides, id, unmatched),
        None => by_position(unmatched),
    }
}

/// Row i against row i. Returns the differing rows, or where the order
/// starts to differ when all rows are there.
fn positional(sides: &Sides<'_>, id: Option<&[usize]>) -> (Named, Option<usize>) {
    let (old_len, new_len) = (sides.old.len(), sides.new.len());
    let common = old_len.min(new_len);
    let differing: Vec<usize> = (0..common).filter(|&i| !sides.rows_equal(i, i)).collect();
    if differing.is_empty() && old_len == new_len {
        return (Named::default(), None);
    }
    let unmatched = match_rows(sides, 0..old_len, 0..new_len);
    if unmatched.is_empty() {
        return (Named::default(), differing.first().copied());
    }
    if let Some(id) = id {
        return (pair_by_id(sides, id, &unmatched), None);
    }
    let lone = |row| Lone { row, by_id: false };
    let named = Named {
        changed: differing
            .into_iter()
            .map(|i| Pair {
                old: i,
                new: i,
                by_id: false,
            })
            .collect(),
        missing: (common..old_len).map(lone).collect(),
        extra: (common..new_len).map(lone).collect(),
    };
    (named, None)
}

#[cfg(test)]
mod tests {
    use crate::diff::testing::{
        partial, plain, table_kept, table_normalised, titles, total, with_id,
    };
    use crate::diff::types::{INT4, TEXT};
    use crate::diff::{compare, CompareOptions, DiffKind, Ordering, SortKey};

    #[test]
    fn position_only_differences_under_a_total_order_are_order_mismatches() {
        let old = titles(&[("1", "a"), ("2", "b"), ("3", "c")]);
        let new = titles(&[("1", "a"), ("3", "c"), ("2", "b")]);
        let diff = compare(&old, &new, &total(&["id"]), &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::Order);
        assert_eq!(diff.ordering.label(), "total");
        assert_eq!(
            diff.summary,
            "same rows in a different order from row 2 (old id=2, new id=3)"
        );
        assert!(diff.changed.is_empty() && diff.missing.is_empty() && diff.extra.is_empty());
        // Without a promised order, the same rows are simply equal.
        assert_eq!(compare(&old, &new, &Ordering::Unordered, &with_id()), None);
    }

    #[test]
    fn a_changed_row_under_a_total_order_without_id_is_reported_by_position() {
        let old = titles(&[("1", "a"), ("2", "b"), ("3", "c")]);
        let new = titles(&[("1", "a"), ("2", "B"), ("3", "c")]);
        let diff = compare(&old, &new, &total(&["id"]), &plain()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::Values);
        assert_eq!(diff.summary, "row 2: title old='b' new='B'");
        assert_eq!(diff.changed[0].key, "row 2");
    }

    #[test]
    fn a_shorter_result_under_a_total_order_without_id_lists_the_rows_it_lacks() {
        let old = titles(&[("1", "a"), ("2", "b"), ("3", "c")]);
        let new = titles(&[("1", "a"), ("3", "c")]);
        let diff = compare(&old, &new, &total(&["id"]), &plain()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::MissingRows);
        assert_eq!(diff.changed[0].key, "row 2");
        assert_eq!(diff.missing[0].key, "row 3");
        // With ids, the report says exactly which row is gone.
        let diff = compare(&old, &new, &total(&["id"]), &with_id()).expect("a diff");
        assert_eq!(diff.summary, "1 missing id (2); row count old=3 new=2");
        assert!(diff.changed.is_empty());
    }

    #[test]
    fn unresolvable_sort_keys_fall_back_to_multiset() {
        let old = titles(&[("1", "a"), ("2", "b")]);
        let new = titles(&[("2", "b"), ("1", "a")]);
        let ordering = Ordering::Ordered {
            keys: vec![SortKey::Unknown, SortKey::Name("id".into())],
            total: false,
            offset: false,
            limit: false,
        };
        assert_eq!(compare(&old, &new, &ordering, &with_id()), None);
        let changed = titles(&[("2", "b"), ("1", "z")]);
        let diff = compare(&old, &changed, &ordering, &with_id()).expect("a diff");
        assert_eq!(diff.ordering.label(), "order_unverified");
        assert_eq!(diff.summary, "id=1: title old='a' new='z'");
    }

    #[test]
    fn sort_keys_resolve_by_ordinal_and_by_name_in_any_case() {
        let old = titles(&[("1", "a"), ("1", "b")]);
        let new = titles(&[("1", "b"), ("1", "a")]);
        for key in [SortKey::Ordinal(1), SortKey::Name("ID".into())] {
            let ordering = Ordering::Ordered {
                keys: vec![key],
                total: false,
                offset: false,
                limit: false,
            };
            assert_eq!(compare(&old, &new, &ordering, &plain()), None);
            let moved = titles(&[("1", "b"), ("2", "a")]);
            let diff = compare(&old, &moved, &ordering, &plain()).expect("a diff");
            assert_eq!(diff.ordering.label(), "tie_runs");
        }
        let out_of_range = Ordering::Ordered {
            keys: vec![SortKey::Ordinal(3)],
            total: false,
            offset: false,
            limit: false,
        };
        let diff = compare(&old, &titles(&[("2", "x")]), &out_of_range, &plain()).expect("a diff");
        assert_eq!(diff.ordering.label(), "order_unverified");
    }

    #[test]
    fn a_page_whose_order_the_diff_cannot_see_is_compared_by_count() {
        // ORDER BY a column not in the output, LIMIT: which rows made the
        // page is up to the plan.
        let ordering = Ordering::Ordered {
            keys: vec![SortKey::Unknown],
            total: false,
            offset: true,
            limit: true,
        };
        let old = titles(&[("1", "a"), ("2", "b")]);
        let new = titles(&[("3", "c"), ("1", "a")]);
        assert_eq!(compare(&old, &new, &ordering, &with_id()), None);
        // A row on both sides with other values still counts (unique id).
        let changed = titles(&[("3", "c"), ("1", "z")]);
        let diff = compare(&old, &changed, &ordering, &with_id()).expect("a diff");
        assert_eq!(diff.summary, "id=1: title old='a' new='z'");
        assert_eq!(diff.ordering.label(), "order_unverified");
        // And so do the row counts.
        let short = titles(&[("1", "a")]);
        let diff = compare(&old, &short, &ordering, &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::MissingRows);
    }

    #[test]
    fn a_sort_key_on_an_ignored_column_is_unverified() {
        let old = titles(&[("1", "a"), ("2", "b")]);
        let new = titles(&[("2", "b"), ("1", "a")]);
        let opts = CompareOptions {
            ignore_columns: vec!["id".into()],
            ..plain()
        };
        assert_eq!(compare(&old, &new, &partial(&["id"], false), &opts), None);
        let diff = compare(
            &old,
            &titles(&[("1", "c")]),
            &partial(&["id"], false),
            &opts,
        )
        .expect("a diff");
        assert_eq!(diff.ordering.label(), "order_unverified");
    }

    fn numbered(n: usize, changed_at: Option<usize>) -> Vec<[String; 2]> {
        (0..n)
            .map(|i| {
                let title = if Some(i) == changed_at {
                    "changed".into()
                } else {
                    format!("t{i}")
                };
                [i.to_string(), title]
            })
            .collect()
    }

    fn kept(rows: &[[String; 2]], max_rows: usize) -> crate::diff::ResultSet {
        let rows: Vec<Vec<&str>> = rows
            .iter()
            .map(|r| r.iter().map(String::as_str).collect())
            .collect();
        let rows: Vec<&[&str]> = rows.iter().map(Vec::as_slice).collect();
        table_kept(&[("id", INT4), ("title", TEXT)], &rows, max_rows)
    }

    #[test]
    fn rows_beyond_max_rows_are_compared_by_digest() {
        let old = kept(&numbered(50, None), 10);
        let same = kept(&numbered(50, None), 10);
        let changed = kept(&numbered(50, Some(42)), 10);
        for ordering in [total(&["id"]), partial(&["id"], false), Ordering::Unordered] {
            assert_eq!(compare(&old, &same, &ordering, &with_id()), None);
            let diff = compare(&old, &changed, &ordering, &with_id()).expect("a diff");
            assert_eq!(diff.kind, DiffKind::Values);
            assert!(diff.truncated);
            assert_eq!(
                diff.summary,
                "rows beyond the first 10 differ (compared by digest)"
            );
            assert!(diff.changed.is_empty());
        }
    }

    #[test]
    fn rows_beyond_max_rows_that_are_missing_count_as_missing_rows() {
        let old = kept(&numbered(50, None), 10);
        let new = kept(&numbered(49, None), 10);
        let diff = compare(&old, &new, &Ordering::Unordered, &with_id()).expect("a diff");
        assert_eq!(diff.kind, DiffKind::MissingRows);
        assert_eq!((diff.old_rows, diff.new_rows), (50, 49));
        assert!(diff.truncated);
    }

    #[test]
    fn an_unordered_result_may_keep_other_rows_than_the_other_side() {
        let rows = numbered(30, None);
        let mut reversed = rows.clone();
        reversed.reverse();
        let old = kept(&rows, 10);
        let new = kept(&reversed, 10);
        assert_eq!(compare(&old, &new, &Ordering::Unordered, &with_id()), None);
        let diff = compare(&old, &new, &total(&["id"]), &with_id()).expect("a diff");
        assert_eq!(diff.ordering.label(), "total");
    }

    #[test]
    fn when_rows_are_cut_the_kind_follows_counts_and_digests() {
        let rows = numbered(30, None);
        let mut changed = numbered(30, Some(25));
        changed.reverse();
        let diff = compare(
            &kept(&rows, 10),
            &kept(&changed, 10),
            &Ordering::Unordered,
            &with_id(),
        )
        .expect("a diff");
        // The kept windows hold different ids; that is not what differs.
        assert!(!diff.missing.is_empty());
        assert_eq!(diff.kind, DiffKind::Values);
        assert!(diff.truncated);
    }

    #[test]
    fn a_normalised_tail_follows_the_ignore_list() {
        let opts = CompareOptions {
            ignore_columns: vec!["title".into()],
            ..with_id()
        };
        let columns = [("id", INT4), ("title", TEXT)];
        let old = table_normalised(&columns, &[&["1", "a"], &["2", "b"], &["3", "c"]], 1, &opts);
        let new = table_normalised(&columns, &[&["1", "x"], &["2", "y"], &["3", "z"]], 1, &opts);
        assert!(old.tail.normalised);
        for ordering in [total(&["id"]), Ordering::Unordered] {
            assert_eq!(compare(&old, &new, &ordering, &opts), None);
        }
        // Digested as sent, the ignored column still shows beyond max_rows.
        let raw_old = table_kept(&columns, &[&["1", "a"], &["2", "b"]], 1);
        let raw_new = table_kept(&columns, &[&["1", "x"], &["2", "y"]], 1);
        assert!(compare(&raw_old, &raw_new, &Ordering::Unordered, &opts).is_some());
    }
}
