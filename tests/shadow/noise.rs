//! The A/A baseline (issue 13, acceptance 5): the old query twice in one
//! snapshot. A statement that differs from itself is labelled noisy: its
//! differences are counted and shown, never raised as incidents. A
//! deterministic statement is never labelled noisy, ties and all.

use crate::fixture::{self, sys_id};
use crate::harness::{connect, http_get, Pg, Proxy};
use crate::{comparisons, wait_for_comparisons};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_differs_from_itself_is_noisy_and_opens_no_incident() {
    let pg = Pg::start();
    // A function declared STABLE that is not: every call returns another
    // value, so two runs of the same query in one snapshot differ.
    pg.sql(
        "CREATE TABLE scores (id int PRIMARY KEY, base int NOT NULL);
         INSERT INTO scores SELECT n, n % 7 FROM generate_series(1, 50) n;
         CREATE FUNCTION jitter(x int) RETURNS float8 STABLE LANGUAGE sql
             AS 'SELECT x + random()';
         CREATE SCHEMA v2;
         CREATE VIEW v2.scores AS SELECT * FROM scores;
         CREATE ROLE pgshadow LOGIN;
         GRANT USAGE ON SCHEMA public, v2 TO pgshadow;
         GRANT SELECT ON ALL TABLES IN SCHEMA public, v2 TO pgshadow;",
    );
    // The A/A baseline of first runs is off: the recheck of every mismatch
    // runs it, so a noisy statement never raises an incident even before
    // its first baseline sample.
    let proxy = Proxy::start(
        pg.port(),
        "[shadow]\nenabled = true\nsample_rate = 1.0\nuser = \"pgshadow\"\nbaseline_rate = 0.0\nnew_search_path = \"v2, public\"\n",
    );
    let client = connect(proxy.port).await;
    let noisy = client
        .prepare("SELECT id, jitter(base) AS score FROM scores WHERE id <= $1 ORDER BY id")
        .await
        .unwrap();
    const READS: f64 = 20.0;
    for n in 0..READS as i32 {
        client.query(&noisy, &[&(10 + n)]).await.unwrap();
    }
    tokio::task::block_in_place(|| wait_for_comparisons(&proxy, READS));
    let text = proxy.metrics_text();
    assert_eq!(comparisons(&proxy, "noisy"), READS, "{text}");
    assert_eq!(comparisons(&proxy, "mismatch"), 0.0, "{text}");
    assert!(
        proxy.metric("pgshadow_baselines_total{result=\"differ\"}") >= 1.0,
        "{text}"
    );
    // The log reader may lag behind the metric: wait for the line of the
    // noisy comparison (logged after the label), then count the labels.
    let line = proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("shadow comparison noisy")
    });
    let labelled = proxy
        .logs()
        .iter()
        .filter(|l| l.contains("statement labelled noisy"))
        .count();
    assert_eq!(labelled, 1, "labelled once, then remembered");
    assert!(line.contains("old_vs_old="), "{line}");
    // Shown in the coverage, never as an incident.
    let coverage = crate::harness::wait_until(Duration::from_secs(10), || {
        let body: serde_json::Value =
            serde_json::from_str(&http_get(proxy.admin_port, "/api/coverage")).ok()?;
        let row = body["coverage"].as_array()?.first()?.clone();
        (row["noisy"].as_f64() == Some(READS)).then_some(row)
    })
    .unwrap_or_else(|| panic!("coverage: {}", http_get(proxy.admin_port, "/api/coverage")));
    assert_eq!(coverage["mismatched"], 0, "{coverage}");
    let incidents: serde_json::Value =
        serde_json::from_str(&http_get(proxy.admin_port, "/api/incidents")).unwrap();
    assert_eq!(incidents["incidents"], serde_json::json!([]), "{incidents}");
    assert!(http_get(proxy.admin_port, "/coverage").contains("Noisy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deterministic_statement_is_never_noisy() {
    let pg = Pg::start();
    fixture::create(&pg);
    // Every comparison runs the A/A baseline; no keys are appended, so the
    // pages leave ties that the plan may order as it likes.
    let proxy = Proxy::start(
        pg.port(),
        &fixture::config("baseline_rate = 1.0", "enabled = false"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = fixture::dual_writer(pg.port(), stop.clone(), |n| {
        sys_id((n % 3 + 1) as i64, (n % 200 + 1) as i64)
    })
    .await;
    let client = connect(proxy.port).await;
    let statements = [
        "SELECT sys_id, updated_at FROM entries WHERE environment_id = $1::int \
         ORDER BY updated_at LIMIT 50 OFFSET $2::int",
        "SELECT e.entry_id, f.name, f.value FROM entries e JOIN entry_fields f ON f.sys_id = e.sys_id \
         WHERE e.environment_id = $1::int ORDER BY e.updated_at DESC LIMIT 30 OFFSET $2::int",
        "SELECT DISTINCT updated_at FROM entries WHERE environment_id = $1::int \
         ORDER BY updated_at LIMIT 5 OFFSET $2::int",
        "SELECT environment_id, count(*), max(version) FROM entries \
         WHERE environment_id <> $1::int AND $2::int >= 0 GROUP BY environment_id",
    ];
    let mut prepared = Vec::new();
    for sql in statements {
        prepared.push(client.prepare(sql).await.unwrap());
    }
    let mut reads = 0.0;
    for n in 0..240i32 {
        let statement = &prepared[n as usize % prepared.len()];
        client
            .query(statement, &[&(n % 3 + 1), &((n * 13) % 180)])
            .await
            .unwrap();
        reads += 1.0;
    }
    tokio::task::block_in_place(|| wait_for_comparisons(&proxy, reads));
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let text = proxy.metrics_text();
    assert_eq!(comparisons(&proxy, "noisy"), 0.0, "{text}");
    assert_eq!(comparisons(&proxy, "mismatch"), 0.0, "{text}");
    assert_eq!(
        proxy.metric("pgshadow_baselines_total{result=\"differ\"}"),
        0.0,
        "{text}"
    );
    assert_eq!(
        proxy.metric("pgshadow_baselines_total{result=\"same\"}"),
        comparisons(&proxy, "match"),
        "every comparison ran its A/A baseline: {text}"
    );
    assert!(comparisons(&proxy, "match") >= 200.0, "{text}");
}
