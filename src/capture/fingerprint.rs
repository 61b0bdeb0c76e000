//! Fingerprints: stable ids of normalised statements.
//!
//! A fingerprint groups executions of "the same query" for sampling,
//! metrics, incidents and reports. It must be identical across processes,
//! machines and pgshadow versions (several instances share one mismatch
//! store), so it uses a fixed, documented hash (64-bit FNV-1a) rather than
//! the standard library's hasher, whose output may change.

use std::fmt;

/// Stable id of a normalised statement; shown as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(Fingerprint)
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Incremental FNV-1a over a token stream. Tokens are separated by a
/// space, so `ab c` and `a bc` differ.
#[derive(Debug, Clone)]
pub(crate) struct FingerprintHasher {
    state: u64,
    started: bool,
}

impl Default for FingerprintHasher {
    fn default() -> Self {
        Self {
            state: FNV_OFFSET,
            started: false,
        }
    }
}

impl FingerprintHasher {
    fn byte(&mut self, b: u8) {
        self.state ^= u64::from(b);
        self.state = self.state.wrapping_mul(FNV_PRIME);
    }

    fn separator(&mut self) {
        if self.started {
            self.byte(b' ');
        }
        self.started = true;
    }

    /// Adds one token as is.
    pub(crate) fn write_token(&mut self, token: &[u8]) {
        self.separator();
        self.write_raw(token);
    }

    /// Adds one token, ASCII-lowercased.
    pub(crate) fn write_lowercase_token(&mut self, token: &[u8]) {
        self.separator();
        for &b in token {
            self.byte(b.to_ascii_lowercase());
        }
    }

    /// Appends bytes to the current token.
    pub(crate) fn write_raw(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.byte(b);
        }
    }

    /// The fingerprint of everything written.
    pub(crate) fn finish(&self) -> Fingerprint {
        Fingerprint(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_sixteen_hex_digits_and_parses_back() {
        let f = Fingerprint(0xab);
        assert_eq!(f.to_string(), "00000000000000ab");
        assert_eq!("00000000000000ab".parse::<Fingerprint>().unwrap(), f);
    }

    #[test]
    fn token_boundaries_matter() {
        let mut a = FingerprintHasher::default();
        a.write_token(b"ab");
        a.write_token(b"c");
        let mut b = FingerprintHasher::default();
        b.write_token(b"a");
        b.write_token(b"bc");
        assert_ne!(a.finish(), b.finish());
    }
}
