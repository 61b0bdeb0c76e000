//! Reading a written transaction's replies: per sample, what each side
//! answered (rows or the server's error), how long it took (by the
//! server's clock), the snapshot's xmin, and the error of a statement of
//! pgshadow's own that stopped it.

use super::conn::{ConnError, ShadowConn};
use super::decode::{read_control, read_query, value_at};
use super::limits::Limits;
use super::statements::CACHED_PLAN_CHANGED;
use super::transaction::{SampleSides, SampleSpec};
use super::write::{Step, Written};
use crate::diff::result::ResultSet;
use crate::protocol::error_response::ErrorFields;
use std::time::{Duration, Instant};

/// SQLSTATE `in_failed_sql_transaction`: what a statement skipped after an
/// earlier failure in the same transaction reports.
const IN_FAILED_TRANSACTION: &str = "25P02";

/// What one side of a sample produced.
#[derive(Debug)]
pub enum SideResult {
    /// The rows.
    Rows(ResultSet),
    /// The server's error.
    Error(ErrorFields),
}

/// What both sides of one sample answered.
#[derive(Debug)]
pub struct SampleResult {
    /// The old schema's answer.
    pub old: SideResult,
    /// The new schema's answer.
    pub new: SideResult,
    /// The old query's second answer in the same snapshot, when the run
    /// was an A/A baseline ([`SampleSpec::baseline`]).
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
    /// The new query ran first ([`SampleSpec::new_first`]).
    pub new_first: bool,
}

impl SampleResult {
    /// The answer of the side that ran first: the old side's, or the new
    /// side's when it ran first ([`SampleSpec::new_first`]).
    pub(super) fn first_side(self) -> SideResult {
        if self.new_first {
            self.new
        } else {
            self.old
        }
    }

    /// A prepared statement whose relation changed its columns (the new
    /// schema is being migrated) fails once with "cached plan must not
    /// change result type"; it has been closed, so the run is repeated.
    pub(super) fn is_stale(&self) -> bool {
        let stale = |side: &SideResult| matches!(side, SideResult::Error(e) if e.code == CACHED_PLAN_CHANGED);
        stale(&self.old) || stale(&self.new) || self.baseline.as_ref().is_some_and(stale)
    }

    /// The result of a run of both sides, in the order `spec` ran them.
    pub(super) fn of_shared(r: Answered, spec: &SampleSpec<'_>) -> SampleResult {
        let mut sides = r.sides.into_iter();
        let first = sides.next().unwrap_or_else(|| not_run(&r.failure));
        let second = sides.next().unwrap_or_else(|| not_run(&r.failure));
        let time = |i: usize| r.times.get(i).copied().unwrap_or_default();
        let ((old, old_time), (new, new_time)) = if spec.new_first {
            ((second, time(1)), (first, time(0)))
        } else {
            ((first, time(0)), (second, time(1)))
        };
        SampleResult {
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

/// What one run's statements answered.
#[derive(Debug, Default)]
pub(super) struct Answered {
    /// The sides that ran, in order; a side missing at the end never ran
    /// because something before it failed.
    pub sides: Vec<SideResult>,
    /// The error of a statement of pgshadow's own that stopped the run
    /// (BEGIN, a setting, a search_path switch, the unlock, ROLLBACK).
    pub failure: Option<ErrorFields>,
    pub snapshot_xmin: Option<u64>,
    /// Per side that ran, how long it took.
    pub times: Vec<Duration>,
}

/// The result of a side that never ran: the error that stopped the
/// pipeline before it, or "in failed transaction".
pub(super) fn not_run(failure: &Option<ErrorFields>) -> SideResult {
    SideResult::Error(failure.clone().unwrap_or_else(|| ErrorFields {
        severity: "ERROR".into(),
        code: IN_FAILED_TRANSACTION.into(),
        message: "not run: an earlier statement of the shadow transaction failed".into(),
    }))
}

/// Reads the replies of the written transaction up to (not including) its
/// ReadyForQuery: what each sample that ran answered (a prefix of `entries`,
/// ending with the one that failed, if any), and the step that failed.
pub(super) async fn read_transaction(
    conn: &mut ShadowConn,
    entries: &[SampleSides<'_>],
    written: &Written,
    limits: &Limits<'_>,
) -> Result<(Vec<Answered>, Option<usize>), ConnError> {
    // The current run's bound on each of its sides: bytes, and rows (the
    // rows its first side kept, once bytes cut that side short, so that
    // identical results keep identical prefixes).
    let mut side_bound = (0usize, 0usize);
    let mut answers: Vec<Answered> = Vec::with_capacity(written.entries);
    let mut snapshot_xmin = None;
    // Server clock readings: one before every side and one after the last,
    // so side k (counting over the whole transaction) ran between clock k
    // and clock k + 1. The client's clock is the fallback.
    let mut clocks: Vec<Option<f64>> = Vec::with_capacity(2 * written.entries + 1);
    let mut local_times: Vec<(usize, Duration)> = Vec::with_capacity(2 * written.entries);
    let mut side_started = Instant::now();
    let mut failed_step = None;
    for (index, &(entry, step)) in written.steps.iter().enumerate() {
        while answers.len() <= entry {
            answers.push(Answered::default());
        }
        let (Some(answer), Some(spec)) =
            (answers.get_mut(entry), entries.get(entry).map(|r| r.spec))
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
                local_times.push((entry, side_started.elapsed()));
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
    for (k, &(entry, local)) in local_times.iter().enumerate() {
        let server = match (clocks.get(k), clocks.get(k + 1)) {
            (Some(&Some(start)), Some(&Some(end))) => Duration::try_from_secs_f64(end - start).ok(),
            _ => None,
        };
        if let Some(answer) = answers.get_mut(entry) {
            answer.times.push(server.unwrap_or(local));
        }
    }
    for answer in &mut answers {
        answer.snapshot_xmin = snapshot_xmin;
    }
    Ok((answers, failed_step))
}
