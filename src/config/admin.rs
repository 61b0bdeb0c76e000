//! `[admin]`: metrics, health and the on-call API.

use super::certificates::certificate_pair;
use super::error::Rejection;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[admin]`: metrics, health and the on-call API.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin HTTP server.
    pub address: SocketAddr,
    /// Bearer token that every mutating admin request (ack, mute, unmute,
    /// sampling changes) must carry. Unset: no token is required, so keep
    /// the admin address on loopback or a private network.
    pub token: Option<String>,
    /// Environment variable holding the token, instead of writing it into
    /// the file. At most one of `token` and `token_env` may be set.
    pub token_env: Option<String>,
    /// Host names (without port) the admin server answers to besides
    /// `localhost` and IP addresses: a browser tricked by DNS rebinding
    /// sends another name and is refused.
    pub allowed_hosts: Vec<String>,
    /// PEM certificate chain: serve HTTPS instead of HTTP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 9930)),
            token: None,
            token_env: None,
            allowed_hosts: Vec::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

// By hand, so that the token never reaches a log line or an error.
impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_env", &self.token_env)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

impl AdminConfig {
    /// The bearer token mutating admin requests need: `token`, or the value
    /// of the variable `token_env` names. `Ok(None)`: no token configured.
    /// An error names the variable when it is unset or empty, so a
    /// misconfigured proxy never runs with its admin API open.
    pub fn resolve_token(&self) -> Result<Option<String>, String> {
        match (&self.token, &self.token_env) {
            (Some(token), None) => Ok(Some(token.clone())),
            (None, Some(var)) => match std::env::var(var) {
                Ok(token) if !token.is_empty() => Ok(Some(token)),
                Ok(_) => Err(format!("environment variable {var} is empty")),
                Err(_) => Err(format!("environment variable {var} is not set")),
            },
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err("set either admin.token or admin.token_env, not both".into()),
        }
    }

    /// `[admin]` checks: a token that is set must be usable, so a typo
    /// never leaves the admin API open by accident.
    pub(super) fn validate(&self) -> Result<(), Rejection> {
        let a = self;
        if let Some(token) = &a.token {
            if token.trim().is_empty() {
                return Err((
                    "admin.token",
                    "must not be empty (leave it out for no token)".into(),
                ));
            }
            if a.token_env.is_some() {
                return Err((
                    "admin.token_env",
                    "set either admin.token or admin.token_env, not both".into(),
                ));
            }
        }
        if a.token_env.is_some() {
            if let Err(e) = a.resolve_token() {
                return Err(("admin.token_env", e));
            }
        }
        Ok(())
    }

    /// The admin certificate must load now, not at the first request.
    pub(super) fn check_tls(&self) -> Result<(), Rejection> {
        let a = self;
        certificate_pair(
            (&a.tls_cert, "admin.tls_cert"),
            (&a.tls_key, "admin.tls_key"),
        )?;
        Ok(())
    }

    /// An admin server reachable from other hosts must have a token,
    /// because incidents carry production values; allowed host names are
    /// names.
    pub(super) fn check_exposure(&self) -> Result<(), Rejection> {
        let a = self;
        if !a.address.ip().is_loopback() && a.token.is_none() && a.token_env.is_none() {
            return Err((
                "admin.token",
                format!(
                    "admin.address {} is not a loopback address, so the admin server (incidents \
                     with production values, sampling controls) is reachable from other hosts: \
                     set admin.token or admin.token_env",
                    a.address
                ),
            ));
        }
        for host in &a.allowed_hosts {
            if host.is_empty() || host.contains([':', '/', ' ']) {
                return Err((
                    "admin.allowed_hosts",
                    format!("{host:?} is not a host name (write it without scheme or port)"),
                ));
            }
        }
        Ok(())
    }
}
