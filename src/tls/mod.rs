//! TLS for every connection pgshadow accepts or opens (DESIGN §1, §7).
//!
//! Managed databases refuse plain connections and their clients connect
//! with `sslmode=verify-full`, so TLS is the normal case on both legs:
//!
//! - [`server`]: the certificate pgshadow presents to applications
//!   (`listen.tls_*`) and to browsers on the admin port (`admin.tls_*`),
//!   re-read on SIGHUP;
//! - [`upstream`]: libpq's `sslmode` semantics for the connections pgshadow
//!   opens to PostgreSQL (`upstream.tls`, `shadow.tls`, the store's URL),
//!   the SSLRequest exchange, and errors that say why a certificate was
//!   refused;
//! - [`stream`]: one stream type for plain and encrypted connections, so
//!   the relay keeps its direct TCP path when there is no TLS;
//! - [`verify`]: the two certificate policies rustls does not ship
//!   (libpq's `require`, which encrypts without verifying, and `verify-ca`,
//!   which checks the chain but not the name).
//!
//! Only rustls's *ring* provider is used (no aws-lc: a heavy C build), and
//! always passed explicitly, so no process-wide default is needed.

pub mod server;
pub mod stream;
pub mod upstream;
mod verify;

pub use server::ServerTls;
pub use stream::Stream;
pub use upstream::{TlsMode, UpstreamTls};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use thiserror::Error;

/// Why a certificate, key or root bundle could not be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The file could not be read or holds no usable PEM of that kind.
    #[error("cannot use {what} {path}: {message}")]
    File {
        /// `certificate`, `private key` or `root certificates`.
        what: &'static str,
        /// The file as configured.
        path: PathBuf,
        /// What is wrong, in words.
        message: String,
    },
    /// rustls refused the combination (a key that does not match the
    /// certificate, an unsupported key type, ...).
    #[error("cannot use certificate {cert} with key {key}: {message}")]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        message: String,
    },
    /// The system's root certificates could not be loaded.
    #[error("cannot load the system's root certificates: {0}")]
    SystemRoots(String),
    /// The provider lacks what the configuration needs (never with ring).
    #[error("TLS provider: {0}")]
    Provider(String),
}

/// The ring provider every TLS configuration of pgshadow uses.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Every certificate in a PEM file, in order (the leaf first, then its
/// intermediates, for a server's chain).
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |message: String| TlsError::File {
        what,
        path: path.to_path_buf(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            "no certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let file_error = |message: String| TlsError::File {
        what: "private key",
        path: path.to_path_buf(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            file_error("no private key in it (expected -----BEGIN PRIVATE KEY-----)".into())
        }
        other => file_error(format!("not valid PEM: {other}")),
    })
}

/// The trust anchors for verifying a peer: the certificates of `path`, or
/// the system's roots when `path` is `None`.
pub fn root_store(path: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match path {
        Some(path) => {
            for cert in load_certs(path, "root certificates")? {
                roots.add(cert).map_err(|e| TlsError::File {
                    what: "root certificates",
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "none found".into());
                return Err(TlsError::SystemRoots(why));
            }
            // Unparsable system roots are skipped, as every TLS client does.
            let _ = roots.add_parsable_certificates(found.certs);
        }
    }
    Ok(roots)
}

/// A client configuration that verifies the server's chain and name
/// against `root_cert` (or the system's roots): what an https client
/// (the webhook) needs.
pub fn verifying_client_config(root_cert: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let roots = root_store(root_cert)?;
    Ok(client_builder()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client configuration builder over [`provider`] with rustls's safe
/// protocol versions (TLS 1.2 and 1.3).
fn client_builder(
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, TlsError> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Provider(e.to_string()))
}
