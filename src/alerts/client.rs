//! The webhook's HTTP client: `reqwest` over rustls (ring provider), for
//! `http://` and `https://` receivers alike.
//!
//! One client per webhook, so connections (and TLS sessions) to the
//! receiver are reused. An `https://` receiver's certificate is verified
//! against `alerts.tls_root_cert` (a private CA) or the system's roots;
//! redirects are not followed (a webhook that moved is a configuration
//! error to see, not to chase). Errors never carry the URL: webhook URLs
//! keep their secret in the path.

use crate::tls::TlsError;
use std::fmt;
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

/// An `http://` or `https://` webhook address, checked once when the
/// config is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    url: reqwest::Url,
    authority: String,
}

impl WebhookUrl {
    /// Parses a webhook URL; the error says what is wrong in words a
    /// config file's author can act on.
    pub fn parse(url: &str) -> Result<WebhookUrl, String> {
        let url = url.trim();
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            if url.contains("://") {
                format!("{url:?} is not a valid URL: {e}")
            } else {
                format!("must be an http:// or https:// URL, got {url:?}")
            }
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("must be an http:// or https:// URL, got {url:?}"));
        }
        let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
            return Err(format!("no host in {url:?}"));
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("user names and passwords in the URL are not supported".into());
        }
        let authority = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        Ok(WebhookUrl {
            url: parsed,
            authority,
        })
    }

    /// `host[:port]` as written in the URL.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Whether the receiver speaks TLS.
    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }
}

impl fmt::Display for WebhookUrl {
    /// The URL without its path and query: webhook URLs usually carry
    /// their secret in the path, and this form goes into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/…", self.url.scheme(), self.authority)
    }
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
            .post(self.url.url.clone())
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
        let authority = self.url.authority.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_keep_their_path_out_of_display() {
        let u = WebhookUrl::parse("https://hooks.example.com/services/T0/B1?x=1").unwrap();
        assert_eq!(u.authority(), "hooks.example.com");
        assert!(u.is_https());
        assert_eq!(u.to_string(), "https://hooks.example.com/…");
        let u = WebhookUrl::parse("HTTP://127.0.0.1:8080").unwrap();
        assert_eq!(u.authority(), "127.0.0.1:8080");
        assert!(!u.is_https());
        let u = WebhookUrl::parse("http://[::1]:9000/hook#frag").unwrap();
        assert_eq!(u.to_string(), "http://[::1]:9000/…");
    }

    #[test]
    fn unusable_urls_say_why() {
        for (url, expect) in [
            ("ftp://x", "must be an http:// or https:// URL"),
            ("hooks.example.com/x", "must be an http:// or https:// URL"),
            ("http://", "not a valid URL"),
            ("http://host:99999/", "not a valid URL"),
            ("http://user:pw@host/", "user names"),
        ] {
            let err = WebhookUrl::parse(url).unwrap_err();
            assert!(err.contains(expect), "{url}: {err}");
        }
    }
}
