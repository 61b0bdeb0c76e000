//! A deliberately tiny HTTP/1.1 client: one `POST` of a JSON body per
//! connection, over plain TCP.
//!
//! The webhook sends a handful of small requests an hour, so a connection
//! pool, chunked encoding, redirects and TLS would be weight without use:
//! the request carries an exact `Content-Length` and `Connection: close`,
//! and the reply is read only as far as its headers, which is all a
//! delivery needs (the status code). `https://` is not supported; point
//! `alerts.webhook_url` at an `http://` relay when the receiver needs TLS.

use std::fmt;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest response head (status line + headers) read, in bytes.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Why a delivery attempt failed.
#[derive(Debug, Error)]
pub enum PostError {
    /// No TCP connection (refused, unreachable, name not resolved).
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// `host:port` of the receiver.
        authority: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The connection broke while sending or receiving.
    #[error("connection to {authority} failed: {source}")]
    Io {
        /// `host:port` of the receiver.
        authority: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The receiver did not answer within the timeout.
    #[error("no answer from {authority} within {timeout_ms} ms")]
    Timeout {
        /// `host:port` of the receiver.
        authority: String,
        /// The timeout that passed.
        timeout_ms: u64,
    },
    /// The receiver closed the connection without answering.
    #[error("{authority} closed the connection without answering")]
    Closed {
        /// `host:port` of the receiver.
        authority: String,
    },
    /// The reply is not HTTP.
    #[error("{authority} answered with something that is not an HTTP response")]
    BadResponse {
        /// `host:port` of the receiver.
        authority: String,
    },
}

/// An `http://host[:port]/path` address, checked once when the config is
/// loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or IP address (IPv6 without brackets).
    host: String,
    /// TCP port (80 unless given).
    port: u16,
    /// What goes into the `Host` header: the URL's authority as written.
    authority: String,
    /// Path and query, at least `/`.
    path: String,
}

impl HttpUrl {
    /// Parses an `http://` URL; the error says what is wrong in words a
    /// config file's author can act on.
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let url = url.trim();
        let Some(rest) = url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
            .and_then(|_| url.get(7..))
        else {
            if url
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
            {
                return Err(
                    "https:// is not supported; use an http:// URL (for a receiver \
                            that needs TLS, an http:// relay next to the proxy)"
                        .into(),
                );
            }
            return Err(format!("must be an http:// URL, got {url:?}"));
        };
        // The fragment never goes on the wire.
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() {
            return Err(format!("no host in {url:?}"));
        }
        if authority.contains('@') {
            return Err("user names and passwords in the URL are not supported".into());
        }
        if authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
            || path.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("{url:?} contains spaces or control characters"));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("{authority:?} is not a host with an optional :port"))?;
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(HttpUrl {
            host,
            port,
            authority: authority.to_string(),
            path,
        })
    }

    /// `host:port` as written in the URL.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

impl fmt::Display for HttpUrl {
    /// The URL without its path and query: webhook URLs usually carry
    /// their secret in the path, and this form goes into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}/…", self.authority)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return None,
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
        None => 80,
    };
    Some((host.to_string(), port))
}

/// POSTs `body` as `application/json` to `url` and returns the response's
/// status code. The whole exchange (DNS, connect, send, reading the head)
/// is bounded by `timeout`.
pub async fn post_json(url: &HttpUrl, body: &[u8], timeout: Duration) -> Result<u16, PostError> {
    match tokio::time::timeout(timeout, exchange(url, body)).await {
        Ok(result) => result,
        Err(_) => Err(PostError::Timeout {
            authority: url.authority.clone(),
            timeout_ms: timeout.as_millis() as u64,
        }),
    }
}

async fn exchange(url: &HttpUrl, body: &[u8]) -> Result<u16, PostError> {
    let io = |source| PostError::Io {
        authority: url.authority.clone(),
        source,
    };
    let mut stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|source| PostError::Connect {
            authority: url.authority.clone(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pgshadow/{version}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\
         Connection: close\r\n\r\n",
        path = url.path,
        host = url.authority,
        version = env!("CARGO_PKG_VERSION"),
        length = body.len(),
    );
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    // Read until the end of the head (or of the stream): the status line
    // decides, and reading the headers too lets the receiver finish
    // writing before we close.
    let mut response = Vec::with_capacity(512);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
        if response.windows(4).any(|w| w == b"\r\n\r\n") || response.len() >= MAX_RESPONSE_HEAD {
            break;
        }
    }
    if response.is_empty() {
        return Err(PostError::Closed {
            authority: url.authority.clone(),
        });
    }
    parse_status(&response).ok_or_else(|| PostError::BadResponse {
        authority: url.authority.clone(),
    })
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status(response: &[u8]) -> Option<u16> {
    let line_end = response.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&response[..line_end]).ok()?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse::<u16>().ok().filter(|c| (100..600).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn http_urls_are_split_into_host_port_and_path() {
        let u = HttpUrl::parse("http://hooks.example.com/services/T0/B1?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("hooks.example.com", 80, "/services/T0/B1?x=1")
        );
        let u = HttpUrl::parse("HTTP://127.0.0.1:8080").unwrap();
        assert_eq!((u.port, u.path.as_str()), (8080, "/"));
        assert_eq!(u.authority(), "127.0.0.1:8080");
        let u = HttpUrl::parse("http://[::1]:9000/hook#frag").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 9000, "/hook")
        );
        // Logs never show the path, where webhook secrets live.
        assert_eq!(u.to_string(), "http://[::1]:9000/…");
    }

    #[test]
    fn unusable_urls_say_why() {
        for (url, expect) in [
            ("https://hooks.slack.com/x", "https:// is not supported"),
            ("ftp://x", "must be an http:// URL"),
            ("http:///path", "no host"),
            ("http://host:0/", "not a host"),
            ("http://host:99999/", "not a host"),
            ("http://user:pw@host/", "user names"),
            ("http://ho st/", "spaces"),
        ] {
            let err = HttpUrl::parse(url).unwrap_err();
            assert!(err.contains(expect), "{url}: {err}");
        }
    }

    #[test]
    fn status_lines_are_parsed_strictly() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 429 Too Many\r\n"), Some(429));
        assert_eq!(parse_status(b"HTTP/1.1 204\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.1 200 OK"), None);
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 999 OK\r\n"), None);
    }

    #[tokio::test]
    async fn a_post_carries_its_length_and_returns_the_status() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = HttpUrl::parse(&format!(
            "http://{}/hook/secret",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            // Read to EOF would hang (the client waits for us): read until
            // the announced body is complete.
            loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() >= len {
                        s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                            .await
                            .unwrap();
                        return text;
                    }
                }
            }
        });
        let status = post_json(&url, br#"{"text":"hi"}"#, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(status, 202);
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /hook/secret HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("Content-Length: 13\r\n"), "{request}");
        assert!(request.contains("Content-Type: application/json\r\n"));
        assert!(request.ends_with("\r\n\r\n{\"text\":\"hi\"}"), "{request}");
    }

    #[tokio::test]
    async fn a_silent_receiver_times_out_and_a_closed_port_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = HttpUrl::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let err = post_json(&url, b"{}", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, PostError::Timeout { .. }), "{err}");
        drop(listener);
        let err = post_json(&url, b"{}", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, PostError::Connect { .. }), "{err}");
    }
}
