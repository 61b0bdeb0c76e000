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
use super::session;
use crate::rewrite::PlanCache;
use crate::shadow::{primary_rules, Shadow, ShadowError};

/// Why the proxy could not start.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// The listen address is taken or not ours.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    /// The shadow could not start.
    #[error(transparent)]
    Shadow(#[from] ShadowError),
}

/// What every session of one proxy shares.
pub(crate) struct ProxyContext {
    pub(crate) config: Arc<Config>,
    pub(crate) cancel_registry: CancelRegistry,
    /// Fires when shutdown starts: sessions end at their next idle point.
    pub(crate) drain: CancellationToken,
    /// Fires when the shutdown grace period is over.
    pub(crate) terminate: CancellationToken,
    /// The shadow, when `shadow.enabled`.
    pub(crate) shadow: Option<Arc<Shadow>>,
    /// Plans for `tiebreak.apply_to_primary`.
    pub(crate) primary_rewrites: Option<Arc<PlanCache>>,
}

/// A bound proxy, ready to serve.
pub struct Proxy {
    listener: TcpListener,
    ctx: Arc<ProxyContext>,
}

impl Proxy {
    /// Binds `listen.address` and, when `shadow.enabled`, starts the
    /// shadow (which then needs a running Tokio runtime).
    pub async fn bind(config: Arc<Config>) -> Result<Proxy, ProxyError> {
        let address = config.listen.address;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ProxyError::Bind { address, source })?;
        let shadow = if config.shadow.enabled {
            Some(Shadow::start(&config, None)?)
        } else {
            None
        };
        let primary_rewrites = config.tiebreak.apply_to_primary.then(|| {
            Arc::new(PlanCache::new(
                config.shadow.plan_cache_size,
                primary_rules(&config),
            ))
        });
        Ok(Proxy {
            listener,
            ctx: Arc::new(ProxyContext {
                config,
                cancel_registry: CancelRegistry::default(),
                drain: CancellationToken::new(),
                terminate: CancellationToken::new(),
                primary_rewrites,
                shadow,
            }),
        })
    }

    /// The shadow, when enabled (for run-time controls).
    pub fn shadow(&self) -> Option<&Arc<Shadow>> {
        self.ctx.shadow.as_ref()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients until the first message on `shutdown`, then shuts
    /// down gracefully; a second message cuts the grace period short.
    pub async fn run(self, mut shutdown: mpsc::Receiver<()>) {
        let Proxy { listener, ctx } = self;
        let sessions = TaskTracker::new();
        let next_conn_id = AtomicU64::new(1);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let conn_id = next_conn_id.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(CLIENT_CONNECTIONS_TOTAL).increment(1);
                        sessions.spawn(session::serve(ctx.clone(), conn_id, stream, peer));
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
        tracing::info!("shutdown complete");
    }
}
