//! `listen.max_client_connections`: how many clients are served at once.
//!
//! Every accepted connection takes a [`Slot`] for as long as it lives.
//! Within the limit the session is served; beyond it the connection still
//! gets its handshake, so that the client reads why it is refused (SQLSTATE
//! 53300, like PostgreSQL's "too many clients"), and a CancelRequest on it
//! is still routed: a full proxy must not stop clients from cancelling
//! their queries. Refusals in progress are bounded too
//! ([`MAX_REFUSALS_IN_FLIGHT`]); past that, a connection is closed at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Connections beyond the limit that may be in their handshake (on the way
/// to their 53300) at the same time. Each holds a few KiB for at most
/// `listen.startup_timeout_ms`.
pub(crate) const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// The counters behind the limit.
#[derive(Debug, Default)]
pub(crate) struct ConnectionSlots {
    /// `listen.max_client_connections`; 0 means no limit.
    limit: usize,
    served: Arc<AtomicUsize>,
    refusing: Arc<AtomicUsize>,
}

/// What becomes of one accepted connection.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Within the limit: served.
    Served(#[expect(dead_code, reason = "held for its Drop")] Slot),
    /// Beyond it: handshake, then 53300 (cancel requests still routed).
    Refused(#[expect(dead_code, reason = "held for its Drop")] Slot),
    /// Beyond it while too many refusals are in progress: closed at once.
    Dropped,
}

/// A taken place among the served or the refusing connections, given back
/// when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionSlots {
    /// Slots for `limit` clients (0: unlimited).
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// The limit, for the refusal's message.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Admits one newly accepted connection.
    pub(crate) fn admit(&self) -> Admission {
        if let Some(slot) = take(&self.served, self.limit) {
            return Admission::Served(slot);
        }
        match take(&self.refusing, MAX_REFUSALS_IN_FLIGHT) {
            Some(slot) => Admission::Refused(slot),
            None => Admission::Dropped,
        }
    }
}

/// One more of `counter`, unless it is at `limit` (0: no limit).
fn take(counter: &Arc<AtomicUsize>, limit: usize) -> Option<Slot> {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (limit == 0 || n < limit).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(counter.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_the_limit_connections_are_refused_then_dropped_and_slots_come_back() {
        let slots = ConnectionSlots::new(2);
        let a = slots.admit();
        let b = slots.admit();
        assert!(matches!(a, Admission::Served(_)));
        assert!(matches!(b, Admission::Served(_)));
        let refused: Vec<_> = (0..MAX_REFUSALS_IN_FLIGHT).map(|_| slots.admit()).collect();
        assert!(refused.iter().all(|r| matches!(r, Admission::Refused(_))));
        assert!(matches!(slots.admit(), Admission::Dropped));
        drop(a);
        let c = slots.admit();
        assert!(matches!(c, Admission::Served(_)));
        drop(refused);
        assert!(matches!(slots.admit(), Admission::Refused(_)));
    }

    #[test]
    fn zero_means_no_limit() {
        let slots = ConnectionSlots::new(0);
        let held: Vec<_> = (0..10_000).map(|_| slots.admit()).collect();
        assert!(held.iter().all(|a| matches!(a, Admission::Served(_))));
    }
}
