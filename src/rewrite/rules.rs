//! The rewrite rules: what the configuration tells the rewriter.
//!
//! Named by the files that classify, choose keys and rename relations, so
//! it lives apart from the planning in `mod.rs` that uses them.

use std::collections::BTreeMap;

/// The rewrite rules, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct RewriteRules {
    /// `[tiebreak] default_column`: the key of relations that have
    /// neither a configured nor a catalog key, e.g. `"id"`. Empty: none.
    pub default_id_column: String,
    /// `[tiebreak] columns`: relation → its key columns. Keys are
    /// `"table"` or `"schema.table"` (lower case); the schema-qualified key
    /// wins.
    pub id_columns: BTreeMap<String, Vec<String>>,
    /// `[shadow] table_map`: old relation → new relation (`"table"` or
    /// `"schema.table"` on both sides), applied to the NEW side only.
    pub table_map: BTreeMap<String, String>,
    /// `[shadow] deny_functions`: more function names (lower case) whose
    /// effects escape a read-only transaction; a trailing `*` matches a
    /// prefix.
    pub deny_functions: Vec<String>,
}
