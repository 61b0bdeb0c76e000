//! The admin server's credentials as configured: the bearer token (and
//! the session cookie derived from it) and the host names it answers to.
//! [`super::auth`] checks requests against them.

use ring::hmac;
use subtle::ConstantTimeEq;

/// Name of the browser session cookie.
pub const COOKIE: &str = "pgshadow_admin";

/// The configured bearer token, and the session cookie derived from it.
pub struct Token {
    token: Vec<u8>,
    cookie: String,
}

impl Token {
    /// Wraps the configured token.
    pub fn new(token: String) -> Self {
        // The cookie is a MAC of a fixed text under the token: it proves
        // knowledge of the token without being the token, and every
        // cookie becomes invalid when the token changes.
        let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
        let tag = hmac::sign(&key, b"pgshadow admin session v1");
        let cookie = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Self {
            token: token.into_bytes(),
            cookie,
        }
    }

    /// Whether `presented` is the token, in time independent of where they
    /// differ (only the length may show).
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.token.as_slice().ct_eq(presented))
    }

    /// Whether `presented` is the session cookie's value.
    pub(super) fn cookie_matches(&self, presented: &[u8]) -> bool {
        bool::from(self.cookie.as_bytes().ct_eq(presented))
    }

    /// The `Set-Cookie` value that logs a browser in.
    pub fn set_cookie(&self, secure: bool) -> String {
        format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
            self.cookie,
            if secure { "; Secure" } else { "" }
        )
    }
}

/// Host names the admin server answers to.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    /// `localhost`, IP addresses, and `extra` (`admin.allowed_hosts`).
    pub fn new(extra: &[String]) -> Self {
        Self(extra.iter().map(|h| h.to_ascii_lowercase()).collect())
    }

    /// Whether a `Host` header value (with or without port) is allowed.
    pub(super) fn allows(&self, host: &str) -> bool {
        let name = host_name(host.trim()).to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        name == "localhost"
            || name.ends_with(".localhost")
            || name.parse::<std::net::IpAddr>().is_ok()
            || self.0.iter().any(|allowed| allowed == name)
    }
}

/// `example.com` from `example.com:9930`, `::1` from `[::1]:9930`.
fn host_name(host: &str) -> &str {
    if let Some(bracketed) = host.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let token = Token::new("s3cret".into());
        assert!(token.matches(b"s3cret"));
        assert!(!token.matches(b"s3creT"));
        assert!(!token.matches(b"s3cre"));
        assert!(!token.matches(b""));
    }

    #[test]
    fn hosts_are_ips_localhost_or_listed_names() {
        let hosts = AllowedHosts::new(&["pgshadow.example.internal".into()]);
        for ok in [
            "127.0.0.1:9930",
            "10.1.2.3",
            "[::1]:9930",
            "localhost:9930",
            "LOCALHOST",
            "pgshadow.example.internal:443",
            "PgShadow.Example.Internal.",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example:9930",
            "127.0.0.1.evil.example",
            "example.internal",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
    }
}
