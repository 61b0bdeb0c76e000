//! Why the admin server could not start.

use std::net::SocketAddr;
use thiserror::Error;

/// Why the admin server could not start.
#[derive(Debug, Error)]
pub enum AdminError {
    /// The address is taken or not ours.
    #[error("cannot listen on admin address {address}: {source}")]
    Bind {
        /// The address from `admin.address`.
        address: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The metrics recorder could not be installed.
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
    /// `admin.token_env` names a variable that is unset or empty.
    #[error("admin token: {0}")]
    Token(String),
    /// `admin.tls_cert` / `admin.tls_key` cannot be used.
    #[error("admin TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}
