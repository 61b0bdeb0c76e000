//! Which statements may be replayed (DESIGN §2).

use super::*;

#[test]
fn plain_reads_are_eligible() {
    for sql in [
        "SELECT 1",
        "select * from entries where id = 1",
        "SELECT 1;",
        "VALUES (1, 'a'), (2, 'b')",
        "WITH recent AS (SELECT * FROM entries) SELECT count(*) FROM recent",
        "SELECT * FROM entries WHERE environment_id = $1",
        "SELECT now(), lower(title), count(*) OVER () FROM entries",
        "SELECT * FROM generate_series(1, 3) AS g(n)",
        "SELECT pg_catalog.pg_table_size('entries')",
    ] {
        planned(sql);
    }
}

#[test]
fn multiple_statements_are_skipped() {
    assert_eq!(skipped("SELECT 1; SELECT 2"), SkipReason::MultiStatement);
    assert_eq!(
        skipped("SELECT 1; DELETE FROM t"),
        SkipReason::MultiStatement
    );
    // Even when the second one would not parse.
    assert_eq!(skipped("SELECT 1; SELEC 2"), SkipReason::MultiStatement);
}

#[test]
fn unparsable_text_is_skipped() {
    assert_eq!(skipped("SELEC 1"), SkipReason::Unparsable);
    assert_eq!(skipped("SELECT * FROM"), SkipReason::Unparsable);
    assert_eq!(skipped("SELECT (1"), SkipReason::Unparsable);
}

#[test]
fn postgres_syntax_that_sqlparser_lacks_is_unparsable_not_misread() {
    // Valid PostgreSQL that sqlparser 0.63 rejects: skipped, never guessed.
    for sql in [
        "TABLE entries",
        "SELECT * FROM entries FOR NO KEY UPDATE",
        "SELECT * FROM entries WHERE title ISNULL",
        "SELECT * FROM entries WHERE id BETWEEN SYMMETRIC 2 AND 1",
    ] {
        assert_eq!(skipped(sql), SkipReason::Unparsable, "{sql}");
    }
}

#[test]
fn an_empty_text_is_not_a_read() {
    assert_eq!(skipped(""), SkipReason::NotRead);
    assert_eq!(skipped("  ;  "), SkipReason::NotRead);
}

#[test]
fn writes_ddl_and_session_commands_are_not_reads() {
    for sql in [
        "INSERT INTO entries (id) VALUES (1)",
        "UPDATE entries SET title = 'x'",
        "DELETE FROM entries",
        "MERGE INTO entries e USING src s ON e.id = s.id WHEN MATCHED THEN DELETE",
        "CREATE TABLE t (id int)",
        "CREATE TEMP TABLE t AS SELECT 1",
        "DROP TABLE entries",
        "SET search_path = v2",
        "SHOW search_path",
        "EXPLAIN SELECT * FROM entries",
        "EXPLAIN ANALYZE SELECT * FROM entries",
        "COPY entries TO STDOUT",
        "DECLARE c CURSOR FOR SELECT * FROM entries",
        "PREPARE p AS SELECT * FROM entries",
        "EXECUTE p",
        "BEGIN",
        "LISTEN channel",
        "VACUUM entries",
        "LOCK TABLE entries",
    ] {
        assert_eq!(skipped(sql), SkipReason::NotRead, "{sql}");
    }
}

#[test]
fn a_writable_cte_is_not_a_read() {
    for sql in [
        "WITH gone AS (DELETE FROM entries WHERE id = 1 RETURNING *) SELECT * FROM gone",
        "WITH added AS (INSERT INTO entries (id) VALUES (1) RETURNING id) SELECT * FROM added",
        "WITH changed AS (UPDATE entries SET title = 'x' RETURNING id) SELECT count(*) FROM changed",
        "WITH a AS (SELECT 1), b AS (DELETE FROM entries RETURNING id) SELECT * FROM a",
    ] {
        assert_eq!(skipped(sql), SkipReason::NotRead, "{sql}");
    }
}

#[test]
fn row_locks_are_not_reads_at_any_level() {
    for sql in [
        "SELECT * FROM entries FOR UPDATE",
        "SELECT * FROM entries ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
        "SELECT * FROM entries FOR SHARE",
        "SELECT * FROM entries FOR SHARE NOWAIT",
        "SELECT * FROM (SELECT * FROM entries FOR UPDATE) s",
        "WITH l AS (SELECT * FROM entries FOR UPDATE) SELECT * FROM l",
    ] {
        assert_eq!(skipped(sql), SkipReason::NotRead, "{sql}");
    }
}

#[test]
fn select_into_is_not_a_read() {
    assert_eq!(
        skipped("SELECT * INTO copy FROM entries"),
        SkipReason::NotRead
    );
    assert_eq!(
        skipped("SELECT * INTO TEMP copy FROM entries"),
        SkipReason::NotRead
    );
}

#[test]
fn advisory_locks_are_side_effects() {
    for sql in [
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_try_advisory_lock(1, 2)",
        "SELECT pg_advisory_xact_lock_shared(7)",
        "SELECT pg_catalog.pg_advisory_lock(1)",
        "SELECT * FROM entries WHERE pg_try_advisory_lock(id)",
        "SELECT * FROM pg_advisory_lock(1)",
        "SELECT (SELECT pg_advisory_lock(1))",
        "WITH l AS (SELECT pg_advisory_lock(1)) SELECT * FROM l",
        "SELECT * FROM entries WHERE id IN (SELECT id FROM entries WHERE pg_advisory_lock(id) IS NULL)",
        "SELECT PG_ADVISORY_LOCK(1)",
    ] {
        assert_eq!(skipped(sql), SkipReason::SideEffectFunction, "{sql}");
    }
}

#[test]
fn every_built_in_side_effect_function_is_refused() {
    for function in [
        "pg_notify('c', 'x')",
        "set_config('search_path', 'x', false)",
        "pg_terminate_backend(1)",
        "pg_cancel_backend(1)",
        "pg_reload_conf()",
        "pg_rotate_logfile()",
        "pg_switch_wal()",
        "pg_create_restore_point('x')",
        "pg_backup_start('x')",
        "pg_backup_stop()",
        "pg_start_backup('x')",
        "pg_stop_backup()",
        "pg_promote()",
        "pg_wal_replay_pause()",
        "pg_wal_replay_resume()",
        "lo_import('/etc/passwd')",
        "lo_unlink(1)",
        "loread(1, 2)",
        "lowrite(1, 'x')",
        "dblink('x', 'y')",
        "dblink_exec('x', 'y')",
        "pg_sleep(1)",
        "pg_sleep_for('1s')",
        "nextval('s')",
        "setval('s', 1)",
        "txid_current()",
        "pg_current_xact_id()",
        "pg_logical_emit_message(true, 'p', 'm')",
        "pg_create_physical_replication_slot('s')",
        "pg_create_logical_replication_slot('s', 'p')",
        "pg_drop_replication_slot('s')",
        "pg_replication_slot_advance('s', '0/0')",
        "pg_stat_reset()",
        "pg_stat_reset_shared('wal')",
        "pg_file_write('f', 'x', false)",
        "pg_file_rename('a', 'b')",
        "pg_file_unlink('f')",
        "pg_log_backend_memory_contexts(1)",
    ] {
        let sql = format!("SELECT {function}");
        assert_eq!(skipped(&sql), SkipReason::SideEffectFunction, "{sql}");
    }
}

#[test]
fn configured_deny_functions_extend_the_list() {
    let rules = RewriteRules {
        deny_functions: vec!["audit_touch".into(), "app_write_*".into()],
        ..rules()
    };
    for sql in [
        "SELECT audit_touch(1)",
        "SELECT * FROM entries WHERE app.app_write_log(id)",
        "SELECT * FROM app_write_rows()",
    ] {
        assert_eq!(
            plan(sql, &rules).err(),
            Some(SkipReason::SideEffectFunction),
            "{sql}"
        );
    }
    assert!(plan("SELECT audit_touched(1)", &rules).is_ok());
}

#[test]
fn session_dependent_statements_are_skipped() {
    for sql in [
        "SELECT pg_backend_pid()",
        "SELECT currval('s')",
        "SELECT lastval()",
        "SELECT inet_client_addr(), inet_client_port()",
        "SELECT pg_my_temp_schema()",
        "SELECT * FROM pg_listening_channels()",
        "SELECT * FROM pg_temp.scratch",
        "SELECT * FROM entries e JOIN pg_temp_3.scratch s ON s.id = e.id",
        // The old and new sides run with different search_paths.
        "SELECT current_schema()",
        "SELECT current_schemas(true)",
    ] {
        assert_eq!(skipped(sql), SkipReason::SessionDependent, "{sql}");
    }
}

#[test]
fn the_first_reason_wins() {
    assert_eq!(
        skipped("SELECT pg_sleep(1) FROM entries FOR UPDATE"),
        SkipReason::NotRead
    );
    assert_eq!(
        skipped("SELECT pg_backend_pid(), pg_sleep(1)"),
        SkipReason::SideEffectFunction
    );
    assert_eq!(
        skipped("SELECT pg_backend_pid() FROM entries LIMIT 1"),
        SkipReason::SessionDependent
    );
}

#[test]
fn limit_without_order_is_skipped() {
    for sql in [
        "SELECT * FROM entries LIMIT 10",
        "SELECT * FROM entries OFFSET 10",
        "SELECT * FROM entries FETCH FIRST 5 ROWS ONLY",
        "SELECT * FROM entries LIMIT $1",
        "SELECT * FROM entries WHERE id IN (SELECT entry_id FROM entry_fields LIMIT 5) ORDER BY id",
        "SELECT (SELECT title FROM entries LIMIT 1)",
        "WITH some AS (SELECT * FROM entries LIMIT 3) SELECT * FROM some ORDER BY id",
        "SELECT * FROM (SELECT * FROM entries LIMIT 3) s ORDER BY id",
        "(SELECT * FROM entries LIMIT 3)",
        "(SELECT * FROM entries ORDER BY id) LIMIT 3",
        "SELECT * FROM entries ORDER BY random() LIMIT 5",
        "SELECT * FROM entries ORDER BY title, clock_timestamp() LIMIT 5",
    ] {
        assert_eq!(skipped(sql), SkipReason::LimitWithoutOrder, "{sql}");
    }
}

#[test]
fn limits_that_cannot_pick_arbitrary_rows_are_allowed() {
    for sql in [
        "SELECT * FROM entries ORDER BY updated_at LIMIT 10",
        "SELECT * FROM entries LIMIT ALL",
        "SELECT * FROM entries WHERE EXISTS (SELECT 1 FROM entry_fields f WHERE f.entry_id = entries.id LIMIT 1)",
        "SELECT * FROM entries WHERE NOT EXISTS (SELECT 1 FROM entry_fields LIMIT 1)",
        "SELECT (SELECT title FROM entries ORDER BY id LIMIT 1)",
        "(SELECT * FROM entries ORDER BY id LIMIT 3)",
    ] {
        planned(sql);
    }
}

#[test]
fn volatile_functions_outside_order_by_are_nondeterministic() {
    for sql in [
        "SELECT random() FROM entries",
        "SELECT * FROM entries WHERE random() < 0.5",
        "SELECT sys_id, clock_timestamp() FROM entries ORDER BY sys_id",
        "SELECT gen_random_uuid()",
    ] {
        assert_eq!(skipped(sql), SkipReason::Nondeterministic, "{sql}");
    }
    // Only shuffling the rows is fine: compared unordered.
    assert!(plan("SELECT * FROM entries ORDER BY random()", &rules()).is_ok());
    // now() is the transaction's start time: the same on both sides.
    assert!(plan("SELECT now(), * FROM entries", &rules()).is_ok());
}
