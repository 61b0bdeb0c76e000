//! From a sample to an outcome: plan (with the relations' keys), run,
//! judge, recheck.
//!
//! A batch is planned first: each statement's plan is cached per text and
//! key set ([`PlanCache`]), and the keys of the relations it reads come
//! from the catalog ([`KeyCatalog`]), looked up on a shadow connection
//! before the statement is first planned with them (one round trip per
//! batch and database, only for relations not looked up recently). Then
//! the first runs share connections and transactions ([`run_batch`]), and
//! each result is judged ([`super::verdict`]). A statement that failed on a
//! missing column, or whose relation changed under its prepared statement,
//! has its keys looked up again, and is compared once more if they changed.

use super::conn::{ConnError, ShadowConn};
use super::functions::FunctionCatalog;
use super::give_way::GiveWay;
use super::keys::KeyCatalog;
use super::latency::{LatencyBook, SlowerRule};
use super::pool::Pool;
use super::run::{run_batch, Limits, RunResult, RunSpec, Snapshot};
use super::verdict::Judged;
use crate::capture::fingerprint::Fingerprint;
use crate::capture::skip::SkipReason;
use crate::capture::tracker::Sample;
use crate::config::{Config, SnapshotMode};
use crate::diff::CompareOptions;
use crate::outcome::OutcomeKind;
use crate::rewrite::{CachedPlan, CachedRelations, Plan, PlanCache};
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

    /// Handles `samples` to the end: one result each, in order. Their
    /// first runs share connections and transactions ([`run_batch`]);
    /// follow-ups (the new query alone after an old-side error, the
    /// recheck of a mismatch, a comparison with changed keys) run one by
    /// one.
    pub async fn handle_batch(&self, samples: &[Sample]) -> Vec<Handled> {
        if self.refused.load(std::sync::atomic::Ordering::Relaxed) {
            return samples
                .iter()
                .map(|_| Handled::Skipped(SkipReason::Disabled))
                .collect();
        }
        let samples: Vec<&Sample> = samples.iter().collect();
        let plans = self.plan_all(&samples, None).await;
        self.look_up_functions(&samples, &plans).await;
        let judged = self.compare_all(&samples, &plans).await;
        // A relation changed or lacks a column the plan appended: look its
        // keys up again, and compare again where they changed.
        let suspects: Vec<usize> = judged
            .iter()
            .enumerate()
            .filter(|(_, j)| j.keys_suspect)
            .map(|(i, _)| i)
            .collect();
        let mut handled: Vec<Handled> = judged.into_iter().map(|j| j.handled).collect();
        if suspects.is_empty() || !self.catalog {
            return handled;
        }
        let again: Vec<&Sample> = suspects.iter().map(|&i| samples[i]).collect();
        let replans = self.plan_all(&again, Some(Duration::ZERO)).await;
        let changed: Vec<(usize, CachedPlan)> = suspects
            .iter()
            .zip(replans)
            .filter(|(&i, new)| keys_differ(&plans[i], new))
            .map(|(&i, new)| (i, new))
            .collect();
        if changed.is_empty() {
            return handled;
        }
        let redo: Vec<&Sample> = changed.iter().map(|(i, _)| samples[*i]).collect();
        let redo_plans: Vec<CachedPlan> = changed.iter().map(|(_, p)| p.clone()).collect();
        for sample in &redo {
            tracing::info!(
                fingerprint = %sample.fingerprint,
                "relation keys changed in the catalog; comparing the statement again with the new keys"
            );
        }
        let redone = self.compare_all(&redo, &redo_plans).await;
        for ((i, _), judged) in changed.into_iter().zip(redone) {
            handled[i] = judged.handled;
        }
        handled
    }

    /// Plans each sample with its relations' current keys. Relations whose
    /// keys were looked up longer ago than `refresh` (default
    /// `tiebreak.key_cache_seconds`) are looked up first.
    pub(super) async fn plan_all(
        &self,
        samples: &[&Sample],
        refresh: Option<Duration>,
    ) -> Vec<CachedPlan> {
        // The relations each statement reads: cached per text, or found by
        // planning it once with what is known now.
        let mut relations: Vec<CachedRelations> = Vec::with_capacity(samples.len());
        for sample in samples {
            let known = match self.plans.relations(&sample.sql) {
                Some(known) => known,
                None => match &*self.plan_blocking(sample).await {
                    Ok(plan) => Ok(plan.relations.clone()),
                    Err(reason) => Err(*reason),
                },
            };
            relations.push(known);
        }
        if self.catalog {
            self.look_up_stale(samples, &relations, refresh).await;
        }
        let mut plans = Vec::with_capacity(samples.len());
        for (sample, relations) in samples.iter().zip(&relations) {
            let choices: Vec<_> = match relations {
                Ok(names) => names
                    .iter()
                    .map(|parts| self.keys.choose(&sample.database, parts))
                    .collect(),
                Err(_) => Vec::new(),
            };
            let plan = match self.plans.cached(&sample.sql, &choices) {
                Some(hit) => hit,
                None => self.plan_blocking(sample).await,
            };
            plans.push(plan);
        }
        plans
    }

    /// Looks up, per database, the relations of `samples` whose keys are
    /// due (see [`KeyCatalog::stale`]).
    async fn look_up_stale(
        &self,
        samples: &[&Sample],
        relations: &[CachedRelations],
        refresh: Option<Duration>,
    ) {
        for database in databases_of(samples) {
            let names = samples
                .iter()
                .zip(relations)
                .filter(|(s, _)| s.database.as_ref() == database)
                .filter_map(|(_, r)| r.as_ref().ok())
                .flat_map(|names| names.iter());
            let due = self.keys.stale(database, names, refresh);
            if due.is_empty() {
                continue;
            }
            if let Err(error) = self.look_up_in(&*self.keys, database, &due).await {
                tracing::warn!(
                    database,
                    relations = due.len(),
                    %error,
                    "cannot look up relation keys in the catalog; using configured keys only for now"
                );
            }
        }
    }

    /// Plans `sample` with its relations' current keys on a blocking
    /// thread: a parse takes ~50 µs, pathological texts much longer, and
    /// neither may stall the runtime's workers.
    async fn plan_blocking(&self, sample: &Sample) -> CachedPlan {
        let plans = self.plans.clone();
        let keys = self.keys.clone();
        let (sql, database) = (sample.sql.clone(), sample.database.clone());
        let planned = tokio::task::spawn_blocking(move || {
            plans.plan_with_keys(&sql, &mut |parts| keys.choose(&database, parts))
        })
        .await;
        planned.unwrap_or_else(|_| Arc::new(Err(SkipReason::Unparsable)))
    }

    /// Runs and judges each planned sample.
    async fn compare_all(&self, samples: &[&Sample], plans: &[CachedPlan]) -> Vec<Judged> {
        let planned: Vec<Result<(&Plan, CompareOptions, bool), SkipReason>> = plans
            .iter()
            .zip(samples)
            .map(|(p, sample)| match p.as_ref() {
                Ok(plan)
                    if self
                        .functions
                        .calls_volatile(&sample.database, &plan.functions) =>
                {
                    Err(SkipReason::VolatileFunction)
                }
                Ok(plan) => Ok((plan, self.options_for(plan), self.draw_baseline())),
                Err(reason) => Err(*reason),
            })
            .collect();
        let runnable: Vec<(&Sample, &Plan, &CompareOptions, bool)> = samples
            .iter()
            .zip(&planned)
            .filter_map(|(s, p)| {
                p.as_ref()
                    .ok()
                    .map(|(plan, options, baseline)| (*s, *plan, options, *baseline))
            })
            .collect();
        let mut firsts = self.first_runs(&runnable).await.into_iter();
        let mut judged = Vec::with_capacity(samples.len());
        for (sample, planned) in samples.iter().zip(&planned) {
            match planned {
                Err(reason) => judged.push(Judged::skipped(*reason)),
                Ok((plan, options, _)) => {
                    let first = firsts.next().unwrap_or_else(|| Err(not_run()));
                    judged.push(self.finish(sample, plan, options, first).await);
                }
            }
        }
        judged
    }

    /// Whether this sample's first run also runs the A/A baseline.
    fn draw_baseline(&self) -> bool {
        self.baseline_rate > 0.0 && rand::random_bool(self.baseline_rate.min(1.0))
    }

    /// The first run of each of `items`: per database, as few connections
    /// and transactions as [`run_batch`] manages.
    async fn first_runs(
        &self,
        items: &[(&Sample, &Plan, &CompareOptions, bool)],
    ) -> Vec<Result<RunResult, ConnError>> {
        let specs: Vec<(&Sample, RunSpec<'_>)> = items
            .iter()
            .map(|&(sample, plan, options, baseline)| {
                let spec = RunSpec {
                    // Which side runs first alternates per sample, so that
                    // caching and order effects cancel in the timings.
                    new_first: self.latency.new_first(sample.fingerprint),
                    ..self.spec(plan, options, baseline)
                };
                (sample, spec)
            })
            .collect();
        let mut results: Vec<Option<Result<RunResult, ConnError>>> =
            specs.iter().map(|_| None).collect();
        // One budget for the whole batch, over all its databases.
        let limits = self.limits();
        let mut databases: Vec<&str> = Vec::new();
        for (sample, _) in &specs {
            if !databases.contains(&sample.database.as_ref()) {
                databases.push(&sample.database);
            }
        }
        for database in databases {
            let group: Vec<usize> = (0..specs.len())
                .filter(|&i| specs[i].0.database.as_ref() == database)
                .collect();
            let mut done = 0;
            while let Some(rest) = group.get(done..).filter(|rest| !rest.is_empty()) {
                let batch: Vec<(&Sample, RunSpec<'_>)> =
                    rest.iter().map(|&i| specs[i].clone()).collect();
                let mut got = self.run_on_one_connection(database, &batch, &limits).await;
                if got.is_empty() {
                    got.push(Err(not_run()));
                }
                for r in got {
                    if let Some(slot) = group.get(done).and_then(|&i| results.get_mut(i)) {
                        *slot = Some(r);
                    }
                    done += 1;
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(not_run())))
            .collect()
    }

    /// Takes a connection and runs as much of `batch` on it as it allows;
    /// returns the connection to the pool unless it is out of step.
    async fn run_on_one_connection(
        &self,
        database: &str,
        batch: &[(&Sample, RunSpec<'_>)],
        limits: &Limits<'_>,
    ) -> Vec<Result<RunResult, ConnError>> {
        let mut conn = match self.pool.get(database).await {
            Ok(conn) => conn,
            Err(e) => {
                self.note_refusal(&e);
                return batch.iter().map(|_| Err(e.again())).collect();
            }
        };
        let limit = self.run_limit() * u32::try_from(batch.len()).unwrap_or(u32::MAX);
        match tokio::time::timeout(limit, run_batch(&mut conn, batch, limits)).await {
            Ok(results) => {
                self.pool.put(database, conn);
                results
            }
            Err(_) => batch.iter().map(|_| Err(run_timeout(limit))).collect(),
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

    /// Looks `due` up in `catalog` on a pooled connection of `database`,
    /// within [`Self::run_limit`]; a connection that ran out of time is
    /// closed, and a refused login is noted as for a run.
    pub(super) async fn look_up_in<C: Catalog>(
        &self,
        catalog: &C,
        database: &str,
        due: &[C::Name],
    ) -> Result<(), String> {
        let mut conn = self.pool.get(database).await.map_err(|e| {
            self.note_refusal(&e);
            e.to_string()
        })?;
        let lookup = catalog.look_up_names(&mut conn, database, due);
        let result = match tokio::time::timeout(self.run_limit(), lookup).await {
            Ok(result) => result,
            Err(_) => {
                conn.poisoned = true;
                Err(format!("timed out after {:?}", self.run_limit()))
            }
        };
        self.pool.put(database, conn);
        result
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
    ) -> RunSpec<'a> {
        RunSpec {
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

    /// Takes a connection, runs one sample's `spec`, and returns the
    /// connection (or closes it when it is out of step).
    pub(super) async fn execute(
        &self,
        sample: &Sample,
        spec: RunSpec<'_>,
    ) -> Result<RunResult, ConnError> {
        let one = [(sample, spec)];
        self.run_on_one_connection(&sample.database, &one, &self.limits())
            .await
            .pop()
            .unwrap_or_else(|| Err(not_run()))
    }

    /// Only the new query, for telling `old_error` from `both_error` when
    /// the old query failed and took the shared transaction down: it runs
    /// first in a fresh transaction (as the "old" side, under the new
    /// search_path), with the sample's own parameters.
    pub(super) async fn run_new_alone(
        &self,
        sample: &Sample,
        plan: &Plan,
        options: &CompareOptions,
    ) -> Option<super::run::SideResult> {
        let spec = RunSpec {
            old_sql: &plan.new_sql,
            old_search_path: &self.new_search_path,
            ..self.spec(plan, options, false)
        };
        let r = self.execute(sample, spec).await.ok()?;
        Some(r.old)
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

impl Executor {
    /// Only the old query, in a fresh transaction, with the sample's own
    /// parameters: for when the new query ran first, failed, and took the
    /// shared transaction down before the old one ran.
    pub(super) async fn run_old_alone(
        &self,
        sample: &Sample,
        plan: &Plan,
        options: &CompareOptions,
    ) -> Option<super::run::SideResult> {
        let r = self
            .execute(sample, self.spec(plan, options, false))
            .await
            .ok()?;
        Some(r.old)
    }
}

/// Whether a new plan was made with other keys than the old one.
fn keys_differ(old: &CachedPlan, new: &CachedPlan) -> bool {
    match (old.as_ref(), new.as_ref()) {
        (Ok(old), Ok(new)) => old.key_choices != new.key_choices || old.old_sql != new.old_sql,
        _ => false,
    }
}

/// The error of a sample the connection's batch never got to; the runs
/// guarantee progress, so this only guards against a miscount.
pub(super) fn not_run() -> ConnError {
    ConnError::Protocol("sample not run".into())
}

fn run_timeout(limit: Duration) -> ConnError {
    ConnError::Timeout {
        address: "shadow run".into(),
        timeout: limit,
    }
}

/// Whether `kind` compared rows (and so was ordered one way or another).
pub(super) fn compared_rows(kind: OutcomeKind) -> bool {
    matches!(
        kind,
        OutcomeKind::Match | OutcomeKind::Mismatch | OutcomeKind::Noisy
    )
}

/// The databases of `samples`, each once, in the order they first appear.
pub(super) fn databases_of<'s>(samples: &[&'s Sample]) -> Vec<&'s str> {
    let mut databases: Vec<&str> = Vec::new();
    for sample in samples {
        if !databases.contains(&sample.database.as_ref()) {
            databases.push(&sample.database);
        }
    }
    databases
}

/// A catalog the shadow looks names up in, per database, on one of its
/// own connections ([`KeyCatalog`], [`FunctionCatalog`]).
pub(super) trait Catalog: Sync {
    /// What is looked up: a relation's name parts, a function's name.
    type Name: Sync;

    /// Looks `names` up on `conn` and remembers what it found.
    fn look_up_names(
        &self,
        conn: &mut ShadowConn,
        database: &str,
        names: &[Self::Name],
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

impl Catalog for KeyCatalog {
    type Name = Vec<String>;

    async fn look_up_names(
        &self,
        conn: &mut ShadowConn,
        database: &str,
        names: &[Vec<String>],
    ) -> Result<(), String> {
        self.look_up(conn, database, names)
            .await
            .map_err(|e| e.to_string())
    }
}

impl Catalog for FunctionCatalog {
    type Name = String;

    async fn look_up_names(
        &self,
        conn: &mut ShadowConn,
        database: &str,
        names: &[String],
    ) -> Result<(), String> {
        self.look_up(conn, database, names)
            .await
            .map_err(|e| e.to_string())
    }
}
