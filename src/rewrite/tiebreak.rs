//! The tiebreaker: make the outermost ORDER BY a total order by appending
//! each relation's key, when that is provably valid for Postgres and does
//! not change which rows the query returns.
//!
//! Two runs of `ORDER BY updated_at` may return rows with equal
//! `updated_at` in different orders, and across two schemas they often do.
//! With every relation's key as the last keys both sides sort identically
//! and the diff compares rows by position. Relations without a key (a
//! reporting view, a subquery) keep their ties, but the keys of the others
//! are appended all the same: the runs of equal sort keys get smaller. Where
//! no key can be appended (DISTINCT without the key in the output, GROUP BY
//! without it, …) the plan says so and the diff compares rows with equal
//! keys as multisets instead.

use super::classify::cut_edges;
use super::functions::{calls_at_top, calls_volatile, is_aggregate, is_set_returning};
use super::keys::{Key, KeySource};
use super::names::{column_ref, ident_for, ident_key};
use super::order_by::{OrderBasis, Tiebreak};
use super::row_ids::output_ids;
use super::scope::{
    covers, is_column_ref, item_expr, key_outputs, named_output, ordinal, relations, KeyLookup,
    Relation,
};
use crate::diff::{Ordering, SortKey};
use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, Ident, OrderByExpr, OrderByKind, OrderByOptions, Query, Select,
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
    /// The output columns that name rows, when provable.
    pub id_columns: Vec<String>,
    /// Whether `id_columns` identify every row (each relation's key).
    pub id_unique: bool,
    /// What makes the order total, if anything.
    pub basis: OrderBasis,
    /// Per relation, the key the order ends in, for reports.
    pub keys: String,
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
        self.basis = OrderBasis::Partial;
        self.keys = format!("none appended ({why})");
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
    /// Nothing to append: the ORDER BY already ends in every key there is.
    /// `total` is false when a relation has no key, or for a UNION, whose
    /// branches may repeat keys.
    Complete {
        total: bool,
        sources: Vec<KeySource>,
        keys: String,
    },
    /// Append these keys.
    Append {
        keys: Vec<(Expr, SortKey)>,
        total: bool,
        sources: Vec<KeySource>,
        described: String,
    },
    NotApplicable(&'static str, String),
}

/// Decides the tiebreaker, ordering and row ids of `query`, asking
/// `lookup` for the key of each relation it reads.
pub(crate) fn analyse(query: &Query, lookup: &mut KeyLookup<'_>) -> Analysis {
    let query = outermost(query);
    let (offset, limit) = cut_edges(query);
    let with = query.with.as_ref();
    // The outermost SELECT's relations, asked for once.
    let select_rels = match &*query.body {
        SetExpr::Select(select) => Some((select, relations(select, with, lookup))),
        _ => None,
    };
    let (id_columns, id_unique) = match &select_rels {
        Some((select, Ok(rels))) => output_ids(select, rels),
        _ => (Vec::new(), false),
    };
    let unordered = |tiebreak| Analysis {
        tiebreak,
        appended: Vec::new(),
        ordering: Ordering::Unordered,
        id_columns: id_columns.clone(),
        id_unique,
        basis: OrderBasis::Unordered,
        keys: String::new(),
    };
    let order = match query.order_by.as_ref().map(|o| &o.kind) {
        None => return unordered(Tiebreak::NoOrderBy),
        // `ORDER BY random()`: the order means nothing, compare as sets.
        Some(OrderByKind::Expressions(order)) if order.iter().any(|o| calls_volatile(&o.expr)) => {
            return unordered(Tiebreak::NotApplicable("volatile_order"))
        }
        Some(OrderByKind::Expressions(order)) => order,
        Some(OrderByKind::All(_)) => {
            return Analysis {
                ordering: Ordering::Ordered {
                    keys: vec![SortKey::Unknown],
                    total: false,
                    offset,
                    limit,
                },
                basis: OrderBasis::Partial,
                ..unordered(Tiebreak::NotApplicable("order_by_all"))
            }
        }
    };
    let (mut keys, decision): (Vec<SortKey>, Decision) = match (&*query.body, &select_rels) {
        (SetExpr::Select(_), Some((select, rels))) => (
            order
                .iter()
                .map(|o| select_key(&o.expr, &select.projection))
                .collect(),
            match rels {
                Ok(rels) => select_decision(select, order, rels),
                Err(why) => Decision::NotApplicable(why, String::new()),
            },
        ),
        (body @ (SetExpr::SetOperation { .. } | SetExpr::Query(_)), _) => (
            order.iter().map(|o| output_key(&o.expr)).collect(),
            output_decision(body, order, with, lookup),
        ),
        (SetExpr::Values(_), _) => (
            order.iter().map(|o| output_key(&o.expr)).collect(),
            Decision::NotApplicable("values", String::new()),
        ),
        _ => (
            order.iter().map(|o| output_key(&o.expr)).collect(),
            Decision::NotApplicable("table", String::new()),
        ),
    };
    let with_ties = query.fetch.as_ref().is_some_and(|f| f.with_ties);
    let (tiebreak, appended, total, sources, described) = match decision {
        Decision::Complete {
            total: true,
            sources,
            keys,
        } => (Tiebreak::AlreadyTotal, Vec::new(), true, sources, keys),
        Decision::Complete { keys, .. } => (
            Tiebreak::NotApplicable("no_key"),
            Vec::new(),
            false,
            Vec::new(),
            keys,
        ),
        // Appending would change which rows tie with the last one.
        Decision::Append { described, .. } if with_ties => (
            Tiebreak::WithTies,
            Vec::new(),
            false,
            Vec::new(),
            format!("none appended (with_ties); {described}"),
        ),
        Decision::Append {
            keys: new,
            total,
            sources,
            described,
        } => {
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
            (Tiebreak::Appended, appended, total, sources, described)
        }
        Decision::NotApplicable(why, described) => (
            Tiebreak::NotApplicable(why),
            Vec::new(),
            false,
            Vec::new(),
            described,
        ),
    };
    let basis = match (total, sources.iter().all(|s| s.from_catalog())) {
        (false, _) => OrderBasis::Partial,
        (true, true) if !sources.is_empty() => OrderBasis::CatalogKey,
        (true, _) => OrderBasis::Config,
    };
    Analysis {
        tiebreak,
        appended,
        ordering: Ordering::Ordered {
            keys,
            total,
            offset,
            limit,
        },
        id_columns,
        id_unique,
        basis,
        keys: described,
    }
}

/// `q (a, b) primary_key` for a relation whose key ends the order.
fn described_key(rel: &Relation, key: &Key) -> String {
    format!(
        "{} ({}) {}",
        rel.shown(),
        key.columns.join(", "),
        key.source.label()
    )
}

/// `q no key (why)`.
fn described_keyless(rel: &Relation, why: &str) -> String {
    format!("{} no key ({why})", rel.shown())
}

/// Tiebreaker for `SELECT … FROM … ORDER BY …`: append each relation's key
/// columns that the ORDER BY lacks, for every relation that has a key.
fn select_decision(select: &Select, order: &[OrderByExpr], rels: &[Relation]) -> Decision {
    if let Err(why) = statement_allows_keys(select, order) {
        return Decision::NotApplicable(why, String::new());
    }
    let single = rels.len() == 1;
    let projection = &select.projection;
    let mut complete = true;
    let mut first_why: Option<&'static str> = None;
    let mut sources = Vec::new();
    let mut described = Vec::new();
    let mut to_append: Vec<(Ident, String, SortKey)> = Vec::new();
    for rel in rels {
        let (Some(qualifier), Some(key)) = (&rel.qualifier, rel.key()) else {
            let why = rel.key.as_ref().err().copied().unwrap_or("no_key");
            complete = false;
            first_why.get_or_insert(why);
            described.push(described_keyless(rel, why));
            continue;
        };
        let missing: Vec<&String> = key
            .columns
            .iter()
            .filter(|column| {
                !order
                    .iter()
                    .any(|o| orders_by_column(&o.expr, qualifier, column, single, projection))
            })
            .collect();
        if let Err(why) = relation_allows(select, qualifier, &missing, single) {
            complete = false;
            first_why.get_or_insert(why);
            described.push(described_keyless(rel, why));
            continue;
        }
        sources.push(key.source);
        described.push(described_key(rel, key));
        for column in missing {
            let sort_key = named_output(projection, qualifier, column, single)
                .map_or(SortKey::Unknown, SortKey::Name);
            to_append.push((qualifier.clone(), column.clone(), sort_key));
        }
    }
    let described = described.join("; ");
    if sources.is_empty() {
        return Decision::NotApplicable(first_why.unwrap_or("no_key"), described);
    }
    if to_append.is_empty() {
        return Decision::Complete {
            total: complete,
            sources,
            keys: described,
        };
    }
    let keys = to_append
        .into_iter()
        .map(|(qualifier, column, sort_key)| {
            let expr = Expr::CompoundIdentifier(vec![qualifier, ident_for(&column)]);
            (expr, sort_key)
        })
        .collect();
    Decision::Append {
        keys,
        total: complete,
        sources,
        described,
    }
}

/// Whether an ORDER BY key is column `column` of the relation seen as
/// `qualifier`: the column itself, an ordinal or an output alias that
/// stands for it.
fn orders_by_column(
    expr: &Expr,
    qualifier: &Ident,
    column: &str,
    single: bool,
    projection: &[SelectItem],
) -> bool {
    if let Some(n) = ordinal(expr) {
        return projection
            .get(n - 1)
            .and_then(item_expr)
            .is_some_and(|e| is_column_ref(e, qualifier, column, single));
    }
    if let Expr::Identifier(ident) = expr {
        // In ORDER BY a bare name means the output column first.
        let name = ident_key(ident);
        let aliased = projection.iter().find_map(|item| match item {
            SelectItem::ExprWithAlias { expr, alias } if ident_key(alias) == name => Some(expr),
            _ => None,
        });
        if let Some(aliased) = aliased {
            return is_column_ref(aliased, qualifier, column, single);
        }
    }
    is_column_ref(expr, qualifier, column, single)
}

/// Whether the statement has row keys at all: an aggregate query without
/// GROUP BY has none, grouping sets and set-returning functions in the
/// select list make rows that no key identifies.
fn statement_allows_keys(select: &Select, order: &[OrderByExpr]) -> Result<(), &'static str> {
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
    } else if grouping
        .iter()
        .any(|g| matches!(g, Expr::Rollup(_) | Expr::Cube(_) | Expr::GroupingSets(_)))
    {
        return Err("grouping_sets");
    }
    // A set-returning function in the select list repeats the row key.
    if calls_at_top(projection.iter().filter_map(item_expr), is_set_returning) {
        return Err("set_returning_function");
    }
    Ok(())
}

/// Whether Postgres accepts `missing` columns of the relation seen as
/// `qualifier` as extra ORDER BY keys without changing the rows: DISTINCT
/// needs them in the output, GROUP BY in the grouping.
fn relation_allows(
    select: &Select,
    qualifier: &Ident,
    missing: &[&String],
    single: bool,
) -> Result<(), &'static str> {
    let projection = &select.projection;
    if let GroupByExpr::Expressions(grouping, _) = &select.group_by {
        for column in missing {
            let grouped = grouping.is_empty()
                || grouping.iter().any(|g| match ordinal(g) {
                    Some(n) => projection
                        .get(n - 1)
                        .and_then(item_expr)
                        .is_some_and(|e| is_column_ref(e, qualifier, column, single)),
                    None => is_column_ref(g, qualifier, column, single),
                });
            if !grouped {
                return Err("group_by");
            }
        }
    }
    if matches!(select.distinct, Some(Distinct::Distinct))
        && !missing
            .iter()
            .all(|column| covers(projection, qualifier, column, single))
    {
        return Err("distinct");
    }
    Ok(())
}

/// Tiebreaker for a set operation (or a parenthesised query) under the
/// outermost ORDER BY, which can only name output columns: append the bare
/// output names of the left-most SELECT's key. The result is total only
/// when every row comes from that SELECT (INTERSECT / EXCEPT); a UNION may
/// bring the same key from two branches, so its keys stay tie-tolerant
/// (but with far smaller runs of equal keys).
fn output_decision(
    body: &SetExpr,
    order: &[OrderByExpr],
    with: Option<&With>,
    lookup: &mut KeyLookup<'_>,
) -> Decision {
    let refuse = || Decision::NotApplicable("set_operation", String::new());
    let Some((left, subset)) = leftmost_select(body) else {
        return refuse();
    };
    let rels = match relations(left, with, lookup) {
        Ok(rels) => rels,
        Err(_) => return refuse(),
    };
    let [rel] = rels.as_slice() else {
        return refuse();
    };
    let (Some(qualifier), Some(key)) = (&rel.qualifier, rel.key()) else {
        return refuse();
    };
    if calls_at_top(
        left.projection.iter().filter_map(item_expr),
        is_set_returning,
    ) {
        return refuse();
    }
    let Some(names) = key_outputs(&left.projection, qualifier, key, true) else {
        return refuse();
    };
    let described = described_key(rel, key);
    let missing: Vec<(&String, &String)> = key
        .columns
        .iter()
        .zip(&names)
        .filter(|(column, name)| {
            !order.iter().any(|o| match (ordinal(&o.expr), &o.expr) {
                (Some(n), _) => left
                    .projection
                    .get(n - 1)
                    .and_then(item_expr)
                    .is_some_and(|e| is_column_ref(e, qualifier, column, true)),
                (None, Expr::Identifier(ident)) => ident_key(ident) == **name,
                _ => false,
            })
        })
        .collect();
    if missing.is_empty() {
        return Decision::Complete {
            total: subset,
            sources: vec![key.source],
            keys: described,
        };
    }
    Decision::Append {
        keys: missing
            .into_iter()
            .map(|(_, name)| {
                (
                    Expr::Identifier(ident_for(name)),
                    SortKey::Name(name.clone()),
                )
            })
            .collect(),
        total: subset,
        sources: vec![key.source],
        described,
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
