//! Executing on pooled connections: a connection taken per database, as
//! much of a batch executed on it as it allows
//! ([`super::execute::execute_batch`]) within a time limit against a silent
//! network, and given back unless it is out of step; and the one-sample
//! runs the verdict asks for (the recheck, one side again alone).

use super::answers::{SampleResult, SideResult};
use super::conn::ConnError;
use super::execute::execute_batch;
use super::executor::{not_run, Executor};
use super::limits::Limits;
use super::transaction::SampleSpec;
use crate::capture::tracker::Sample;
use crate::diff::CompareOptions;
use crate::rewrite::Plan;
use std::time::Duration;

impl Executor {
    /// Takes a connection and runs as much of `batch` on it as it allows;
    /// returns the connection to the pool unless it is out of step.
    pub(super) async fn execute_on_a_pooled_connection(
        &self,
        database: &str,
        batch: &[(&Sample, SampleSpec<'_>)],
        limits: &Limits<'_>,
    ) -> Vec<Result<SampleResult, ConnError>> {
        let mut conn = match self.pool.get(database).await {
            Ok(conn) => conn,
            Err(e) => {
                self.note_refusal(&e);
                return batch.iter().map(|_| Err(e.again())).collect();
            }
        };
        let limit = self.run_limit() * u32::try_from(batch.len()).unwrap_or(u32::MAX);
        match tokio::time::timeout(limit, execute_batch(&mut conn, batch, limits)).await {
            Ok(results) => {
                self.pool.put(database, conn);
                results
            }
            Err(_) => batch.iter().map(|_| Err(run_timeout(limit))).collect(),
        }
    }

    /// Takes a connection, runs one sample's `spec`, and returns the
    /// connection (or closes it when it is out of step).
    pub(super) async fn execute_one(
        &self,
        sample: &Sample,
        spec: SampleSpec<'_>,
    ) -> Result<SampleResult, ConnError> {
        let one = [(sample, spec)];
        self.execute_on_a_pooled_connection(&sample.database, &one, &self.limits())
            .await
            .pop()
            .unwrap_or_else(|| Err(not_run()))
    }

    /// Only the new query, for telling `old_error` from `both_error` when
    /// the old query failed and took the shared transaction down: it runs
    /// first in a fresh transaction, under the new search_path, with the
    /// sample's own parameters ([`SampleSpec::new_side_only`]).
    pub(super) async fn rerun_new_side(
        &self,
        sample: &Sample,
        plan: &Plan,
        options: &CompareOptions,
    ) -> Option<SideResult> {
        let spec = self.spec(plan, options, false).new_side_only();
        let r = self.execute_one(sample, spec).await.ok()?;
        Some(r.first_side())
    }

    /// Only the old query, in a fresh transaction, with the sample's own
    /// parameters: for when the new query ran first, failed, and took the
    /// shared transaction down before the old one ran.
    pub(super) async fn rerun_old_side(
        &self,
        sample: &Sample,
        plan: &Plan,
        options: &CompareOptions,
    ) -> Option<SideResult> {
        let r = self
            .execute_one(sample, self.spec(plan, options, false))
            .await
            .ok()?;
        Some(r.old)
    }
}

fn run_timeout(limit: Duration) -> ConnError {
    ConnError::Timeout {
        address: "shadow run".into(),
        timeout: limit,
    }
}
