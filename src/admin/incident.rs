//! One incident as the web page shows it (`/incidents/{id}`): its facts,
//! each example's old and new rows side by side with the differing cells
//! highlighted, both SQL texts, parameters, settings and plans; and the
//! few labels (status badge, kind, rate) the incident list shows too.
//!
//! Every value from the store is escaped ([`super::html`]).

use super::html::Html;
use super::queries::rate;
use crate::diff::RowRef;
use crate::outcome::signature::IncidentKind;
use crate::store::{format_utc, Example, Incident, IncidentDetail, IncidentStatus, StoredDiff};

pub(super) fn status_badge(h: &mut Html, status: IncidentStatus, id: Option<&str>) {
    h.raw("<span class=\"status status-")
        .raw(status.label())
        .raw("\"");
    if let Some(id) = id {
        h.raw(" id=\"").text(id).raw("\"");
    }
    h.raw(">").raw(status.label()).raw("</span>");
}

pub(super) fn kind_text(incident: &Incident) -> String {
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

pub(super) fn percent(rate: f64) -> String {
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

pub(super) fn rate_text(incident: &Incident) -> String {
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
