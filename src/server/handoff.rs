//! What the server hands the proxy: statement capture into the shadow and
//! the primary's tiebreaker from its plan cache.

use crate::capture::sample::SessionSettings;
use crate::capture::tracker::Tracker;
use crate::proxy::Handoff;
use crate::rewrite::PlanCache;
use crate::shadow::{SessionGate, Shadow};
use std::sync::Arc;

/// The shadow (when `shadow.enabled`) and the plan cache of
/// `tiebreak.apply_to_primary` (when set), as the proxy's sessions use them.
pub struct ShadowHandoff {
    pub(super) shadow: Option<Arc<Shadow>>,
    /// `shadow.max_session_statement_bytes`.
    pub(super) statement_budget: usize,
    pub(super) primary_rewrites: Option<Arc<PlanCache>>,
}

impl Handoff for ShadowHandoff {
    type Capture = Tracker<SessionGate>;

    fn captures(&self) -> bool {
        self.shadow.is_some()
    }

    fn capture(&self, database: &str, settings: SessionSettings) -> Option<Tracker<SessionGate>> {
        let shadow = self.shadow.as_ref()?;
        Some(
            Tracker::new(shadow.session_gate(), database, settings)
                .with_statement_budget(self.statement_budget),
        )
    }

    fn capture_limit(&self) -> usize {
        self.shadow.as_ref().map_or(0, |s| s.capture_limit())
    }

    fn rewrites_primary(&self) -> bool {
        self.primary_rewrites.is_some()
    }

    fn primary_rewrite(&self, sql: &str) -> Option<Arc<str>> {
        self.primary_rewrites.as_ref()?.primary_rewrite(sql)
    }
}
