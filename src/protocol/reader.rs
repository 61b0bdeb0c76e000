//! A bounds-checked cursor over a message body.
//!
//! Every decoder in [`crate::protocol`] reads through this type, so that no
//! byte sequence from a socket can make the proxy index out of bounds or
//! panic: a short or malformed body becomes a [`DecodeError`].

use thiserror::Error;

/// Why a message body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The body ended before a field that must be there.
    #[error("message is truncated: expected {wanted} more bytes for {field}, found {available}")]
    Truncated {
        field: &'static str,
        wanted: usize,
        available: usize,
    },
    /// A string field has no terminating NUL byte.
    #[error("{field} is not NUL-terminated")]
    Unterminated { field: &'static str },
    /// A count or length field is negative or out of range.
    #[error("{field} has an invalid value {value}")]
    InvalidValue { field: &'static str, value: i64 },
    /// Bytes were left over after the last field.
    #[error("{extra} unexpected bytes after the last field")]
    TrailingBytes { extra: usize },
}

/// Reads big-endian integers, C strings and byte runs from a body.
#[derive(Debug, Clone)]
pub struct BodyReader<'a> {
    rest: &'a [u8],
}

impl<'a> BodyReader<'a> {
    /// Starts reading at the first byte of `body`.
    pub fn new(body: &'a [u8]) -> Self {
        Self { rest: body }
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Takes exactly `n` bytes.
    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated {
                field,
                wanted: n,
                available: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Takes one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        let b = self.bytes(1, field)?;
        Ok(b.first().copied().unwrap_or_default())
    }

    /// Takes a big-endian `int16`.
    pub fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        let mut raw = [0u8; 2];
        raw.copy_from_slice(self.bytes(2, field)?);
        Ok(i16::from_be_bytes(raw))
    }

    /// Takes a big-endian `int32`.
    pub fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(self.bytes(4, field)?);
        Ok(i32::from_be_bytes(raw))
    }

    /// Takes a big-endian `int16` that must be a non-negative count.
    pub fn count16(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let n = self.i16(field)?;
        usize::try_from(n).map_err(|_| DecodeError::InvalidValue {
            field,
            value: n.into(),
        })
    }

    /// Takes a NUL-terminated string, returned without its terminator.
    /// The bytes are returned as they are: Postgres strings are in the
    /// client encoding, which is not necessarily UTF-8.
    pub fn cstr(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Unterminated { field })?;
        let s = self.bytes(end, field)?;
        self.bytes(1, field)?;
        Ok(s)
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                extra: self.rest.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_in_order_and_detects_truncation() {
        let body = [0, 0, 0, 7, 0, 2, b'h', b'i', 0, 9];
        let mut r = BodyReader::new(&body);
        assert_eq!(r.i32("a").unwrap(), 7);
        assert_eq!(r.count16("b").unwrap(), 2);
        assert_eq!(r.cstr("c").unwrap(), b"hi");
        assert_eq!(r.u8("d").unwrap(), 9);
        assert!(r.finish().is_ok());
        assert!(matches!(r.i32("e"), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn negative_counts_and_missing_terminators_are_errors() {
        assert!(matches!(
            BodyReader::new(&[0xff, 0xff]).count16("n"),
            Err(DecodeError::InvalidValue { value: -1, .. })
        ));
        assert!(matches!(
            BodyReader::new(b"abc").cstr("s"),
            Err(DecodeError::Unterminated { .. })
        ));
        assert!(matches!(
            BodyReader::new(b"a").finish(),
            Err(DecodeError::TrailingBytes { extra: 1 })
        ));
    }
}
