//! What a shadow transaction is: the samples it holds, each with its
//! sides (old query, new query, and for an A/A baseline the old one once
//! more) and their bounds. [`super::write`] writes one into a pipeline,
//! [`super::answers`] reads its replies, [`super::execute`] runs it on a
//! connection.
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
//! same ([`SampleSides::shares_transaction_with`]): settings go through
//! `set_config(…, true)` (the same as `SET LOCAL`) as bound parameters, so no value is ever
//! quoted into SQL, and only where the client's value differs from the
//! connection's own (as the server reported it): changing a reported
//! setting costs the server a ParameterStatus message on the way in and
//! another at the end. Settings vanish at ROLLBACK; `pg_advisory_unlock_all()`
//! releases any session-level advisory lock a function the statement called
//! may have taken (a rollback does not), so the connection goes back to the
//! pool holding nothing. The transaction ends with ROLLBACK, never COMMIT:
//! a notification a function queued is discarded. When the transaction
//! fails before the unlock, the clean-up runs the unlock after its ROLLBACK.
//! (Every [`super::execute::DISCARD_EVERY`] samples the connection is also
//! reset with `DISCARD ALL`, which bounds any other session state a user
//! function might leave behind.)

use crate::capture::tracker::Sample;
use crate::diff::CompareOptions;
use std::sync::Arc;
use std::time::Duration;

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

/// What to run for one sample: its two queries, the search_paths they run
/// under, their bounds, and in which order and snapshot.
#[derive(Debug, Clone)]
pub struct SampleSpec<'a> {
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

impl<'a> SampleSpec<'a> {
    /// This spec with the new query in the old side's place as well: its
    /// transaction runs the new query first (under the new search_path),
    /// then again as the second side, and nothing of the old schema; the
    /// first side's answer is the new query's alone, in a fresh snapshot.
    pub(super) fn new_side_only(self) -> Self {
        SampleSpec {
            old_sql: self.new_sql,
            old_search_path: self.new_search_path,
            ..self
        }
    }
}

/// One query and the search_path it runs under.
#[derive(Debug, Clone, Copy)]
pub(super) struct SideQuery<'a> {
    pub sql: &'a str,
    pub search_path: &'a str,
}

/// The old side, then the new side, of `spec`.
pub(super) fn both_sides<'a>(spec: &SampleSpec<'a>) -> [SideQuery<'a>; 2] {
    [
        SideQuery {
            sql: spec.old_sql,
            search_path: spec.old_search_path,
        },
        SideQuery {
            sql: spec.new_sql,
            search_path: spec.new_search_path,
        },
    ]
}

/// The sides of `spec`, in the order they run: old, new (or new, old with
/// [`SampleSpec::new_first`]) and, for an A/A baseline, the old query once
/// more (in the same snapshot).
pub(super) fn sides_of<'a>(spec: &SampleSpec<'a>) -> Vec<SideQuery<'a>> {
    let [old, new] = both_sides(spec);
    let mut sides = if spec.new_first {
        vec![new, old]
    } else {
        vec![old, new]
    };
    if spec.baseline {
        sides.push(old);
    }
    sides
}

/// Settings every shadow transaction makes, because the old and new query
/// (and the A/A baseline's second run) must see the rows in the same order
/// wherever PostgreSQL allows it: a synchronized sequential scan starts
/// where another scan of the table happens to be, and a parallel plan
/// gathers rows in whatever order its workers finish. Both are settable by
/// any role.
pub(super) const DETERMINISM: [(&str, &str); 2] = [
    ("synchronize_seqscans", "off"),
    ("max_parallel_workers_per_gather", "0"),
];

/// One sample to run: its sides, in order.
#[derive(Debug, Clone, Copy)]
pub(super) struct SampleSides<'a> {
    pub sample: &'a Sample,
    pub spec: &'a SampleSpec<'a>,
    pub sides: &'a [SideQuery<'a>],
}

impl SampleSides<'_> {
    /// Whether `other` may share this run's transaction: the same settings
    /// (they are transaction-local, and each run needs its client's) and
    /// the same statement timeout.
    pub(super) fn shares_transaction_with(&self, other: &SampleSides<'_>) -> bool {
        let (a, b) = (self.sample, other.sample);
        self.spec.snapshot == Snapshot::Shared
            && other.spec.snapshot == Snapshot::Shared
            && self.spec.statement_timeout == other.spec.statement_timeout
            && self.spec.lock_timeout == other.spec.lock_timeout
            && (Arc::ptr_eq(&a.settings, &b.settings) || a.settings == b.settings)
    }
}
