//! Accepting clients and shutting down gracefully.
//!
//! Each accepted connection becomes one task ([`session::serve`]). On the
//! first shutdown request the listener closes, idle sessions are closed
//! with SQLSTATE 57P01 and busy ones at their next idle point; whatever
//! still runs after `listen.shutdown_timeout_ms` (or a second shutdown
//! request) is closed, with its query cancelled.

use crate::config::Config;
use crate::observability::metrics::CLIENT_CONNECTIONS_TOTAL;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cancel::CancelRegistry;
use super::context::ProxyContext;
use super::handoff::Handoff;
use super::session;
use super::slots::{Admission, ConnectionSlots};
use crate::tls::server::POSTGRES_ALPN;
use crate::tls::{ServerTls, TlsError, UpstreamTls};

/// Why the proxy could not start.
#[derive(Debug, Error)]
pub enum ListenError {
    /// The listen address is taken or not ours.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    /// A certificate, key or root bundle could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A bound proxy, ready to serve.
pub struct Proxy {
    listener: TcpListener,
    config: Arc<Config>,
    client_tls: Option<Arc<ServerTls>>,
    upstream_tls: UpstreamTls,
}

impl Proxy {
    /// Loads the certificates of both legs and binds `listen.address`.
    pub async fn bind(config: Arc<Config>) -> Result<Proxy, ListenError> {
        let address = config.listen.address;
        let l = &config.listen;
        let client_tls = match (&l.tls_cert, &l.tls_key) {
            (Some(cert), Some(key)) => {
                Some(Arc::new(ServerTls::load(cert, key, &[POSTGRES_ALPN])?))
            }
            _ => None,
        };
        let u = &config.upstream;
        let upstream_tls =
            UpstreamTls::new(u.tls, u.tls_root_cert.as_deref(), &u.host, "upstream")?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ListenError::Bind { address, source })?;
        Ok(Proxy {
            listener,
            config,
            client_tls,
            upstream_tls,
        })
    }

    /// The certificate offered to clients, when `listen.tls_cert` is set
    /// (SIGHUP re-reads it).
    pub fn client_tls(&self) -> Option<&Arc<ServerTls>> {
        self.client_tls.as_ref()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients until the first message on `shutdown`, then shuts
    /// down gracefully; a second message cuts the grace period short.
    /// Sessions hand their statements to `handoff`. Returns once every
    /// session has ended.
    pub async fn run<H: Handoff>(self, handoff: H, mut shutdown: mpsc::Receiver<()>) {
        let Proxy {
            listener,
            config,
            client_tls,
            upstream_tls,
        } = self;
        let ctx = Arc::new(ProxyContext {
            config,
            cancel_registry: CancelRegistry::default(),
            client_tls,
            upstream_tls,
            drain: CancellationToken::new(),
            terminate: CancellationToken::new(),
            handoff,
        });
        let sessions = TaskTracker::new();
        let next_conn_id = AtomicU64::new(1);
        let slots = ConnectionSlots::new(ctx.config.listen.max_client_connections);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let conn_id = next_conn_id.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(CLIENT_CONNECTIONS_TOTAL).increment(1);
                        match slots.admit() {
                            Admission::Dropped => session::drop_beyond_limit(peer, slots.limit()),
                            admission => {
                                sessions.spawn(session::serve(ctx.clone(), conn_id, stream, peer, admission));
                            }
                        }
                    }
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning; the
                        // sessions already open are unaffected.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = shutdown.recv() => break,
            }
        }
        drop(listener);
        sessions.close();
        let grace = ctx.config.listen.shutdown_timeout();
        tracing::info!(
            sessions = sessions.len(),
            timeout_ms = grace.as_millis() as u64,
            "shutting down: no new connections, closing sessions as they become idle"
        );
        ctx.drain.cancel();
        tokio::select! {
            _ = sessions.wait() => {}
            _ = tokio::time::sleep(grace) => {
                tracing::warn!(sessions = sessions.len(), "shutdown timeout reached: closing the remaining sessions");
            }
            _ = shutdown.recv() => {
                tracing::warn!(sessions = sessions.len(), "second shutdown request: closing the remaining sessions");
            }
        }
        ctx.terminate.cancel();
        sessions.wait().await;
    }
}
