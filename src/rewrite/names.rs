//! Identifiers as PostgreSQL resolves them.
//!
//! Unquoted identifiers fold to lower case (ASCII only, like
//! `downcase_identifier`), quoted ones are kept verbatim. Every comparison of
//! names in the rewriter goes through these helpers, so `Entries`, `entries`
//! and `"entries"` are the same relation and `"Entries"` is another.

use sqlparser::ast::{Expr, Ident, ObjectName, Query, Visit, Visitor};
use std::ops::ControlFlow;

/// The name Postgres would look up for `ident`.
pub(crate) fn ident_key(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

/// The folded parts of an object name; `None` when a part is not a plain
/// identifier (dialect-specific name functions).
pub(crate) fn name_parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|part| part.as_ident().map(ident_key))
        .collect()
}

/// The last identifier of an object name, as written.
pub(crate) fn last_ident(name: &ObjectName) -> Option<&Ident> {
    name.0.last().and_then(|part| part.as_ident())
}

/// The keys a relation is configured under, most specific first:
/// `"schema.table"` (the last two parts) and `"table"`.
pub(crate) fn relation_keys(parts: &[String]) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    if let [.., schema, table] = parts {
        keys.push(format!("{schema}.{table}"));
    }
    if let Some(table) = parts.last() {
        keys.push(table.clone());
    }
    keys
}

/// The folded column name an expression refers to when it is a plain
/// column reference (`id`, `e.id`, `public.entries.id`), with the folded
/// qualifier right before it (`None` for a bare name).
pub(crate) fn column_ref(expr: &Expr) -> Option<(Option<String>, String)> {
    match expr {
        Expr::Identifier(ident) => Some((None, ident_key(ident))),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [.., qualifier, column] => Some((Some(ident_key(qualifier)), ident_key(column))),
            _ => None,
        },
        Expr::Nested(inner) => column_ref(inner),
        _ => None,
    }
}

/// An identifier that Postgres resolves to exactly `name`: unquoted when
/// the name is a plain lower-case word that is not reserved, quoted
/// otherwise (configured names are used verbatim, like quoted names).
pub(crate) fn ident_for(name: &str) -> Ident {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !is_reserved(name);
    if plain {
        Ident::new(name)
    } else {
        Ident::with_quote('"', name)
    }
}

/// An object name for a configured `"schema.table"` or `"table"`.
pub(crate) fn object_name_for(dotted: &str) -> ObjectName {
    ObjectName::from(dotted.split('.').map(ident_for).collect::<Vec<_>>())
}

/// Whether any identifier in `query` is quoted other than with `"`, which
/// PostgreSQL has no syntax for: a sign that the parser misread the text.
pub(crate) fn has_foreign_quotes(query: &Query) -> bool {
    struct Quotes;
    impl Visitor for Quotes {
        type Break = ();
        fn pre_visit_ident(&mut self, ident: &Ident) -> ControlFlow<()> {
            match ident.quote_style {
                None | Some('"') => ControlFlow::Continue(()),
                Some(_) => ControlFlow::Break(()),
            }
        }
    }
    query.visit(&mut Quotes).is_break()
}

/// PostgreSQL's reserved key words (reserved and "can be function or type
/// name"): these cannot stand bare as a column name.
fn is_reserved(word: &str) -> bool {
    const RESERVED: &[&str] = &[
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "authorization",
        "binary",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "collation",
        "column",
        "concurrently",
        "constraint",
        "create",
        "cross",
        "current_catalog",
        "current_date",
        "current_role",
        "current_schema",
        "current_time",
        "current_timestamp",
        "current_user",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "freeze",
        "from",
        "full",
        "grant",
        "group",
        "having",
        "ilike",
        "in",
        "initially",
        "inner",
        "intersect",
        "into",
        "is",
        "isnull",
        "join",
        "lateral",
        "leading",
        "left",
        "like",
        "limit",
        "localtime",
        "localtimestamp",
        "natural",
        "not",
        "notnull",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "outer",
        "overlaps",
        "placing",
        "primary",
        "references",
        "returning",
        "right",
        "select",
        "session_user",
        "similar",
        "some",
        "symmetric",
        "system_user",
        "table",
        "tablesample",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "variadic",
        "verbose",
        "when",
        "where",
        "window",
        "with",
    ];
    RESERVED.contains(&word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_names_fold_and_quoted_names_do_not() {
        assert_eq!(ident_key(&Ident::new("Entries")), "entries");
        assert_eq!(ident_key(&Ident::with_quote('"', "Entries")), "Entries");
    }

    #[test]
    fn configured_names_are_quoted_only_when_needed() {
        assert_eq!(ident_for("sys_id").to_string(), "sys_id");
        assert_eq!(ident_for("Key").to_string(), "\"Key\"");
        assert_eq!(ident_for("order").to_string(), "\"order\"");
        assert_eq!(ident_for("1x").to_string(), "\"1x\"");
        assert_eq!(object_name_for("v2.entries").to_string(), "v2.entries");
    }

    #[test]
    fn relation_keys_are_schema_qualified_first() {
        let parts = vec!["db".to_string(), "public".into(), "entries".into()];
        assert_eq!(relation_keys(&parts), vec!["public.entries", "entries"]);
        assert_eq!(relation_keys(&parts[2..]), vec!["entries"]);
    }
}
