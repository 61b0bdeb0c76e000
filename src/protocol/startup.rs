//! The packets a client may send before the session starts.
//!
//! These have no type byte: an `int32` length (counting itself), then an
//! `int32` code that says what the packet is. A client may first ask for
//! TLS or GSS encryption (answered with one byte, `S` or `N`), then sends a
//! StartupMessage, or instead a CancelRequest on a fresh connection.

use super::reader::{BodyReader, DecodeError};
use bytes::Bytes;
use thiserror::Error;

/// `SSLRequest` code: 1234 << 16 | 5679.
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// `GSSENCRequest` code: 1234 << 16 | 5680.
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// `CancelRequest` code: 1234 << 16 | 5678.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Protocol major version 3, the only one Postgres still speaks.
pub const PROTOCOL_MAJOR_3: i32 = 3;

/// Postgres refuses longer startup packets (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET_LEN: usize = 10_000;
/// Shortest valid packet: length and code.
pub const MIN_STARTUP_PACKET_LEN: usize = 8;
/// Cancel keys are 4 to 256 bytes (4 in protocol 3.0, longer from 3.2).
pub const MAX_CANCEL_KEY_LEN: usize = 256;
/// Shortest cancel key.
pub const MIN_CANCEL_KEY_LEN: usize = 4;

/// A packet sent before the session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialPacket {
    /// The client asks for TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption.
    GssEncRequest,
    /// The client asks to cancel the query running in another session.
    Cancel(CancelRequest),
    /// The client starts a session.
    Startup(StartupMessage),
}

/// Why an initial packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StartupError {
    /// The length prefix is outside what Postgres accepts.
    #[error("invalid length of startup packet: {0} bytes")]
    InvalidLength(i64),
    /// The protocol code names nothing Postgres knows.
    #[error("unsupported frontend protocol {major}.{minor}: pgshadow supports protocol 3")]
    UnsupportedProtocol { major: i32, minor: i32 },
    /// A field inside the packet is malformed.
    #[error("invalid startup packet: {0}")]
    Malformed(#[from] DecodeError),
}

/// Validates the `int32` length prefix of an initial packet and returns the
/// number of bytes that follow it.
pub fn packet_body_len(length: i32) -> Result<usize, StartupError> {
    usize::try_from(length)
        .ok()
        .filter(|len| (MIN_STARTUP_PACKET_LEN..=MAX_STARTUP_PACKET_LEN).contains(len))
        .map(|len| len - 4)
        .ok_or(StartupError::InvalidLength(length.into()))
}

/// Decodes an initial packet from the bytes after its length prefix.
///
/// `packet` is the whole packet, length prefix included; a StartupMessage
/// keeps those bytes so the proxy can forward them unchanged.
pub fn parse_initial_packet(packet: Bytes) -> Result<InitialPacket, StartupError> {
    let mut r = BodyReader::new(&packet);
    let length = r.i32("packet length")?;
    let code = r.i32("protocol code")?;
    if usize::try_from(length).ok() != Some(packet.len()) {
        return Err(StartupError::InvalidLength(length.into()));
    }
    match code {
        SSL_REQUEST_CODE => {
            r.finish()?;
            Ok(InitialPacket::SslRequest)
        }
        GSSENC_REQUEST_CODE => {
            r.finish()?;
            Ok(InitialPacket::GssEncRequest)
        }
        CANCEL_REQUEST_CODE => {
            let pid = r.i32("process id")?;
            let key = r.remaining();
            if !(MIN_CANCEL_KEY_LEN..=MAX_CANCEL_KEY_LEN).contains(&key.len()) {
                return Err(StartupError::Malformed(DecodeError::InvalidValue {
                    field: "cancel key length",
                    value: key.len() as i64,
                }));
            }
            Ok(InitialPacket::Cancel(CancelRequest {
                key: BackendKey {
                    pid,
                    secret: Bytes::copy_from_slice(key),
                },
                raw: packet.clone(),
            }))
        }
        _ if code >> 16 == PROTOCOL_MAJOR_3 => {
            let params = parse_parameters(&mut r)?;
            Ok(InitialPacket::Startup(StartupMessage {
                minor_version: code & 0xffff,
                params,
                raw: packet.clone(),
            }))
        }
        _ => Err(StartupError::UnsupportedProtocol {
            major: code >> 16,
            minor: code & 0xffff,
        }),
    }
}

/// Name/value pairs, each a C string, ended by an empty name.
fn parse_parameters(r: &mut BodyReader<'_>) -> Result<Vec<(String, String)>, DecodeError> {
    let mut params = Vec::new();
    loop {
        let name = r.cstr("parameter name")?;
        if name.is_empty() {
            r.finish()?;
            return Ok(params);
        }
        let value = r.cstr("parameter value")?;
        params.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
}

/// Identifies a backend for cancellation: its process id and secret key,
/// as sent in BackendKeyData and echoed in CancelRequest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendKey {
    /// The backend's process id, which the client sees unchanged.
    pub pid: i32,
    /// The secret (4 bytes in protocol 3.0, up to 256 from 3.2).
    pub secret: Bytes,
}

/// A request to cancel the query of the backend named by `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// Which backend.
    pub key: BackendKey,
    /// The packet as the client sent it, forwarded verbatim.
    pub raw: Bytes,
}

impl CancelRequest {
    /// Encodes a CancelRequest for `key`.
    pub fn encode(key: &BackendKey) -> Bytes {
        let len = 12 + key.secret.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&(len as i32).to_be_bytes());
        out.extend_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
        out.extend_from_slice(&key.pid.to_be_bytes());
        out.extend_from_slice(&key.secret);
        Bytes::from(out)
    }
}

/// A StartupMessage: protocol version and connection parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    /// Minor protocol version (0 for 3.0, 2 for 3.2).
    pub minor_version: i32,
    /// Parameters in the order sent (`user`, `database`, GUCs, ...). Values
    /// are decoded lossily; they are for logs and routing, never forwarded.
    pub params: Vec<(String, String)>,
    /// The packet as the client sent it, forwarded verbatim.
    pub raw: Bytes,
}

impl StartupMessage {
    /// The value of a parameter, if the client sent it.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The role the client logs in as (empty if it sent none, which the
    /// server will refuse).
    pub fn user(&self) -> &str {
        self.param("user").unwrap_or_default()
    }

    /// The database, which defaults to the user name as in Postgres.
    pub fn database(&self) -> &str {
        self.param("database")
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| self.user())
    }

    /// Encodes a protocol 3.0 StartupMessage with these parameters.
    pub fn encode(params: &[(&str, &str)]) -> Bytes {
        let mut body = Vec::new();
        body.extend_from_slice(&(PROTOCOL_MAJOR_3 << 16).to_be_bytes());
        for (k, v) in params {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        out.extend(body);
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, rest: &[u8]) -> Bytes {
        let mut p = ((8 + rest.len()) as i32).to_be_bytes().to_vec();
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(rest);
        Bytes::from(p)
    }

    #[test]
    fn startup_message_round_trips_and_defaults_database_to_user() {
        let raw = StartupMessage::encode(&[("user", "alice"), ("client_encoding", "EUC_JP")]);
        let InitialPacket::Startup(m) = parse_initial_packet(raw.clone()).unwrap() else {
            panic!("not a startup message");
        };
        assert_eq!(m.user(), "alice");
        assert_eq!(m.database(), "alice");
        assert_eq!(m.param("client_encoding"), Some("EUC_JP"));
        assert_eq!(m.raw, raw);
        assert_eq!(m.minor_version, 0);
    }

    #[test]
    fn encryption_requests_and_cancel_requests_are_recognised() {
        assert_eq!(
            parse_initial_packet(packet(SSL_REQUEST_CODE, b"")).unwrap(),
            InitialPacket::SslRequest
        );
        assert_eq!(
            parse_initial_packet(packet(GSSENC_REQUEST_CODE, b"")).unwrap(),
            InitialPacket::GssEncRequest
        );
        let key = BackendKey {
            pid: 4242,
            secret: Bytes::from_static(&[1, 2, 3, 4]),
        };
        let raw = CancelRequest::encode(&key);
        let InitialPacket::Cancel(c) = parse_initial_packet(raw.clone()).unwrap() else {
            panic!("not a cancel request");
        };
        assert_eq!(c.key, key);
        assert_eq!(c.raw, raw);
    }

    #[test]
    fn malformed_initial_packets_are_refused_with_a_reason() {
        assert!(matches!(
            packet_body_len(-1),
            Err(StartupError::InvalidLength(-1))
        ));
        assert!(packet_body_len(0x4745_5420).is_err()); // "GET " from an HTTP client
        assert_eq!(packet_body_len(8).unwrap(), 4);
        assert!(matches!(
            parse_initial_packet(packet(2 << 16, b"")),
            Err(StartupError::UnsupportedProtocol { major: 2, minor: 0 })
        ));
        assert!(parse_initial_packet(packet(SSL_REQUEST_CODE, b"x")).is_err());
        assert!(parse_initial_packet(packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 1, 9])).is_err());
        assert!(parse_initial_packet(packet(3 << 16, b"user\0bob")).is_err());
        let mut lying = packet(3 << 16, b"user\0bob\0\0").to_vec();
        lying[3] += 1;
        assert!(parse_initial_packet(Bytes::from(lying)).is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_initial_packets_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
            packet.extend_from_slice(&body);
            let _ = parse_initial_packet(Bytes::from(packet));
        }

        #[test]
        fn startup_messages_round_trip(params in proptest::collection::vec(("[a-z_]{1,12}", "[ -~]{0,20}"), 0..8)) {
            let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let raw = StartupMessage::encode(&pairs);
            match parse_initial_packet(raw) {
                Ok(InitialPacket::Startup(m)) => prop_assert_eq!(m.params, params),
                other => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn length_prefixes_are_validated_without_panicking(len in any::<i32>()) {
            let ok = packet_body_len(len).is_ok();
            prop_assert_eq!(ok, (8..=10_000).contains(&len));
        }
    }
}
