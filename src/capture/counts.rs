//! The relay's statement counters: statements executed, and statements
//! skipped by reason (`pgshadow_queries_total`, `pgshadow_skipped_total`).
//!
//! Every statement every client runs is counted, so these are the hottest
//! counters of the proxy. One shared atomic per counter would be written by
//! every core for every statement, and its cache line would travel between
//! the cores each time. Instead each thread counts into a cache-line-aligned
//! shard of its own, handed out when the thread first counts. A session
//! moves between threads, but a thread seldom moves between cores, so the
//! lines a thread writes stay in its core's cache (per-session shards were
//! written from whichever core the session's task ran on last). A shard
//! with one writer needs no atomic read-modify-write either: counting is a
//! plain load and store, which, unlike a locked add, does not wait for the
//! thread's earlier writes to drain. Threads beyond the first
//! `SHARDS - 1` share the last shard and add atomically. The shards are
//! summed into the Prometheus counters by [`StatementCounts::publish`]
//! just before `/metrics` is rendered: the counts stay exact and current at
//! every scrape.

use super::skip::SkipReason;
use crate::observability::metrics::{QUERIES_TOTAL, SKIPPED_TOTAL};
use metrics::Counter;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shards per counter set: one per thread for the first `SHARDS - 1`
/// threads that count (more than the proxy's runtime has on any machine it
/// runs on), and the last one shared by any later thread.
const SHARDS: usize = 64;

/// The shard every thread past the first `SHARDS - 1` counts into.
const SHARED: usize = SHARDS - 1;

/// Skip reasons, one counter each.
const REASONS: usize = SkipReason::ALL.len();

/// One thread's slot: cache lines of its own (the executed counter and one
/// per skip reason need more than two, so four: a multiple of the 128
/// bytes that adjacent-line prefetching pairs).
#[repr(align(256))]
#[derive(Default)]
struct Shard {
    executed: AtomicU64,
    skipped: [AtomicU64; REASONS],
}

/// The calling thread's shard index, the same for every counter set: its
/// own (no other thread ever gets it), or [`SHARED`].
fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed).min(SHARED);
    }
    // During the thread's own teardown its slot is gone.
    SHARD.try_with(|s| *s).unwrap_or(SHARED)
}

/// Adds one to a counter of shard `shard`: a plain load and store when the
/// calling thread is the shard's only writer.
fn add_one(counter: &AtomicU64, shard: usize) {
    if shard == SHARED {
        counter.fetch_add(1, Ordering::Relaxed);
    } else {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

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

    #[test]
    fn a_thread_keeps_its_shard_and_no_other_thread_gets_it() {
        let here = thread_shard();
        assert_eq!(thread_shard(), here);
        let others: Vec<usize> = (0..SHARDS + 2)
            .map(|_| std::thread::spawn(thread_shard).join().unwrap_or(here))
            .collect();
        if here != SHARED {
            assert!(!others.contains(&here), "{here} {others:?}");
        }
        let mut own: Vec<usize> = others.into_iter().filter(|&s| s != SHARED).collect();
        let n = own.len();
        own.sort_unstable();
        own.dedup();
        assert_eq!(own.len(), n, "every thread's own shard is its alone");
    }

    #[test]
    fn a_shard_fills_its_own_cache_lines() {
        assert_eq!(std::mem::align_of::<Shard>(), 256);
        assert!(std::mem::size_of::<Shard>() <= 256);
    }
}
