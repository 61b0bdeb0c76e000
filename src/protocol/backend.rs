//! Decoded copies of the few server messages the proxy looks at.
//!
//! The relay forwards the original bytes; these decoders only read copies
//! of complete messages handed over by the framer.

use super::framing::encode_message as encode;
use super::reader::{BodyReader, DecodeError};
use super::startup::{BackendKey, MAX_CANCEL_KEY_LEN, MIN_CANCEL_KEY_LEN};
use bytes::Bytes;

/// Message type bytes sent by the server that the proxy cares about.
pub mod tag {
    /// Authentication request (all `Authentication*` messages).
    pub const AUTHENTICATION: u8 = b'R';
    /// BackendKeyData: process id and cancel secret.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// ReadyForQuery: the server waits for the next command.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// ErrorResponse.
    pub const ERROR_RESPONSE: u8 = b'E';
    /// NoticeResponse.
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// ParameterStatus: a reported setting changed.
    pub const PARAMETER_STATUS: u8 = b'S';
    /// CommandComplete.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// NotificationResponse (NOTIFY).
    pub const NOTIFICATION: u8 = b'A';
    /// NegotiateProtocolVersion.
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    /// ParseComplete: the reply to Parse.
    pub const PARSE_COMPLETE: u8 = b'1';
    /// BindComplete: the reply to Bind.
    pub const BIND_COMPLETE: u8 = b'2';
    /// CloseComplete: the reply to Close.
    pub const CLOSE_COMPLETE: u8 = b'3';
    /// NoData: the reply to Describe of a statement that returns no rows.
    pub const NO_DATA: u8 = b'n';
    /// RowDescription: the columns of the rows that follow (or the reply to
    /// Describe).
    pub const ROW_DESCRIPTION: u8 = b'T';
    /// PortalSuspended: Execute stopped at its row limit.
    pub const PORTAL_SUSPENDED: u8 = b's';
    /// EmptyQueryResponse: the reply to an empty query string.
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';

    /// Whether a reply pairs with a request of the client (by type byte
    /// alone): the replies statement capture follows, each one of the
    /// arms of `capture::tracker::Tracker::on_server_message`.
    #[inline]
    pub fn pairs_with_request(tag: u8) -> bool {
        matches!(
            tag,
            PARSE_COMPLETE
                | BIND_COMPLETE
                | CLOSE_COMPLETE
                | NO_DATA
                | ROW_DESCRIPTION
                | COMMAND_COMPLETE
                | PORTAL_SUSPENDED
                | EMPTY_QUERY_RESPONSE
                | ERROR_RESPONSE
        )
    }
}

/// `AuthenticationOk`.
pub const AUTH_OK: i32 = 0;
/// `AuthenticationSASL`: the body lists mechanisms.
pub const AUTH_SASL: i32 = 10;
/// `AuthenticationSASLContinue`.
pub const AUTH_SASL_CONTINUE: i32 = 11;
/// `AuthenticationSASLFinal`.
pub const AUTH_SASL_FINAL: i32 = 12;

/// The SCRAM mechanism with channel binding. Channel binding ties the
/// authentication to the TLS connection the server sees, which is the
/// proxy's, not the client's, so it can never succeed through a proxy.
pub const SCRAM_PLUS: &[u8] = b"SCRAM-SHA-256-PLUS";

/// Returns the authentication code of an `R` message body.
pub fn authentication_code(body: &[u8]) -> Result<i32, DecodeError> {
    BodyReader::new(body).i32("authentication code")
}

/// Removes `SCRAM-SHA-256-PLUS` from an `AuthenticationSASL` message.
///
/// Takes the whole frame (type byte included) and returns the rewritten
/// frame, or `None` when the message needs no change (not SASL, or no
/// channel-binding mechanism offered).
pub fn strip_channel_binding(frame: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
    let body = frame.get(5..).ok_or(DecodeError::Truncated {
        field: "authentication message",
        wanted: 5,
        available: frame.len(),
    })?;
    let mut r = BodyReader::new(body);
    if r.i32("authentication code")? != AUTH_SASL {
        return Ok(None);
    }
    let mut mechanisms = Vec::new();
    loop {
        let m = r.cstr("SASL mechanism")?;
        if m.is_empty() {
            break;
        }
        mechanisms.push(m);
    }
    if !mechanisms.contains(&SCRAM_PLUS) {
        return Ok(None);
    }
    let mut new_body = AUTH_SASL.to_be_bytes().to_vec();
    for m in mechanisms.into_iter().filter(|m| *m != SCRAM_PLUS) {
        new_body.extend_from_slice(m);
        new_body.push(0);
    }
    new_body.push(0);
    Ok(Some(encode(tag::AUTHENTICATION, &new_body)))
}

/// Decodes BackendKeyData: the real backend pid and its cancel secret.
pub fn backend_key_data(body: &[u8]) -> Result<BackendKey, DecodeError> {
    let mut r = BodyReader::new(body);
    let pid = r.i32("process id")?;
    let secret = r.remaining();
    if !(MIN_CANCEL_KEY_LEN..=MAX_CANCEL_KEY_LEN).contains(&secret.len()) {
        return Err(DecodeError::InvalidValue {
            field: "secret key length",
            value: secret.len() as i64,
        });
    }
    Ok(BackendKey {
        pid,
        secret: Bytes::copy_from_slice(secret),
    })
}

/// Transaction status reported by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block.
    Failed,
}

/// Decodes the ReadyForQuery status byte.
pub fn ready_for_query(body: &[u8]) -> Result<TransactionStatus, DecodeError> {
    let mut r = BodyReader::new(body);
    let status = match r.u8("transaction status")? {
        b'I' => TransactionStatus::Idle,
        b'T' => TransactionStatus::InTransaction,
        b'E' => TransactionStatus::Failed,
        other => {
            return Err(DecodeError::InvalidValue {
                field: "transaction status",
                value: other.into(),
            })
        }
    };
    r.finish()?;
    Ok(status)
}

/// Decodes ParameterStatus into name and value (lossily, for logs and
/// session tracking).
pub fn parameter_status(body: &[u8]) -> Result<(String, String), DecodeError> {
    let mut r = BodyReader::new(body);
    let name = String::from_utf8_lossy(r.cstr("parameter name")?).into_owned();
    let value = String::from_utf8_lossy(r.cstr("parameter value")?).into_owned();
    r.finish()?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl(mechs: &[&[u8]]) -> Vec<u8> {
        let mut body = AUTH_SASL.to_be_bytes().to_vec();
        for m in mechs {
            body.extend_from_slice(m);
            body.push(0);
        }
        body.push(0);
        encode(b'R', &body)
    }

    #[test]
    fn channel_binding_is_stripped_from_sasl_offers() {
        let offer = sasl(&[SCRAM_PLUS, b"SCRAM-SHA-256"]);
        assert_eq!(
            strip_channel_binding(&offer).unwrap(),
            Some(sasl(&[b"SCRAM-SHA-256"]))
        );
        assert_eq!(
            strip_channel_binding(&sasl(&[b"SCRAM-SHA-256"])).unwrap(),
            None
        );
        let md5 = encode(b'R', &[0, 0, 0, 5, 1, 2, 3, 4]);
        assert_eq!(strip_channel_binding(&md5).unwrap(), None);
        assert!(strip_channel_binding(&encode(b'R', &[0, 0, 0, 10, b'x'])).is_err());
    }

    #[test]
    fn backend_key_data_accepts_long_keys_and_refuses_short_ones() {
        let mut body = 77i32.to_be_bytes().to_vec();
        body.extend_from_slice(&[9; 32]);
        let key = backend_key_data(&body).unwrap();
        assert_eq!(key.pid, 77);
        assert_eq!(key.secret.len(), 32);
        assert!(backend_key_data(&[0, 0, 0, 1, 2]).is_err());
    }

    #[test]
    fn ready_for_query_statuses() {
        assert_eq!(ready_for_query(b"I").unwrap(), TransactionStatus::Idle);
        assert_eq!(
            ready_for_query(b"T").unwrap(),
            TransactionStatus::InTransaction
        );
        assert_eq!(ready_for_query(b"E").unwrap(), TransactionStatus::Failed);
        assert!(ready_for_query(b"X").is_err());
        assert!(ready_for_query(b"").is_err());
        assert_eq!(
            parameter_status(b"TimeZone\0UTC\0").unwrap(),
            ("TimeZone".to_string(), "UTC".to_string())
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::protocol::error_response::parse_error_fields;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoders_never_panic_on_random_bodies(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = authentication_code(&body);
            let _ = backend_key_data(&body);
            let _ = ready_for_query(&body);
            let _ = parameter_status(&body);
            let _ = parse_error_fields(&body);
            let _ = strip_channel_binding(&encode(b'R', &body));
            let _ = strip_channel_binding(&body);
        }
    }
}
