//! Old versus new execution time, per fingerprint (DESIGN §6, Latency).
//!
//! The shadow times both sides of a sample by the server's clock, in one
//! snapshot, with the same parameters: the cleanest A/A-style timing there
//! is. This module keeps, per fingerprint,
//!
//! - one HDR histogram per side (bounded memory, ~1 % value precision) for
//!   the coverage's p50/p95;
//! - the last [`PAIR_WINDOW`] paired samples (old and new time of the same
//!   sample) for the verdict;
//! - which side runs first next: the order alternates per sample, so that
//!   caching and order effects cancel.
//!
//! **The verdict.** One sample proves nothing: a checkpoint, a lock wait,
//! a cold cache page can make any single run slow. A pair counts as
//! *clearly slower* when the new time is at least `compare.slower_factor`
//! times the old one *and* at least `compare.slower_min_ms` more. The new
//! side is declared slower when, over at least `compare.slower_min_samples`
//! pairs, a one-sided sign test rejects "at most half of the pairs are
//! clearly slower" at [`ALPHA`] (with 20 pairs: 18 must be clearly slower).
//! A majority of clearly slower pairs also puts the median paired ratio
//! above the factor and the median difference above the minimum, so the
//! statistic reported is the median paired ratio. A slower fingerprint
//! recovers (an index was added) when the same test over its last
//! `slower_min_samples` pairs rejects the opposite: at most a few of them
//! are clearly slower. Pairs are forgotten at every change of verdict, so
//! each verdict rests on evidence gathered after the previous one. The
//! first time that opposite test passes for a fingerprint the proxy has
//! not judged yet, an *initial* "not slower" verdict is given too: it
//! resolves a `slower` incident an earlier run of the proxy left open (the
//! index was added while it was down).
//!
//! At most [`MAX_TRACKED`] fingerprints are tracked; beyond that the one
//! used least recently (preferably one not found slower) is forgotten.

use crate::capture::fingerprint::Fingerprint;
use crate::config::PAIR_WINDOW;
use crate::outcome::{LatencySummary, Verdict};
use hdrhistogram::Histogram;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Fingerprints tracked at most. Each costs two histograms of ~8 KiB and
/// a window of pairs of 1 KiB.
pub const MAX_TRACKED: usize = 512;

/// Significance of the sign test: the chance that a fingerprint that is not
/// slower is declared slower on one evaluation (or a slower one recovered).
pub const ALPHA: f64 = 0.001;

/// Significant digits of the histograms: values within 1 % (bucket width
/// at most 1/128 of the value).
const SIGNIFICANT_DIGITS: u8 = 2;

/// How often, at most, a fingerprint's distribution summary is handed to
/// the store (with the outcome of the sample that made it due).
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// What makes a fingerprint slower (from `[compare]`).
#[derive(Debug, Clone, Copy)]
pub struct SlowerRule {
    /// `compare.slower_factor`: new at least this many times old.
    pub factor: f64,
    /// `compare.slower_min_samples`: pairs needed before a verdict.
    pub min_samples: usize,
    /// `compare.slower_min_ms`: new at least this much longer than old.
    pub min_difference: Duration,
}

/// One line for people: `new side 42.0× slower (median of 20 paired
/// samples, 20 of them ≥ 3× and ≥ 5 ms slower): old 0.21 ms, new 8.8 ms`.
pub fn describe_verdict(verdict: &Verdict, rule: &SlowerRule) -> String {
    let what = if verdict.slower {
        "new side slower"
    } else {
        "new side no longer slower"
    };
    format!(
        "{what}: median paired ratio {:.1}× over {} samples ({} of them ≥ {}× and ≥ {} ms \
         slower); old median {:.3} ms, new median {:.3} ms",
        verdict.median_ratio,
        verdict.pairs,
        verdict.clearly_slower,
        rule.factor,
        rule.min_difference.as_secs_f64() * 1e3,
        verdict.old_median_ms,
        verdict.new_median_ms
    )
}

/// What recording one sample led to.
#[derive(Debug, Default)]
pub struct Recorded {
    /// The distributions, when a summary is due for the store.
    pub summary: Option<LatencySummary>,
    /// A change of verdict.
    pub verdict: Option<Verdict>,
}

/// Latency of every tracked fingerprint; shared by the shadow's workers.
pub struct LatencyBook {
    rule: SlowerRule,
    /// Largest time recorded, in microseconds (longer ones count as this).
    max_us: u64,
    state: Mutex<Tracked>,
}

#[derive(Default)]
struct Tracked {
    fingerprints: HashMap<Fingerprint, Statement>,
    /// Use counter, for forgetting the least recently used fingerprint.
    clock: u64,
}

struct Statement {
    old: Histogram<u32>,
    new: Histogram<u32>,
    /// (old, new) in microseconds, oldest first.
    pairs: VecDeque<(u32, u32)>,
    /// Whether the next sample runs the new side first.
    new_first: bool,
    /// Whether the new side is currently judged slower.
    slower: bool,
    /// Whether any verdict was given since the fingerprint was tracked.
    judged: bool,
    last_used: u64,
    summary_due: Option<Instant>,
}

impl LatencyBook {
    /// A book for `rule`; times longer than `max` (the statement timeout)
    /// are recorded as `max`.
    pub fn new(rule: SlowerRule, max: Duration) -> Self {
        let max_us = u64::try_from(max.as_micros()).unwrap_or(u64::MAX).max(1000);
        Self {
            rule,
            max_us,
            state: Mutex::new(Tracked::default()),
        }
    }

    /// The rule verdicts follow.
    pub fn rule(&self) -> &SlowerRule {
        &self.rule
    }

    /// Whether the next sample of `fingerprint` runs its new side first;
    /// alternates per call.
    pub fn new_first(&self, fingerprint: Fingerprint) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.statement(fingerprint, self.max_us) {
            Some(s) => {
                let first = s.new_first;
                s.new_first = !first;
                first
            }
            None => false,
        }
    }

    /// Records one sample's old and new time; returns a summary when one
    /// is due and any change of verdict.
    pub fn record(&self, fingerprint: Fingerprint, old: Duration, new: Duration) -> Recorded {
        let rule = self.rule;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(s) = state.statement(fingerprint, self.max_us) else {
            return Recorded::default();
        };
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let (old_us, new_us) = (micros(old).min(self.max_us), micros(new).min(self.max_us));
        s.old.saturating_record(old_us);
        s.new.saturating_record(new_us);
        if s.pairs.len() >= PAIR_WINDOW {
            s.pairs.pop_front();
        }
        let narrow = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        s.pairs.push_back((narrow(old_us), narrow(new_us)));
        let verdict = s.judge(&rule);
        let now = Instant::now();
        let summary = if verdict.is_some() || s.summary_due.is_none_or(|due| now >= due) {
            s.summary_due = Some(now + SUMMARY_INTERVAL);
            Some(s.summary())
        } else {
            None
        };
        Recorded {
            summary,
            verdict: verdict.map(|mut v| {
                v.summary = s.summary();
                v
            }),
        }
    }

    /// Fingerprints whose new side is currently judged slower.
    pub fn slower_count(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.fingerprints.values().filter(|s| s.slower).count()
    }
}

impl Tracked {
    /// The fingerprint's entry, made (forgetting another if full) if new.
    fn statement(&mut self, fingerprint: Fingerprint, max_us: u64) -> Option<&mut Statement> {
        self.clock += 1;
        let clock = self.clock;
        if !self.fingerprints.contains_key(&fingerprint) {
            if self.fingerprints.len() >= MAX_TRACKED {
                let victim = self
                    .fingerprints
                    .iter()
                    .min_by_key(|(_, s)| (s.slower, s.last_used))
                    .map(|(f, _)| *f);
                if let Some(victim) = victim {
                    self.fingerprints.remove(&victim);
                }
            }
            let histogram = || Histogram::<u32>::new_with_bounds(1, max_us, SIGNIFICANT_DIGITS);
            let (Ok(old), Ok(new)) = (histogram(), histogram()) else {
                return None;
            };
            self.fingerprints.insert(
                fingerprint,
                Statement {
                    old,
                    new,
                    pairs: VecDeque::with_capacity(PAIR_WINDOW),
                    new_first: false,
                    slower: false,
                    judged: false,
                    last_used: clock,
                    summary_due: None,
                },
            );
        }
        let s = self.fingerprints.get_mut(&fingerprint)?;
        s.last_used = clock;
        Some(s)
    }
}

impl Statement {
    /// A change of verdict, if the pairs now call for one (see the module
    /// documentation). Forgets the pairs when it changes.
    fn judge(&mut self, rule: &SlowerRule) -> Option<Verdict> {
        let min = rule.min_samples.max(1);
        if self.pairs.len() < min {
            return None;
        }
        // Not slower yet: every pair since the last change counts. Slower:
        // only the most recent ones, so a fix shows within `min` samples.
        let skip = if self.slower {
            self.pairs.len() - min
        } else {
            0
        };
        let pairs: Vec<(u32, u32)> = self.pairs.iter().skip(skip).copied().collect();
        let clearly = pairs
            .iter()
            .filter(|&&(old, new)| clearly_slower(old, new, rule))
            .count();
        let n = pairs.len();
        let initial = if self.slower {
            if binomial_lower_tail(n, clearly) > ALPHA {
                return None;
            }
            false
        } else if binomial_upper_tail(n, clearly) <= ALPHA {
            false
        } else if !self.judged && binomial_lower_tail(n, clearly) <= ALPHA {
            true
        } else {
            return None;
        };
        self.judged = true;
        if !initial {
            self.slower = !self.slower;
            self.pairs.clear();
        }
        let mut ratios: Vec<f64> = pairs
            .iter()
            .map(|&(old, new)| f64::from(new) / f64::from(old.max(1)))
            .collect();
        let mut olds: Vec<f64> = pairs.iter().map(|&(old, _)| f64::from(old)).collect();
        let mut news: Vec<f64> = pairs.iter().map(|&(_, new)| f64::from(new)).collect();
        Some(Verdict {
            slower: self.slower,
            initial,
            median_ratio: median(&mut ratios),
            pairs: n,
            clearly_slower: clearly,
            old_median_ms: median(&mut olds) / 1e3,
            new_median_ms: median(&mut news) / 1e3,
            summary: self.summary(),
        })
    }

    fn summary(&self) -> LatencySummary {
        let ms = |h: &Histogram<u32>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
        LatencySummary {
            samples: self.old.len(),
            old_p50_ms: ms(&self.old, 0.5),
            old_p95_ms: ms(&self.old, 0.95),
            new_p50_ms: ms(&self.new, 0.5),
            new_p95_ms: ms(&self.new, 0.95),
        }
    }
}

/// Whether one pair (microseconds) is clearly slower on the new side.
fn clearly_slower(old: u32, new: u32, rule: &SlowerRule) -> bool {
    let (old, new) = (f64::from(old), f64::from(new));
    new >= rule.factor * old && new - old >= rule.min_difference.as_secs_f64() * 1e6
}

/// The median of `values` (reordered); 0 when empty.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// P(X ≥ k) for X ~ Binomial(n, ½): the chance of `k` or more clearly
/// slower pairs out of `n` if at most half of all pairs were.
pub fn binomial_upper_tail(n: usize, k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    // Terms C(n, i) / 2^n, i = 0..=n, built up in floating point: n is at
    // most PAIR_WINDOW, and 2^-128 is far from underflow.
    let mut term = 0.5f64.powi(i32::try_from(n).unwrap_or(i32::MAX));
    let mut tail = 0.0;
    for i in 0..=n {
        if i >= k {
            tail += term;
        }
        term = term * (n - i) as f64 / (i + 1) as f64;
    }
    tail.min(1.0)
}

/// P(X ≤ k) for X ~ Binomial(n, ½).
pub fn binomial_lower_tail(n: usize, k: usize) -> f64 {
    // By symmetry, P(X ≤ k) = P(X ≥ n − k).
    binomial_upper_tail(n, n.saturating_sub(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> SlowerRule {
        SlowerRule {
            factor: 3.0,
            min_samples: 20,
            min_difference: Duration::from_millis(5),
        }
    }

    fn book() -> LatencyBook {
        LatencyBook::new(rule(), Duration::from_secs(5))
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A deterministic spread of timings (lognormal-ish, via a small
    /// linear congruential generator), in microseconds.
    fn timings(n: usize, median_us: f64, spread: f64, seed: u64) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                let mut sum = 0.0;
                // Sum of 12 uniforms − 6: close to a standard normal.
                for _ in 0..12 {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    sum += (x >> 11) as f64 / (1u64 << 53) as f64;
                }
                (median_us * ((sum - 6.0) * spread).exp()).round().max(1.0) as u64
            })
            .collect()
    }

    #[test]
    fn sketch_quantiles_are_within_one_percent_rank_of_the_exact_ones() {
        let cases = [
            timings(20_000, 250.0, 0.5, 1),   // a fast lookup
            timings(20_000, 9_000.0, 0.3, 2), // a sequential scan
            // Bimodal: cache hits and misses.
            [
                timings(10_000, 80.0, 0.4, 3),
                timings(5_000, 4_000.0, 0.6, 4),
            ]
            .concat(),
        ];
        for samples in cases {
            let mut h = Histogram::<u32>::new_with_bounds(1, 5_000_000, SIGNIFICANT_DIGITS)
                .expect("bounds");
            for &v in &samples {
                h.saturating_record(v);
            }
            let mut sorted = samples.clone();
            sorted.sort_unstable();
            let n = sorted.len() as f64;
            for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99] {
                let estimate = h.value_at_quantile(q);
                // The rank of the estimate among the recorded samples: the
                // share at or below it, and the share strictly below it.
                let at_or_below = sorted.partition_point(|&v| v <= estimate) as f64 / n;
                let below = sorted.partition_point(|&v| v < estimate) as f64 / n;
                let error = if q > at_or_below {
                    q - at_or_below
                } else if q < below {
                    below - q
                } else {
                    0.0
                };
                assert!(
                    error <= 0.01,
                    "q={q}: estimate {estimate} µs has rank {below}..{at_or_below}"
                );
            }
        }
    }

    #[test]
    fn sign_test_tails_are_exact() {
        assert!((binomial_upper_tail(20, 18) - 211.0 / 1_048_576.0).abs() < 1e-12);
        assert!((binomial_upper_tail(20, 17) - 1351.0 / 1_048_576.0).abs() < 1e-12);
        assert_eq!(binomial_upper_tail(20, 0), 1.0);
        assert_eq!(binomial_upper_tail(20, 21), 0.0);
        assert!((binomial_lower_tail(20, 2) - 211.0 / 1_048_576.0).abs() < 1e-12);
        assert!(binomial_upper_tail(128, 128) > 0.0, "no underflow");
    }

    #[test]
    fn a_reliably_slower_new_side_is_found_once_after_the_minimum_samples() {
        let book = book();
        let fp = Fingerprint(1);
        let mut verdicts = Vec::new();
        for i in 0..100u64 {
            let r = book.record(fp, us(200 + i % 7), us(9_000 + 13 * i));
            verdicts.extend(r.verdict.map(|v| (i, v)));
        }
        assert_eq!(verdicts.len(), 1, "{verdicts:?}");
        let (at, v) = &verdicts[0];
        assert_eq!(*at, 19, "decided at the 20th sample");
        assert!(v.slower);
        assert!(v.median_ratio > 40.0, "{v:?}");
        assert_eq!((v.pairs, v.clearly_slower), (20, 20));
        assert_eq!(book.slower_count(), 1);
        assert!(v.summary.new_p50_ms > 8.9 && v.summary.old_p50_ms < 0.21);
    }

    #[test]
    fn a_few_unlucky_samples_cannot_make_a_statement_slower() {
        let book = book();
        let fp = Fingerprint(2);
        // Ten of every hundred samples hit a 50 ms stall on the new side
        // only; the rest are alike.
        let mut verdicts = Vec::new();
        for i in 0..2_000u64 {
            let new = if i % 10 == 3 { 50_000 } else { 300 + i % 50 };
            let r = book.record(fp, us(300 + (i * 7) % 50), us(new));
            verdicts.extend(r.verdict.map(|v| (i, v.slower, v.initial)));
        }
        assert_eq!(
            verdicts,
            [(19, false, true)],
            "only the initial \"not slower\", never slower"
        );
        // Just below what the test needs: 17 of 20 clearly slower.
        let fp = Fingerprint(3);
        for i in 0..20u64 {
            let new = if i % 7 == 0 { 400 } else { 20_000 };
            assert!(
                book.record(fp, us(400), us(new)).verdict.is_none(),
                "neither slower nor clearly not"
            );
        }
        assert_eq!(book.slower_count(), 0);
    }

    #[test]
    fn small_absolute_differences_are_not_slower_however_large_the_ratio() {
        let book = book();
        for _ in 0..200 {
            // Ten times slower, but only 0.9 ms.
            let r = book.record(Fingerprint(4), us(100), us(1_000));
            assert!(r.verdict.is_none_or(|v| !v.slower && v.initial));
        }
        assert_eq!(book.slower_count(), 0);
    }

    #[test]
    fn a_slower_statement_recovers_when_the_index_is_back() {
        let book = book();
        let fp = Fingerprint(5);
        let mut changes = Vec::new();
        for i in 0..200u64 {
            let new = if i < 60 { 12_000 } else { 210 };
            if let Some(v) = book.record(fp, us(200), us(new)).verdict {
                changes.push((i, v.slower));
            }
        }
        assert_eq!(
            changes,
            [(19, true), (77, false)],
            "recovered once only 2 of the last 20 are slow"
        );
        assert_eq!(book.slower_count(), 0);
    }

    #[test]
    fn the_order_alternates_per_fingerprint() {
        let book = book();
        let a: Vec<bool> = (0..4).map(|_| book.new_first(Fingerprint(6))).collect();
        assert_eq!(a, [false, true, false, true]);
        // Interleaved with another fingerprint, each still alternates.
        let mixed: Vec<(bool, bool)> = (0..3)
            .map(|_| {
                (
                    book.new_first(Fingerprint(7)),
                    book.new_first(Fingerprint(8)),
                )
            })
            .collect();
        assert_eq!(mixed, [(false, false), (true, true), (false, false)]);
    }

    #[test]
    fn the_number_of_fingerprints_is_bounded() {
        let book = book();
        for i in 0..(MAX_TRACKED as u64 + 50) {
            book.record(Fingerprint(1000 + i), us(100), us(100));
        }
        let tracked = book.state.lock().unwrap().fingerprints.len();
        assert_eq!(tracked, MAX_TRACKED);
    }

    #[test]
    fn summaries_are_handed_out_at_most_once_an_interval() {
        let book = book();
        let first = book.record(Fingerprint(9), us(100), us(200));
        let second = book.record(Fingerprint(9), us(100), us(200));
        assert!(first.summary.is_some());
        assert!(second.summary.is_none());
    }
}
