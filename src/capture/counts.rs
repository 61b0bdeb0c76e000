//! The relay's statement counters: statements executed, and statements
//! skipped by reason (`pgshadow_queries_total`, `pgshadow_skipped_total`).
//!
//! Every statement every client runs is counted, so these are the hottest
//! counters of the proxy: they count into per-thread shards
//! (`hot_path/thread_shards.rs`, which says why), summed into the
//! Prometheus counters by [`StatementCounts::publish`] just before
//! `/metrics` is rendered: the counts stay exact and current at every
//! scrape.

use super::hot_path::thread_shards::{add_one, thread_shard, Shard, REASONS, SHARDS};
use super::skip::SkipReason;
use crate::observability::metrics::{QUERIES_TOTAL, SKIPPED_TOTAL};
use metrics::Counter;
use std::sync::atomic::Ordering;

/// Statement counts, sharded per thread; see the module docs.
pub struct StatementCounts {
    /// Inline rather than boxed: finding the shard then reads no pointer.
    shards: [Shard; SHARDS],
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
            shards: std::array::from_fn(|_| Shard::default()),
            queries: metrics::counter!(QUERIES_TOTAL),
            skipped: SkipReason::ALL
                .map(|reason| metrics::counter!(SKIPPED_TOTAL, "reason" => reason.label())),
        }
    }

    /// Counts one statement executed by a client.
    pub fn executed(&self) {
        let shard = thread_shard();
        if let Some(s) = self.shards.get(shard) {
            add_one(&s.executed, shard);
        }
    }

    /// Counts one statement that will not be compared.
    pub fn skipped(&self, reason: SkipReason) {
        let shard = thread_shard();
        if let Some(c) = self
            .shards
            .get(shard)
            .and_then(|s| s.skipped.get(reason.index()))
        {
            add_one(c, shard);
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
    fn counts_from_every_thread_add_up() {
        let counts = StatementCounts::new();
        let threads = SHARDS + 3;
        std::thread::scope(|scope| {
            for i in 0..threads {
                let counts = &counts;
                scope.spawn(move || {
                    for _ in 0..=i {
                        counts.executed();
                    }
                    counts.skipped(SkipReason::NotSampled);
                    if i == 0 {
                        counts.skipped(SkipReason::Muted);
                    }
                });
            }
        });
        let n = threads as u64;
        assert_eq!(counts.executed_total(), n * (n + 1) / 2);
        assert_eq!(counts.skipped_total(SkipReason::NotSampled), n);
        assert_eq!(counts.skipped_total(SkipReason::Muted), 1);
        assert_eq!(counts.skipped_total(SkipReason::NotRead), 0);
    }
}
