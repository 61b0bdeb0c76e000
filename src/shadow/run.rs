//! Running one sample: old query and new query in one snapshot.
//!
//! A sample is one pipeline of extended-protocol statements with a single
//! Sync, written to the connection in one go:
//!
//! ```text
//! BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY
//! SELECT txid_snapshot_xmin(txid_current_snapshot())::text,   -- takes the snapshot
//!        <clock>,                  -- extract(epoch FROM clock_timestamp()): times the sides
//!        set_config('statement_timeout', $1, true),
//!        set_config('TimeZone', $2, true), …   -- the client's settings this connection lacks
//!        set_config('search_path', <old>, true)
//! <old query>            (the client's parameters, byte for byte; text results)
//! SELECT <clock>, set_config('search_path', <new>, true)
//! <new query>
//! SELECT <clock>, pg_advisory_unlock_all()
//! COMMIT
//! Sync
//! ```
//!
//! Each statement is prepared once per connection and afterwards only bound
//! and executed ([`super::statements`]), so a busy fingerprint's queries
//! are not parsed and planned again for every sample.
//!
//! One Sync means one flush by the server and one wake-up of the worker for
//! the whole sample (bar results larger than the server's send buffer):
//! comparing must cost the database little more than the statements
//! themselves. Settings go through `set_config(…, true)` (the same as
//! `SET LOCAL`) as bound parameters, so no value is ever quoted into SQL,
//! and only where the client's value differs from the connection's own
//! (as the server reported it): changing a reported setting costs the
//! server a ParameterStatus message on the way in and another at COMMIT.
//!
//! In a REPEATABLE READ transaction every statement sees the snapshot taken
//! by the first one, so concurrent writes cannot make the two runs differ.
//! READ ONLY makes the database itself refuse writes. The settings are
//! transaction-local and vanish at COMMIT; `pg_advisory_unlock_all()`
//! releases any session-level advisory lock a function the statement called
//! may have taken, so the connection goes back to the pool holding nothing.
//! (Every [`DISCARD_EVERY`] runs the connection is also reset with
//! `DISCARD ALL`, which bounds any other session state a user function
//! might leave behind.)
//!
//! An error skips the rest of the pipeline up to the Sync: when the old
//! query fails the new one never runs (the executor then runs it alone),
//! and the transaction is rolled back before the connection is reused.
//!
//! ## Batches
//!
//! [`run_batch`] writes the transactions of several samples in one write,
//! each with its own Sync, and reads their replies in order: one wake-up
//! of a database backend for many samples instead of one each. Each
//! sample stays its own transaction with its own snapshot, and an error
//! stays its own: the transactions written after a failed one are
//! refused by the server (the connection is in a failed transaction until
//! the ROLLBACK) and are written again after it. A write ends after the
//! first transaction that parses a statement, because a later one may bind
//! that statement and the Parse may never have run; in the steady state
//! every statement is prepared and a batch is one write. A write also ends
//! at [`MAX_WRITE_BYTES`], so that it always fits in the socket buffers
//! while the server's replies wait for it to finish.

use super::conn::{ConnError, ShadowConn};
use super::pipeline::{
    protocol_error, write_transaction, Side, Step, Written, STATEMENTS_PER_TRANSACTION,
};
use super::replies::{read_control, read_query, read_until_ready, value_at};
use super::statements::{statement_name, CACHED_PLAN_CHANGED};
use crate::capture::tracker::Sample;
use crate::diff::result::ResultSet;
use crate::diff::CompareOptions;
use crate::protocol::error_response::ErrorFields;
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use std::time::{Duration, Instant};

/// Runs between two `DISCARD ALL` resets of a shadow connection.
pub const DISCARD_EVERY: u64 = 1000;

/// A batch's write ends once it holds this many bytes (a single
/// transaction may be larger). The whole write is sent before any reply
/// is read, so it must fit in the kernel's socket buffers, which hold far
/// more than this on any system.
pub const MAX_WRITE_BYTES: usize = 32 * 1024;

/// SQLSTATE `in_failed_sql_transaction`: what a statement skipped after an
/// earlier failure in the same transaction reports.
const IN_FAILED_TRANSACTION: &str = "25P02";

/// Whether both sides share one snapshot. `Separate` exists to show what
/// the shared snapshot buys (tests and demos); never use it otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    /// Old and new in one REPEATABLE READ transaction.
    Shared,
    /// Old and new in two transactions: concurrent writes between them
    /// show up as (false) mismatches.
    Separate,
}

/// What one side of a sample produced.
#[derive(Debug)]
pub enum SideResult {
    /// The rows.
    Rows(ResultSet),
    /// The server's error.
    Error(ErrorFields),
}

/// Both sides of one run.
#[derive(Debug)]
pub struct RunResult {
    /// The old schema's answer.
    pub old: SideResult,
    /// The new schema's answer.
    pub new: SideResult,
    /// Oldest transaction still running when the snapshot was taken.
    pub snapshot_xmin: Option<u64>,
    /// Time from sending the old query to its last reply.
    pub old_time: Duration,
    /// Same for the new query.
    pub new_time: Duration,
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// The old query, rewritten (tiebreaker).
    pub old_sql: &'a str,
    /// The new query, rewritten (tiebreaker, table map).
    pub new_sql: &'a str,
    /// `search_path` of the old schema, in SET syntax.
    pub old_search_path: &'a str,
    /// `search_path` of the new schema.
    pub new_search_path: &'a str,
    /// Per-statement timeout.
    pub statement_timeout: Duration,
    /// Rows kept per side.
    pub max_rows: usize,
    /// The comparison options, so that rows beyond `max_rows` are digested
    /// under the same rules (ignored columns, numeric scale).
    pub compare: &'a CompareOptions,
    /// Shared or separate snapshots.
    pub snapshot: Snapshot,
}

/// Runs `sample` on `conn`.
pub async fn run(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &RunSpec<'_>,
) -> Result<RunResult, ConnError> {
    let first = run_once(conn, sample, spec).await?;
    if first.is_stale() {
        return run_once(conn, sample, spec).await;
    }
    Ok(first)
}

impl RunResult {
    /// A prepared statement whose relation changed its columns (the new
    /// schema is being migrated) fails once with "cached plan must not
    /// change result type"; it has been closed, so the run is repeated.
    fn is_stale(&self) -> bool {
        let stale = |side: &SideResult| matches!(side, SideResult::Error(e) if e.code == CACHED_PLAN_CHANGED);
        stale(&self.old) || stale(&self.new)
    }

    /// The result of a transaction that ran both sides.
    fn of_shared(r: TransactionResult) -> RunResult {
        let mut sides = r.sides.into_iter();
        RunResult {
            old: sides.next().unwrap_or_else(|| not_run(&r.failure)),
            new: sides.next().unwrap_or_else(|| not_run(&r.failure)),
            snapshot_xmin: r.snapshot_xmin,
            old_time: r.old_time,
            new_time: r.new_time,
        }
    }
}

/// Runs the samples of `items` on `conn`, in as few writes as the rules
/// above allow, and returns the results of a prefix of them (at least the
/// first): it stops early when the connection fails (the last result is
/// that error) or is not to be trusted any more (`poisoned`); the caller
/// runs the rest on another connection.
pub async fn run_batch(
    conn: &mut ShadowConn,
    items: &[(&Sample, RunSpec<'_>)],
) -> Vec<Result<RunResult, ConnError>> {
    let mut results = Vec::with_capacity(items.len());
    while results.len() < items.len() && !conn.poisoned {
        let rest = &items[results.len()..];
        if rest
            .iter()
            .any(|(_, spec)| spec.snapshot == Snapshot::Separate)
        {
            // Two transactions per sample: one at a time.
            for (sample, spec) in rest {
                let r = run(conn, sample, spec).await;
                let failed = r.is_err();
                results.push(r);
                if failed || conn.poisoned {
                    break;
                }
            }
            return results;
        }
        let sides: Vec<[Side<'_>; 2]> = rest.iter().map(|(_, spec)| both_sides(spec)).collect();
        let transactions: Vec<Transaction<'_>> = rest
            .iter()
            .zip(&sides)
            .map(|((sample, spec), sides)| Transaction {
                sample,
                spec,
                sides,
            })
            .collect();
        for r in run_transactions(conn, &transactions).await {
            results.push(r.map(RunResult::of_shared));
        }
    }
    for (result, (sample, spec)) in results.iter_mut().zip(items) {
        if conn.poisoned {
            break;
        }
        if result.as_ref().is_ok_and(RunResult::is_stale) {
            *result = run_once(conn, sample, spec).await;
        }
    }
    results
}

fn both_sides<'a>(spec: &RunSpec<'a>) -> [Side<'a>; 2] {
    [
        Side {
            sql: spec.old_sql,
            search_path: spec.old_search_path,
        },
        Side {
            sql: spec.new_sql,
            search_path: spec.new_search_path,
        },
    ]
}

async fn run_once(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &RunSpec<'_>,
) -> Result<RunResult, ConnError> {
    let [old, new] = both_sides(spec);
    match spec.snapshot {
        Snapshot::Shared => Ok(RunResult::of_shared(
            run_transaction(conn, sample, spec, &[old, new]).await?,
        )),
        Snapshot::Separate => {
            let mut first = run_transaction(conn, sample, spec, &[old]).await?;
            let mut second = run_transaction(conn, sample, spec, &[new]).await?;
            Ok(RunResult {
                old: first.sides.pop().unwrap_or_else(|| not_run(&first.failure)),
                new: second
                    .sides
                    .pop()
                    .unwrap_or_else(|| not_run(&second.failure)),
                snapshot_xmin: first.snapshot_xmin,
                old_time: first.old_time,
                new_time: second.old_time,
            })
        }
    }
}

/// What one transaction produced.
struct TransactionResult {
    /// The sides that ran, in order; a side missing at the end never ran
    /// because something before it failed.
    sides: Vec<SideResult>,
    /// The error that stopped the pipeline before a side ran, if any.
    failure: Option<ErrorFields>,
    snapshot_xmin: Option<u64>,
    /// Time of the first side, from the pipeline's start to its last row.
    old_time: Duration,
    /// Time of the second side, from the first side's end to its last row.
    new_time: Duration,
}

/// The result of a side that never ran: the error that stopped the
/// pipeline before it, or "in failed transaction".
fn not_run(failure: &Option<ErrorFields>) -> SideResult {
    SideResult::Error(failure.clone().unwrap_or_else(|| ErrorFields {
        severity: "ERROR".into(),
        code: IN_FAILED_TRANSACTION.into(),
        message: "not run: an earlier statement of the shadow transaction failed".into(),
    }))
}

/// One REPEATABLE READ READ ONLY transaction to run: `sides` of `sample`.
struct Transaction<'a> {
    sample: &'a Sample,
    spec: &'a RunSpec<'a>,
    sides: &'a [Side<'a>],
}

/// Runs `sides` in one REPEATABLE READ READ ONLY transaction, as one
/// pipeline with a single Sync.
async fn run_transaction(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &RunSpec<'_>,
    sides: &[Side<'_>],
) -> Result<TransactionResult, ConnError> {
    let one = Transaction {
        sample,
        spec,
        sides,
    };
    run_transactions(conn, &[one])
        .await
        .pop()
        .unwrap_or_else(|| Err(ConnError::Protocol("shadow transaction not run".into())))
}

/// Writes as many of `transactions` as one write may hold (see the module
/// documentation), each followed by its Sync, and reads their results.
/// Returns the results of a prefix, at least the first transaction's: the
/// rest were not written, or were refused after an earlier one failed.
/// After an error past the write, the connection is poisoned.
async fn run_transactions(
    conn: &mut ShadowConn,
    transactions: &[Transaction<'_>],
) -> Vec<Result<TransactionResult, ConnError>> {
    let mut out = BytesMut::new();
    let mut written = Vec::with_capacity(transactions.len());
    for t in transactions {
        let later = !written.is_empty();
        if later
            && (out.len() >= MAX_WRITE_BYTES
                || !conn.statements.has_room(STATEMENTS_PER_TRANSACTION))
        {
            break;
        }
        let mark = out.len();
        match write_transaction(conn, &mut out, t.sample, t.spec, t.sides) {
            Ok(w) => {
                frontend::sync(&mut out);
                let parses = w.parses();
                written.push(w);
                if parses {
                    break;
                }
            }
            // Nothing of it reaches the server; it fails alone.
            Err(e) if !later => return vec![Err(e)],
            Err(_) => {
                out.truncate(mark);
                break;
            }
        }
    }
    let mut results = Vec::with_capacity(written.len());
    if let Err(e) = exchange(conn, &out, transactions, &written, &mut results).await {
        // The replies and the connection are out of step from here on.
        conn.poisoned = true;
        results.push(Err(e));
    }
    results
}

/// Sends `out` (the `written` transactions) and reads the results of the
/// transactions that ran into `results`; then rolls back, forgets doubtful
/// statements and resets the connection as needed.
async fn exchange(
    conn: &mut ShadowConn,
    out: &[u8],
    transactions: &[Transaction<'_>],
    written: &[Written],
    results: &mut Vec<Result<TransactionResult, ConnError>>,
) -> Result<(), ConnError> {
    let resets_before = conn.runs / DISCARD_EVERY;
    conn.send(out).await?;
    let mut status = b'I';
    let mut doubtful = Vec::new();
    for (t, w) in transactions.iter().zip(written) {
        if status != b'I' {
            // An earlier transaction failed and left the connection in a
            // failed transaction: the server refused this one whole.
            read_until_ready(conn).await?;
            doubtful.extend(w.unparsed());
            continue;
        }
        let (result, failed_step) = read_transaction(conn, t.spec, w).await?;
        status = read_until_ready(conn).await?;
        conn.runs += 1;
        if let Some(failed) = failed_step {
            doubtful.extend(w.doubtful_after(failed));
        }
        if result.failure.is_some() && result.sides.len() == w.sides {
            // Both sides ran but the unlock or COMMIT failed: the results
            // stand, the connection is not trusted any more.
            conn.poisoned = true;
        }
        results.push(Ok(result));
    }
    settle(conn, status, &doubtful).await?;
    if conn.runs / DISCARD_EVERY != resets_before && !conn.poisoned {
        let mut discard = BytesMut::new();
        frontend::query("DISCARD ALL", &mut discard).map_err(protocol_error)?;
        conn.send(&discard).await?;
        // DISCARD ALL deallocates every prepared statement too.
        conn.statements.clear();
        if read_until_ready(conn).await? != b'I' {
            conn.poisoned = true;
        }
    }
    Ok(())
}

/// Reads the replies of one written transaction up to (not including) its
/// ReadyForQuery: the result, and the step that failed, if any.
async fn read_transaction(
    conn: &mut ShadowConn,
    spec: &RunSpec<'_>,
    written: &Written,
) -> Result<(TransactionResult, Option<usize>), ConnError> {
    let mut result = TransactionResult {
        sides: Vec::with_capacity(written.sides),
        failure: None,
        snapshot_xmin: None,
        old_time: Duration::ZERO,
        new_time: Duration::ZERO,
    };
    let mut side_started = Instant::now();
    // Server clock readings around the sides: side i ran between mark i
    // and mark i + 1.
    let mut marks: Vec<Option<f64>> = Vec::with_capacity(written.sides + 1);
    let mut failed_step = None;
    for (index, &step) in written.steps.iter().enumerate() {
        match step {
            Step::Query(i) => {
                match read_query(conn, spec.max_rows, spec.compare).await? {
                    Ok(rows) => result.sides.push(SideResult::Rows(rows)),
                    Err(e) => {
                        result.sides.push(SideResult::Error(e));
                        failed_step = Some(index);
                        break;
                    }
                }
                let elapsed = side_started.elapsed();
                if i == 0 {
                    result.old_time = elapsed;
                } else {
                    result.new_time = elapsed;
                }
                side_started = Instant::now();
            }
            Step::Settings | Step::Mark | Step::Control => match read_control(conn).await? {
                Ok(row) => match step {
                    Step::Settings => {
                        result.snapshot_xmin = value_at(&row, 0);
                        marks.push(value_at(&row, 1));
                    }
                    Step::Mark => marks.push(value_at(&row, 0)),
                    _ => {}
                },
                Err(e) => {
                    // BEGIN, a setting, the unlock or COMMIT failed: that
                    // is the shadow's problem, not the schemas'. A side
                    // that already ran keeps its result.
                    result.failure = Some(e);
                    failed_step = Some(index);
                    break;
                }
            },
        }
    }
    for (i, pair) in marks.windows(2).enumerate() {
        if let [Some(start), Some(end)] = *pair {
            let server_time = Duration::try_from_secs_f64(end - start).unwrap_or_default();
            match i {
                0 => result.old_time = server_time,
                1 => result.new_time = server_time,
                _ => {}
            }
        }
    }
    Ok((result, failed_step))
}

/// Leaves the connection clean after a write: rolls back a failed
/// transaction (`status` is the last ReadyForQuery's), and closes and
/// forgets the `doubtful` statements.
async fn settle(conn: &mut ShadowConn, status: u8, doubtful: &[u32]) -> Result<(), ConnError> {
    let mut cleanup = BytesMut::new();
    let mut replies = 0;
    if status != b'I' {
        frontend::query("ROLLBACK", &mut cleanup).map_err(protocol_error)?;
        replies += 1;
    }
    for &id in doubtful {
        conn.statements.forget(id);
        frontend::close(b'S', &statement_name(id), &mut cleanup).map_err(protocol_error)?;
    }
    if !doubtful.is_empty() {
        frontend::sync(&mut cleanup);
        replies += 1;
    }
    if replies > 0 {
        conn.send(&cleanup).await?;
        for _ in 0..replies {
            if read_until_ready(conn).await? != b'I' {
                conn.poisoned = true;
            }
        }
    }
    Ok(())
}
