//! Everything a client sends before its StartupMessage.
//!
//! Answers SSLRequest and GSSENCRequest with `N` (no TLS yet: the client
//! continues in plain text, or gives up if it requires encryption), and
//! returns the StartupMessage or CancelRequest that follows. Postgres
//! allows each encryption request once, before the startup packet.

use crate::protocol::startup::{
    packet_body_len, parse_initial_packet, CancelRequest, InitialPacket, StartupError,
    StartupMessage,
};
use bytes::{BufMut, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the client wants once encryption has been negotiated.
#[derive(Debug)]
pub(crate) enum Opening {
    /// A session.
    Startup(StartupMessage),
    /// Cancelling another session's query.
    Cancel(CancelRequest),
}

/// Why the handshake failed.
#[derive(Debug, Error)]
pub(crate) enum HandshakeError {
    /// The client went away or the socket failed.
    #[error("client connection failed during startup: {0}")]
    Io(#[from] std::io::Error),
    /// The client sent something that is not a valid startup packet.
    #[error(transparent)]
    Malformed(#[from] StartupError),
    /// The client asked for encryption a second time.
    #[error("duplicate {0} request")]
    Repeated(&'static str),
}

/// Reads initial packets until a StartupMessage or CancelRequest arrives.
pub(crate) async fn negotiate(client: &mut TcpStream) -> Result<Opening, HandshakeError> {
    let mut ssl_answered = false;
    let mut gss_answered = false;
    loop {
        match read_initial_packet(client).await? {
            InitialPacket::SslRequest if !ssl_answered => {
                ssl_answered = true;
                client.write_all(b"N").await?;
            }
            InitialPacket::GssEncRequest if !gss_answered => {
                gss_answered = true;
                client.write_all(b"N").await?;
            }
            InitialPacket::SslRequest => return Err(HandshakeError::Repeated("SSL")),
            InitialPacket::GssEncRequest => return Err(HandshakeError::Repeated("GSSENC")),
            InitialPacket::Cancel(c) => return Ok(Opening::Cancel(c)),
            InitialPacket::Startup(s) => return Ok(Opening::Startup(s)),
        }
    }
}

async fn read_initial_packet(client: &mut TcpStream) -> Result<InitialPacket, HandshakeError> {
    let length = client.read_i32().await?;
    let body_len = packet_body_len(length)?;
    let mut packet = BytesMut::with_capacity(4 + body_len);
    packet.put_i32(length);
    packet.resize(4 + body_len, 0);
    client.read_exact(&mut packet[4..]).await?;
    Ok(parse_initial_packet(packet.freeze())?)
}
