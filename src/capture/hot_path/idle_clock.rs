//! A clock read at every sixteenth idle ReadyForQuery only (see [`super`]
//! for what it saves).

use std::time::{Duration, Instant};

/// The clock is read at every this many idle ReadyForQuery messages only:
/// reading it at each one was a measurable part of the relay's
/// per-transaction capture cost. A session that runs one transaction a
/// second therefore hands its skips over every 16 s.
pub(crate) const CLOCK_EVERY_IDLE_READY: u32 = 16;

/// When something was last done, asked about at idle ReadyForQuery
/// messages without reading the clock at each.
#[derive(Debug)]
pub(crate) struct IdleClock {
    /// When [`IdleClock::reset`] last ran.
    pub(crate) since: Instant,
    /// Idle ReadyForQuery messages since the clock was last read.
    idle_readies: u32,
}

impl IdleClock {
    /// Started now.
    pub(crate) fn new() -> Self {
        Self {
            since: Instant::now(),
            idle_readies: 0,
        }
    }

    /// Whether `interval` has passed since the last reset, asked at an idle
    /// ReadyForQuery: false without looking at all but every
    /// [`CLOCK_EVERY_IDLE_READY`]th time.
    pub(crate) fn elapsed_at_idle(&mut self, interval: Duration) -> bool {
        self.idle_readies += 1;
        if self.idle_readies < CLOCK_EVERY_IDLE_READY {
            return false;
        }
        self.idle_readies = 0;
        self.since.elapsed() >= interval
    }

    /// Starts counting again from now.
    pub(crate) fn reset(&mut self) {
        self.since = Instant::now();
    }
}
