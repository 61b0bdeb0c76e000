//! Accepting clients and shutting down gracefully.
//!
//! Each accepted connection becomes one task ([`session::serve`]). On the
//! first shutdown request the listener closes, idle sessions are closed
//! with SQLSTATE 57P01 and busy ones at their next idle point; whatever
//! still runs after `listen.shutdown_timeout_ms` (or a second shutdown
//! request) is closed, with its query cancelled.

use crate::config::Config;
use crate::observability::metrics::{
    CLIENT_CONNECTIONS_TOTAL, INCIDENTS_OPEN, STORE_DROPPED_TOTAL,
};
use crate::store::{Store, StoreError, StoreWriter, WriterOptions};
use std::collections::HashSet;
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
use super::slots::{Admission, ConnectionSlots};
use crate::rewrite::PlanCache;
use crate::shadow::{primary_rules, Shadow, ShadowError};
use crate::tls::server::POSTGRES_ALPN;
use crate::tls::{ServerTls, TlsError, UpstreamTls};

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
    /// The mismatch store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A certificate, key or root bundle could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// What every session of one proxy shares.
pub(crate) struct ProxyContext {
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
    /// The shadow, when `shadow.enabled`.
    pub(crate) shadow: Option<Arc<Shadow>>,
    /// Plans for `tiebreak.apply_to_primary`.
    pub(crate) primary_rewrites: Option<Arc<PlanCache>>,
    /// The mismatch store's writer, when the shadow is enabled: outcomes
    /// go to it, skips per fingerprint through its `skip_counts()`.
    pub(crate) store: Option<Arc<StoreWriter>>,
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
            .map_err(|source| ProxyError::Bind { address, source })?;
        // Present from the first scrape, so alerts on them work at once.
        metrics::gauge!(INCIDENTS_OPEN).set(0.0);
        metrics::counter!(STORE_DROPPED_TOTAL).increment(0);
        let store = if config.shadow.enabled {
            // A store configured wrong (bad URL, missing password, newer
            // schema) stops the proxy now; one that only cannot be reached
            // (a read-only path, its server down) does not: the relay
            // serves, outcomes wait or are dropped and counted, and the
            // writer keeps trying.
            let (store, unreachable) = Store::from_config_or_later(&config.store).await?;
            match unreachable {
                None => tracing::info!(store = %store.url(), "mismatch store open"),
                Some(e) => tracing::error!(
                    store = %store.url(),
                    error = %e,
                    "mismatch store unreachable: serving without it, retrying in the background \
                     (pgshadow_store_up = 0)"
                ),
            }
            let (tx, rx) = mpsc::channel(config.store.queue_capacity);
            let writer = StoreWriter::start(store, WriterOptions::from_config(&config.store), rx);
            Some((writer, tx))
        } else {
            None
        };
        let (store, outcomes) = match store {
            Some((writer, tx)) => (Some(writer), Some(tx)),
            None => (None, None),
        };
        let shadow = if config.shadow.enabled {
            let skip_counts = store.as_ref().map(|w| w.skip_counts()).unwrap_or_default();
            let shadow = Shadow::start(&config, outcomes, skip_counts)?;
            // The config file's mutes, applied the way a reload applies them.
            let muted = crate::reload::muted_fingerprints(&config.shadow);
            shadow.sampler().update_muted(&HashSet::new(), &muted);
            Some(shadow)
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
                client_tls,
                upstream_tls,
                drain: CancellationToken::new(),
                terminate: CancellationToken::new(),
                primary_rewrites,
                shadow,
                store,
            }),
        })
    }

    /// The shadow, when enabled (for run-time controls).
    pub fn shadow(&self) -> Option<&Arc<Shadow>> {
        self.ctx.shadow.as_ref()
    }

    /// The mismatch store's writer, when the shadow is enabled: the store
    /// to query ([`StoreWriter::store`]) and incident events
    /// ([`StoreWriter::subscribe`]) for the admin API and the webhook.
    pub fn store_writer(&self) -> Option<&Arc<StoreWriter>> {
        self.ctx.store.as_ref()
    }

    /// The certificate offered to clients, when `listen.tls_cert` is set
    /// (SIGHUP re-reads it).
    pub fn client_tls(&self) -> Option<&Arc<ServerTls>> {
        self.ctx.client_tls.as_ref()
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
        if let Some(store) = &ctx.store {
            // Outcomes still in memory are written before the process ends.
            store.shutdown().await;
        }
        tracing::info!("shutdown complete");
    }
}
