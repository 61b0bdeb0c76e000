//! Planning one statement: parse it once, decide whether it may be
//! replayed, append the tiebreaker, rename relations for the new side, and
//! print both texts only when they parse back to the same AST.

use super::keys::{choose, Catalog, Key};
use super::order_by::{OrderBasis, Tiebreak};
use super::rules::RewriteRules;
use super::{classify, names, parse, table_map, tiebreak};
use crate::capture::lexer;
use crate::capture::skip::SkipReason;
use crate::diff::Ordering;
use sqlparser::ast::{OrderByKind, Query, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::TokenWithSpan;
use std::sync::Arc;

/// How to run and compare one statement.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What runs on the old side (the tiebreaker appended if applicable).
    pub old_sql: Arc<str>,
    /// What runs on the new side (tiebreaker and table map).
    pub new_sql: Arc<str>,
    /// How the diff orders rows. `total` is false when a relation has no
    /// key, and for a UNION even with appended keys, because its branches
    /// may repeat a key.
    pub ordering: Ordering,
    /// What happened to the ORDER BY.
    pub tiebreak: Tiebreak,
    /// What made the order total, if anything.
    pub basis: OrderBasis,
    /// The output columns that carry the relations' keys, when the select
    /// list provably holds each exactly once (`*` over one relation,
    /// `e.env_id, e.entry_id`, `e.sys_id AS key` → `"key"`); the diff
    /// names rows by them.
    pub id_columns: Vec<String>,
    /// Whether `id_columns` hold every relation's whole key, so that they
    /// identify each row.
    pub id_unique: bool,
    /// Per relation of the outermost FROM, the key the order ends in, for
    /// logs and reports: `e (env_id, entry_id) primary_key; r no key
    /// (no_key)`.
    pub keys: Arc<str>,
    /// The relation names the tiebreaker asked keys for (folded parts as
    /// written), in order: what a key refresh must look up again.
    pub relations: Arc<[Vec<String>]>,
    /// The keys it got, one per relation name.
    pub key_choices: Vec<Option<Key>>,
    /// `old_sql` or `new_sql` differs from the input text.
    pub rewritten: bool,
    /// The functions the statement calls (lower-cased unqualified names,
    /// distinct): the shadow skips it when one is a user-defined VOLATILE
    /// function ([`crate::shadow::functions`]).
    pub functions: Arc<[String]>,
}

/// Classifies `sql` and plans its replay with the keys of the
/// configuration alone (`tiebreak.columns`, `default_column`), as written.
/// `Err(reason)` when the statement must not be replayed: the first of not
/// a single statement (`MultiStatement`), unparsable, not a plain read,
/// side-effect function, session-dependent, LIMIT without ORDER BY.
///
/// A statement with thousands of operators (`… OR … OR …`) is skipped as
/// `TooLarge`: its parse tree is too deep to walk safely (see `parse`).
pub fn plan(sql: &str, rules: &RewriteRules) -> Result<Plan, SkipReason> {
    plan_with_keys(sql, rules, &mut |parts| {
        choose(parts, rules, Catalog::NotConsulted)
    })
}

/// [`plan`], asking `keys` for the key of every relation (folded name
/// parts as written) the tiebreaker may use. Each name is asked once;
/// [`Plan::relations`] and [`Plan::key_choices`] record the questions and
/// the answers.
pub fn plan_with_keys(
    sql: &str,
    rules: &RewriteRules,
    keys: &mut (dyn FnMut(&[String]) -> Option<Key> + Send),
) -> Result<Plan, SkipReason> {
    if lexer::lex(sql).statements > 1 {
        return Err(SkipReason::MultiStatement);
    }
    parse::with_tokens(sql, |tokens| plan_tokens(sql, tokens, rules, keys))
}

/// [`plan_with_keys`] once the text is tokenized.
fn plan_tokens(
    sql: &str,
    tokens: Vec<TokenWithSpan>,
    rules: &RewriteRules,
    keys: &mut (dyn FnMut(&[String]) -> Option<Key> + Send),
) -> Result<Plan, SkipReason> {
    let mut statements = Parser::new(&PostgreSqlDialect {})
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|_| SkipReason::Unparsable)?;
    let statement = match (statements.pop(), statements.is_empty()) {
        (Some(statement), true) => statement,
        (Some(_), false) => return Err(SkipReason::MultiStatement),
        // An empty text is nothing to compare.
        (None, _) => return Err(SkipReason::NotRead),
    };
    let functions = classify::classify(&statement, rules)?;
    let Statement::Query(query) = statement else {
        return Err(SkipReason::NotRead);
    };
    // Every name is asked once, whatever the analysis looks at twice.
    let mut relations: Vec<Vec<String>> = Vec::new();
    let mut key_choices: Vec<Option<Key>> = Vec::new();
    let mut lookup = |parts: &[String]| {
        if let Some(i) = relations.iter().position(|r| r == parts) {
            return key_choices.get(i).cloned().flatten();
        }
        let key = keys(parts);
        relations.push(parts.to_vec());
        key_choices.push(key.clone());
        key
    };
    let analysis = tiebreak::analyse(&query, &mut lookup);
    let (analysis, old_sql, new_sql) = match render(sql, &query, &analysis, rules) {
        Some((old_sql, new_sql)) => (analysis, old_sql, new_sql),
        None if !analysis.appended.is_empty() => {
            let analysis = analysis.without_append("round_trip");
            let (old_sql, new_sql) =
                render(sql, &query, &analysis, rules).ok_or(SkipReason::Unparsable)?;
            (analysis, old_sql, new_sql)
        }
        // The table map's rewrite does not print back faithfully: the new
        // side cannot be expressed.
        None => return Err(SkipReason::Unparsable),
    };
    let rewritten = *old_sql != *sql || *new_sql != *sql;
    Ok(Plan {
        old_sql,
        new_sql,
        ordering: analysis.ordering,
        tiebreak: analysis.tiebreak,
        basis: analysis.basis,
        id_columns: analysis.id_columns,
        id_unique: analysis.id_unique,
        keys: Arc::from(analysis.keys),
        relations: Arc::from(relations),
        key_choices,
        rewritten,
        functions: Arc::from(functions),
    })
}

/// The relation a name refers to on the new side: `[shadow] table_map`'s
/// target (folded parts), or the same name.
pub fn new_side_name(parts: &[String], rules: &RewriteRules) -> Vec<String> {
    table_map::target(parts, rules)
        .map(|target| target.split('.').map(str::to_string).collect())
        .unwrap_or_else(|| parts.to_vec())
}

/// `tiebreak.apply_to_primary`: the application's statement with the
/// tiebreaker appended to its own ORDER BY (nothing else changed, no table
/// map), or `None` when there is nothing to append or the statement is not
/// an eligible read.
pub fn tiebreak_for_primary(sql: &str, rules: &RewriteRules) -> Option<String> {
    match plan(sql, rules) {
        Ok(plan) if plan.tiebreak == Tiebreak::Appended => Some(plan.old_sql.to_string()),
        _ => None,
    }
}

/// The old and new texts for `query` with `analysis.appended` applied, or
/// `None` when a rewritten text does not parse back to the rewritten AST.
fn render(
    sql: &str,
    query: &Query,
    analysis: &tiebreak::Analysis,
    rules: &RewriteRules,
) -> Option<(Arc<str>, Arc<str>)> {
    let mut old = query.clone();
    let old_sql: Arc<str> = if analysis.appended.is_empty() {
        Arc::from(sql)
    } else {
        tiebreak::with_outermost_mut(&mut old, |outer| {
            if let Some(OrderByKind::Expressions(keys)) =
                outer.order_by.as_mut().map(|o| &mut o.kind)
            {
                keys.extend(analysis.appended.iter().cloned());
            }
        });
        Arc::from(print_checked(&old)?)
    };
    let mut new = old;
    let new_sql = if table_map::apply(&mut new, rules) {
        Arc::from(print_checked(&new)?)
    } else {
        old_sql.clone()
    };
    Some((old_sql, new_sql))
}

/// Prints `query` and accepts the text only if it parses back to the same
/// AST (spans and token positions are ignored by sqlparser's equality).
///
/// The round trip proves the printer faithful to the AST, not the AST to
/// the text. One known misparse is refused as well: an identifier quoted
/// other than with `"` does not exist in PostgreSQL, so the parser took
/// something else for one (`'a'\n'b'`, a continued string literal, parses
/// as `'a' AS 'b'`), and a print of it would be wrong.
fn print_checked(query: &Query) -> Option<String> {
    if names::has_foreign_quotes(query) {
        return None;
    }
    let text = query.to_string();
    let reparsed = Parser::parse_sql(&PostgreSqlDialect {}, &text).ok()?;
    match reparsed.as_slice() {
        [Statement::Query(again)] if **again == *query => Some(text),
        _ => None,
    }
}
