//! One client connection, from accept to close.
//!
//! Handshake (TLS set up if the client asks and a certificate is
//! configured), then either a cancel
//! request is routed, or the StartupMessage is forwarded verbatim to a new
//! upstream connection and the [`relay`](super::relay) takes over:
//! authentication passes through it untouched, apart from channel binding.
//! When the relay ends, the session makes sure nothing is left behind:
//! a query still running for a client that went away is cancelled.

use crate::capture::sample::SessionSettings;
use crate::observability::metrics::{
    CLIENT_CONNECTIONS, SESSIONS_ENDED_TOTAL, UPSTREAM_CONNECT_ERRORS_TOTAL,
};
use crate::protocol::error_response::{sqlstate, ProxyError};
use crate::protocol::startup::CancelRequest;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::tls::Stream;

use super::cancel;
use super::context::ProxyContext;
use super::handoff::Handoff;
use super::handshake::{self, ClientTls, HandshakeError, Opening};
use super::relay::{self, RelayContext, RelayEnd, SessionState, Traffic};
use super::slots::Admission;
use super::upstream;

/// Why a client connection ended: a bounded set, used as a metric label
/// and in the session's last log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed the connection without Terminate.
    ClientClosed,
    /// The client broke the protocol and got SQLSTATE 08P01.
    ClientProtocolViolation,
    /// The client did not complete its startup in time.
    StartupTimeout,
    /// The TLS handshake with the client failed (untrusted certificate,
    /// no TLS spoken).
    TlsHandshakeFailed,
    /// A plain connection under `listen.tls_mode = "require"`.
    TlsRequired,
    /// The connection only carried a cancel request.
    CancelRequest,
    /// The upstream could not be reached.
    UpstreamUnreachable,
    /// The upstream closed the connection (after a FATAL error, or when the
    /// server shut down).
    ServerClosed,
    /// The upstream connection failed or the server broke the protocol.
    ServerFailed,
    /// The proxy shut down.
    Shutdown,
    /// Beyond `listen.max_client_connections`: refused with SQLSTATE 53300
    /// (or, with too many refusals in progress, closed at once).
    TooManyConnections,
}

impl SessionEnd {
    /// Stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            SessionEnd::ClientTerminated => "client_terminated",
            SessionEnd::ClientClosed => "client_closed",
            SessionEnd::ClientProtocolViolation => "client_protocol_violation",
            SessionEnd::StartupTimeout => "startup_timeout",
            SessionEnd::TlsHandshakeFailed => "tls_handshake_failed",
            SessionEnd::TlsRequired => "tls_required",
            SessionEnd::CancelRequest => "cancel_request",
            SessionEnd::UpstreamUnreachable => "upstream_unreachable",
            SessionEnd::ServerClosed => "server_closed",
            SessionEnd::ServerFailed => "server_failed",
            SessionEnd::Shutdown => "shutdown",
            SessionEnd::TooManyConnections => "too_many_connections",
        }
    }
}

/// Serves one accepted client connection to its end.
pub(crate) async fn serve<H: Handoff>(
    ctx: std::sync::Arc<ProxyContext<H>>,
    conn_id: u64,
    client: TcpStream,
    peer: SocketAddr,
    admission: Admission,
) {
    let span = tracing::info_span!(
        "session",
        conn = conn_id,
        %peer,
        tls = tracing::field::Empty,
        user = tracing::field::Empty,
        database = tracing::field::Empty,
        pid = tracing::field::Empty,
    );
    async move {
        metrics::gauge!(CLIENT_CONNECTIONS).increment(1.0);
        let started = Instant::now();
        let traffic = Traffic::default();
        let end = run(&ctx, client, &traffic, &admission).await;
        drop(admission);
        metrics::gauge!(CLIENT_CONNECTIONS).decrement(1.0);
        metrics::counter!(SESSIONS_ENDED_TOTAL, "reason" => end.label()).increment(1);
        tracing::info!(
            reason = end.label(),
            duration_ms = started.elapsed().as_millis() as u64,
            bytes_from_client = traffic.from_client.load(Ordering::Relaxed),
            bytes_from_server = traffic.from_server.load(Ordering::Relaxed),
            "session ended"
        );
    }
    .instrument(span)
    .await
}

/// A connection beyond `listen.max_client_connections` while too many
/// refusals are already in progress: closed without a word (dropping the
/// stream closes it), but counted and logged like any other session end.
pub(crate) fn drop_beyond_limit(peer: SocketAddr, limit: usize) {
    let end = SessionEnd::TooManyConnections;
    metrics::counter!(SESSIONS_ENDED_TOTAL, "reason" => end.label()).increment(1);
    // Debug only: under a connection flood this is one line per attempt;
    // the counter shows it.
    tracing::debug!(%peer, limit, reason = end.label(), "connection closed at once: too many connections and refusals in progress");
}

async fn run<H: Handoff>(
    ctx: &ProxyContext<H>,
    client: TcpStream,
    traffic: &Traffic,
    admission: &Admission,
) -> SessionEnd {
    let config = &ctx.config;
    if let Err(e) = client.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on the client socket");
    }
    let tls = ClientTls {
        server: ctx.client_tls.as_deref(),
        mode: config.listen.tls_mode,
    };
    let deadline = tokio::time::Instant::now() + config.listen.startup_timeout();
    let (mut client, opening) = match handshake::negotiate(client, tls, deadline).await {
        Ok(pair) => pair,
        Err((e, stream)) => return refuse_startup(config, e, stream).await,
    };
    let startup = match opening {
        Opening::Cancel(request) => {
            cancel_query(ctx, &request).await;
            return SessionEnd::CancelRequest;
        }
        Opening::Startup(startup) => startup,
    };
    if matches!(admission, Admission::Refused(_)) {
        let limit = config.listen.max_client_connections;
        let err = ProxyError::fatal(
            sqlstate::TOO_MANY_CONNECTIONS,
            format!("too many connections to pgshadow (listen.max_client_connections = {limit})"),
        );
        tracing::info!(
            limit,
            "client refused: listen.max_client_connections reached"
        );
        send_error(&mut client, &err).await;
        return SessionEnd::TooManyConnections;
    }
    let span = tracing::Span::current();
    span.record("tls", client.is_tls());
    span.record("user", startup.user());
    span.record("database", startup.database());

    let (mut server, upstream_addr) =
        match upstream::connect(&config.upstream, &ctx.upstream_tls).await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "upstream unreachable");
                metrics::counter!(UPSTREAM_CONNECT_ERRORS_TOTAL).increment(1);
                let err = ProxyError::fatal(sqlstate::CONNECTION_FAILURE, format!("pgshadow {e}"))
                    .hint(e.hint());
                send_error(&mut client, &err).await;
                return SessionEnd::UpstreamUnreachable;
            }
        };
    let sent = async {
        server.write_all(&startup.raw).await?;
        server.flush().await
    };
    if let Err(e) = sent.await {
        tracing::warn!(error = %e, "upstream closed the connection before startup");
        let err = ProxyError::fatal(
            sqlstate::CONNECTION_FAILURE,
            format!("pgshadow lost the connection to upstream {upstream_addr}: {e}"),
        );
        send_error(&mut client, &err).await;
        return SessionEnd::ServerFailed;
    }
    tracing::debug!(%upstream_addr, "startup forwarded");

    let handoff = &ctx.handoff;
    let capture = if handoff.captures() {
        let mut settings = SessionSettings::default();
        for (name, value) in &startup.params {
            settings.set(name, value);
        }
        handoff.capture(startup.database(), settings)
    } else {
        None
    };
    let relay_ctx = RelayContext {
        max_client_message: config.listen.max_message_bytes,
        cancel_registry: &ctx.cancel_registry,
        upstream_addr,
        drain: &ctx.drain,
        terminate: &ctx.terminate,
        capture_limit: if capture.is_some() {
            handoff.capture_limit()
        } else {
            0
        },
        capture,
        handoff,
    };
    let (end, state) = relay::run(&mut client, &mut server, relay_ctx, traffic).await;
    let at_boundary = traffic.client_at_boundary.load(Ordering::Relaxed);
    finish(
        ctx,
        end,
        state,
        at_boundary,
        &mut client,
        &mut server,
        upstream_addr,
    )
    .await
}

/// Ends a connection whose startup failed, telling the client why when
/// its stream can still carry an ErrorResponse.
async fn refuse_startup(
    config: &crate::config::Config,
    error: HandshakeError,
    stream: Option<Stream>,
) -> SessionEnd {
    let (end, err) = match error {
        HandshakeError::Io(e) => {
            tracing::debug!(error = %e, "client left during startup");
            return SessionEnd::ClientClosed;
        }
        HandshakeError::Tls(e) => {
            tracing::info!(error = %e, "TLS handshake with the client failed");
            return SessionEnd::TlsHandshakeFailed;
        }
        HandshakeError::Timeout => {
            let err = ProxyError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "no startup packet received within {} ms",
                    config.listen.startup_timeout_ms
                ),
            );
            tracing::info!("{}", err.message());
            (SessionEnd::StartupTimeout, err)
        }
        e @ HandshakeError::TlsRequired => {
            tracing::info!("plain connection refused: listen.tls_mode = \"require\"");
            (
                SessionEnd::TlsRequired,
                ProxyError::fatal(sqlstate::INVALID_AUTHORIZATION, e.to_string()),
            )
        }
        e @ (HandshakeError::Malformed(_) | HandshakeError::Repeated(_)) => {
            tracing::info!(error = %e, "invalid startup from client");
            (
                SessionEnd::ClientProtocolViolation,
                ProxyError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()),
            )
        }
    };
    if let Some(mut stream) = stream {
        send_error(&mut stream, &err).await;
    }
    end
}

/// Closes a session whose relay has ended, so that nothing lingers
/// upstream and the client learns why, when it can still be told.
async fn finish<H: Handoff>(
    ctx: &ProxyContext<H>,
    end: RelayEnd,
    state: SessionState<H::Capture>,
    client_at_boundary: bool,
    client: &mut Stream,
    server: &mut Stream,
    upstream_addr: SocketAddr,
) -> SessionEnd {
    // A client that leaves mid-query must not leave the query running: the
    // backend would only notice the closed socket when it next writes.
    let abandoned = !matches!(
        end,
        RelayEnd::ClientTerminated | RelayEnd::ServerClosed | RelayEnd::ServerFailed(_)
    );
    if abandoned && state.busy() {
        if let Some(registration) = &state.registration {
            let request = CancelRequest::encode(registration.key());
            match upstream::send_cancel(
                upstream_addr,
                &request,
                ctx.config.upstream.connect_timeout(),
            )
            .await
            {
                Ok(()) => tracing::info!("cancelled the query the client left running"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not cancel the query the client left running")
                }
            }
        }
    }
    let (outcome, client_error) = match end {
        RelayEnd::ClientTerminated => (SessionEnd::ClientTerminated, None),
        RelayEnd::ClientClosed => (SessionEnd::ClientClosed, None),
        RelayEnd::ClientViolation(message) => {
            tracing::info!(%message, "protocol violation by client");
            (
                SessionEnd::ClientProtocolViolation,
                Some(ProxyError::fatal(sqlstate::PROTOCOL_VIOLATION, message)),
            )
        }
        RelayEnd::ServerClosed => (SessionEnd::ServerClosed, None),
        RelayEnd::ServerFailed(message) => {
            tracing::warn!(%message, "upstream connection failed");
            (
                SessionEnd::ServerFailed,
                Some(ProxyError::fatal(
                    sqlstate::CONNECTION_FAILURE,
                    format!("pgshadow lost the connection to upstream {upstream_addr}: {message}"),
                )),
            )
        }
        RelayEnd::Drained | RelayEnd::Terminated => (
            SessionEnd::Shutdown,
            Some(ProxyError::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection because pgshadow is shutting down",
            )),
        ),
    };
    if matches!(outcome, SessionEnd::Shutdown) {
        // Say goodbye upstream too, so the server logs a clean disconnect.
        let _ = server
            .write_all(&crate::protocol::framing::encode_message(b'X', &[]))
            .await;
        let _ = server.flush().await;
    }
    if let Some(err) = client_error {
        if client_at_boundary {
            send_error(client, &err).await;
        }
    }
    outcome
}

async fn cancel_query<H>(ctx: &ProxyContext<H>, request: &CancelRequest) {
    let upstream = &ctx.config.upstream;
    cancel::handle_request(
        &ctx.cancel_registry,
        request,
        (upstream.host.as_str(), upstream.port),
        upstream.connect_timeout(),
    )
    .await;
}

/// Sends an ErrorResponse; the connection is closed right after, so a
/// failure to send only matters to the log.
async fn send_error(client: &mut Stream, err: &ProxyError) {
    let sent = async {
        client.write_all(&err.encode()).await?;
        client.flush().await
    };
    if let Err(e) = sent.await {
        tracing::debug!(error = %e, "could not send the error to the client");
    }
    // Also ends TLS with close_notify.
    let _ = client.shutdown().await;
}
