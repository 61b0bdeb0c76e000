//! The shadow: sampled reads re-run against the old and the new schema.
//!
//! The relay never waits for it. A session's tracker asks the [`Shadow`]
//! whether to sample an execution ([`sampler`]) and, once the primary has
//! completed it, hands the sample over with a non-blocking `try_send` into
//! a bounded queue; a full queue drops the sample and counts it. A
//! dispatcher takes samples off the queue in batches as workers free up
//! (`shadow.max_in_flight`) and hands each batch to the [`executor`].
//!
//! The path of one sample, by file:
//!
//! 1. [`sampler`]: drawn; queued with the `try_send` of [`Shadow`] (this file);
//! 2. [`batch`]: made a [`job`] (one per sample, carrying its plan, first
//!    run and judgement through the stages);
//! 3. [`planning`]: its relations' keys ([`keys`]) and functions'
//!    volatility ([`functions`]) looked up where due, then planned (cached
//!    parse and rewrite);
//! 4. [`pooled`] → [`execute`]: its old and new query in one REPEATABLE
//!    READ READ ONLY transaction on a pooled connection ([`pool`],
//!    [`conn`]), shared with the batch's other samples of the same
//!    settings. What a transaction is: [`transaction`]; how it is written:
//!    [`write`] (prepared once per connection, [`statements`]); how its
//!    replies are read: [`answers`], each statement's rows or error
//!    decoded by [`decode`]. Beside it, never in a loop with it: the
//!    budget and byte bounds ([`limits`]) and the give-way watcher
//!    ([`give_way`]);
//! 5. [`verdict`]: diffed, A/A noise, recheck; the outcome;
//! 6. [`slower`]: its times into the latency book ([`latency`]), with
//!    EXPLAIN of both sides ([`plans`]) when a verdict changes.
//!
//! Files depend one way: `batch` → `verdict` → `planning`, `pooled` →
//! `executor` (the shared state); `execute` → `answers` → `write` →
//! `transaction`.

pub mod answers;
mod batch;
pub mod conn;
mod decode;
pub mod execute;
pub mod executor;
pub mod functions;
pub mod give_way;
mod job;
pub mod keys;
pub mod latency;
pub mod limits;
mod planning;
pub mod plans;
pub mod pool;
mod pooled;
pub mod sampler;
mod slower;
pub mod statements;
pub mod transaction;
mod verdict;
mod write;

use crate::capture::counts::StatementCounts;
use crate::capture::fingerprint::Fingerprint;
use crate::capture::skip::{SkipCounts, SkipReason, SkipTally};
use crate::capture::tracker::{Sample, SampleGate};
use crate::config::Config;
use crate::observability::metrics::{
    COMPARISONS_TOTAL, COMPARISON_ORDERING_TOTAL, QUEUE_DEPTH, RECHECKS_TOTAL,
    SHADOW_BATCH_SAMPLES, SHADOW_DURATION_SECONDS, STORE_DROPPED_TOTAL,
};
use crate::outcome::{Outcome, OutcomeKind};
use crate::rewrite::{PlanCache, RewriteRules};
use conn::ConnParams;
use executor::{Executor, Handled};
use metrics::Gauge;
use pool::Pool;
use rand::rngs::SmallRng;
use sampler::Sampler;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

/// Why the shadow could not start.
#[derive(Debug, Error)]
pub enum ShadowError {
    /// `shadow.password_env` names a variable that is not set.
    #[error("shadow.password_env: environment variable {0} is not set")]
    MissingPassword(String),
    /// `shadow.tls_root_cert` (or `upstream.tls_root_cert`) is unusable.
    #[error("shadow TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// The shadow, shared by every session.
pub struct Shadow {
    sampler: Sampler,
    queue: mpsc::Sender<Sample>,
    queue_capacity: usize,
    /// Bytes of the samples in the queue ([`queued_bytes`]), bounded by
    /// `shadow.max_queue_bytes`.
    queue_bytes: std::sync::atomic::AtomicUsize,
    max_queue_bytes: usize,
    capture_limit: usize,
    /// Statements executed and skipped, per thread shard.
    counts: StatementCounts,
    queue_depth: Gauge,
    /// Skips per fingerprint, for the store's coverage table.
    skip_counts: SkipCounts,
}

impl Shadow {
    /// Starts the dispatcher on the current runtime. `outcomes`, when
    /// given, receives every outcome (the mismatch store, tests);
    /// `skip_counts` receives the skips per fingerprint.
    pub fn start(
        config: &Config,
        outcomes: Option<mpsc::Sender<Arc<Outcome>>>,
        skip_counts: SkipCounts,
    ) -> Result<Arc<Shadow>, ShadowError> {
        let s = &config.shadow;
        let password = match &s.password_env {
            Some(var) => {
                Some(std::env::var(var).map_err(|_| ShadowError::MissingPassword(var.clone()))?)
            }
            None => None,
        };
        let host = s
            .host
            .clone()
            .unwrap_or_else(|| config.upstream.host.clone());
        // The shadow's own connections reach the same managed database,
        // so they use the upstream's TLS unless [shadow] says otherwise.
        let tls = crate::tls::UpstreamTls::new(
            s.tls.unwrap_or(config.upstream.tls),
            s.tls_root_cert
                .as_deref()
                .or(config.upstream.tls_root_cert.as_deref()),
            &host,
            if s.tls.is_some() {
                "shadow"
            } else {
                "upstream"
            },
        )?;
        let pool = Pool::new(
            ConnParams {
                host,
                port: s.port.unwrap_or(config.upstream.port),
                user: s.user.clone(),
                password,
                database: String::new(),
                connect_timeout: config.upstream.connect_timeout(),
                tls,
            },
            s.max_in_flight,
            s.max_connections,
            Duration::from_millis(s.pool_idle_timeout_ms),
        );
        let executor = Arc::new(Executor::new(
            config,
            Arc::new(PlanCache::new(s.plan_cache_size, shadow_rules(config))),
            pool,
        ));
        let overrides: HashMap<Fingerprint, f64> = s
            .fingerprint_sample_rates
            .iter()
            .map(|(fingerprint, rate)| (*fingerprint, *rate))
            .collect();
        let (tx, rx) = mpsc::channel(s.queue_capacity);
        let shadow = Arc::new(Shadow {
            sampler: Sampler::new(
                true,
                s.sample_rate,
                overrides,
                s.first_executions,
                s.max_samples_per_second,
            ),
            queue: tx,
            queue_capacity: s.queue_capacity,
            queue_bytes: Default::default(),
            max_queue_bytes: s.max_queue_bytes,
            capture_limit: s.max_capture_bytes,
            counts: StatementCounts::new(),
            queue_depth: metrics::gauge!(QUEUE_DEPTH),
            skip_counts,
        });
        let batching = Batching {
            workers: s.max_in_flight,
            max_batch: s.max_batch,
            window: Duration::from_millis(s.batch_window_ms),
        };
        tokio::spawn(dispatch(rx, executor, batching, shadow.clone(), outcomes));
        Ok(shadow)
    }

    /// Skips per fingerprint, summed up by the sessions; the mismatch
    /// store's writer takes them for its coverage table.
    pub fn skip_counts(&self) -> &SkipCounts {
        &self.skip_counts
    }

    /// The sampling policy, adjustable at run time.
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Largest client message copied for capture.
    pub fn capture_limit(&self) -> usize {
        self.capture_limit
    }

    fn update_queue_depth(&self) {
        let depth = self.queue_capacity.saturating_sub(self.queue.capacity());
        self.queue_depth.set(depth as f64);
    }

    /// Counts `sample`'s bytes into the queue's, unless that would pass
    /// `shadow.max_queue_bytes`.
    fn reserve_queue_bytes(&self, sample: &Sample) -> bool {
        use std::sync::atomic::Ordering;
        let bytes = queued_bytes(sample);
        self.queue_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                queued
                    .checked_add(bytes)
                    .filter(|&total| total <= self.max_queue_bytes)
            })
            .is_ok()
    }

    fn release_queue_bytes(&self, bytes: usize) {
        use std::sync::atomic::Ordering;
        let _ = self
            .queue_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                Some(queued.saturating_sub(bytes))
            });
    }

    fn count_skip(&self, reason: SkipReason) {
        self.counts.skipped(reason);
    }

    /// Brings `pgshadow_queries_total` and `pgshadow_skipped_total` up to
    /// date; call before rendering the metrics.
    pub fn publish_counts(&self) {
        self.counts.publish();
    }

    /// The gate of a new session: its sampling decisions and hand-offs go
    /// here, and it draws from a random source of its own.
    pub fn session_gate(self: &Arc<Self>) -> SessionGate {
        SessionGate {
            shadow: self.clone(),
            rng: rand::make_rng(),
        }
    }
}

/// One session's way into the [`Shadow`].
pub struct SessionGate {
    shadow: Arc<Shadow>,
    /// The session's own random source for sampling: the thread-local
    /// generator costs a lookup and a reference count on every draw.
    rng: SmallRng,
}

impl SampleGate for SessionGate {
    fn decide(&mut self, fingerprint: Fingerprint, executions_here: u32) -> Result<(), SkipReason> {
        self.shadow
            .sampler
            .decide(fingerprint, executions_here, &mut self.rng)
    }

    fn first_executions(&self) -> u32 {
        self.shadow.sampler.first_executions()
    }

    fn skip(&self, reason: SkipReason) {
        self.shadow.counts.skipped(reason);
    }

    fn executed(&self) {
        self.shadow.counts.executed();
    }

    fn submit(&self, sample: Sample) -> Result<(), SkipReason> {
        let shadow = &self.shadow;
        let reason = match shadow.sampler.admit() {
            Err(reason) => reason,
            Ok(()) if !shadow.reserve_queue_bytes(&sample) => SkipReason::QueueFull,
            Ok(()) => {
                let bytes = queued_bytes(&sample);
                match shadow.queue.try_send(sample) {
                    Ok(()) => {
                        shadow.update_queue_depth();
                        return Ok(());
                    }
                    Err(e) => {
                        shadow.release_queue_bytes(bytes);
                        match e {
                            mpsc::error::TrySendError::Full(_) => SkipReason::QueueFull,
                            // The dispatcher is gone (shutdown): nothing to
                            // compare with.
                            mpsc::error::TrySendError::Closed(_) => SkipReason::Disabled,
                        }
                    }
                }
            }
        };
        self.skip(reason);
        Err(reason)
    }

    fn skipped_by_fingerprint(&self, batch: &mut SkipTally) {
        self.shadow.skip_counts.add(batch);
    }
}

/// How the dispatcher hands samples to workers.
#[derive(Debug, Clone, Copy)]
struct Batching {
    /// Workers at once (`shadow.max_in_flight`).
    workers: usize,
    /// Samples per batch at most (`shadow.max_batch`).
    max_batch: usize,
    /// How long a batch that is not full waits for more samples
    /// (`shadow.batch_window_ms`).
    window: Duration,
}

/// While a batch gathers, the dispatcher looks at the queue this often:
/// a batch goes as soon as it is full, so a window longer than this
/// never holds back a rate of samples the workers could keep up with.
const FILL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Takes samples off the queue in batches as workers free up.
///
/// Each sample used to wake the dispatcher, a worker, an idle database
/// backend and the proxy again for the reply; on a busy machine those
/// wake-ups, not the comparison, were most of what sampling cost the
/// application, and a database backend woken for a handful of samples
/// spends more on waking than on them. So while samples keep coming the
/// dispatcher sleeps (the relay's `try_send` wakes nobody while it sleeps),
/// looking at the queue every [`FILL_CHECK_INTERVAL`], until the batch is
/// full or `window` has passed, and a worker runs the batch on one
/// connection in one transaction. An empty window sends the dispatcher
/// back to waiting for the next sample.
async fn dispatch(
    mut rx: mpsc::Receiver<Sample>,
    executor: Arc<Executor>,
    batching: Batching,
    shadow: Arc<Shadow>,
    outcomes: Option<mpsc::Sender<Arc<Outcome>>>,
) {
    let workers = Arc::new(Semaphore::new(batching.workers));
    let batch_samples = metrics::histogram!(SHADOW_BATCH_SAMPLES);
    let mut flowing = false;
    loop {
        // Wait for a free worker before taking samples, so waiting samples
        // stay in the bounded queue (where overflow is counted).
        let Ok(permit) = workers.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        if !flowing {
            let Some(first) = rx.recv().await else {
                return;
            };
            batch.push(first);
        }
        take_waiting(&mut rx, &mut batch, batching.max_batch);
        let deadline = Instant::now() + batching.window;
        while batch.len() < batching.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(FILL_CHECK_INTERVAL)).await;
            take_waiting(&mut rx, &mut batch, batching.max_batch);
        }
        shadow.update_queue_depth();
        shadow.release_queue_bytes(batch.iter().map(queued_bytes).sum());
        flowing = !batch.is_empty();
        if batch.is_empty() {
            continue;
        }
        batch_samples.record(batch.len() as f64);
        let executor = executor.clone();
        let shadow = shadow.clone();
        let outcomes = outcomes.clone();
        tokio::spawn(async move {
            let mut handled = executor.handle_batch(&batch).await;
            let verdicts = executor.time_batch(&batch, &mut handled).await;
            drop(permit);
            for (sample, handled) in batch.iter().zip(handled) {
                shadow.deliver(sample, handled, outcomes.as_ref());
            }
            for verdict in verdicts {
                shadow.deliver_verdict(verdict, outcomes.as_ref());
            }
        });
    }
}

/// What a waiting sample holds, as `shadow.max_queue_bytes` counts it: its
/// text, parameters and a fixed share for the rest.
fn queued_bytes(sample: &Sample) -> usize {
    const OVERHEAD: usize = 256;
    sample.sql.len()
        + sample
            .params
            .iter()
            .map(|p| p.as_ref().map_or(0, |b| b.len()) + 32)
            .sum::<usize>()
        + 4 * sample.param_types.len()
        + OVERHEAD
}

/// Moves samples waiting in the queue into `batch`, up to `max` in all.
fn take_waiting(rx: &mut mpsc::Receiver<Sample>, batch: &mut Vec<Sample>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(sample) => batch.push(sample),
            Err(_) => return,
        }
    }
}

impl Shadow {
    /// Counts, logs and forwards what handling `sample` led to.
    fn deliver(
        &self,
        sample: &Sample,
        handled: Handled,
        outcomes: Option<&mpsc::Sender<Arc<Outcome>>>,
    ) {
        match handled {
            Handled::Skipped(reason) => {
                self.count_skip(reason);
                let mut one = SkipTally::from([((sample.fingerprint, reason), 1)]);
                self.skip_counts.add(&mut one);
            }
            Handled::Compared(outcome) => {
                record(&outcome);
                if let Some(tx) = outcomes {
                    // Never wait: a slow consumer loses outcomes (and
                    // counts them), the proxy does not slow down. A closed
                    // channel means the store writer has stopped at
                    // shutdown.
                    if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(Arc::from(outcome))
                    {
                        metrics::counter!(STORE_DROPPED_TOTAL).increment(1);
                    }
                }
            }
        }
    }
}

impl Shadow {
    /// Logs and forwards a `slower` verdict (not a comparison: not
    /// counted in `pgshadow_comparisons_total`).
    fn deliver_verdict(&self, verdict: Outcome, outcomes: Option<&mpsc::Sender<Arc<Outcome>>>) {
        verdict.log();
        if let Some(tx) = outcomes {
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(Arc::new(verdict)) {
                metrics::counter!(STORE_DROPPED_TOTAL).increment(1);
            }
        }
    }
}

/// Logs and counts one outcome.
fn record(outcome: &Outcome) {
    outcome.log();
    metrics::counter!(COMPARISONS_TOTAL, "result" => outcome.kind.label()).increment(1);
    if executor::compared_rows(outcome.kind) {
        metrics::counter!(COMPARISON_ORDERING_TOTAL, "ordering" => outcome.basis.label())
            .increment(1);
    }
    if !matches!(outcome.kind, OutcomeKind::ShadowError) {
        metrics::histogram!(SHADOW_DURATION_SECONDS, "side" => "old")
            .record(outcome.old_time.as_secs_f64());
        metrics::histogram!(SHADOW_DURATION_SECONDS, "side" => "new")
            .record(outcome.new_time.as_secs_f64());
    }
    if let Some(confirmed) = outcome.confirmed {
        metrics::counter!(RECHECKS_TOTAL, "confirmed" => if confirmed { "true" } else { "false" })
            .increment(1);
    }
}

fn lowercase_map(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| (k.to_lowercase(), v.to_lowercase()))
        .collect()
}

/// `tiebreak.columns`, folded to lower case like unquoted names.
fn configured_keys(config: &Config) -> BTreeMap<String, Vec<String>> {
    config
        .tiebreak
        .columns
        .iter()
        .map(|(relation, key)| {
            let columns = key.columns().iter().map(|c| c.to_lowercase()).collect();
            (relation.to_lowercase(), columns)
        })
        .collect()
}

fn deny_functions(config: &Config) -> Vec<String> {
    config
        .shadow
        .deny_functions
        .iter()
        .map(|f| f.to_lowercase())
        .collect()
}

/// The rewrite rules of the shadow's queries: keys (unless the tiebreaker
/// is switched off; the catalog's come on top), table map, deny list.
pub fn shadow_rules(config: &Config) -> RewriteRules {
    let t = &config.tiebreak;
    RewriteRules {
        default_id_column: if t.enabled {
            t.default_column.to_lowercase()
        } else {
            String::new()
        },
        id_columns: if t.enabled {
            configured_keys(config)
        } else {
            BTreeMap::new()
        },
        table_map: lowercase_map(&config.shadow.table_map),
        deny_functions: deny_functions(config),
    }
}

/// The rules of `tiebreak.apply_to_primary`: only relations listed in
/// `tiebreak.columns` get a tiebreaker on the application's own queries,
/// so a relation without the default id column can never make them fail.
pub fn primary_rules(config: &Config) -> RewriteRules {
    RewriteRules {
        default_id_column: String::new(),
        id_columns: configured_keys(config),
        table_map: BTreeMap::new(),
        deny_functions: deny_functions(config),
    }
}
