//! The executor: what the shadow runs samples with (the plan cache, the
//! catalogs, the pool, the give-way watcher, the latency book) and the
//! settings every run takes from `[shadow]` and `[compare]`.
//!
//! A batch goes from sample to outcome as one [`super::job::Job`] per
//! sample: planned with the relations' keys from the catalog
//! ([`super::planning`]), run first together on pooled connections and
//! shared transactions ([`super::pooled`], [`super::execute`]), judged
//! with its follow-ups ([`super::verdict`]), and compared once more where
//! a relation's keys changed under it. Each of those files adds the
//! executor's methods for its stage; this one only depends on what they
//! all need.

use super::conn::ConnError;
use super::functions::FunctionCatalog;
use super::give_way::GiveWay;
use super::keys::KeyCatalog;
use super::latency::{LatencyBook, SlowerRule};
use super::limits::Limits;
use super::pool::Pool;
use super::transaction::{SampleSpec, Snapshot};
use crate::capture::fingerprint::Fingerprint;
use crate::capture::skip::SkipReason;
use crate::config::{Config, SnapshotMode};
use crate::diff::CompareOptions;
use crate::outcome::OutcomeKind;
use crate::rewrite::{Plan, PlanCache};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs samples; shared by all workers.
pub struct Executor {
    pub(super) plans: Arc<PlanCache>,
    /// Relation keys from the catalog.
    pub(super) keys: Arc<KeyCatalog>,
    /// Which user-defined functions are volatile.
    pub(super) functions: FunctionCatalog,
    /// Whether keys are looked up at all (`tiebreak.enabled`).
    pub(super) catalog: bool,
    /// Fingerprints whose A/A runs differed: their differences are noisy.
    pub(super) noisy: Mutex<HashSet<Fingerprint>>,
    pub(super) pool: Arc<Pool>,
    /// Cancels shadow transactions that block other backends.
    pub(super) give_way: Arc<GiveWay>,
    /// Set once a shadow connection turned out to log in as a superuser:
    /// the shadow then runs nothing until restarted.
    pub(super) refused: std::sync::atomic::AtomicBool,
    pub(super) old_search_path: String,
    pub(super) new_search_path: String,
    pub(super) statement_timeout: Duration,
    pub(super) lock_timeout: Duration,
    /// `shadow.max_transaction_ms`.
    pub(super) transaction_budget: Duration,
    /// `shadow.max_result_bytes`.
    pub(super) max_result_bytes: usize,
    /// `shadow.max_batch_result_bytes`.
    pub(super) max_batch_result_bytes: usize,
    pub(super) max_rows: usize,
    pub(super) snapshot: Snapshot,
    pub(super) recheck: bool,
    pub(super) compare: CompareOptions,
    pub(super) default_id: String,
    /// Share of first runs that also run the A/A baseline.
    pub(super) baseline_rate: f64,
    /// Old and new times per fingerprint, and the `slower` verdicts.
    pub(super) latency: LatencyBook,
}

/// What handling a sample led to.
#[derive(Debug)]
pub enum Handled {
    /// It was compared.
    Compared(Box<crate::outcome::Outcome>),
    /// The full parse ruled it out.
    Skipped(SkipReason),
}

impl Executor {
    /// An executor for `config`, planning with `plans` and logging in with
    /// `pool`.
    pub fn new(config: &Config, plans: Arc<PlanCache>, pool: Arc<Pool>) -> Self {
        let c = &config.compare;
        let s = &config.shadow;
        let statement_timeout = Duration::from_millis(s.statement_timeout_ms);
        let keys = KeyCatalog::new(
            plans.rules().clone(),
            (&s.old_search_path, &s.new_search_path),
            statement_timeout,
            Duration::from_secs(config.tiebreak.key_cache_seconds),
        );
        let snapshot = match s.snapshot {
            SnapshotMode::Shared => Snapshot::Shared,
            SnapshotMode::Separate => Snapshot::Separate,
        };
        Self {
            plans,
            keys: Arc::new(keys),
            functions: FunctionCatalog::new(
                &s.allow_functions,
                Duration::from_secs(config.tiebreak.key_cache_seconds),
            ),
            catalog: config.tiebreak.enabled,
            noisy: Mutex::new(HashSet::new()),
            give_way: GiveWay::new(pool.clone(), Duration::from_millis(s.give_way_check_ms)),
            pool,
            refused: Default::default(),
            old_search_path: s.old_search_path.clone(),
            new_search_path: s.new_search_path.clone(),
            statement_timeout,
            lock_timeout: Duration::from_millis(s.lock_timeout_ms),
            transaction_budget: Duration::from_millis(s.max_transaction_ms),
            max_result_bytes: s.max_result_bytes,
            max_batch_result_bytes: s.max_batch_result_bytes,
            max_rows: c.max_rows,
            snapshot,
            recheck: s.recheck_mismatches,
            compare: config.compare_options(),
            default_id: config.tiebreak.default_column.clone(),
            baseline_rate: if snapshot == Snapshot::Shared {
                s.baseline_rate
            } else {
                0.0
            },
            latency: latency_book(config, statement_timeout),
        }
    }

    /// The comparison options of `plan`: rows are named by its key columns
    /// (else by the default column, when the output has it).
    pub(super) fn options_for(&self, plan: &Plan) -> CompareOptions {
        let (id_columns, id_unique) = if plan.id_columns.is_empty() {
            (vec![self.default_id.clone()], false)
        } else {
            (plan.id_columns.clone(), plan.id_unique)
        };
        CompareOptions {
            id_columns,
            id_unique,
            ..self.compare.clone()
        }
    }

    /// A fresh transaction budget and batch byte bound, with the give-way
    /// watcher.
    pub(super) fn limits(&self) -> Limits<'_> {
        Limits {
            give_way: Some(&self.give_way),
            result_bytes: self.max_batch_result_bytes.into(),
            ..Limits::budget(self.transaction_budget)
        }
    }

    /// A superuser login switches the shadow off, loudly, once.
    pub(super) fn note_refusal(&self, e: &ConnError) {
        if matches!(e, ConnError::Superuser { .. })
            && !self
                .refused
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::error!(error = %e, "shadow switched off until restart");
        }
    }

    /// How long one run may take: the statement timeout bounds each
    /// statement on the server; this bounds the whole run against a
    /// silent network.
    pub(super) fn run_limit(&self) -> Duration {
        self.statement_timeout * 4 + Duration::from_secs(5)
    }

    /// The run of `plan`'s old and new query (and, for an A/A `baseline`,
    /// the old one again).
    pub(super) fn spec<'a>(
        &'a self,
        plan: &'a Plan,
        options: &'a CompareOptions,
        baseline: bool,
    ) -> SampleSpec<'a> {
        SampleSpec {
            old_sql: &plan.old_sql,
            new_sql: &plan.new_sql,
            old_search_path: &self.old_search_path,
            new_search_path: &self.new_search_path,
            statement_timeout: self.statement_timeout,
            lock_timeout: self.lock_timeout,
            max_rows: self.max_rows,
            max_bytes: self.max_result_bytes,
            compare: options,
            snapshot: self.snapshot,
            baseline: baseline && self.snapshot == Snapshot::Shared,
            new_first: false,
        }
    }
}

/// The latency book of `[compare]`'s `slower_*` keys.
fn latency_book(config: &Config, statement_timeout: Duration) -> LatencyBook {
    let c = &config.compare;
    metrics::gauge!(crate::observability::metrics::SLOWER_STATEMENTS).set(0.0);
    LatencyBook::new(
        SlowerRule {
            factor: c.slower_factor,
            min_samples: c.slower_min_samples,
            min_difference: Duration::try_from_secs_f64(c.slower_min_ms / 1e3).unwrap_or_default(),
        },
        statement_timeout,
    )
}

/// The error of a sample the connection's batch never got to; the runs
/// guarantee progress, so this only guards against a miscount.
pub(super) fn not_run() -> ConnError {
    ConnError::Protocol("sample not run".into())
}

/// Whether `kind` compared rows (and so was ordered one way or another).
pub(super) fn compared_rows(kind: OutcomeKind) -> bool {
    matches!(
        kind,
        OutcomeKind::Match | OutcomeKind::Mismatch | OutcomeKind::Noisy
    )
}
