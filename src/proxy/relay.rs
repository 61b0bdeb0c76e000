//! The primary path: bytes between one client and its upstream backend.
//!
//! Two pumps run concurrently in the session's task, one per direction, so
//! that whatever the server sends unasked (NOTIFY, ParameterStatus, notices)
//! reaches the client at once, and neither direction can block the other.
//! Each pump is a loop in the spirit of PgBouncer's `sbuf.c`: read what is
//! there, let the [`Framer`] walk the message headers, write the bytes on.
//! Rows, COPY data and every other message are streamed without being
//! decoded. A few small messages are inspected as copies:
//!
//! - from the client: Terminate (a clean goodbye), and the type byte of
//!   every message, which must be a frontend message type;
//! - from the server: Authentication (channel binding is stripped from
//!   SASL offers), BackendKeyData (registered for cancel routing) and
//!   ReadyForQuery (which tells when the session is idle).
//!
//! The shared [`SessionState`] sits behind a mutex that is only ever taken
//! between awaits, per message header, and is therefore uncontended.

use crate::protocol::backend::{self, tag as server_tag, TransactionStatus};
use crate::protocol::error_response::parse_error_fields;
use crate::protocol::framing::{
    Disposition, FrameHandler, Framer, FramingError, Header, TagDisplay, Verdict,
};
use crate::protocol::frontend::{self, tag as client_tag};
use bytes::{Buf, BytesMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::cancel::{CancelRegistry, Registration};

/// Smallest read buffer; idle sessions shrink back to it.
const MIN_READ_CHUNK: usize = 8 * 1024;
/// Largest read buffer, reached while a bulk transfer fills every read.
const MAX_READ_CHUNK: usize = 256 * 1024;
/// Largest server message the relay holds back for inspection. Bigger ones
/// (never seen in practice for the inspected types) are streamed.
const MAX_INSPECTED_SERVER_MESSAGE: usize = 64 * 1024;

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// StartupMessage forwarded; authentication under way.
    Authenticating,
    /// The first ReadyForQuery has been seen.
    Ready,
}

/// What both directions of a session know about it.
#[derive(Debug)]
pub(crate) struct SessionState {
    /// Where the session is in its life.
    pub(crate) phase: Phase,
    /// ReadyForQuery messages the server still owes: one per Query, Sync
    /// and FunctionCall forwarded.
    pub(crate) awaiting_ready: u32,
    /// The client sent a message since the last ReadyForQuery (covers
    /// extended-protocol batches flushed without Sync).
    pub(crate) sent_since_ready: bool,
    /// Transaction status of the last ReadyForQuery.
    pub(crate) transaction: TransactionStatus,
    /// The proxy is shutting down: end the session at the next idle point.
    pub(crate) draining: bool,
    /// The backend's cancel key, registered while the session lives.
    pub(crate) registration: Option<Registration>,
}

impl SessionState {
    fn new() -> Self {
        Self {
            phase: Phase::Authenticating,
            awaiting_ready: 0,
            sent_since_ready: false,
            transaction: TransactionStatus::Idle,
            draining: false,
            registration: None,
        }
    }

    /// Whether the server may be running something for this client.
    pub(crate) fn busy(&self) -> bool {
        self.awaiting_ready > 0 || self.sent_since_ready
    }

    /// Whether the session could be closed now without interrupting
    /// anything: logged in, nothing in flight, no transaction open.
    fn idle(&self) -> bool {
        self.phase == Phase::Ready && !self.busy() && self.transaction == TransactionStatus::Idle
    }
}

/// Byte counts and the client-side message boundary, updated by the pumps.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// Bytes forwarded from the client to the server.
    pub(crate) from_client: AtomicU64,
    /// Bytes forwarded from the server to the client.
    pub(crate) from_server: AtomicU64,
    /// Everything written to the client so far ends on a message boundary,
    /// so the proxy may append an ErrorResponse of its own.
    pub(crate) client_at_boundary: AtomicBool,
}

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
pub(crate) struct RelayContext<'a> {
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
}

/// Relays between `client` and `server` until one side ends the session.
/// Returns how it ended and the final session state.
pub(crate) async fn run(
    client: &mut TcpStream,
    server: &mut TcpStream,
    ctx: RelayContext<'_>,
    traffic: &Traffic,
) -> (RelayEnd, SessionState) {
    let state = Mutex::new(SessionState::new());
    traffic.client_at_boundary.store(true, Ordering::Relaxed);
    let end = {
        let mut from_client = ClientMessages {
            state: &state,
            max_body_len: ctx.max_client_message,
        };
        let mut from_server = ServerMessages {
            state: &state,
            cancel_registry: ctx.cancel_registry,
            upstream_addr: ctx.upstream_addr,
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

fn lock(state: &Mutex<SessionState>) -> MutexGuard<'_, SessionState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
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

/// A protocol violation by the client, with a message for its
/// ErrorResponse.
#[derive(Debug)]
pub(crate) struct ClientViolation(pub(crate) String);

impl From<FramingError> for ClientViolation {
    fn from(e: FramingError) -> Self {
        ClientViolation(e.to_string())
    }
}

/// A protocol violation by the server.
#[derive(Debug)]
pub(crate) struct ServerViolation(pub(crate) String);

impl From<FramingError> for ServerViolation {
    fn from(e: FramingError) -> Self {
        ServerViolation(format!("upstream sent an invalid message: {e}"))
    }
}

/// Client-to-server decisions.
struct ClientMessages<'a> {
    state: &'a Mutex<SessionState>,
    max_body_len: usize,
}

impl FrameHandler for ClientMessages<'_> {
    type Error = ClientViolation;

    fn max_body_len(&self) -> usize {
        self.max_body_len
    }

    fn check_tag(&self, tag: u8) -> Result<(), ClientViolation> {
        if frontend::is_frontend_tag(tag) {
            Ok(())
        } else {
            Err(ClientViolation(format!(
                "invalid frontend message type {}",
                TagDisplay(tag)
            )))
        }
    }

    fn on_header(&mut self, header: Header) -> Result<Disposition, ClientViolation> {
        if header.tag == client_tag::TERMINATE {
            return Ok(Disposition::Inspect);
        }
        let mut s = lock(self.state);
        s.sent_since_ready = true;
        if frontend::expects_ready_for_query(header.tag) {
            s.awaiting_ready = s.awaiting_ready.saturating_add(1);
        }
        Ok(Disposition::Stream)
    }

    fn on_message(&mut self, _header: Header, _frame: &[u8]) -> Result<Verdict, ClientViolation> {
        // Only Terminate is inspected: forward it, then stop reading.
        Ok(Verdict::ForwardAndStop)
    }
}

/// Server-to-client decisions.
struct ServerMessages<'a> {
    state: &'a Mutex<SessionState>,
    cancel_registry: &'a CancelRegistry,
    upstream_addr: SocketAddr,
}

impl FrameHandler for ServerMessages<'_> {
    type Error = ServerViolation;

    fn max_body_len(&self) -> usize {
        usize::MAX
    }

    fn on_header(&mut self, header: Header) -> Result<Disposition, ServerViolation> {
        if header.body_len > MAX_INSPECTED_SERVER_MESSAGE {
            return Ok(Disposition::Stream);
        }
        let inspect = match header.tag {
            server_tag::READY_FOR_QUERY => true,
            server_tag::AUTHENTICATION
            | server_tag::BACKEND_KEY_DATA
            | server_tag::ERROR_RESPONSE => lock(self.state).phase == Phase::Authenticating,
            _ => false,
        };
        Ok(if inspect {
            Disposition::Inspect
        } else {
            Disposition::Stream
        })
    }

    fn on_message(&mut self, header: Header, frame: &[u8]) -> Result<Verdict, ServerViolation> {
        let body = frame.get(5..).unwrap_or_default();
        match header.tag {
            server_tag::READY_FOR_QUERY => Ok(self.ready_for_query(body)),
            server_tag::AUTHENTICATION => match backend::strip_channel_binding(frame) {
                Ok(Some(rewritten)) => {
                    tracing::debug!("removed SCRAM-SHA-256-PLUS from the offered SASL mechanisms");
                    Ok(Verdict::Replace(rewritten))
                }
                Ok(None) => Ok(Verdict::Forward),
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable authentication request forwarded as is");
                    Ok(Verdict::Forward)
                }
            },
            server_tag::BACKEND_KEY_DATA => {
                match backend::backend_key_data(body) {
                    Ok(key) => {
                        tracing::Span::current().record("pid", key.pid);
                        let registration = self.cancel_registry.register(key, self.upstream_addr);
                        lock(self.state).registration = Some(registration);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable BackendKeyData forwarded as is")
                    }
                }
                Ok(Verdict::Forward)
            }
            server_tag::ERROR_RESPONSE => {
                if let Ok(fields) = parse_error_fields(body) {
                    tracing::info!(
                        sqlstate = %fields.code,
                        message = %fields.message,
                        "upstream refused the session"
                    );
                }
                Ok(Verdict::Forward)
            }
            _ => Ok(Verdict::Forward),
        }
    }
}

impl ServerMessages<'_> {
    fn ready_for_query(&self, body: &[u8]) -> Verdict {
        let mut s = lock(self.state);
        if let Ok(status) = backend::ready_for_query(body) {
            s.transaction = status;
        }
        if s.phase == Phase::Authenticating {
            s.phase = Phase::Ready;
            tracing::debug!("session ready");
        } else {
            s.awaiting_ready = s.awaiting_ready.saturating_sub(1);
            if s.awaiting_ready == 0 {
                s.sent_since_ready = false;
            }
        }
        if s.draining && s.idle() {
            Verdict::ForwardAndStop
        } else {
            Verdict::Forward
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::framing::encode_message;
    use proptest::prelude::*;

    /// Feeds `input` in pieces through a framer with `handler`, as a pump
    /// does, and returns the forwarded bytes and whether it failed.
    fn relay<H: FrameHandler>(input: &[u8], cuts: &[usize], handler: &mut H) -> (Vec<u8>, bool) {
        let mut framer = Framer::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut start = 0;
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        ends.push(input.len());
        ends.sort_unstable();
        for end in ends {
            buf.extend_from_slice(&input[start..end.max(start)]);
            start = end.max(start);
            match framer.advance(&mut buf, handler) {
                Ok(a) => {
                    out.extend_from_slice(&buf.split_to(a.forward));
                    if a.stop {
                        return (out, false);
                    }
                }
                Err(_) => return (out, true),
            }
        }
        (out, false)
    }

    fn frontend_message() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::sample::select(b"BCdcfDEHFPpQS".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(tag, body)| encode_message(tag, &body))
    }

    fn backend_message() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::sample::select(b"RKZESCDTAN123dcGHsnItVv".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(tag, body)| encode_message(tag, &body))
    }

    proptest! {
        #[test]
        fn valid_client_streams_pass_through_unchanged_at_any_chunking(
            msgs in proptest::collection::vec(frontend_message(), 1..30),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let input = msgs.concat();
            let state = Mutex::new(SessionState::new());
            let mut handler = ClientMessages { state: &state, max_body_len: 1 << 20 };
            let (out, failed) = relay(&input, &cuts, &mut handler);
            prop_assert!(!failed);
            prop_assert_eq!(out, input);
            let expected_ready = msgs.iter().filter(|m| frontend::expects_ready_for_query(m[0])).count();
            prop_assert_eq!(lock(&state).awaiting_ready as usize, expected_ready);
        }

        #[test]
        fn random_client_bytes_never_panic(
            input in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let state = Mutex::new(SessionState::new());
            let mut handler = ClientMessages { state: &state, max_body_len: 4096 };
            let (out, _) = relay(&input, &cuts, &mut handler);
            prop_assert!(input.starts_with(&out));
        }

        #[test]
        fn mutated_client_streams_never_panic(
            msgs in proptest::collection::vec(frontend_message(), 1..20),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut input = msgs.concat();
            for (at, x) in flips {
                let i = at % input.len();
                input[i] ^= x;
            }
            let state = Mutex::new(SessionState::new());
            let mut handler = ClientMessages { state: &state, max_body_len: 4096 };
            let (out, _) = relay(&input, &cuts, &mut handler);
            prop_assert!(input.starts_with(&out));
        }

        #[test]
        fn random_and_mutated_server_streams_never_panic(
            msgs in proptest::collection::vec(backend_message(), 0..20),
            noise in proptest::collection::vec(any::<u8>(), 0..500),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut input = msgs.concat();
            input.extend(noise);
            if !input.is_empty() {
                for (at, x) in flips {
                    let i = at % input.len();
                    input[i] ^= x;
                }
            }
            let state = Mutex::new(SessionState::new());
            let registry = CancelRegistry::default();
            let mut handler = ServerMessages {
                state: &state,
                cancel_registry: &registry,
                upstream_addr: SocketAddr::from(([127, 0, 0, 1], 5432)),
            };
            let _ = relay(&input, &cuts, &mut handler);
        }
    }

    #[test]
    fn ready_for_query_settles_the_busy_state() {
        let state = Mutex::new(SessionState::new());
        let registry = CancelRegistry::default();
        let mut server = ServerMessages {
            state: &state,
            cancel_registry: &registry,
            upstream_addr: SocketAddr::from(([127, 0, 0, 1], 5432)),
        };
        let mut client = ClientMessages {
            state: &state,
            max_body_len: 1 << 20,
        };
        let ready = encode_message(b'Z', b"I");
        relay(&ready, &[], &mut server);
        assert_eq!(lock(&state).phase, Phase::Ready);
        assert!(lock(&state).idle());
        // Two pipelined queries: busy until both are answered.
        relay(
            &[
                encode_message(b'Q', b"SELECT 1\0"),
                encode_message(b'Q', b"SELECT 2\0"),
            ]
            .concat(),
            &[],
            &mut client,
        );
        assert_eq!(lock(&state).awaiting_ready, 2);
        relay(&ready, &[], &mut server);
        assert!(lock(&state).busy());
        relay(&ready, &[], &mut server);
        assert!(!lock(&state).busy());
        // An extended batch flushed without Sync keeps the session busy.
        relay(
            &[
                encode_message(b'E', b"\0\0\0\0\0"),
                encode_message(b'H', b""),
            ]
            .concat(),
            &[],
            &mut client,
        );
        assert!(lock(&state).busy());
        relay(&[encode_message(b'Z', b"T")].concat(), &[], &mut server);
        assert!(!lock(&state).idle(), "a transaction is open");
    }
}
