//! Rows that tie on the sort key: the tiebreaker makes pages compare
//! equal and row by row; without it, pages are compared tie-tolerantly
//! (their edge runs by count) and still never raise false alarms. With
//! `apply_to_primary`, the application's own pages become deterministic.

use crate::fixture::{self, ENTRIES, TIMESTAMPS};
use crate::harness::{connect, Pg, Proxy};
use crate::{comparisons, wait_for_comparisons};
use std::time::Duration;

const PAGE: &str = "SELECT sys_id, entry_id, updated_at FROM entries \
                    WHERE environment_id = 1 ORDER BY updated_at LIMIT 50 OFFSET $1";

/// Reads every page a few times through the proxy; returns (comparisons,
/// mismatches) once all of them have been compared.
async fn page_through(extra_tiebreak: &str) -> (f64, f64, Proxy) {
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(pg.port(), &fixture::config("", extra_tiebreak));
    let client = connect(proxy.port).await;
    let page = client.prepare(PAGE).await.unwrap();
    let mut reads = 0.0;
    for _ in 0..3 {
        for offset in (0..ENTRIES).step_by(50) {
            let rows = client.query(&page, &[&offset]).await.unwrap();
            assert_eq!(rows.len(), 50);
            reads += 1.0;
        }
    }
    tokio::task::block_in_place(|| wait_for_comparisons(&proxy, reads));
    (reads, comparisons(&proxy, "mismatch"), proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tied_sort_keys_with_the_tiebreaker_never_mismatch() {
    const { assert!(ENTRIES / TIMESTAMPS > 1, "the fixture must have ties") };
    let (reads, mismatches, proxy) = page_through("").await;
    assert_eq!(mismatches, 0.0, "{reads} pages:\n{}", proxy.metrics_text());
    assert_eq!(comparisons(&proxy, "match"), reads);
    let line = proxy.wait_for_log(Duration::from_secs(5), |l| l.contains("shadow match"));
    assert!(line.contains("ordering=\"total\""), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tied_pages_without_the_tiebreaker_are_compared_tie_tolerantly_without_false_alarms() {
    let (reads, mismatches, proxy) = page_through("enabled = false").await;
    assert_eq!(mismatches, 0.0, "{reads} pages:\n{}", proxy.metrics_text());
    let line = proxy.wait_for_log(Duration::from_secs(5), |l| l.contains("shadow match"));
    assert!(line.contains("ordering=\"tie_runs\""), "{line}");
    assert_eq!(
        proxy.metric("pgshadow_comparison_ordering_total{ordering=\"partial\"}"),
        reads
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_to_primary_makes_the_applications_own_pages_deterministic() {
    let pg = Pg::start();
    fixture::create(&pg);
    // The shadow is off: apply_to_primary works on its own.
    let proxy = Proxy::start(
        pg.port(),
        "[tiebreak]\napply_to_primary = true\ncolumns = { entries = \"sys_id\" }\n",
    );
    let client = connect(proxy.port).await;
    let page = client.prepare(PAGE).await.unwrap();
    let mut seen: Vec<(i64, i64)> = Vec::new();
    for offset in (0..ENTRIES).step_by(50) {
        for row in client.query(&page, &[&offset]).await.unwrap() {
            let at: std::time::SystemTime = row.get(2);
            let micros = at
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as i64;
            seen.push((micros, row.get(0)));
        }
    }
    // Every entry exactly once, in (updated_at, sys_id) order: ties are
    // broken by the stable id the proxy appended.
    let mut expected = seen.clone();
    expected.sort();
    expected.dedup();
    assert_eq!(seen.len() as i64, ENTRIES);
    assert_eq!(seen, expected);
    proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("tiebreaker appended to the application's ORDER BY")
    });

    // Nothing else is changed: a table without a configured id column is
    // left alone (no default `id` is appended), and so are writes.
    let names: Vec<String> = client
        .query("SELECT name FROM environments ORDER BY name DESC", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["env 3", "env 2", "env 1"]);
    let appended = proxy
        .logs()
        .iter()
        .filter(|l| l.contains("tiebreaker appended"))
        .count();
    assert_eq!(
        appended, 1,
        "only the entries statement was rewritten (once: it was prepared once)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relation_without_a_key_is_compared_without_the_tiebreaker() {
    let pg = Pg::start();
    fixture::create(&pg);
    // A view with no `id`: appending the default tiebreaker cannot work.
    pg.sql(
        "CREATE VIEW entry_counts AS SELECT environment_id, count(*) AS n FROM entries GROUP BY environment_id;
         CREATE VIEW v2.entry_counts AS SELECT environment_id, count(*) AS n FROM v2.entries GROUP BY environment_id;
         GRANT SELECT ON entry_counts, v2.entry_counts TO pgshadow;",
    );
    let proxy = Proxy::start(pg.port(), &fixture::shadow_config(""));
    let client = connect(proxy.port).await;
    for _ in 0..3 {
        // Read the count before the query: its comparison may finish
        // before the query's rows reach us.
        let done = proxy.all_comparisons() + 1.0;
        client
            .query("SELECT environment_id, n FROM entry_counts ORDER BY n", &[])
            .await
            .unwrap();
        tokio::task::block_in_place(|| wait_for_comparisons(&proxy, done));
    }
    assert_eq!(
        comparisons(&proxy, "match"),
        3.0,
        "{}",
        proxy.metrics_text()
    );
    // The catalog said the view has no key (nor an `id`): nothing was
    // appended, so nothing failed.
    assert_eq!(comparisons(&proxy, "rewrite_error"), 0.0);
    assert_eq!(comparisons(&proxy, "both_error"), 0.0);
    assert_eq!(
        proxy.metric("pgshadow_comparison_ordering_total{ordering=\"partial\"}"),
        3.0
    );
    assert_eq!(
        proxy.metric("pgshadow_key_lookups_total{result=\"ok\"}"),
        1.0,
        "looked up once"
    );
}
