//! The whole path on one query: captured, compared, matched; then an
//! injected difference is reported.

use crate::fixture::{self, sys_id};
use crate::harness::{connect, Pg, Proxy};
use crate::{comparisons, wait_for_comparisons};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_through_the_proxy_is_compared_and_a_changed_value_is_reported_by_id() {
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(
        pg.port(),
        &fixture::logging_values(&fixture::shadow_config("")),
    );
    let client = connect(proxy.port).await;
    let query = "SELECT e.sys_id, e.entry_id, f.value AS title FROM entries e \
                 JOIN entry_fields f ON f.sys_id = e.sys_id AND f.name = 'title' \
                 WHERE e.environment_id = $1 ORDER BY e.updated_at, e.entry_id LIMIT 20";
    let rows = client.query(query, &[&1i32]).await.unwrap();
    assert_eq!(rows.len(), 20);
    wait_for_comparisons(&proxy, 1.0);
    assert_eq!(
        comparisons(&proxy, "match"),
        1.0,
        "{}",
        proxy.metrics_text()
    );

    // A backfill bug: the new schema has the wrong title for one entry.
    let broken = sys_id(1, 10);
    pg.sql(&format!(
        "INSERT INTO v2.field_values (value) VALUES ('Wrong title');
         UPDATE v2.entry_map SET title_id = (SELECT value_id FROM v2.field_values WHERE value = 'Wrong title')
          WHERE sys_id = {broken}"
    ));
    let rows = client.query(query, &[&1i32]).await.unwrap();
    assert!(
        rows.iter().any(|r| r.get::<_, String>(2) == "Title 10"),
        "the client sees the old schema"
    );
    wait_for_comparisons(&proxy, 2.0);
    assert_eq!(
        comparisons(&proxy, "mismatch"),
        1.0,
        "{}",
        proxy.metrics_text()
    );
    let line = proxy.wait_for_log(Duration::from_secs(5), |l| l.contains("shadow mismatch"));
    assert!(
        line.contains("diff=\"values\"") || line.contains("diff=values"),
        "{line}"
    );
    assert!(line.contains("columns=title"), "{line}");
    assert!(
        line.contains(&format!(
            "sys_id={broken}: title old='Title 10' new='Wrong title'"
        )),
        "{line}"
    );
    assert!(line.contains("confirmed=true"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_without_order_is_skipped_with_its_reason_not_compared() {
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(
        pg.port(),
        &fixture::logging_values(&fixture::shadow_config("")),
    );
    let client = connect(proxy.port).await;
    let rows = client
        .query(
            "SELECT sys_id FROM entries WHERE environment_id = $1 LIMIT 5",
            &[&2i32],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    let skipped = crate::harness::wait_until(Duration::from_secs(10), || {
        (crate::skipped(&proxy, "limit_without_order") == 1.0).then_some(())
    });
    assert!(skipped.is_some(), "{}", proxy.metrics_text());
    assert_eq!(proxy.all_comparisons(), 0.0);
}
