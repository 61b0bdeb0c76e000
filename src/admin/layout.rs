//! The frame every page of the admin server shares: the document around a
//! page's body, the inline style, the same-origin script (`/page.js`),
//! the security headers (Content-Security-Policy and others) and the
//! error pages.

use super::api::{sampling_now, ApiError};
use super::html::Html;
use super::state::AdminState;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The script behind the buttons.
const SCRIPT: &str = include_str!("page.js");

/// Only the same-origin script, inline styles, and requests to this server.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

pub(super) const STYLE: &str = r#"
*{box-sizing:border-box}:root{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;background:#f6f7f9}
body{margin:0}header{background:#1d2330;color:#fff;padding:.5rem 1rem;display:flex;gap:1.5rem;align-items:center;flex-wrap:wrap}
header a{color:#cfe0ff;text-decoration:none}header .brand{font-weight:700;color:#fff}header .sampling{margin-left:auto;color:#c8ccd4}
main{padding:1rem;max-width:1500px}h1{font-size:1.3rem;margin:.2rem 0 .8rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}h3{font-size:1rem;margin:.2rem 0}
table{border-collapse:collapse;background:#fff;width:100%}th,td{border:1px solid #dde1e7;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600;white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.sql code{white-space:nowrap}code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#fff;border:1px solid #dde1e7;padding:.5rem;white-space:pre-wrap;word-break:break-word;margin:.2rem 0 .6rem}
.status{display:inline-block;padding:0 .45rem;border-radius:.6rem;font-size:.85em;font-weight:600}
.status-open{background:#ffe1e1;color:#8a1010}.status-acknowledged{background:#e3ecff;color:#123c8a}.status-muted{background:#eee;color:#555}.status-resolved{background:#e2f5e2;color:#1b5e20}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;background:#fff;border:1px solid #dde1e7;padding:.6rem}
.facts dt{color:#5b6372}.facts dd{margin:0}
.actions{display:flex;gap:.6rem;align-items:center;flex-wrap:wrap;margin:.8rem 0}
button{font:inherit;padding:.25rem .8rem;border:1px solid #8a94a6;border-radius:4px;background:#fff;cursor:pointer}button:hover{background:#eef1f5}
input,select{font:inherit;padding:.2rem .3rem}
.example{background:#fff;border:1px solid #dde1e7;padding:.6rem .8rem;margin:1rem 0}
.sides{display:grid;grid-template-columns:1fr 1fr;gap:.8rem;overflow-x:auto}.sides h4{margin:.3rem 0}
td.diff-old{background:#ffd7d5;font-weight:600}td.diff-new{background:#cdf3d4;font-weight:600}
td.absent{color:#888;font-style:italic;background:#fafafa}.null{color:#888;font-style:italic}
.muted-text{color:#5b6372}.message{font-weight:600}.error{color:#a11}
table.params,table.settings{width:auto;min-width:24rem}
form.filters{display:flex;gap:.6rem;align-items:center;flex-wrap:wrap;margin-bottom:.8rem}
"#;

/// A whole page: the frame around `body`.
pub(super) fn document(state: &AdminState, title: &str, body: &str) -> String {
    let sampling = sampling_now(state);
    let mut h = Html::default();
    h.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">")
        .raw("<title>")
        .text(title)
        .raw(" · pgshadow</title><style>")
        .raw(STYLE)
        .raw("</style></head><body data-token-required=\"")
        .raw(if state.token_required() {
            "true"
        } else {
            "false"
        })
        .raw("\"><header><a class=\"brand\" href=\"/\">pgshadow</a><nav>")
        .raw("<a href=\"/\">Incidents</a> · <a href=\"/coverage\">Coverage</a> · ")
        .raw("<a href=\"/api/incidents\">JSON</a> · <a href=\"/metrics\">Metrics</a></nav>")
        .raw("<span class=\"sampling\" id=\"sampling\">");
    if !sampling.shadow_running {
        h.raw("shadow disabled");
    } else if sampling.enabled {
        h.raw("sampling on, rate ").display(sampling.sample_rate);
    } else {
        h.raw("sampling switched off");
    }
    h.raw("</span></header><main>")
        .raw(body)
        .raw("</main><script src=\"/page.js\"></script></body></html>");
    h.finish()
}

/// An HTML response with the page's security headers.
pub(super) fn html_response(status: StatusCode, document: String) -> Response {
    let mut response = (status, document).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A short page for errors (no store, no such incident, bad filter).
pub(super) fn error_page(state: &AdminState, status: StatusCode, message: &str) -> Response {
    let mut h = Html::default();
    h.raw("<h1>")
        .display(status)
        .raw("</h1><p class=\"error\">")
        .text(message)
        .raw("</p><p><a href=\"/\">Back to the incidents</a></p>");
    html_response(status, document(state, "Error", &h.finish()))
}

pub(super) fn api_error_page(state: &AdminState, error: ApiError) -> Response {
    error_page(state, error.status(), error.message())
}

/// 404 for paths that are not pages (no state needed).
pub fn not_found(message: &str) -> Response {
    let mut h = Html::default();
    h.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found · pgshadow</title></head><body><h1>404</h1><p>")
        .text(message)
        .raw("</p><p><a href=\"/\">The incidents</a></p></body></html>");
    html_response(StatusCode::NOT_FOUND, h.finish())
}

/// `GET /page.js`.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}
