//! From a sample to an outcome: plan, run, classify, diff, recheck.

use super::conn::ConnError;
use super::outcome::{display_params, Outcome, OutcomeKind};
use super::pool::Pool;
use super::run::{run_batch, RunResult, RunSpec, SideResult, Snapshot};
use crate::capture::fingerprint::Fingerprint;
use crate::capture::skip::SkipReason;
use crate::capture::tracker::Sample;
use crate::config::{Config, SnapshotMode};
use crate::diff::{compare, CompareOptions, Ordering};
use crate::protocol::error_response::ErrorFields;
use crate::rewrite::{CachedPlan, Plan, PlanCache};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// SQLSTATE of `query_canceled`, which a statement timeout raises.
const QUERY_CANCELED: &str = "57014";
/// SQLSTATEs that, when both rewritten queries fail with them, point at the
/// rewrite (an appended tiebreaker the statement does not allow) rather
/// than at the schemas.
const REWRITE_SQLSTATES: [&str; 4] = ["42703", "42P10", "42803", "42601"];

/// Fingerprints remembered as "no tiebreaker"; beyond this the set starts
/// over (a forgotten one costs one failed attempt).
const MAX_WITHOUT_TIEBREAK: usize = 10_000;

/// Runs samples; shared by all workers.
pub struct Executor {
    plans: Arc<PlanCache>,
    /// The same rules without the tiebreaker: for statements where the
    /// appended id column does not exist (a view or relation without it).
    untied_plans: Arc<PlanCache>,
    /// Fingerprints whose tiebreaker failed: planned untied from then on.
    untied: Mutex<HashSet<Fingerprint>>,
    pool: Pool,
    old_search_path: String,
    new_search_path: String,
    statement_timeout: Duration,
    max_rows: usize,
    snapshot: Snapshot,
    recheck: bool,
    compare: CompareOptions,
    default_id: String,
}

/// What handling a sample led to.
#[derive(Debug)]
pub enum Handled {
    /// It was compared.
    Compared(Box<Outcome>),
    /// The full parse ruled it out.
    Skipped(SkipReason),
}

impl Executor {
    /// An executor for `config`, logging in with `pool`.
    pub fn new(
        config: &Config,
        plans: Arc<PlanCache>,
        untied_plans: Arc<PlanCache>,
        pool: Pool,
    ) -> Self {
        let c = &config.compare;
        Self {
            plans,
            untied_plans,
            untied: Mutex::new(HashSet::new()),
            pool,
            old_search_path: config.shadow.old_search_path.clone(),
            new_search_path: config.shadow.new_search_path.clone(),
            statement_timeout: Duration::from_millis(config.shadow.statement_timeout_ms),
            max_rows: c.max_rows,
            snapshot: match config.shadow.snapshot {
                SnapshotMode::Shared => Snapshot::Shared,
                SnapshotMode::Separate => Snapshot::Separate,
            },
            recheck: config.shadow.recheck_mismatches,
            compare: CompareOptions {
                ignore_columns: c.ignore_columns.clone(),
                float_tolerance: c.float_tolerance,
                numeric_scale: c.numeric_scale,
                strict_types: c.strict_types,
                id_column: None,
                max_reported: c.max_reported,
            },
            default_id: config.tiebreak.default_column.clone(),
        }
    }

    /// The cached plan, or one computed on a blocking thread: a parse
    /// takes ~50 µs, pathological texts much longer, and neither may stall
    /// the runtime's workers.
    async fn plan(&self, sql: &Arc<str>, untied: bool) -> CachedPlan {
        let cache = if untied {
            &self.untied_plans
        } else {
            &self.plans
        };
        if let Some(hit) = cache.cached(sql) {
            return hit;
        }
        let plans = cache.clone();
        let sql = sql.clone();
        match tokio::task::spawn_blocking(move || plans.plan(&sql)).await {
            Ok(plan) => plan,
            Err(_) => Arc::new(Err(SkipReason::Unparsable)),
        }
    }

    /// Handles `samples` to the end: one result each, in order. Their
    /// first runs share connections and transactions ([`run_batch`]); follow-ups
    /// (the new query alone after an old-side error, the recheck of a
    /// mismatch) run one by one.
    pub async fn handle_batch(&self, samples: &[Sample]) -> Vec<Handled> {
        let samples: Vec<&Sample> = samples.iter().collect();
        let untied: Vec<bool> = {
            let set = self.untied_set();
            samples
                .iter()
                .map(|s| set.contains(&s.fingerprint))
                .collect()
        };
        let mut handled = self.compare_all(&samples, &untied).await;
        // Both sides refused the appended id column: the relation has none
        // (typically a view). Compare without the tiebreaker, and remember
        // not to try again.
        let retry: Vec<usize> = handled
            .iter()
            .zip(&untied)
            .enumerate()
            .filter(|(_, (h, &untied))| {
                !untied && matches!(h, Handled::Compared(o) if o.kind == OutcomeKind::RewriteError)
            })
            .map(|(i, _)| i)
            .collect();
        if retry.is_empty() {
            return handled;
        }
        for &i in &retry {
            let (sample, Handled::Compared(o)) = (samples[i], &handled[i]) else {
                continue;
            };
            tracing::info!(
                fingerprint = %sample.fingerprint,
                error = o.old_error.as_ref().map(|e| e.message.as_str()).unwrap_or(""),
                "tiebreaker column not available for this statement; comparing tie-tolerantly"
            );
            let mut set = self.untied_set();
            if set.len() >= MAX_WITHOUT_TIEBREAK {
                set.clear();
            }
            set.insert(sample.fingerprint);
        }
        let again: Vec<&Sample> = retry.iter().map(|&i| samples[i]).collect();
        let redone = self.compare_all(&again, &vec![true; again.len()]).await;
        for (i, h) in retry.into_iter().zip(redone) {
            handled[i] = h;
        }
        handled
    }

    fn untied_set(&self) -> std::sync::MutexGuard<'_, HashSet<Fingerprint>> {
        self.untied.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Plans, runs, classifies and rechecks each sample (`untied[i]`:
    /// without the tiebreaker).
    async fn compare_all(&self, samples: &[&Sample], untied: &[bool]) -> Vec<Handled> {
        let mut plans = Vec::with_capacity(samples.len());
        for (sample, &untied) in samples.iter().zip(untied) {
            plans.push(self.plan(&sample.sql, untied).await);
        }
        let planned: Vec<Result<(&Plan, CompareOptions), SkipReason>> = plans
            .iter()
            .map(|p| match p.as_ref() {
                Ok(plan) => Ok((plan, self.options_for(plan))),
                Err(reason) => Err(*reason),
            })
            .collect();
        let runnable: Vec<(&Sample, &Plan, &CompareOptions)> = samples
            .iter()
            .zip(&planned)
            .filter_map(|(s, p)| p.as_ref().ok().map(|(plan, options)| (*s, *plan, options)))
            .collect();
        let mut firsts = self.first_runs(&runnable).await.into_iter();
        let mut handled = Vec::with_capacity(samples.len());
        for (sample, planned) in samples.iter().zip(&planned) {
            match planned {
                Err(reason) => handled.push(Handled::Skipped(*reason)),
                Ok((plan, options)) => {
                    let first = firsts.next().unwrap_or_else(|| Err(not_run()));
                    handled.push(self.finish(sample, plan, options, first).await);
                }
            }
        }
        handled
    }

    /// The first run of each of `items`: per database, as few connections
    /// and transactions as [`run_batch`] manages.
    async fn first_runs(
        &self,
        items: &[(&Sample, &Plan, &CompareOptions)],
    ) -> Vec<Result<RunResult, ConnError>> {
        let specs: Vec<(&Sample, RunSpec<'_>)> = items
            .iter()
            .map(|&(sample, plan, options)| {
                let old = (plan.old_sql.as_ref(), self.old_search_path.as_str());
                (sample, self.spec(old, &plan.new_sql, options))
            })
            .collect();
        let mut results: Vec<Option<Result<RunResult, ConnError>>> =
            specs.iter().map(|_| None).collect();
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
                let mut got = self.run_on_one_connection(database, &batch).await;
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
    ) -> Vec<Result<RunResult, ConnError>> {
        let mut conn = match self.pool.get(database).await {
            Ok(conn) => conn,
            Err(e) => return batch.iter().map(|_| Err(e.again())).collect(),
        };
        let limit = self.run_limit() * u32::try_from(batch.len()).unwrap_or(u32::MAX);
        match tokio::time::timeout(limit, run_batch(&mut conn, batch)).await {
            Ok(results) => {
                self.pool.put(database, conn);
                results
            }
            Err(_) => batch.iter().map(|_| Err(run_timeout(limit))).collect(),
        }
    }

    /// Classifies a sample's first run, runs the follow-ups it needs and
    /// returns the outcome.
    async fn finish(
        &self,
        sample: &Sample,
        plan: &Plan,
        options: &CompareOptions,
        first: Result<RunResult, ConnError>,
    ) -> Handled {
        let mut outcome = self.outcome_shell(sample, plan);
        let first = match first {
            Ok(r) => r,
            Err(e) => {
                outcome.kind = OutcomeKind::ShadowError;
                outcome.detail = Some(e.to_string());
                add_reproduction_details(&mut outcome, sample);
                return Handled::Compared(Box::new(outcome));
            }
        };
        self.classify(sample, plan, options, first, &mut outcome)
            .await;
        if outcome.kind != OutcomeKind::Match {
            add_reproduction_details(&mut outcome, sample);
        }
        if outcome.kind == OutcomeKind::Mismatch && self.recheck {
            let old = (plan.old_sql.as_ref(), self.old_search_path.as_str());
            outcome.confirmed = Some(
                match self.execute(sample, old, &plan.new_sql, options).await {
                    Ok(RunResult {
                        old: SideResult::Rows(old),
                        new: SideResult::Rows(new),
                        ..
                    }) => {
                        let again = compare(&old, &new, &plan.ordering, options);
                        again.is_some_and(|d| Some(d.kind) == outcome.diff.as_ref().map(|o| o.kind))
                    }
                    _ => false,
                },
            );
        }
        Handled::Compared(Box::new(outcome))
    }

    fn options_for(&self, plan: &Plan) -> CompareOptions {
        CompareOptions {
            id_column: plan
                .id_column
                .clone()
                .or_else(|| Some(self.default_id.clone())),
            ..self.compare.clone()
        }
    }

    /// How long one run may take: the statement timeout bounds each
    /// statement on the server; this bounds the whole run against a
    /// silent network.
    fn run_limit(&self) -> Duration {
        self.statement_timeout * 4 + Duration::from_secs(5)
    }

    fn spec<'a>(
        &'a self,
        (old_sql, old_search_path): (&'a str, &'a str),
        new_sql: &'a str,
        options: &'a CompareOptions,
    ) -> RunSpec<'a> {
        RunSpec {
            old_sql,
            new_sql,
            old_search_path,
            new_search_path: &self.new_search_path,
            statement_timeout: self.statement_timeout,
            max_rows: self.max_rows,
            compare: options,
            snapshot: self.snapshot,
        }
    }

    /// Only the new query, for telling `old_error` from `both_error` when
    /// the old query failed and took the shared transaction down: it runs
    /// first in a fresh transaction (as the "old" side, under the new
    /// search_path), with the sample's own parameters.
    async fn run_new_alone(
        &self,
        sample: &Sample,
        new_sql: &str,
        options: &CompareOptions,
    ) -> Option<SideResult> {
        let first = (new_sql, self.new_search_path.as_str());
        let r = self.execute(sample, first, new_sql, options).await.ok()?;
        Some(r.old)
    }

    /// Takes a connection, runs one pair of queries, and returns the
    /// connection (or closes it when it is out of step).
    async fn execute(
        &self,
        sample: &Sample,
        old: (&str, &str),
        new_sql: &str,
        options: &CompareOptions,
    ) -> Result<RunResult, ConnError> {
        let one = [(sample, self.spec(old, new_sql, options))];
        self.run_on_one_connection(&sample.database, &one)
            .await
            .pop()
            .unwrap_or_else(|| Err(not_run()))
    }

    async fn classify(
        &self,
        sample: &Sample,
        plan: &Plan,
        options: &CompareOptions,
        r: RunResult,
        out: &mut Outcome,
    ) {
        out.snapshot_xmin = r.snapshot_xmin;
        out.old_time = r.old_time;
        out.new_time = r.new_time;
        let new = match (&r.old, self.snapshot) {
            // In one transaction, the new query never ran after the old one
            // failed: run it alone to see whether it fails too.
            (SideResult::Error(_), Snapshot::Shared) => self
                .run_new_alone(sample, &plan.new_sql, options)
                .await
                .unwrap_or(r.new),
            _ => r.new,
        };
        match (r.old, new) {
            (SideResult::Rows(old), SideResult::Rows(new)) => {
                match compare(&old, &new, &plan.ordering, options) {
                    None => out.kind = OutcomeKind::Match,
                    Some(diff) => {
                        out.ordering = diff.ordering;
                        out.kind = OutcomeKind::Mismatch;
                        out.diff = Some(diff);
                    }
                }
            }
            (old, new) => {
                let old_error = error_of(old);
                let new_error = error_of(new);
                out.kind = error_kind(plan, old_error.as_ref(), new_error.as_ref());
                out.old_error = old_error;
                out.new_error = new_error;
            }
        }
    }

    fn outcome_shell(&self, sample: &Sample, plan: &Plan) -> Outcome {
        Outcome {
            fingerprint: sample.fingerprint,
            kind: OutcomeKind::Match,
            confirmed: None,
            database: sample.database.clone(),
            client_sql: sample.sql.clone(),
            old_sql: plan.old_sql.clone(),
            new_sql: plan.new_sql.clone(),
            params: Vec::new(),
            settings: Vec::new(),
            snapshot_xmin: None,
            old_time: Duration::ZERO,
            new_time: Duration::ZERO,
            diff: None,
            old_error: None,
            new_error: None,
            detail: None,
            ordering: ordering_label(&plan.ordering),
            tiebreak: plan.tiebreak.label(),
        }
    }
}

/// The parameters and session settings of a reported outcome. Only what is
/// reported needs them; a match is counted and forgotten.
fn add_reproduction_details(outcome: &mut Outcome, sample: &Sample) {
    outcome.params = display_params(&sample.param_formats, &sample.params);
    outcome.settings = sample
        .settings
        .pairs()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
}

/// The error of a sample the connection's batch never got to; the runs
/// guarantee progress, so this only guards against a miscount.
fn not_run() -> ConnError {
    ConnError::Protocol("sample not run".into())
}

fn run_timeout(limit: Duration) -> ConnError {
    ConnError::Timeout {
        address: "shadow run".into(),
        timeout: limit,
    }
}

fn error_of(side: SideResult) -> Option<ErrorFields> {
    match side {
        SideResult::Error(e) => Some(e),
        SideResult::Rows(_) => None,
    }
}

/// Errors are kept apart from mismatches: a timeout is not a difference,
/// and a rewrite the statement does not allow is pgshadow's problem.
fn error_kind(plan: &Plan, old: Option<&ErrorFields>, new: Option<&ErrorFields>) -> OutcomeKind {
    let timed_out = |e: Option<&ErrorFields>| e.is_some_and(|e| e.code == QUERY_CANCELED);
    if timed_out(old) || timed_out(new) {
        return OutcomeKind::Timeout;
    }
    match (old, new) {
        (Some(o), Some(n)) => {
            if plan.rewritten && o.code == n.code && REWRITE_SQLSTATES.contains(&o.code.as_str()) {
                OutcomeKind::RewriteError
            } else {
                OutcomeKind::BothError
            }
        }
        (Some(_), None) => OutcomeKind::OldError,
        (None, Some(_)) => OutcomeKind::NewError,
        (None, None) => OutcomeKind::Match,
    }
}

fn ordering_label(ordering: &Ordering) -> &'static str {
    match ordering {
        Ordering::Unordered => "unordered",
        Ordering::Ordered { total: true, .. } => "total",
        Ordering::Ordered { total: false, .. } => "tie_runs",
    }
}
