//! Handling a batch: one [`Job`] per sample, moved through the stages:
//!
//! 1. planned ([`super::planning`]): the relations' keys and the called
//!    functions' volatility looked up in the catalog, then the cached plan;
//! 2. ruled out (unplannable, a volatile function) or made ready for its
//!    first run: comparison options, A/A baseline drawn, side order;
//! 3. first run: per database, as few pooled connections and shared
//!    transactions as [`super::execute::execute_batch`] manages
//!    ([`super::pooled`]);
//! 4. judged ([`super::verdict`]), with the follow-ups a judgement needs;
//! 5. a job whose keys are suspect is planned again with fresh keys and,
//!    where they changed, run and judged once more.

use super::executor::{not_run, Executor, Handled};
use super::job::{FirstRun, Job, Judged};
use super::transaction::SampleSpec;
use crate::capture::skip::SkipReason;
use crate::capture::tracker::Sample;
use crate::rewrite::CachedPlan;
use std::time::Duration;

impl Executor {
    /// Handles `samples` to the end: one result each, in order. Their
    /// first runs share connections and transactions
    /// ([`super::execute::execute_batch`]); follow-ups (the new query alone
    /// after an old-side error, the recheck of a mismatch, a comparison
    /// with changed keys) run one by one.
    pub async fn handle_batch(&self, samples: &[Sample]) -> Vec<Handled> {
        if self.refused.load(std::sync::atomic::Ordering::Relaxed) {
            return samples
                .iter()
                .map(|_| Handled::Skipped(SkipReason::Disabled))
                .collect();
        }
        let sampled: Vec<&Sample> = samples.iter().collect();
        let plans = self.plan_all(&sampled, None).await;
        let mut jobs: Vec<Job<'_>> = sampled
            .into_iter()
            .zip(plans)
            .map(|(s, p)| Job::new(s, p))
            .collect();
        self.look_up_functions(&jobs).await;
        let mut all: Vec<&mut Job<'_>> = jobs.iter_mut().collect();
        self.compare_all(&mut all).await;
        // A relation changed or lacks a column the plan appended: look its
        // keys up again, and compare again where they changed.
        let suspects: Vec<&mut Job<'_>> = jobs.iter_mut().filter(|j| j.keys_suspect()).collect();
        if !suspects.is_empty() && self.catalog {
            let again: Vec<&Sample> = suspects.iter().map(|j| j.sample).collect();
            let replans = self.plan_all(&again, Some(Duration::ZERO)).await;
            let mut changed: Vec<&mut Job<'_>> = Vec::new();
            for (job, new) in suspects.into_iter().zip(replans) {
                if keys_differ(&job.plan, &new) {
                    job.plan = new;
                    changed.push(job);
                }
            }
            for job in &changed {
                tracing::info!(
                    fingerprint = %job.sample.fingerprint,
                    "relation keys changed in the catalog; comparing the statement again with the new keys"
                );
            }
            self.compare_all(&mut changed).await;
        }
        jobs.into_iter().map(Job::handled).collect()
    }

    /// Rules out or readies each of `jobs`, runs the ready ones' first runs
    /// together, and judges each, in order.
    async fn compare_all(&self, jobs: &mut [&mut Job<'_>]) {
        for job in jobs.iter_mut() {
            job.first = None;
            job.judged = None;
            let ruled_out = match job.plan.as_ref() {
                Ok(plan)
                    if self
                        .functions
                        .calls_volatile(&job.sample.database, &plan.functions) =>
                {
                    Some(SkipReason::VolatileFunction)
                }
                Ok(plan) => {
                    job.first = Some(FirstRun {
                        options: self.options_for(plan),
                        baseline: self.draw_baseline(),
                        // Which side runs first alternates per sample, so
                        // that caching and order effects cancel in the
                        // timings.
                        new_first: self.latency.new_first(job.sample.fingerprint),
                    });
                    None
                }
                Err(reason) => Some(*reason),
            };
            if let Some(reason) = ruled_out {
                job.judged = Some(Judged::skipped(reason));
            }
        }
        self.first_runs(jobs).await;
        for job in jobs.iter_mut() {
            let ran = job.ran.take();
            let (Some(plan), Some(first)) = (job.runnable_plan(), job.first.as_ref()) else {
                continue;
            };
            let ran = ran.unwrap_or_else(|| Err(not_run()));
            let judged = self.finish(job.sample, plan, &first.options, ran).await;
            job.judged = Some(judged);
        }
    }

    /// Whether this sample's first run also runs the A/A baseline.
    fn draw_baseline(&self) -> bool {
        self.baseline_rate > 0.0 && rand::random_bool(self.baseline_rate.min(1.0))
    }

    /// The first run of each ready job: per database, as few connections
    /// and transactions as [`super::execute::execute_batch`] manages.
    async fn first_runs(&self, jobs: &mut [&mut Job<'_>]) {
        // One budget for the whole batch, over all its databases.
        let limits = self.limits();
        let mut databases: Vec<&str> = Vec::new();
        for job in jobs.iter().filter(|j| j.first.is_some()) {
            if !databases.contains(&job.sample.database.as_ref()) {
                databases.push(&job.sample.database);
            }
        }
        for database in databases {
            let mut group: Vec<&mut Job<'_>> = jobs
                .iter_mut()
                .filter(|j| j.first.is_some() && j.sample.database.as_ref() == database)
                .map(|j| &mut **j)
                .collect();
            let mut done = 0;
            while let Some(rest) = group.get(done..).filter(|rest| !rest.is_empty()) {
                let batch: Vec<(&Sample, SampleSpec<'_>)> =
                    rest.iter().filter_map(|job| self.first_spec(job)).collect();
                let mut got = self
                    .execute_on_a_pooled_connection(database, &batch, &limits)
                    .await;
                // The specs borrow the jobs, whose results go in next.
                drop(batch);
                if got.is_empty() {
                    got.push(Err(not_run()));
                }
                for r in got {
                    if let Some(job) = group.get_mut(done) {
                        job.ran = Some(r);
                    }
                    done += 1;
                }
            }
        }
    }

    /// A ready job's sample and the spec of its first run.
    fn first_spec<'a>(&'a self, job: &'a Job<'_>) -> Option<(&'a Sample, SampleSpec<'a>)> {
        let (plan, first) = (job.runnable_plan()?, job.first.as_ref()?);
        let spec = SampleSpec {
            new_first: first.new_first,
            ..self.spec(plan, &first.options, first.baseline)
        };
        Some((job.sample, spec))
    }
}

/// Whether a new plan was made with other keys than the old one.
fn keys_differ(old: &CachedPlan, new: &CachedPlan) -> bool {
    match (old.as_ref(), new.as_ref()) {
        (Ok(old), Ok(new)) => old.key_choices != new.key_choices || old.old_sql != new.old_sql,
        _ => false,
    }
}
