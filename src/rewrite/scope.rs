//! What the outermost FROM and select list provably contain.
//!
//! The tiebreaker may only name a row id it can prove exists: the id column
//! of each relation in the FROM clause (base tables, or a CTE that passes a
//! base table's id through), and, where the output matters (DISTINCT, set
//! operations, keying rows in the diff), an output column that carries it.
//! Anything this module cannot prove is reported as a short reason that
//! ends up in `Tiebreak::NotApplicable`.

use super::names::{column_ref, ident_key, last_ident, name_parts, relation_keys};
use super::RewriteRules;
use sqlparser::ast::{
    Cte, Expr, Ident, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableFactor,
    Value, With,
};

/// A relation of a FROM clause whose row id the tiebreaker can name.
#[derive(Debug, Clone)]
pub(crate) struct Relation {
    /// How the query refers to it: the alias, else the last part of the
    /// name as written (`public.entries` is visible as `entries`, and
    /// Postgres refuses two unaliased relations with the same last part).
    pub qualifier: Ident,
    /// The id column (or the CTE's output column that carries the id).
    pub id: String,
}

/// The relations of `select`'s FROM clause, in order (joins included), or
/// why one of them has no provable id.
pub(crate) fn relations(
    select: &Select,
    with: Option<&With>,
    rules: &RewriteRules,
) -> Result<Vec<Relation>, &'static str> {
    let mut out = Vec::new();
    for table in &select.from {
        relation_of(&table.relation, with, rules, &mut out)?;
        for join in &table.joins {
            relation_of(&join.relation, with, rules, &mut out)?;
        }
    }
    if out.is_empty() {
        return Err("no_relation");
    }
    Ok(out)
}

fn relation_of(
    factor: &TableFactor,
    with: Option<&With>,
    rules: &RewriteRules,
    out: &mut Vec<Relation>,
) -> Result<(), &'static str> {
    match factor {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                // `FROM entries AS e(a, b)` renames the columns.
                return Err("column_aliases");
            }
            let parts = name_parts(name).ok_or("relation")?;
            let written = last_ident(name).ok_or("relation")?;
            let qualifier = alias
                .as_ref()
                .map_or_else(|| written.clone(), |a| a.name.clone());
            let id = match parts.as_slice() {
                [single] => match find_cte(with, single) {
                    Some(cte) => cte_id(cte, with, rules)?,
                    None => configured_id(&parts, rules)?,
                },
                _ => configured_id(&parts, rules)?,
            };
            out.push(Relation { qualifier, id });
            Ok(())
        }
        TableFactor::NestedJoin {
            table_with_joins,
            alias: None,
        } => {
            relation_of(&table_with_joins.relation, with, rules, out)?;
            for join in &table_with_joins.joins {
                relation_of(&join.relation, with, rules, out)?;
            }
            Ok(())
        }
        TableFactor::NestedJoin { .. } => Err("aliased_join"),
        TableFactor::Derived { .. } => Err("derived_table"),
        TableFactor::Table { .. }
        | TableFactor::Function { .. }
        | TableFactor::TableFunction { .. } => Err("table_function"),
        TableFactor::UNNEST { .. } => Err("unnest"),
        _ => Err("relation"),
    }
}

/// The configured id column of a base table: `[tiebreak] columns` by
/// `"schema.table"`, then `"table"`, else the default column.
fn configured_id(parts: &[String], rules: &RewriteRules) -> Result<String, &'static str> {
    for key in relation_keys(parts) {
        if let Some(column) = rules.id_columns.get(&key) {
            return Ok(column.clone());
        }
    }
    if rules.default_id_column.is_empty() {
        Err("no_id_column")
    } else {
        Ok(rules.default_id_column.clone())
    }
}

/// The CTE a one-part relation name refers to in the outermost query.
pub(crate) fn find_cte<'a>(with: Option<&'a With>, name: &str) -> Option<&'a Cte> {
    with?
        .cte_tables
        .iter()
        .find(|cte| ident_key(&cte.alias.name) == name)
}

/// The output column of a CTE that carries a base table's id: the CTE must
/// be a plain SELECT over one base table whose select list provably holds
/// that table's id exactly once.
fn cte_id(cte: &Cte, with: Option<&With>, rules: &RewriteRules) -> Result<String, &'static str> {
    if !cte.alias.columns.is_empty() {
        return Err("cte_columns");
    }
    if cte.query.with.is_some() {
        return Err("cte");
    }
    let SetExpr::Select(select) = &*cte.query.body else {
        return Err("cte");
    };
    let [table] = select.from.as_slice() else {
        return Err("cte");
    };
    if !table.joins.is_empty() {
        return Err("cte");
    }
    let TableFactor::Table {
        name,
        alias,
        args: None,
        ..
    } = &table.relation
    else {
        return Err("cte");
    };
    if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
        return Err("cte");
    }
    let parts = name_parts(name).ok_or("cte")?;
    if let [single] = parts.as_slice() {
        if find_cte(with, single).is_some() {
            // A CTE over another CTE: not followed.
            return Err("cte");
        }
    }
    let qualifier = match alias {
        Some(a) => a.name.clone(),
        None => last_ident(name).ok_or("cte")?.clone(),
    };
    let inner = Relation {
        qualifier,
        id: configured_id(&parts, rules)?,
    };
    named_output(&select.projection, &inner, true).ok_or("cte")
}

/// Whether `expr` is a reference to `rel`'s id column: qualified with its
/// qualifier, or bare when `rel` is the only relation.
pub(crate) fn is_id_ref(expr: &Expr, rel: &Relation, single: bool) -> bool {
    match column_ref(expr) {
        Some((Some(qualifier), column)) => {
            column == rel.id && qualifier == ident_key(&rel.qualifier)
        }
        Some((None, column)) => single && column == rel.id,
        None => false,
    }
}

/// `ORDER BY 2` / `GROUP BY 2`: the 1-based position.
pub(crate) fn ordinal(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<usize>().ok().filter(|n| *n >= 1),
            _ => None,
        },
        _ => None,
    }
}

/// The expression behind a select item, when it is not a wildcard.
pub(crate) fn item_expr(item: &SelectItem) -> Option<&Expr> {
    match item {
        SelectItem::UnnamedExpr(expr)
        | SelectItem::ExprWithAlias { expr, .. }
        | SelectItem::ExprWithAliases { expr, .. } => Some(expr),
        SelectItem::QualifiedWildcard(..) | SelectItem::Wildcard(_) => None,
    }
}

/// Whether a wildcard item expands `rel`'s columns.
fn wildcard_covers(item: &SelectItem, rel: &Relation) -> bool {
    match item {
        SelectItem::Wildcard(_) => true,
        SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) => {
            last_ident(name).is_some_and(|last| ident_key(last) == ident_key(&rel.qualifier))
        }
        _ => false,
    }
}

/// Whether the select list holds `rel`'s id (what `SELECT DISTINCT`
/// requires of an ORDER BY key): as a column, aliased or not, or through
/// `*` / `rel.*`.
pub(crate) fn covers(projection: &[SelectItem], rel: &Relation, single: bool) -> bool {
    projection.iter().any(|item| {
        wildcard_covers(item, rel) || item_expr(item).is_some_and(|e| is_id_ref(e, rel, single))
    })
}

/// The name of the output column that carries `rel`'s id, when it is
/// provably exactly one output column of a single-relation SELECT. `SELECT
/// *, id` (two `id` columns) and `SELECT *, sys_id AS key` (the table may
/// have its own `key`) are not proof; `SELECT *` and `SELECT e.sys_id AS
/// key, title` are.
pub(crate) fn named_output(
    projection: &[SelectItem],
    rel: &Relation,
    single: bool,
) -> Option<String> {
    let wildcards = projection
        .iter()
        .filter(|item| {
            matches!(
                item,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        })
        .count();
    // Over a join, a wildcard may bring a same-named column of another
    // relation; only an explicit, qualified reference is unambiguous.
    if !single && wildcards > 0 {
        return None;
    }
    if projection.iter().any(|item| {
        matches!(item, SelectItem::QualifiedWildcard(..)) && !wildcard_covers(item, rel)
    }) {
        return None;
    }
    // (output name, carries the id) of every explicit item.
    let explicit: Vec<(Option<String>, bool)> = projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::UnnamedExpr(expr) => Some((
                column_ref(expr).map(|(_, column)| column),
                is_id_ref(expr, rel, single),
            )),
            SelectItem::ExprWithAlias { expr, alias } => {
                Some((Some(ident_key(alias)), is_id_ref(expr, rel, single)))
            }
            SelectItem::ExprWithAliases { .. } => Some((None, false)),
            _ => None,
        })
        .collect();
    let mut candidates: Vec<&str> = Vec::new();
    if wildcards > 0 {
        candidates.push(&rel.id);
    }
    candidates.extend(
        explicit
            .iter()
            .filter(|(_, is_id)| *is_id)
            .filter_map(|(name, _)| name.as_deref()),
    );
    candidates
        .into_iter()
        .find(|candidate| {
            let from_wildcards = match (wildcards, *candidate == rel.id) {
                (0, _) => 0,
                (n, true) => n,
                // A wildcard may hold a column of that name too.
                (_, false) => return false,
            };
            let from_explicit = explicit
                .iter()
                .filter(|(name, _)| name.as_deref() == Some(*candidate))
                .count();
            from_wildcards + from_explicit == 1
        })
        .map(str::to_string)
}
