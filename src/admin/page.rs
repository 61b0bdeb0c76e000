//! The web page for the on-call engineer: plain server-rendered HTML, a
//! little inline CSS and one small same-origin script (`/page.js`) for the
//! buttons. No external assets, no build step.
//!
//! - `/`: the incident list, newest first, with filters;
//! - `/incidents/{id}`: one incident, each example's old and new rows side
//!   by side with the differing cells highlighted (`diff-old`, `diff-new`),
//!   both SQL texts, parameters, settings, snapshot xmin, and the
//!   Acknowledge / Mute / Reopen buttons, which call the JSON API;
//! - `/coverage`: per fingerprint, what was compared and how it went, and
//!   the sampling controls.
//!
//! Safety: every value from the store is escaped ([`super::html`]); the
//! Content-Security-Policy only allows the same-origin script, so even a
//! missed escape could not run injected script.

use super::api::{sampling_now, ApiError};
use super::html::{shorten, Html};
use super::input::ListQuery;
use super::queries::rate;
use super::AdminState;
use crate::diff::RowRef;
use crate::outcome::signature::IncidentKind;
use crate::store::{
    format_utc, now_ms, Coverage, Example, Incident, IncidentDetail, IncidentStatus, StoredDiff,
};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
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
fn document(state: &AdminState, title: &str, body: &str) -> String {
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
fn error_page(state: &AdminState, status: StatusCode, message: &str) -> Response {
    let mut h = Html::default();
    h.raw("<h1>")
        .display(status)
        .raw("</h1><p class=\"error\">")
        .text(message)
        .raw("</p><p><a href=\"/\">Back to the incidents</a></p>");
    html_response(status, document(state, "Error", &h.finish()))
}

fn api_error_page(state: &AdminState, error: ApiError) -> Response {
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

/// `GET /?status=&kind=&fingerprint=&since=`: the incident list.
pub async fn incident_list(
    State(state): State<AdminState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return api_error_page(&state, e.into()),
    };
    let filter = match query.filter(now_ms()) {
        Ok(f) => f,
        Err(e) => return error_page(&state, StatusCode::BAD_REQUEST, &e),
    };
    let Some(writer) = state.store() else {
        return api_error_page(&state, ApiError::no_store());
    };
    match writer.store().list_incidents(&filter).await {
        Ok(incidents) => {
            let body = render_incident_list(&incidents, &query);
            html_response(StatusCode::OK, document(&state, "Incidents", &body))
        }
        Err(e) => api_error_page(&state, ApiError::store(e)),
    }
}

/// `GET /incidents/{id}`: one incident with its examples.
pub async fn incident(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    let Some(writer) = state.store() else {
        return api_error_page(&state, ApiError::no_store());
    };
    match writer.store().incident(&id).await {
        Ok(Some(detail)) => {
            let title = format!("Incident {}", detail.incident.id);
            let body = render_incident(&detail);
            html_response(StatusCode::OK, document(&state, &title, &body))
        }
        Ok(None) => error_page(
            &state,
            StatusCode::NOT_FOUND,
            &format!("No incident with id {id:?}: it may have been removed by retention."),
        ),
        Err(e) => api_error_page(&state, ApiError::store(e)),
    }
}

/// `GET /coverage`: per fingerprint, and the sampling controls.
pub async fn coverage(State(state): State<AdminState>) -> Response {
    let Some(writer) = state.store() else {
        return api_error_page(&state, ApiError::no_store());
    };
    match writer.store().list_coverage(None, 1000).await {
        Ok(rows) => {
            let sampling = sampling_now(&state);
            let mut h = Html::default();
            h.raw("<h1>Coverage</h1>");
            if sampling.shadow_running {
                h.raw("<form class=\"filters\" id=\"sampling-form\"><label>Sample rate ")
                    .raw("<input name=\"sample_rate\" type=\"number\" min=\"0\" max=\"1\" step=\"any\" value=\"")
                    .display(sampling.sample_rate)
                    .raw("\"></label><label><input name=\"enabled\" type=\"checkbox\"")
                    .raw(if sampling.enabled { " checked" } else { "" })
                    .raw("> sampling on</label><button type=\"submit\">Apply</button>")
                    .raw("<span class=\"message\" id=\"sampling-message\" role=\"status\"></span></form>");
            }
            h.raw(&render_coverage(&rows));
            html_response(StatusCode::OK, document(&state, "Coverage", &h.finish()))
        }
        Err(e) => api_error_page(&state, ApiError::store(e)),
    }
}

fn status_badge(h: &mut Html, status: IncidentStatus, id: Option<&str>) {
    h.raw("<span class=\"status status-")
        .raw(status.label())
        .raw("\"");
    if let Some(id) = id {
        h.raw(" id=\"").text(id).raw("\"");
    }
    h.raw(">").raw(status.label()).raw("</span>");
}

fn kind_text(incident: &Incident) -> String {
    match (incident.kind, incident.diff_kind) {
        (IncidentKind::Mismatch, Some(diff)) => format!("mismatch · {}", diff.label()),
        (IncidentKind::Mismatch, None) => "mismatch".into(),
        (IncidentKind::Slower, _) => "slower · new schema takes longer".into(),
        (kind, _) => format!(
            "{} · {} / {}",
            kind.label(),
            incident.old_sqlstate.as_deref().unwrap_or("-"),
            incident.new_sqlstate.as_deref().unwrap_or("-")
        ),
    }
}

fn percent(rate: f64) -> String {
    let p = rate * 100.0;
    if p == 0.0 {
        "0%".into()
    } else if p < 0.01 {
        "<0.01%".into()
    } else if p < 10.0 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

fn rate_text(incident: &Incident) -> String {
    if incident.kind == IncidentKind::Slower {
        // One verdict per change, not one per comparison: no rate.
        return "–".into();
    }
    match rate(incident) {
        (Some(r), Some(upper)) => format!("{} (≤ {} at 95%)", percent(r), percent(upper)),
        (Some(r), None) => percent(r),
        _ => "–".into(),
    }
}

/// The incident list's body.
pub fn render_incident_list(incidents: &[Incident], query: &ListQuery) -> String {
    let mut h = Html::default();
    h.raw("<h1>Incidents</h1>");
    render_filters(&mut h, query);
    if incidents.is_empty() {
        h.raw("<p id=\"no-incidents\">No incidents")
            .raw(if query_is_filtered(query) {
                " match these filters."
            } else {
                ": every comparison so far matched, or nothing was compared yet (see <a href=\"/coverage\">coverage</a>)."
            })
            .raw("</p>");
        return h.finish();
    }
    h.raw("<table id=\"incidents\"><thead><tr><th>Status</th><th>Incident</th><th>Kind</th>")
        .raw("<th>Columns</th><th>Statement</th><th>Count</th><th>Comparisons</th>")
        .raw("<th>Rate</th><th>First seen</th><th>Last seen</th></tr></thead><tbody>");
    for i in incidents {
        h.raw("<tr data-id=\"").text(&i.id).raw("\"><td>");
        status_badge(&mut h, i.status, None);
        h.raw("</td><td><a href=\"/incidents/")
            .text(&i.id)
            .raw("\"><code>")
            .text(&i.id)
            .raw("</code></a></td>")
            .element("td", "", &kind_text(i))
            .element("td", "", &i.columns.join(", "))
            .raw("<td class=\"sql\"><code title=\"")
            .text(&shorten(&i.client_sql, 2000))
            .raw("\">")
            .text(&shorten(&i.client_sql, 90))
            .raw("</code></td><td class=\"num\">")
            .display(i.count);
        if i.kind == IncidentKind::Mismatch && i.confirmed_count != i.count {
            h.raw(" <span class=\"muted-text\" title=\"confirmed by a recheck\">(")
                .display(i.confirmed_count)
                .raw(" confirmed)</span>");
        }
        h.raw("</td>")
            .element("td", "num", &i.fingerprint_comparisons.to_string())
            .element("td", "num", &rate_text(i))
            .element("td", "num", &format_utc(i.first_seen_ms))
            .element("td", "num", &format_utc(i.last_seen_ms))
            .raw("</tr>");
    }
    h.raw("</tbody></table>");
    h.finish()
}

fn query_is_filtered(q: &ListQuery) -> bool {
    [&q.status, &q.kind, &q.fingerprint, &q.since]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !v.trim().is_empty()))
}

fn render_filters(h: &mut Html, q: &ListQuery) {
    let select = |h: &mut Html, name: &str, current: Option<&str>, options: &[&str]| {
        h.raw("<label>")
            .text(name)
            .raw(" <select name=\"")
            .text(name)
            .raw("\">");
        h.raw("<option value=\"\">any</option>");
        for o in options {
            h.raw("<option");
            if current == Some(*o) {
                h.raw(" selected");
            }
            h.raw(">").text(o).raw("</option>");
        }
        h.raw("</select></label>");
    };
    h.raw("<form class=\"filters\" method=\"get\" action=\"/\">");
    select(
        h,
        "status",
        q.status.as_deref(),
        &["open", "acknowledged", "muted", "resolved"],
    );
    let kinds: Vec<&str> = IncidentKind::ALL.iter().map(|k| k.label()).collect();
    select(h, "kind", q.kind.as_deref(), &kinds);
    h.raw("<label>fingerprint <input name=\"fingerprint\" size=\"17\" value=\"")
        .text(q.fingerprint.as_deref().unwrap_or(""))
        .raw("\"></label><label>seen since <input name=\"since\" size=\"22\" placeholder=\"2h or 2026-11-03T14:05:09Z\" value=\"")
        .text(q.since.as_deref().unwrap_or(""))
        .raw("\"></label><button type=\"submit\">Filter</button></form>");
}

/// The incident view's body.
pub fn render_incident(detail: &IncidentDetail) -> String {
    let i = &detail.incident;
    let mut h = Html::default();
    h.raw("<h1>Incident <code>").text(&i.id).raw("</code> ");
    status_badge(&mut h, i.status, Some("status"));
    h.raw("</h1><div class=\"actions\" id=\"actions\" data-incident=\"")
        .text(&i.id)
        .raw("\"><button type=\"button\" id=\"ack\" data-action=\"ack\">Acknowledge</button>")
        .raw("<form id=\"mute-form\" class=\"filters\" style=\"margin:0\"><label>Mute for ")
        .raw("<select name=\"for\"><option>1h</option><option selected>4h</option>")
        .raw("<option>1d</option><option>7d</option><option>30d</option></select></label>")
        .raw("<input name=\"reason\" required maxlength=\"500\" placeholder=\"reason (required)\">")
        .raw("<button type=\"submit\" id=\"mute\">Mute</button></form>")
        .raw("<button type=\"button\" id=\"unmute\" data-action=\"unmute\">Reopen</button>")
        .raw("<span class=\"message\" id=\"action-message\" role=\"status\"></span></div>");

    h.raw("<dl class=\"facts\">");
    let fact = |h: &mut Html, name: &str, value: &str| {
        h.element("dt", "", name).element("dd", "", value);
    };
    fact(&mut h, "Kind", &kind_text(i));
    if !i.columns.is_empty() {
        fact(&mut h, "Differing columns", &i.columns.join(", "));
    }
    h.raw("<dt>Fingerprint</dt><dd><a href=\"/?fingerprint=")
        .text(&i.fingerprint)
        .raw("\"><code>")
        .text(&i.fingerprint)
        .raw("</code></a></dd>");
    fact(&mut h, "Database", &i.database);
    let mut count = i.count.to_string();
    if i.kind == IncidentKind::Mismatch {
        count.push_str(&format!(" ({} confirmed by a recheck)", i.confirmed_count));
    }
    fact(&mut h, "Count", &count);
    fact(
        &mut h,
        "Comparisons of this statement",
        &format!("{} · rate {}", i.fingerprint_comparisons, rate_text(i)),
    );
    fact(&mut h, "First seen", &format_utc(i.first_seen_ms));
    fact(&mut h, "Last seen", &format_utc(i.last_seen_ms));
    if i.kind == IncidentKind::Mismatch {
        render_ids_fact(&mut h, i);
    }
    h.raw("<dt>Status</dt><dd id=\"status-detail\">");
    h.text(&status_detail(i)).raw("</dd>");
    fact(&mut h, "Signature", &i.signature);
    h.raw("</dl><h2>Statement (as the application sent it)</h2><pre id=\"client-sql\">")
        .text(&i.client_sql)
        .raw("</pre>");

    h.raw("<h2>Examples (")
        .display(detail.examples.len())
        .raw(")</h2>");
    if detail.examples.is_empty() {
        h.raw("<p>No example kept.</p>");
    }
    for (n, e) in detail.examples.iter().enumerate() {
        render_example(&mut h, n + 1, e);
    }
    h.finish()
}

/// How many differing row ids the incident kept, with links to the list
/// (JSON and CSV, from the API).
fn render_ids_fact(h: &mut Html, i: &Incident) {
    h.raw("<dt>Differing rows</dt><dd id=\"ids\">")
        .display(i.ids_count)
        .raw(" distinct ids kept");
    if i.ids_omitted > 0 {
        h.raw(" (")
            .display(i.ids_omitted)
            .raw(" more sightings beyond store.max_ids_per_incident)");
    }
    h.raw(" · <a id=\"ids-link\" href=\"/api/incidents/")
        .text(&i.id)
        .raw("/ids\">every id (JSON)</a> · <a id=\"ids-csv\" href=\"/api/incidents/")
        .text(&i.id)
        .raw("/ids?format=csv\">CSV</a></dd>");
}

/// `acknowledged by alice at …`, `muted until … because …`, `open`.
fn status_detail(i: &Incident) -> String {
    let mut s = i.status.label().to_string();
    if i.status == IncidentStatus::Muted {
        match i.muted_until_ms {
            Some(until) => s.push_str(&format!(" until {}", format_utc(until))),
            None => s.push_str(" until reopened"),
        }
        if let Some(reason) = &i.mute_reason {
            s.push_str(&format!(" because {reason:?}"));
        }
    }
    if i.status != IncidentStatus::Open {
        if let Some(by) = &i.status_by {
            s.push_str(&format!(" by {by}"));
        }
        if let Some(at) = i.status_at_ms {
            s.push_str(&format!(" at {}", format_utc(at)));
        }
    }
    s
}

fn render_example(h: &mut Html, n: usize, e: &Example) {
    h.raw("<section class=\"example\" id=\"example-")
        .display(n)
        .raw("\"><h3>Example ")
        .display(n)
        .raw("</h3><p class=\"muted-text\">seen ")
        .text(&format_utc(e.seen_at_ms))
        .raw(" · snapshot xmin <code class=\"xmin\">")
        .text(&e.snapshot_xmin.map_or("unknown".into(), |x| x.to_string()))
        .raw("</code> · recheck ")
        .text(match e.confirmed {
            Some(true) => "confirmed it",
            Some(false) => "did not see it again",
            None => "not run",
        })
        .raw(" · ordering ")
        .text(e.ordering.label())
        .raw(" · tiebreak ")
        .text(e.tiebreak.label())
        .raw(" · keys <span class=\"keys\">")
        .text(if e.keys.is_empty() { "–" } else { &e.keys })
        .raw("</span> · old ")
        .text(&format!("{:.1}", e.old_ms))
        .raw(" ms, new ")
        .text(&format!("{:.1}", e.new_ms))
        .raw(" ms</p>");
    super::plans::render_latency(h, e);
    if let Some(diff) = &e.diff {
        h.raw("<p class=\"summary\">")
            .text(&diff.summary)
            .raw("</p>");
        render_diff(h, diff);
    }
    for (side, error) in [("Old", &e.old_error), ("New", &e.new_error)] {
        if let Some(err) = error {
            h.raw("<p class=\"error\">")
                .text(side)
                .raw(" side failed: ")
                .text(&format!("{} {}: {}", err.severity, err.code, err.message))
                .raw("</p>");
        }
    }
    if let Some(detail) = e.detail.as_ref().filter(|_| e.ratio.is_none()) {
        h.raw("<p class=\"error\">").text(detail).raw("</p>");
    }
    h.raw("<div class=\"sides\"><div><h4>Old SQL</h4><pre class=\"old-sql\">")
        .text(&e.old_sql)
        .raw("</pre></div><div><h4>New SQL</h4><pre class=\"new-sql\">")
        .text(&e.new_sql)
        .raw("</pre></div></div>");
    h.raw("<h4>Parameters</h4>");
    if e.params.is_empty() {
        h.raw("<p class=\"muted-text\">none</p>");
    } else {
        h.raw("<table class=\"params\"><tbody>");
        for (k, p) in e.params.iter().enumerate() {
            h.raw("<tr><th>$").display(k + 1).raw("</th>");
            value_cell(h, p.as_deref(), "");
            h.raw("</tr>");
        }
        h.raw("</tbody></table>");
    }
    h.raw("<h4>Session settings</h4>");
    if e.settings.is_empty() {
        h.raw("<p class=\"muted-text\">none</p>");
    } else {
        h.raw("<table class=\"settings\"><tbody>");
        for (name, value) in &e.settings {
            h.raw("<tr>")
                .element("th", "", name)
                .element("td", "", value)
                .raw("</tr>");
        }
        h.raw("</tbody></table>");
    }
    h.raw("</section>");
}

fn value_cell(h: &mut Html, value: Option<&str>, class: &str) {
    if class.is_empty() {
        h.raw("<td>");
    } else {
        h.raw("<td class=\"").raw(class).raw("\">");
    }
    match value {
        Some(v) => h.text(v),
        None => h.raw("<span class=\"null\">NULL</span>"),
    };
    h.raw("</td>");
}

/// One side's row in the side-by-side view: `None` when the row is absent
/// on that side.
struct SideRow<'a> {
    key: &'a str,
    values: Option<&'a [Option<String>]>,
    /// Columns whose value differs from the other side.
    differing: Vec<&'a str>,
}

/// Old and new rows side by side: changed rows (differing cells
/// highlighted), then rows only the old side has, then rows only the new
/// side has, aligned so each line pairs one row of both sides.
fn render_diff(h: &mut Html, diff: &StoredDiff) {
    if !diff.column_changes.is_empty() {
        h.raw("<ul class=\"column-changes\">");
        for c in &diff.column_changes {
            h.element("li", "", c);
        }
        h.raw("</ul>");
    }
    let mut old_rows: Vec<SideRow<'_>> = Vec::new();
    let mut new_rows: Vec<SideRow<'_>> = Vec::new();
    for change in &diff.changed {
        let differing: Vec<&str> = change.cells.iter().map(|c| c.column.as_str()).collect();
        old_rows.push(SideRow {
            key: &change.key,
            values: Some(&change.old_row),
            differing: differing.clone(),
        });
        new_rows.push(SideRow {
            key: &change.key,
            values: Some(&change.new_row),
            differing,
        });
    }
    let only_old = diff.missing.iter().map(|r: &RowRef| ("old", r));
    let only_new = diff.extra.iter().map(|r: &RowRef| ("new", r));
    for (side, row) in only_old.chain(only_new) {
        let present = SideRow {
            key: &row.key,
            values: Some(&row.row),
            differing: Vec::new(),
        };
        let absent = SideRow {
            key: &row.key,
            values: None,
            differing: Vec::new(),
        };
        if side == "old" {
            old_rows.push(present);
            new_rows.push(absent);
        } else {
            old_rows.push(absent);
            new_rows.push(present);
        }
    }
    if old_rows.is_empty() {
        return;
    }
    h.raw("<div class=\"sides\">");
    side_table(
        h,
        "Old rows",
        "old",
        &diff.old_columns,
        &old_rows,
        "diff-old",
    );
    side_table(
        h,
        "New rows",
        "new",
        &diff.new_columns,
        &new_rows,
        "diff-new",
    );
    h.raw("</div>");
    if diff.truncated {
        h.raw("<p class=\"muted-text\">Some rows were beyond compare.max_rows and compared through digests only.</p>");
    }
}

fn side_table(
    h: &mut Html,
    title: &str,
    side: &str,
    columns: &[String],
    rows: &[SideRow<'_>],
    highlight: &str,
) {
    let width = rows
        .iter()
        .filter_map(|r| r.values.map(<[_]>::len))
        .max()
        .unwrap_or(0)
        .max(columns.len());
    h.raw("<div><h4>")
        .text(title)
        .raw("</h4><table class=\"rows ")
        .raw(side)
        .raw("\"><thead><tr><th>row</th>");
    for c in 0..width {
        match columns.get(c) {
            Some(name) => h.element("th", "", name),
            None => h.element("th", "", &format!("column {}", c + 1)),
        };
    }
    h.raw("</tr></thead><tbody>");
    for row in rows {
        h.raw("<tr>").element("th", "", row.key);
        match row.values {
            Some(values) => {
                for (c, value) in values.iter().enumerate() {
                    let name = columns.get(c).map(String::as_str);
                    let differs = name.is_some_and(|n| row.differing.contains(&n));
                    value_cell(h, value.as_deref(), if differs { highlight } else { "" });
                }
                for _ in values.len()..width {
                    h.raw("<td></td>");
                }
            }
            None => {
                h.raw("<td class=\"absent\" colspan=\"")
                    .display(width.max(1))
                    .raw("\">not in this result</td>");
            }
        }
        h.raw("</tr>");
    }
    h.raw("</tbody></table></div>");
}

/// The coverage table.
pub fn render_coverage(rows: &[Coverage]) -> String {
    let mut h = Html::default();
    if rows.is_empty() {
        h.raw("<p>Nothing counted yet.</p>");
        return h.finish();
    }
    h.raw("<table id=\"coverage\"><thead><tr><th>Fingerprint</th><th>Statement</th>")
        .raw("<th>Compared</th><th>Matched</th><th>Mismatched</th><th>Noisy</th><th>Errors</th>")
        .raw(
            "<th>Skipped</th><th>Mismatch rate ≤ (95%)</th><th>Old ms p50 / p95</th>\
             <th>New ms p50 / p95</th><th>New/old</th><th>Last seen</th></tr></thead><tbody>",
        );
    for c in rows {
        let skipped: u64 = c.skipped.values().sum();
        let reasons: Vec<String> = c.skipped.iter().map(|(r, n)| format!("{r}: {n}")).collect();
        h.raw("<tr><td><a href=\"/?fingerprint=")
            .text(&c.fingerprint)
            .raw("\"><code>")
            .text(&c.fingerprint)
            .raw("</code></a></td><td class=\"sql\"><code title=\"")
            .text(&shorten(c.client_sql.as_deref().unwrap_or(""), 2000))
            .raw("\">")
            .text(&shorten(c.client_sql.as_deref().unwrap_or("–"), 60))
            .raw("</code></td>")
            .element("td", "num", &c.compared.to_string())
            .element("td", "num", &c.matched.to_string())
            .element("td", "num", &c.mismatched.to_string())
            .element("td", "num noisy", &c.noisy.to_string())
            .element("td", "num", &c.errored.to_string())
            .raw("<td class=\"num\" title=\"")
            .text(&reasons.join(", "))
            .raw("\">")
            .display(skipped)
            .raw("</td>")
            .element(
                "td",
                "num",
                &c.mismatch_rate_upper_95.map_or("–".into(), percent),
            );
        super::plans::latency_cells(&mut h, c.latency.as_ref());
        h.element("td", "num", &format_utc(c.last_seen_ms))
            .raw("</tr>");
    }
    h.raw("</tbody></table>");
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{CellChange, DiffKind, RowChange};
    use std::collections::BTreeMap;

    const EVIL: &str = "<script>alert(1)</script>";

    fn incident(sql: &str) -> Incident {
        Incident {
            id: "0123456789ab".into(),
            signature: "90356c2a5f55a6f1 mismatch values [\"title\"]".into(),
            fingerprint: "90356c2a5f55a6f1".into(),
            kind: IncidentKind::Mismatch,
            diff_kind: Some(DiffKind::Values),
            columns: vec!["title".into()],
            old_sqlstate: None,
            new_sqlstate: None,
            client_sql: sql.into(),
            database: "app".into(),
            first_seen_ms: 1_793_000_000_000,
            last_seen_ms: 1_793_000_060_000,
            count: 3,
            confirmed_count: 3,
            fingerprint_comparisons: 300,
            status: IncidentStatus::Open,
            status_by: None,
            status_at_ms: None,
            muted_until_ms: None,
            mute_reason: Some(EVIL.into()),
            example_count: 1,
            ids_count: 0,
            ids_omitted: 0,
        }
    }

    fn detail(value: &str) -> IncidentDetail {
        let diff = StoredDiff {
            kind: DiffKind::Values,
            differing_columns: vec!["title".into()],
            summary: format!("id=7: title old='Title 7' new='{value}'"),
            old_rows: 2,
            new_rows: 2,
            old_columns: vec!["id".into(), "title".into()],
            new_columns: vec!["id".into(), "title".into()],
            changed: vec![RowChange {
                key: "id=7".into(),
                cells: vec![CellChange {
                    column: "title".into(),
                    old: Some("Title 7".into()),
                    new: Some(value.into()),
                }],
                old_row: vec![Some("7".into()), Some("Title 7".into())],
                new_row: vec![Some("7".into()), Some(value.into())],
            }],
            missing: vec![RowRef {
                key: "id=9".into(),
                row: vec![Some("9".into()), None],
            }],
            extra: vec![],
            column_changes: vec![],
            ordering: crate::diff::RowOrder::Total,
            truncated: false,
        };
        IncidentDetail {
            incident: incident(&format!(
                "SELECT id, title FROM items WHERE title = '{EVIL}'"
            )),
            examples: vec![Example {
                id: 1,
                seen_at_ms: 1_793_000_000_000,
                database: "app".into(),
                old_sql: format!("SELECT '{EVIL}' ORDER BY id"),
                new_sql: "SELECT 2".into(),
                params: vec![Some(EVIL.into()), None],
                settings: vec![("TimeZone".into(), EVIL.into())],
                snapshot_xmin: Some(4242),
                confirmed: Some(true),
                ordering: crate::diff::RowOrder::Total,
                tiebreak: crate::rewrite::TiebreakKind::Appended,
                keys: String::new(),
                old_ms: 1.0,
                new_ms: 2.0,
                diff: Some(diff),
                old_error: None,
                new_error: None,
                detail: None,
                ratio: None,
                old_plan: None,
                new_plan: None,
            }],
        }
    }

    #[test]
    fn a_mismatch_links_every_differing_row_id_and_shows_the_keys() {
        let mut d = detail("Wrong title");
        d.incident.ids_count = 12;
        d.incident.ids_omitted = 3;
        d.examples[0].keys = "entries (id) primary_key".into();
        let page = render_incident(&d);
        assert!(page.contains("12 distinct ids kept"), "{page}");
        assert!(page.contains("3 more sightings"), "{page}");
        assert!(
            page.contains(&format!("href=\"/api/incidents/{}/ids\"", d.incident.id)),
            "{page}"
        );
        assert!(page.contains("/ids?format=csv"), "{page}");
        assert!(page.contains("entries (id) primary_key"), "{page}");
    }

    #[test]
    fn a_slower_example_shows_both_times_and_both_plans_side_by_side() {
        let mut d = detail("unused");
        d.incident.kind = IncidentKind::Slower;
        d.incident.diff_kind = None;
        let e = &mut d.examples[0];
        e.diff = None;
        e.ratio = Some(42.5);
        e.old_ms = 0.2;
        e.new_ms = 8.5;
        let plan =
            |node: &str| serde_json::json!([{"Plan": {"Node Type": node, "Relation Name": EVIL}}]);
        e.old_plan = Some(plan("Index Scan"));
        e.new_plan = Some(plan("Seq Scan"));
        let page = render_incident(&d);
        assert!(page.contains("42.5"), "{page}");
        assert!(page.contains("0.200") && page.contains("8.500"), "{page}");
        let old = page.find("old-plan outline").expect("old plan");
        let new = page.find("new-plan outline").expect("new plan");
        assert!(old < new);
        assert!(page[old..new].contains("Index Scan"));
        assert!(page[new..].contains("Seq Scan"));
        assert!(!page.contains("<script"), "{page}");
    }

    #[test]
    fn script_in_sql_and_values_is_escaped_everywhere() {
        let page = render_incident(&detail(EVIL));
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        let list = render_incident_list(&[incident(EVIL)], &ListQuery::default());
        assert!(!list.contains("<script"), "{list}");
        let coverage = render_coverage(&[Coverage {
            fingerprint: "90356c2a5f55a6f1".into(),
            client_sql: Some(EVIL.into()),
            compared: 1,
            matched: 1,
            mismatched: 0,
            errored: 0,
            noisy: 0,
            skipped: BTreeMap::from([(EVIL.to_string(), 1)]),
            first_seen_ms: 0,
            last_seen_ms: 0,
            mismatch_rate_upper_95: Some(1.0),
            latency: None,
        }]);
        assert!(!coverage.contains("<script"), "{coverage}");
        let filters = render_incident_list(
            &[],
            &ListQuery {
                since: Some(format!("\"><{EVIL}")),
                ..Default::default()
            },
        );
        assert!(!filters.contains("<script"), "{filters}");
        assert!(
            filters.contains("value=\"&quot;&gt;&lt;&lt;script&gt;"),
            "the attribute cannot be closed from the query string: {filters}"
        );
    }

    #[test]
    fn only_the_differing_cells_are_highlighted_on_each_side() {
        let page = render_incident(&detail("Wrong title"));
        assert!(
            page.contains("<td class=\"diff-old\">Title 7</td>"),
            "{page}"
        );
        assert!(
            page.contains("<td class=\"diff-new\">Wrong title</td>"),
            "{page}"
        );
        assert_eq!(page.matches("class=\"diff-old\"").count(), 1, "{page}");
        assert_eq!(page.matches("class=\"diff-new\"").count(), 1, "{page}");
        assert!(
            page.contains("not in this result"),
            "the missing row is shown"
        );
        assert!(page.contains("<span class=\"null\">NULL</span>"));
        assert!(page.contains("4242"), "snapshot xmin");
        assert!(page.contains("id=\"ack\""));
    }

    #[test]
    fn rates_read_as_percentages() {
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.01), "1.00%");
        assert_eq!(percent(0.5), "50.0%");
        assert_eq!(percent(0.000_01), "<0.01%");
        assert_eq!(rate_text(&incident("x")), "1.00% (≤ 2.90% at 95%)");
    }
}
