//! `[listen]`: where applications connect, and how.

use super::certificates::certificate_pair;
use super::error::{check, Rejection};
use crate::protocol::framing::POSTGRES_MAX_MESSAGE_BYTES;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `[listen]`: the client-facing side of the proxy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Address and port applications connect to. Port 0 picks a free port
    /// (logged at startup).
    pub address: SocketAddr,
    /// Largest message body a client may send, in bytes. Larger messages
    /// are refused with SQLSTATE 08P01. Defaults to Postgres's own limit.
    pub max_message_bytes: usize,
    /// Client connections served at once; beyond, a new client gets
    /// SQLSTATE 53300 and is closed (a cancel request is still routed).
    /// 0 means no limit.
    pub max_client_connections: usize,
    /// Time a new client has to send its StartupMessage (or cancel request).
    pub startup_timeout_ms: u64,
    /// On SIGTERM/SIGINT, how long open sessions may keep running before
    /// they are closed.
    pub shutdown_timeout_ms: u64,
    /// Runtime worker threads serving connections; 0 means one per CPU.
    pub worker_threads: usize,
    /// PEM certificate chain presented to clients that ask for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Whether clients may, must or cannot use TLS.
    pub tls_mode: ListenTlsMode,
}

/// `listen.tls_mode`: TLS for the applications' connections.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ListenTlsMode {
    /// SSLRequest is answered `N`: plain connections only.
    Disable,
    /// TLS for clients that ask (with a certificate configured), plain
    /// for the others.
    #[default]
    Prefer,
    /// Clients must use TLS; a plain StartupMessage gets FATAL 28000.
    Require,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 6432)),
            max_message_bytes: POSTGRES_MAX_MESSAGE_BYTES,
            max_client_connections: 10_000,
            startup_timeout_ms: 15_000,
            shutdown_timeout_ms: 30_000,
            worker_threads: 0,
            tls_cert: None,
            tls_key: None,
            tls_mode: ListenTlsMode::Prefer,
        }
    }
}

impl ListenConfig {
    /// `startup_timeout_ms` as a duration.
    pub fn startup_timeout(&self) -> Duration {
        Duration::from_millis(self.startup_timeout_ms)
    }

    /// `shutdown_timeout_ms` as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

impl ListenConfig {
    /// `[listen]` checks of values alone.
    pub(super) fn validate(&self) -> Result<(), Rejection> {
        let l = self;
        check(
            l.max_message_bytes >= 1024,
            "listen.max_message_bytes",
            || format!("must be at least 1024 bytes, got {}", l.max_message_bytes),
        )?;
        check(
            l.max_message_bytes <= POSTGRES_MAX_MESSAGE_BYTES,
            "listen.max_message_bytes",
            || {
                format!(
                    "must be at most {POSTGRES_MAX_MESSAGE_BYTES} (Postgres's own limit), got {}",
                    l.max_message_bytes
                )
            },
        )?;
        check(
            l.startup_timeout_ms > 0,
            "listen.startup_timeout_ms",
            || "must be greater than 0".into(),
        )?;
        check(l.worker_threads <= 1024, "listen.worker_threads", || {
            format!("must be at most 1024, got {}", l.worker_threads)
        })?;
        Ok(())
    }

    /// The client-facing certificate must load now, not at the first
    /// client, and `require` needs one.
    pub(super) fn check_tls(&self) -> Result<(), Rejection> {
        let l = self;
        let listen_cert = certificate_pair(
            (&l.tls_cert, "listen.tls_cert"),
            (&l.tls_key, "listen.tls_key"),
        )?;
        if !listen_cert && l.tls_mode == ListenTlsMode::Require {
            return Err((
                "listen.tls_mode",
                "\"require\" needs listen.tls_cert and listen.tls_key".into(),
            ));
        }
        Ok(())
    }
}
