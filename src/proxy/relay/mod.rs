//! The primary path: bytes between one client and its upstream backend.
//!
//! Two pumps run concurrently in the session's task, one per direction, so
//! that whatever the server sends unasked (NOTIFY, ParameterStatus, notices)
//! reaches the client at once, and neither direction can block the other.
//! Each pump is a loop in the spirit of PgBouncer's `sbuf.c`: read what is
//! there, let the [`Framer`] walk the message headers, write the bytes on.
//! Rows, COPY data and every other message are streamed without being
//! decoded. What the relay does with the few messages it looks at lives in
//! [`messages`]; what both directions share, in [`state`].

mod messages;
mod state;

pub(crate) use state::{SessionState, Traffic};

use crate::protocol::framing::{FrameHandler, Framer};
use crate::tls::Stream;
use bytes::{Buf, BytesMut};
use messages::{ClientMessages, ServerMessages};
use state::lock;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::cancel::CancelRegistry;
use super::handoff::Handoff;

/// Smallest read buffer; idle sessions shrink back to it.
const MIN_READ_CHUNK: usize = 8 * 1024;
/// Largest read buffer, reached while a bulk transfer fills every read.
const MAX_READ_CHUNK: usize = 256 * 1024;

/// How the relay ended.
#[derive(Debug)]
pub(crate) enum RelayEnd {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed the connection (or it broke) without Terminate.
    ClientClosed,
    /// The client broke the protocol; the text explains how.
    ClientViolation(String),
    /// The server closed the connection.
    ServerClosed,
    /// The server connection failed, or the server broke the protocol.
    ServerFailed(String),
    /// Shutdown: the session was idle and could be closed cleanly.
    Drained,
    /// Shutdown: the grace period ran out.
    Terminated,
}

/// What a relay needs from its session.
pub(crate) struct RelayContext<'a, H: Handoff> {
    /// Largest message body accepted from the client.
    pub(crate) max_client_message: usize,
    /// Where the backend's cancel key is registered.
    pub(crate) cancel_registry: &'a CancelRegistry,
    /// The upstream address cancel requests for this backend go to.
    pub(crate) upstream_addr: SocketAddr,
    /// Fires when the proxy starts a graceful shutdown.
    pub(crate) drain: &'a CancellationToken,
    /// Fires when the graceful shutdown period is over.
    pub(crate) terminate: &'a CancellationToken,
    /// Statement capture for the shadow.
    pub(crate) capture: Option<H::Capture>,
    /// Largest client message copied for capture.
    pub(crate) capture_limit: usize,
    /// Where `tiebreak.apply_to_primary` rewrites come from.
    pub(crate) handoff: &'a H,
}

/// Relays between `client` and `server` until one side ends the session.
/// Returns how it ended and the final session state.
pub(crate) async fn run<H: Handoff>(
    client: &mut Stream,
    server: &mut Stream,
    ctx: RelayContext<'_, H>,
    traffic: &Traffic,
) -> (RelayEnd, SessionState<H::Capture>) {
    let capturing = ctx.capture.is_some();
    let state = Mutex::new(SessionState::new(ctx.capture));
    traffic.client_at_boundary.store(true, Ordering::Relaxed);
    let end = {
        let mut from_client = ClientMessages {
            state: &state,
            max_body_len: ctx.max_client_message,
            capture_limit: if capturing { ctx.capture_limit } else { 0 },
            primary_rewrites: ctx.handoff.rewrites_primary().then_some(ctx.handoff),
        };
        let mut from_server = ServerMessages {
            state: &state,
            cancel_registry: ctx.cancel_registry,
            upstream_addr: ctx.upstream_addr,
            capturing,
        };
        let (client_rx, client_tx) = client.split();
        let (server_rx, server_tx) = server.split();
        let upstream = pump(
            client_rx,
            server_tx,
            &mut from_client,
            &traffic.from_client,
            None,
        );
        let downstream = pump(
            server_rx,
            client_tx,
            &mut from_server,
            &traffic.from_server,
            Some(&traffic.client_at_boundary),
        );
        tokio::pin!(upstream, downstream);
        let mut draining = false;
        // Set once Terminate has been forwarded: the server still answers
        // whatever the client pipelined before it, then closes, and the
        // client gets every reply, as it would directly.
        let mut terminated = false;
        loop {
            tokio::select! {
                r = &mut upstream, if !terminated => match r {
                    Ok(PumpEnd::Stopped) => terminated = true,
                    Ok(PumpEnd::Eof) | Err(PumpError::Read(_)) => break RelayEnd::ClientClosed,
                    Err(PumpError::Write(e)) => break RelayEnd::ServerFailed(format!("write to upstream failed: {e}")),
                    Err(PumpError::Protocol(v)) => break RelayEnd::ClientViolation(v.0),
                },
                r = &mut downstream => break match r {
                    _ if terminated => RelayEnd::ClientTerminated,
                    Ok(PumpEnd::Stopped) => RelayEnd::Drained,
                    Ok(PumpEnd::Eof) => RelayEnd::ServerClosed,
                    Err(PumpError::Read(e)) => RelayEnd::ServerFailed(format!("read from upstream failed: {e}")),
                    Err(PumpError::Write(_)) => RelayEnd::ClientClosed,
                    Err(PumpError::Protocol(v)) => RelayEnd::ServerFailed(v.0),
                },
                _ = ctx.drain.cancelled(), if !draining => {
                    draining = true;
                    let mut s = lock(&state);
                    s.draining = true;
                    if s.idle() && traffic.client_at_boundary.load(Ordering::Relaxed) {
                        break RelayEnd::Drained;
                    }
                },
                _ = ctx.terminate.cancelled() => break RelayEnd::Terminated,
            }
        }
    };
    (
        end,
        state.into_inner().unwrap_or_else(PoisonError::into_inner),
    )
}

/// How a pump ended without error.
#[derive(Debug)]
enum PumpEnd {
    /// The reading side closed.
    Eof,
    /// The handler asked to stop after a message.
    Stopped,
}

/// How a pump failed.
#[derive(Debug)]
enum PumpError<E> {
    Read(std::io::Error),
    Write(std::io::Error),
    Protocol(E),
}

/// Moves bytes from `from` to `to`, classifying them with `handler`.
///
/// Cancellation-safe at the session level: `read_buf` loses nothing when
/// the future is dropped, and a write interrupted mid-way leaves
/// `boundary` false, so nothing is appended to a half-written message.
async fn pump<R, W, H>(
    mut from: R,
    mut to: W,
    handler: &mut H,
    forwarded: &AtomicU64,
    boundary: Option<&AtomicBool>,
) -> Result<PumpEnd, PumpError<H::Error>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    H: FrameHandler,
{
    let mut framer = Framer::new();
    let mut buf = BytesMut::new();
    let mut chunk = MIN_READ_CHUNK;
    loop {
        if buf.capacity() - buf.len() < chunk / 2 {
            buf.reserve(chunk);
        }
        let spare = buf.capacity() - buf.len();
        let n = from.read_buf(&mut buf).await.map_err(PumpError::Read)?;
        if n == 0 {
            return Ok(PumpEnd::Eof);
        }
        let advance = framer
            .advance(&mut buf, handler)
            .map_err(PumpError::Protocol)?;
        if advance.forward > 0 {
            if let Some(b) = boundary {
                b.store(false, Ordering::Relaxed);
            }
            to.write_all(&buf[..advance.forward])
                .await
                .map_err(PumpError::Write)?;
            // TLS may keep encrypted records back when the socket is full;
            // on plain TCP this returns at once.
            to.flush().await.map_err(PumpError::Write)?;
            buf.advance(advance.forward);
            forwarded.fetch_add(advance.forward as u64, Ordering::Relaxed);
            if let Some(b) = boundary {
                b.store(framer.at_boundary(), Ordering::Relaxed);
            }
        }
        if advance.stop {
            return Ok(PumpEnd::Stopped);
        }
        // Grow while bulk transfers fill every read; shrink back when
        // traffic is chatty again, so idle sessions stay small.
        if n == spare && chunk < MAX_READ_CHUNK {
            chunk *= 2;
        } else if n < chunk / 8 && chunk > MIN_READ_CHUNK {
            chunk /= 2;
            if buf.is_empty() && buf.capacity() > 2 * chunk {
                buf = BytesMut::new();
            }
        }
    }
}
