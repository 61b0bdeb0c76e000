//! The latest run of equal skips, counted before it reaches the tally
//! (see [`super`] for what it saves).

use crate::capture::fingerprint::Fingerprint;
use crate::capture::skip::{SkipReason, SkipTally};

/// The latest run of skips with the same fingerprint and reason, not yet
/// in the session's tally: most sessions repeat a few statements, so this
/// saves a hash lookup per skip.
#[derive(Debug, Default)]
pub(crate) struct SkipRun(Option<((Fingerprint, SkipReason), u64)>);

impl SkipRun {
    /// Counts one skip; a run of another key goes into `tally` first.
    pub(crate) fn add(&mut self, key: (Fingerprint, SkipReason), tally: &mut SkipTally) {
        match &mut self.0 {
            Some((k, n)) if *k == key => *n += 1,
            run => {
                if let Some((k, n)) = run.replace((key, 1)) {
                    *tally.entry(k).or_insert(0) += n;
                }
            }
        }
    }

    /// Moves the run into `tally`.
    pub(crate) fn end(&mut self, tally: &mut SkipTally) {
        if let Some((key, n)) = self.0.take() {
            *tally.entry(key).or_insert(0) += n;
        }
    }
}
