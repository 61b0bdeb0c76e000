//! Which columns identify a row of a relation: the key the tiebreaker
//! appends to ORDER BY and the diff names rows by (DESIGN §5).
//!
//! Keys come from three places, in this order: `[tiebreak] columns` (the
//! user overrides), the catalog (the primary key, else a unique index over
//! NOT NULL columns, as the shadow looked it up under the old search_path),
//! and `[tiebreak] default_column` as the last resort. When the catalog is
//! known, a key is only used if every one of its columns exists in the
//! relation on both sides (the new side is often a view with the old
//! names); a key that would make either query fail is never appended.
//!
//! This module only decides; the lookup itself runs in the shadow
//! (`shadow::keys`), on a shadow connection, never on the relay.

use super::names::relation_keys;
use super::rules::RewriteRules;

/// Where a relation's key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// The relation's primary key, from the catalog.
    PrimaryKey,
    /// A unique index over NOT NULL columns (not partial, not on
    /// expressions), from the catalog.
    UniqueIndex,
    /// `tiebreak.columns`.
    Config,
    /// `tiebreak.default_column`.
    DefaultColumn,
}

impl KeySource {
    /// Stable label for logs and reports.
    pub fn label(self) -> &'static str {
        match self {
            KeySource::PrimaryKey => "primary_key",
            KeySource::UniqueIndex => "unique_index",
            KeySource::Config => "config",
            KeySource::DefaultColumn => "default_column",
        }
    }

    /// Whether the key was learned from the catalog rather than configured.
    pub fn from_catalog(self) -> bool {
        matches!(self, KeySource::PrimaryKey | KeySource::UniqueIndex)
    }
}

/// One relation's key: columns that together identify each of its rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The key's columns, in ORDER BY order (folded names, as the catalog
    /// spells them).
    pub columns: Vec<String>,
    /// Where it came from.
    pub source: KeySource,
}

/// What the catalog says about one relation name, looked up under the old
/// search_path (its key and columns) and, after `[shadow] table_map`, under
/// the new one (its columns).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CatalogRelation {
    /// Columns of the old side's relation; empty when the name resolves to
    /// nothing there.
    pub old_columns: Vec<String>,
    /// The old side's key (primary key or unique index), if it has one.
    pub old_key: Option<Key>,
    /// Columns of the relation the new query reads under this name (a
    /// view, often); empty when it resolves to nothing there.
    pub new_columns: Vec<String>,
}

impl CatalogRelation {
    /// Whether both sides' relations have every one of `columns`.
    fn has_on_both_sides(&self, columns: &[String]) -> bool {
        columns
            .iter()
            .all(|c| self.old_columns.contains(c) && self.new_columns.contains(c))
    }
}

/// What is known of a relation when a key is chosen for it.
#[derive(Debug, Clone, Copy)]
pub enum Catalog<'a> {
    /// The catalog was not asked (the application's own queries under
    /// `tiebreak.apply_to_primary`, tests of the rewriter): configured
    /// keys and the default column are used as written.
    NotConsulted,
    /// The lookup failed: only configured keys are used, unverified.
    Unavailable,
    /// What the lookup found.
    Known(&'a CatalogRelation),
}

/// The key to append for the relation named `parts` (folded name parts as
/// written in the query), or `None` when it has none that is safe to use.
pub fn choose(parts: &[String], rules: &RewriteRules, catalog: Catalog<'_>) -> Option<Key> {
    let configured = relation_keys(parts)
        .iter()
        .find_map(|key| rules.id_columns.get(key))
        .filter(|columns| !columns.is_empty());
    let default = (!rules.default_id_column.is_empty()).then(|| Key {
        columns: vec![rules.default_id_column.clone()],
        source: KeySource::DefaultColumn,
    });
    let configured = configured.map(|columns| Key {
        columns: columns.clone(),
        source: KeySource::Config,
    });
    match catalog {
        Catalog::NotConsulted => configured.or(default),
        Catalog::Unavailable => configured,
        Catalog::Known(relation) => {
            let usable = |key: &Key| relation.has_on_both_sides(&key.columns);
            configured
                .filter(usable)
                .or_else(|| relation.old_key.clone().filter(usable))
                .or_else(|| default.filter(usable))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn rules(configured: &[(&str, &[&str])]) -> RewriteRules {
        RewriteRules {
            default_id_column: "id".into(),
            id_columns: configured
                .iter()
                .map(|(t, cols)| (t.to_string(), strings(cols)))
                .collect(),
            ..RewriteRules::default()
        }
    }

    fn relation(old: &[&str], key: Option<(&[&str], KeySource)>, new: &[&str]) -> CatalogRelation {
        CatalogRelation {
            old_columns: strings(old),
            old_key: key.map(|(columns, source)| Key {
                columns: strings(columns),
                source,
            }),
            new_columns: strings(new),
        }
    }

    fn columns(key: Option<Key>) -> Option<(Vec<String>, KeySource)> {
        key.map(|k| (k.columns, k.source))
    }

    #[test]
    fn the_catalog_key_is_used_when_the_new_side_has_its_columns() {
        let entries = relation(
            &["env_id", "entry_id", "title"],
            Some((&["env_id", "entry_id"], KeySource::PrimaryKey)),
            &["env_id", "entry_id", "title"],
        );
        let parts = strings(&["entries"]);
        assert_eq!(
            columns(choose(&parts, &rules(&[]), Catalog::Known(&entries))),
            Some((strings(&["env_id", "entry_id"]), KeySource::PrimaryKey))
        );
        // The new side's view lacks a key column: not appended, and the
        // default `id` does not exist either.
        let lacking = relation(
            &["env_id", "entry_id", "title"],
            Some((&["env_id", "entry_id"], KeySource::PrimaryKey)),
            &["entry_id", "title"],
        );
        assert_eq!(choose(&parts, &rules(&[]), Catalog::Known(&lacking)), None);
    }

    #[test]
    fn configuration_overrides_the_catalog_but_only_with_columns_that_exist() {
        let entries = relation(
            &["env_id", "entry_id", "sys_id"],
            Some((&["env_id", "entry_id"], KeySource::PrimaryKey)),
            &["env_id", "entry_id", "sys_id"],
        );
        let parts = strings(&["public", "entries"]);
        let configured = rules(&[("entries", &["sys_id"])]);
        assert_eq!(
            columns(choose(&parts, &configured, Catalog::Known(&entries))),
            Some((strings(&["sys_id"]), KeySource::Config))
        );
        let wrong = rules(&[("public.entries", &["nope"])]);
        assert_eq!(
            columns(choose(&parts, &wrong, Catalog::Known(&entries))),
            Some((strings(&["env_id", "entry_id"]), KeySource::PrimaryKey)),
            "a configured column that does not exist falls back to the catalog"
        );
    }

    #[test]
    fn the_default_column_is_the_last_resort_and_must_exist_on_both_sides() {
        let parts = strings(&["report"]);
        let keyless = relation(&["id", "n"], None, &["id", "n"]);
        assert_eq!(
            columns(choose(&parts, &rules(&[]), Catalog::Known(&keyless))),
            Some((strings(&["id"]), KeySource::DefaultColumn))
        );
        let no_id = relation(&["day", "n"], None, &["day", "n"]);
        assert_eq!(choose(&parts, &rules(&[]), Catalog::Known(&no_id)), None);
    }

    #[test]
    fn without_the_catalog_only_configuration_is_trusted() {
        let parts = strings(&["entries"]);
        let configured = rules(&[("entries", &["sys_id"])]);
        assert_eq!(
            columns(choose(&parts, &configured, Catalog::Unavailable)),
            Some((strings(&["sys_id"]), KeySource::Config))
        );
        assert_eq!(choose(&parts, &rules(&[]), Catalog::Unavailable), None);
        assert_eq!(
            columns(choose(&parts, &rules(&[]), Catalog::NotConsulted)),
            Some((strings(&["id"]), KeySource::DefaultColumn))
        );
    }
}
