//! What both directions of a session share.
//!
//! The state sits behind a mutex that is only ever taken between awaits,
//! per message header, and is therefore uncontended.

use crate::protocol::backend::TransactionStatus;
use crate::proxy::cancel::Registration;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// StartupMessage forwarded; authentication under way.
    Authenticating,
    /// The first ReadyForQuery has been seen.
    Ready,
}

/// What both directions of a session know about it; `C` is the session's
/// statement capture.
pub(crate) struct SessionState<C> {
    /// Where the session is in its life.
    pub(crate) phase: Phase,
    /// ReadyForQuery messages the server still owes: one per Query, Sync
    /// and FunctionCall forwarded.
    pub(crate) awaiting_ready: u32,
    /// The client sent a message since the last ReadyForQuery (covers
    /// extended-protocol batches flushed without Sync).
    pub(crate) sent_since_ready: bool,
    /// Transaction status of the last ReadyForQuery.
    pub(crate) transaction: TransactionStatus,
    /// The proxy is shutting down: end the session at the next idle point.
    pub(crate) draining: bool,
    /// The backend's cancel key, registered while the session lives.
    pub(crate) registration: Option<Registration>,
    /// The server offered SCRAM-SHA-256-PLUS and the relay took it out: the
    /// client's SASLInitialResponse is looked at (see `messages`).
    pub(crate) channel_binding_stripped: bool,
    /// Statement capture for the shadow, when it is enabled.
    pub(crate) tracker: Option<C>,
}

impl<C> SessionState<C> {
    pub(crate) fn new(tracker: Option<C>) -> Self {
        Self {
            phase: Phase::Authenticating,
            awaiting_ready: 0,
            sent_since_ready: false,
            transaction: TransactionStatus::Idle,
            draining: false,
            registration: None,
            channel_binding_stripped: false,
            tracker,
        }
    }

    /// Whether the server may be running something for this client.
    pub(crate) fn busy(&self) -> bool {
        self.awaiting_ready > 0 || self.sent_since_ready
    }

    /// Whether the session could be closed now without interrupting
    /// anything: logged in, nothing in flight, no transaction open.
    pub(crate) fn idle(&self) -> bool {
        self.phase == Phase::Ready && !self.busy() && self.transaction == TransactionStatus::Idle
    }
}

/// Byte counts and the client-side message boundary, updated by the pumps.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// Bytes forwarded from the client to the server.
    pub(crate) from_client: AtomicU64,
    /// Bytes forwarded from the server to the client.
    pub(crate) from_server: AtomicU64,
    /// Everything written to the client so far ends on a message boundary,
    /// so the proxy may append an ErrorResponse of its own.
    pub(crate) client_at_boundary: AtomicBool,
}

/// Locks the state; a poisoned lock is still usable (every update is a
/// plain field write).
pub(crate) fn lock<C>(state: &Mutex<SessionState<C>>) -> MutexGuard<'_, SessionState<C>> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}
