//! Connections to the upstream PostgreSQL server: TCP, then TLS as
//! `upstream.tls` says ([`crate::tls::upstream`]).

use crate::config::UpstreamConfig;
use crate::tls::upstream::NegotiateError;
use crate::tls::{Stream, UpstreamTls};
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why the upstream could not be reached. The message names the address,
/// because it ends up in the client's ErrorResponse.
#[derive(Debug, Error)]
pub enum UpstreamError {
    /// Connecting or resolving failed.
    #[error("could not connect to upstream {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    /// Nothing answered within `upstream.connect_timeout_ms`.
    #[error("could not connect to upstream {address}: timed out after {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    /// TLS could not be set up as `upstream.tls` asks.
    #[error("could not connect to upstream {address}: {source}")]
    Tls {
        address: String,
        source: NegotiateError,
    },
}

impl UpstreamError {
    /// What the operator should check, for the client's ErrorResponse.
    pub fn hint(&self) -> &'static str {
        match self {
            UpstreamError::Tls { .. } => {
                "check upstream.tls and upstream.tls_root_cert in the pgshadow config against the \
                 server's certificate"
            }
            _ => {
                "check that the upstream server is running and that [upstream] host and port in \
                 the pgshadow config are right"
            }
        }
    }
}

/// Opens a connection to the upstream: TCP with TCP_NODELAY, then TLS as
/// `tls` says, all within `upstream.connect_timeout_ms`. Returns the
/// stream and the resolved address, which is where cancel requests for
/// this session must go.
pub(crate) async fn connect(
    config: &UpstreamConfig,
    tls: &UpstreamTls,
) -> Result<(Stream, SocketAddr), UpstreamError> {
    let address = config.display_address();
    let timeout = config.connect_timeout();
    let attempt = async {
        let connected = async {
            let stream = TcpStream::connect((config.host.as_str(), config.port)).await?;
            stream.set_nodelay(true)?;
            let peer = stream.peer_addr()?;
            Ok::<_, std::io::Error>((stream, peer))
        };
        let (tcp, peer) = connected.await.map_err(|source| UpstreamError::Connect {
            address: address.clone(),
            source,
        })?;
        let stream = tls
            .negotiate(tcp)
            .await
            .map_err(|source| UpstreamError::Tls {
                address: address.clone(),
                source,
            })?;
        Ok((stream, peer))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::Timeout { address, timeout }),
    }
}

/// Delivers a CancelRequest packet to `addr` and waits until the server has
/// read it (it closes the connection when done), bounded by `timeout`.
///
/// Over plain TCP, whatever `upstream.tls` says, as libpq's `PQcancel`
/// does: PostgreSQL reads cancel requests before any pg_hba.conf check, so
/// a `hostssl`-only server accepts them, and the packet carries nothing
/// but a pid and a one-time secret.
pub(crate) async fn send_cancel<A>(addr: A, packet: &[u8], timeout: Duration) -> std::io::Result<()>
where
    A: tokio::net::ToSocketAddrs + std::fmt::Debug + Copy,
{
    let deliver = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        stream.write_all(packet).await?;
        stream.shutdown().await?;
        // The server sends nothing back; EOF means it processed the packet.
        let mut sink = [0u8; 64];
        while stream.read(&mut sink).await? > 0 {}
        Ok(())
    };
    tokio::time::timeout(timeout, deliver)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("cancel request to {addr:?} timed out after {timeout:?}"),
            ))
        })
}
