//! The page's view of latency: a `slower` example's old and new time and
//! both plans side by side, and the coverage's p50/p95 cells.

use super::html::Html;
use crate::store::{plan_outline, CoverageLatency, Example};

/// A `slower` example: old vs new time, the median paired ratio, and the
/// two plans side by side (the outline on top, where a Seq Scan facing an
/// Index Scan stands out; EXPLAIN's JSON below it). Nothing for other
/// examples.
pub fn render_latency(h: &mut Html, e: &Example) {
    let Some(ratio) = e.ratio else {
        return;
    };
    h.raw("<p class=\"summary slower\">New side ")
        .text(&format!("{ratio:.1}"))
        .raw("× slower: old ")
        .text(&format!("{:.3}", e.old_ms))
        .raw(" ms, new ")
        .text(&format!("{:.3}", e.new_ms))
        .raw(" ms (medians of the paired samples)</p>");
    if let Some(detail) = &e.detail {
        h.raw("<p class=\"muted-text verdict\">")
            .text(detail)
            .raw("</p>");
    }
    if e.old_plan.is_none() && e.new_plan.is_none() {
        return;
    }
    h.raw("<div class=\"sides plans\">");
    for (side, class, plan) in [
        ("Old", "old-plan", &e.old_plan),
        ("New", "new-plan", &e.new_plan),
    ] {
        h.raw("<div><h4>").text(side).raw(" plan</h4>");
        match plan {
            Some(plan) => {
                h.element("pre", &format!("{class} outline"), &plan_outline(plan));
                let json = serde_json::to_string_pretty(plan).unwrap_or_default();
                h.raw("<details><summary>EXPLAIN (FORMAT JSON)</summary>")
                    .element("pre", class, &json)
                    .raw("</details>");
            }
            None => {
                h.raw("<p class=\"muted-text\">not captured</p>");
            }
        }
        h.raw("</div>");
    }
    h.raw("</div>");
}

/// The coverage's latency cells: old p50/p95, new p50/p95 (ms), and the
/// ratios new/old.
pub fn latency_cells(h: &mut Html, latency: Option<&CoverageLatency>) {
    match latency {
        Some(l) => {
            h.element(
                "td",
                "num",
                &format!("{:.2} / {:.2}", l.old_p50_ms, l.old_p95_ms),
            )
            .element(
                "td",
                "num",
                &format!("{:.2} / {:.2}", l.new_p50_ms, l.new_p95_ms),
            )
            .element(
                "td",
                "num latency-ratio",
                &format!("{:.1}× / {:.1}×", l.p50_ratio, l.p95_ratio),
            );
        }
        None => {
            for _ in 0..3 {
                h.element("td", "num", "–");
            }
        }
    }
}
