//! Shadow trouble never reaches the client: whatever goes wrong on the
//! shadow side, the client gets exactly what a direct connection gets, and
//! the outcome is counted as an error, not a mismatch.

use crate::fixture;
use crate::harness::{connect, Pg, Proxy, MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER};
use crate::{comparisons, wait_for_comparisons};
use std::time::Duration;

/// Runs `sql` directly and through the proxy; the rows must be identical.
async fn same_answer(pg: &Pg, proxy: &Proxy, sql: &str) {
    let direct = connect(pg.port()).await.simple_query(sql).await.unwrap();
    let proxied = connect(proxy.port).await.simple_query(sql).await.unwrap();
    assert_eq!(format!("{proxied:?}"), format!("{direct:?}"), "{sql}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relation_missing_from_the_new_schema_is_a_new_error() {
    let pg = Pg::start();
    fixture::create(&pg);
    pg.sql("CREATE TABLE audit_log (id int PRIMARY KEY, what text); INSERT INTO audit_log VALUES (1, 'created');
            GRANT SELECT ON audit_log TO pgshadow");
    let proxy = Proxy::start(pg.port(), &fixture::shadow_config(""));
    same_answer(&pg, &proxy, "SELECT id, what FROM audit_log ORDER BY id").await;
    wait_for_comparisons(&proxy, 1.0);
    assert_eq!(
        comparisons(&proxy, "new_error"),
        1.0,
        "{}",
        proxy.metrics_text()
    );
    let line = proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("shadow comparison failed")
    });
    assert!(line.contains("new_sqlstate=42P01"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_statement_timeout_is_a_timeout_outcome() {
    let pg = Pg::start();
    fixture::create(&pg);
    // The new schema's version of this view is slow.
    pg.sql(
        "CREATE VIEW entry_counts AS SELECT environment_id, count(*) AS n FROM entries GROUP BY environment_id;
         CREATE FUNCTION v2.slow_count(env int) RETURNS bigint LANGUAGE sql AS
           $$ SELECT count(*) FROM v2.entries, pg_sleep(0.3) WHERE environment_id = env $$;
         CREATE VIEW v2.entry_counts AS SELECT id AS environment_id, v2.slow_count(id) AS n FROM v2.environments;
         GRANT SELECT ON entry_counts, v2.entry_counts TO pgshadow;",
    );
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config("statement_timeout_ms = 100"),
    );
    same_answer(
        &pg,
        &proxy,
        "SELECT environment_id, n FROM entry_counts ORDER BY environment_id",
    )
    .await;
    wait_for_comparisons(&proxy, 1.0);
    assert_eq!(
        comparisons(&proxy, "timeout"),
        1.0,
        "{}",
        proxy.metrics_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_shadow_password_is_a_shadow_error() {
    let pg = Pg::start();
    fixture::create(&pg);
    let config = fixture::shadow_config(&format!(
        "password_env = \"SHADOW_PW\"\nuser = \"{SCRAM_USER}\""
    ));
    let proxy = Proxy::start_with_env(pg.port(), &config, &[("SHADOW_PW", "not the password")]);
    same_answer(
        &pg,
        &proxy,
        "SELECT sys_id FROM entries ORDER BY sys_id LIMIT 3",
    )
    .await;
    wait_for_comparisons(&proxy, 1.0);
    assert_eq!(
        comparisons(&proxy, "shadow_error"),
        1.0,
        "{}",
        proxy.metrics_text()
    );
    let line = proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("shadow comparison failed")
    });
    assert!(line.contains("28P01"), "{line}");

    // The right password works: the shadow's own SCRAM-SHA-256 and MD5
    // logins (as roles that are not superusers: the shadow refuses those).
    pg.sql(&format!(
        "ALTER ROLE {SCRAM_USER} NOSUPERUSER; ALTER ROLE {MD5_USER} NOSUPERUSER;
         GRANT pg_read_all_data TO {SCRAM_USER}, {MD5_USER};"
    ));
    for (user, password) in [(SCRAM_USER, SCRAM_PASSWORD), (MD5_USER, MD5_PASSWORD)] {
        let config =
            fixture::shadow_config(&format!("password_env = \"SHADOW_PW\"\nuser = \"{user}\""));
        let proxy = Proxy::start_with_env(pg.port(), &config, &[("SHADOW_PW", password)]);
        same_answer(
            &pg,
            &proxy,
            "SELECT sys_id FROM entries ORDER BY sys_id LIMIT 3",
        )
        .await;
        wait_for_comparisons(&proxy, 1.0);
        assert_eq!(
            comparisons(&proxy, "match"),
            1.0,
            "{user}: {}",
            proxy.metrics_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_shadow_server_is_a_shadow_error() {
    let pg = Pg::start();
    fixture::create(&pg);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config(&format!("port = {closed}")),
    );
    for _ in 0..3 {
        same_answer(
            &pg,
            &proxy,
            "SELECT sys_id, version FROM entries WHERE environment_id = 2 ORDER BY sys_id",
        )
        .await;
    }
    wait_for_comparisons(&proxy, 3.0);
    assert_eq!(
        comparisons(&proxy, "shadow_error"),
        3.0,
        "{}",
        proxy.metrics_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parametrised_read_that_fails_only_on_the_old_side_is_an_old_error() {
    let pg = Pg::start();
    fixture::create(&pg);
    // The shadow role may read the new table but not the old one.
    pg.sql(
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'a'), (2, 'b');
         CREATE TABLE v2.notes (id int PRIMARY KEY, body text); INSERT INTO v2.notes VALUES (1, 'a'), (2, 'b');
         GRANT SELECT ON v2.notes TO pgshadow;",
    );
    let proxy = Proxy::start(pg.port(), &fixture::shadow_config(""));
    let client = connect(proxy.port).await;
    let row = client
        .query_one("SELECT body FROM notes WHERE id = $1", &[&2i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "b");
    wait_for_comparisons(&proxy, 1.0);
    assert_eq!(
        comparisons(&proxy, "old_error"),
        1.0,
        "{}",
        proxy.metrics_text()
    );
    let line = proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("shadow comparison failed")
    });
    assert!(line.contains("old_sqlstate=42501"), "{line}");
    assert!(
        line.contains("new_sqlstate= "),
        "the new side ran fine: {line}"
    );
}

/// The shadow keeps its statements prepared between samples; when the new
/// schema's relation changes its columns mid-migration, the next sample is
/// still compared (a columns mismatch), not reported as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relation_changed_between_samples_is_compared_afresh() {
    let pg = Pg::start();
    fixture::create(&pg);
    pg.sql(
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'a'), (2, 'b');
         CREATE VIEW v2.notes AS SELECT id, body FROM public.notes;
         GRANT SELECT ON notes, v2.notes TO pgshadow;",
    );
    let proxy = Proxy::start(pg.port(), &fixture::shadow_config("max_in_flight = 1"));
    let client = connect(proxy.port).await;
    let sql = "SELECT * FROM notes ORDER BY id";
    for n in 1..=3 {
        client.simple_query(sql).await.unwrap();
        wait_for_comparisons(&proxy, f64::from(n));
    }
    assert_eq!(
        comparisons(&proxy, "match"),
        3.0,
        "{}",
        proxy.metrics_text()
    );
    pg.sql(
        "CREATE OR REPLACE VIEW v2.notes AS SELECT id, body, 'x'::text AS extra FROM public.notes",
    );
    client.simple_query(sql).await.unwrap();
    wait_for_comparisons(&proxy, 4.0);
    let text = proxy.metrics_text();
    assert_eq!(comparisons(&proxy, "mismatch"), 1.0, "{text}");
    for error in ["old_error", "new_error", "both_error"] {
        assert_eq!(comparisons(&proxy, error), 0.0, "{error}: {text}");
    }
    let line = proxy.wait_for_log(Duration::from_secs(5), |l| l.contains("shadow mismatch"));
    assert!(line.contains("diff=\"columns\""), "{line}");
}
