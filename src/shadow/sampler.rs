//! Which executions are compared.
//!
//! Decisions must be cheap and never wait: they run on the relay for every
//! read. The rate, the kill switch and the per-second cap are atomics that
//! can change at run time; overrides and mutes are swapped in whole
//! (`arc-swap`).

use crate::capture::fingerprint::Fingerprint;
use crate::capture::skip::SkipReason;
use arc_swap::ArcSwap;
use rand::{Rng, RngExt};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Fingerprints remembered for "first executions" per shard; when a shard
/// is full it starts over, so memory stays bounded.
const SEEN_PER_SHARD: usize = 8192;
const SHARDS: usize = 16;

/// Runtime-adjustable sampling policy.
pub struct Sampler {
    switches: Switches,
    overrides: ArcSwap<HashMap<Fingerprint, f64>>,
    muted: ArcSwap<HashSet<Fingerprint>>,
    /// Serialises the updates of `overrides` and `muted`, so that each flag
    /// ends up describing the map it belongs to.
    policy_updates: Mutex<()>,
    seen: [Mutex<HashMap<Fingerprint, u32>>; SHARDS],
    limiter: PerSecondCap,
}

/// What every decision reads, in one cache line of its own: the relay
/// decides for every execution, and each line it reads is one more it may
/// have to fetch back from memory.
#[repr(align(64))]
struct Switches {
    enabled: AtomicBool,
    /// Global rate, as f64 bits.
    rate: AtomicU64,
    /// Whether `overrides` / `muted` hold anything: most deployments have
    /// neither, and then a decision loads no shared map at all.
    any_overrides: AtomicBool,
    any_muted: AtomicBool,
    /// Executions of each fingerprint sampled regardless of the rate.
    first_executions: u32,
}

impl Sampler {
    /// A sampler with the configured policy.
    pub fn new(
        enabled: bool,
        rate: f64,
        overrides: HashMap<Fingerprint, f64>,
        first_executions: u32,
        max_per_second: u64,
    ) -> Self {
        Self {
            switches: Switches {
                enabled: AtomicBool::new(enabled),
                rate: AtomicU64::new(rate.clamp(0.0, 1.0).to_bits()),
                any_overrides: AtomicBool::new(!overrides.is_empty()),
                any_muted: AtomicBool::new(false),
                first_executions,
            },
            overrides: ArcSwap::from_pointee(overrides),
            muted: ArcSwap::from_pointee(HashSet::new()),
            policy_updates: Mutex::new(()),
            seen: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            limiter: PerSecondCap::new(max_per_second),
        }
    }

    /// Whether to sample one execution of `fingerprint`. `executions_here`
    /// is how often the asking session ran the same statement before (0
    /// when it does not know): once that alone exceeds
    /// `first_executions`, so does the fingerprint's count over all
    /// sessions, and the shared count is not touched again; a busy
    /// statement then costs no lock. `rng` draws the random part of the
    /// decision (sessions keep their own small generator).
    pub fn decide(
        &self,
        fingerprint: Fingerprint,
        executions_here: u32,
        rng: &mut impl Rng,
    ) -> Result<(), SkipReason> {
        if !self.switches.enabled.load(Ordering::Relaxed) {
            return Err(SkipReason::Disabled);
        }
        if self.switches.any_muted.load(Ordering::Relaxed)
            && self.muted.load().contains(&fingerprint)
        {
            return Err(SkipReason::Muted);
        }
        if executions_here < self.switches.first_executions && self.is_early_execution(fingerprint)
        {
            return Ok(());
        }
        let rate = if self.switches.any_overrides.load(Ordering::Relaxed) {
            self.overrides
                .load()
                .get(&fingerprint)
                .copied()
                .unwrap_or_else(|| self.rate())
        } else {
            self.rate()
        };
        if rate >= 1.0 || (rate > 0.0 && rng.random::<f64>() < rate) {
            Ok(())
        } else {
            Err(SkipReason::NotSampled)
        }
    }

    /// Executions of each fingerprint sampled regardless of the rate.
    pub fn first_executions(&self) -> u32 {
        self.switches.first_executions
    }

    /// Takes a slot under `max_samples_per_second`.
    pub fn admit(&self) -> Result<(), SkipReason> {
        self.limiter.admit()
    }

    /// Counts this execution; true while it is among the fingerprint's
    /// first `first_executions`, so rare queries are covered too.
    fn is_early_execution(&self, fingerprint: Fingerprint) -> bool {
        let shard = &self.seen[(fingerprint.0 as usize) % SHARDS];
        let mut seen = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= SEEN_PER_SHARD && !seen.contains_key(&fingerprint) {
            seen.clear();
        }
        let n = seen.entry(fingerprint).or_insert(0);
        *n = n.saturating_add(1);
        *n <= self.switches.first_executions
    }

    /// The global sample rate.
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.switches.rate.load(Ordering::Relaxed))
    }

    /// Changes the global sample rate (clamped to 0..1).
    pub fn set_rate(&self, rate: f64) {
        self.switches
            .rate
            .store(rate.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    /// Whether sampling is switched on.
    pub fn enabled(&self) -> bool {
        self.switches.enabled.load(Ordering::Relaxed)
    }

    /// The kill switch.
    pub fn set_enabled(&self, on: bool) {
        self.switches.enabled.store(on, Ordering::Relaxed);
    }

    /// Replaces the per-fingerprint rates.
    pub fn set_overrides(&self, overrides: HashMap<Fingerprint, f64>) {
        let _updating = self.lock_policy_updates();
        self.switches
            .any_overrides
            .store(!overrides.is_empty(), Ordering::Relaxed);
        self.overrides.store(Arc::new(overrides));
    }

    /// Replaces the muted fingerprints.
    pub fn set_muted(&self, muted: HashSet<Fingerprint>) {
        let _updating = self.lock_policy_updates();
        self.switches
            .any_muted
            .store(!muted.is_empty(), Ordering::Relaxed);
        self.muted.store(Arc::new(muted));
    }

    fn lock_policy_updates(&self) -> std::sync::MutexGuard<'_, ()> {
        self.policy_updates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The muted fingerprints.
    pub fn muted(&self) -> Arc<HashSet<Fingerprint>> {
        self.muted.load_full()
    }

    /// Unmutes `unmute`, then mutes `mute`, leaving every other mute as it
    /// is. Atomic with respect to concurrent updates, so mutes that come
    /// from different places (the config file, the admin API) never undo
    /// each other.
    pub fn update_muted(&self, unmute: &HashSet<Fingerprint>, mute: &HashSet<Fingerprint>) {
        let _updating = self.lock_policy_updates();
        let current = self.muted.load_full();
        let mut next: HashSet<Fingerprint> = current.difference(unmute).copied().collect();
        next.extend(mute.iter().copied());
        self.switches
            .any_muted
            .store(!next.is_empty(), Ordering::Relaxed);
        self.muted.store(Arc::new(next));
    }

    /// The cap on samples admitted per second (0 = none).
    pub fn max_samples_per_second(&self) -> u64 {
        self.limiter.max.load(Ordering::Relaxed)
    }

    /// Changes the cap on samples admitted per second (0 = none).
    pub fn set_max_samples_per_second(&self, max: u64) {
        self.limiter.max.store(max, Ordering::Relaxed);
    }
}

/// At most `max` admissions per wall-clock second (0 = unlimited).
struct PerSecondCap {
    /// Adjustable at run time; read once per admission.
    max: AtomicU64,
    origin: Instant,
    /// Current one-second window (seconds since `origin`) in the high 32
    /// bits, admissions in it in the low 32.
    window: AtomicU64,
}

impl PerSecondCap {
    fn new(max: u64) -> Self {
        Self {
            max: AtomicU64::new(max),
            origin: Instant::now(),
            window: AtomicU64::new(0),
        }
    }

    fn admit(&self) -> Result<(), SkipReason> {
        let max = self.max.load(Ordering::Relaxed);
        if max == 0 {
            return Ok(());
        }
        let second = self.origin.elapsed().as_secs() & 0xffff_ffff;
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (window, count) = (current >> 32, current & 0xffff_ffff);
            let next = if window == second {
                if count >= max {
                    return Err(SkipReason::RateLimited);
                }
                current + 1
            } else {
                (second << 32) | 1
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_executions_of_a_fingerprint_are_sampled_regardless_of_rate() {
        let s = Sampler::new(true, 0.0, HashMap::new(), 3, 0);
        let fp = Fingerprint(7);
        let picked: Vec<bool> = (0..6)
            .map(|_| s.decide(fp, 0, &mut rand::rng()).is_ok())
            .collect();
        assert_eq!(picked, [true, true, true, false, false, false]);
        assert_eq!(
            s.decide(fp, 0, &mut rand::rng()),
            Err(SkipReason::NotSampled)
        );
        assert!(
            s.decide(Fingerprint(8), 0, &mut rand::rng()).is_ok(),
            "a new fingerprint starts over"
        );
    }

    #[test]
    fn a_session_past_the_first_executions_leaves_the_shared_count_alone() {
        let s = Sampler::new(true, 0.0, HashMap::new(), 3, 0);
        let fp = Fingerprint(7);
        // A session that ran the statement 3 times already is past them,
        // whatever the shared count says...
        assert_eq!(
            s.decide(fp, 3, &mut rand::rng()),
            Err(SkipReason::NotSampled)
        );
        assert_eq!(
            s.decide(fp, 1000, &mut rand::rng()),
            Err(SkipReason::NotSampled)
        );
        // ...and did not use up another session's first executions.
        let picked: Vec<bool> = (0..4)
            .map(|_| s.decide(fp, 0, &mut rand::rng()).is_ok())
            .collect();
        assert_eq!(picked, [true, true, true, false]);
    }

    #[test]
    fn rate_overrides_kill_switch_and_mutes() {
        let s = Sampler::new(true, 1.0, HashMap::from([(Fingerprint(1), 0.0)]), 0, 0);
        assert!(s.decide(Fingerprint(2), 0, &mut rand::rng()).is_ok());
        assert_eq!(
            s.decide(Fingerprint(1), 0, &mut rand::rng()),
            Err(SkipReason::NotSampled)
        );
        s.set_muted(HashSet::from([Fingerprint(2)]));
        assert_eq!(
            s.decide(Fingerprint(2), 0, &mut rand::rng()),
            Err(SkipReason::Muted)
        );
        s.set_enabled(false);
        assert_eq!(
            s.decide(Fingerprint(3), 0, &mut rand::rng()),
            Err(SkipReason::Disabled)
        );
        s.set_enabled(true);
        s.set_rate(0.0);
        assert_eq!(
            s.decide(Fingerprint(3), 0, &mut rand::rng()),
            Err(SkipReason::NotSampled)
        );
    }

    #[test]
    fn a_fractional_rate_samples_about_that_fraction() {
        let s = Sampler::new(true, 0.25, HashMap::new(), 0, 0);
        let n = 20_000;
        let picked = (0..n)
            .filter(|_| s.decide(Fingerprint(9), 0, &mut rand::rng()).is_ok())
            .count();
        let share = picked as f64 / n as f64;
        assert!((0.22..0.28).contains(&share), "{share}");
    }

    #[test]
    fn mute_updates_keep_mutes_from_elsewhere() {
        let s = Sampler::new(true, 1.0, HashMap::new(), 0, 0);
        s.set_muted(HashSet::from([Fingerprint(1), Fingerprint(2)]));
        s.update_muted(
            &HashSet::from([Fingerprint(2)]),
            &HashSet::from([Fingerprint(3)]),
        );
        assert_eq!(
            *s.muted(),
            HashSet::from([Fingerprint(1), Fingerprint(3)]),
            "1 was muted elsewhere and stays; 2 is unmuted; 3 is muted"
        );
        assert_eq!(s.decide(Fingerprint(2), 0, &mut rand::rng()), Ok(()));
        assert_eq!(
            s.decide(Fingerprint(3), 0, &mut rand::rng()),
            Err(SkipReason::Muted)
        );
    }

    #[test]
    fn the_per_second_cap_can_change_at_run_time() {
        let s = Sampler::new(true, 1.0, HashMap::new(), 0, 0);
        assert!((0..100).all(|_| s.admit().is_ok()), "no cap");
        s.set_max_samples_per_second(1);
        assert_eq!(s.max_samples_per_second(), 1);
        let admitted = (0..100).filter(|_| s.admit().is_ok()).count();
        assert!((1..=2).contains(&admitted), "{admitted}");
        s.set_max_samples_per_second(0);
        assert!((0..100).all(|_| s.admit().is_ok()), "cap lifted");
    }

    #[test]
    fn the_rate_limiter_admits_at_most_max_per_second() {
        let limiter = PerSecondCap::new(5);
        let admitted = (0..100).filter(|_| limiter.admit().is_ok()).count();
        // All 100 calls happen within one or two one-second windows.
        assert!((5..=10).contains(&admitted), "{admitted}");
        assert!(PerSecondCap::new(0).admit().is_ok());
    }
}
