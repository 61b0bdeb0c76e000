//! `tls_cert`/`tls_key` pairs, shared by `[listen]` and `[admin]`.

use super::error::Rejection;
use std::path::PathBuf;

/// Checks a `tls_cert`/`tls_key` pair: both or neither set, and when set,
/// loadable now. Returns whether a certificate is configured.
pub(super) fn certificate_pair(
    (cert, cert_key): (&Option<PathBuf>, &'static str),
    (key, key_key): (&Option<PathBuf>, &'static str),
) -> Result<bool, Rejection> {
    match (cert, key) {
        (Some(cert), Some(key)) => crate::tls::ServerTls::load(cert, key, &[])
            .map(|_| true)
            .map_err(|e| (cert_key, e.to_string())),
        (Some(_), None) => Err((key_key, format!("must be set with {cert_key}"))),
        (None, Some(_)) => Err((cert_key, format!("must be set with {key_key}"))),
        (None, None) => Ok(false),
    }
}
