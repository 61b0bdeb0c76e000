//! TLS to PostgreSQL, with libpq's `sslmode` meanings.
//!
//! | mode | asks for TLS | without TLS | checks the certificate |
//! | --- | --- | --- | --- |
//! | `disable` | no | plain | — |
//! | `prefer` | yes | plain if the server says no | no |
//! | `require` | yes | refused | no (chain only, as libpq, when a root certificate is given) |
//! | `verify-ca` | yes | refused | chain to a trusted root, validity |
//! | `verify-full` | yes | refused | chain, validity, and the name `host` |
//!
//! The exchange is PostgreSQL's: an 8-byte SSLRequest, one byte back (`S`
//! or `N`), then the TLS handshake on the same socket. Exactly one byte is
//! read before the handshake, so nothing the server (or someone on the
//! path) sends early can be mistaken for encrypted data.
//!
//! A refused certificate is explained in words an operator can act on:
//! expired (and when), issued by a CA not in the configured roots, or made
//! out for another name (and which).

use super::stream::Stream;
use super::verify::{ChainOnly, EncryptOnly};
use super::{client_builder, provider, root_store, TlsError};
use crate::protocol::startup::SSL_REQUEST_CODE;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig};
use serde::Deserialize;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// libpq's `sslmode`, as `upstream.tls`, `shadow.tls` and the store URL's
/// `sslmode` name it.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, unverified; plain otherwise.
    #[default]
    Prefer,
    /// TLS or nothing, unverified.
    Require,
    /// TLS with a certificate chain to a trusted root.
    VerifyCa,
    /// TLS with a trusted chain made out for the host name.
    VerifyFull,
}

impl TlsMode {
    /// The name as written in configs and URLs.
    pub fn label(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    /// Parses a libpq `sslmode` value (`allow` reads as `prefer`: pgshadow
    /// never starts plain and upgrades).
    pub fn parse(value: &str) -> Option<TlsMode> {
        Some(match value {
            "disable" => TlsMode::Disable,
            "allow" | "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }

    /// Whether a server without TLS is refused.
    pub fn requires_tls(self) -> bool {
        !matches!(self, TlsMode::Disable | TlsMode::Prefer)
    }
}

/// Why TLS to the server could not be set up. Messages complete the
/// sentence "could not connect to upstream host:port: …".
#[derive(Debug, Error)]
pub enum NegotiateError {
    /// The socket failed during the SSLRequest exchange.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server answered `N` but TLS is required.
    #[error("the server does not accept TLS (it answered N to SSLRequest), but {key}.tls = \"{mode}\" requires it")]
    NotOffered {
        /// `upstream` or `shadow`.
        key: &'static str,
        /// The configured mode.
        mode: &'static str,
    },
    /// The server answered something else than `S` or `N`.
    #[error("the server answered SSLRequest with byte 0x{0:02x}: it does not speak the PostgreSQL protocol")]
    Unexpected(u8),
    /// The handshake failed; the text says why.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

/// How to (not) encrypt connections to one server.
#[derive(Clone)]
pub struct UpstreamTls {
    mode: TlsMode,
    /// The section the settings come from, for messages.
    key: &'static str,
    connector: Option<TlsConnector>,
    server_name: ServerName<'static>,
    /// Where trust comes from, for messages.
    roots: String,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("mode", &self.mode)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// The settings for `host` (its name is what `verify-full` checks).
    /// `key` names the config section (`upstream`, `shadow`, `store`) in
    /// messages. As in libpq, `require` with a root certificate verifies
    /// the chain like `verify-ca`.
    pub fn new(
        mode: TlsMode,
        root_cert: Option<&Path>,
        host: &str,
        key: &'static str,
    ) -> Result<UpstreamTls, TlsError> {
        let server_name = ServerName::try_from(host.to_string()).map_err(|e| TlsError::File {
            what: "host name",
            path: PathBuf::from(host),
            message: format!("not usable as a TLS server name: {e}"),
        })?;
        let roots = match root_cert {
            Some(path) => format!("{key}.tls_root_cert ({})", path.display()),
            None => "the system's root certificates".to_string(),
        };
        let effective = match (mode, root_cert) {
            (TlsMode::Require, Some(_)) => TlsMode::VerifyCa,
            (mode, _) => mode,
        };
        let connector = match effective {
            TlsMode::Disable => None,
            TlsMode::Prefer | TlsMode::Require => Some(
                client_builder()?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(EncryptOnly::new(provider())))
                    .with_no_client_auth(),
            ),
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                let trusted = Arc::new(root_store(root_cert)?);
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(trusted.clone(), provider())
                        .build()
                        .map_err(|e| TlsError::Provider(e.to_string()))?;
                let builder = client_builder()?;
                if effective == TlsMode::VerifyFull {
                    Some(builder.with_webpki_verifier(webpki).with_no_client_auth())
                } else {
                    Some(
                        builder
                            .dangerous()
                            .with_custom_certificate_verifier(Arc::new(ChainOnly::new(webpki)))
                            .with_no_client_auth(),
                    )
                }
            }
        }
        .map(|mut config: ClientConfig| {
            config.alpn_protocols = vec![super::server::POSTGRES_ALPN.to_vec()];
            TlsConnector::from(Arc::new(config))
        });
        Ok(UpstreamTls {
            mode,
            key,
            connector,
            server_name,
            roots,
        })
    }

    /// No TLS at all.
    pub fn disabled(host: &str) -> UpstreamTls {
        UpstreamTls {
            mode: TlsMode::Disable,
            key: "upstream",
            connector: None,
            server_name: ServerName::try_from(host.to_string())
                .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())),
            roots: String::new(),
        }
    }

    /// The configured mode.
    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// The client configuration for these settings (for tokio-postgres,
    /// which does its own SSLRequest); `None` for `disable`.
    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        self.connector.as_ref().map(|c| c.config().clone())
    }

    /// Asks `tcp`'s server for TLS as the mode says and returns the
    /// stream to speak the protocol on.
    pub async fn negotiate(&self, mut tcp: TcpStream) -> Result<Stream, NegotiateError> {
        let Some(connector) = &self.connector else {
            return Ok(Stream::Plain(tcp));
        };
        let mut request = [0u8; 8];
        request[..4].copy_from_slice(&8i32.to_be_bytes());
        request[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        tcp.write_all(&request).await?;
        match tcp.read_u8().await? {
            b'S' => {}
            b'N' if self.mode.requires_tls() => {
                return Err(NegotiateError::NotOffered {
                    key: self.key,
                    mode: self.mode.label(),
                })
            }
            b'N' => return Ok(Stream::Plain(tcp)),
            other => return Err(NegotiateError::Unexpected(other)),
        }
        match connector.connect(self.server_name.clone(), tcp).await {
            Ok(tls) => Ok(Stream::Tls(Box::new(tls.into()))),
            Err(e) => Err(NegotiateError::Handshake(self.describe(&e))),
        }
    }

    /// Why a handshake failed, in an operator's words.
    fn describe(&self, e: &io::Error) -> String {
        let Some(error) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
            return e.to_string();
        };
        let name = match &self.server_name {
            ServerName::DnsName(n) => n.as_ref().to_string(),
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            other => format!("{other:?}"),
        };
        let mode = self.mode.label();
        let key = self.key;
        let certificate = match error {
            rustls::Error::InvalidCertificate(c) => c,
            rustls::Error::AlertReceived(alert) => {
                return format!("the server refused the handshake ({alert:?})")
            }
            other => return other.to_string(),
        };
        match certificate {
            CertificateError::Expired => "the server's certificate has expired".into(),
            CertificateError::ExpiredContext { not_after, .. } => format!(
                "the server's certificate expired at {}",
                utc(not_after.as_secs())
            ),
            CertificateError::NotValidYet => "the server's certificate is not valid yet".into(),
            CertificateError::NotValidYetContext { not_before, .. } => format!(
                "the server's certificate is not valid before {}",
                utc(not_before.as_secs())
            ),
            CertificateError::UnknownIssuer => format!(
                "the server's certificate is not signed by a trusted CA (unknown CA: not in {}; \
                 {key}.tls = \"{mode}\" verifies it)",
                self.roots
            ),
            CertificateError::NotValidForName => format!(
                "the server's certificate is not valid for the name {name:?} \
                 ({key}.tls = \"{mode}\" checks the name)"
            ),
            CertificateError::NotValidForNameContext { presented, .. } => format!(
                "the server's certificate is for {}, not for the name {name:?} \
                 ({key}.tls = \"{mode}\" checks the name)",
                presented
                    .iter()
                    .map(|p| plain_name(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            CertificateError::Revoked => "the server's certificate has been revoked".into(),
            other => format!("the server's certificate was refused: {other:?}"),
        }
    }
}

/// `db.example` from rustls's `DnsName("db.example")` (the form its
/// presented names take), anything else unchanged.
fn plain_name(presented: &str) -> &str {
    ["DnsName(\"", "IpAddress(", "Uri(\""]
        .iter()
        .find_map(|prefix| presented.strip_prefix(prefix))
        .map(|rest| rest.trim_end_matches(')').trim_end_matches('"'))
        .unwrap_or(presented)
}

/// Seconds since the epoch as a UTC time for messages.
fn utc(secs: u64) -> String {
    crate::utc::format_utc(
        i64::try_from(secs)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_names_read_plainly() {
        assert_eq!(plain_name("DnsName(\"db.example\")"), "db.example");
        assert_eq!(plain_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(plain_name("something"), "something");
    }

    #[test]
    fn sslmode_names_are_libpqs() {
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            assert_eq!(TlsMode::parse(mode).map(TlsMode::label), Some(mode));
        }
        assert_eq!(TlsMode::parse("allow"), Some(TlsMode::Prefer));
        assert_eq!(TlsMode::parse("verify_full"), None);
        assert!(!TlsMode::Prefer.requires_tls() && TlsMode::Require.requires_tls());
    }
}
