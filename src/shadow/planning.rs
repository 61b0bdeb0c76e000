//! From a sample to its plan: the relations' keys ([`KeyCatalog`]) and the
//! called functions' volatility ([`FunctionCatalog`]) looked up in the
//! catalog where due, on a pooled shadow connection, then the statement
//! planned with them ([`crate::rewrite::PlanCache`]).

use super::conn::ShadowConn;
use super::executor::Executor;
use super::functions::FunctionCatalog;
use super::job::Job;
use super::keys::KeyCatalog;
use crate::capture::skip::SkipReason;
use crate::capture::tracker::Sample;
use crate::rewrite::{CachedPlan, CachedRelations};
use std::sync::Arc;
use std::time::Duration;

impl Executor {
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

    /// Looks up, per database, the functions the planned `jobs` call
    /// whose volatility is not known (see [`FunctionCatalog::due`]).
    pub(super) async fn look_up_functions(&self, jobs: &[Job<'_>]) {
        let samples: Vec<&Sample> = jobs.iter().map(|job| job.sample).collect();
        for database in databases_of(&samples) {
            let names = jobs
                .iter()
                .filter(|job| job.sample.database.as_ref() == database)
                .filter_map(|job| job.plan.as_ref().as_ref().ok())
                .flat_map(|plan| plan.functions.iter());
            let due = self.functions.due(database, names);
            if due.is_empty() {
                continue;
            }
            if let Err(error) = self.look_up_in(&self.functions, database, &due).await {
                tracing::warn!(
                    database,
                    functions = due.len(),
                    %error,
                    "cannot look up function volatility in the catalog; skipping statements that call them for now"
                );
            }
        }
    }
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
