//! Which output columns name a row: the keys of the relations, as far as
//! the select list provably holds them.
//!
//! The diff names differing rows by these columns (`id=123`,
//! `(env_id, entry_id)=(1, 7)`), and the mismatch store keeps every
//! differing id. Over a join a relation's key column may be carried by the
//! column its ON clause proves equal (`e.env_id` for `f.env_id`). The ids
//! are *unique* only when every relation's whole key is there; only then
//! may the diff trust that a row found on both sides of a cut run of ties
//! is the same row.

use super::functions::{calls_at_top, is_set_returning};
use super::names::ident_key;
use super::scope::{
    item_expr, join_substitutes, key_outputs, named_output, QualifiedColumn, Relation,
};
use sqlparser::ast::{Ident, Select, SelectItem};

/// The output columns that name rows of a SELECT: every relation's key
/// columns that are provably in the output (directly, or through a column
/// the join proves equal: `e.env_id` for `f.env_id` under `ON f.env_id =
/// e.env_id`), and whether that is every relation's whole key (then they
/// identify each row).
pub(crate) fn output_ids(select: &Select, rels: &[Relation]) -> (Vec<String>, bool) {
    if calls_at_top(
        select.projection.iter().filter_map(item_expr),
        is_set_returning,
    ) {
        // A set-returning function repeats the row.
        return (Vec::new(), false);
    }
    let single = rels.len() == 1;
    let substitutes = join_substitutes(select);
    let mut names: Vec<String> = Vec::new();
    let mut unique = true;
    for rel in rels {
        let outputs = match (&rel.qualifier, rel.key()) {
            (Some(q), Some(key)) => key_outputs(&select.projection, q, key, single).or_else(|| {
                key.columns
                    .iter()
                    .map(|column| output_through_join(&select.projection, q, column, &substitutes))
                    .collect()
            }),
            _ => None,
        };
        match outputs {
            Some(columns) => {
                for column in columns {
                    if !names.contains(&column) {
                        names.push(column);
                    }
                }
            }
            None => unique = false,
        }
    }
    let unique = unique && !names.is_empty();
    (names, unique)
}

/// The output name of column `column` of the relation seen as `qualifier`,
/// or of a column the join proves equal to it.
fn output_through_join(
    projection: &[SelectItem],
    qualifier: &Ident,
    column: &str,
    substitutes: &[(QualifiedColumn, QualifiedColumn)],
) -> Option<String> {
    named_output(projection, qualifier, column, false).or_else(|| {
        let own = (ident_key(qualifier), column.to_string());
        substitutes
            .iter()
            .filter(|(from, _)| *from == own)
            .find_map(|(_, (q, c))| {
                named_output(projection, &Ident::with_quote('"', q.clone()), c, false)
            })
    })
}
