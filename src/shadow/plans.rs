//! Both plans of a statement found slower: `EXPLAIN (FORMAT JSON)` of the
//! old and the new query, with the sample's own parameters, in one
//! REPEATABLE READ READ ONLY transaction that is rolled back.
//!
//! ```text
//! BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY
//! SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true),
//!        …,   -- the timed runs' settings (no parallel plans)
//!        set_config('search_path', <old>, true)
//! EXPLAIN (FORMAT JSON) <old query>        (the client's parameters, byte for byte)
//! SELECT set_config('search_path', <new>, true)
//! EXPLAIN (FORMAT JSON) <new query>
//! ROLLBACK
//! Sync
//! ```
//!
//! EXPLAIN without ANALYZE plans the statement and runs nothing, which READ
//! ONLY allows; the parameters are bound, so the planner sees the values
//! the slow sample had (a custom plan). This runs once per `slower`
//! incident, never per sample. Statements are unnamed: the connection's
//! statement cache is not touched.

use super::conn::protocol_error;
use super::conn::{ConnError, ShadowConn};
use super::decode::{read_control, read_until_ready};
use super::transaction::DETERMINISM;
use super::write::{bind_sample, bind_text};
use crate::capture::tracker::Sample;
use crate::protocol::error_response::ErrorFields;
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use std::time::Duration;

/// What to explain.
#[derive(Debug, Clone, Copy)]
pub struct ExplainSpec<'a> {
    /// The old query as the shadow runs it.
    pub old_sql: &'a str,
    /// The new query.
    pub new_sql: &'a str,
    /// `search_path` of the old schema.
    pub old_search_path: &'a str,
    /// `search_path` of the new schema.
    pub new_search_path: &'a str,
    /// Per-statement timeout.
    pub statement_timeout: Duration,
    /// `shadow.lock_timeout_ms`: planning takes AccessShareLock on every
    /// relation, and the shadow never queues behind DDL.
    pub lock_timeout: Duration,
}

/// A side's plan (the JSON text EXPLAIN printed) or the server's error.
pub type PlanResult = Result<String, ErrorFields>;

/// Explains both sides of `sample` on `conn`; the connection is left idle
/// (rolled back) or poisoned.
pub async fn explain_both(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &ExplainSpec<'_>,
) -> Result<[PlanResult; 2], ConnError> {
    let mut out = BytesMut::new();
    control(
        &mut out,
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        &[],
    )?;
    let timeout = spec.statement_timeout.as_millis().max(1).to_string();
    let lock_timeout = spec.lock_timeout.as_millis().max(1).to_string();
    // The settings the timed runs had (no parallel plans), so the plans
    // are those that were timed.
    let [(a, a_value), (b, b_value)] = DETERMINISM;
    control(
        &mut out,
        "SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true), \
         set_config($3, $4, true), set_config($5, $6, true), set_config('search_path', $7, true)",
        &[
            &timeout,
            &lock_timeout,
            a,
            a_value,
            b,
            b_value,
            spec.old_search_path,
        ],
    )?;
    explain(&mut out, sample, spec.old_sql)?;
    control(
        &mut out,
        "SELECT set_config('search_path', $1, true)",
        &[spec.new_search_path],
    )?;
    explain(&mut out, sample, spec.new_sql)?;
    control(&mut out, "ROLLBACK", &[])?;
    frontend::sync(&mut out);
    conn.send(&out).await?;
    let result = read_replies(conn).await;
    if result.is_err() {
        conn.poisoned = true;
    }
    result
}

/// Reads the six statements' replies and the ReadyForQuery; rolls back if
/// one failed before the ROLLBACK.
async fn read_replies(conn: &mut ShadowConn) -> Result<[PlanResult; 2], ConnError> {
    let not_run = |failure: &Option<ErrorFields>| {
        Err(failure.clone().unwrap_or_else(|| ErrorFields {
            severity: "ERROR".into(),
            code: "25P02".into(),
            message: "not explained: an earlier statement failed".into(),
        }))
    };
    let mut plans: Vec<PlanResult> = Vec::with_capacity(2);
    let mut failure: Option<ErrorFields> = None;
    // BEGIN, settings, EXPLAIN old, switch, EXPLAIN new, ROLLBACK.
    for step in 0..6 {
        let reply = read_control(conn).await?;
        let explained = step == 2 || step == 4;
        match reply {
            Ok(row) if explained => {
                let plan = row
                    .first()
                    .and_then(|v| v.as_ref())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                plans.push(Ok(plan));
            }
            Ok(_) => {}
            Err(e) => {
                if explained {
                    plans.push(Err(e));
                } else {
                    failure = Some(e);
                }
                break;
            }
        }
    }
    let status = read_until_ready(conn).await?;
    if status != b'I' {
        let mut rollback = BytesMut::new();
        frontend::query("ROLLBACK", &mut rollback).map_err(protocol_error)?;
        conn.send(&rollback).await?;
        if read_until_ready(conn).await? != b'I' {
            conn.poisoned = true;
        }
    }
    let mut plans = plans.into_iter();
    let old = plans.next().unwrap_or_else(|| not_run(&failure));
    let new = plans.next().unwrap_or_else(|| not_run(&failure));
    Ok([old, new])
}

/// An unnamed statement of pgshadow's own, with text parameters.
fn control(out: &mut BytesMut, sql: &str, params: &[&str]) -> Result<(), ConnError> {
    frontend::parse("", sql, std::iter::empty(), out).map_err(protocol_error)?;
    bind_text("", params, out)
}

/// `EXPLAIN (FORMAT JSON)` of `sql`, bound to the sample's parameters.
fn explain(out: &mut BytesMut, sample: &Sample, sql: &str) -> Result<(), ConnError> {
    let text = format!("EXPLAIN (FORMAT JSON) {sql}");
    frontend::parse("", &text, sample.param_types.iter().copied(), out).map_err(protocol_error)?;
    // The sample's own parameters, as its sides are bound.
    bind_sample("", sample, out)?;
    frontend::execute("", 0, out).map_err(protocol_error)
}
