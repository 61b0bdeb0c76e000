//! The webhook's HTTP client: `reqwest` over rustls (ring provider), for
//! `http://` and `https://` receivers alike.
//!
//! One client per webhook, so connections (and TLS sessions) to the
//! receiver are reused. An `https://` receiver's certificate is verified
//! against `alerts.tls_root_cert` (a private CA) or the system's roots;
//! redirects are not followed (a webhook that moved is a configuration
//! error to see, not to chase). Errors never carry the URL: webhook URLs
//! keep their secret in the path.

use crate::config::WebhookUrl;
use crate::tls::TlsError;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

/// Why a delivery attempt failed.
#[derive(Debug, Error)]
pub enum PostError {
    /// No connection (refused, unreachable, name not resolved, TLS).
    #[error("cannot connect to {authority}: {reason}")]
    Connect {
        /// `host:port` of the receiver.
        authority: String,
        /// The cause, from the client.
        reason: String,
    },
    /// The receiver did not answer within the timeout.
    #[error("no answer from {authority} within {timeout_ms} ms")]
    Timeout {
        /// `host:port` of the receiver.
        authority: String,
        /// The timeout that passed.
        timeout_ms: u64,
    },
    /// The exchange failed otherwise (connection reset, not HTTP).
    #[error("request to {authority} failed: {reason}")]
    Failed {
        /// `host:port` of the receiver.
        authority: String,
        /// The cause, from the client.
        reason: String,
    },
}

/// Posts alerts to one receiver.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    client: reqwest::Client,
    url: WebhookUrl,
    timeout: Duration,
}

impl WebhookClient {
    /// A client for `url` whose attempts (connect, TLS, send, answer) are
    /// bounded by `timeout`; `root_cert` holds the CAs trusted for an
    /// `https://` receiver (default: the system's roots).
    pub fn new(
        url: WebhookUrl,
        timeout: Duration,
        root_cert: Option<&Path>,
    ) -> Result<WebhookClient, TlsError> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pgshadow/", env!("CARGO_PKG_VERSION")));
        if url.is_https() {
            builder =
                builder.use_preconfigured_tls(crate::tls::verifying_client_config(root_cert)?);
        }
        let client = builder
            .build()
            .map_err(|e| TlsError::Provider(e.without_url().to_string()))?;
        Ok(WebhookClient {
            client,
            url,
            timeout,
        })
    }

    /// The receiver's address (shown without its path).
    pub fn url(&self) -> &WebhookUrl {
        &self.url
    }

    /// POSTs `body` as `application/json` and returns the status code.
    pub async fn post_json(&self, body: &[u8]) -> Result<u16, PostError> {
        let sent = self
            .client
            .post(self.url.as_url().clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) => Err(self.explain(e)),
        }
    }

    fn explain(&self, e: reqwest::Error) -> PostError {
        let authority = self.url.authority().to_string();
        if e.is_timeout() {
            return PostError::Timeout {
                authority,
                timeout_ms: self.timeout.as_millis() as u64,
            };
        }
        let connect = e.is_connect();
        // The chain of causes says why (refused, unknown CA, …); the URL,
        // which holds the secret, is left out.
        let mut reason = Vec::new();
        let e = e.without_url();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            reason.push(cause.to_string());
            source = cause.source();
        }
        if reason.is_empty() {
            reason.push(e.to_string());
        }
        let reason = reason.join(": ");
        if connect {
            PostError::Connect { authority, reason }
        } else {
            PostError::Failed { authority, reason }
        }
    }
}
