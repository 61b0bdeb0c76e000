//! From the application's SQL text to the two statements the shadow runs.
//!
//! [`plan()`] parses a statement once (sqlparser, PostgreSqlDialect), decides
//! whether it may be replayed at all (DESIGN §2: only provable plain reads
//! without effects outside a read-only transaction), and produces:
//!
//! - the OLD side's SQL: the original text, or, when relation keys were
//!   appended to the outermost ORDER BY (DESIGN §5), that rewrite;
//! - the NEW side's SQL: the same plus `[shadow] table_map` renames;
//! - how the diff must compare the rows ([`Ordering`](crate::diff::Ordering)) and which output
//!   columns identify a row.
//!
//! The keys come from the caller ([`plan_with_keys`]): the shadow asks the
//! catalog ([`keys`] decides between catalog, configuration and default);
//! [`plan()`] uses the configuration alone.
//!
//! Rewrites are printed from the AST with `Display` and accepted only if
//! the printed text parses back to the same AST; otherwise the statement is
//! compared unrewritten and tie-tolerant. A statement that needs no change
//! keeps its exact original text on both sides.
//!
//! Parsing costs ~50 µs, so plans are cached per distinct text in a
//! [`PlanCache`], with one plan per set of keys the text was planned with.
//!
//! Layout: `rules` holds the configured rewrite rules and `order_by` what
//! can happen to an ORDER BY (both named by the files below, which name
//! neither this file nor each other in a circle); `parse` tokenizes and
//! guards the stack, `classify` decides eligibility, `scope` resolves the
//! relations and keys a query provably has, `keys` chooses each relation's
//! key, `tiebreak` decides the ORDER BY rewrite, `row_ids` which output
//! columns name a row, `table_map` renames relations, `names` folds
//! identifiers, `functions` knows functions by name; `plan` plans a
//! statement with them, and `cache` holds the plans.

mod cache;
mod classify;
mod functions;
pub mod keys;
mod names;
mod order_by;
mod parse;
mod plan;
mod row_ids;
mod rules;
mod scope;
mod table_map;
mod tiebreak;

pub use cache::{CachedPlan, CachedRelations, PlanCache};
pub use keys::{choose, Catalog, CatalogRelation, Key, KeySource};
pub use order_by::{OrderBasis, Tiebreak, TiebreakKind};
pub use plan::{new_side_name, plan, plan_with_keys, tiebreak_for_primary, Plan};
pub use rules::RewriteRules;

#[cfg(test)]
mod tests;
