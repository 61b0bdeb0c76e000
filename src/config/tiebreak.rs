//! `[tiebreak]`: the keys that make ORDER BY total.

use super::error::{check, Rejection};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[tiebreak]`: the keys that make ORDER BY total. They come from the
/// catalog (primary key, else a unique index over NOT NULL columns); these
/// settings only override or fill gaps.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TiebreakConfig {
    /// Append each relation's key to the shadow's queries. Off, rows that
    /// tie on the sort key are compared tie-tolerantly only, which finds
    /// less and cannot follow every query.
    pub enabled: bool,
    /// Last resort for a relation with neither a configured nor a catalog
    /// key: this column, when both schemas' relations have it.
    pub default_column: String,
    /// Relation (`table` or `schema.table`) to its key: one column or a
    /// list. Overrides the catalog.
    pub columns: BTreeMap<String, KeyColumns>,
    /// Also append the tiebreaker to the application's own ORDER BY queries.
    pub apply_to_primary: bool,
    /// Keys learned from the catalog are looked up again after this many
    /// seconds (and at once when a statement fails on a missing column or
    /// a changed relation, or a mismatch is rechecked).
    pub key_cache_seconds: u64,
}

impl Default for TiebreakConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_column: "id".into(),
            columns: BTreeMap::new(),
            apply_to_primary: false,
            key_cache_seconds: 300,
        }
    }
}

/// A `tiebreak.columns` value: one column (`"sys_id"`) or the columns of a
/// composite key (`["env_id", "entry_id"]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum KeyColumns {
    /// A single-column key.
    One(String),
    /// A composite key, in ORDER BY order.
    Many(Vec<String>),
}

impl KeyColumns {
    /// The key's columns, in order.
    pub fn columns(&self) -> Vec<String> {
        match self {
            KeyColumns::One(column) => vec![column.clone()],
            KeyColumns::Many(columns) => columns.clone(),
        }
    }
}

impl From<&str> for KeyColumns {
    fn from(column: &str) -> Self {
        KeyColumns::One(column.to_string())
    }
}

impl TiebreakConfig {
    /// `[tiebreak]` checks: every configured key names at least one
    /// column, and no empty ones.
    pub(super) fn validate(&self) -> Result<(), Rejection> {
        let t = self;
        check(
            !t.default_column.is_empty(),
            "tiebreak.default_column",
            || "must not be empty".into(),
        )?;
        for (relation, key) in &t.columns {
            let columns = key.columns();
            if columns.is_empty() || columns.iter().any(|c| c.trim().is_empty()) {
                return Err((
                    "tiebreak.columns",
                    format!("{relation:?}: a key needs one or more non-empty column names"),
                ));
            }
        }
        if t.key_cache_seconds == 0 {
            return Err(("tiebreak.key_cache_seconds", "must be at least 1".into()));
        }
        Ok(())
    }
}
