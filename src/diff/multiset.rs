//! Matching rows regardless of their order.
//!
//! Every row is keyed by its normalised values and counted, so duplicates
//! are matched one for one. The keys borrow the received bytes: memory is
//! one small vector per kept row, never a copy of the values.
//!
//! Float tolerance is not an equivalence (hashing cannot see that `1.0`
//! and `1.0000001` are "equal"), so when it applies, the rows left over by
//! hashing get a second pass: grouped by their other columns, each new row
//! takes the first old row of its group within tolerance. Only leftovers
//! take part, so the quadratic worst case needs many nearly-equal floats.

use super::normalise::ValueRules;
use super::view::{Sides, View};
use std::collections::HashMap;

/// A row's normalised values, borrowed from the result.
type RowKey<'a> = Vec<Option<&'a [u8]>>;

/// Rows that found no equal partner on the other side, as row indices in
/// ascending order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Unmatched {
    /// Old rows without a partner.
    pub old: Vec<usize>,
    /// New rows without a partner.
    pub new: Vec<usize>,
}

impl Unmatched {
    /// Whether every row found a partner.
    pub(crate) fn is_empty(&self) -> bool {
        self.old.is_empty() && self.new.is_empty()
    }

    /// Appends `other`'s rows, which must all come after the rows already
    /// here (as when runs are compared front to back), so the order holds.
    pub(crate) fn append(&mut self, other: Unmatched) {
        self.old.extend(other.old);
        self.new.extend(other.new);
    }
}

/// Matches the given old rows against the given new rows as multisets.
pub(crate) fn match_rows(
    sides: &Sides<'_>,
    old_rows: impl IntoIterator<Item = usize>,
    new_rows: impl IntoIterator<Item = usize>,
) -> Unmatched {
    let mut by_key: HashMap<RowKey<'_>, Vec<usize>> = HashMap::new();
    for row in old_rows {
        by_key
            .entry(row_key(&sides.old, &sides.rules, row, false))
            .or_default()
            .push(row);
    }
    // Pop from the back, so the earliest duplicate is matched first.
    by_key.values_mut().for_each(|rows| rows.reverse());
    let mut unmatched_new = Vec::new();
    for row in new_rows {
        let key = row_key(&sides.new, &sides.rules, row, false);
        if by_key.get_mut(&key).and_then(Vec::pop).is_none() {
            unmatched_new.push(row);
        }
    }
    let mut unmatched = Unmatched {
        old: by_key.into_values().flatten().collect(),
        new: unmatched_new,
    };
    unmatched.old.sort_unstable();
    if sides.rules.has_tolerance() && !unmatched.is_empty() {
        unmatched = match_within_tolerance(sides, unmatched);
    }
    unmatched
}

/// The second pass for float tolerance (see the module docs).
fn match_within_tolerance(sides: &Sides<'_>, unmatched: Unmatched) -> Unmatched {
    let mut groups: HashMap<RowKey<'_>, Vec<usize>> = HashMap::new();
    for row in unmatched.old {
        groups
            .entry(row_key(&sides.old, &sides.rules, row, true))
            .or_default()
            .push(row);
    }
    let mut unmatched_new = Vec::new();
    for new in unmatched.new {
        let key = row_key(&sides.new, &sides.rules, new, true);
        let partner = groups.get_mut(&key).and_then(|group| {
            let at = group.iter().position(|&old| sides.rows_equal(old, new))?;
            Some(group.remove(at))
        });
        if partner.is_none() {
            unmatched_new.push(new);
        }
    }
    let mut old: Vec<usize> = groups.into_values().flatten().collect();
    old.sort_unstable();
    Unmatched {
        old,
        new: unmatched_new,
    }
}

/// The row's key; `skip_tolerant` leaves out the float columns compared
/// within a tolerance.
fn row_key<'a>(view: &View<'a>, rules: &ValueRules, row: usize, skip_tolerant: bool) -> RowKey<'a> {
    (0..view.width())
        .filter(|&c| !(skip_tolerant && rules.is_tolerant(c)))
        .map(|c| rules.key(c, view.cell(row, c)))
        .collect()
}
