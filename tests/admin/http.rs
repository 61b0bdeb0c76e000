//! A tiny HTTP/1.1 client for the admin API: one request per connection,
//! any method, headers and body, and the status, headers and body back —
//! enough to assert on 401s, 400 messages and JSON without pulling an HTTP
//! client crate into the dev-dependencies.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `error` of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {} {}", self.status, self.body))
            .to_string()
    }
}

/// Sends one request to the admin server on `port`.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect to the admin port");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !has("Host") {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    if !has("Content-Type") && (!body.is_empty() || method != "GET") {
        head.push_str("Content-Type: application/json\r\n");
    }
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).expect("send request");
    conn.write_all(body.as_bytes()).expect("send body");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("read response");
    parse(&raw).unwrap_or_else(|| panic!("malformed response: {}", String::from_utf8_lossy(&raw)))
}

fn parse(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Response {
        status,
        headers,
        body: String::from_utf8(body).ok()?,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// `GET path`.
pub fn get(port: u16, path: &str) -> Response {
    request(port, "GET", path, &[], None)
}

/// `GET path`, asserting 200 and returning the JSON.
pub fn get_json(port: u16, path: &str) -> Value {
    let r = get(port, path);
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r.json()
}

/// A request with a JSON body and, optionally, a bearer token.
pub fn send(port: u16, method: &str, path: &str, body: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    request(port, method, path, &headers, Some(body))
}

/// `POST path` with a JSON body, asserting 200 and returning the JSON.
pub fn post_ok(port: u16, path: &str, body: &str) -> Value {
    let r = send(port, "POST", path, body, None);
    assert_eq!(r.status, 200, "POST {path} {body}: {}", r.body);
    r.json()
}
