//! `[shadow] table_map`: relations that the migration renamed or moved,
//! rewritten on the NEW side only.
//!
//! Most migrations are covered by running the new side with a different
//! search_path; the table map handles the rest (`entries` became
//! `v2.entry_records`). Names are replaced in every FROM and JOIN, also in
//! subqueries and CTE bodies, but never where the name is a CTE. A renamed
//! relation without an alias gets its old name as alias (`FROM
//! v2.entry_records AS entries`), so `entries.title` and the tiebreaker's
//! `entries.id` keep resolving.

use super::names::{ident_key, last_ident, name_parts, object_name_for, relation_keys};
use super::rules::RewriteRules;
use sqlparser::ast::{
    Expr, ObjectName, Query, TableAlias, TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};
use std::collections::HashSet;
use std::ops::ControlFlow;

/// Applies `rules.table_map` to `query`; returns whether anything changed.
pub(crate) fn apply(query: &mut Query, rules: &RewriteRules) -> bool {
    if rules.table_map.is_empty() {
        return false;
    }
    let mut ctes = CteNames::default();
    let _ = Visit::visit(&*query, &mut ctes);
    let mut renamer = Renamer {
        rules,
        ctes: ctes.0,
        renamed_qualified: Vec::new(),
        changed: false,
    };
    let _ = VisitMut::visit(query, &mut renamer);
    if !renamer.renamed_qualified.is_empty() {
        // Second pass: columns written as `schema.table.column` against a
        // relation that now carries an alias.
        let mut columns = QualifiedColumns {
            renamed: &renamer.renamed_qualified,
        };
        let _ = VisitMut::visit(query, &mut columns);
    }
    renamer.changed
}

/// Every CTE name declared anywhere in the statement. Scoping is
/// approximated: a table is never renamed where any CTE has its name.
#[derive(Default)]
struct CteNames(HashSet<String>);

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.0
                .extend(with.cte_tables.iter().map(|cte| ident_key(&cte.alias.name)));
        }
        ControlFlow::Continue(())
    }
}

struct Renamer<'a> {
    rules: &'a RewriteRules,
    ctes: HashSet<String>,
    /// Folded parts of renamed multi-part names that got an alias.
    renamed_qualified: Vec<Vec<String>>,
    changed: bool,
}

/// The configured new name (`"table"` or `"schema.table"`) for a relation
/// named `parts`, if the table map renames it.
pub(crate) fn target<'r>(parts: &[String], rules: &'r RewriteRules) -> Option<&'r str> {
    relation_keys(parts)
        .iter()
        .find_map(|key| rules.table_map.get(key))
        .map(String::as_str)
}

impl Renamer<'_> {
    /// The configured new name for a relation, if any.
    fn target(&self, parts: &[String]) -> Option<&str> {
        target(parts, self.rules)
    }
}

impl VisitorMut for Renamer<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let Some(parts) = name_parts(name) else {
            return ControlFlow::Continue(());
        };
        if let [single] = parts.as_slice() {
            if self.ctes.contains(single) {
                return ControlFlow::Continue(());
            }
        }
        let Some(target) = self.target(&parts) else {
            return ControlFlow::Continue(());
        };
        let new_name: ObjectName = object_name_for(target);
        if *name == new_name {
            return ControlFlow::Continue(());
        }
        if alias.is_none() {
            if parts.len() > 1 {
                self.renamed_qualified.push(parts.clone());
            }
            let old_last = last_ident(name).cloned();
            let new_last = last_ident(&new_name).map(ident_key);
            if let Some(old_last) = old_last {
                if new_last.as_deref() != Some(ident_key(&old_last).as_str()) {
                    *alias = Some(TableAlias {
                        explicit: true,
                        name: old_last,
                        columns: Vec::new(),
                        at: None,
                    });
                }
            }
        }
        *name = new_name;
        self.changed = true;
        ControlFlow::Continue(())
    }
}

/// Rewrites `schema.table.column` to `table.column` for renamed relations
/// (the alias is the old table name; the schema-qualified form would no
/// longer resolve).
struct QualifiedColumns<'a> {
    renamed: &'a [Vec<String>],
}

impl VisitorMut for QualifiedColumns<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(parts) = expr {
            if let Some((column, relation)) = parts.split_last() {
                let folded: Vec<String> = relation.iter().map(ident_key).collect();
                if relation.len() > 1 && self.renamed.contains(&folded) {
                    if let Some(table) = relation.last() {
                        *parts = vec![table.clone(), column.clone()];
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}
