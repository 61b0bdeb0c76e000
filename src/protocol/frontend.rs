//! The client's side of the protocol after startup: message types, and
//! decoded copies of the messages statement capture needs.

use super::reader::{BodyReader, DecodeError};

/// Message type bytes a client may send after startup.
pub mod tag {
    /// Bind a prepared statement to a portal.
    pub const BIND: u8 = b'B';
    /// Close a statement or portal.
    pub const CLOSE: u8 = b'C';
    /// COPY data.
    pub const COPY_DATA: u8 = b'd';
    /// COPY done.
    pub const COPY_DONE: u8 = b'c';
    /// COPY failed.
    pub const COPY_FAIL: u8 = b'f';
    /// Describe a statement or portal.
    pub const DESCRIBE: u8 = b'D';
    /// Execute a portal.
    pub const EXECUTE: u8 = b'E';
    /// Flush: send what is pending.
    pub const FLUSH: u8 = b'H';
    /// FunctionCall (the fast-path interface).
    pub const FUNCTION_CALL: u8 = b'F';
    /// Parse a statement.
    pub const PARSE: u8 = b'P';
    /// Password, SASL and GSS responses during authentication.
    pub const PASSWORD: u8 = b'p';
    /// Simple query.
    pub const QUERY: u8 = b'Q';
    /// Sync: end of an extended-protocol batch.
    pub const SYNC: u8 = b'S';
    /// Terminate: the client is leaving.
    pub const TERMINATE: u8 = b'X';
}

/// Whether `t` is a message type a client may send after startup. Anything
/// else is a protocol violation that Postgres would also refuse.
pub fn is_frontend_tag(t: u8) -> bool {
    matches!(
        t,
        tag::BIND
            | tag::CLOSE
            | tag::COPY_DATA
            | tag::COPY_DONE
            | tag::COPY_FAIL
            | tag::DESCRIBE
            | tag::EXECUTE
            | tag::FLUSH
            | tag::FUNCTION_CALL
            | tag::PARSE
            | tag::PASSWORD
            | tag::QUERY
            | tag::SYNC
            | tag::TERMINATE
    )
}

/// The name of a message type that has no body (Terminate, Sync, Flush),
/// for the error a client gets when it sends one with a body anyway.
/// Checked on the header alone, so such a message is refused before any
/// of its announced body is read, let alone held.
pub fn bodyless_name(t: u8) -> Option<&'static str> {
    match t {
        tag::TERMINATE => Some("Terminate"),
        tag::SYNC => Some("Sync"),
        tag::FLUSH => Some("Flush"),
        _ => None,
    }
}

/// Largest message a client may send before its session is ready: the
/// password, SASL and GSS responses, bounded like Postgres bounds them
/// (`PG_MAX_AUTH_TOKEN_LENGTH`). An unauthenticated peer can therefore make
/// the proxy hold at most this much of one message.
pub const MAX_AUTH_MESSAGE_LEN: usize = 65_535;

/// Whether the server answers this message with exactly one ReadyForQuery.
pub fn expects_ready_for_query(t: u8) -> bool {
    matches!(t, tag::QUERY | tag::SYNC | tag::FUNCTION_CALL)
}

/// Parse: a statement to prepare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Statement name; empty for the unnamed statement.
    pub name: &'a [u8],
    /// The SQL text, in the client encoding.
    pub sql: &'a [u8],
    /// Parameter type OIDs the client specified (0 = let the server infer).
    pub param_types: Vec<u32>,
}

/// Decodes a Parse body.
pub fn parse(body: &[u8]) -> Result<Parse<'_>, DecodeError> {
    let mut r = BodyReader::new(body);
    let name = r.cstr("statement name")?;
    let sql = r.cstr("query string")?;
    let n = r.count16("parameter type count")?;
    let mut param_types = Vec::with_capacity(n);
    for _ in 0..n {
        param_types.push(r.i32("parameter type")? as u32);
    }
    r.finish()?;
    Ok(Parse {
        name,
        sql,
        param_types,
    })
}

/// Bind: parameters for a statement, producing a portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Portal name; empty for the unnamed portal.
    pub portal: &'a [u8],
    /// Statement name; empty for the unnamed statement.
    pub statement: &'a [u8],
    /// Parameter format codes as sent: none (all text), one (applies to
    /// all) or one per parameter.
    pub param_formats: Vec<i16>,
    /// Parameter values exactly as sent; `None` is NULL.
    pub params: Vec<Option<&'a [u8]>>,
    /// Result format codes as sent.
    pub result_formats: Vec<i16>,
}

/// The portal and statement names of a Bind body, without decoding (or
/// allocating for) its parameters: enough for statement tracking when the
/// execution is not sampled.
pub fn bind_target(body: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let mut r = BodyReader::new(body);
    let portal = r.cstr("portal name")?;
    let statement = r.cstr("statement name")?;
    Ok((portal, statement))
}

/// Decodes a Bind body.
pub fn bind(body: &[u8]) -> Result<Bind<'_>, DecodeError> {
    let mut r = BodyReader::new(body);
    let portal = r.cstr("portal name")?;
    let statement = r.cstr("statement name")?;
    let nf = r.count16("parameter format count")?;
    let mut param_formats = Vec::with_capacity(nf);
    for _ in 0..nf {
        param_formats.push(r.i16("parameter format")?);
    }
    let np = r.count16("parameter count")?;
    let mut params = Vec::with_capacity(np);
    for _ in 0..np {
        let len = r.i32("parameter length")?;
        params.push(match len {
            -1 => None,
            n if n >= 0 => Some(r.bytes(n as usize, "parameter value")?),
            n => {
                return Err(DecodeError::InvalidValue {
                    field: "parameter length",
                    value: n.into(),
                })
            }
        });
    }
    let nr = r.count16("result format count")?;
    let mut result_formats = Vec::with_capacity(nr);
    for _ in 0..nr {
        result_formats.push(r.i16("result format")?);
    }
    r.finish()?;
    Ok(Bind {
        portal,
        statement,
        param_formats,
        params,
        result_formats,
    })
}

/// Decodes an Execute body: portal name and row limit (0 = all).
pub fn execute(body: &[u8]) -> Result<(&[u8], i32), DecodeError> {
    let mut r = BodyReader::new(body);
    let portal = r.cstr("portal name")?;
    let max_rows = r.i32("row limit")?;
    r.finish()?;
    Ok((portal, max_rows))
}

/// Decodes a Close or Describe body: `S` (statement) or `P` (portal), and
/// the name.
pub fn target(body: &[u8]) -> Result<(u8, &[u8]), DecodeError> {
    let mut r = BodyReader::new(body);
    let kind = r.u8("target type")?;
    let name = r.cstr("target name")?;
    r.finish()?;
    match kind {
        b'S' | b'P' => Ok((kind, name)),
        other => Err(DecodeError::InvalidValue {
            field: "target type",
            value: other.into(),
        }),
    }
}

/// Decodes a Query body: the SQL text.
pub fn query(body: &[u8]) -> Result<&[u8], DecodeError> {
    let mut r = BodyReader::new(body);
    let sql = r.cstr("query string")?;
    r.finish()?;
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_protocol_messages_decode() {
        let mut p = b"s1\0SELECT $1\0".to_vec();
        p.extend_from_slice(&1i16.to_be_bytes());
        p.extend_from_slice(&23i32.to_be_bytes());
        let parsed = parse(&p).unwrap();
        assert_eq!(
            (parsed.name, parsed.sql, parsed.param_types),
            (&b"s1"[..], &b"SELECT $1"[..], vec![23])
        );

        let mut b = b"p\0s1\0".to_vec();
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&2i16.to_be_bytes());
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 7]);
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        let bound = bind(&b).unwrap();
        assert_eq!(bound.portal, b"p");
        assert_eq!(bound.param_formats, vec![1]);
        assert_eq!(bound.params, vec![Some(&[0u8, 0, 0, 7][..]), None]);
        assert!(bound.result_formats.is_empty());

        let mut e = b"p\0".to_vec();
        e.extend_from_slice(&10i32.to_be_bytes());
        assert_eq!(execute(&e).unwrap(), (&b"p"[..], 10));
        assert_eq!(target(b"Sname\0").unwrap(), (b'S', &b"name"[..]));
        assert!(target(b"Xname\0").is_err());
        assert_eq!(query(b"SELECT 1\0").unwrap(), b"SELECT 1");
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let mut b = b"\0\0".to_vec();
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&(-2i32).to_be_bytes());
        assert!(bind(&b).is_err());
        assert!(bind(b"\0").is_err());
        assert!(parse(b"x\0SELECT\0\xff\xff").is_err());
        assert!(query(b"SELECT 1").is_err());
        assert!(execute(b"p\0\0").is_err());
    }

    #[test]
    fn only_frontend_tags_are_accepted() {
        for t in b"BCdcfDEHFPpQSX" {
            assert!(is_frontend_tag(*t), "{}", *t as char);
        }
        for t in [0u8, b'G', b'Z', b'T', 0xff, b' '] {
            assert!(!is_frontend_tag(t));
        }
    }
}
