//! Production values stay out of the logs (issue "In front of a managed
//! production database", acceptance 5) and, with `store.values = "hash"`,
//! out of the mismatch store: a seeded parameter value, the row values of
//! a mismatch and a literal in a simple query appear nowhere unless
//! `log.values = true`.

use crate::comparisons;
use crate::harness::{connect, http_get, wait_until, Pg, Proxy};
use std::time::Duration;

/// A parameter value that appears nowhere else.
const PARAM: &str = "seeded-param-4f1c@example.com";
/// The differing row values of the mismatch.
const OLD_VALUE: &str = "Row-Value-Old-93d1";
const NEW_VALUE: &str = "Row-Value-New-93d1";
/// A literal sent in a simple query.
const LITERAL: &str = "seeded-literal-77aa";

fn schema(pg: &Pg) {
    pg.sql(&format!(
        "CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, name text NOT NULL);
         INSERT INTO people VALUES (1, '{PARAM}', '{OLD_VALUE}'), (2, '{LITERAL}', 'plain');
         CREATE SCHEMA v2;
         CREATE TABLE v2.people (LIKE people INCLUDING ALL);
         INSERT INTO v2.people VALUES (1, '{PARAM}', '{NEW_VALUE}'), (2, '{LITERAL}', 'other');
         CREATE ROLE pgshadow LOGIN;
         GRANT USAGE ON SCHEMA public, v2 TO pgshadow;
         GRANT SELECT ON ALL TABLES IN SCHEMA public, v2 TO pgshadow;"
    ));
}

fn config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "[shadow]\nenabled = true\nsample_rate = 1.0\nuser = \"pgshadow\"\n\
         old_search_path = \"public\"\nnew_search_path = \"v2\"\nbatch_window_ms = 0\n\
         [store]\nurl = \"sqlite://{}\"\nflush_interval_ms = 50\n{extra}",
        dir.join("store.db").display()
    )
}

/// Runs the seeded reads through `proxy` and waits for both mismatches to
/// be logged and stored.
async fn run_reads(proxy: &Proxy) {
    let client = connect(proxy.port).await;
    let rows = client
        .query(
            "SELECT id, email, name FROM people WHERE email = $1",
            &[&PARAM],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    client
        .simple_query(&format!(
            "SELECT id, name FROM people WHERE email = '{LITERAL}'"
        ))
        .await
        .unwrap();
    wait_until(Duration::from_secs(30), || {
        (comparisons(proxy, "mismatch") >= 2.0).then_some(())
    })
    .expect("two mismatches");
    proxy.wait_for_log(Duration::from_secs(30), |l| {
        l.contains("store batch written")
    });
    proxy.wait_for_log(Duration::from_secs(30), |l| l.contains("incident opened"));
}

/// `PARAM` as the log shows a binary-format parameter (`\x…` hex):
/// tokio-postgres sends text parameters in binary format.
fn param_hex() -> String {
    PARAM.bytes().map(|b| format!("{b:02x}")).collect()
}

fn lines_with<'a>(logs: &'a [String], needles: &[&str]) -> Vec<&'a String> {
    logs.iter()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_carries_a_value_unless_log_values_is_on() {
    let pg = Pg::start();
    schema(&pg);
    let hex = param_hex();
    let seeded = [PARAM, &hex, OLD_VALUE, NEW_VALUE, LITERAL];

    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(pg.port(), &config(dir.path(), ""));
    run_reads(&proxy).await;
    let logs = proxy.logs();
    let mismatch = logs
        .iter()
        .find(|l| l.contains("shadow mismatch") && l.contains("params=$1"))
        .expect("the parameterised mismatch's line");
    assert!(mismatch.contains("bytes #"), "{mismatch}");
    assert!(mismatch.contains("values differ in name"), "{mismatch}");
    let leaked = lines_with(&logs, &seeded);
    assert!(leaked.is_empty(), "values in log lines: {leaked:#?}");
    // The store keeps them for on-call (store.values = "keep").
    let incidents = http_get(proxy.admin_port, "/api/incidents");
    let v: serde_json::Value = serde_json::from_str(&incidents).unwrap();
    let id = v["incidents"][0]["id"].as_str().unwrap().to_string();
    let shown = http_get(proxy.admin_port, &format!("/api/incidents/{id}"));
    assert!(
        seeded.iter().any(|s| shown.contains(s)),
        "the store keeps values by default: {shown}"
    );
    drop(proxy);

    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(pg.port(), &config(dir.path(), "[log]\nvalues = true\n"));
    run_reads(&proxy).await;
    let logs = proxy.logs();
    assert!(
        !lines_with(&logs, &[PARAM, &hex]).is_empty(),
        "the parameter is not logged with log.values = true:\n{}",
        logs.join("\n")
    );
    for value in [OLD_VALUE, NEW_VALUE, LITERAL] {
        assert!(
            !lines_with(&logs, &[value]).is_empty(),
            "{value} is not logged with log.values = true:\n{}",
            logs.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_store_values_hash_the_store_keeps_no_values_either() {
    let pg = Pg::start();
    schema(&pg);
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(pg.port(), &config(dir.path(), "values = \"hash\"\n"));
    run_reads(&proxy).await;
    // The two mismatches may be stored by two batches.
    let list = wait_until(Duration::from_secs(30), || {
        let list = http_get(proxy.admin_port, "/api/incidents");
        let v: serde_json::Value = serde_json::from_str(&list).ok()?;
        (v["incidents"].as_array()?.len() >= 2).then_some(list)
    })
    .unwrap_or_else(|| http_get(proxy.admin_port, "/api/incidents"));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let incidents = v["incidents"].as_array().unwrap();
    assert!(incidents.len() >= 2, "{list}");
    for incident in incidents {
        let id = incident["id"].as_str().unwrap();
        let shown = http_get(proxy.admin_port, &format!("/api/incidents/{id}"));
        for value in [PARAM, &param_hex(), OLD_VALUE, NEW_VALUE, LITERAL] {
            assert!(!shown.contains(value), "{value} stored: {shown}");
        }
        // Which cells differ still shows: old and new hashes differ.
        assert!(shown.contains("bytes #"), "{shown}");
        assert!(shown.contains("\"name\""), "{shown}");
    }
    // The page renders it too.
    let page = http_get(
        proxy.admin_port,
        &format!("/incidents/{}", incidents[0]["id"].as_str().unwrap()),
    );
    assert!(page.contains("bytes #"));
}
