//! Per-thread counter shards (see [`super`] for what they save).
//!
//! Every statement every client runs is counted (`pgshadow_queries_total`,
//! `pgshadow_skipped_total`), so these are the hottest counters of the
//! proxy. One shared atomic per counter would be written by
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

use crate::capture::skip::SkipReason;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shards per counter set: one per thread for the first `SHARDS - 1`
/// threads that count (more than the proxy's runtime has on any machine it
/// runs on), and the last one shared by any later thread.
pub(crate) const SHARDS: usize = 64;

/// The shard every thread past the first `SHARDS - 1` counts into.
pub(crate) const SHARED: usize = SHARDS - 1;

/// Skip reasons, one counter each.
pub(crate) const REASONS: usize = SkipReason::ALL.len();

/// One thread's slot: cache lines of its own (the executed counter and one
/// per skip reason need more than two, so four: a multiple of the 128
/// bytes that adjacent-line prefetching pairs).
#[repr(align(256))]
#[derive(Default)]
pub(crate) struct Shard {
    pub(crate) executed: AtomicU64,
    pub(crate) skipped: [AtomicU64; REASONS],
}

/// The calling thread's shard index, the same for every counter set: its
/// own (no other thread ever gets it), or [`SHARED`].
pub(crate) fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed).min(SHARED);
    }
    // During the thread's own teardown its slot is gone.
    SHARD.try_with(|s| *s).unwrap_or(SHARED)
}

/// Adds one to a counter of shard `shard`: a plain load and store when the
/// calling thread is the shard's only writer.
pub(crate) fn add_one(counter: &AtomicU64, shard: usize) {
    if shard == SHARED {
        counter.fetch_add(1, Ordering::Relaxed);
    } else {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
