//! `[alerts]`: the webhook on new incidents, and its address type.

use super::error::Rejection;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;

/// `[alerts]`: a Slack-compatible webhook on new incidents (and on the end
/// of a mute), rate-limited per incident.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Where alerts are POSTed (`http://` or `https://`); unset: no webhook.
    #[serde(deserialize_with = "webhook_url")]
    pub webhook_url: Option<WebhookUrl>,
    /// Base URL of the admin web page in alert links; default
    /// `http://<admin.address>` (the bound address).
    pub page_url: Option<String>,
    /// Least time between two alerts about the same incident (0 = none).
    pub min_interval_seconds: u64,
    /// Bound on one delivery attempt (connect, send, answer).
    pub timeout_ms: u64,
    /// Further attempts after a failure that may pass (no answer, 5xx,
    /// 429), with exponential backoff from 0.5 s.
    pub max_retries: u32,
    /// PEM bundle of the CAs trusted for an `https://` webhook (a private
    /// CA); unset: the system's roots.
    pub tls_root_cert: Option<PathBuf>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            page_url: None,
            min_interval_seconds: 300,
            timeout_ms: 5_000,
            max_retries: 3,
            tls_root_cert: None,
        }
    }
}

impl AlertsConfig {
    /// `[alerts]` checks.
    pub(super) fn validate(&self) -> Result<(), Rejection> {
        let a = self;
        if let Some(url) = &a.page_url {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) || url.len() < 9 {
                return Err((
                    "alerts.page_url",
                    format!("must be an http:// or https:// URL, got {url:?}"),
                ));
            }
        }
        if a.timeout_ms == 0 || a.timeout_ms > 60_000 {
            return Err((
                "alerts.timeout_ms",
                format!("must be between 1 and 60000, got {}", a.timeout_ms),
            ));
        }
        if a.max_retries > 10 {
            return Err((
                "alerts.max_retries",
                format!("must be at most 10, got {}", a.max_retries),
            ));
        }
        Ok(())
    }

    /// The webhook's CA bundle must load now, not at the first alert.
    pub(super) fn check_tls(&self) -> Result<(), Rejection> {
        if let Some(root) = &self.tls_root_cert {
            crate::tls::root_store(Some(root))
                .map_err(|e| ("alerts.tls_root_cert", e.to_string()))?;
        }
        Ok(())
    }
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

    /// The whole URL, secret path included: for sending, never for logs.
    pub fn as_url(&self) -> &reqwest::Url {
        &self.url
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

/// `alerts.webhook_url`, parsed once at load.
fn webhook_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<WebhookUrl>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|url| WebhookUrl::parse(&url).map_err(D::Error::custom))
        .transpose()
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
