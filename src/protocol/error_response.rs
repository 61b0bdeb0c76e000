//! ErrorResponse: building the proxy's own errors and reading the server's.

use super::backend::tag;
use super::framing::encode_message as encode;
use super::reader::{BodyReader, DecodeError};

/// SQLSTATE codes the proxy itself reports.
pub mod sqlstate {
    /// `protocol_violation`: malformed input from the client.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// `connection_failure`: the upstream server cannot be reached.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// `admin_shutdown`: the proxy is shutting down.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// `too_many_connections`: beyond `listen.max_client_connections`.
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// `feature_not_supported`.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// `invalid_authorization_specification`: what PostgreSQL answers when
    /// no pg_hba.conf line allows the connection (a plain one to `hostssl`).
    pub const INVALID_AUTHORIZATION: &str = "28000";
}

/// Severity of an error the proxy reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends.
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// An ErrorResponse the proxy sends on its own behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError {
    severity: Severity,
    code: &'static str,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
}

impl ProxyError {
    /// A FATAL error: the proxy closes the connection after sending it.
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Fatal,
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// Adds a DETAIL line.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a HINT line.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The SQLSTATE.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The primary message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Encodes the ErrorResponse message.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let mut field = |code: u8, value: &str| {
            body.push(code);
            // A NUL inside a value would end the field early; drop it.
            body.extend(value.bytes().filter(|&b| b != 0));
            body.push(0);
        };
        field(b'S', self.severity.as_str());
        field(b'V', self.severity.as_str());
        field(b'C', self.code);
        field(b'M', &self.message);
        if let Some(d) = &self.detail {
            field(b'D', d);
        }
        if let Some(h) = &self.hint {
            field(b'H', h);
        }
        body.push(0);
        encode(tag::ERROR_RESPONSE, &body)
    }
}

/// The fields of a server ErrorResponse or NoticeResponse that logs and
/// outcome records use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// Non-localised severity (`V`), or localised (`S`) from old servers.
    pub severity: String,
    /// SQLSTATE (`C`).
    pub code: String,
    /// Primary message (`M`).
    pub message: String,
}

/// Decodes the fields of an ErrorResponse/NoticeResponse body.
pub fn parse_error_fields(body: &[u8]) -> Result<ErrorFields, DecodeError> {
    let mut r = BodyReader::new(body);
    let mut out = ErrorFields::default();
    loop {
        let code = r.u8("field type")?;
        if code == 0 {
            r.finish()?;
            return Ok(out);
        }
        let value = String::from_utf8_lossy(r.cstr("field value")?).into_owned();
        match code {
            b'V' => out.severity = value,
            b'S' if out.severity.is_empty() => out.severity = value,
            b'C' => out.code = value,
            b'M' => out.message = value,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_errors_encode_to_parsable_error_responses() {
        let e = ProxyError::fatal(sqlstate::PROTOCOL_VIOLATION, "bad\0 input").hint("fix it");
        let frame = e.encode();
        assert_eq!(frame[0], b'E');
        let len = i32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        assert_eq!(len + 1, frame.len());
        let fields = parse_error_fields(&frame[5..]).unwrap();
        assert_eq!(fields.severity, "FATAL");
        assert_eq!(fields.code, "08P01");
        assert_eq!(fields.message, "bad input");
    }

    #[test]
    fn truncated_error_bodies_are_errors() {
        assert!(parse_error_fields(b"CXX").is_err());
        assert!(parse_error_fields(b"").is_err());
    }
}
