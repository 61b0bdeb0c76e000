//! What the outermost FROM and select list provably contain.
//!
//! The tiebreaker may only name key columns it can prove exist: the key of
//! each relation in the FROM clause (base tables and views, whose keys the
//! caller supplies, or a CTE that passes a base table's key through), and,
//! where the output matters (DISTINCT, set operations, naming rows in the
//! diff), the output columns that carry them. A relation whose key cannot
//! be named (a subquery, a function, a table without a key) is still listed,
//! keyless, with a short reason: the keys of the others are appended all
//! the same.

use super::keys::Key;
use super::names::{column_ref, ident_key, last_ident, name_parts};
use sqlparser::ast::{
    BinaryOperator, Cte, Expr, Ident, JoinConstraint, JoinOperator, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, TableFactor, Value, With,
};

/// Where the scope asks for the key of a relation (folded name parts as
/// written in the query).
pub(crate) type KeyLookup<'a> = dyn FnMut(&[String]) -> Option<Key> + 'a;

/// A relation of a FROM clause.
#[derive(Debug, Clone)]
pub(crate) struct Relation {
    /// How the query refers to it: the alias, else the last part of the
    /// name as written (`public.entries` is visible as `entries`, and
    /// Postgres refuses two unaliased relations with the same last part).
    /// `None` for an unaliased subquery or function.
    pub qualifier: Option<Ident>,
    /// Its key as the query sees it (a CTE's output names for its base
    /// table's key columns), or why it has none that can be named.
    pub key: Result<Key, &'static str>,
}

impl Relation {
    /// The key, when there is one.
    pub(crate) fn key(&self) -> Option<&Key> {
        self.key.as_ref().ok()
    }

    /// The qualifier as the report shows it (`?` when there is none).
    pub(crate) fn shown(&self) -> String {
        self.qualifier
            .as_ref()
            .map_or_else(|| "?".to_string(), |q| q.to_string())
    }
}

/// The relations of `select`'s FROM clause, in order (joins included);
/// `Err` only when there is none.
pub(crate) fn relations(
    select: &Select,
    with: Option<&With>,
    lookup: &mut KeyLookup<'_>,
) -> Result<Vec<Relation>, &'static str> {
    let mut out = Vec::new();
    for table in &select.from {
        relation_of(&table.relation, with, lookup, &mut out);
        for join in &table.joins {
            relation_of(&join.relation, with, lookup, &mut out);
        }
    }
    if out.is_empty() {
        return Err("no_relation");
    }
    Ok(out)
}

fn keyless(qualifier: Option<Ident>, why: &'static str) -> Relation {
    Relation {
        qualifier,
        key: Err(why),
    }
}

fn relation_of(
    factor: &TableFactor,
    with: Option<&With>,
    lookup: &mut KeyLookup<'_>,
    out: &mut Vec<Relation>,
) {
    let alias_of =
        |alias: &Option<sqlparser::ast::TableAlias>| alias.as_ref().map(|a| a.name.clone());
    match factor {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let (Some(parts), Some(written)) = (name_parts(name), last_ident(name)) else {
                out.push(keyless(alias_of(alias), "relation"));
                return;
            };
            let qualifier = alias
                .as_ref()
                .map_or_else(|| written.clone(), |a| a.name.clone());
            if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                // `FROM entries AS e(a, b)` renames the columns.
                out.push(keyless(Some(qualifier), "column_aliases"));
                return;
            }
            let key = match parts.as_slice() {
                [single] => match find_cte(with, single) {
                    Some(cte) => cte_key(cte, with, lookup),
                    None => lookup(&parts).ok_or("no_key"),
                },
                _ => lookup(&parts).ok_or("no_key"),
            };
            out.push(Relation {
                qualifier: Some(qualifier),
                key,
            });
        }
        TableFactor::NestedJoin {
            table_with_joins,
            alias: None,
        } => {
            relation_of(&table_with_joins.relation, with, lookup, out);
            for join in &table_with_joins.joins {
                relation_of(&join.relation, with, lookup, out);
            }
        }
        TableFactor::NestedJoin { alias, .. } => out.push(keyless(alias_of(alias), "aliased_join")),
        TableFactor::Derived { alias, .. } => out.push(keyless(alias_of(alias), "derived_table")),
        TableFactor::Table { alias, .. } | TableFactor::Function { alias, .. } => {
            out.push(keyless(alias_of(alias), "table_function"))
        }
        TableFactor::TableFunction { alias, .. } => {
            out.push(keyless(alias_of(alias), "table_function"))
        }
        TableFactor::UNNEST { alias, .. } => out.push(keyless(alias_of(alias), "unnest")),
        _ => out.push(keyless(None, "relation")),
    }
}

/// The CTE a one-part relation name refers to in the outermost query.
pub(crate) fn find_cte<'a>(with: Option<&'a With>, name: &str) -> Option<&'a Cte> {
    with?
        .cte_tables
        .iter()
        .find(|cte| ident_key(&cte.alias.name) == name)
}

/// The key of a CTE that passes a base table's key through: the CTE must be
/// a plain SELECT over one base table whose select list provably holds
/// each key column exactly once. The key's columns are then the CTE's
/// output names for them.
fn cte_key(
    cte: &Cte,
    with: Option<&With>,
    lookup: &mut KeyLookup<'_>,
) -> Result<Key, &'static str> {
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
    let base = lookup(&parts).ok_or("cte")?;
    let columns = base
        .columns
        .iter()
        .map(|column| named_output(&select.projection, &qualifier, column, true))
        .collect::<Option<Vec<String>>>()
        .ok_or("cte")?;
    Ok(Key {
        columns,
        source: base.source,
    })
}

/// Whether `expr` is a reference to column `column` of the relation seen
/// as `qualifier`: qualified with it, or bare when that relation is the
/// only one.
pub(crate) fn is_column_ref(expr: &Expr, qualifier: &Ident, column: &str, single: bool) -> bool {
    match column_ref(expr) {
        Some((Some(q), c)) => c == column && q == ident_key(qualifier),
        Some((None, c)) => single && c == column,
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

/// Whether a wildcard item expands the columns of the relation seen as
/// `qualifier`.
fn wildcard_covers(item: &SelectItem, qualifier: &Ident) -> bool {
    match item {
        SelectItem::Wildcard(_) => true,
        SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) => {
            last_ident(name).is_some_and(|last| ident_key(last) == ident_key(qualifier))
        }
        _ => false,
    }
}

/// Whether the select list holds column `column` of the relation seen as
/// `qualifier` (what `SELECT DISTINCT` requires of an ORDER BY key): as a
/// column, aliased or not, or through `*` / `rel.*`.
pub(crate) fn covers(
    projection: &[SelectItem],
    qualifier: &Ident,
    column: &str,
    single: bool,
) -> bool {
    projection.iter().any(|item| {
        wildcard_covers(item, qualifier)
            || item_expr(item).is_some_and(|e| is_column_ref(e, qualifier, column, single))
    })
}

/// The name of the output column that carries column `column` of the
/// relation seen as `qualifier`, when it is provably exactly one output
/// column. `SELECT *, id` (two `id` columns) and `SELECT *, sys_id AS key`
/// (the table may have its own `key`) are not proof; `SELECT *` over a
/// single relation and `SELECT e.sys_id AS key, title` are. Over a join
/// only an explicit, qualified reference is.
pub(crate) fn named_output(
    projection: &[SelectItem],
    qualifier: &Ident,
    column: &str,
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
        matches!(item, SelectItem::QualifiedWildcard(..)) && !wildcard_covers(item, qualifier)
    }) {
        return None;
    }
    // (output name, carries the column) of every explicit item.
    let explicit: Vec<(Option<String>, bool)> = projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::UnnamedExpr(expr) => Some((
                column_ref(expr).map(|(_, c)| c),
                is_column_ref(expr, qualifier, column, single),
            )),
            SelectItem::ExprWithAlias { expr, alias } => Some((
                Some(ident_key(alias)),
                is_column_ref(expr, qualifier, column, single),
            )),
            SelectItem::ExprWithAliases { .. } => Some((None, false)),
            _ => None,
        })
        .collect();
    let mut candidates: Vec<&str> = Vec::new();
    if wildcards > 0 {
        candidates.push(column);
    }
    candidates.extend(
        explicit
            .iter()
            .filter(|(_, carries)| *carries)
            .filter_map(|(name, _)| name.as_deref()),
    );
    candidates
        .into_iter()
        .find(|candidate| {
            let from_wildcards = match (wildcards, *candidate == column) {
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

/// The output names of all of `key`'s columns of the relation seen as
/// `qualifier`, when each is provably exactly one output column.
pub(crate) fn key_outputs(
    projection: &[SelectItem],
    qualifier: &Ident,
    key: &Key,
    single: bool,
) -> Option<Vec<String>> {
    key.columns
        .iter()
        .map(|column| named_output(projection, qualifier, column, single))
        .collect()
}

/// A column of the relation seen as `.0` (folded qualifier) named `.1`.
pub(crate) type QualifiedColumn = (String, String);

/// Columns that a join's ON clause proves equal to another relation's, in
/// every row of the result: `FROM e JOIN f ON f.env_id = e.env_id` lets
/// `e.env_id` stand for `f.env_id` (and the other way round). For a LEFT
/// JOIN only the joined relation's columns may be stood for: when it has
/// no matching row its columns are NULL, and the row is still the only one
/// of its left-hand row. Only equalities of qualified columns joined by
/// AND count.
pub(crate) fn join_substitutes(select: &Select) -> Vec<(QualifiedColumn, QualifiedColumn)> {
    let mut out = Vec::new();
    for table in &select.from {
        for join in &table.joins {
            let (constraint, both_ways) = match &join.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) => (c, true),
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (c, false),
                _ => continue,
            };
            let JoinConstraint::On(on) = constraint else {
                continue;
            };
            let joined = match &join.relation {
                TableFactor::Table { name, alias, .. } => alias
                    .as_ref()
                    .map(|a| ident_key(&a.name))
                    .or_else(|| last_ident(name).map(ident_key)),
                _ => None,
            };
            let mut pairs = Vec::new();
            equalities(on, &mut pairs);
            for (a, b) in pairs {
                if both_ways || joined.as_deref() == Some(a.0.as_str()) {
                    out.push((a.clone(), b.clone()));
                }
                if both_ways || joined.as_deref() == Some(b.0.as_str()) {
                    out.push((b, a));
                }
            }
        }
    }
    out
}

/// The `a.x = b.y` conjuncts of an ON clause.
fn equalities(expr: &Expr, out: &mut Vec<(QualifiedColumn, QualifiedColumn)>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            equalities(left, out);
            equalities(right, out);
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            if let (Some((Some(qa), ca)), Some((Some(qb), cb))) =
                (column_ref(left), column_ref(right))
            {
                if qa != qb {
                    out.push(((qa, ca), (qb, cb)));
                }
            }
        }
        Expr::Nested(inner) => equalities(inner, out),
        _ => {}
    }
}
