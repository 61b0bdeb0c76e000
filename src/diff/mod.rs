//! Comparing the old and the new schema's result sets.
//!
//! [`compare()`] takes the two results of one sampled query, as
//! [`result::ResultBuilder`] collected them, and says how they differ, if
//! at all. Concerns live apart: [`types`] (which types are "the same"),
//! value normalisation, the column check, row matching (by position,
//! within runs of equal sort keys, or as multisets), naming rows by id,
//! and the bounded report.

mod columns;
mod compare;
mod identity;
mod matching;
mod multiset;
mod normalise;
mod render;
mod report;
pub mod result;
mod runs;
pub mod types;
mod view;

#[cfg(test)]
mod testing;

pub use compare::{compare, CompareOptions};
pub use report::{CellChange, Diff, DiffKind, RowChange, RowIds, RowRef};
pub use result::{Column, ResultBuilder, ResultSet};

/// One ORDER BY key, as far as it can be found in the query's output.
///
/// The diff resolves these against the RowDescription it receives, so the
/// rewriter does not need to know what `*` expands to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SortKey {
    /// `ORDER BY 2`: the 1-based output column.
    Ordinal(usize),
    /// `ORDER BY updated_at` / `ORDER BY e.updated_at`: the output column
    /// with this name (unquoted names lowercased, as Postgres reports them).
    Name(String),
    /// An expression that is not an output column (`ORDER BY lower(x)`).
    Unknown,
}

/// How the rows of a result are ordered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ordering {
    /// No ORDER BY: rows are compared as multisets.
    Unordered,
    /// An ORDER BY on the outermost query.
    Ordered {
        /// The sort keys, in order (the tiebreaker last when appended).
        keys: Vec<SortKey>,
        /// The keys identify every row (every relation's key was appended,
        /// or the query already ended in them): rows are compared by
        /// position. Otherwise rows with equal keys may come in any order
        /// and are compared as multisets within each run of equal keys.
        total: bool,
        /// OFFSET skips rows before the page: with a partial order which
        /// of the tied rows of the first run made it onto the page is up to
        /// the plan, so that run is compared by its keys and row count.
        offset: bool,
        /// LIMIT/FETCH ends the page: the same for the last run.
        limit: bool,
    },
}
