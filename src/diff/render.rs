//! Values as text for people: lossy UTF-8 for stored reports, short
//! SQL-like literals for the one-line summary.
//!
//! Values come from the network and may be huge or binary-ish; rendering
//! is bounded and never fails.

/// Longest value kept in a stored report, in characters.
const REPORT_VALUE_CHARS: usize = 1000;
/// Longest value shown in a summary, in characters.
const SUMMARY_VALUE_CHARS: usize = 60;
/// Most ids or row values listed in a summary.
pub(crate) const SUMMARY_ITEMS: usize = 5;
/// Most cells or row values shown per row in a summary.
pub(crate) const SUMMARY_CELLS: usize = 3;

/// A value for a stored report: `None` for NULL, lossy UTF-8 otherwise,
/// cut at [`REPORT_VALUE_CHARS`] with a trailing `…`.
pub(crate) fn report_value(value: Option<&[u8]>) -> Option<String> {
    value.map(|v| bounded(v, REPORT_VALUE_CHARS))
}

/// A value for a summary: `NULL`, `12` for numbers, `'it''s'` otherwise,
/// on one line and at most about [`SUMMARY_VALUE_CHARS`] characters.
pub(crate) fn summary_value(value: Option<&[u8]>, number: bool) -> String {
    let Some(v) = value else {
        return "NULL".to_owned();
    };
    let text: String = bounded(v, SUMMARY_VALUE_CHARS)
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else if c == '\'' && !number {
                vec!['\'', '\'']
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    if number {
        text
    } else {
        format!("'{text}'")
    }
}

/// Lossy UTF-8 of at most `max` characters, `…` marking a cut. Only a
/// prefix of the bytes is decoded, so a huge value costs no more than a
/// short one.
fn bounded(value: &[u8], max: usize) -> String {
    let prefix = value.get(..max.saturating_mul(4)).unwrap_or(value);
    let text = String::from_utf8_lossy(prefix);
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() || prefix.len() < value.len() {
        out.push('…');
    }
    out
}

/// `one thing` / `3 things`.
pub(crate) fn plural(count: usize, singular: &str) -> String {
    if count == 1 {
        format!("1 {singular}")
    } else {
        format!("{count} {singular}s")
    }
}

/// `a, b, c, …` with at most `max` items.
pub(crate) fn list(items: impl Iterator<Item = String>, total: usize, max: usize) -> String {
    let mut shown: Vec<String> = items.take(max).collect();
    if total > shown.len() {
        shown.push("…".to_owned());
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_values_read_like_sql_literals() {
        assert_eq!(summary_value(None, false), "NULL");
        assert_eq!(summary_value(Some(b"a"), false), "'a'");
        assert_eq!(summary_value(Some(b"it's"), false), "'it''s'");
        assert_eq!(summary_value(Some(b"12.5"), true), "12.5");
        assert_eq!(summary_value(Some(b""), false), "''");
    }

    #[test]
    fn summary_values_stay_on_one_short_line() {
        assert_eq!(summary_value(Some(b"a\nb"), false), "'a\\nb'");
        let long = "x".repeat(500);
        let shown = summary_value(Some(long.as_bytes()), false);
        assert!(shown.chars().count() <= SUMMARY_VALUE_CHARS + 3, "{shown}");
        assert!(shown.ends_with("…'"));
    }

    #[test]
    fn report_values_are_lossy_and_bounded() {
        assert_eq!(report_value(None), None);
        assert_eq!(report_value(Some(b"caf\xc3\xa9")).as_deref(), Some("café"));
        assert_eq!(report_value(Some(b"\xff")).as_deref(), Some("\u{fffd}"));
        let huge = vec![b'y'; 1_000_000];
        let shown = report_value(Some(&huge)).unwrap_or_default();
        assert_eq!(shown.chars().count(), REPORT_VALUE_CHARS + 1);
    }

    #[test]
    fn lists_are_bounded() {
        let items = (1..=9).map(|i| i.to_string());
        assert_eq!(list(items, 9, 3), "1, 2, 3, …");
        assert_eq!(plural(1, "missing id"), "1 missing id");
        assert_eq!(plural(2, "missing id"), "2 missing ids");
    }
}
