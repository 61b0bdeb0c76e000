//! `[shadow] table_map`: renames on the new side only.

use super::*;

fn mapped_rules() -> RewriteRules {
    RewriteRules {
        table_map: [
            ("entries".to_string(), "v2.entry_records".to_string()),
            (
                "public.environments".to_string(),
                "v2.environments".to_string(),
            ),
            ("audit.log".to_string(), "audit.log_v2".to_string()),
        ]
        .into(),
        ..rules()
    }
}

fn mapped(sql: &str) -> Plan {
    plan(sql, &mapped_rules()).unwrap_or_else(|reason| panic!("{sql}: {reason}"))
}

#[test]
fn table_map_renames_only_on_the_new_side_and_not_ctes() {
    let sql = "WITH entries AS (SELECT * FROM audit.log) \
               SELECT * FROM entries WHERE id IN (SELECT environment_id FROM entries)";
    let plan = mapped(sql);
    assert_eq!(&*plan.old_sql, sql, "the old side runs the original text");
    assert_eq!(
        &*plan.new_sql,
        "WITH entries AS (SELECT * FROM audit.log_v2 AS log) \
         SELECT * FROM entries WHERE id IN (SELECT environment_id FROM entries)"
    );
    assert!(plan.rewritten);
}

#[test]
fn renames_reach_joins_subqueries_and_cte_bodies() {
    let plan = mapped(
        "WITH r AS (SELECT * FROM entries) \
         SELECT * FROM r JOIN public.environments v ON v.id = r.environment_id \
         WHERE EXISTS (SELECT 1 FROM entries x WHERE x.sys_id = r.sys_id)",
    );
    assert_eq!(
        &*plan.new_sql,
        "WITH r AS (SELECT * FROM v2.entry_records AS entries) \
         SELECT * FROM r JOIN v2.environments v ON v.id = r.environment_id \
         WHERE EXISTS (SELECT 1 FROM v2.entry_records x WHERE x.sys_id = r.sys_id)"
    );
}

#[test]
fn a_renamed_table_keeps_its_old_name_as_alias() {
    let plan = mapped("SELECT entries.title FROM entries ORDER BY entries.updated_at");
    assert_eq!(
        &*plan.old_sql,
        "SELECT entries.title FROM entries ORDER BY entries.updated_at, entries.sys_id"
    );
    assert_eq!(
        &*plan.new_sql,
        "SELECT entries.title FROM v2.entry_records AS entries ORDER BY entries.updated_at, entries.sys_id"
    );
    // A table that only moves schema keeps its visible name: no alias needed.
    let plan = mapped("SELECT environments.name FROM public.environments");
    assert_eq!(
        &*plan.new_sql,
        "SELECT environments.name FROM v2.environments"
    );
}

#[test]
fn schema_qualified_column_references_follow_the_rename() {
    let plan = mapped("SELECT audit.log.message FROM audit.log");
    assert_eq!(
        &*plan.new_sql,
        "SELECT log.message FROM audit.log_v2 AS log"
    );
}

#[test]
fn matching_is_schema_first_and_case_insensitive_for_unquoted_names() {
    assert_eq!(
        &*mapped("SELECT * FROM ENTRIES").new_sql,
        "SELECT * FROM v2.entry_records AS ENTRIES"
    );
    assert_eq!(
        &*mapped("SELECT * FROM Public.Environments").new_sql,
        "SELECT * FROM v2.environments"
    );
    // Quoted names are exact: "Entries" is another table.
    let sql = "SELECT * FROM \"Entries\"";
    assert_eq!(&*mapped(sql).new_sql, sql);
    // `environments` is mapped only where written as public.environments:
    // the rewriter does not know the old search_path.
    for sql in [
        "SELECT * FROM other.environments",
        "SELECT * FROM environments",
    ] {
        assert_eq!(&*mapped(sql).new_sql, sql);
    }
}

#[test]
fn an_unmapped_statement_keeps_its_text_on_both_sides() {
    let sql = "select * from entry_fields  where entry_id = $1";
    let plan = mapped(sql);
    assert_eq!(&*plan.old_sql, sql);
    assert_eq!(&*plan.new_sql, sql);
    assert!(!plan.rewritten);
}

#[test]
fn table_functions_with_a_mapped_name_are_not_renamed() {
    let rules = RewriteRules {
        table_map: [("generate_series".to_string(), "x.y".to_string())].into(),
        ..rules()
    };
    let sql = "SELECT * FROM generate_series(1, 2)";
    assert_eq!(&*plan(sql, &rules).expect("plan").new_sql, sql);
}
