//! Naming the rows that differ: by id when the result has the id columns
//! (a relation's key, one column or several), by position otherwise.
//!
//! An on-call engineer acts on `id=123: title old='a' new='b'` and on the
//! sets of missing and extra ids; "row 7" only helps when there is nothing
//! better. Ids that are not unique among the differing rows cannot pair
//! rows reliably, so those rows are named by position.

use super::multiset::Unmatched;
use super::view::Sides;
use std::collections::HashMap;

/// A row of one side, and how the report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lone {
    /// Row index on its side.
    pub row: usize,
    /// Named by its id (`id=5`) rather than its position (`row 6`).
    pub by_id: bool,
}

/// An old row and the new row it became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pair {
    /// Old row index.
    pub old: usize,
    /// New row index.
    pub new: usize,
    /// Named by its id rather than its (old) position.
    pub by_id: bool,
}

/// Differing rows, named.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Named {
    /// Rows present on both sides with different values.
    pub changed: Vec<Pair>,
    /// Rows only in the old result.
    pub missing: Vec<Lone>,
    /// Rows only in the new result.
    pub extra: Vec<Lone>,
}

/// The unmatched rows carrying one id value.
#[derive(Debug, Default)]
struct Sightings {
    old: Vec<usize>,
    new: Vec<usize>,
}

/// Pairs unmatched rows by the values of the `id` columns: one old and one
/// new row with the same id changed, a lone one is missing or extra, and
/// rows of an id that repeats on one side are named by position.
pub(crate) fn pair_by_id(sides: &Sides<'_>, id: &[usize], unmatched: &Unmatched) -> Named {
    let mut by_id: HashMap<Vec<Option<&[u8]>>, Sightings> = HashMap::new();
    for &row in &unmatched.old {
        let key = id
            .iter()
            .map(|&c| sides.rules.key(c, sides.old.cell(row, c)))
            .collect();
        by_id.entry(key).or_default().old.push(row);
    }
    for &row in &unmatched.new {
        let key = id
            .iter()
            .map(|&c| sides.rules.key(c, sides.new.cell(row, c)))
            .collect();
        by_id.entry(key).or_default().new.push(row);
    }
    let mut named = Named::default();
    for Sightings { old, new } in by_id.into_values() {
        match (old.as_slice(), new.as_slice()) {
            ([old], [new]) => named.changed.push(Pair {
                old: *old,
                new: *new,
                by_id: true,
            }),
            ([row], []) => named.missing.push(Lone {
                row: *row,
                by_id: true,
            }),
            ([], [row]) => named.extra.push(Lone {
                row: *row,
                by_id: true,
            }),
            _ => {
                named
                    .missing
                    .extend(old.iter().map(|&row| Lone { row, by_id: false }));
                named
                    .extra
                    .extend(new.iter().map(|&row| Lone { row, by_id: false }));
            }
        }
    }
    named.changed.sort_unstable_by_key(|p| p.old);
    named.missing.sort_unstable_by_key(|l| l.row);
    named.extra.sort_unstable_by_key(|l| l.row);
    named
}

/// Without an id column: rows only in old are missing, rows only in new
/// are extra, each named by position.
pub(crate) fn by_position(unmatched: &Unmatched) -> Named {
    let lone = |rows: &[usize]| rows.iter().map(|&row| Lone { row, by_id: false }).collect();
    Named {
        changed: Vec::new(),
        missing: lone(&unmatched.old),
        extra: lone(&unmatched.new),
    }
}
