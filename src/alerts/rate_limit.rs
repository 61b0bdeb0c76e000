//! At most one alert per incident (that is, per signature) per interval.
//!
//! The store already raises one event per new incident, so in steady state
//! this only matters for an incident that flaps (muted, unmuted, muted
//! again) or for events repeated after a restart; it is what keeps "a
//! thousand identical alerts" impossible whatever happens upstream.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Incidents remembered before old entries are swept.
const SWEEP_AT: usize = 10_000;

/// When each incident last alerted.
#[derive(Debug, Default)]
pub struct RateLimiter {
    last_sent: HashMap<String, Instant>,
}

impl RateLimiter {
    /// Whether an alert about incident `id` may go out at `now`, given
    /// `min_interval` between two alerts about the same incident.
    pub fn allows(&self, id: &str, now: Instant, min_interval: Duration) -> bool {
        self.last_sent
            .get(id)
            .is_none_or(|last| now.saturating_duration_since(*last) >= min_interval)
    }

    /// Records that an alert about `id` went out at `now`. Entries older
    /// than `min_interval` are swept when many have accumulated, so memory
    /// stays bounded by the incidents of one interval.
    pub fn record(&mut self, id: &str, now: Instant, min_interval: Duration) {
        if self.last_sent.len() >= SWEEP_AT {
            self.last_sent
                .retain(|_, last| now.saturating_duration_since(*last) < min_interval);
        }
        self.last_sent.insert(id.to_string(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alert_per_incident_per_interval() {
        let mut limiter = RateLimiter::default();
        let t0 = Instant::now();
        let interval = Duration::from_secs(300);
        assert!(limiter.allows("a", t0, interval));
        limiter.record("a", t0, interval);
        assert!(!limiter.allows("a", t0 + Duration::from_secs(299), interval));
        assert!(
            limiter.allows("b", t0, interval),
            "other incidents are not held up"
        );
        assert!(limiter.allows("a", t0 + interval, interval));
        assert!(
            limiter.allows("a", t0, Duration::ZERO),
            "0 disables the limit"
        );
    }

    #[test]
    fn old_entries_are_swept() {
        let mut limiter = RateLimiter::default();
        let t0 = Instant::now();
        let interval = Duration::from_secs(1);
        for i in 0..SWEEP_AT {
            limiter.record(&i.to_string(), t0, interval);
        }
        limiter.record("late", t0 + Duration::from_secs(2), interval);
        assert_eq!(limiter.last_sent.len(), 1);
    }
}
