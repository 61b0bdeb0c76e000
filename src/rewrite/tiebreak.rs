//! The tiebreaker: make the outermost ORDER BY a total order by appending
//! the row id, when that is provably valid for Postgres and does not change
//! which rows the query returns.
//!
//! Two runs of `ORDER BY updated_at` may return rows with equal
//! `updated_at` in different orders, and across two schemas they often do.
//! With the id as the last key both sides sort identically and the diff
//! compares rows by position. Where the id cannot be appended (DISTINCT
//! without the id in the output, GROUP BY without it, derived tables, …)
//! the plan says so and the diff compares rows with equal keys as
//! multisets instead.

use super::classify::is_limited;
use super::functions::{calls_at_top, calls_volatile, is_aggregate, is_set_returning};
use super::names::{column_ref, ident_for, ident_key};
use super::scope::{covers, is_id_ref, item_expr, named_output, ordinal, relations, Relation};
use super::{RewriteRules, Tiebreak};
use crate::diff::{Ordering, SortKey};
use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, OrderByExpr, OrderByKind, OrderByOptions, Query, Select,
    SelectItem, SetExpr, SetOperator, With,
};

/// What the tiebreaker decided for one statement.
#[derive(Debug, Clone)]
pub(crate) struct Analysis {
    pub tiebreak: Tiebreak,
    /// Keys to append to the outermost ORDER BY (only when `Appended`).
    pub appended: Vec<OrderByExpr>,
    /// The ordering of the result once `appended` is in place.
    pub ordering: Ordering,
    /// The output column that keys rows, when provable.
    pub id_column: Option<String>,
}

impl Analysis {
    /// The same statement without the appended keys (their rewrite did not
    /// survive the round trip through the printer): tie-tolerant.
    pub(crate) fn without_append(mut self, why: &'static str) -> Analysis {
        if let Ordering::Ordered { keys, total, .. } = &mut self.ordering {
            keys.truncate(keys.len().saturating_sub(self.appended.len()));
            *total = false;
        }
        self.appended.clear();
        self.tiebreak = Tiebreak::NotApplicable(why);
        self
    }
}

/// The query whose ORDER BY decides the order of the result: redundant
/// parentheses (`(SELECT … ORDER BY …)`) are looked through.
pub(crate) fn outermost(mut query: &Query) -> &Query {
    while let Some(inner) = wrapped(query) {
        query = inner;
    }
    query
}

/// Calls `f` with the mutable [`outermost`] query.
pub(crate) fn with_outermost_mut<R>(query: &mut Query, f: impl FnOnce(&mut Query) -> R) -> R {
    if wrapped(query).is_some() {
        if let SetExpr::Query(inner) = &mut *query.body {
            return with_outermost_mut(inner, f);
        }
    }
    f(query)
}

/// The inner query of `(query)` when the parentheses add nothing.
fn wrapped(query: &Query) -> Option<&Query> {
    let bare = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none()
        && query.locks.is_empty();
    match &*query.body {
        SetExpr::Query(inner) if bare => Some(inner),
        _ => None,
    }
}

/// What to do with one ORDER BY.
enum Decision {
    /// The ORDER BY already holds every id. `total` is false for a UNION,
    /// whose branches may repeat ids.
    AlreadyTotal {
        total: bool,
    },
    /// Append these keys.
    Append {
        keys: Vec<(Expr, SortKey)>,
        total: bool,
    },
    NotApplicable(&'static str),
}

/// Decides the tiebreaker, ordering and id column of `query`.
pub(crate) fn analyse(query: &Query, rules: &RewriteRules) -> Analysis {
    let query = outermost(query);
    let limited = is_limited(query);
    let with = query.with.as_ref();
    let id_column = match &*query.body {
        SetExpr::Select(select) => output_id(select, with, rules),
        _ => None,
    };
    let order = match query.order_by.as_ref().map(|o| &o.kind) {
        None => {
            return Analysis {
                tiebreak: Tiebreak::NoOrderBy,
                appended: Vec::new(),
                ordering: Ordering::Unordered,
                id_column,
            }
        }
        Some(OrderByKind::Expressions(order)) if order.iter().any(|o| calls_volatile(&o.expr)) => {
            // `ORDER BY random()`: the order means nothing, compare as sets.
            return Analysis {
                tiebreak: Tiebreak::NotApplicable("volatile_order"),
                appended: Vec::new(),
                ordering: Ordering::Unordered,
                id_column,
            };
        }
        Some(OrderByKind::Expressions(order)) => order,
        Some(OrderByKind::All(_)) => {
            return Analysis {
                tiebreak: Tiebreak::NotApplicable("order_by_all"),
                appended: Vec::new(),
                ordering: Ordering::Ordered {
                    keys: vec![SortKey::Unknown],
                    total: false,
                    limited,
                },
                id_column,
            }
        }
    };
    let (mut keys, decision): (Vec<SortKey>, Decision) = match &*query.body {
        SetExpr::Select(select) => (
            order
                .iter()
                .map(|o| select_key(&o.expr, &select.projection))
                .collect(),
            select_decision(select, order, with, rules),
        ),
        body @ (SetExpr::SetOperation { .. } | SetExpr::Query(_)) => (
            order.iter().map(|o| output_key(&o.expr)).collect(),
            output_decision(body, order, with, rules),
        ),
        SetExpr::Values(_) => (
            order.iter().map(|o| output_key(&o.expr)).collect(),
            Decision::NotApplicable("values"),
        ),
        _ => (
            order.iter().map(|o| output_key(&o.expr)).collect(),
            Decision::NotApplicable("table"),
        ),
    };
    let with_ties = query.fetch.as_ref().is_some_and(|f| f.with_ties);
    let (tiebreak, appended, total) = match decision {
        Decision::AlreadyTotal { total } => (Tiebreak::AlreadyTotal, Vec::new(), total),
        // Appending would change which rows tie with the last one.
        Decision::Append { .. } if with_ties => (Tiebreak::WithTies, Vec::new(), false),
        Decision::Append { keys: new, total } => {
            let appended = new
                .into_iter()
                .map(|(expr, key)| {
                    keys.push(key);
                    OrderByExpr {
                        expr,
                        options: OrderByOptions {
                            sort: None,
                            nulls_first: None,
                        },
                        with_fill: None,
                    }
                })
                .collect();
            (Tiebreak::Appended, appended, total)
        }
        Decision::NotApplicable(why) => (Tiebreak::NotApplicable(why), Vec::new(), false),
    };
    Analysis {
        tiebreak,
        appended,
        ordering: Ordering::Ordered {
            keys,
            total,
            limited,
        },
        id_column,
    }
}

/// The output column that carries the row id of a single-relation SELECT.
fn output_id(select: &Select, with: Option<&With>, rules: &RewriteRules) -> Option<String> {
    let rels = relations(select, with, rules).ok()?;
    // Over a join, the first relation's id keys the report; it may repeat
    // (one-to-many joins), which the diff handles.
    let rel = rels.first()?;
    let single = rels.len() == 1;
    if calls_at_top(
        select.projection.iter().filter_map(item_expr),
        is_set_returning,
    ) {
        return None;
    }
    named_output(&select.projection, rel, single)
}

/// Tiebreaker for `SELECT … FROM … ORDER BY …`: append each relation's id.
fn select_decision(
    select: &Select,
    order: &[OrderByExpr],
    with: Option<&With>,
    rules: &RewriteRules,
) -> Decision {
    let rels = match relations(select, with, rules) {
        Ok(rels) => rels,
        Err(why) => return Decision::NotApplicable(why),
    };
    let single = rels.len() == 1;
    let missing: Vec<&Relation> = rels
        .iter()
        .filter(|rel| {
            !order
                .iter()
                .any(|o| orders_by_id(&o.expr, rel, single, &select.projection))
        })
        .collect();
    if missing.is_empty() {
        return Decision::AlreadyTotal { total: true };
    }
    if let Err(why) = can_append(select, order, &missing, single) {
        return Decision::NotApplicable(why);
    }
    let output_name = match rels.as_slice() {
        [rel] => named_output(&select.projection, rel, true),
        _ => None,
    };
    let keys = missing
        .iter()
        .map(|rel| {
            let expr = Expr::CompoundIdentifier(vec![rel.qualifier.clone(), ident_for(&rel.id)]);
            let name = output_name.clone().unwrap_or_else(|| rel.id.clone());
            (expr, SortKey::Name(name))
        })
        .collect();
    Decision::Append { keys, total: true }
}

/// Whether an ORDER BY key is `rel`'s id: the column itself, an ordinal or
/// an output alias that stands for it.
fn orders_by_id(expr: &Expr, rel: &Relation, single: bool, projection: &[SelectItem]) -> bool {
    if let Some(n) = ordinal(expr) {
        return projection
            .get(n - 1)
            .and_then(item_expr)
            .is_some_and(|e| is_id_ref(e, rel, single));
    }
    if let Expr::Identifier(ident) = expr {
        // In ORDER BY a bare name means the output column first.
        let name = ident_key(ident);
        let aliased = projection.iter().find_map(|item| match item {
            SelectItem::ExprWithAlias { expr, alias } if ident_key(alias) == name => Some(expr),
            _ => None,
        });
        if let Some(aliased) = aliased {
            return is_id_ref(aliased, rel, single);
        }
    }
    is_id_ref(expr, rel, single)
}

/// Whether Postgres accepts the ids of `missing` as extra ORDER BY keys
/// without changing the rows: DISTINCT needs them in the output, GROUP BY
/// in the grouping, and an aggregate query without GROUP BY has no row ids.
fn can_append(
    select: &Select,
    order: &[OrderByExpr],
    missing: &[&Relation],
    single: bool,
) -> Result<(), &'static str> {
    let projection = &select.projection;
    let grouping = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs.as_slice(),
        _ => return Err("group_by"),
    };
    if grouping.is_empty() {
        if select.having.is_some() {
            return Err("having");
        }
        let exprs = projection
            .iter()
            .filter_map(item_expr)
            .chain(order.iter().map(|o| &o.expr));
        if calls_at_top(exprs, is_aggregate) {
            return Err("aggregate");
        }
    } else {
        if grouping
            .iter()
            .any(|g| matches!(g, Expr::Rollup(_) | Expr::Cube(_) | Expr::GroupingSets(_)))
        {
            return Err("grouping_sets");
        }
        for rel in missing {
            let grouped = grouping.iter().any(|g| match ordinal(g) {
                Some(n) => projection
                    .get(n - 1)
                    .and_then(item_expr)
                    .is_some_and(|e| is_id_ref(e, rel, single)),
                None => is_id_ref(g, rel, single),
            });
            if !grouped {
                return Err("group_by");
            }
        }
    }
    if matches!(select.distinct, Some(Distinct::Distinct))
        && !missing.iter().all(|rel| covers(projection, rel, single))
    {
        return Err("distinct");
    }
    // A set-returning function in the select list repeats the row id.
    if calls_at_top(projection.iter().filter_map(item_expr), is_set_returning) {
        return Err("set_returning_function");
    }
    Ok(())
}

/// Tiebreaker for a set operation (or a parenthesised query) under the
/// outermost ORDER BY, which can only name output columns: append the
/// bare output name of the left-most SELECT's id. The result is total only
/// when every row comes from that SELECT (INTERSECT / EXCEPT); a UNION may
/// bring the same id from two branches, so its keys stay tie-tolerant (but
/// with far smaller runs of equal keys).
fn output_decision(
    body: &SetExpr,
    order: &[OrderByExpr],
    with: Option<&With>,
    rules: &RewriteRules,
) -> Decision {
    let Some((left, subset)) = leftmost_select(body) else {
        return Decision::NotApplicable("set_operation");
    };
    let rel = match relations(left, with, rules).as_deref() {
        Ok([rel]) => rel.clone(),
        _ => return Decision::NotApplicable("set_operation"),
    };
    if calls_at_top(
        left.projection.iter().filter_map(item_expr),
        is_set_returning,
    ) {
        return Decision::NotApplicable("set_operation");
    }
    let Some(name) = named_output(&left.projection, &rel, true) else {
        return Decision::NotApplicable("set_operation");
    };
    let already = order.iter().any(|o| match (ordinal(&o.expr), &o.expr) {
        (Some(n), _) => left
            .projection
            .get(n - 1)
            .and_then(item_expr)
            .is_some_and(|e| is_id_ref(e, &rel, true)),
        (None, Expr::Identifier(ident)) => ident_key(ident) == name,
        _ => false,
    });
    if already {
        return Decision::AlreadyTotal { total: subset };
    }
    Decision::Append {
        keys: vec![(Expr::Identifier(ident_for(&name)), SortKey::Name(name))],
        total: subset,
    }
}

/// The left-most SELECT of a set operation, and whether every result row
/// is one of its rows (no UNION on the way down).
fn leftmost_select(body: &SetExpr) -> Option<(&Select, bool)> {
    match body {
        SetExpr::Select(select) => Some((select, true)),
        SetExpr::Query(query) if query.with.is_none() => leftmost_select(&query.body),
        SetExpr::SetOperation { left, op, .. } => {
            let (select, subset) = leftmost_select(left)?;
            Some((select, subset && *op != SetOperator::Union))
        }
        _ => None,
    }
}

/// The sort key of an ORDER BY expression of a SELECT.
fn select_key(expr: &Expr, projection: &[SelectItem]) -> SortKey {
    if let Some(n) = ordinal(expr) {
        return SortKey::Ordinal(n);
    }
    for item in projection {
        if let SelectItem::ExprWithAlias {
            expr: aliased,
            alias,
        } = item
        {
            let by_alias = matches!(expr, Expr::Identifier(i) if ident_key(i) == ident_key(alias));
            if by_alias || aliased == expr {
                return SortKey::Name(ident_key(alias));
            }
        }
    }
    let Some((qualifier, column)) = column_ref(expr) else {
        return SortKey::Unknown;
    };
    let in_output = projection.iter().any(|item| match item {
        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => true,
        SelectItem::UnnamedExpr(e) => column_ref(e).is_some_and(|(q, c)| {
            c == column && (q.is_none() || qualifier.is_none() || q == qualifier)
        }),
        _ => false,
    });
    if in_output {
        SortKey::Name(column)
    } else {
        SortKey::Unknown
    }
}

/// The sort key of an ORDER BY expression over a set operation, which can
/// only name an output column.
fn output_key(expr: &Expr) -> SortKey {
    match (ordinal(expr), expr) {
        (Some(n), _) => SortKey::Ordinal(n),
        (None, Expr::Identifier(ident)) => SortKey::Name(ident_key(ident)),
        _ => SortKey::Unknown,
    }
}
