//! A result set seen through the ignore list, without copying it.
//!
//! Ignored columns are dropped from both sides before anything else is
//! looked at: they take no part in the column check, in row equality, in
//! sort keys or in reports. Rows are read in place; a cell missing from a
//! malformed row reads as NULL, so bad input cannot panic.

use super::normalise::ValueRules;
use super::options::CompareOptions;
use super::result::{kept_columns, Column, ResultSet};

/// One side's result without its ignored columns. Column numbers passed
/// to its methods are positions among the kept columns.
#[derive(Debug)]
pub(crate) struct View<'a> {
    set: &'a ResultSet,
    keep: Vec<usize>,
}

impl<'a> View<'a> {
    /// `set` without the columns in `ignore_columns`.
    pub(crate) fn new(set: &'a ResultSet, ignore_columns: &[String]) -> Self {
        let keep = kept_columns(&set.columns, ignore_columns);
        Self { set, keep }
    }

    /// The whole result, ignored columns included.
    pub(crate) fn set(&self) -> &'a ResultSet {
        self.set
    }

    /// Number of kept columns.
    pub(crate) fn width(&self) -> usize {
        self.keep.len()
    }

    /// Kept columns, in order.
    pub(crate) fn columns(&self) -> impl Iterator<Item = &'a Column> + '_ {
        self.keep.iter().filter_map(|&i| self.set.columns.get(i))
    }

    /// The kept column at `column`.
    pub(crate) fn column(&self, column: usize) -> Option<&'a Column> {
        self.keep.get(column).and_then(|&i| self.set.columns.get(i))
    }

    /// The kept column's name, `?` if out of range.
    pub(crate) fn column_name(&self, column: usize) -> &'a str {
        self.column(column).map_or("?", |c| c.name.as_str())
    }

    /// Number of rows kept in memory.
    pub(crate) fn len(&self) -> usize {
        self.set.rows.len()
    }

    /// The value at (`row`, `column`); `None` for NULL.
    pub(crate) fn cell(&self, row: usize, column: usize) -> Option<&'a [u8]> {
        let original = *self.keep.get(column)?;
        self.set.rows.get(row)?.get(original)?.as_deref()
    }

    /// The kept values of `row`.
    pub(crate) fn cells(&self, row: usize) -> impl Iterator<Item = Option<&'a [u8]>> + '_ {
        (0..self.width()).map(move |c| self.cell(row, c))
    }

    /// The kept column called `name`: an exact match first, then one that
    /// differs in case only. `None` if absent or ignored.
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        let columns = &self.set.columns;
        let original = columns.iter().position(|c| c.name == name).or_else(|| {
            let name = name.to_lowercase();
            columns.iter().position(|c| c.name.to_lowercase() == name)
        })?;
        self.position_of_original(original)
    }

    /// The kept position of the result's `original`-th column (0-based).
    pub(crate) fn position_of_original(&self, original: usize) -> Option<usize> {
        self.keep.iter().position(|&i| i == original)
    }
}

/// The two views and the value rules that relate them.
#[derive(Debug)]
pub(crate) struct Sides<'a> {
    /// The old schema's result.
    pub old: View<'a>,
    /// The new schema's result.
    pub new: View<'a>,
    /// How values of each column compare.
    pub rules: ValueRules,
}

impl<'a> Sides<'a> {
    /// Both results under `opts`; the column check must have passed.
    pub(crate) fn new(old: View<'a>, new: View<'a>, opts: &CompareOptions) -> Self {
        let rules = ValueRules::new(old.columns().map(|c| c.type_oid), opts);
        Self { old, new, rules }
    }

    /// Number of compared columns (the same on both sides).
    pub(crate) fn width(&self) -> usize {
        self.old.width()
    }

    /// Whether old row `old` and new row `new` are equal.
    pub(crate) fn rows_equal(&self, old: usize, new: usize) -> bool {
        (0..self.width()).all(|c| self.cells_equal(c, old, new))
    }

    /// Whether the two rows agree in `column`.
    pub(crate) fn cells_equal(&self, column: usize, old: usize, new: usize) -> bool {
        self.rules.equal(
            column,
            self.old.cell(old, column),
            self.new.cell(new, column),
        )
    }

    /// Columns in which the two rows differ.
    pub(crate) fn differing_columns(&self, old: usize, new: usize) -> Vec<usize> {
        (0..self.width())
            .filter(|&c| !self.cells_equal(c, old, new))
            .collect()
    }
}
