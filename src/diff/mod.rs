//! Comparing the old and the new schema's result sets.
//!
//! [`compare()`] takes the two results of one sampled query, as
//! [`result::ResultBuilder`] collected them, and says how they differ, if
//! at all. Concerns live apart, each file naming only those listed before
//! it: `options.rs` (what counts as a difference), `ordering.rs` (what the
//! ORDER BY promises), [`types`] (which types are "the same"),
//! `normalise.rs` (when two values are equal), [`result`] (the bounded
//! result and its digests), `view.rs` (a result without its ignored
//! columns), `multiset.rs`, `identity.rs` and `runs.rs` (matching rows as
//! multisets, by id, within runs of equal sort keys), `matching.rs` (which
//! of those the ORDER BY allows), `columns.rs` (the column check),
//! `render.rs` and `report.rs` (the bounded report), and `compare.rs`, the
//! entry point.

mod columns;
mod compare;
mod identity;
mod matching;
mod multiset;
mod normalise;
mod options;
mod ordering;
mod render;
mod report;
pub mod result;
mod runs;
pub mod types;
mod view;

#[cfg(test)]
mod testing;

pub use compare::compare;
pub use options::CompareOptions;
pub use ordering::{Ordering, RowOrder, SortKey};
pub use report::{CellChange, Diff, DiffKind, RowChange, RowIds, RowRef};
pub use result::{Column, ResultBuilder, ResultSet};
