//! Executing samples on a shadow connection: each transaction written
//! ([`super::write`]), sent with its Sync, its replies read
//! ([`super::answers`]), then the connection left clean.
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

use super::answers::{not_run, read_transaction, Answered, SampleResult, SideResult};
use super::conn::{protocol_error, ConnError, ShadowConn};
use super::decode::read_until_ready;
use super::limits::{cancel_at_deadline, given_up, Limits};
use super::statements::statement_name;
use super::transaction::{both_sides, sides_of, SampleSides, SampleSpec, SideQuery, Snapshot};
use super::write::{write_transaction, Written};
use crate::capture::skip::SkipReason;
use crate::capture::tracker::Sample;
use bytes::BytesMut;
use postgres_protocol::message::frontend;

/// Samples executed between two `DISCARD ALL` resets of a shadow
/// connection.
pub const DISCARD_EVERY: u64 = 1000;

/// Executes `sample` on `conn` in a transaction of its own (two with
/// [`Snapshot::Separate`]), and once more when a prepared statement went
/// stale under it.
pub async fn execute_sample(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &SampleSpec<'_>,
    limits: &Limits<'_>,
) -> Result<SampleResult, ConnError> {
    let first = execute_sample_once(conn, sample, spec, limits).await?;
    if first.is_stale() {
        return rerun_stale(conn, sample, spec, limits).await;
    }
    Ok(first)
}

/// Executes the samples of `items` on `conn`, in as few transactions as
/// the rules of [`super::transaction`] allow, and returns the results of a
/// prefix of them (at least the first): it stops early when the connection fails (the last
/// result is that error) or is not to be trusted any more (`poisoned`);
/// the caller runs the rest on another connection.
pub async fn execute_batch(
    conn: &mut ShadowConn,
    items: &[(&Sample, SampleSpec<'_>)],
    limits: &Limits<'_>,
) -> Vec<Result<SampleResult, ConnError>> {
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
                let r = execute_sample(conn, sample, spec, limits).await;
                let failed = r.is_err();
                results.push(r);
                if failed || conn.poisoned {
                    break;
                }
            }
            return results;
        }
        let sides: Vec<Vec<SideQuery<'_>>> = rest.iter().map(|(_, spec)| sides_of(spec)).collect();
        let entries: Vec<SampleSides<'_>> = rest
            .iter()
            .zip(&sides)
            .map(|((sample, spec), sides)| SampleSides {
                sample,
                spec,
                sides,
            })
            .collect();
        let answers = execute_transaction(conn, &entries, limits).await;
        for (r, (_, spec)) in answers.into_iter().zip(rest) {
            results.push(r.map(|r| SampleResult::of_shared(r, spec)));
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
        if result.as_ref().is_ok_and(SampleResult::is_stale) {
            *result = rerun_stale(conn, sample, spec, limits).await;
        }
    }
    results
}

/// [`execute_sample_once`] again after a stale plan, noting that a
/// relation changed.
async fn rerun_stale(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &SampleSpec<'_>,
    limits: &Limits<'_>,
) -> Result<SampleResult, ConnError> {
    let mut again = execute_sample_once(conn, sample, spec, limits).await?;
    again.relation_changed = true;
    Ok(again)
}

/// One attempt at `sample`: its sides in one transaction, or with
/// [`Snapshot::Separate`] the old and the new side in one each.
async fn execute_sample_once(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &SampleSpec<'_>,
    limits: &Limits<'_>,
) -> Result<SampleResult, ConnError> {
    let [old, new] = both_sides(spec);
    match spec.snapshot {
        Snapshot::Shared => Ok(SampleResult::of_shared(
            execute_sides_alone(conn, sample, spec, &sides_of(spec), limits).await?,
            spec,
        )),
        Snapshot::Separate => {
            let mut first = execute_sides_alone(conn, sample, spec, &[old], limits).await?;
            let mut second = execute_sides_alone(conn, sample, spec, &[new], limits).await?;
            Ok(SampleResult {
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

/// Executes `sides` of one sample in a transaction of its own.
async fn execute_sides_alone(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &SampleSpec<'_>,
    sides: &[SideQuery<'_>],
    limits: &Limits<'_>,
) -> Result<Answered, ConnError> {
    let one = SampleSides {
        sample,
        spec,
        sides,
    };
    execute_transaction(conn, &[one], limits)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(ConnError::Protocol("shadow transaction not run".into())))
}

/// Writes one transaction of as many of `entries` as may share it (see
/// [`write_transaction`]), followed by its Sync, and reads what they
/// answered. Returns the answers of a prefix of `entries`, at least the
/// first's: the rest were not written, or never ran because an earlier
/// sample failed. After an error past the write, the connection is poisoned.
async fn execute_transaction(
    conn: &mut ShadowConn,
    entries: &[SampleSides<'_>],
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
        entries,
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
        exchange(conn, &out, entries, &written, limits),
    )
    .await;
    let given_up = given_up(watched, past_deadline);
    if given_up.is_some() {
        // A cancel may reach the backend after the transaction ended.
        conn.poisoned = true;
    }
    match exchanged {
        Ok(answers) => give_up_unfinished(answers, entries, &written, given_up),
        Err(e) => {
            // The replies and the connection are out of step from here on.
            conn.poisoned = true;
            vec![Err(given_up.map_or(e, ConnError::GaveUp))]
        }
    }
}

/// The results of a transaction's samples. When it was cancelled
/// (`given_up`), the sample the cancel interrupted and those written after
/// it are given up for that reason; samples that finished before keep
/// theirs.
fn give_up_unfinished(
    answers: Vec<Answered>,
    entries: &[SampleSides<'_>],
    written: &Written,
    given_up: Option<SkipReason>,
) -> Vec<Result<Answered, ConnError>> {
    let Some(reason) = given_up else {
        return answers.into_iter().map(Ok).collect();
    };
    let mut results: Vec<Result<Answered, ConnError>> = Vec::with_capacity(written.entries);
    for (answer, entry) in answers.into_iter().zip(entries) {
        let finished = answer.sides.len() == entry.sides.len()
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
    if results.len() < written.entries {
        results.push(Err(ConnError::GaveUp(reason)));
    }
    results
}

/// Sends `out` (the `written` transaction) and reads what its samples
/// answered; then rolls back, forgets doubtful statements and resets the
/// connection as needed.
async fn exchange(
    conn: &mut ShadowConn,
    out: &[u8],
    entries: &[SampleSides<'_>],
    written: &Written,
    limits: &Limits<'_>,
) -> Result<Vec<Answered>, ConnError> {
    let resets_before = conn.samples_run / DISCARD_EVERY;
    conn.send(out).await?;
    let (answers, failed_step) = read_transaction(conn, entries, written, limits).await?;
    let status = read_until_ready(conn).await?;
    conn.samples_run += answers.len() as u64;
    let doubtful: Vec<u32> = failed_step
        .map(|failed| written.doubtful_after(failed).collect())
        .unwrap_or_default();
    let last = answers.len().checked_sub(1);
    if let Some((answer, entry)) = last.and_then(|i| answers.get(i).zip(entries.get(i))) {
        if answer.failure.is_some() && answer.sides.len() == entry.sides.len() {
            // Every side ran but the unlock or ROLLBACK failed: the results
            // stand, the connection is not trusted any more.
            conn.poisoned = true;
        }
    }
    settle(conn, status, &doubtful).await?;
    if conn.samples_run / DISCARD_EVERY != resets_before && !conn.poisoned {
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
