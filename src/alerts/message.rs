//! What a webhook says: a Slack-compatible JSON message about one
//! incident event.
//!
//! `text` is a complete one-paragraph message (what notifications, and
//! receivers that ignore `blocks`, show); `blocks` lay the same facts out
//! for Slack. Neither carries row values: those can be personal data and
//! stay in the store, one click away on the incident page. Only the
//! client's SQL text, shortened, identifies the statement.

use crate::outcome::signature::IncidentKind;
use crate::store::{IncidentEvent, IncidentNotice};
use serde_json::{json, Value};

/// Characters of SQL shown in a message.
const SQL_CHARS: usize = 300;

/// The Slack-compatible JSON for `event`. `page_base` is where the admin
/// server's incident pages are (`http://127.0.0.1:9930`); the link is
/// `<page_base>/incidents/<id>`.
pub fn payload(event: &IncidentEvent, page_base: &str) -> Value {
    let (notice, headline) = match event {
        IncidentEvent::Opened(n) => (n, format!("new incident {}", n.id)),
        IncidentEvent::Unmuted(n) => (n, format!("incident {} is open again (mute ended)", n.id)),
    };
    let link = incident_link(page_base, &notice.id);
    let kind = kind_label(notice);
    let differs = difference_label(notice);
    // A chat channel is a log pipeline too: literals in the statement
    // are values, shown only with `log.values`.
    let sql = if crate::observability::logs::log_values() {
        shorten_sql(&notice.client_sql, SQL_CHARS)
    } else {
        shorten_sql(
            &crate::capture::lexer::mask_literals(&notice.client_sql),
            SQL_CHARS,
        )
    };
    let count = match notice.count {
        1 => "1 occurrence".to_string(),
        n => format!("{n} occurrences"),
    };
    let text = format!(
        "pgshadow: {headline}: {kind}{on} ({count}) in `{sql}` (fingerprint {fingerprint}, \
         database {database}) {link}",
        on = if differs.is_empty() {
            String::new()
        } else {
            format!(" on {differs}")
        },
        fingerprint = notice.fingerprint,
        database = notice.database,
    );
    let field = |title: &str, value: &str| json!({"type": "mrkdwn", "text": format!("*{title}*\n{}", escape(value))});
    let mut fields = vec![field("Kind", &kind)];
    if !differs.is_empty() {
        let title = if notice.kind == IncidentKind::Mismatch {
            "Columns"
        } else {
            "SQLSTATE"
        };
        fields.push(field(title, &differs));
    }
    fields.push(field("Count", &notice.count.to_string()));
    fields.push(field("Fingerprint", &notice.fingerprint));
    fields.push(field("Database", &notice.database));
    json!({
        "text": escape(&text),
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": truncate_chars(&format!("pgshadow: {headline}"), 150),
                },
            },
            {"type": "section", "fields": fields},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("```{}```", escape(&sql))},
            },
            {
                "type": "context",
                "elements": [{
                    "type": "mrkdwn",
                    "text": format!("<{}|Open incident {}> (examples, side-by-side diff, ack/mute)",
                        escape(&link), escape(&notice.id)),
                }],
            },
        ],
    })
}

/// `http://host:port/incidents/<id>`, without a doubled slash.
pub fn incident_link(page_base: &str, id: &str) -> String {
    format!("{}/incidents/{id}", page_base.trim_end_matches('/'))
}

/// `mismatch (values)`, `new_error`, …
fn kind_label(notice: &IncidentNotice) -> String {
    match notice.diff_kind {
        Some(diff) => format!("{} ({})", notice.kind.label(), diff.label()),
        None => notice.kind.label().to_string(),
    }
}

/// What differs, in one short phrase: the differing columns of a mismatch
/// (`title, body`), or both sides' SQLSTATEs of an error
/// (`old=- new=42P01`); empty when there is nothing to say.
pub fn difference_label(notice: &IncidentNotice) -> String {
    describe_difference(
        notice.kind,
        &notice.columns,
        notice.old_sqlstate.as_deref(),
        notice.new_sqlstate.as_deref(),
    )
}

/// [`difference_label`] from an incident's parts, for callers holding an
/// [`crate::store::Incident`] rather than a notice (the CLI).
pub fn describe_difference(
    kind: IncidentKind,
    columns: &[String],
    old_sqlstate: Option<&str>,
    new_sqlstate: Option<&str>,
) -> String {
    if kind == IncidentKind::Mismatch {
        return columns.join(", ");
    }
    if old_sqlstate.is_none() && new_sqlstate.is_none() {
        return String::new();
    }
    format!(
        "old={} new={}",
        old_sqlstate.unwrap_or("-"),
        new_sqlstate.unwrap_or("-")
    )
}

/// SQL on one line (runs of whitespace become one space), cut to at most
/// `max_chars` characters with a trailing `…`.
pub fn shorten_sql(sql: &str, max_chars: usize) -> String {
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate_chars(&one_line, max_chars)
}

fn truncate_chars(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Slack's mrkdwn escaping: `&`, `<` and `>` would otherwise start
/// entities, links and mentions (`<!channel>`), which SQL text must never
/// do.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::DiffKind;

    fn notice() -> IncidentNotice {
        IncidentNotice {
            id: "3f2a9c0d1e2b".into(),
            fingerprint: "90356c2a5f55a6f1".into(),
            kind: IncidentKind::Mismatch,
            diff_kind: Some(DiffKind::Values),
            columns: vec!["body".into(), "title".into()],
            old_sqlstate: None,
            new_sqlstate: None,
            client_sql: "SELECT id,\n   title FROM items\tWHERE id = $1 AND n < 3".into(),
            database: "app".into(),
            summary: Some("id=7: title old='secret' new='other'".into()),
            count: 1,
        }
    }

    #[test]
    fn a_new_incident_message_names_everything_an_on_call_engineer_needs() {
        let v = payload(&IncidentEvent::Opened(notice()), "http://127.0.0.1:9930/");
        let text = v["text"].as_str().unwrap();
        for part in [
            "new incident 3f2a9c0d1e2b",
            "mismatch (values) on body, title",
            "1 occurrence",
            "SELECT id, title FROM items WHERE id = $1 AND n &lt; ?",
            "fingerprint 90356c2a5f55a6f1",
            "database app",
            "http://127.0.0.1:9930/incidents/3f2a9c0d1e2b",
        ] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }
        // Row values stay in the store.
        assert!(!v.to_string().contains("secret"), "{v}");
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        let fields = blocks[1]["fields"].as_array().unwrap();
        assert!(fields.iter().any(|f| f["text"] == "*Columns*\nbody, title"));
        assert!(blocks[3]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("<http://127.0.0.1:9930/incidents/3f2a9c0d1e2b|"));
    }

    #[test]
    fn error_incidents_show_sqlstates_and_unmutes_say_so() {
        let n = IncidentNotice {
            kind: IncidentKind::NewError,
            diff_kind: None,
            columns: Vec::new(),
            new_sqlstate: Some("42P01".into()),
            count: 12,
            ..notice()
        };
        let v = payload(&IncidentEvent::Unmuted(n), "http://h:1");
        let text = v["text"].as_str().unwrap();
        assert!(
            text.contains("incident 3f2a9c0d1e2b is open again"),
            "{text}"
        );
        assert!(
            text.contains("new_error on old=- new=42P01 (12 occurrences)"),
            "{text}"
        );
        assert!(v["blocks"][1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["text"] == "*SQLSTATE*\nold=- new=42P01"));
    }

    #[test]
    fn long_sql_is_cut_on_a_character_boundary() {
        let sql = format!("SELECT '{}'", "é".repeat(400));
        let short = shorten_sql(&sql, 20);
        assert_eq!(short.chars().count(), 20);
        assert!(short.ends_with('…'));
        assert_eq!(shorten_sql("SELECT\n 1", 20), "SELECT 1");
    }
}
