//! What production values may leave the process, and in what form.
//!
//! Bound parameters and result rows are production data: personal data,
//! secrets, whatever the application stores. pgshadow needs them to
//! compare, and on-call needs them to repair, but a log pipeline does not:
//!
//! - **Logs** (`log.values = false`, the default) carry no values: a
//!   parameter becomes its length and a keyed hash (`$1=<5 bytes
//!   #1f2e3d4c5b6a>`), a mismatch's summary says which columns and how many
//!   rows differ, SQL texts have their literals masked, and error messages
//!   lose any parameter value they quote. Equal values have equal hashes
//!   within one process, so "old and new differ" still shows.
//! - **The mismatch store** keeps values (`store.values = "keep"`): they
//!   are what the incident page shows. `store.values = "hash"` stores the
//!   same value-free forms instead, for stores that must not hold
//!   production data.
//! - **URLs** with credentials (the store's, a webhook's) are shown
//!   without them ([`redact_url`]).
//!
//! Hashes are HMAC-SHA256 under a key drawn at start and never written
//! anywhere: a low-entropy value (a PIN, a flag) cannot be found again by
//! hashing guesses.

use crate::capture::lexer::mask_literals;
use crate::diff::{CellChange, Diff, RowChange, RowRef};
use ring::hmac;
use std::sync::OnceLock;

/// The process's hashing key.
fn key() -> &'static hmac::Key {
    static KEY: OnceLock<hmac::Key> = OnceLock::new();
    KEY.get_or_init(|| {
        let rng = ring::rand::SystemRandom::new();
        hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            // No randomness from the OS: fall back to a key from the
            // clock and the pid, which still is not guessable from logs.
            let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
            hmac::Key::new(hmac::HMAC_SHA256, seed.as_bytes())
        })
    })
}

/// `#` and 12 hex digits of the keyed hash of `value`.
pub fn hash(value: &[u8]) -> String {
    let tag = hmac::sign(key(), value);
    let mut out = String::with_capacity(13);
    out.push('#');
    for b in tag.as_ref().iter().take(6) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A value as logs show it: `<5 bytes #1f2e3d4c5b6a>`.
pub fn masked(value: &str) -> String {
    format!("<{} bytes {}>", value.len(), hash(value.as_bytes()))
}

/// Bound parameters as `$1=<5 bytes #…>, $2=NULL` (or with their values,
/// quoted, when `values`), bounded for a log line.
pub fn params_for_log(params: &[Option<String>], values: bool) -> String {
    const MAX: usize = 300;
    let mut out = String::new();
    for (i, p) in params.iter().enumerate() {
        if !out.is_empty() {
            out.push_str(", ");
        }
        match p {
            Some(v) if values => out.push_str(&format!("${}='{}'", i + 1, v.replace('\'', "''"))),
            Some(v) => out.push_str(&format!("${}={}", i + 1, masked(v))),
            None => out.push_str(&format!("${}=NULL", i + 1)),
        }
        if out.len() > MAX {
            let cut = (0..=MAX)
                .rev()
                .find(|&i| out.is_char_boundary(i))
                .unwrap_or(0);
            out.truncate(cut);
            out.push('…');
            break;
        }
    }
    out
}

/// A one-line description of a diff that names columns and counts, never
/// values: `values differ in title (1 row); 2 missing rows`.
pub fn value_free_summary(diff: &Diff) -> String {
    let plural = |n: usize, what: &str| {
        if n == 1 {
            format!("1 {what}")
        } else {
            format!("{n} {what}s")
        }
    };
    // Column differences name columns and types only.
    if diff.kind == crate::diff::DiffKind::Columns {
        return diff.summary.clone();
    }
    let mut parts = Vec::new();
    if !diff.changed.is_empty() {
        parts.push(format!(
            "values differ in {} ({})",
            diff.differing_columns.join(", "),
            plural(diff.changed.len(), "row")
        ));
    }
    if !diff.missing.is_empty() {
        parts.push(plural(diff.missing.len(), "missing row"));
    }
    if !diff.extra.is_empty() {
        parts.push(plural(diff.extra.len(), "extra row"));
    }
    if parts.is_empty() {
        parts.push(format!(
            "{} ({} old rows, {} new rows)",
            diff.kind.label(),
            diff.old_rows,
            diff.new_rows
        ));
    }
    parts.join("; ")
}

/// `text` with every non-empty parameter value replaced by its masked
/// form: an error message like `invalid input syntax for type integer:
/// "abc"` quotes what the client sent.
pub fn scrub(text: &str, params: &[Option<String>]) -> String {
    let mut out = text.to_string();
    let mut values: Vec<&str> = params.iter().flatten().map(String::as_str).collect();
    // Longest first, so a value containing another is replaced whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values.into_iter().filter(|v| !v.is_empty()) {
        if out.contains(v) {
            out = out.replace(v, &masked(v));
        }
    }
    out
}

/// An EXPLAIN (FORMAT JSON) plan with the literals masked in every text
/// (conditions such as `(customer_id = 42)` carry the sample's values);
/// costs and row estimates stay. A plan that is not JSON is dropped.
pub fn masked_plan(json: &str) -> String {
    fn mask(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => *text = mask_literals(text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(mask),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(mask),
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(mut plan) => {
            mask(&mut plan);
            plan.to_string()
        }
        Err(_) => "null".into(),
    }
}

/// Hashes a diff's values and row keys in place and makes its summary
/// value-free, for `store.values = "hash"`.
pub fn hash_diff(diff: &mut Diff) {
    diff.summary = value_free_summary(diff);
    let cell = |v: &mut Option<String>| {
        if let Some(value) = v.as_mut() {
            *value = masked(value);
        }
    };
    for RowChange {
        key,
        cells,
        old_row,
        new_row,
    } in &mut diff.changed
    {
        *key = masked_key(key);
        for CellChange { old, new, .. } in cells {
            cell(old);
            cell(new);
        }
        old_row.iter_mut().chain(new_row.iter_mut()).for_each(cell);
    }
    for RowRef { key, row } in diff.missing.iter_mut().chain(diff.extra.iter_mut()) {
        *key = masked_key(key);
        row.iter_mut().for_each(cell);
    }
    // The incident's list of differing ids holds key values too.
    let ids = &mut diff.ids;
    for id in ids
        .changed
        .iter_mut()
        .chain(ids.missing.iter_mut())
        .chain(ids.extra.iter_mut())
    {
        id.iter_mut().for_each(cell);
    }
}

/// `id=<3 bytes #…>` from `id=123`; a positional key (`row 7`) stays.
fn masked_key(key: &str) -> String {
    match key.split_once('=') {
        Some((column, value)) => format!("{column}={}", masked(value)),
        None => key.to_string(),
    }
}

/// `url` with its password removed, for logs and errors. Survives an `@`
/// in the password (the last `@` before the host ends the user info) and
/// a `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let mut out = String::new();
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    out.push_str(&authority);
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_diff_keeps_no_key_values_in_its_list_of_ids() {
        let email = "seeded-key@example.com";
        let mut diff = Diff {
            kind: crate::diff::DiffKind::MissingRows,
            differing_columns: Vec::new(),
            summary: String::new(),
            old_rows: 1,
            new_rows: 0,
            old_columns: vec!["email".into()],
            new_columns: vec!["email".into()],
            changed: Vec::new(),
            missing: Vec::new(),
            extra: Vec::new(),
            column_changes: Vec::new(),
            ordering: crate::diff::RowOrder::Total,
            truncated: false,
            ids: crate::diff::RowIds {
                columns: vec!["email".into()],
                missing: vec![vec![Some(email.into())]],
                ..Default::default()
            },
        };
        hash_diff(&mut diff);
        let kept = &diff.ids.missing[0][0];
        assert_eq!(kept.as_deref(), Some(masked(email).as_str()));
        assert_ne!(kept.as_deref(), Some(email));
    }

    #[test]
    fn passwords_never_survive_redaction() {
        for (url, shown) in [
            (
                "postgres://app:secret@db:5432/x",
                "postgres://app:***@db:5432/x",
            ),
            (
                "postgres://app:p@ss@w0rd@db.example:5432/store?sslmode=verify-full",
                "postgres://app:***@db.example:5432/store?sslmode=verify-full",
            ),
            (
                "postgresql://db/store?user=app&password=s3cr%40t&sslmode=require",
                "postgresql://db/store?user=app&password=***&sslmode=require",
            ),
            ("postgres://app@db/x", "postgres://app@db/x"),
            ("sqlite:///var/lib/x.db", "sqlite:///var/lib/x.db"),
        ] {
            let redacted = redact_url(url);
            assert_eq!(redacted, shown, "{url}");
            assert!(!redacted.contains("secret") && !redacted.contains("w0rd"));
        }
    }

    #[test]
    fn masked_values_show_length_and_a_stable_keyed_hash() {
        let a = masked("alice@example.com");
        assert!(a.starts_with("<17 bytes #") && a.ends_with('>'), "{a}");
        assert_eq!(a, masked("alice@example.com"), "stable within a process");
        assert_ne!(a, masked("bob@example.com"));
        assert!(!a.contains("alice"));
    }

    #[test]
    fn parameters_are_logged_masked_unless_values_are_on() {
        let params = vec![Some("s3cret-value".to_string()), None];
        let masked_line = params_for_log(&params, false);
        assert!(!masked_line.contains("s3cret"), "{masked_line}");
        assert!(masked_line.contains("$1=<12 bytes #") && masked_line.ends_with("$2=NULL"));
        assert_eq!(params_for_log(&params, true), "$1='s3cret-value', $2=NULL");
    }

    #[test]
    fn error_messages_lose_the_parameters_they_quote() {
        let params = vec![Some("abc".to_string()), Some("abcdef".to_string())];
        let scrubbed = scrub("invalid input syntax for type integer: \"abcdef\"", &params);
        assert!(!scrubbed.contains("abc"), "{scrubbed}");
        assert!(scrubbed.contains("<6 bytes #"), "{scrubbed}");
    }
}
