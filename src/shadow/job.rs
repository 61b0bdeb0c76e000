//! One [`Job`] per sample: what the executor's stages ([`super::batch`])
//! fill in as a sample moves through them (its plan, its first run's
//! order and result, its judgement), so that no stage keeps vectors in
//! step by index.

use super::answers::SampleResult;
use super::conn::ConnError;
use super::executor::Handled;
use crate::capture::skip::SkipReason;
use crate::capture::tracker::Sample;
use crate::diff::CompareOptions;
use crate::rewrite::{CachedPlan, Plan};

/// One sample on its way through the stages.
pub(super) struct Job<'s> {
    /// The sample, as the relay handed it over.
    pub sample: &'s Sample,
    /// Its plan (rewritten old and new query, keys, ordering), or why it
    /// cannot be planned.
    pub plan: CachedPlan,
    /// Set when the job is ready for its first run.
    pub first: Option<FirstRun>,
    /// The first run's result, until it is judged.
    pub ran: Option<Result<SampleResult, ConnError>>,
    /// What the sample came to.
    pub judged: Option<Judged>,
}

/// How a job's first run goes, decided once when it is made ready: the
/// side order alternates per call ([`super::latency::LatencyBook::new_first`]).
pub(super) struct FirstRun {
    /// The comparison options of the plan.
    pub options: CompareOptions,
    /// Whether the first run includes the A/A baseline.
    pub baseline: bool,
    /// Whether the new side runs first.
    pub new_first: bool,
}

impl<'s> Job<'s> {
    /// A job for `sample`, planned as `plan`.
    pub(super) fn new(sample: &'s Sample, plan: CachedPlan) -> Self {
        Self {
            sample,
            plan,
            first: None,
            ran: None,
            judged: None,
        }
    }

    /// Whether the job's relations' keys should be looked up again (a
    /// relation changed, or a column is missing).
    pub(super) fn keys_suspect(&self) -> bool {
        self.judged.as_ref().is_some_and(|j| j.keys_suspect)
    }

    /// What the job came to. Every job handed to the stages is judged;
    /// `Disabled` only guards against a miscount.
    pub(super) fn handled(self) -> Handled {
        match self.judged {
            Some(judged) => judged.handled,
            None => Judged::skipped(SkipReason::Disabled).handled,
        }
    }

    /// The plan, when it can be run.
    pub(super) fn runnable_plan(&self) -> Option<&Plan> {
        self.plan.as_ref().as_ref().ok()
    }
}

/// A sample's result, and whether its relations' keys should be looked up
/// again (a relation changed, or a column is missing).
#[derive(Debug)]
pub(super) struct Judged {
    pub handled: Handled,
    pub keys_suspect: bool,
}

impl Judged {
    pub(super) fn skipped(reason: SkipReason) -> Self {
        Self {
            handled: Handled::Skipped(reason),
            keys_suspect: false,
        }
    }
}
