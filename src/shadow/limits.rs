//! What bounds a batch's shadow transactions (DESIGN §4, "the shadow must
//! never hurt the migration it checks"): a wall-clock budget
//! (`shadow.max_transaction_ms`) with a cancel at its deadline, the
//! give-way watcher ([`super::give_way`]), and the bytes of result rows
//! the batch may keep (`shadow.max_batch_result_bytes`).
//!
//! [`super::execute`] applies them: no transaction starts once the budget is
//! spent, each statement's `statement_timeout` is at most what is left,
//! and a transaction still open at the deadline is cancelled with a
//! CancelRequest on the backend's key.

use super::conn::CancelKey;
use super::give_way::{GiveWay, Watched};
use super::transaction::SampleSpec;
use crate::capture::skip::SkipReason;
use crate::diff::result::{row_bytes, ResultSet};
use crate::observability::metrics::RESULT_BYTES_EXCEEDED_TOTAL;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bounds of one batch's transactions.
pub struct Limits<'a> {
    /// No transaction starts after this, and one still open is cancelled.
    pub deadline: Instant,
    /// Cancels transactions that block other backends.
    pub give_way: Option<&'a Arc<GiveWay>>,
    /// Bytes of rows the batch's sides may still keep; a sample's sides
    /// each keep at most what is left when its first side starts (the same
    /// bound for all its sides, so identical results keep identical
    /// prefixes).
    pub result_bytes: AtomicUsize,
}

impl Limits<'_> {
    /// A budget of `budget` from now, without a watcher or a byte bound.
    pub fn budget(budget: Duration) -> Self {
        Limits {
            deadline: Instant::now() + budget,
            give_way: None,
            result_bytes: AtomicUsize::new(usize::MAX),
        }
    }

    /// What is left of the time budget.
    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The byte bound of each side of a sample whose own bound is
    /// `max_bytes` (`shadow.max_result_bytes`).
    pub(super) fn side_bytes(&self, max_bytes: usize) -> usize {
        max_bytes.min(self.result_bytes.load(Ordering::Relaxed))
    }

    /// Takes the bytes `rows` kept from the batch's bound and, for a
    /// sample's first side, counts a side cut short by a byte bound
    /// (`max_bytes`: the side's, or less when the batch's was the smaller).
    pub(super) fn take_kept(
        &self,
        rows: &ResultSet,
        max_bytes: usize,
        spec: &SampleSpec<'_>,
        first_side: bool,
    ) {
        let kept: usize = rows.rows.iter().map(row_bytes).sum();
        let _ = self
            .result_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(kept))
            });
        if first_side && rows.truncated() && rows.rows.len() < spec.max_rows {
            let budget = if max_bytes < spec.max_bytes {
                "batch"
            } else {
                "side"
            };
            metrics::counter!(RESULT_BYTES_EXCEEDED_TOTAL, "budget" => budget).increment(1);
        }
    }
}

/// Runs `exchange` (a transaction's write and replies) to its end; if it
/// is still running at `deadline`, sends a CancelRequest with `cancel` and
/// goes on reading what the cancelled statement and the rest answer.
/// Returns the result and whether the deadline passed.
pub(super) async fn cancel_at_deadline<T>(
    deadline: Instant,
    cancel: Option<CancelKey>,
    exchange: impl Future<Output = T>,
) -> (T, bool) {
    tokio::pin!(exchange);
    tokio::select! {
        r = &mut exchange => (r, false),
        () = tokio::time::sleep_until(deadline.into()) => {
            if let Some(key) = cancel {
                tokio::spawn(async move { key.cancel().await });
            }
            (exchange.await, true)
        }
    }
}

/// Why a transaction's unfinished samples are given up: the watcher made
/// it give way, or its deadline passed; `None` when neither happened.
pub(super) fn given_up(watched: Option<Watched>, past_deadline: bool) -> Option<SkipReason> {
    if watched.as_ref().is_some_and(Watched::gave_way) {
        Some(SkipReason::GaveWay)
    } else if past_deadline {
        Some(SkipReason::TransactionBudget)
    } else {
        None
    }
}
