//! HTTPS for the admin server (`admin.tls_cert`, `admin.tls_key`).
//!
//! axum serves any [`Listener`]; this one accepts TCP connections and
//! hands out those whose TLS handshake completed. Handshakes run in tasks
//! of their own, bounded in time, so one slow or silent client never holds
//! up the next.

use crate::tls::ServerTls;
use axum::serve::Listener;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// Longest a client may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Established TLS connections waiting for the HTTP server.
const READY_QUEUE: usize = 64;

/// A TCP listener whose connections come out encrypted.
pub(super) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: std::io::Result<SocketAddr>,
}

impl TlsListener {
    /// Starts accepting on `listener` with `tls`'s current certificate
    /// for each handshake (a SIGHUP reload applies to the next one).
    pub(super) fn new(listener: TcpListener, tls: Arc<ServerTls>) -> TlsListener {
        let local = listener.local_addr();
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_all(listener, tls, tx));
        TlsListener { ready, local }
    }
}

async fn accept_all(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // The server is gone: stop listening.
            _ = ready.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = tls.acceptor();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "admin TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "admin TLS handshake timed out"),
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(pair) => pair,
            // The accepting task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.local {
            Ok(addr) => Ok(*addr),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}
