//! Small builders for the diff's tests: results written as tables.

use super::options::CompareOptions;
use super::ordering::{Ordering, SortKey};
use super::result::{Column, ResultBuilder, ResultSet};
use super::types::{INT4, TEXT};
use bytes::Bytes;

/// Stands for SQL NULL in a test table.
pub(crate) const NULL: &str = "\u{0}NULL";

/// A result with these `(name, type)` columns and rows, all kept.
pub(crate) fn table(columns: &[(&str, u32)], rows: &[&[&str]]) -> ResultSet {
    table_kept(columns, rows, usize::MAX)
}

/// A result with these columns and rows of owned strings, all kept.
pub(crate) fn table_owned<R: AsRef<[String]>>(columns: &[(&str, u32)], rows: &[R]) -> ResultSet {
    let rows: Vec<Vec<&str>> = rows
        .iter()
        .map(|r| r.as_ref().iter().map(String::as_str).collect())
        .collect();
    let rows: Vec<&[&str]> = rows.iter().map(Vec::as_slice).collect();
    table(columns, &rows)
}

/// A result of which only the first `max_rows` rows are kept.
pub(crate) fn table_kept(columns: &[(&str, u32)], rows: &[&[&str]], max_rows: usize) -> ResultSet {
    build(ResultBuilder::new(max_rows), columns, rows)
}

/// Like [`table_kept`], digesting the tail under `opts`' rules.
pub(crate) fn table_normalised(
    columns: &[(&str, u32)],
    rows: &[&[&str]],
    max_rows: usize,
    opts: &CompareOptions,
) -> ResultSet {
    build(ResultBuilder::normalised(max_rows, opts), columns, rows)
}

fn build(mut builder: ResultBuilder, columns: &[(&str, u32)], rows: &[&[&str]]) -> ResultSet {
    builder.columns(
        columns
            .iter()
            .map(|(name, type_oid)| Column {
                name: (*name).to_owned(),
                type_oid: *type_oid,
            })
            .collect(),
    );
    for row in rows {
        builder.push(
            row.iter()
                .map(|v| (*v != NULL).then(|| Bytes::copy_from_slice(v.as_bytes())))
                .collect(),
        );
    }
    builder.finish()
}

/// `(id int4, title text)` with these rows.
pub(crate) fn titles(rows: &[(&str, &str)]) -> ResultSet {
    let rows: Vec<[&str; 2]> = rows.iter().map(|(id, title)| [*id, *title]).collect();
    let rows: Vec<&[&str]> = rows.iter().map(|r| r.as_slice()).collect();
    table(&[("id", INT4), ("title", TEXT)], &rows)
}

/// `ORDER BY <keys>` with a tiebreaker: every row has its place.
pub(crate) fn total(keys: &[&str]) -> Ordering {
    Ordering::Ordered {
        keys: names(keys),
        total: true,
        offset: false,
        limit: false,
    }
}

/// `ORDER BY <keys>` that may leave ties, cut by LIMIT when `limited`.
pub(crate) fn partial(keys: &[&str], limited: bool) -> Ordering {
    page(keys, false, limited)
}

/// `ORDER BY <keys>` that may leave ties, with OFFSET and/or LIMIT.
pub(crate) fn page(keys: &[&str], offset: bool, limit: bool) -> Ordering {
    Ordering::Ordered {
        keys: names(keys),
        total: false,
        offset,
        limit,
    }
}

fn names(keys: &[&str]) -> Vec<SortKey> {
    keys.iter()
        .map(|k| SortKey::Name((*k).to_owned()))
        .collect()
}

/// Default options.
pub(crate) fn plain() -> CompareOptions {
    CompareOptions::default()
}

/// Default options with `id` as the id column (the whole key).
pub(crate) fn with_id() -> CompareOptions {
    CompareOptions {
        id_columns: vec!["id".to_owned()],
        id_unique: true,
        ..CompareOptions::default()
    }
}
