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
            offset: false,
            limit: true,
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
            offset: true,
            limit: false,
        }
    );
}

#[test]
fn sort_keys_name_output_columns() {
    assert_eq!(
        keys("SELECT title, updated_at, sys_id FROM entries ORDER BY 2 DESC, title"),
        vec![SortKey::Ordinal(2), name("title"), name("sys_id")]
    );
    // An appended key that is not in the output is not a key the diff
    // can see.
    assert_eq!(
        keys("SELECT e.title FROM entries e ORDER BY e.title"),
        vec![name("title"), SortKey::Unknown]
    );
    assert_eq!(
        keys("SELECT Title, sys_id FROM entries ORDER BY TITLE"),
        vec![name("title"), name("sys_id")]
    );
    assert_eq!(
        keys("SELECT \"Title\", e.* FROM entries e ORDER BY \"Title\""),
        vec![name("Title"), name("sys_id")]
    );
}

#[test]
fn sort_keys_follow_output_aliases() {
    assert_eq!(
        keys("SELECT lower(title) AS t, sys_id FROM entries ORDER BY t"),
        vec![name("t"), name("sys_id")]
    );
    assert_eq!(
        keys("SELECT lower(title) AS t FROM entries ORDER BY lower(title)"),
        vec![name("t"), SortKey::Unknown]
    );
    assert_eq!(
        keys(
            "SELECT e.updated_at AS changed, e.sys_id AS key FROM entries e ORDER BY e.updated_at"
        ),
        vec![name("changed"), name("key")]
    );
}

#[test]
fn sort_keys_outside_the_output_are_unknown() {
    assert_eq!(
        keys("SELECT title FROM entries ORDER BY updated_at"),
        vec![SortKey::Unknown, SortKey::Unknown]
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
fn offset_cuts_the_top_and_limit_or_fetch_the_bottom_of_the_outermost_query() {
    for (sql, offset, limit) in [
        ("SELECT * FROM entries ORDER BY title", false, false),
        ("SELECT * FROM entries ORDER BY title LIMIT 5", false, true),
        ("SELECT * FROM entries ORDER BY title LIMIT ALL", false, false),
        ("SELECT * FROM entries ORDER BY title OFFSET 5", true, false),
        ("SELECT * FROM entries ORDER BY title LIMIT 5 OFFSET $1", true, true),
        ("SELECT * FROM entries ORDER BY title LIMIT 5 OFFSET 0", false, true),
        ("SELECT * FROM entries ORDER BY title FETCH FIRST 5 ROWS ONLY", false, true),
        ("SELECT * FROM entries WHERE sys_id IN (SELECT entry_id FROM entry_fields ORDER BY id LIMIT 3) ORDER BY title", false, false),
    ] {
        match ordering(sql) {
            Ordering::Ordered { offset: o, limit: l, .. } => {
                assert_eq!((o, l), (offset, limit), "{sql}")
            }
            Ordering::Unordered => panic!("{sql}: unordered"),
        }
    }
}

#[test]
fn the_id_columns_are_named_when_the_output_provably_holds_them() {
    for (sql, id, unique) in [
        ("SELECT * FROM entries", &["sys_id"][..], true),
        (
            "SELECT e.* FROM entries e WHERE e.title = 'x'",
            &["sys_id"],
            true,
        ),
        (
            "SELECT title, sys_id FROM entries ORDER BY title",
            &["sys_id"],
            true,
        ),
        ("SELECT e.sys_id AS key, title FROM entries e", &["key"], true),
        ("SELECT id, name FROM environments", &["id"], true),
        (
            "SELECT DISTINCT ON (environment_id) * FROM entries ORDER BY environment_id",
            &["sys_id"],
            true,
        ),
        (
            "WITH r AS (SELECT * FROM entries) SELECT * FROM r",
            &["sys_id"],
            true,
        ),
        ("SELECT title FROM entries", &[], false),
        ("SELECT *, sys_id FROM entries", &[], false),
        (
            "SELECT * FROM entries e JOIN environments v ON v.id = e.environment_id",
            &[],
            false,
        ),
        // Over a join: each relation's key, when listed and qualified; the
        // ids are unique only when every relation's key is there.
        (
            "SELECT e.sys_id, v.name FROM entries e JOIN environments v ON v.id = e.environment_id",
            &["sys_id"],
            false,
        ),
        (
            "SELECT e.sys_id, v.id, v.name FROM entries e JOIN environments v ON v.id = e.environment_id",
            &["sys_id", "id"],
            true,
        ),
        (
            "SELECT sys_id, v.name FROM entries e JOIN environments v ON v.id = e.environment_id",
            &[],
            false,
        ),
        (
            "SELECT v.id, v.name FROM entries e JOIN environments v ON v.id = e.environment_id",
            &["id"],
            false,
        ),
        ("SELECT * FROM (SELECT * FROM entries) s", &[], false),
        ("SELECT sys_id, unnest(ARRAY[1, 2]) FROM entries", &[], false),
        (
            "SELECT sys_id FROM entries UNION SELECT id FROM environments",
            &[],
            false,
        ),
        ("SELECT count(*) FROM entries", &[], false),
    ] {
        let plan = planned(sql);
        assert_eq!(plan.id_columns, id, "{sql}");
        assert_eq!(plan.id_unique, unique, "{sql}");
    }
}
