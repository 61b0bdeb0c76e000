//! A raw, blocking Postgres wire client for tests that need exact bytes:
//! the differential protocol test, malformed input, startup options.

use pgshadow::protocol::framing::encode_message;
use pgshadow::protocol::startup::StartupMessage;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One backend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Message {
    /// The whole frame as it was on the wire.
    pub fn frame(&self) -> Vec<u8> {
        encode_message(self.tag, &self.body)
    }

    /// The SQLSTATE of an ErrorResponse.
    pub fn sqlstate(&self) -> Option<String> {
        self.error_field(b'C')
    }

    /// A field of an ErrorResponse/NoticeResponse.
    pub fn error_field(&self, code: u8) -> Option<String> {
        if self.tag != b'E' && self.tag != b'N' {
            return None;
        }
        self.body
            .split(|b| *b == 0)
            .find(|f| f.first() == Some(&code))
            .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
    }

    /// The pid in a BackendKeyData or NotificationResponse.
    pub fn pid(&self) -> Option<i32> {
        match self.tag {
            b'K' | b'A' => Some(i32::from_be_bytes(self.body.get(..4)?.try_into().ok()?)),
            _ => None,
        }
    }
}

/// A connection speaking raw protocol.
pub struct Wire {
    pub stream: TcpStream,
}

impl Wire {
    /// Connects to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> Wire {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Wire { stream }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends a StartupMessage and reads through ReadyForQuery (or an
    /// error). Returns every message received.
    pub fn startup(&mut self, params: &[(&str, &str)]) -> Vec<Message> {
        self.send(&StartupMessage::encode(params));
        self.read_until_ready()
    }

    /// Reads the reply to a refused message: an 08P01 ErrorResponse, then
    /// the connection closes. Returns the error's message text.
    pub fn read_refusal(&mut self, what: &str) -> String {
        let reply = self
            .read_message()
            .unwrap_or_else(|| panic!("{what}: connection closed without an error"));
        assert_eq!(
            reply.sqlstate().as_deref(),
            Some("08P01"),
            "{what}: {reply:?}"
        );
        assert!(
            self.read_message().is_none(),
            "{what}: connection must be closed"
        );
        reply.error_field(b'M').unwrap_or_default()
    }

    /// Reads one message; `None` on EOF.
    pub fn read_message(&mut self) -> Option<Message> {
        let mut header = [0u8; 5];
        if let Err(e) = self.stream.read_exact(&mut header) {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ),
                "read failed: {e}"
            );
            return None;
        }
        let len = i32::from_be_bytes(header[1..5].try_into().unwrap());
        let mut body = vec![0u8; (len - 4) as usize];
        self.stream.read_exact(&mut body).expect("message body");
        Some(Message {
            tag: header[0],
            body,
        })
    }

    /// Reads messages through the next ReadyForQuery, or until EOF.
    pub fn read_until_ready(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = self.read_message() {
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                break;
            }
        }
        out
    }

    /// Reads `n` ReadyForQuery cycles.
    pub fn read_until_ready_n(&mut self, n: usize) -> Vec<Message> {
        (0..n).flat_map(|_| self.read_until_ready()).collect()
    }

    /// Reads until the server closes the connection.
    pub fn read_to_end(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = self.read_message() {
            out.push(m);
        }
        out
    }
}

/// Frontend message builders.
pub mod fe {
    use super::encode_message;

    fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    pub fn query(sql: &str) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, sql);
        encode_message(b'Q', &b)
    }

    pub fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, name);
        cstr(&mut b, sql);
        b.extend_from_slice(&(types.len() as i16).to_be_bytes());
        for t in types {
            b.extend_from_slice(&t.to_be_bytes());
        }
        encode_message(b'P', &b)
    }

    /// Bind with text parameters (`None` = NULL) and the given result formats.
    pub fn bind(
        portal: &str,
        stmt: &str,
        params: &[Option<&[u8]>],
        formats: &[i16],
        result_formats: &[i16],
    ) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, portal);
        cstr(&mut b, stmt);
        b.extend_from_slice(&(formats.len() as i16).to_be_bytes());
        for f in formats {
            b.extend_from_slice(&f.to_be_bytes());
        }
        b.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for p in params {
            match p {
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        b.extend_from_slice(&(result_formats.len() as i16).to_be_bytes());
        for f in result_formats {
            b.extend_from_slice(&f.to_be_bytes());
        }
        encode_message(b'B', &b)
    }

    pub fn describe(kind: u8, name: &str) -> Vec<u8> {
        let mut b = vec![kind];
        cstr(&mut b, name);
        encode_message(b'D', &b)
    }

    pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, portal);
        b.extend_from_slice(&max_rows.to_be_bytes());
        encode_message(b'E', &b)
    }

    pub fn close(kind: u8, name: &str) -> Vec<u8> {
        let mut b = vec![kind];
        cstr(&mut b, name);
        encode_message(b'C', &b)
    }

    pub fn sync() -> Vec<u8> {
        encode_message(b'S', &[])
    }

    pub fn flush() -> Vec<u8> {
        encode_message(b'H', &[])
    }

    pub fn copy_data(data: &[u8]) -> Vec<u8> {
        encode_message(b'd', data)
    }

    pub fn copy_done() -> Vec<u8> {
        encode_message(b'c', &[])
    }

    pub fn copy_fail(reason: &str) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, reason);
        encode_message(b'f', &b)
    }

    /// FunctionCall with text arguments and a text result.
    pub fn function_call(oid: u32, args: &[&[u8]]) -> Vec<u8> {
        let mut b = oid.to_be_bytes().to_vec();
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(args.len() as i16).to_be_bytes());
        for a in args {
            b.extend_from_slice(&(a.len() as i32).to_be_bytes());
            b.extend_from_slice(a);
        }
        b.extend_from_slice(&0i16.to_be_bytes());
        encode_message(b'F', &b)
    }

    pub fn terminate() -> Vec<u8> {
        encode_message(b'X', &[])
    }
}
