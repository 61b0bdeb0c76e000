//! Who may change things through the admin server.
//!
//! Reading is open: incidents and metrics are what on-call needs at once,
//! without hunting for a secret. Every request that can change something
//! — any method but GET and HEAD — passes [`guard_changes`]:
//!
//! 1. With a token configured (`admin.token` / `admin.token_env`) it must
//!    carry `Authorization: Bearer <token>`; otherwise 401 with
//!    `WWW-Authenticate: Bearer`. The comparison takes the same time
//!    wherever the first differing byte is, so timing does not leak the
//!    token.
//! 2. Without a token, a browser request from another origin is refused
//!    (403): a page on any web site could otherwise make the on-call
//!    engineer's browser mute incidents on a loopback admin port. Browsers
//!    always send `Origin` on cross-origin POST/PUT; the admin page's own
//!    requests are same-origin (`Origin` matches `Host`, or
//!    `X-Forwarded-Host` behind a reverse proxy). With a token the check
//!    is not needed: another site cannot know the token, and a request
//!    carrying `Authorization` cannot even leave the browser without a
//!    CORS preflight, which this server never approves.

use super::api::ApiError;
use super::AdminState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// The configured bearer token.
pub struct Token(Vec<u8>);

impl Token {
    /// Wraps the configured token.
    pub fn new(token: String) -> Self {
        Self(token.into_bytes())
    }

    /// Whether `presented` is the token, in time independent of where they
    /// differ (only the length may show).
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_slice().ct_eq(presented))
    }
}

/// Whether `method` can change something.
fn is_change(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// The middleware in front of every route (see the module docs).
pub async fn guard_changes(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    if !is_change(request.method()) {
        return next.run(request).await;
    }
    let Some(token) = &state.inner.token else {
        if let Err(refusal) = same_origin(request.headers()) {
            return refusal.into_response();
        }
        return next.run(request).await;
    };
    match bearer(request.headers()) {
        Some(presented) if token.matches(presented) => next.run(request).await,
        Some(_) => unauthorized("the bearer token is not the configured admin token"),
        None => {
            unauthorized("this change needs `Authorization: Bearer <token>` (admin.token is set)")
        }
    }
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// Refuses a request whose `Origin` names another host than `Host` (or
/// `X-Forwarded-Host`, set by a reverse proxy in front).
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let hosts = [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|name| headers.get(name)?.to_str().ok());
    let matches = |o: &str| hosts.clone().any(|h| h.trim().eq_ignore_ascii_case(o));
    match origin_host {
        Some(o) if matches(o) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("changes from another origin ({origin}) are refused"),
        )),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"pgshadow admin\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn only_the_exact_token_matches() {
        let token = Token::new("s3cret".into());
        assert!(token.matches(b"s3cret"));
        assert!(!token.matches(b"s3creT"));
        assert!(!token.matches(b"s3cre"));
        assert!(!token.matches(b""));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_others_are_ignored() {
        let h = headers(&[(header::AUTHORIZATION, "bearer  abc ")]);
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        let h = headers(&[(header::AUTHORIZATION, "Basic abc")]);
        assert_eq!(bearer(&h), None);
        let h = headers(&[(header::AUTHORIZATION, "Bear")]);
        assert_eq!(bearer(&h), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn cross_origin_changes_are_refused() {
        let same = headers(&[
            (header::ORIGIN, "http://127.0.0.1:9930"),
            (header::HOST, "127.0.0.1:9930"),
        ]);
        assert!(same_origin(&same).is_ok());
        let other = headers(&[
            (header::ORIGIN, "https://evil.example"),
            (header::HOST, "127.0.0.1:9930"),
        ]);
        assert!(same_origin(&other).is_err());
        assert!(same_origin(&headers(&[(header::ORIGIN, "null")])).is_err());
        let proxied = headers(&[
            (header::ORIGIN, "https://pgshadow.example.internal"),
            (header::HOST, "127.0.0.1:9930"),
            (
                header::HeaderName::from_static("x-forwarded-host"),
                "pgshadow.example.internal",
            ),
        ]);
        assert!(same_origin(&proxied).is_ok(), "behind a reverse proxy");
        assert!(
            same_origin(&headers(&[(header::HOST, "x")])).is_ok(),
            "no Origin: not a browser"
        );
    }

    #[test]
    fn only_get_and_head_are_free() {
        assert!(!is_change(&Method::GET));
        assert!(!is_change(&Method::HEAD));
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(is_change(&m));
        }
    }
}
