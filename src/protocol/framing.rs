//! Finding message boundaries in a byte stream without decoding it.
//!
//! After startup every Postgres message is a type byte followed by an `int32`
//! length that counts itself but not the type byte. The relay moves bytes as
//! they arrive; a [`Framer`] walks the headers in what has arrived so far and
//! asks a [`FrameHandler`] what to do with each message:
//!
//! - [`Disposition::Stream`]: the message is forwarded as its bytes arrive,
//!   even before it is complete. Rows, COPY data and everything else the
//!   proxy does not need stay on this path, so a 1 GB row never has to fit in
//!   memory.
//! - [`Disposition::Inspect`]: the message is held back until it is
//!   complete, then shown to the handler, which may keep it, replace it, or
//!   end the stream after it. Only small messages are inspected.
//!
//! The framer never blocks and never allocates on the streaming path; all
//! I/O happens in [`crate::proxy::relay`].

use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// A type byte plus the `int32` length.
pub const HEADER_LEN: usize = 5;

/// Largest message Postgres itself accepts (`PQ_LARGE_MESSAGE_LIMIT`,
/// 1 GB - 1). The default for `listen.max_message_bytes`, so that the proxy
/// refuses nothing the server would accept.
pub const POSTGRES_MAX_MESSAGE_BYTES: usize = 0x3fff_ffff;

/// The header of one message: its type byte and the length of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The message type byte, e.g. `b'Q'`.
    pub tag: u8,
    /// Body length in bytes, without the type byte and the length field.
    pub body_len: usize,
}

impl Header {
    /// Total bytes on the wire: type byte, length field and body.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len
    }
}

/// A header that cannot start a valid message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FramingError {
    /// The length field is smaller than the 4 bytes it occupies itself.
    #[error("invalid message length {length} in message type {tag}")]
    InvalidLength { tag: TagDisplay, length: i32 },
    /// The message is larger than the configured limit.
    #[error("message type {tag} of {body_len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        tag: TagDisplay,
        body_len: usize,
        limit: usize,
    },
}

/// Renders a type byte for error messages: `'Q'` when printable, else hex.
/// Never panics, whatever the byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagDisplay(pub u8);

impl std::fmt::Display for TagDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", self.0 as char)
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

/// Parses and validates a message header from its first five bytes.
pub fn parse_header(raw: [u8; HEADER_LEN], limit: usize) -> Result<Header, FramingError> {
    let [tag, a, b, c, d] = raw;
    let length = i32::from_be_bytes([a, b, c, d]);
    let body_len = usize::try_from(length)
        .ok()
        .and_then(|len| len.checked_sub(4))
        .ok_or(FramingError::InvalidLength {
            tag: TagDisplay(tag),
            length,
        })?;
    if body_len > limit {
        return Err(FramingError::TooLarge {
            tag: TagDisplay(tag),
            body_len,
            limit,
        });
    }
    Ok(Header { tag, body_len })
}

/// Builds one message: type byte, length, body.
pub fn encode_message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// What the relay does with one message, decided from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Forward bytes as they arrive.
    Stream,
    /// Hold the message until complete and pass it to
    /// [`FrameHandler::on_message`].
    Inspect,
}

/// The handler's decision about one inspected message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the message unchanged.
    Forward,
    /// Forward these bytes (zero or more whole messages) instead.
    Replace(Vec<u8>),
    /// Forward the message, then stop relaying this direction.
    ForwardAndStop,
}

/// Direction-specific decisions about the messages a [`Framer`] finds.
pub trait FrameHandler {
    /// The handler's error type; framing errors convert into it.
    type Error: From<FramingError>;

    /// Largest body accepted in this direction.
    fn max_body_len(&self) -> usize;

    /// Rejects a type byte that cannot start a message in this direction.
    /// Runs before the length is judged: after a bad type byte the length
    /// means nothing.
    fn check_tag(&self, _tag: u8) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Called once per message, as soon as its header has arrived.
    fn on_header(&mut self, header: Header) -> Result<Disposition, Self::Error>;

    /// Called with a complete inspected message (header included).
    fn on_message(&mut self, header: Header, frame: &[u8]) -> Result<Verdict, Self::Error>;
}

/// The outcome of one [`Framer::advance`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    /// Leading bytes of the buffer that may be forwarded now.
    pub forward: usize,
    /// The handler asked to stop after those bytes.
    pub stop: bool,
}

/// Tracks message boundaries across reads in one direction of a stream.
#[derive(Debug, Default)]
pub struct Framer {
    /// Body bytes of the current streamed message still to come.
    streaming: usize,
    /// An inspected message whose header was seen but whose body has not
    /// fully arrived: its handler decision is remembered, so
    /// [`FrameHandler::on_header`] runs exactly once per message.
    pending: Option<Header>,
}

impl Framer {
    /// A framer positioned at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the bytes forwarded so far end on a message boundary, so
    /// that a message of the proxy's own could be inserted after them. (A
    /// held-back inspected message has not been forwarded yet.)
    pub fn at_boundary(&self) -> bool {
        self.streaming == 0
    }

    /// Classifies the unforwarded bytes at the front of `buf`.
    ///
    /// `buf` must start where the previous call's `forward` ended (the
    /// caller forwards that prefix and drops it). Bytes that cannot be
    /// classified yet (a partial header, or an inspected message that is not
    /// complete) stay in `buf` beyond `forward`. A [`Verdict::Replace`]
    /// rewrites `buf` in place; that copy happens only for inspected
    /// messages that change, which are rare.
    pub fn advance<H: FrameHandler>(
        &mut self,
        buf: &mut BytesMut,
        handler: &mut H,
    ) -> Result<Advance, H::Error> {
        let mut pos = 0;
        loop {
            if self.streaming > 0 {
                let take = self.streaming.min(buf.len() - pos);
                pos += take;
                self.streaming -= take;
                if self.streaming > 0 {
                    return Ok(Advance {
                        forward: pos,
                        stop: false,
                    });
                }
            }
            let Some(raw) = buf
                .get(pos..pos + HEADER_LEN)
                .and_then(|h| <[u8; HEADER_LEN]>::try_from(h).ok())
            else {
                return Ok(Advance {
                    forward: pos,
                    stop: false,
                });
            };
            let (header, disposition) = match self.pending.take() {
                Some(header) => (header, Disposition::Inspect),
                None => {
                    let [tag, ..] = raw;
                    handler.check_tag(tag)?;
                    let header = parse_header(raw, handler.max_body_len())?;
                    (header, handler.on_header(header)?)
                }
            };
            match disposition {
                Disposition::Stream => {
                    pos += HEADER_LEN;
                    self.streaming = header.body_len;
                }
                Disposition::Inspect => {
                    let end = pos + header.frame_len();
                    let Some(frame) = buf.get(pos..end) else {
                        // Wait for the rest; make room for it in one go.
                        buf.reserve(end - buf.len());
                        self.pending = Some(header);
                        return Ok(Advance {
                            forward: pos,
                            stop: false,
                        });
                    };
                    match handler.on_message(header, frame)? {
                        Verdict::Forward => pos = end,
                        Verdict::ForwardAndStop => {
                            return Ok(Advance {
                                forward: end,
                                stop: true,
                            })
                        }
                        Verdict::Replace(replacement) => {
                            splice(buf, pos..end, &replacement);
                            pos += replacement.len();
                        }
                    }
                }
            }
        }
    }
}

/// Replaces `range` of `buf` with `with`.
fn splice(buf: &mut BytesMut, range: std::ops::Range<usize>, with: &[u8]) {
    let mut out = BytesMut::with_capacity(buf.len() - range.len() + with.len());
    out.put_slice(&buf[..range.start]);
    out.put_slice(with);
    out.put_slice(&buf[range.end..]);
    *buf = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every header; inspects `Z`, `R` and `X`, replaces `R` with
    /// an empty `r` message and stops after `X`.
    #[derive(Default)]
    struct Recorder {
        headers: Vec<(u8, usize)>,
        inspected: Vec<Vec<u8>>,
    }

    impl FrameHandler for Recorder {
        type Error = FramingError;
        fn max_body_len(&self) -> usize {
            1000
        }
        fn on_header(&mut self, h: Header) -> Result<Disposition, FramingError> {
            self.headers.push((h.tag, h.body_len));
            Ok(match h.tag {
                b'Z' | b'R' | b'X' => Disposition::Inspect,
                _ => Disposition::Stream,
            })
        }
        fn on_message(&mut self, h: Header, frame: &[u8]) -> Result<Verdict, FramingError> {
            self.inspected.push(frame.to_vec());
            Ok(match h.tag {
                b'R' => Verdict::Replace(msg(b'r', b"")),
                b'X' => Verdict::ForwardAndStop,
                _ => Verdict::Forward,
            })
        }
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// Feeds `input` in chunks of `chunk` bytes, forwarding like the relay.
    fn relay(input: &[u8], chunk: usize) -> (Vec<u8>, Recorder, bool) {
        let mut framer = Framer::new();
        let mut handler = Recorder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            let adv = framer.advance(&mut buf, &mut handler).unwrap();
            out.extend_from_slice(&buf.split_to(adv.forward));
            if adv.stop {
                return (out, handler, true);
            }
        }
        (out, handler, false)
    }

    #[test]
    fn streamed_messages_pass_through_unchanged_at_any_chunk_size() {
        let mut input = msg(b'D', &[7u8; 300]);
        input.extend(msg(b'Z', b"I"));
        input.extend(msg(b'C', b"SELECT 1\0"));
        for chunk in [1, 2, 3, 5, 7, 64, 1000] {
            let (out, rec, stop) = relay(&input, chunk);
            assert_eq!(out, input, "chunk size {chunk}");
            assert!(!stop);
            assert_eq!(rec.headers, vec![(b'D', 300), (b'Z', 1), (b'C', 9)]);
            assert_eq!(rec.inspected, vec![msg(b'Z', b"I")]);
        }
    }

    #[test]
    fn streamed_bodies_are_forwarded_before_they_are_complete() {
        let big = msg(b'D', &[1u8; 500]);
        let mut framer = Framer::new();
        let mut handler = Recorder::default();
        let mut buf = BytesMut::from(&big[..100]);
        let adv = framer.advance(&mut buf, &mut handler).unwrap();
        assert_eq!(adv.forward, 100);
        assert!(!framer.at_boundary());
    }

    #[test]
    fn inspected_messages_wait_until_complete_and_may_be_replaced() {
        let mut input = msg(b'R', b"\0\0\0\x0a");
        input.extend(msg(b'Z', b"T"));
        let (out, rec, _) = relay(&input, 2);
        let mut expected = msg(b'r', b"");
        expected.extend(msg(b'Z', b"T"));
        assert_eq!(out, expected);
        assert_eq!(rec.inspected.len(), 2);
    }

    #[test]
    fn forward_and_stop_ignores_what_follows() {
        let mut input = msg(b'X', b"");
        input.extend(msg(b'Q', b"SELECT 1\0"));
        let (out, _, stop) = relay(&input, 100);
        assert!(stop);
        assert_eq!(out, msg(b'X', b""));
    }

    #[test]
    fn bad_lengths_are_errors_not_panics() {
        for len in [i32::MIN, -1, 0, 3] {
            let mut raw = [b'Q', 0, 0, 0, 0];
            raw[1..].copy_from_slice(&len.to_be_bytes());
            assert!(matches!(
                parse_header(raw, 100),
                Err(FramingError::InvalidLength { .. })
            ));
        }
        let raw = [b'Q', 0, 0, 1, 0];
        assert!(matches!(
            parse_header(raw, 100),
            Err(FramingError::TooLarge { body_len: 252, .. })
        ));
        assert_eq!(parse_header([b'S', 0, 0, 0, 4], 0).unwrap().body_len, 0);
    }

    #[test]
    fn tag_display_is_readable_for_any_byte() {
        assert_eq!(TagDisplay(b'Q').to_string(), "'Q'");
        assert_eq!(TagDisplay(0).to_string(), "0x00");
        assert_eq!(TagDisplay(0xff).to_string(), "0xff");
    }
}
