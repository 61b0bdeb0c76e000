//! Is a parsed statement provably a plain read that may run again on
//! another connection?
//!
//! The shadow runs every sample inside `REPEATABLE READ READ ONLY`, which
//! stops writes to tables but not effects that escape the transaction: a
//! session-level advisory lock, a `pg_notify`, a `dblink` write elsewhere,
//! a sequence advanced by `nextval`. Those are refused here, as are
//! statements whose result depends on the application's own session
//! (`pg_backend_pid()`, temporary tables) and LIMITs that pick arbitrary
//! rows. The checks walk the whole tree (subqueries, CTE bodies, FROM
//! functions), because a call hidden in a scalar subquery runs all the same.

use super::functions::{
    base_name, calls_volatile, count_volatile, has_side_effects, is_session_dependent, is_volatile,
};
use super::names::name_parts;
use super::rules::RewriteRules;
use crate::capture::skip::SkipReason;
use sqlparser::ast::{
    Expr, ObjectName, OrderByKind, Query, Select, Statement, TableFactor, Visit, Visitor,
};
use std::collections::HashSet;
use std::ops::ControlFlow;

/// Whether `query` has an ORDER BY that fixes which rows come first (none
/// of its keys is volatile). Ties are the tiebreaker's business.
pub(crate) fn has_stable_order(query: &Query) -> bool {
    match query.order_by.as_ref().map(|o| &o.kind) {
        None => false,
        Some(OrderByKind::Expressions(keys)) => !keys.iter().any(|k| calls_volatile(&k.expr)),
        Some(OrderByKind::All(_)) => true,
    }
}

/// Checks `statement` and returns the first reason, in the order of
/// [`SkipReason`]'s documentation, why it must not be replayed; else the
/// (lower-cased, unqualified, distinct) names of the functions it calls,
/// for the shadow to look up their volatility in the catalog: a
/// user-defined function is not on any list here.
pub(crate) fn classify(
    statement: &Statement,
    rules: &RewriteRules,
) -> Result<Vec<String>, SkipReason> {
    if !matches!(statement, Statement::Query(_)) {
        return Err(SkipReason::NotRead);
    }
    let mut findings = StatementFindings {
        rules,
        statements: 0,
        exists_subqueries: HashSet::new(),
        not_read: false,
        side_effect: false,
        session_dependent: false,
        limit_without_order: false,
        volatile_calls: 0,
        functions: Vec::new(),
    };
    let _ = statement.visit(&mut findings);
    // `ORDER BY random()` only shuffles (and is compared unordered); a
    // volatile call anywhere else changes the rows themselves.
    let in_order_by = match statement {
        Statement::Query(q) => match q.order_by.as_ref().map(|o| &o.kind) {
            Some(OrderByKind::Expressions(keys)) => {
                keys.iter().map(|k| count_volatile(&k.expr)).sum()
            }
            _ => 0,
        },
        _ => 0,
    };
    if findings.not_read {
        Err(SkipReason::NotRead)
    } else if findings.side_effect {
        Err(SkipReason::SideEffectFunction)
    } else if findings.session_dependent {
        Err(SkipReason::SessionDependent)
    } else if findings.limit_without_order {
        Err(SkipReason::LimitWithoutOrder)
    } else if findings.volatile_calls > in_order_by {
        Err(SkipReason::Nondeterministic)
    } else {
        Ok(findings.functions)
    }
}

/// Whether LIMIT, OFFSET or FETCH cuts the rows of `query`. `LIMIT ALL`
/// (parsed as no limit) does not.
pub(crate) fn is_limited(query: &Query) -> bool {
    use sqlparser::ast::LimitClause;
    let limit = match &query.limit_clause {
        Some(LimitClause::LimitOffset { limit, offset, .. }) => limit.is_some() || offset.is_some(),
        Some(LimitClause::OffsetCommaLimit { .. }) => true,
        None => false,
    };
    limit || query.fetch.is_some()
}

/// Where LIMIT/OFFSET/FETCH may cut a run of tied rows of `query`:
/// `(top, bottom)`. OFFSET skips rows before the page (unless it is the
/// literal 0), so the page's first run may be cut at its top; LIMIT and
/// FETCH end the page, so its last run may be cut at its bottom.
pub(crate) fn cut_edges(query: &Query) -> (bool, bool) {
    use sqlparser::ast::{Expr, LimitClause, Value};
    let skips = |offset: &Expr| !matches!(offset, Expr::Value(v) if matches!(&v.value, Value::Number(n, _) if n.trim_start_matches('0').is_empty()));
    let (top, bottom) = match &query.limit_clause {
        Some(LimitClause::LimitOffset { limit, offset, .. }) => (
            offset.as_ref().is_some_and(|o| skips(&o.value)),
            limit.is_some(),
        ),
        Some(LimitClause::OffsetCommaLimit { offset, .. }) => (skips(offset), true),
        None => (false, false),
    };
    (top, bottom || query.fetch.is_some())
}

/// What one walk over the statement found.
struct StatementFindings<'a> {
    rules: &'a RewriteRules,
    /// Statements seen; every one after the top-level statement is a
    /// data-modifying CTE or similar.
    statements: usize,
    /// Queries directly under EXISTS, by address (the tree is borrowed and
    /// does not move during the walk): their LIMIT cannot change the answer,
    /// so `EXISTS (SELECT 1 FROM t LIMIT 1)` stays eligible.
    exists_subqueries: HashSet<*const Query>,
    not_read: bool,
    side_effect: bool,
    session_dependent: bool,
    limit_without_order: bool,
    /// Calls to functions whose result changes from call to call.
    volatile_calls: usize,
    /// Names of the functions called, distinct.
    functions: Vec<String>,
}

impl StatementFindings<'_> {
    fn check_function(&mut self, name: &ObjectName) {
        let name = base_name(name);
        if has_side_effects(&name, &self.rules.deny_functions) {
            self.side_effect = true;
        }
        if is_session_dependent(&name) {
            self.session_dependent = true;
        }
        if is_volatile(&name) {
            self.volatile_calls += 1;
        }
        if !name.is_empty() && !self.functions.contains(&name) {
            self.functions.push(name);
        }
    }

    fn check_relation(&mut self, name: &ObjectName) {
        // `pg_temp.t` (and the backend's own `pg_temp_N.t`) name the
        // session's temporary schema, which another connection cannot see.
        // An unqualified temporary table is invisible here; it surfaces as
        // `both_error`.
        let Some(parts) = name_parts(name) else {
            return;
        };
        if let [.., schema, _table] = parts.as_slice() {
            if schema == "pg_temp" || schema.starts_with("pg_temp_") {
                self.session_dependent = true;
            }
        }
    }
}

impl Visitor for StatementFindings<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        self.statements += 1;
        if self.statements > 1 || !matches!(statement, Statement::Query(_)) {
            self.not_read = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if !query.locks.is_empty() {
            self.not_read = true;
        }
        let exempt = self.exists_subqueries.contains(&(query as *const Query));
        if is_limited(query) && !has_stable_order(query) && !exempt {
            self.limit_without_order = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if select.into.is_some() {
            self.not_read = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name, args: None, ..
            } => self.check_relation(name),
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.check_function(name),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(function) => self.check_function(&function.name),
            Expr::Exists { subquery, .. } => {
                self.exists_subqueries.insert(&**subquery as *const Query);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
