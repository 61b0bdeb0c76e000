//! Routing cancel requests to the backend they belong to.
//!
//! A client cancels a query by opening a *new* connection and sending the
//! process id and secret it received in BackendKeyData. The proxy passes
//! BackendKeyData through unchanged, so the client knows the real backend
//! pid (`pg_backend_pid()`, NOTIFY sender pids and `pg_stat_activity` all
//! agree with it), and keeps a registry from key to upstream address.
//!
//! A request with a key no local session owns usually belongs to a session
//! on another pgshadow instance behind the same load balancer: it is
//! forwarded verbatim to the upstream, which checks the secret and cancels
//! only the backend it really names. Those forwards are rate-limited
//! ([`MAX_FORWARDED_UNKNOWN_PER_SECOND`]), so the proxy cannot be used to
//! flood the server or to guess secrets faster than the server's own port
//! would allow.

use crate::observability::metrics::CANCEL_REQUESTS_TOTAL;
use crate::protocol::startup::{BackendKey, CancelRequest};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::upstream;

/// Cancel requests with a key no local session owns forwarded to the
/// upstream per second at most; more are dropped and counted.
pub(crate) const MAX_FORWARDED_UNKNOWN_PER_SECOND: u32 = 50;

/// Live sessions' backend keys and the upstream each runs on.
#[derive(Debug, Clone, Default)]
pub(crate) struct CancelRegistry {
    sessions: Arc<Mutex<HashMap<BackendKey, SocketAddr>>>,
    unknown: Arc<Mutex<Window>>,
}

/// A one-second window of forwarded unknown-key requests.
#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    count: u32,
}

impl Window {
    /// Counts one request at `now`; whether it fits the limit.
    fn admit(&mut self, now: Instant, limit: u32) -> bool {
        match self.started {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                self.started = Some(now);
                self.count = 0;
            }
        }
        if self.count >= limit {
            return false;
        }
        self.count += 1;
        true
    }
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

    /// Whether one more unknown-key request may be forwarded now.
    fn admit_unknown(&self) -> bool {
        self.unknown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(Instant::now(), MAX_FORWARDED_UNKNOWN_PER_SECOND)
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

/// Serves a CancelRequest that arrived on its own connection. `fallback`
/// is the configured upstream (`host`, `port`), where requests for keys no
/// local session owns go.
pub(crate) async fn handle_request(
    registry: &CancelRegistry,
    request: &CancelRequest,
    fallback: (&str, u16),
    timeout: Duration,
) {
    let Some(upstream) = registry.lookup(&request.key) else {
        forward_unknown(registry, request, fallback, timeout).await;
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

/// Forwards a request for a key no local session owns, within the rate
/// limit.
async fn forward_unknown(
    registry: &CancelRegistry,
    request: &CancelRequest,
    (host, port): (&str, u16),
    timeout: Duration,
) {
    let pid = request.key.pid;
    if !registry.admit_unknown() {
        tracing::warn!(
            pid,
            limit_per_second = MAX_FORWARDED_UNKNOWN_PER_SECOND,
            "cancel request with an unknown key dropped: too many per second"
        );
        metrics::counter!(CANCEL_REQUESTS_TOTAL, "result" => "rate_limited").increment(1);
        return;
    }
    match upstream::send_cancel((host, port), &request.raw, timeout).await {
        Ok(()) => {
            tracing::info!(
                pid,
                upstream = %format_args!("{host}:{port}"),
                "cancel request with a key no local session owns forwarded to the upstream \
                 (it may belong to another pgshadow instance; the server checks the secret)"
            );
            metrics::counter!(CANCEL_REQUESTS_TOTAL, "result" => "forwarded_unknown_key")
                .increment(1);
        }
        Err(e) => {
            tracing::warn!(pid, error = %e, "cancel request could not be forwarded");
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

    #[test]
    fn unknown_key_forwards_are_limited_per_second() {
        let mut window = Window::default();
        let start = Instant::now();
        assert!((0..3).all(|_| window.admit(start, 3)));
        assert!(!window.admit(start, 3), "the fourth in one second");
        assert!(!window.admit(start + Duration::from_millis(999), 3));
        assert!(
            window.admit(start + Duration::from_secs(1), 3),
            "a new second"
        );
    }
}
