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
//! Files: the frame and error pages in `layout.rs`, one incident's view
//! in `incident.rs`, the list and coverage here.
//!
//! Safety: every value from the store is escaped ([`super::html`]); the
//! Content-Security-Policy only allows the same-origin script, so even a
//! missed escape could not run injected script.

use super::api::{sampling_now, ApiError};
use super::html::{shorten, Html};
use super::incident::{kind_text, percent, rate_text, render_incident, status_badge};
use super::input::ListQuery;
use super::layout::{api_error_page, document, error_page, html_response};
use super::state::AdminState;
use crate::outcome::signature::IncidentKind;
use crate::store::{format_utc, now_ms, Coverage, Incident};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

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
    use crate::diff::{CellChange, DiffKind, RowChange, RowRef};
    use crate::store::{Example, IncidentDetail, IncidentStatus, StoredDiff};
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
