//! What the proxy hands off, and to whom: the one seam between the
//! primary path and the rest of the application.
//!
//! The server assembles the shadow, the mismatch store and the plan caches
//! and gives the proxy a [`Handoff`]; the proxy is generic over it
//! (monomorphized: no dynamic call per message), so it depends on neither
//! the shadow nor the rewriter.

use crate::capture::handoff::SessionCapture;
use crate::capture::sample::SessionSettings;
use std::sync::Arc;

/// Where sessions hand their statements: to statement capture (for the
/// shadow) and, with `tiebreak.apply_to_primary`, to the tiebreaker.
pub trait Handoff: Send + Sync + 'static {
    /// One session's statement capture.
    type Capture: SessionCapture + Send;

    /// Whether sessions capture statements at all (when not, the relay
    /// copies nothing and pairs no replies).
    fn captures(&self) -> bool;

    /// Statement capture for a new session on `database` with its startup
    /// `settings` (asked only when [`Handoff::captures`], so a proxy
    /// without the shadow collects no settings), or `None` when off.
    fn capture(&self, database: &str, settings: SessionSettings) -> Option<Self::Capture>;

    /// Largest client message copied for capture.
    fn capture_limit(&self) -> usize;

    /// Whether the application's own statements get a tiebreaker
    /// (`tiebreak.apply_to_primary`).
    fn rewrites_primary(&self) -> bool;

    /// The text to send upstream instead of `sql`, or `None` to forward
    /// `sql` as it is; asked only when [`Handoff::rewrites_primary`].
    fn primary_rewrite(&self, sql: &str) -> Option<Arc<str>>;
}
