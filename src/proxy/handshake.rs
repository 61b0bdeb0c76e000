//! Everything a client sends before its StartupMessage.
//!
//! An SSLRequest is answered `S` and the TLS handshake follows when
//! `listen.tls_cert` is configured (and `listen.tls_mode` is not
//! `disable`), `N` otherwise; GSSENCRequest is always answered `N`. Then
//! the StartupMessage or CancelRequest arrives, over TLS if it was set up.
//! Postgres allows each encryption request once, before the startup packet.
//!
//! Under `listen.tls_mode = "require"` a StartupMessage on a plain
//! connection is refused. A CancelRequest is served either way: libpq
//! sends it on a fresh plain connection whatever the session's `sslmode`.

use crate::config::ListenTlsMode;
use crate::protocol::startup::{
    packet_body_len, parse_initial_packet, CancelRequest, InitialPacket, StartupError,
    StartupMessage,
};
use crate::tls::{ServerTls, Stream};
use bytes::{BufMut, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

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
    /// The TLS handshake with the client failed (it did not trust our
    /// certificate, or spoke no TLS).
    #[error("TLS handshake with the client failed: {0}")]
    Tls(std::io::Error),
    /// No startup packet before `listen.startup_timeout_ms` passed.
    #[error("no startup packet received in time")]
    Timeout,
    /// A plain StartupMessage under `listen.tls_mode = "require"`.
    #[error(
        "pgshadow accepts only TLS connections (listen.tls_mode = \"require\"): \
         connect with sslmode=require, verify-ca or verify-full"
    )]
    TlsRequired,
}

/// TLS settings of the listener.
#[derive(Clone, Copy)]
pub(crate) struct ClientTls<'a> {
    /// The certificate, when one is configured.
    pub(crate) server: Option<&'a ServerTls>,
    /// `listen.tls_mode`.
    pub(crate) mode: ListenTlsMode,
}

impl ClientTls<'_> {
    fn offered(&self) -> Option<&ServerTls> {
        self.server.filter(|_| self.mode != ListenTlsMode::Disable)
    }
}

/// Reads initial packets until a StartupMessage or CancelRequest arrives,
/// setting up TLS on the way if the client asks for it, all before
/// `deadline`. Returns the stream to go on with; on failure, the stream
/// too when it can still carry an ErrorResponse (not after a failed TLS
/// handshake).
pub(crate) async fn negotiate(
    client: TcpStream,
    tls: ClientTls<'_>,
    deadline: Instant,
) -> Result<(Stream, Opening), (HandshakeError, Option<Stream>)> {
    let mut stream = Stream::Plain(client);
    let (mut ssl_answered, mut gss_answered) = (false, false);
    loop {
        let packet = match timeout_at(deadline, read_initial_packet(&mut stream)).await {
            Ok(Ok(packet)) => packet,
            Ok(Err(e)) => return Err((e, Some(stream))),
            Err(_) => return Err((HandshakeError::Timeout, Some(stream))),
        };
        let refuse = match packet {
            InitialPacket::SslRequest if !ssl_answered => {
                ssl_answered = true;
                match timeout_at(deadline, answer_ssl(stream, tls)).await {
                    Ok(Ok(upgraded)) => {
                        stream = upgraded;
                        continue;
                    }
                    Ok(Err(e)) => return Err((e, None)),
                    Err(_) => return Err((HandshakeError::Timeout, None)),
                }
            }
            // GSSENCRequest inside TLS is a protocol violation, as in Postgres.
            InitialPacket::GssEncRequest if !gss_answered && !stream.is_tls() => {
                gss_answered = true;
                if let Err(e) = stream.write_all(b"N").await {
                    return Err((e.into(), None));
                }
                continue;
            }
            InitialPacket::SslRequest => HandshakeError::Repeated("SSL"),
            InitialPacket::GssEncRequest => HandshakeError::Repeated("GSSENC"),
            InitialPacket::Cancel(c) => return Ok((stream, Opening::Cancel(c))),
            InitialPacket::Startup(_) if tls.mode == ListenTlsMode::Require && !stream.is_tls() => {
                HandshakeError::TlsRequired
            }
            InitialPacket::Startup(s) => return Ok((stream, Opening::Startup(s))),
        };
        return Err((refuse, Some(stream)));
    }
}

/// Answers an SSLRequest: `S` and the TLS handshake, or `N`. Nothing is
/// buffered before the handshake (packets are read with exact lengths), so
/// bytes a client sends early cannot be mistaken for encrypted data.
async fn answer_ssl(stream: Stream, tls: ClientTls<'_>) -> Result<Stream, HandshakeError> {
    let Stream::Plain(mut plain) = stream else {
        return Err(HandshakeError::Repeated("SSL"));
    };
    let Some(server) = tls.offered() else {
        plain.write_all(b"N").await?;
        return Ok(Stream::Plain(plain));
    };
    plain.write_all(b"S").await?;
    let encrypted = server
        .acceptor()
        .accept(plain)
        .await
        .map_err(HandshakeError::Tls)?;
    Ok(Stream::Tls(Box::new(encrypted.into())))
}

async fn read_initial_packet(client: &mut Stream) -> Result<InitialPacket, HandshakeError> {
    let length = client.read_i32().await?;
    let body_len = packet_body_len(length)?;
    let mut packet = BytesMut::with_capacity(4 + body_len);
    packet.put_i32(length);
    packet.resize(4 + body_len, 0);
    client.read_exact(&mut packet[4..]).await?;
    Ok(parse_initial_packet(packet.freeze())?)
}
