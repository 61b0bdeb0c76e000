//! The client's side of the protocol after startup.

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

/// Whether the server answers this message with exactly one ReadyForQuery.
pub fn expects_ready_for_query(t: u8) -> bool {
    matches!(t, tag::QUERY | tag::SYNC | tag::FUNCTION_CALL)
}

#[cfg(test)]
mod tests {
    use super::*;

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
