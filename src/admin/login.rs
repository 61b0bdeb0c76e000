//! The login form: how a browser gets the session cookie when
//! `admin.token` is set (see [`super::auth`]).
//!
//! Every page asked for without the cookie answers 401 with this form, at
//! its own address; the page's script posts the token as JSON to
//! `/login` and reloads, now with the cookie. The token itself never
//! reaches a URL, the page or storage a script can read.

use super::api::ApiError;
use super::html::Html;
use super::layout::{html_response, STYLE};
use super::state::AdminState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

/// The login page, with `message` above the form (empty: none).
pub fn form(status: StatusCode, message: &str) -> Response {
    let mut h = Html::default();
    h.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">")
        .raw("<title>Log in · pgshadow</title><style>")
        .raw(STYLE)
        .raw("</style></head><body><header><span class=\"brand\">pgshadow</span></header><main>")
        .raw("<h1>Log in</h1><p>This admin server shows production values: enter its token ")
        .raw("(<code>admin.token</code>).</p>")
        .raw("<form class=\"filters\" id=\"login-form\"><label>Token ")
        .raw("<input name=\"token\" id=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>")
        .raw("</label><button type=\"submit\">Log in</button>")
        .raw("<span class=\"message error\" id=\"login-message\" role=\"status\">")
        .text(message)
        .raw("</span></form></main><script src=\"/page.js\"></script></body></html>");
    html_response(status, h.finish())
}

/// The body of `POST /login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    token: String,
}

/// `GET /login`: the form.
pub async fn show() -> Response {
    form(StatusCode::OK, "")
}

/// `POST /login` with `{"token": "…"}`: 204 with the session cookie, or
/// 401.
pub async fn login(State(state): State<AdminState>, Json(body): Json<LoginBody>) -> Response {
    let Some(token) = &state.inner.token else {
        return StatusCode::NO_CONTENT.into_response();
    };
    if !token.matches(body.token.trim().as_bytes()) {
        tracing::warn!("admin login with a wrong token refused");
        return ApiError::new(StatusCode::UNAUTHORIZED, "that is not the admin token")
            .into_response();
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(cookie) = HeaderValue::from_str(&token.set_cookie(state.inner.tls)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}
