//! Running samples: each sample's old query and new query in one snapshot.
//!
//! A batch of samples is one pipeline of extended-protocol statements with
//! a single Sync, written to the connection in one go, as one transaction:
//!
//! ```text
//! BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY
//! SELECT txid_snapshot_xmin(txid_current_snapshot())::text,   -- takes the snapshot
//!        <clock>,                  -- extract(epoch FROM clock_timestamp()): times the sides
//!        set_config('statement_timeout', $1, true),   -- at most the budget left
//!        set_config('lock_timeout', …, true),   -- never queue behind DDL
//!        set_config('synchronize_seqscans', 'off', true), …   -- deterministic row order
//!        set_config('TimeZone', $2, true), …   -- the client's settings this connection lacks
//!        set_config('search_path', <old>, true)
//! <old query 1>          (the client's parameters, byte for byte; text results)
//! SELECT <clock>, set_config('search_path', <new>, true)
//! <new query 1>
//! (SELECT <clock>, set_config('search_path', <old>, true)
//!  <old query 1> again: the A/A baseline, for some samples)
//! SELECT <clock>, set_config('search_path', <old>, true)
//! <old query 2>
//! SELECT <clock>, set_config('search_path', <new>, true)
//! <new query 2>
//! …
//! SELECT <clock>, pg_advisory_unlock_all()
//! ROLLBACK
//! Sync
//! ```
//!
//! Each statement is prepared once per connection and afterwards only bound
//! and executed ([`super::statements`]), so a busy fingerprint's queries
//! are not parsed and planned again for every sample.
//!
//! In a REPEATABLE READ transaction every statement sees the snapshot taken
//! by the first one, so concurrent writes cannot make the two runs of a
//! sample differ; the samples of a batch share that snapshot, which was
//! taken after the primary completed each of them. READ ONLY makes the
//! database itself refuse writes. The statement timeout applies to every
//! statement on its own.
//!
//! Why one transaction for many samples: a transaction of its own per
//! sample (BEGIN, ROLLBACK, unlock, a Sync and a flush each) cost the
//! database a third more than the sample's statements need, and one reply
//! flush per sample woke the worker once per sample. With one Sync the
//! server flushes once per batch (bar results larger than its send
//! buffer). Samples share a transaction only when their settings are the
//! same ([`super::pipeline`]): settings go through `set_config(…, true)`
//! (the same as `SET LOCAL`) as bound parameters, so no value is ever
//! quoted into SQL, and only where the client's value differs from the
//! connection's own (as the server reported it): changing a reported
//! setting costs the server a ParameterStatus message on the way in and
//! another at the end. Settings vanish at ROLLBACK; `pg_advisory_unlock_all()`
//! releases any session-level advisory lock a function the statement called
//! may have taken (a rollback does not), so the connection goes back to the
//! pool holding nothing. The transaction ends with ROLLBACK, never COMMIT:
//! a notification a function queued is discarded. When the transaction
//! fails before the unlock, the clean-up runs the unlock after its ROLLBACK.
//! (Every [`DISCARD_EVERY`] runs the connection is also reset with
//! `DISCARD ALL`, which bounds any other session state a user function
//! might leave behind.)
//!
//! An error skips the rest of the pipeline up to the Sync. The failing
//! sample gets what it ran (when its old query failed, the executor then
//! runs the new one alone); the transaction is rolled back, and the samples
//! after it, which never ran, are run again in a new transaction: one
//! sample's failure never becomes another's. A cached plan that no longer
//! fits its relation (0A000) is prepared afresh and its sample run again.
//!
//! **Never in a migration's way** (DESIGN §4). Every statement runs with a
//! short `lock_timeout` (`shadow.lock_timeout_ms`): a side that would wait
//! for a lock is skipped as `lock_timeout`. A batch has a wall-clock budget
//! (`shadow.max_transaction_ms`, [`Limits`]): no transaction starts once it
//! is spent, statement timeouts are cut to what is left, and a transaction
//! still open at the deadline is cancelled (CancelRequest with the
//! backend's key); its unfinished samples and the batch's rest are skipped
//! as `transaction_budget`. A transaction that blocks another backend is
//! cancelled by the watcher ([`super::give_way`]); its unfinished samples
//! are skipped as `gave_way`. A cancelled transaction's connection is
//! closed, since a cancel may reach the backend late.

use super::conn::{ConnError, ShadowConn};
pub use super::limits::Limits;
use super::limits::{cancel_at_deadline, given_up};
pub use super::pipeline::MAX_WRITE_BYTES;
use super::pipeline::{
    both_sides, protocol_error, sides_of, write_transaction, Run, Side, Step, Written,
};
use super::replies::{read_control, read_query, read_until_ready, value_at};
use super::statements::{statement_name, CACHED_PLAN_CHANGED};
use crate::capture::skip::SkipReason;
use crate::capture::tracker::Sample;
use crate::diff::result::ResultSet;
use crate::diff::CompareOptions;
use crate::protocol::error_response::ErrorFields;
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use std::time::{Duration, Instant};

/// Runs between two `DISCARD ALL` resets of a shadow connection.
pub const DISCARD_EVERY: u64 = 1000;

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
    /// The old query's second answer in the same snapshot, when the run
    /// was an A/A baseline ([`RunSpec::baseline`]).
    pub baseline: Option<SideResult>,
    /// Oldest transaction still running when the snapshot was taken.
    pub snapshot_xmin: Option<u64>,
    /// A prepared statement no longer fit its relation (0A000) and the run
    /// was repeated: a relation changed, so its key may have too.
    pub relation_changed: bool,
    /// Time from sending the old query to its last reply.
    pub old_time: Duration,
    /// Same for the new query.
    pub new_time: Duration,
    /// The new query ran first ([`RunSpec::new_first`]).
    pub new_first: bool,
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
    /// Per-statement lock timeout.
    pub lock_timeout: Duration,
    /// Rows kept per side.
    pub max_rows: usize,
    /// Bytes of rows kept per side (`shadow.max_result_bytes`).
    pub max_bytes: usize,
    /// The comparison options, so that rows beyond `max_rows` are digested
    /// under the same rules (ignored columns, numeric scale).
    pub compare: &'a CompareOptions,
    /// Shared or separate snapshots.
    pub snapshot: Snapshot,
    /// Also run the old query a second time, after the new one, in the
    /// same snapshot (only with [`Snapshot::Shared`]): the A/A baseline.
    pub baseline: bool,
    /// Run the new query before the old one (only with
    /// [`Snapshot::Shared`]). The shadow alternates the order per sample,
    /// so that caching and order effects cancel in the timings.
    pub new_first: bool,
}

/// Runs `sample` on `conn`.
pub async fn run(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &RunSpec<'_>,
    limits: &Limits<'_>,
) -> Result<RunResult, ConnError> {
    let first = run_once(conn, sample, spec, limits).await?;
    if first.is_stale() {
        return rerun(conn, sample, spec, limits).await;
    }
    Ok(first)
}

impl RunResult {
    /// A prepared statement whose relation changed its columns (the new
    /// schema is being migrated) fails once with "cached plan must not
    /// change result type"; it has been closed, so the run is repeated.
    fn is_stale(&self) -> bool {
        let stale = |side: &SideResult| matches!(side, SideResult::Error(e) if e.code == CACHED_PLAN_CHANGED);
        stale(&self.old) || stale(&self.new) || self.baseline.as_ref().is_some_and(stale)
    }

    /// The result of a run of both sides, in the order `spec` ran them.
    fn of_shared(r: Answered, spec: &RunSpec<'_>) -> RunResult {
        let mut sides = r.sides.into_iter();
        let first = sides.next().unwrap_or_else(|| not_run(&r.failure));
        let second = sides.next().unwrap_or_else(|| not_run(&r.failure));
        let time = |i: usize| r.times.get(i).copied().unwrap_or_default();
        let ((old, old_time), (new, new_time)) = if spec.new_first {
            ((second, time(1)), (first, time(0)))
        } else {
            ((first, time(0)), (second, time(1)))
        };
        RunResult {
            old,
            new,
            baseline: sides.next(),
            relation_changed: false,
            snapshot_xmin: r.snapshot_xmin,
            old_time,
            new_time,
            new_first: spec.new_first,
        }
    }
}

/// Runs the samples of `items` on `conn`, in as few transactions as the
/// rules above allow, and returns the results of a prefix of them (at
/// least the first): it stops early when the connection fails (the last
/// result is that error) or is not to be trusted any more (`poisoned`);
/// the caller runs the rest on another connection.
pub async fn run_batch(
    conn: &mut ShadowConn,
    items: &[(&Sample, RunSpec<'_>)],
    limits: &Limits<'_>,
) -> Vec<Result<RunResult, ConnError>> {
    let mut results = Vec::with_capacity(items.len());
    while results.len() < items.len() && !conn.poisoned {
        if let Some(Err(ConnError::GaveUp(_))) = results.last() {
            break;
        }
        let rest = &items[results.len()..];
        if rest
            .iter()
            .any(|(_, spec)| spec.snapshot == Snapshot::Separate)
        {
            // Two transactions per sample: one at a time.
            for (sample, spec) in rest {
                let r = run(conn, sample, spec, limits).await;
                let failed = r.is_err();
                results.push(r);
                if failed || conn.poisoned {
                    break;
                }
            }
            return results;
        }
        let sides: Vec<Vec<Side<'_>>> = rest.iter().map(|(_, spec)| sides_of(spec)).collect();
        let runs: Vec<Run<'_>> = rest
            .iter()
            .zip(&sides)
            .map(|((sample, spec), sides)| Run {
                sample,
                spec,
                sides,
            })
            .collect();
        let answers = run_transaction(conn, &runs, limits).await;
        for (r, (_, spec)) in answers.into_iter().zip(rest) {
            results.push(r.map(|r| RunResult::of_shared(r, spec)));
        }
    }
    if let Some(Err(ConnError::GaveUp(reason))) = results.last() {
        // Given up (budget spent, gave way): so is the rest, on this
        // connection or another.
        let reason = *reason;
        results.resize_with(items.len(), || Err(ConnError::GaveUp(reason)));
    }
    for (result, (sample, spec)) in results.iter_mut().zip(items) {
        if conn.poisoned {
            break;
        }
        if result.as_ref().is_ok_and(RunResult::is_stale) {
            *result = rerun(conn, sample, spec, limits).await;
        }
    }
    results
}

/// [`run_once`] again after a stale plan, noting that a relation changed.
async fn rerun(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &RunSpec<'_>,
    limits: &Limits<'_>,
) -> Result<RunResult, ConnError> {
    let mut again = run_once(conn, sample, spec, limits).await?;
    again.relation_changed = true;
    Ok(again)
}

async fn run_once(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &RunSpec<'_>,
    limits: &Limits<'_>,
) -> Result<RunResult, ConnError> {
    let [old, new] = both_sides(spec);
    match spec.snapshot {
        Snapshot::Shared => Ok(RunResult::of_shared(
            run_alone(conn, sample, spec, &sides_of(spec), limits).await?,
            spec,
        )),
        Snapshot::Separate => {
            let mut first = run_alone(conn, sample, spec, &[old], limits).await?;
            let mut second = run_alone(conn, sample, spec, &[new], limits).await?;
            Ok(RunResult {
                old: first.sides.pop().unwrap_or_else(|| not_run(&first.failure)),
                new: second
                    .sides
                    .pop()
                    .unwrap_or_else(|| not_run(&second.failure)),
                baseline: None,
                relation_changed: false,
                snapshot_xmin: first.snapshot_xmin,
                old_time: first.times.first().copied().unwrap_or_default(),
                new_time: second.times.first().copied().unwrap_or_default(),
                new_first: false,
            })
        }
    }
}

/// What one run's statements answered.
#[derive(Debug, Default)]
struct Answered {
    /// The sides that ran, in order; a side missing at the end never ran
    /// because something before it failed.
    sides: Vec<SideResult>,
    /// The error of a statement of pgshadow's own that stopped the run
    /// (BEGIN, a setting, a search_path switch, the unlock, ROLLBACK).
    failure: Option<ErrorFields>,
    snapshot_xmin: Option<u64>,
    /// Per side that ran, how long it took.
    times: Vec<Duration>,
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

/// Runs `sides` of one sample in a transaction of its own.
async fn run_alone(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &RunSpec<'_>,
    sides: &[Side<'_>],
    limits: &Limits<'_>,
) -> Result<Answered, ConnError> {
    let one = Run {
        sample,
        spec,
        sides,
    };
    run_transaction(conn, &[one], limits)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(ConnError::Protocol("shadow transaction not run".into())))
}

/// Writes one transaction of as many of `runs` as may share it (see
/// [`write_transaction`]), followed by its Sync, and reads what they
/// answered. Returns the answers of a prefix of `runs`, at least the
/// first's: the rest were not written, or never ran because an earlier run
/// failed. After an error past the write, the connection is poisoned.
async fn run_transaction(
    conn: &mut ShadowConn,
    runs: &[Run<'_>],
    limits: &Limits<'_>,
) -> Vec<Result<Answered, ConnError>> {
    let time_left = limits.time_left();
    if time_left.is_zero() {
        return vec![Err(ConnError::GaveUp(SkipReason::TransactionBudget))];
    }
    let mut out = BytesMut::new();
    let written = match write_transaction(
        &mut conn.statements,
        &conn.settings,
        &mut out,
        runs,
        time_left,
    ) {
        Ok(written) => written,
        // Nothing of it reaches the server; the first run fails alone.
        Err(e) => return vec![Err(e)],
    };
    frontend::sync(&mut out);
    let watched = limits.give_way.and_then(|g| g.watch(conn));
    let cancel = conn.cancel.clone();
    let (exchanged, past_deadline) = cancel_at_deadline(
        limits.deadline,
        cancel,
        exchange(conn, &out, runs, &written, limits),
    )
    .await;
    let given_up = given_up(watched, past_deadline);
    if given_up.is_some() {
        // A cancel may reach the backend after the transaction ended.
        conn.poisoned = true;
    }
    match exchanged {
        Ok(answers) => give_up_unfinished(answers, runs, &written, given_up),
        Err(e) => {
            // The replies and the connection are out of step from here on.
            conn.poisoned = true;
            vec![Err(given_up.map_or(e, ConnError::GaveUp))]
        }
    }
}

/// The results of a transaction's runs. When it was cancelled
/// (`given_up`), the run the cancel interrupted and those written after it
/// are given up for that reason; runs that finished before keep theirs.
fn give_up_unfinished(
    answers: Vec<Answered>,
    runs: &[Run<'_>],
    written: &Written,
    given_up: Option<SkipReason>,
) -> Vec<Result<Answered, ConnError>> {
    let Some(reason) = given_up else {
        return answers.into_iter().map(Ok).collect();
    };
    let mut results: Vec<Result<Answered, ConnError>> = Vec::with_capacity(written.runs);
    for (answer, run) in answers.into_iter().zip(runs) {
        let finished = answer.sides.len() == run.sides.len()
            && answer
                .sides
                .iter()
                .all(|side| matches!(side, SideResult::Rows(_)));
        if finished {
            results.push(Ok(answer));
        } else {
            results.push(Err(ConnError::GaveUp(reason)));
            break;
        }
    }
    if results.len() < written.runs {
        results.push(Err(ConnError::GaveUp(reason)));
    }
    results
}

/// Sends `out` (the `written` transaction) and reads what its runs
/// answered; then rolls back, forgets doubtful statements and resets the
/// connection as needed.
async fn exchange(
    conn: &mut ShadowConn,
    out: &[u8],
    runs: &[Run<'_>],
    written: &Written,
    limits: &Limits<'_>,
) -> Result<Vec<Answered>, ConnError> {
    let resets_before = conn.runs / DISCARD_EVERY;
    conn.send(out).await?;
    let (answers, failed_step) = read_transaction(conn, runs, written, limits).await?;
    let status = read_until_ready(conn).await?;
    conn.runs += answers.len() as u64;
    let doubtful: Vec<u32> = failed_step
        .map(|failed| written.doubtful_after(failed).collect())
        .unwrap_or_default();
    let last = answers.len().checked_sub(1);
    if let Some((answer, run)) = last.and_then(|i| answers.get(i).zip(runs.get(i))) {
        if answer.failure.is_some() && answer.sides.len() == run.sides.len() {
            // Every side ran but the unlock or ROLLBACK failed: the results
            // stand, the connection is not trusted any more.
            conn.poisoned = true;
        }
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
    Ok(answers)
}

/// Reads the replies of the written transaction up to (not including) its
/// ReadyForQuery: what each run that ran answered (a prefix of `runs`,
/// ending with the one that failed, if any), and the step that failed.
async fn read_transaction(
    conn: &mut ShadowConn,
    runs: &[Run<'_>],
    written: &Written,
    limits: &Limits<'_>,
) -> Result<(Vec<Answered>, Option<usize>), ConnError> {
    // The current run's bound on each of its sides: bytes, and rows (the
    // rows its first side kept, once bytes cut that side short, so that
    // identical results keep identical prefixes).
    let mut side_bound = (0usize, 0usize);
    let mut answers: Vec<Answered> = Vec::with_capacity(written.runs);
    let mut snapshot_xmin = None;
    // Server clock readings: one before every side and one after the last,
    // so side k (counting over the whole transaction) ran between clock k
    // and clock k + 1. The client's clock is the fallback.
    let mut clocks: Vec<Option<f64>> = Vec::with_capacity(2 * written.runs + 1);
    let mut local_times: Vec<(usize, Duration)> = Vec::with_capacity(2 * written.runs);
    let mut side_started = Instant::now();
    let mut failed_step = None;
    for (index, &(run, step)) in written.steps.iter().enumerate() {
        while answers.len() <= run {
            answers.push(Answered::default());
        }
        let (Some(answer), Some(spec)) = (answers.get_mut(run), runs.get(run).map(|r| r.spec))
        else {
            return Err(ConnError::Protocol(
                "shadow transaction step of an unknown run".into(),
            ));
        };
        match step {
            Step::Query(side) => {
                if side == 0 {
                    side_bound = (limits.side_bytes(spec.max_bytes), spec.max_rows);
                }
                let (max_bytes, max_rows) = side_bound;
                match read_query(conn, max_rows, max_bytes, spec.compare).await? {
                    Ok(rows) => {
                        if side == 0 && rows.truncated() && rows.rows.len() < max_rows {
                            side_bound.1 = rows.rows.len();
                        }
                        limits.take_kept(&rows, max_bytes, spec, side == 0);
                        answer.sides.push(SideResult::Rows(rows));
                    }
                    Err(e) => {
                        answer.sides.push(SideResult::Error(e));
                        failed_step = Some(index);
                        break;
                    }
                }
                local_times.push((run, side_started.elapsed()));
                side_started = Instant::now();
            }
            Step::Settings | Step::Mark | Step::Control => match read_control(conn).await? {
                Ok(row) => match step {
                    Step::Settings => {
                        snapshot_xmin = value_at(&row, 0);
                        clocks.push(value_at(&row, 1));
                    }
                    Step::Mark => clocks.push(value_at(&row, 0)),
                    _ => {}
                },
                Err(e) => {
                    // BEGIN, a setting, a switch, the unlock or ROLLBACK
                    // failed: that is the shadow's problem, not the
                    // schemas'. Sides that already ran keep their results.
                    answer.failure = Some(e);
                    failed_step = Some(index);
                    break;
                }
            },
        }
    }
    for (k, &(run, local)) in local_times.iter().enumerate() {
        let server = match (clocks.get(k), clocks.get(k + 1)) {
            (Some(&Some(start)), Some(&Some(end))) => Duration::try_from_secs_f64(end - start).ok(),
            _ => None,
        };
        if let Some(answer) = answers.get_mut(run) {
            answer.times.push(server.unwrap_or(local));
        }
    }
    for answer in &mut answers {
        answer.snapshot_xmin = snapshot_xmin;
    }
    Ok((answers, failed_step))
}

/// Leaves the connection clean after a write: rolls back a failed
/// transaction (`status` is the last ReadyForQuery's) and releases the
/// advisory locks its unlock never got to, and closes and forgets the
/// `doubtful` statements.
async fn settle(conn: &mut ShadowConn, status: u8, doubtful: &[u32]) -> Result<(), ConnError> {
    let mut cleanup = BytesMut::new();
    let mut replies = 0;
    if status != b'I' {
        // The transaction failed before its unlock: a session-level
        // advisory lock a function took survives the rollback.
        frontend::query("ROLLBACK; SELECT pg_advisory_unlock_all()", &mut cleanup)
            .map_err(protocol_error)?;
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
