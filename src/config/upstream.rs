//! `[upstream]`: the PostgreSQL server the application really uses.

use super::error::{check, Rejection};
use crate::tls::TlsMode;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[upstream]`: the PostgreSQL server the application really uses.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How long to wait for the TCP connection to the upstream.
    pub connect_timeout_ms: u64,
    /// TLS to the upstream, with libpq's `sslmode` meanings.
    pub tls: TlsMode,
    /// PEM bundle of the CAs trusted for the upstream's certificate
    /// (`verify-ca`, `verify-full`); unset: the system's roots.
    pub tls_root_cert: Option<PathBuf>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5432,
            connect_timeout_ms: 5_000,
            tls: TlsMode::Prefer,
            tls_root_cert: None,
        }
    }
}

impl UpstreamConfig {
    /// `host:port`, as shown in logs and client-facing errors.
    pub fn display_address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `connect_timeout_ms` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl UpstreamConfig {
    /// `[upstream]` checks of values alone.
    pub(super) fn validate(&self) -> Result<(), Rejection> {
        let u = self;
        check(!u.host.trim().is_empty(), "upstream.host", || {
            "must not be empty".into()
        })?;
        check(u.port != 0, "upstream.port", || "must not be 0".into())?;
        check(
            u.connect_timeout_ms > 0,
            "upstream.connect_timeout_ms",
            || "must be greater than 0".into(),
        )?;
        Ok(())
    }

    /// The upstream's CA bundle must load now, not at the first client.
    pub(super) fn check_tls(&self) -> Result<(), Rejection> {
        let u = self;
        crate::tls::UpstreamTls::new(u.tls, u.tls_root_cert.as_deref(), &u.host, "upstream")
            .map_err(|e| ("upstream.tls_root_cert", e.to_string()))?;
        Ok(())
    }
}
