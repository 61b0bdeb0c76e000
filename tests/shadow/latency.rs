//! Latency of old versus new (issue 17): a new schema that lacks an index
//! gets one `slower` incident with both plans, and recovers when the index
//! is added; identical schemas under concurrent load never raise one.

use crate::harness::{connect, http_get, wait_until, Pg, Proxy};
use crate::{comparisons, wait_for_comparisons};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Orders in the table: enough that a sequential scan takes several
/// milliseconds where the index finds a customer's ten rows at once.
const ORDERS: i64 = 200_000;
/// Customers: ten orders each.
const CUSTOMERS: i64 = ORDERS / 10;

const BY_CUSTOMER: &str = "SELECT id, total FROM orders WHERE customer_id = $1 ORDER BY id";
const BY_ID: &str = "SELECT id, total FROM orders WHERE id = $1";

/// `orders` in `public` with an index on `customer_id`, and the same rows
/// in `v2`, where `with_index` decides whether that index exists too.
fn orders(pg: &Pg, with_index: bool) {
    let index = if with_index {
        "CREATE INDEX v2_orders_customer ON v2.orders (customer_id);"
    } else {
        ""
    };
    pg.sql(&format!(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, total numeric NOT NULL);
         INSERT INTO orders SELECT n, n % {CUSTOMERS}, (n % 997) * 1.5 FROM generate_series(1, {ORDERS}) n;
         CREATE INDEX orders_customer ON orders (customer_id);
         CREATE SCHEMA v2;
         CREATE TABLE v2.orders (id bigint PRIMARY KEY, customer_id int NOT NULL, total numeric NOT NULL);
         INSERT INTO v2.orders SELECT * FROM orders;
         {index}
         ANALYZE orders;
         ANALYZE v2.orders;
         CREATE ROLE pgshadow LOGIN;
         GRANT USAGE ON SCHEMA public, v2 TO pgshadow;
         GRANT SELECT ON ALL TABLES IN SCHEMA public, v2 TO pgshadow;"
    ));
    // The visibility map set, so that the index is used as it would be.
    pg.sql("VACUUM orders");
    pg.sql("VACUUM v2.orders");
}

/// Every read sampled; a transaction budget that a batch of sequential
/// scans on a loaded machine stays within (the budget is not what these
/// tests are about).
fn config() -> String {
    "[shadow]\nenabled = true\nsample_rate = 1.0\nuser = \"pgshadow\"\nbaseline_rate = 0.0\n\
     max_transaction_ms = 10000\n"
        .into()
}

fn api(proxy: &Proxy, path: &str) -> Value {
    let body = http_get(proxy.admin_port, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn slower_incidents(proxy: &Proxy) -> Vec<Value> {
    api(proxy, "/api/incidents?kind=slower")["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Runs `n` reads of each statement, one customer and one id per read.
async fn reads(client: &tokio_postgres::Client, n: i32, offset: i32) {
    let by_customer = client.prepare(BY_CUSTOMER).await.unwrap();
    let by_id = client.prepare(BY_ID).await.unwrap();
    for i in 0..n {
        let customer = (offset + i * 37) % CUSTOMERS as i32;
        let rows = client.query(&by_customer, &[&customer]).await.unwrap();
        assert_eq!(rows.len(), 10);
        let id = i64::from(offset + i * 101) % ORDERS + 1;
        assert_eq!(client.query(&by_id, &[&id]).await.unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_index_opens_one_slower_incident_with_both_plans_and_resolves_when_added() {
    let pg = Pg::start();
    orders(&pg, false);
    let proxy = Proxy::start(pg.port(), &config());
    let client = connect(proxy.port).await;
    reads(&client, 60, 0).await;
    tokio::task::block_in_place(|| wait_for_comparisons(&proxy, 120.0));
    let incident = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(20), || slower_incidents(&proxy).pop())
    })
    .unwrap_or_else(|| panic!("no slower incident: {}", proxy.metrics_text()));
    // More of the same: still one incident, counted once.
    reads(&client, 30, 7).await;
    tokio::task::block_in_place(|| wait_for_comparisons(&proxy, 180.0));
    let all = slower_incidents(&proxy);
    assert_eq!(all.len(), 1, "exactly one slower incident: {all:?}");
    assert_eq!(all[0]["count"], 1, "one per fingerprint, not per sample");
    assert_eq!(incident["kind"], "slower");
    assert_eq!(
        incident["client_sql"], BY_CUSTOMER,
        "not the primary-key lookup"
    );
    assert_eq!(
        comparisons(&proxy, "mismatch"),
        0.0,
        "same rows, only slower"
    );
    assert_eq!(proxy.metric("pgshadow_slower_statements"), 1.0);

    let id = incident["id"].as_str().unwrap();
    let detail = api(&proxy, &format!("/api/incidents/{id}"));
    let example = &detail["examples"][0];
    let ratio = example["ratio"].as_f64().unwrap_or_default();
    assert!(ratio >= 10.0, "median paired ratio {ratio}: {example}");
    assert!(
        example["new_ms"].as_f64().unwrap() - example["old_ms"].as_f64().unwrap() >= 5.0,
        "{example}"
    );
    let (old_plan, new_plan) = (
        example["old_plan"].to_string(),
        example["new_plan"].to_string(),
    );
    assert!(old_plan.contains("Index Scan"), "old plan: {old_plan}");
    assert!(!old_plan.contains("Seq Scan"), "old plan: {old_plan}");
    assert!(new_plan.contains("Seq Scan"), "new plan: {new_plan}");
    assert!(!new_plan.contains("Index Scan"), "new plan: {new_plan}");
    assert!(
        example["detail"]
            .as_str()
            .unwrap()
            .contains("new side slower"),
        "{example}"
    );
    proxy.wait_for_log(Duration::from_secs(5), |l| l.contains("new schema slower"));

    // Coverage: both statements timed, only the unindexed one far apart.
    let coverage = api(&proxy, "/api/coverage");
    let rows = coverage["coverage"].as_array().unwrap();
    let latency_of = |sql: &str| {
        rows.iter()
            .find(|r| r["client_sql"] == sql)
            .map(|r| r["latency"].clone())
            .unwrap_or_else(|| panic!("{sql}: {coverage}"))
    };
    let slow = latency_of(BY_CUSTOMER);
    assert!(slow["p50_ratio"].as_f64().unwrap() >= 10.0, "{slow}");
    assert!(slow["new_p95_ms"].as_f64().unwrap() >= slow["new_p50_ms"].as_f64().unwrap());
    let lookup = latency_of(BY_ID);
    assert!(lookup["p50_ratio"].as_f64().unwrap() < 3.0, "{lookup}");
    assert!(lookup["samples"].as_u64().unwrap() >= 1, "{lookup}");

    // The index is added to the new schema: the statement recovers.
    pg.sql("CREATE INDEX v2_orders_customer ON v2.orders (customer_id); ANALYZE v2.orders;");
    reads(&client, 40, 11).await;
    let resolved = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(20), || {
            let i = api(&proxy, &format!("/api/incidents/{id}"));
            (i["status"] == "resolved").then_some(i)
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "not resolved: {}",
            api(&proxy, &format!("/api/incidents/{id}"))
        )
    });
    assert_eq!(resolved["count"], 1);
    assert_eq!(proxy.metric("pgshadow_slower_statements"), 0.0);
    // The open-incident gauge follows within its refresh interval.
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(5), || {
            (proxy.metric("pgshadow_incidents_open") == 0.0).then_some(())
        })
    })
    .unwrap_or_else(|| panic!("{}", proxy.metrics_text()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_schemas_under_concurrent_load_raise_no_slower_incident() {
    let pg = Pg::start();
    orders(&pg, true);
    let proxy = Proxy::start(pg.port(), &config());
    // A writer keeps both schemas busy (straight to the database), and
    // three readers run several statements through the proxy at once,
    // among them a sequential scan whose time varies with the load.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let client = connect(pg.port()).await;
        tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                client
                    .batch_execute(&format!(
                        "UPDATE orders SET total = total + 1 WHERE id = {id};
                         UPDATE v2.orders SET total = total + 1 WHERE id = {id};",
                        id = n % ORDERS + 1
                    ))
                    .await
                    .unwrap();
            }
        })
    };
    let mut readers = Vec::new();
    for r in 0..3i32 {
        let client = connect(proxy.port).await;
        readers.push(tokio::spawn(async move {
            let scan = client
                .prepare("SELECT count(*), sum(total) FROM orders WHERE total > $1::float8")
                .await
                .unwrap();
            for i in 0..60i32 {
                reads(&client, 1, r * 1000 + i).await;
                let above = f64::from(i % 50) * 10.0;
                client.query(&scan, &[&above]).await.unwrap();
            }
        }));
    }
    for reader in readers {
        reader.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    // 3 readers × 60 × 3 statements.
    tokio::task::block_in_place(|| wait_for_comparisons(&proxy, 540.0));
    let text = proxy.metrics_text();
    assert!(comparisons(&proxy, "match") >= 500.0, "{text}");
    assert_eq!(proxy.metric("pgshadow_slower_statements"), 0.0, "{text}");
    // Let the store catch up with everything compared, then look.
    let coverage = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(10), || {
            let c = api(&proxy, "/api/coverage");
            let compared: u64 = c["coverage"]
                .as_array()?
                .iter()
                .filter_map(|r| r["compared"].as_u64())
                .sum();
            (compared >= 540).then_some(c)
        })
    })
    .expect("coverage stored");
    assert!(slower_incidents(&proxy).is_empty(), "{coverage}");
    for row in coverage["coverage"].as_array().unwrap() {
        let ratio = row["latency"]["p50_ratio"].as_f64().unwrap_or_default();
        assert!(ratio > 0.0 && ratio < 3.0, "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relation_missing_in_the_new_schema_is_a_new_error_whichever_side_runs_first() {
    let pg = Pg::start();
    pg.sql(
        "CREATE TABLE only_old (id int PRIMARY KEY);
         INSERT INTO only_old VALUES (1), (2);
         CREATE SCHEMA v2;
         CREATE ROLE pgshadow LOGIN;
         GRANT USAGE ON SCHEMA public, v2 TO pgshadow;
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO pgshadow;",
    );
    let proxy = Proxy::start(pg.port(), &config());
    let client = connect(proxy.port).await;
    let read = client
        .prepare("SELECT id FROM only_old WHERE id = $1")
        .await
        .unwrap();
    // Consecutive samples of one statement alternate which side runs first.
    for id in 1..=4i32 {
        client.query(&read, &[&id]).await.unwrap();
    }
    tokio::task::block_in_place(|| wait_for_comparisons(&proxy, 4.0));
    let text = proxy.metrics_text();
    assert_eq!(comparisons(&proxy, "new_error"), 4.0, "{text}");
    assert_eq!(comparisons(&proxy, "both_error"), 0.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_started_after_the_fix_resolves_the_slower_incident_left_open() {
    let pg = Pg::start();
    orders(&pg, false);
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}[store]\nurl = \"sqlite://{}\"\n",
        config(),
        dir.path().join("store.db").display()
    );
    let id = {
        let proxy = Proxy::start(pg.port(), &toml);
        let client = connect(proxy.port).await;
        reads(&client, 30, 0).await;
        let incident = tokio::task::block_in_place(|| {
            wait_until(Duration::from_secs(20), || slower_incidents(&proxy).pop())
        })
        .expect("a slower incident");
        incident["id"].as_str().unwrap().to_string()
    };
    // The index is added while no proxy runs.
    pg.sql("CREATE INDEX v2_orders_customer ON v2.orders (customer_id); ANALYZE v2.orders;");
    let proxy = Proxy::start(pg.port(), &toml);
    let path = format!("/api/incidents/{id}");
    assert_eq!(api(&proxy, &path)["status"], "open", "still open at start");
    let client = connect(proxy.port).await;
    reads(&client, 30, 5).await;
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(20), || {
            (api(&proxy, &path)["status"] == "resolved").then_some(())
        })
    })
    .unwrap_or_else(|| panic!("not resolved: {}", api(&proxy, &path)));
    assert_eq!(proxy.metric("pgshadow_slower_statements"), 0.0);
}
