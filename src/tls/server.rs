//! The certificate pgshadow presents: to applications on `listen.address`
//! and to browsers on `admin.address`.
//!
//! Certificates are rotated by replacing the files and sending SIGHUP
//! (cert-manager, a renewal cron job): [`ServerTls::reload`] reads them
//! again and swaps the configuration atomically. Handshakes already under
//! way keep the configuration they started with; a pair that cannot be
//! read changes nothing, so a half-written renewal never takes TLS down.

use super::{load_certs, load_key, provider, TlsError};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// ALPN protocol name PostgreSQL 17 clients and servers announce.
pub const POSTGRES_ALPN: &[u8] = b"postgresql";

/// A reloadable certificate and key.
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    alpn: Vec<Vec<u8>>,
    config: ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads `cert` (PEM chain, leaf first) and `key` (PEM private key).
    /// `alpn` lists the protocols offered ([`POSTGRES_ALPN`] for the
    /// listener, `http/1.1` for the admin server); a client that offers
    /// none is accepted too.
    pub fn load(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<ServerTls, TlsError> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let config = build(cert, key, &alpn)?;
        Ok(ServerTls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            alpn,
            config: ArcSwap::from_pointee(config),
        })
    }

    /// Reads the files again and uses them for every handshake from now on;
    /// on error the running certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.cert, &self.key, &self.alpn)?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// An acceptor with the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// The certificate file, for log lines.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

fn build(cert: &Path, key: &Path, alpn: &[Vec<u8>]) -> Result<ServerConfig, TlsError> {
    let chain = load_certs(cert, "certificate")?;
    let private_key = load_key(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Provider(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| TlsError::Config {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            message: e.to_string(),
        })?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}
