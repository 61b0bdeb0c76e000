//! Who may use the admin server, and from where.
//!
//! Incidents carry production values (parameters, rows), so the admin
//! server is guarded like any other door to production data. Every
//! request passes [`guard`]:
//!
//! 1. `/healthz`, `/readyz` and `/metrics` are open: probes and scrapers
//!    carry no secret, and these expose no values.
//! 2. The `Host` header must be an IP address, `localhost`, or a name in
//!    `admin.allowed_hosts` (403 otherwise). A web page cannot read from
//!    the admin server through DNS rebinding: its requests carry its own
//!    host name, which is not on the list.
//! 3. A change (any method but GET and HEAD) must be
//!    `Content-Type: application/json` (415 otherwise): a form on another
//!    site cannot send that without a CORS preflight, which this server
//!    never approves. A browser's change from another origin (`Origin`
//!    not matching `Host`/`X-Forwarded-Host`) is refused too (403).
//! 4. With a token (`admin.token` / `admin.token_env`; required when the
//!    address is not loopback, see [`crate::config`]), everything else
//!    needs it: `Authorization: Bearer <token>` (curl, scripts), or the
//!    session cookie the login form sets for browsers (`HttpOnly`,
//!    `SameSite=Strict`, `Secure` over TLS). Without it: 401, and pages
//!    answer with the login form. Tokens and cookies are compared in
//!    constant time; neither is ever logged.

use super::api::ApiError;
use super::credentials::COOKIE;
use super::login;
use super::state::AdminState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Paths anyone who reaches the port may use.
const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// What the login form needs without being logged in.
const LOGIN_PATHS: [&str; 2] = ["/login", "/page.js"];

/// Whether `method` can change something.
fn is_change(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// The middleware in front of every route (see the module docs).
pub async fn guard(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if OPEN_PATHS.contains(&path) {
        return next.run(request).await;
    }
    let headers = request.headers();
    if let Some(host) = headers.get(header::HOST) {
        let host = host.to_str().unwrap_or("");
        if !state.inner.hosts.allows(host) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the admin server does not answer to host {host:?}: add it to \
                     admin.allowed_hosts if people reach the admin server by that name"
                ),
            )
            .into_response();
        }
    }
    if is_change(request.method()) {
        if !is_json(headers) {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "changes must be sent as Content-Type: application/json",
            )
            .into_response();
        }
        if let Err(refusal) = same_origin(headers) {
            return refusal.into_response();
        }
    }
    let Some(token) = &state.inner.token else {
        return next.run(request).await;
    };
    if LOGIN_PATHS.contains(&path) {
        return next.run(request).await;
    }
    match credential(headers) {
        Some(Credential::Bearer(presented)) if token.matches(presented) => next.run(request).await,
        Some(Credential::Cookie(presented)) if token.cookie_matches(presented) => {
            next.run(request).await
        }
        Some(Credential::Bearer(_)) => {
            unauthorized("the bearer token is not the configured admin token")
        }
        _ if request.method() == Method::GET && !path.starts_with("/api/") => {
            login::form(StatusCode::UNAUTHORIZED, "")
        }
        _ => unauthorized(
            "this needs `Authorization: Bearer <token>` (admin.token is set), or the login \
             cookie from the page",
        ),
    }
}

/// How a request proves it knows the token.
enum Credential<'a> {
    Bearer(&'a [u8]),
    Cookie(&'a [u8]),
}

/// The request's credential: a bearer token, else the session cookie.
fn credential(headers: &HeaderMap) -> Option<Credential<'_>> {
    if let Some(token) = bearer(headers) {
        return Some(Credential::Bearer(token));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let value = pair.strip_prefix(COOKIE.as_bytes())?.strip_prefix(b"=")?;
            Some(Credential::Cookie(value))
        })
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

/// Whether the body is declared as JSON (`application/json`, any
/// parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
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
    use super::super::credentials::Token;
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn the_cookie_proves_the_token_without_being_it() {
        let token = Token::new("s3cret".into());
        let set = token.set_cookie(true);
        assert!(!set.contains("s3cret"), "{set}");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.ends_with("; Secure"));
        let value = set
            .strip_prefix("pgshadow_admin=")
            .and_then(|v| v.split(';').next())
            .unwrap();
        assert!(token.cookie_matches(value.as_bytes()));
        assert!(!Token::new("other".into()).cookie_matches(value.as_bytes()));
        let h = headers(&[(header::COOKIE, &format!("a=b; pgshadow_admin={value}"))]);
        assert!(matches!(credential(&h), Some(Credential::Cookie(v)) if v == value.as_bytes()));
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
    fn only_json_bodies_count_as_json() {
        assert!(is_json(&headers(&[(
            header::CONTENT_TYPE,
            "application/json"
        )])));
        assert!(is_json(&headers(&[(
            header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8"
        )])));
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            assert!(
                !is_json(&headers(&[(header::CONTENT_TYPE, other)])),
                "{other}"
            );
        }
        assert!(!is_json(&HeaderMap::new()));
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
