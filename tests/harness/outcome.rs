//! A comparison outcome built by hand, as the shadow would report it, for
//! tests of what consumes outcomes (the store, the CLI). Shared by path, so
//! test targets that do not start clusters need not compile the harness.

use pgshadow::capture::fingerprint::Fingerprint;
use pgshadow::diff::{CellChange, Diff, DiffKind, RowChange, RowIds};
use pgshadow::outcome::{Outcome, OutcomeKind};
use pgshadow::rewrite::OrderBasis;
use std::time::Duration;

/// An outcome of `kind` for a statement the client sent as `client_sql`
/// and the shadow ran as `old_sql` and `new_sql`, with parameter `7`,
/// TimeZone UTC, snapshot xmin 742 and no diff or errors yet.
pub fn outcome(
    fingerprint: Fingerprint,
    kind: OutcomeKind,
    client_sql: &str,
    old_sql: &str,
    new_sql: &str,
) -> Outcome {
    Outcome {
        fingerprint,
        kind,
        confirmed: None,
        database: "app".into(),
        client_sql: client_sql.into(),
        old_sql: old_sql.into(),
        new_sql: new_sql.into(),
        params: vec![Some("7".into())],
        settings: vec![("TimeZone".into(), "UTC".into())],
        snapshot_xmin: Some(742),
        old_time: Duration::from_micros(1500),
        new_time: Duration::from_micros(2500),
        diff: None,
        old_error: None,
        new_error: None,
        detail: None,
        ordering: pgshadow::diff::RowOrder::Total,
        tiebreak: pgshadow::rewrite::TiebreakKind::Appended,
        basis: OrderBasis::CatalogKey,
        keys: "entries (id) primary_key".into(),
        noise: None,
        latency: None,
        slower: None,
    }
}

/// `statement` (any outcome of the statement) as a confirmed mismatch:
/// row `id`, bound as the parameter, differs in `column`, `old` on the old
/// side and `new` on the new.
pub fn values_differ(statement: Outcome, id: i64, column: &str, old: &str, new: &str) -> Outcome {
    let row = |v: &str| vec![Some(id.to_string()), Some(v.to_string())];
    Outcome {
        kind: OutcomeKind::Mismatch,
        confirmed: Some(true),
        params: vec![Some(id.to_string())],
        diff: Some(Diff {
            kind: DiffKind::Values,
            differing_columns: vec![column.into()],
            summary: format!("id={id}: {column} old='{old}' new='{new}'"),
            old_rows: 1,
            new_rows: 1,
            old_columns: vec!["id".into(), column.into()],
            new_columns: vec!["id".into(), column.into()],
            changed: vec![RowChange {
                key: format!("id={id}"),
                cells: vec![CellChange {
                    column: column.into(),
                    old: Some(old.into()),
                    new: Some(new.into()),
                }],
                old_row: row(old),
                new_row: row(new),
            }],
            missing: Vec::new(),
            extra: Vec::new(),
            column_changes: Vec::new(),
            ordering: pgshadow::diff::RowOrder::Total,
            truncated: false,
            ids: RowIds {
                columns: vec!["id".into()],
                changed: vec![vec![Some(id.to_string())]],
                ..RowIds::default()
            },
        }),
        ..statement
    }
}
