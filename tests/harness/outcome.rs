//! A comparison outcome built by hand, as the shadow would report it, for
//! tests of what consumes outcomes (the store, the CLI). Shared by path, so
//! test targets that do not start clusters need not compile the harness.

use pgshadow::capture::fingerprint::Fingerprint;
use pgshadow::shadow::outcome::{Outcome, OutcomeKind};
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
        ordering: "total",
        tiebreak: "appended",
    }
}
