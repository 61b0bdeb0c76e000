//! Why a statement was not compared.
//!
//! Every statement the proxy sees is either compared or skipped for
//! exactly one of these reasons, each a value of the `reason` label of
//! `pgshadow_skipped_total`.

use super::fingerprint::Fingerprint;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// The reason a statement was not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// Not provably a plain read (writes, DDL, session commands, FOR
    /// UPDATE, SELECT INTO, data-modifying CTEs, EXPLAIN, …).
    NotRead,
    /// The SQL could not be parsed (or is not valid UTF-8).
    Unparsable,
    /// A simple Query with more than one statement.
    MultiStatement,
    /// Calls a function whose effects escape a read-only transaction
    /// (advisory locks, pg_notify, set_config, dblink, sequences, …).
    SideEffectFunction,
    /// Depends on session-private state that another connection cannot
    /// see: temporary tables, a client-changed search_path,
    /// pg_backend_pid(), currval(), …
    SessionDependent,
    /// Not picked by the sampler.
    NotSampled,
    /// LIMIT/OFFSET without an ORDER BY that makes the rows deterministic.
    LimitWithoutOrder,
    /// The shadow queue was full.
    QueueFull,
    /// Over `shadow.max_samples_per_second`.
    RateLimited,
    /// The fingerprint is muted.
    Muted,
    /// Shadow comparison is switched off.
    Disabled,
    /// The statement or its parameters are larger than the capture limit.
    TooLarge,
    /// Calls a volatile function whose result differs from run to run
    /// (`random()`, `clock_timestamp()`, `gen_random_uuid()`, …) outside
    /// ORDER BY: every comparison would differ.
    Nondeterministic,
    /// Calls a user-defined function the catalog says is VOLATILE (and
    /// `shadow.allow_functions` does not list): replaying it could have
    /// effects.
    VolatileFunction,
    /// A shadow statement waited `shadow.lock_timeout_ms` for a lock (DDL
    /// holds or awaits it) and gave up.
    LockTimeout,
    /// The batch's `shadow.max_transaction_ms` was spent before the sample
    /// ran (or while it ran: the transaction was cancelled).
    TransactionBudget,
    /// The shadow transaction blocked another backend and was cancelled.
    GaveWay,
}

impl SkipReason {
    /// Every reason, for pre-registering metric series.
    pub const ALL: [SkipReason; 17] = [
        SkipReason::NotRead,
        SkipReason::Unparsable,
        SkipReason::MultiStatement,
        SkipReason::SideEffectFunction,
        SkipReason::SessionDependent,
        SkipReason::NotSampled,
        SkipReason::LimitWithoutOrder,
        SkipReason::QueueFull,
        SkipReason::RateLimited,
        SkipReason::Muted,
        SkipReason::Disabled,
        SkipReason::TooLarge,
        SkipReason::Nondeterministic,
        SkipReason::VolatileFunction,
        SkipReason::LockTimeout,
        SkipReason::TransactionBudget,
        SkipReason::GaveWay,
    ];

    /// The reason's position in [`SkipReason::ALL`], for per-reason arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::NotRead => "not_read",
            SkipReason::Unparsable => "unparsable",
            SkipReason::MultiStatement => "multi_statement",
            SkipReason::SideEffectFunction => "side_effect_function",
            SkipReason::SessionDependent => "session_dependent",
            SkipReason::NotSampled => "not_sampled",
            SkipReason::LimitWithoutOrder => "limit_without_order",
            SkipReason::QueueFull => "queue_full",
            SkipReason::RateLimited => "rate_limited",
            SkipReason::Muted => "muted",
            SkipReason::Disabled => "disabled",
            SkipReason::TooLarge => "too_large",
            SkipReason::Nondeterministic => "nondeterministic",
            SkipReason::VolatileFunction => "volatile_function",
            SkipReason::LockTimeout => "lock_timeout",
            SkipReason::TransactionBudget => "transaction_budget",
            SkipReason::GaveWay => "gave_way",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_s_index_is_its_place_in_all() {
        for (i, reason) in SkipReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason}");
        }
    }

    #[test]
    fn labels_are_unique_snake_case() {
        let mut labels: Vec<_> = SkipReason::ALL.iter().map(|r| r.label()).collect();
        assert!(labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), SkipReason::ALL.len());
    }
}

/// Skips per fingerprint and reason, for coverage ("how often was this
/// statement compared, and why not the other times").
pub type SkipTally = HashMap<(Fingerprint, SkipReason), u64>;

/// Distinct (fingerprint, reason) pairs [`SkipCounts`] holds between two
/// takes; beyond, new pairs are dropped (their totals are still in
/// `pgshadow_skipped_total`).
const MAX_PENDING_PAIRS: usize = 50_000;

/// Per-fingerprint skip counts shared by every session, on their way to
/// the mismatch store. Sessions add whole batches they summed up locally,
/// so the lock is taken once per batch, not once per statement.
#[derive(Debug, Clone, Default)]
pub struct SkipCounts {
    pending: Arc<Mutex<SkipTally>>,
}

impl SkipCounts {
    /// Adds a session's batch and empties it.
    pub fn add(&self, batch: &mut SkipTally) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, n) in batch.drain() {
            if let Some(count) = pending.get_mut(&key) {
                *count += n;
            } else if pending.len() < MAX_PENDING_PAIRS {
                pending.insert(key, n);
            }
        }
    }

    /// Counts `n` executions of `fingerprint` not compared for `reason`.
    pub fn record_skips(&self, fingerprint: Fingerprint, reason: SkipReason, n: u64) {
        self.add(&mut SkipTally::from([((fingerprint, reason), n)]));
    }

    /// Everything added since the last take.
    pub fn take(&self) -> SkipTally {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
