//! When and how the id is appended to the outermost ORDER BY (DESIGN §5).

use super::*;

fn tiebreak(sql: &str) -> Tiebreak {
    planned(sql).tiebreak
}

#[test]
fn the_id_is_appended_as_the_last_key() {
    assert_eq!(
        old_sql("SELECT * FROM environments ORDER BY name"),
        "SELECT * FROM environments ORDER BY name, environments.id"
    );
    assert_eq!(
        tiebreak("SELECT * FROM environments ORDER BY name"),
        Tiebreak::Appended
    );
}

#[test]
fn configured_id_columns_win_schema_qualified_first() {
    assert_eq!(
        old_sql("SELECT * FROM entries ORDER BY title"),
        "SELECT * FROM entries ORDER BY title, entries.sys_id"
    );
    let rules = RewriteRules {
        id_columns: [
            ("public.entries".to_string(), vec!["public_key".to_string()]),
            ("entries".to_string(), vec!["sys_id".to_string()]),
        ]
        .into(),
        ..rules()
    };
    let plan = plan("SELECT * FROM public.entries ORDER BY title", &rules).expect("plan");
    assert_eq!(
        &*plan.old_sql,
        "SELECT * FROM public.entries ORDER BY title, entries.public_key"
    );
    let plan = plan_with("SELECT * FROM other.entries ORDER BY title", &rules);
    assert_eq!(
        &*plan.old_sql,
        "SELECT * FROM other.entries ORDER BY title, entries.sys_id"
    );
}

fn plan_with(sql: &str, rules: &RewriteRules) -> Plan {
    plan(sql, rules).unwrap_or_else(|reason| panic!("{sql}: {reason}"))
}

#[test]
fn without_a_default_column_unlisted_tables_get_no_tiebreaker() {
    let rules = RewriteRules {
        default_id_column: String::new(),
        ..rules()
    };
    let plan = plan_with("SELECT * FROM environments ORDER BY name", &rules);
    assert_eq!(plan.tiebreak, Tiebreak::NotApplicable("no_key"));
}

#[test]
fn an_alias_qualifies_the_tiebreaker() {
    assert_eq!(
        old_sql("SELECT e.title FROM entries AS e ORDER BY e.updated_at DESC"),
        "SELECT e.title FROM entries AS e ORDER BY e.updated_at DESC, e.sys_id"
    );
    assert_eq!(
        old_sql("SELECT title FROM entries \"E\" ORDER BY 1"),
        "SELECT title FROM entries \"E\" ORDER BY 1, \"E\".sys_id"
    );
}

#[test]
fn a_schema_qualified_table_is_qualified_by_its_last_part() {
    assert_eq!(
        old_sql("SELECT * FROM public.environments ORDER BY name"),
        "SELECT * FROM public.environments ORDER BY name, environments.id"
    );
}

#[test]
fn ordinals_expressions_and_parameters_get_the_tiebreaker() {
    assert_eq!(
        old_sql("SELECT title, updated_at FROM entries ORDER BY 2 DESC"),
        "SELECT title, updated_at FROM entries ORDER BY 2 DESC, entries.sys_id"
    );
    assert_eq!(
        old_sql("SELECT * FROM entries WHERE environment_id = $1 ORDER BY lower(title) NULLS FIRST LIMIT $2"),
        "SELECT * FROM entries WHERE environment_id = $1 ORDER BY lower(title) NULLS FIRST, entries.sys_id LIMIT $2"
    );
}

#[test]
fn joins_append_every_relations_id_in_from_order() {
    let plan = planned(
        "SELECT e.title, env.name FROM entries e JOIN environments env ON env.id = e.environment_id \
         LEFT JOIN entry_fields f ON f.entry_id = e.id ORDER BY env.name",
    );
    assert!(plan
        .old_sql
        .ends_with("ORDER BY env.name, e.sys_id, env.id, f.id"));
    assert_eq!(plan.tiebreak, Tiebreak::Appended);
    assert_eq!(
        old_sql("SELECT * FROM entries, environments ORDER BY 1"),
        "SELECT * FROM entries, environments ORDER BY 1, entries.sys_id, environments.id"
    );
    assert_eq!(
        old_sql("SELECT * FROM (entries e JOIN environments v ON v.id = e.environment_id) ORDER BY 1"),
        "SELECT * FROM (entries e JOIN environments v ON v.id = e.environment_id) ORDER BY 1, e.sys_id, v.id"
    );
}

#[test]
fn a_join_with_one_id_already_ordered_gets_only_the_others() {
    assert_eq!(
        old_sql("SELECT * FROM entries e JOIN environments v ON v.id = e.environment_id ORDER BY v.id"),
        "SELECT * FROM entries e JOIN environments v ON v.id = e.environment_id ORDER BY v.id, e.sys_id"
    );
}

#[test]
fn an_order_that_already_holds_the_id_is_total() {
    for sql in [
        "SELECT * FROM entries ORDER BY sys_id",
        "SELECT * FROM entries e ORDER BY e.sys_id DESC",
        "SELECT * FROM entries ORDER BY sys_id, title",
        "SELECT sys_id, title FROM entries ORDER BY title, 1",
        "SELECT sys_id AS key, title FROM entries ORDER BY title, key",
        "SELECT * FROM entries e JOIN environments v ON v.id = e.environment_id ORDER BY e.sys_id, v.id",
    ] {
        let plan = planned(sql);
        assert_eq!(plan.tiebreak, Tiebreak::AlreadyTotal, "{sql}");
        assert_eq!(&*plan.old_sql, sql, "{sql}");
        assert!(!plan.rewritten);
        assert!(matches!(plan.ordering, Ordering::Ordered { total: true, .. }));
    }
}

#[test]
fn an_output_alias_that_shadows_the_id_is_not_the_id() {
    // ORDER BY sys_id names the output column, which is the title here.
    assert_eq!(
        old_sql("SELECT title AS sys_id FROM entries ORDER BY sys_id"),
        "SELECT title AS sys_id FROM entries ORDER BY sys_id, entries.sys_id"
    );
}

#[test]
fn a_cte_over_one_table_passes_its_id_through() {
    assert_eq!(
        old_sql("WITH recent AS (SELECT * FROM entries WHERE updated_at > now() - interval '1 day') SELECT * FROM recent ORDER BY updated_at"),
        "WITH recent AS (SELECT * FROM entries WHERE updated_at > now() - INTERVAL '1 day') SELECT * FROM recent ORDER BY updated_at, recent.sys_id"
    );
    for (sql, appended) in [
        (
            "WITH r AS (SELECT e.* FROM entries e) SELECT title FROM r ORDER BY title",
            "r.sys_id",
        ),
        (
            "WITH r AS (SELECT sys_id, title FROM entries) SELECT title FROM r x ORDER BY title",
            "x.sys_id",
        ),
        (
            "WITH r AS (SELECT e.sys_id, title FROM entries e) SELECT * FROM r ORDER BY title",
            "r.sys_id",
        ),
        (
            "WITH r AS (SELECT id AS id, name FROM environments) SELECT * FROM r ORDER BY name",
            "r.id",
        ),
        (
            "WITH r AS (SELECT sys_id AS key, title FROM entries) SELECT * FROM r ORDER BY title",
            "r.key",
        ),
    ] {
        let plan = planned(sql);
        assert_eq!(plan.tiebreak, Tiebreak::Appended, "{sql}");
        assert!(
            plan.old_sql.ends_with(&format!(", {appended}")),
            "{sql}: {}",
            plan.old_sql
        );
    }
}

#[test]
fn ctes_that_hide_the_id_are_not_applicable() {
    for (sql, why) in [
        ("WITH r(a, b) AS (SELECT sys_id, title FROM entries) SELECT * FROM r ORDER BY b", "cte_columns"),
        ("WITH r AS (SELECT title FROM entries) SELECT * FROM r ORDER BY title", "cte"),
        ("WITH r AS (SELECT *, sys_id FROM entries) SELECT title FROM r ORDER BY title", "cte"),
        ("WITH r AS (SELECT e.sys_id, v.name FROM entries e JOIN environments v ON true) SELECT * FROM r ORDER BY name", "cte"),
        ("WITH a AS (SELECT * FROM entries), b AS (SELECT * FROM a) SELECT * FROM b ORDER BY title", "cte"),
        ("WITH r AS (SELECT environment_id AS sys_id FROM entries) SELECT * FROM r ORDER BY 1", "cte"),
    ] {
        assert_eq!(tiebreak(sql), Tiebreak::NotApplicable(why), "{sql}");
    }
}

#[test]
fn derived_tables_and_functions_alone_are_not_applicable() {
    for (sql, why) in [
        (
            "SELECT * FROM (SELECT * FROM entries) s ORDER BY title",
            "derived_table",
        ),
        (
            "SELECT * FROM generate_series(1, 3) g ORDER BY 1",
            "table_function",
        ),
        ("SELECT 1 AS x ORDER BY x", "no_relation"),
        (
            "SELECT * FROM entries AS e(a, b) ORDER BY b",
            "column_aliases",
        ),
        (
            "SELECT * FROM (entries e JOIN environments v ON true) AS j ORDER BY 1",
            "aliased_join",
        ),
        ("VALUES (2), (1) ORDER BY 1", "values"),
    ] {
        assert_eq!(tiebreak(sql), Tiebreak::NotApplicable(why), "{sql}");
    }
}

#[test]
fn the_keys_that_exist_are_appended_beside_relations_without_one() {
    for (sql, appended, keys) in [
        (
            "SELECT * FROM entries e, LATERAL (SELECT 1 AS x) l ORDER BY title",
            "ORDER BY title, e.sys_id",
            "e (sys_id) config; l no key (derived_table)",
        ),
        (
            "SELECT * FROM entries e CROSS JOIN unnest(ARRAY[1, 2]) u ORDER BY title",
            "ORDER BY title, e.sys_id",
            "e (sys_id) config; u no key (unnest)",
        ),
    ] {
        let plan = planned(sql);
        assert_eq!(plan.tiebreak, Tiebreak::Appended, "{sql}");
        assert!(plan.old_sql.ends_with(appended), "{sql}: {}", plan.old_sql);
        assert_eq!(&*plan.keys, keys, "{sql}");
        assert!(
            matches!(plan.ordering, Ordering::Ordered { total: false, .. }),
            "a relation without a key leaves ties: {sql}"
        );
        assert_eq!(plan.basis, OrderBasis::Partial);
    }
}

#[test]
fn composite_keys_are_appended_column_by_column_qualified_by_alias() {
    let rules = RewriteRules {
        default_id_column: String::new(),
        id_columns: [
            (
                "entries".to_string(),
                vec!["env_id".into(), "entry_id".into()],
            ),
            (
                "entry_fields".to_string(),
                vec!["env_id".into(), "entry_id".into(), "field".into()],
            ),
        ]
        .into(),
        ..RewriteRules::default()
    };
    let plan = plan_with(
        "SELECT e.title, f.value FROM entries e JOIN entry_fields f \
         ON f.env_id = e.env_id AND f.entry_id = e.entry_id ORDER BY e.updated_at DESC LIMIT 50 OFFSET $1",
        &rules,
    );
    assert!(
        plan.old_sql.ends_with(
            "ORDER BY e.updated_at DESC, e.env_id, e.entry_id, f.env_id, f.entry_id, f.field LIMIT 50 OFFSET $1"
        ),
        "{}",
        plan.old_sql
    );
    assert!(matches!(
        plan.ordering,
        Ordering::Ordered {
            total: true,
            offset: true,
            limit: true,
            ..
        }
    ));
    assert_eq!(plan.basis, OrderBasis::Config);
    // The rows are named by both keys: the join proves f's env_id and
    // entry_id equal to e's, which the output has.
    let plan = plan_with(
        "SELECT e.env_id, e.entry_id, f.field, f.value FROM entries e JOIN entry_fields f \
         ON f.env_id = e.env_id AND f.entry_id = e.entry_id ORDER BY e.updated_at",
        &rules,
    );
    assert_eq!(plan.id_columns, ["env_id", "entry_id", "field"]);
    assert!(plan.id_unique);
    // Under a LEFT JOIN only the joined side's columns may be stood for.
    let plan = plan_with(
        "SELECT f.env_id, f.entry_id, f.field FROM entries e LEFT JOIN entry_fields f \
         ON f.env_id = e.env_id AND f.entry_id = e.entry_id ORDER BY e.updated_at",
        &rules,
    );
    assert_eq!(plan.id_columns, ["env_id", "entry_id", "field"]);
    assert!(!plan.id_unique, "e's key is not in the output");
    // A key column already ordered by is not appended again.
    let plan = plan_with("SELECT * FROM entries e ORDER BY e.entry_id", &rules);
    assert!(
        plan.old_sql.ends_with("ORDER BY e.entry_id, e.env_id"),
        "{}",
        plan.old_sql
    );
}

#[test]
fn keys_from_the_catalog_make_a_catalog_key_order() {
    let key = Key {
        columns: vec!["env_id".into(), "entry_id".into()],
        source: KeySource::PrimaryKey,
    };
    let plan = plan_with_keys(
        "SELECT * FROM entries ORDER BY title",
        &RewriteRules::default(),
        &mut |_| Some(key.clone()),
    )
    .expect("plan");
    assert_eq!(
        &*plan.old_sql,
        "SELECT * FROM entries ORDER BY title, entries.env_id, entries.entry_id"
    );
    assert_eq!(plan.basis, OrderBasis::CatalogKey);
    assert_eq!(plan.id_columns, ["env_id", "entry_id"]);
    assert!(plan.id_unique);
    assert_eq!(&*plan.keys, "entries (env_id, entry_id) primary_key");
    assert_eq!(&*plan.relations, [vec!["entries".to_string()]]);
}

#[test]
fn distinct_on_gets_the_tiebreaker_after_its_prefix() {
    assert_eq!(
        old_sql("SELECT DISTINCT ON (environment_id) * FROM entries ORDER BY environment_id, updated_at DESC"),
        "SELECT DISTINCT ON (environment_id) * FROM entries ORDER BY environment_id, updated_at DESC, entries.sys_id"
    );
}

#[test]
fn distinct_with_the_id_in_the_output_gets_the_tiebreaker() {
    for sql in [
        "SELECT DISTINCT * FROM entries ORDER BY title",
        "SELECT DISTINCT e.* FROM entries e ORDER BY title",
        "SELECT DISTINCT sys_id, title FROM entries ORDER BY title",
        "SELECT DISTINCT e.sys_id AS key, e.title FROM entries e ORDER BY 2",
    ] {
        assert_eq!(tiebreak(sql), Tiebreak::Appended, "{sql}");
    }
}

#[test]
fn distinct_without_the_id_is_not_applicable() {
    assert_eq!(
        tiebreak("SELECT DISTINCT title FROM entries ORDER BY title"),
        Tiebreak::NotApplicable("distinct")
    );
    // The key of the relation whose columns are all in the output still is.
    let plan = planned(
        "SELECT DISTINCT e.*, v.name FROM entries e JOIN environments v ON true ORDER BY 1",
    );
    assert_eq!(plan.tiebreak, Tiebreak::Appended);
    assert!(
        plan.old_sql.ends_with("ORDER BY 1, e.sys_id"),
        "{}",
        plan.old_sql
    );
    assert_eq!(&*plan.keys, "e (sys_id) config; v no key (distinct)");
}

#[test]
fn group_by_the_id_gets_the_tiebreaker() {
    assert_eq!(
        old_sql("SELECT e.sys_id, count(f.id) FROM entries e JOIN entry_fields f ON f.entry_id = e.id GROUP BY e.sys_id, f.id ORDER BY 2 DESC"),
        "SELECT e.sys_id, count(f.id) FROM entries e JOIN entry_fields f ON f.entry_id = e.id GROUP BY e.sys_id, f.id ORDER BY 2 DESC, e.sys_id, f.id"
    );
    assert_eq!(
        old_sql("SELECT sys_id, title FROM entries GROUP BY 1 ORDER BY title"),
        "SELECT sys_id, title FROM entries GROUP BY 1 ORDER BY title, entries.sys_id"
    );
}

#[test]
fn group_by_without_the_id_is_not_applicable() {
    for (sql, why) in [
        (
            "SELECT environment_id, count(*) FROM entries GROUP BY environment_id ORDER BY 2 DESC",
            "group_by",
        ),
        (
            "SELECT sys_id, count(*) FROM entries GROUP BY ROLLUP (sys_id) ORDER BY 2",
            "grouping_sets",
        ),
    ] {
        assert_eq!(tiebreak(sql), Tiebreak::NotApplicable(why), "{sql}");
    }
    // The grouped relation's key is appended, the other's is not.
    let plan = planned("SELECT e.sys_id, count(*) FROM entries e JOIN entry_fields f ON f.entry_id = e.id GROUP BY e.sys_id ORDER BY 2");
    assert!(
        plan.old_sql.ends_with("ORDER BY 2, e.sys_id"),
        "{}",
        plan.old_sql
    );
    assert!(matches!(
        plan.ordering,
        Ordering::Ordered { total: false, .. }
    ));
}

#[test]
fn aggregates_and_having_without_group_by_are_not_applicable() {
    assert_eq!(
        tiebreak("SELECT count(*) FROM entries ORDER BY 1"),
        Tiebreak::NotApplicable("aggregate")
    );
    assert_eq!(
        tiebreak("SELECT max(title) FROM entries ORDER BY max(updated_at)"),
        Tiebreak::NotApplicable("aggregate")
    );
    assert_eq!(
        tiebreak("SELECT 1 AS x FROM entries HAVING true ORDER BY 1"),
        Tiebreak::NotApplicable("having")
    );
    // A window call is not an aggregate, nor is one in a subquery.
    assert_eq!(
        tiebreak("SELECT title, count(*) OVER () FROM entries ORDER BY title"),
        Tiebreak::Appended
    );
    assert_eq!(
        tiebreak("SELECT title, (SELECT count(*) FROM entry_fields) FROM entries ORDER BY title"),
        Tiebreak::Appended
    );
}

#[test]
fn set_returning_functions_in_the_select_list_are_not_applicable() {
    assert_eq!(
        tiebreak("SELECT sys_id, unnest(ARRAY[1, 2]) FROM entries ORDER BY 2"),
        Tiebreak::NotApplicable("set_returning_function")
    );
}

#[test]
fn union_uses_the_bare_output_column() {
    let plan = planned(
        "SELECT sys_id, title FROM entries UNION ALL SELECT id, name FROM environments ORDER BY title",
    );
    assert_eq!(
        &*plan.old_sql,
        "SELECT sys_id, title FROM entries UNION ALL SELECT id, name FROM environments ORDER BY title, sys_id"
    );
    assert_eq!(plan.tiebreak, Tiebreak::Appended);
    // Two branches may bring the same id: the order stays tie-tolerant.
    assert_eq!(
        plan.ordering,
        Ordering::Ordered {
            keys: vec![name("title"), name("sys_id")],
            total: false,
            offset: false,
            limit: false
        }
    );
    assert_eq!(
        old_sql("SELECT * FROM environments UNION SELECT * FROM environments ORDER BY name"),
        "SELECT * FROM environments UNION SELECT * FROM environments ORDER BY name, id"
    );
    assert_eq!(
        old_sql("SELECT e.sys_id AS key, title FROM entries e UNION SELECT id, name FROM environments ORDER BY 2"),
        "SELECT e.sys_id AS key, title FROM entries e UNION SELECT id, name FROM environments ORDER BY 2, key"
    );
}

#[test]
fn intersect_and_except_keep_the_left_rows_and_are_total() {
    let plan = planned(
        "SELECT * FROM environments EXCEPT SELECT * FROM environments WHERE name = 'x' ORDER BY name",
    );
    assert!(plan.old_sql.ends_with("ORDER BY name, id"));
    assert!(matches!(
        plan.ordering,
        Ordering::Ordered { total: true, .. }
    ));
    let plan =
        planned("SELECT id FROM environments INTERSECT SELECT id FROM environments ORDER BY id");
    assert_eq!(plan.tiebreak, Tiebreak::AlreadyTotal);
}

#[test]
fn a_set_operation_without_the_id_in_its_output_is_not_applicable() {
    for sql in [
        "SELECT title FROM entries UNION SELECT name FROM environments ORDER BY 1",
        "SELECT *, sys_id FROM entries UNION SELECT *, id FROM environments ORDER BY 1",
        "SELECT e.title, v.id FROM entries e JOIN environments v ON true UNION SELECT name, id FROM environments ORDER BY 1",
        "SELECT environment_id AS sys_id FROM entries UNION SELECT id FROM environments ORDER BY 1",
    ] {
        assert_eq!(tiebreak(sql), Tiebreak::NotApplicable("set_operation"), "{sql}");
    }
}

#[test]
fn fetch_with_ties_is_left_alone() {
    let sql = "SELECT * FROM entries ORDER BY title FETCH FIRST 3 ROWS WITH TIES";
    let plan = planned(sql);
    assert_eq!(plan.tiebreak, Tiebreak::WithTies);
    assert_eq!(&*plan.old_sql, sql);
    assert_eq!(
        plan.ordering,
        Ordering::Ordered {
            keys: vec![name("title")],
            total: false,
            offset: false,
            limit: true
        }
    );
}

#[test]
fn redundant_parentheses_are_looked_through() {
    assert_eq!(
        old_sql("(SELECT * FROM entries ORDER BY title LIMIT 5)"),
        "(SELECT * FROM entries ORDER BY title, entries.sys_id LIMIT 5)"
    );
    assert_eq!(
        old_sql("((SELECT * FROM environments ORDER BY name))"),
        "((SELECT * FROM environments ORDER BY name, environments.id))"
    );
}

#[test]
fn unchanged_statements_keep_their_exact_text() {
    for sql in [
        "select *  from entries -- no order\n where id = 1",
        "SELECT * FROM entries ORDER BY sys_id /* total */",
        "SELECT DISTINCT title FROM entries ORDER BY title;",
        "select count(*) from entries",
        "SELECT * FROM entries ORDER BY title FETCH FIRST 3 ROWS WITH TIES",
    ] {
        let plan = planned(sql);
        assert_eq!(&*plan.old_sql, sql);
        assert_eq!(&*plan.new_sql, sql);
        assert!(!plan.rewritten, "{sql}");
    }
}

#[test]
fn a_rewrite_that_does_not_print_back_falls_back_to_the_original_text() {
    // sqlparser prints `@ -5` as `@-5`, which it cannot tokenize again.
    let sql = "SELECT @ -5 AS x, title FROM entries ORDER BY title";
    let plan = planned(sql);
    assert_eq!(plan.tiebreak, Tiebreak::NotApplicable("round_trip"));
    assert_eq!(&*plan.old_sql, sql);
    assert!(!plan.rewritten);
    assert_eq!(
        plan.ordering,
        Ordering::Ordered {
            keys: vec![name("title")],
            total: false,
            offset: false,
            limit: false
        }
    );
}

#[test]
fn a_misread_string_continuation_is_not_rewritten() {
    // PostgreSQL reads 'a'<newline>'b' as 'ab'; sqlparser as 'a' AS 'b',
    // which it would print back as invalid SQL.
    let sql = "SELECT 'a'\n'b', title FROM entries ORDER BY title";
    let plan = planned(sql);
    assert_eq!(plan.tiebreak, Tiebreak::NotApplicable("round_trip"));
    assert_eq!(&*plan.old_sql, sql);
}

#[test]
fn the_primary_gets_only_the_tiebreaker() {
    let rules = RewriteRules {
        table_map: [("entries".to_string(), "v2.entry_records".to_string())].into(),
        ..rules()
    };
    assert_eq!(
        tiebreak_for_primary(
            "SELECT * FROM entries ORDER BY title LIMIT 20 OFFSET 40",
            &rules
        )
        .as_deref(),
        Some("SELECT * FROM entries ORDER BY title, entries.sys_id LIMIT 20 OFFSET 40")
    );
    for sql in [
        "SELECT * FROM entries ORDER BY sys_id",
        "SELECT * FROM entries",
        "SELECT DISTINCT title FROM entries ORDER BY title",
        "SELECT * FROM entries ORDER BY title FOR UPDATE",
        "UPDATE entries SET title = 'x'",
    ] {
        assert_eq!(tiebreak_for_primary(sql, &rules), None, "{sql}");
    }
}

#[test]
fn tiebreak_kinds_parse_back_and_serialize_as_their_labels() {
    for kind in TiebreakKind::ALL {
        assert_eq!(TiebreakKind::parse(kind.label()), Some(kind));
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(
            json,
            format!("\"{}\"", kind.label()),
            "the API shows the stored label"
        );
    }
    assert_eq!(Tiebreak::NotApplicable("no_key").label(), "not_applicable");
    assert_eq!(TiebreakKind::parse("no_key"), None);
}
