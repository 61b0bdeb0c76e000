//! What every session of one proxy shares.

use super::cancel::CancelRegistry;
use crate::config::Config;
use crate::tls::{ServerTls, UpstreamTls};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every session of one proxy shares; `H` is what the server handed
/// the proxy for capture and the primary's tiebreaker.
pub(crate) struct ProxyContext<H> {
    pub(crate) config: Arc<Config>,
    pub(crate) cancel_registry: CancelRegistry,
    /// The certificate offered to clients (`listen.tls_cert`).
    pub(crate) client_tls: Option<Arc<ServerTls>>,
    /// How sessions connect to the upstream (`upstream.tls`).
    pub(crate) upstream_tls: UpstreamTls,
    /// Fires when shutdown starts: sessions end at their next idle point.
    pub(crate) drain: CancellationToken,
    /// Fires when the shutdown grace period is over.
    pub(crate) terminate: CancellationToken,
    /// Statement capture and `tiebreak.apply_to_primary`.
    pub(crate) handoff: H,
}
