//! What the relay does with the messages it looks at.
//!
//! - From the client: the type byte of every message (it must be a
//!   frontend type), the header of Terminate, Sync and Flush (which carry
//!   no body: one announced is refused with 08P01 before it is read), the
//!   length of every message before authentication has completed (at most
//!   [`frontend::MAX_AUTH_MESSAGE_LEN`], so an unauthenticated peer cannot
//!   make the proxy hold more), Terminate (a clean goodbye), and, when statement
//!   capture is on, copies of Query, Parse, Bind, Execute and Close.
//! - From the server: Authentication (channel binding is stripped from
//!   SASL offers), BackendKeyData (registered for cancel routing),
//!   ReadyForQuery (which tells when the session is idle) and, for capture,
//!   the type bytes of the replies that pair with requests.

use super::state::{lock, Phase, SessionState};
use crate::capture::handoff::SessionCapture;
use crate::capture::lexer;
use crate::protocol::backend::{self, tag as server_tag};
use crate::protocol::error_response::parse_error_fields;
use crate::protocol::framing::{
    encode_message, Disposition, FrameHandler, FramingError, Header, TagDisplay, Verdict,
};
use crate::protocol::frontend::{self, tag as client_tag};
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::proxy::cancel::CancelRegistry;
use crate::proxy::handoff::Handoff;

/// Largest server message the relay holds back for inspection. Bigger ones
/// (never seen in practice for the inspected types) are streamed.
const MAX_INSPECTED_SERVER_MESSAGE: usize = 64 * 1024;

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

/// Largest Query/Parse considered for `tiebreak.apply_to_primary`.
const MAX_PRIMARY_REWRITE: usize = 1024 * 1024;

/// Client-to-server decisions.
pub(super) struct ClientMessages<'a, H: Handoff> {
    /// `tiebreak.apply_to_primary`: where the application's own ORDER BY
    /// statements get their tiebreaker.
    pub(super) primary_rewrites: Option<&'a H>,
    pub(super) state: &'a Mutex<SessionState<H::Capture>>,
    pub(super) max_body_len: usize,
    /// Largest message copied for capture; 0 when capture is off.
    pub(super) capture_limit: usize,
}

/// Client messages whose content statement capture reads.
fn captured_content(tag: u8) -> bool {
    matches!(
        tag,
        client_tag::QUERY
            | client_tag::PARSE
            | client_tag::BIND
            | client_tag::EXECUTE
            | client_tag::CLOSE
    )
}

impl<H: Handoff> FrameHandler for ClientMessages<'_, H> {
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
        if let Some(name) = frontend::bodyless_name(header.tag) {
            if header.body_len > 0 {
                return Err(ClientViolation(format!(
                    "invalid {name} message: it announces a body of {} bytes, but {name} \
                     has none",
                    header.body_len
                )));
            }
        }
        if header.tag == client_tag::TERMINATE {
            return Ok(Disposition::Inspect);
        }
        let mut s = lock(self.state);
        if s.phase == Phase::Authenticating && header.body_len > frontend::MAX_AUTH_MESSAGE_LEN {
            return Err(ClientViolation(format!(
                "message type {} of {} bytes before authentication completed exceeds the \
                 limit of {} bytes",
                TagDisplay(header.tag),
                header.body_len,
                frontend::MAX_AUTH_MESSAGE_LEN
            )));
        }
        s.sent_since_ready = true;
        if header.tag == client_tag::PASSWORD && s.channel_binding_stripped {
            // The SASLInitialResponse that answers the stripped offer.
            return Ok(Disposition::Inspect);
        }
        if frontend::expects_ready_for_query(header.tag) {
            s.awaiting_ready = s.awaiting_ready.saturating_add(1);
        }
        let rewrite = self.primary_rewrites.is_some()
            && matches!(header.tag, client_tag::QUERY | client_tag::PARSE)
            && header.body_len <= MAX_PRIMARY_REWRITE;
        if let Some(tracker) = s.tracker.as_mut() {
            if captured_content(header.tag) && header.body_len <= self.capture_limit {
                return Ok(Disposition::Inspect);
            }
            tracker.on_untracked(header.tag);
        }
        Ok(if rewrite {
            Disposition::Inspect
        } else {
            Disposition::Stream
        })
    }

    fn on_message(&mut self, header: Header, frame: &[u8]) -> Result<Verdict, ClientViolation> {
        if header.tag == client_tag::TERMINATE {
            return Ok(Verdict::ForwardAndStop);
        }
        let body = frame.get(5..).unwrap_or_default();
        let mut s = lock(self.state);
        if header.tag == client_tag::PASSWORD && s.channel_binding_stripped {
            s.channel_binding_stripped = false;
            if claims_channel_binding(body) {
                return Err(ClientViolation(CHANNEL_BINDING_REFUSED.into()));
            }
            return Ok(Verdict::Forward);
        }
        if let Some(tracker) = s.tracker.as_mut() {
            // The tracker sees what the application sent.
            match header.tag {
                client_tag::QUERY => tracker.on_query(body),
                client_tag::PARSE => tracker.on_parse(body),
                client_tag::BIND => tracker.on_bind(body),
                client_tag::EXECUTE => tracker.on_execute(body),
                client_tag::CLOSE => tracker.on_close(body),
                _ => {}
            }
        }
        drop(s);
        let replacement = self
            .primary_rewrites
            .and_then(|cache| with_tiebreaker(cache, header.tag, body));
        Ok(match replacement {
            Some(frame) => Verdict::Replace(frame),
            None => Verdict::Forward,
        })
    }
}

/// Why a client that offers SCRAM channel binding is refused when the
/// server offered `SCRAM-SHA-256-PLUS` (so the upstream leg is TLS).
const CHANNEL_BINDING_REFUSED: &str = "SCRAM channel binding cannot pass through pgshadow: your \
    client supports it over its TLS connection, but the binding would be to pgshadow's TLS \
    session, not the server's, and the server refuses such a login as a downgrade; connect with \
    channel_binding=disable (SCRAM-SHA-256 still checks the password, and both legs stay \
    encrypted)";

/// Whether a SASLInitialResponse for SCRAM says "I support channel binding
/// but think the server does not" (GS2 flag `y`), which a TLS server that
/// offered `-PLUS` rejects as a downgrade. Undecodable bodies are left to
/// the server.
fn claims_channel_binding(body: &[u8]) -> bool {
    let mut r = crate::protocol::reader::BodyReader::new(body);
    let Ok(mechanism) = r.cstr("SASL mechanism") else {
        return false;
    };
    mechanism.starts_with(b"SCRAM-") && r.remaining().get(4..).is_some_and(|d| d.starts_with(b"y,"))
}

/// `tiebreak.apply_to_primary`: the Query or Parse message rebuilt with the
/// tiebreaker appended to its ORDER BY, or `None` to forward it as is.
/// Only statements that may be single reads with an ORDER BY are parsed
/// (once per distinct text; the plan cache remembers).
fn with_tiebreaker<H: Handoff>(cache: &H, tag: u8, body: &[u8]) -> Option<Vec<u8>> {
    let (sql, rest) = match tag {
        client_tag::QUERY => (frontend::query(body).ok()?, Vec::new()),
        client_tag::PARSE => {
            let p = frontend::parse(body).ok()?;
            let mut rest = p.name.to_vec();
            rest.push(0);
            (p.sql, rest)
        }
        _ => return None,
    };
    let lexed = lexer::lex_bytes(sql);
    if lexed.statements != 1 || !lexed.may_be_read() || !mentions_order(sql) {
        return None;
    }
    let new_sql = cache.primary_rewrite(std::str::from_utf8(sql).ok()?)?;
    let mut out = Vec::with_capacity(body.len() + 64);
    match tag {
        client_tag::QUERY => {
            out.extend_from_slice(new_sql.as_bytes());
            out.push(0);
        }
        _ => {
            // Parse: name, new SQL, then the parameter types unchanged.
            let types = body.get(rest.len() + sql.len() + 1..)?;
            out.extend_from_slice(&rest);
            out.extend_from_slice(new_sql.as_bytes());
            out.push(0);
            out.extend_from_slice(types);
        }
    }
    tracing::debug!("tiebreaker appended to the application's ORDER BY");
    Some(encode_message(tag, &out))
}

/// A cheap, conservative test for the word ORDER (any case).
fn mentions_order(sql: &[u8]) -> bool {
    sql.windows(5).any(|w| w.eq_ignore_ascii_case(b"order"))
}

/// Server-to-client decisions.
pub(super) struct ServerMessages<'a, C> {
    pub(super) state: &'a Mutex<SessionState<C>>,
    pub(super) cancel_registry: &'a CancelRegistry,
    pub(super) upstream_addr: SocketAddr,
    /// Statement capture is on: replies are paired with requests.
    pub(super) capturing: bool,
}

impl<C: SessionCapture> FrameHandler for ServerMessages<'_, C> {
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
            server_tag::PARAMETER_STATUS => self.capturing,
            server_tag::AUTHENTICATION
            | server_tag::BACKEND_KEY_DATA
            | server_tag::ERROR_RESPONSE => {
                let mut s = lock(self.state);
                if s.phase == Phase::Authenticating {
                    true
                } else {
                    if let Some(t) = s.tracker.as_mut() {
                        t.on_server_message(header.tag);
                    }
                    false
                }
            }
            tag if self.capturing && server_tag::pairs_with_request(tag) => {
                if let Some(t) = lock(self.state).tracker.as_mut() {
                    t.on_server_message(tag);
                }
                false
            }
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
                    lock(self.state).channel_binding_stripped = true;
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
            server_tag::PARAMETER_STATUS => {
                if let Ok((name, value)) = backend::parameter_status(body) {
                    if let Some(t) = lock(self.state).tracker.as_mut() {
                        t.on_parameter_status(&name, &value);
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

impl<C: SessionCapture> ServerMessages<'_, C> {
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
            let status = s.transaction;
            if let Some(t) = s.tracker.as_mut() {
                t.on_ready_for_query(status);
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
mod tests;
