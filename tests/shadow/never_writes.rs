//! The shadow never writes: whatever the client sends, each effect happens
//! exactly once, on the client's own connection.
//!
//! Writes, locking reads, writable CTEs, sequences, multi-statement queries
//! and functions with effects outside the transaction are never replayed
//! (each counted under its skip reason); a user function that writes does
//! pass classification, and then the READ ONLY transaction makes the
//! database refuse it. The proof is the database's own state: rows,
//! sequence values, `pg_stat_user_tables` counters (which also count rows
//! written by transactions that rolled back), `pg_locks`, and the
//! notifications a listener receives.
//!
//! The shadow role is granted write privileges on the tables these tests
//! touch, so its privileges are not what keeps it from writing.

use crate::fixture::{self, SHADOW_ROLE};
use crate::harness::wire::{fe, Message, Wire};
use crate::harness::{connect, field, wait_until, Pg, Proxy, DB, TRUST_USER};
use crate::{comparisons, skipped, wait_for_comparisons};
use std::time::Duration;
use tokio_postgres::{Client, SimpleQueryMessage};

/// A cluster with the fixture plus the tables written here, a proxy that
/// samples every read, and a client of the proxy whose first read has been
/// compared (so the shadow is connected and working).
async fn start() -> (Pg, Proxy, Client) {
    let pg = Pg::start();
    fixture::create(&pg);
    pg.sql(&format!(
        "CREATE TABLE ledger (id int PRIMARY KEY, amount int NOT NULL);
         CREATE SEQUENCE ticket_seq;
         CREATE TABLE visits (id serial PRIMARY KEY, page text NOT NULL);
         -- VOLATILE and writing: classification cannot see inside it.
         CREATE FUNCTION public.record_visit(p_page text) RETURNS bigint
         LANGUAGE plpgsql VOLATILE AS $$
         BEGIN
             INSERT INTO public.visits (page) VALUES (p_page);
             RETURN (SELECT count(*) FROM public.visits);
         END $$;
         -- Takes a session-level lock that outlives the transaction.
         CREATE FUNCTION public.share_lock(k bigint) RETURNS bigint
         LANGUAGE plpgsql VOLATILE AS $$
         BEGIN
             PERFORM pg_advisory_lock_shared(k);
             RETURN k;
         END $$;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ledger, visits TO {SHADOW_ROLE};
         GRANT USAGE, SELECT, UPDATE ON SEQUENCE ticket_seq, visits_id_seq TO {SHADOW_ROLE};"
    ));
    // Both functions are VOLATILE: unlisted, statements calling them are
    // skipped (volatile_function, see leftovers.rs). Listed, they run, and
    // these tests show what stops them: READ ONLY and the unlock.
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config("allow_functions = [\"record_visit\", \"share_lock\"]"),
    );
    let client = connect(proxy.port).await;
    client
        .query(
            "SELECT sys_id, version FROM entries WHERE environment_id = $1 ORDER BY sys_id",
            &[&1i32],
        )
        .await
        .expect("warm-up read");
    wait_for_comparisons(&proxy, 1.0);
    assert_eq!(
        comparisons(&proxy, "match"),
        1.0,
        "{}",
        proxy.metrics_text()
    );
    let shadow_sessions = pg.sql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{SHADOW_ROLE}'"
    ));
    assert_ne!(shadow_sessions, "0", "the shadow is connected");
    (pg, proxy, client)
}

/// Waits until `reason` has been counted `n` times (the full parse that
/// rules a statement out runs on the shadow's workers, after the primary
/// completed it), then checks it is not more.
fn expect_skipped(proxy: &Proxy, reason: &str, n: f64) {
    let counted = wait_until(Duration::from_secs(30), || {
        let c = skipped(proxy, reason);
        (c >= n).then_some(c)
    });
    assert_eq!(
        counted,
        Some(n),
        "skipped for {reason}:\n{}",
        proxy.metrics_text()
    );
}

/// Stops the proxy (closing the client's and the shadow's connections)
/// and waits until those sessions have ended: a backend flushes its table
/// statistics when it exits, where PostgreSQL 15 otherwise flushes them
/// lazily, up to 10 s after a write.
fn stop_and_flush(pg: &Pg, proxy: Proxy) {
    drop(proxy);
    let sessions = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                    AND backend_type = 'client backend' AND pid <> pg_backend_pid()";
    wait_until(Duration::from_secs(30), || {
        (pg.sql(sessions) == "0").then_some(())
    })
    .unwrap_or_else(|| panic!("sessions still open: {}", pg.sql("TABLE pg_stat_activity")));
}

/// `inserted|updated|deleted` rows of `table`, as counted by the server.
fn tuple_counters(pg: &Pg, table: &str) -> String {
    pg.sql(&format!(
        "SELECT n_tup_ins || '|' || n_tup_upd || '|' || n_tup_del
           FROM pg_stat_user_tables WHERE relname = '{table}'"
    ))
}

/// The first value of the first row of a simple query.
async fn simple_value(client: &Client, sql: &str) -> String {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_locking_reads_writable_ctes_and_multi_statement_queries_run_exactly_once() {
    let (pg, proxy, mut client) = start().await;
    let inserted = client
        .execute("INSERT INTO ledger VALUES (1, 10), (2, 20), (3, 30)", &[])
        .await
        .expect("INSERT");
    assert_eq!(inserted, 3);
    let updated = client
        .execute(
            "UPDATE ledger SET amount = amount + 1 WHERE id = $1",
            &[&1i32],
        )
        .await
        .expect("UPDATE");
    assert_eq!(updated, 1);
    let deleted = client
        .execute("DELETE FROM ledger WHERE id = $1", &[&3i32])
        .await
        .expect("DELETE");
    assert_eq!(deleted, 1);
    let locked = {
        let tx = client.transaction().await.expect("BEGIN");
        let rows = tx
            .query(
                "SELECT id, amount FROM ledger WHERE id = $1 FOR UPDATE",
                &[&1i32],
            )
            .await
            .expect("SELECT … FOR UPDATE");
        tx.commit().await.expect("COMMIT");
        rows.len()
    };
    assert_eq!(locked, 1);
    let doubled = client
        .query(
            "WITH doubled AS \
             (UPDATE ledger SET amount = amount * 2 WHERE id = $1 RETURNING id, amount) \
             SELECT id, amount FROM doubled",
            &[&2i32],
        )
        .await
        .expect("writable CTE");
    assert_eq!(doubled.first().map(|r| r.get::<_, i32>(1)), Some(40));
    client
        .simple_query("SELECT 1; INSERT INTO ledger VALUES (4, 40)")
        .await
        .expect("multi-statement query");

    // INSERT, UPDATE, DELETE, BEGIN, FOR UPDATE, COMMIT, the writable CTE.
    expect_skipped(&proxy, "not_read", 7.0);
    expect_skipped(&proxy, "multi_statement", 1.0);
    assert_eq!(
        proxy.all_comparisons(),
        1.0,
        "only the warm-up read:\n{}",
        proxy.metrics_text()
    );

    drop(client);
    stop_and_flush(&pg, proxy);
    assert_eq!(
        pg.sql("SELECT id, amount FROM ledger ORDER BY id"),
        "1|11\n2|40\n4|40"
    );
    assert_eq!(
        tuple_counters(&pg, "ledger"),
        "4|2|1",
        "inserted|updated|deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nextval_through_the_proxy_advances_the_sequence_once_per_call() {
    let (pg, proxy, client) = start().await;
    let mut issued = Vec::new();
    for _ in 0..2 {
        issued.push(simple_value(&client, "SELECT nextval('ticket_seq')").await);
        let row = client
            .query_one("SELECT nextval('ticket_seq')", &[])
            .await
            .expect("nextval, extended protocol");
        issued.push(row.get::<_, i64>(0).to_string());
    }
    // Hidden in a subquery, the call is found all the same.
    issued.push(
        simple_value(
            &client,
            "SELECT n FROM (SELECT nextval('ticket_seq') AS n) AS t",
        )
        .await,
    );
    assert_eq!(issued, ["1", "2", "3", "4", "5"]);

    expect_skipped(&proxy, "side_effect_function", 5.0);
    assert_eq!(proxy.all_comparisons(), 1.0, "{}", proxy.metrics_text());
    assert_eq!(pg.sql("SELECT last_value FROM ticket_seq"), "5");
}

/// The `shadow comparison failed` lines logged so far.
fn failures(proxy: &Proxy) -> Vec<String> {
    let mut lines = proxy.logs();
    lines.retain(|l| l.contains("shadow comparison failed"));
    lines
}

/// Asserts one `both_error` comparison after the warm-up, refused with
/// read_only_sql_transaction on each side, and exactly the client's row in
/// `visits` (also by the insert counter, which counts rolled-back rows).
fn assert_refused_on_both_sides_and_written_once(pg: &Pg, proxy: Proxy) {
    wait_for_comparisons(&proxy, 2.0);
    assert_eq!(
        comparisons(&proxy, "both_error"),
        1.0,
        "{}",
        proxy.metrics_text()
    );
    let refused = proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("shadow comparison failed")
    });
    assert_eq!(failures(&proxy).len(), 1, "{:#?}", failures(&proxy));
    assert_eq!(
        field(&refused, "result"),
        Some("\"both_error\""),
        "{refused}"
    );
    assert_eq!(field(&refused, "old_sqlstate"), Some("25006"), "{refused}");
    assert_eq!(field(&refused, "new_sqlstate"), Some("25006"), "{refused}");
    stop_and_flush(pg, proxy);
    assert_eq!(pg.sql("SELECT count(*) FROM visits"), "1");
    assert_eq!(
        tuple_counters(pg, "visits"),
        "1|0|0",
        "inserted|updated|deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writing_volatile_function_is_refused_by_the_read_only_shadow_as_both_error() {
    let (pg, proxy, client) = start().await;
    assert_eq!(
        simple_value(&client, "SELECT public.record_visit('home')").await,
        "1"
    );
    drop(client);
    assert_refused_on_both_sides_and_written_once(&pg, proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writing_volatile_function_with_a_bound_parameter_is_refused_on_both_sides() {
    let (pg, proxy, client) = start().await;
    let row = client
        .query_one("SELECT public.record_visit($1)", &[&"about"])
        .await
        .expect("record_visit($1)");
    assert_eq!(row.get::<_, i64>(0), 1);
    drop(client);
    assert_refused_on_both_sides_and_written_once(&pg, proxy);
}

/// The channel of a NotificationResponse.
fn channel(note: &Message) -> Option<String> {
    let name = note.body.get(4..)?.split(|b| *b == 0).next()?;
    Some(String::from_utf8_lossy(name).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_locks_notifications_and_settings_are_never_replayed() {
    let (pg, proxy, client) = start().await;
    let mut listener = Wire::connect(pg.port());
    let login = listener.startup(&[("user", TRUST_USER), ("database", DB)]);
    assert_eq!(login.last().map(|m| m.tag), Some(b'Z'), "{login:?}");
    listener.send(&fe::query("LISTEN c; LISTEN d"));
    listener.read_until_ready();

    simple_value(&client, "SELECT pg_advisory_lock(42)").await;
    simple_value(&client, "SELECT pg_notify('c', 'x')").await;
    assert_eq!(
        simple_value(&client, "SELECT set_config('x.y', '1', false)").await,
        "1"
    );
    expect_skipped(&proxy, "side_effect_function", 3.0);
    assert_eq!(proxy.all_comparisons(), 1.0, "{}", proxy.metrics_text());

    // The client holds lock 42 itself; no other session holds any.
    let client_pid = simple_value(&client, "SELECT pg_backend_pid()").await;
    let holders = pg.sql(
        "SELECT l.pid || ':' || l.objid FROM pg_locks l WHERE l.locktype = 'advisory' ORDER BY 1",
    );
    assert_eq!(holders, format!("{client_pid}:42"));
    let shadow_locks = pg.sql(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
          WHERE l.locktype = 'advisory' AND a.application_name = 'pgshadow'",
    );
    assert_eq!(shadow_locks, "0");

    // One notification on `c`, then the marker on `d`: anything the
    // shadow had sent on `c` would have come before the marker.
    client
        .batch_execute("NOTIFY d, 'end'")
        .await
        .expect("NOTIFY d");
    let mut on_c = 0;
    loop {
        let note = listener
            .read_message()
            .expect("notifications before the listener's timeout");
        match (note.tag, channel(&note).as_deref()) {
            (b'A', Some("c")) => on_c += 1,
            (b'A', Some("d")) => break,
            _ => panic!("unexpected message {note:?}"),
        }
    }
    assert_eq!(on_c, 1, "notifications on channel c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_taken_inside_a_user_function_does_not_stay_with_the_shadow_connection() {
    let (pg, proxy, client) = start().await;
    // Classification cannot see inside the function: the shadow runs it,
    // and READ ONLY does not stop a lock.
    assert_eq!(
        simple_value(&client, "SELECT public.share_lock(7)").await,
        "7"
    );
    wait_for_comparisons(&proxy, 2.0);
    assert_eq!(
        comparisons(&proxy, "match"),
        2.0,
        "{}",
        proxy.metrics_text()
    );
    simple_value(&client, "SELECT pg_advisory_unlock_all()").await;
    expect_skipped(&proxy, "side_effect_function", 1.0);

    let holders = pg.sql(
        "SELECT l.pid || ':' || coalesce(a.application_name, '') FROM pg_locks l \
         JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' ORDER BY 1",
    );
    assert_eq!(
        holders, "",
        "advisory locks held (pid:application) after the client released its own"
    );
    assert_eq!(
        pg.sql("SELECT pg_try_advisory_lock(7)"),
        "t",
        "lock 7 is free again"
    );
}
