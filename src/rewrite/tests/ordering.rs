//! What the plan tells the diff: sort keys, totality, limits, the id column.

use super::*;

fn ordering(sql: &str) -> Ordering {
    planned(sql).ordering
}

fn keys(sql: &str) -> Vec<SortKey> {
    match ordering(sql) {
        Ordering::Ordered { keys, .. } => keys,
        Ordering::Unordered => panic!("{sql}: unordered"),
    }
}

#[test]
fn no_order_by_is_unordered() {
    let plan = planned("SELECT * FROM entries WHERE environment_id = 1");
    assert_eq!(plan.tiebreak, Tiebreak::NoOrderBy);
    assert_eq!(plan.ordering, Ordering::Unordered);
}

#[test]
fn a_volatile_order_is_no_order() {
    let sql = "SELECT * FROM entries ORDER BY random()";
    let plan = planned(sql);
    assert_eq!(plan.tiebreak, Tiebreak::NotApplicable("volatile_order"));
    assert_eq!(plan.ordering, Ordering::Unordered);
    assert_eq!(&*plan.old_sql, sql);
}

#[test]
fn an_appended_tiebreaker_makes_the_order_total() {
    assert_eq!(
        ordering("SELECT * FROM entries ORDER BY updated_at DESC LIMIT 10"),
        Ordering::Ordered {
            keys: vec![name("updated_at"), name("sys_id")],
            total: true,
            limited: true,
        }
    );
}

#[test]
fn a_partial_order_is_tie_tolerant() {
    assert_eq!(
        ordering("SELECT DISTINCT title FROM entries ORDER BY title OFFSET 5"),
        Ordering::Ordered {
            keys: vec![name("title")],
            total: false,
            limited: true,
        }
    );
}

#[test]
fn sort_keys_name_output_columns() {
    assert_eq!(
        keys("SELECT title, updated_at FROM entries ORDER BY 2 DESC, title"),
        vec![SortKey::Ordinal(2), name("title"), name("sys_id")]
    );
    assert_eq!(
        keys("SELECT e.title FROM entries e ORDER BY e.title"),
        vec![name("title"), name("sys_id")]
    );
    assert_eq!(
        keys("SELECT Title FROM entries ORDER BY TITLE"),
        vec![name("title"), name("sys_id")]
    );
    assert_eq!(
        keys("SELECT \"Title\" FROM entries ORDER BY \"Title\""),
        vec![name("Title"), name("sys_id")]
    );
}

#[test]
fn sort_keys_follow_output_aliases() {
    assert_eq!(
        keys("SELECT lower(title) AS t FROM entries ORDER BY t"),
        vec![name("t"), name("sys_id")]
    );
    assert_eq!(
        keys("SELECT lower(title) AS t FROM entries ORDER BY lower(title)"),
        vec![name("t"), name("sys_id")]
    );
    assert_eq!(
        keys("SELECT e.updated_at AS changed FROM entries e ORDER BY e.updated_at"),
        vec![name("changed"), name("sys_id")]
    );
}

#[test]
fn sort_keys_outside_the_output_are_unknown() {
    assert_eq!(
        keys("SELECT title FROM entries ORDER BY updated_at"),
        vec![SortKey::Unknown, name("sys_id")]
    );
    assert_eq!(
        keys("SELECT * FROM entries ORDER BY lower(title)"),
        vec![SortKey::Unknown, name("sys_id")]
    );
    // With `*` the column is in the output; the diff resolves the name.
    assert_eq!(
        keys("SELECT * FROM entries ORDER BY updated_at"),
        vec![name("updated_at"), name("sys_id")]
    );
}

#[test]
fn the_appended_key_uses_the_output_name_of_the_id() {
    assert_eq!(
        keys("SELECT sys_id AS key, title FROM entries ORDER BY title"),
        vec![name("title"), name("key")]
    );
}

#[test]
fn set_operation_keys_are_output_names_or_ordinals() {
    assert_eq!(
        keys("SELECT id, name AS label FROM environments UNION SELECT id, name FROM environments ORDER BY 2 DESC, label"),
        vec![SortKey::Ordinal(2), name("label"), name("id")]
    );
}

#[test]
fn limited_means_limit_offset_or_fetch_on_the_outermost_query() {
    for (sql, limited) in [
        ("SELECT * FROM entries ORDER BY title", false),
        ("SELECT * FROM entries ORDER BY title LIMIT 5", true),
        ("SELECT * FROM entries ORDER BY title LIMIT ALL", false),
        ("SELECT * FROM entries ORDER BY title OFFSET 5", true),
        ("SELECT * FROM entries ORDER BY title FETCH FIRST 5 ROWS ONLY", true),
        ("SELECT * FROM entries WHERE sys_id IN (SELECT entry_id FROM entry_fields ORDER BY id LIMIT 3) ORDER BY title", false),
    ] {
        match ordering(sql) {
            Ordering::Ordered { limited: l, .. } => assert_eq!(l, limited, "{sql}"),
            Ordering::Unordered => panic!("{sql}: unordered"),
        }
    }
}

#[test]
fn the_id_column_is_named_when_the_output_provably_holds_it() {
    for (sql, id) in [
        ("SELECT * FROM entries", Some("sys_id")),
        (
            "SELECT e.* FROM entries e WHERE e.title = 'x'",
            Some("sys_id"),
        ),
        (
            "SELECT title, sys_id FROM entries ORDER BY title",
            Some("sys_id"),
        ),
        ("SELECT e.sys_id AS key, title FROM entries e", Some("key")),
        ("SELECT id, name FROM environments", Some("id")),
        (
            "SELECT DISTINCT ON (environment_id) * FROM entries ORDER BY environment_id",
            Some("sys_id"),
        ),
        (
            "WITH r AS (SELECT * FROM entries) SELECT * FROM r",
            Some("sys_id"),
        ),
        ("SELECT title FROM entries", None),
        ("SELECT *, sys_id FROM entries", None),
        (
            "SELECT * FROM entries e JOIN environments v ON v.id = e.environment_id",
            None,
        ),
        // Over a join: the first relation's id, when listed and qualified.
        (
            "SELECT e.sys_id, v.name FROM entries e JOIN environments v ON v.id = e.environment_id",
            Some("sys_id"),
        ),
        (
            "SELECT sys_id, v.name FROM entries e JOIN environments v ON v.id = e.environment_id",
            None,
        ),
        (
            "SELECT v.id, v.name FROM entries e JOIN environments v ON v.id = e.environment_id",
            None,
        ),
        ("SELECT * FROM (SELECT * FROM entries) s", None),
        ("SELECT sys_id, unnest(ARRAY[1, 2]) FROM entries", None),
        (
            "SELECT sys_id FROM entries UNION SELECT id FROM environments",
            None,
        ),
        ("SELECT count(*) FROM entries", None),
    ] {
        assert_eq!(planned(sql).id_column.as_deref(), id, "{sql}");
    }
}
