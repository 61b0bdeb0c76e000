//! What the rewriter knows about PostgreSQL functions, by name.
//!
//! The parser sees calls, not catalogs: whether a call escapes a read-only
//! transaction, depends on the session, changes on every call, aggregates
//! or returns a set is decided from the function's unqualified, lower-cased
//! name against the lists below. Matching the last name part only is on
//! the safe side: `pg_catalog.pg_sleep` is `pg_sleep`, and an extension
//! installed in its own schema (`ext.dblink_exec`) is still dblink.

use sqlparser::ast::{Expr, Function, ObjectName, Query, Visit, Visitor};
use std::ops::ControlFlow;

/// The lower-cased last part of a function name ("" when it has none).
pub(crate) fn base_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .map(|ident| ident.value.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Functions whose effects escape a read-only transaction (matched on the
/// lower-cased unqualified name). A trailing `*` means a prefix.
const SIDE_EFFECT_FUNCTIONS: &[&str] = &[
    // advisory locks (session-level ones outlive the transaction)
    "pg_advisory_*",
    "pg_try_advisory_*",
    // notifications and settings
    "pg_notify",
    "set_config",
    // backend signalling and server control
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_log_backend_memory_contexts",
    // WAL and backup control
    "pg_switch_wal",
    "pg_switch_xlog",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_xlog_replay_pause",
    "pg_xlog_replay_resume",
    "pg_logical_emit_message",
    // replication slots and origins
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "pg_logical_slot_get_*",
    "pg_replication_origin_*",
    // large objects
    "lo_*",
    "loread",
    "lowrite",
    // other databases, sleeping
    "dblink*",
    "pg_sleep*",
    // sequences and transaction ids
    "nextval",
    "setval",
    "txid_current",
    "pg_current_xact_id",
    // statistics and files
    "pg_stat_reset*",
    "pg_stat_statements_reset",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
];

/// Functions whose result depends on the calling session. The current
/// schema differs between the old and the new side by design (their
/// search_paths differ), so comparing it would always "mismatch".
const SESSION_FUNCTIONS: &[&str] = &[
    "pg_backend_pid",
    "currval",
    "lastval",
    "inet_client_addr",
    "inet_client_port",
    "pg_my_temp_schema",
    "pg_listening_channels",
    "current_schema",
    "current_schemas",
];

/// Functions whose value changes from one call to the next (unlike `now()`,
/// which is fixed for the shadow's transaction): ordering by them orders
/// nothing, so `ORDER BY random() LIMIT 5` picks arbitrary rows.
const VOLATILE_FUNCTIONS: &[&str] = &[
    "random",
    "random_normal",
    "clock_timestamp",
    "statement_timestamp",
    "timeofday",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
];

/// Whether a function (lower-cased base name) returns something new on
/// every call.
pub(crate) fn is_volatile(name: &str) -> bool {
    VOLATILE_FUNCTIONS.contains(&name)
}

/// Whether `expr` calls a volatile function anywhere inside it.
pub(crate) fn calls_volatile(expr: &Expr) -> bool {
    count_volatile(expr) > 0
}

/// How many volatile function calls `expr` contains.
pub(crate) fn count_volatile(expr: &Expr) -> usize {
    struct Volatile(usize);
    impl Visitor for Volatile {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(function) = expr {
                if is_volatile(&base_name(&function.name)) {
                    self.0 += 1;
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = Volatile(0);
    let _ = expr.visit(&mut v);
    v.0
}

/// Whether a function (lower-cased base name) has effects that escape a
/// read-only transaction, by the built-in list or `extra` patterns
/// (`[shadow] deny_functions`).
pub(crate) fn has_side_effects(name: &str, extra: &[String]) -> bool {
    is_slot_function(name)
        || SIDE_EFFECT_FUNCTIONS
            .iter()
            .any(|pattern| matches_pattern(name, pattern))
        || extra
            .iter()
            .any(|pattern| matches_pattern(name, &pattern.to_ascii_lowercase()))
}

/// Whether a function's result depends on the calling session.
pub(crate) fn is_session_dependent(name: &str) -> bool {
    SESSION_FUNCTIONS.contains(&name)
}

/// Whether `name` (lower-case) matches a deny-list pattern.
fn matches_pattern(name: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Replication slot creators and copiers: `pg_create_*_replication_slot`,
/// `pg_copy_*_replication_slot`.
fn is_slot_function(name: &str) -> bool {
    (name.starts_with("pg_create_") || name.starts_with("pg_copy_"))
        && name.ends_with("_replication_slot")
}

/// Whether any of `exprs` calls, outside subqueries, a function that
/// `matches` (name lower-cased, the call itself).
pub(crate) fn calls_at_top<'a>(
    exprs: impl IntoIterator<Item = &'a Expr>,
    matches: fn(&str, &Function) -> bool,
) -> bool {
    struct Finder {
        depth: usize,
        matches: fn(&str, &Function) -> bool,
        found: bool,
    }
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth = self.depth.saturating_sub(1);
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(function) = expr {
                if self.depth == 0 && (self.matches)(&base_name(&function.name), function) {
                    self.found = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder {
        depth: 0,
        matches,
        found: false,
    };
    for expr in exprs {
        let _ = expr.visit(&mut finder);
    }
    finder.found
}

/// Aggregate calls (not window calls): built-in aggregates, and any call
/// with FILTER or WITHIN GROUP. User-defined aggregates are not known.
pub(crate) fn is_aggregate(name: &str, function: &Function) -> bool {
    const AGGREGATES: &[&str] = &[
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "array_agg",
        "string_agg",
        "bool_and",
        "bool_or",
        "every",
        "bit_and",
        "bit_or",
        "bit_xor",
        "json_agg",
        "jsonb_agg",
        "json_agg_strict",
        "jsonb_agg_strict",
        "json_object_agg",
        "jsonb_object_agg",
        "json_object_agg_strict",
        "jsonb_object_agg_strict",
        "json_object_agg_unique",
        "jsonb_object_agg_unique",
        "json_object_agg_unique_strict",
        "jsonb_object_agg_unique_strict",
        "json_arrayagg",
        "json_objectagg",
        "xmlagg",
        "range_agg",
        "range_intersect_agg",
        "any_value",
        "stddev",
        "stddev_pop",
        "stddev_samp",
        "variance",
        "var_pop",
        "var_samp",
        "corr",
        "covar_pop",
        "covar_samp",
        "mode",
        "percentile_cont",
        "percentile_disc",
    ];
    function.over.is_none()
        && (AGGREGATES.contains(&name)
            || name.starts_with("regr_")
            || function.filter.is_some()
            || !function.within_group.is_empty())
}

/// Built-in set-returning functions, which turn one input row into many.
pub(crate) fn is_set_returning(name: &str, _function: &Function) -> bool {
    const SRFS: &[&str] = &[
        "unnest",
        "generate_series",
        "generate_subscripts",
        "regexp_matches",
        "regexp_split_to_table",
        "string_to_table",
        "json_array_elements",
        "json_array_elements_text",
        "jsonb_array_elements",
        "jsonb_array_elements_text",
        "json_each",
        "json_each_text",
        "jsonb_each",
        "jsonb_each_text",
        "json_object_keys",
        "jsonb_object_keys",
        "json_populate_recordset",
        "jsonb_populate_recordset",
        "json_to_recordset",
        "jsonb_to_recordset",
        "jsonb_path_query",
        "ts_stat",
        "ts_debug",
    ];
    SRFS.contains(&name)
}
