//! Routing cancel requests to the backend they belong to.
//!
//! A client cancels a query by opening a *new* connection and sending the
//! process id and secret it received in BackendKeyData. The proxy passes
//! BackendKeyData through unchanged, so the client knows the real backend
//! pid (`pg_backend_pid()`, NOTIFY sender pids and `pg_stat_activity` all
//! agree with it), and keeps a registry from key to upstream address.
//! A request with a key no live session owns is dropped: it would do
//! nothing at the server either, and the proxy does not help anyone probe
//! for keys.

use crate::observability::metrics::CANCEL_REQUESTS_TOTAL;
use crate::protocol::startup::{BackendKey, CancelRequest};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::upstream;

/// Live sessions' backend keys and the upstream each runs on.
#[derive(Debug, Clone, Default)]
pub(crate) struct CancelRegistry {
    sessions: Arc<Mutex<HashMap<BackendKey, SocketAddr>>>,
}

impl CancelRegistry {
    fn sessions(&self) -> MutexGuard<'_, HashMap<BackendKey, SocketAddr>> {
        // The map stays consistent even if a holder panicked: every update
        // is a single insert or remove.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a session's key until the returned guard is dropped.
    pub(crate) fn register(&self, key: BackendKey, upstream: SocketAddr) -> Registration {
        self.sessions().insert(key.clone(), upstream);
        Registration {
            registry: self.clone(),
            key,
        }
    }

    /// The upstream of the live session with this key.
    pub(crate) fn lookup(&self, key: &BackendKey) -> Option<SocketAddr> {
        self.sessions().get(key).copied()
    }

    /// Number of registered sessions.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.sessions().len()
    }
}

/// Keeps a backend key registered while a session lives.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: CancelRegistry,
    key: BackendKey,
}

impl Registration {
    /// The registered key.
    pub(crate) fn key(&self) -> &BackendKey {
        &self.key
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.sessions().remove(&self.key);
    }
}

/// Serves a CancelRequest that arrived on its own connection.
pub(crate) async fn handle_request(
    registry: &CancelRegistry,
    request: &CancelRequest,
    timeout: Duration,
) {
    let Some(upstream) = registry.lookup(&request.key) else {
        tracing::info!(
            pid = request.key.pid,
            "cancel request with an unknown key ignored"
        );
        metrics::counter!(CANCEL_REQUESTS_TOTAL, "result" => "unknown_key").increment(1);
        return;
    };
    match upstream::send_cancel(upstream, &request.raw, timeout).await {
        Ok(()) => {
            tracing::info!(pid = request.key.pid, %upstream, "cancel request forwarded");
            metrics::counter!(CANCEL_REQUESTS_TOTAL, "result" => "forwarded").increment(1);
        }
        Err(e) => {
            tracing::warn!(pid = request.key.pid, %upstream, error = %e, "cancel request could not be forwarded");
            metrics::counter!(CANCEL_REQUESTS_TOTAL, "result" => "failed").increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn keys_are_known_exactly_while_registered() {
        let registry = CancelRegistry::default();
        let key = BackendKey {
            pid: 10,
            secret: Bytes::from_static(b"abcd"),
        };
        let other_secret = BackendKey {
            pid: 10,
            secret: Bytes::from_static(b"abce"),
        };
        let addr: SocketAddr = "127.0.0.1:5432".parse().unwrap();
        let guard = registry.register(key.clone(), addr);
        assert_eq!(registry.lookup(&key), Some(addr));
        assert_eq!(registry.lookup(&other_secret), None);
        drop(guard);
        assert_eq!(registry.lookup(&key), None);
        assert_eq!(registry.len(), 0);
    }
}
