//! Behaviour of [`plan`](super::plan), one clause at a time. Cache
//! behaviour is tested beside the cache, name folding beside `names`.

mod classification;
mod ordering;
mod table_map;
mod tiebreaker;

use super::*;
use crate::capture::skip::SkipReason;
use crate::diff::{Ordering, SortKey};

/// The fixture's rules: `entries` is keyed by `sys_id`, everything else by
/// `id`; no table map unless a test adds one.
fn rules() -> RewriteRules {
    RewriteRules {
        default_id_column: "id".into(),
        id_columns: [("entries".to_string(), vec!["sys_id".to_string()])].into(),
        ..RewriteRules::default()
    }
}

/// Plans `sql` with [`rules`], panicking with the reason when skipped.
fn planned(sql: &str) -> Plan {
    plan(sql, &rules()).unwrap_or_else(|reason| panic!("{sql}: skipped as {reason}"))
}

/// The reason `sql` is skipped, panicking when it is not.
fn skipped(sql: &str) -> SkipReason {
    match plan(sql, &rules()) {
        Ok(plan) => panic!("{sql}: expected a skip, got {plan:?}"),
        Err(reason) => reason,
    }
}

/// The old side's SQL after planning.
fn old_sql(sql: &str) -> String {
    planned(sql).old_sql.to_string()
}

fn name(n: &str) -> SortKey {
    SortKey::Name(n.to_string())
}
