//! The relay's statement counters: statements executed, and statements
//! skipped by reason (`pgshadow_queries_total`, `pgshadow_skipped_total`).
//!
//! Every statement every client runs is counted, so these are the hottest
//! counters of the proxy. One shared atomic per counter would be written by
//! every core for every statement, and its cache line would travel between
//! the cores each time. Instead each session counts into one of
//! [`SHARDS`] cache-line-aligned shards (handed out round-robin, so
//! concurrent sessions rarely share one), and the shards are summed into
//! the Prometheus counters by [`StatementCounts::publish`] just before
//! `/metrics` is rendered: the counts stay exact and current at every
//! scrape, and the relay pays an uncontended add.

use super::skip::SkipReason;
use crate::observability::metrics::{QUERIES_TOTAL, SKIPPED_TOTAL};
use metrics::Counter;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shards per counter set; more than the cores of any machine the proxy
/// runs on, so that sessions running at the same time rarely share one.
const SHARDS: usize = 64;

/// Skip reasons, one counter each.
const REASONS: usize = SkipReason::ALL.len();

/// One session's slot: two cache lines of its own.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    executed: AtomicU64,
    skipped: [AtomicU64; REASONS],
}

/// Which shard a session counts into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShardId(usize);

/// Statement counts, sharded per session; see the module docs.
pub struct StatementCounts {
    shards: Box<[Shard]>,
    next_shard: AtomicUsize,
    queries: Counter,
    skipped: [Counter; REASONS],
}

impl Default for StatementCounts {
    fn default() -> Self {
        Self::new()
    }
}

impl StatementCounts {
    /// Zeroed counts, with their Prometheus series registered (so every
    /// reason shows from the first scrape on).
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            next_shard: AtomicUsize::new(0),
            queries: metrics::counter!(QUERIES_TOTAL),
            skipped: SkipReason::ALL
                .map(|reason| metrics::counter!(SKIPPED_TOTAL, "reason" => reason.label())),
        }
    }

    /// A shard for a new session.
    pub fn shard(&self) -> ShardId {
        ShardId(self.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS)
    }

    fn slot(&self, shard: ShardId) -> Option<&Shard> {
        self.shards.get(shard.0)
    }

    /// Counts one statement executed by a client.
    pub fn executed(&self, shard: ShardId) {
        if let Some(s) = self.slot(shard) {
            s.executed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one statement that will not be compared.
    pub fn skipped(&self, shard: ShardId, reason: SkipReason) {
        if let Some(c) = self.slot(shard).and_then(|s| s.skipped.get(reason.index())) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Statements executed so far, over all shards.
    pub fn executed_total(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.executed.load(Ordering::Relaxed))
            .sum()
    }

    /// Statements skipped for `reason` so far, over all shards.
    pub fn skipped_total(&self, reason: SkipReason) -> u64 {
        self.shards
            .iter()
            .filter_map(|s| s.skipped.get(reason.index()))
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Writes the sums into the Prometheus counters. Counters only grow
    /// (`absolute` keeps the larger value), so two scrapes racing each
    /// other cannot move one backwards. The series are process-wide: a
    /// process has one set of counts (the shadow's), or the larger of two
    /// would win.
    pub fn publish(&self) {
        self.queries.absolute(self.executed_total());
        for (reason, counter) in SkipReason::ALL.iter().zip(&self.skipped) {
            counter.absolute(self.skipped_total(*reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_every_shard_add_up() {
        let counts = StatementCounts::new();
        let shards: Vec<ShardId> = (0..SHARDS + 3).map(|_| counts.shard()).collect();
        for (i, shard) in shards.iter().enumerate() {
            for _ in 0..=i {
                counts.executed(*shard);
            }
            counts.skipped(*shard, SkipReason::NotSampled);
        }
        counts.skipped(shards[0], SkipReason::Muted);
        let n = shards.len() as u64;
        assert_eq!(counts.executed_total(), n * (n + 1) / 2);
        assert_eq!(counts.skipped_total(SkipReason::NotSampled), n);
        assert_eq!(counts.skipped_total(SkipReason::Muted), 1);
        assert_eq!(counts.skipped_total(SkipReason::NotRead), 0);
    }

    #[test]
    fn sessions_get_different_shards_until_they_wrap_around() {
        let counts = StatementCounts::new();
        let first: Vec<ShardId> = (0..SHARDS).map(|_| counts.shard()).collect();
        let mut distinct = first.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), SHARDS);
        assert_eq!(counts.shard(), first[0]);
    }

    #[test]
    fn a_shard_fills_its_own_cache_lines() {
        assert_eq!(std::mem::align_of::<Shard>(), 128);
        assert!(std::mem::size_of::<Shard>() <= 128);
    }
}
