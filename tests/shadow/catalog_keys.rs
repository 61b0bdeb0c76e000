//! Which key the catalog gives each kind of relation (issue 13, acceptance
//! 4): a primary key, else a unique index over NOT NULL columns; never a
//! partial or expression index or a NULLable unique column; partitioned
//! tables; names found through the old search_path; a relation renamed by
//! `table_map`; a new side that lacks a key column; and a key that DDL
//! changes while the proxy runs. The match log line says which keys were
//! appended.

use crate::comparisons;
use crate::harness::{connect, wait_until, Pg, Proxy};
use std::time::Duration;

/// Every kind of relation, old side first, then its new side (a copy with
/// the rows in the reverse order, or a view). Sort keys tie everywhere.
const SCHEMA: &str = r#"
CREATE TABLE orders (region text NOT NULL, order_no int NOT NULL, placed date NOT NULL,
                     total numeric, PRIMARY KEY (region, order_no));
INSERT INTO orders SELECT r, n, date '2026-01-01' + n % 3, n FROM unnest(ARRAY['eu', 'us']) r,
                          generate_series(1, 30) n;

-- No primary key: the unique index over a NOT NULL column is the key.
CREATE TABLE codes (code text NOT NULL, label text, day date NOT NULL);
CREATE UNIQUE INDEX codes_code ON codes (code);
INSERT INTO codes SELECT 'c' || n, 'label ' || n, date '2026-01-01' + n % 3 FROM generate_series(1, 30) n;

-- Unique, but not a key: partial, on an expression, over a NULLable column.
CREATE TABLE tags (name text NOT NULL, slug text, label text NOT NULL, day date NOT NULL,
                   archived bool NOT NULL DEFAULT false);
CREATE UNIQUE INDEX tags_live_name ON tags (name) WHERE NOT archived;
CREATE UNIQUE INDEX tags_lower_label ON tags (lower(label));
CREATE UNIQUE INDEX tags_slug ON tags (slug);
INSERT INTO tags SELECT 't' || n, 's' || n, 'L' || n, date '2026-01-01' + n % 3
                   FROM generate_series(1, 30) n;

-- A partitioned table: its primary key is declared on the parent.
CREATE TABLE events (region text NOT NULL, event_id int NOT NULL, at date NOT NULL,
                     PRIMARY KEY (region, event_id)) PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
INSERT INTO events SELECT r, n, date '2026-01-01' + n % 3 FROM unnest(ARRAY['eu', 'us']) r,
                          generate_series(1, 30) n;

-- Found through the old search_path ("app, public"), not in public.
CREATE SCHEMA app;
CREATE TABLE app.things (thing_id int PRIMARY KEY, kind text NOT NULL);
INSERT INTO app.things SELECT n, 'kind ' || n % 3 FROM generate_series(1, 30) n;

-- Renamed by the migration: table_map = { items = "v2.item_records" }. The
-- new search_path ("v2") has no `items`: its key is only accepted because
-- the lookup follows the table map.
CREATE TABLE items (item_id int PRIMARY KEY, day date NOT NULL, name text NOT NULL);
INSERT INTO items SELECT n, date '2026-01-01' + n % 3, 'item ' || n FROM generate_series(1, 30) n;

-- Its new side lacks the key column.
CREATE TABLE widgets (widget_id int PRIMARY KEY, day date NOT NULL, name text NOT NULL);
INSERT INTO widgets SELECT n, date '2026-01-01' + n % 3, 'widget ' || n FROM generate_series(1, 30) n;

CREATE SCHEMA v2;
CREATE TABLE v2.orders (LIKE orders INCLUDING ALL);
INSERT INTO v2.orders SELECT * FROM orders ORDER BY region DESC, order_no DESC;
CREATE VIEW v2.codes AS SELECT * FROM codes;
CREATE VIEW v2.tags AS SELECT * FROM tags;
CREATE VIEW v2.events AS SELECT * FROM events;
CREATE TABLE v2.things (LIKE app.things INCLUDING ALL);
INSERT INTO v2.things SELECT * FROM app.things ORDER BY thing_id DESC;
CREATE TABLE v2.item_records (LIKE items INCLUDING ALL);
INSERT INTO v2.item_records SELECT * FROM items ORDER BY item_id DESC;
CREATE VIEW v2.widgets AS SELECT day, name FROM widgets;

-- The application's role reads with the old search_path.
ALTER ROLE trust_user SET search_path = app, public;
CREATE ROLE pgshadow LOGIN;
GRANT USAGE ON SCHEMA public, app, v2 TO pgshadow;
GRANT SELECT ON ALL TABLES IN SCHEMA public, app, v2 TO pgshadow;
"#;

/// Each statement and the keys its match line must name.
const CASES: &[(&str, &str)] = &[
    (
        "SELECT * FROM orders ORDER BY placed LIMIT 20 OFFSET 3",
        "orders (region, order_no) primary_key",
    ),
    (
        "SELECT * FROM codes ORDER BY day",
        "codes (code) unique_index",
    ),
    (
        "SELECT name, label, day FROM tags ORDER BY day",
        "tags no key (no_key)",
    ),
    (
        "SELECT * FROM events ORDER BY at LIMIT 10",
        "events (region, event_id) primary_key",
    ),
    (
        "SELECT * FROM things ORDER BY kind",
        "things (thing_id) primary_key",
    ),
    (
        "SELECT * FROM items ORDER BY day LIMIT 10",
        "items (item_id) primary_key",
    ),
    (
        "SELECT name, day FROM widgets ORDER BY day",
        "widgets no key (no_key)",
    ),
];

fn config(extra_tiebreak: &str) -> String {
    format!(
        "[shadow]\nenabled = true\nsample_rate = 1.0\nuser = \"pgshadow\"\n\
         old_search_path = \"app, public\"\nnew_search_path = \"v2\"\n\
         table_map = {{ items = \"v2.item_records\" }}\nbatch_window_ms = 0\n\
         [tiebreak]\n{extra_tiebreak}\n"
    )
}

/// Runs `sql` through the proxy and waits for its comparison.
async fn compared(proxy: &Proxy, client: &tokio_postgres::Client, sql: &str) {
    let before = proxy.all_comparisons();
    client.query(sql, &[]).await.unwrap();
    tokio::task::block_in_place(|| crate::wait_for_comparisons(proxy, before + 1.0));
}

/// The match line that names `keys`, if any yet.
fn match_line(proxy: &Proxy, keys: &str) -> Option<String> {
    proxy
        .logs()
        .into_iter()
        .find(|l| l.contains("shadow match") && l.contains(&format!("keys={keys}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_relation_gets_its_catalog_key_or_none() {
    let pg = Pg::start();
    pg.sql(SCHEMA);
    let proxy = Proxy::start(pg.port(), &config(""));
    let client = connect(proxy.port).await;
    for (sql, keys) in CASES {
        compared(&proxy, &client, sql).await;
        assert!(
            match_line(&proxy, keys).is_some(),
            "{sql}: no match line naming keys={keys}:\n{}",
            proxy.logs().join("\n")
        );
    }
    let text = proxy.metrics_text();
    assert_eq!(comparisons(&proxy, "match"), CASES.len() as f64, "{text}");
    assert_eq!(
        proxy.metric("pgshadow_comparison_ordering_total{ordering=\"catalog_key\"}"),
        5.0,
        "{text}"
    );
    // One lookup for each statement's relations, each looked up once.
    assert_eq!(
        proxy.metric("pgshadow_key_lookup_relations_total"),
        CASES.len() as f64,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_changed_by_ddl_mid_run_is_looked_up_again() {
    let pg = Pg::start();
    pg.sql(SCHEMA);
    pg.sql(
        "CREATE TABLE gadgets (gadget_id int PRIMARY KEY, day date NOT NULL, name text NOT NULL);
         INSERT INTO gadgets SELECT n, date '2026-01-01' + n % 3, 'g' || n FROM generate_series(1, 30) n;
         CREATE TABLE v2.gadgets (LIKE gadgets INCLUDING ALL);
         INSERT INTO v2.gadgets SELECT * FROM gadgets ORDER BY gadget_id DESC;
         CREATE TABLE slots (a int NOT NULL, b int NOT NULL, day date NOT NULL, PRIMARY KEY (a));
         INSERT INTO slots SELECT n, 1, date '2026-01-01' + n % 3 FROM generate_series(1, 30) n;
         CREATE VIEW v2.slots AS SELECT * FROM slots;
         GRANT SELECT ON gadgets, v2.gadgets, slots, v2.slots TO pgshadow;",
    );
    let proxy = Proxy::start(pg.port(), &config("key_cache_seconds = 1"));
    let client = connect(proxy.port).await;
    let gadgets = "SELECT name, day FROM gadgets ORDER BY day LIMIT 10";
    let slots = "SELECT a, b, day FROM slots ORDER BY day";
    compared(&proxy, &client, gadgets).await;
    compared(&proxy, &client, slots).await;
    assert!(match_line(&proxy, "gadgets (gadget_id) primary_key").is_some());
    assert!(match_line(&proxy, "slots (a) primary_key").is_some());

    // The key column is renamed: the cached plan's ORDER BY names a column
    // that is gone. The statement is compared again with the new key, and
    // no error is reported.
    pg.sql(
        "ALTER TABLE gadgets RENAME COLUMN gadget_id TO gadget_no;
         ALTER TABLE v2.gadgets RENAME COLUMN gadget_id TO gadget_no;",
    );
    compared(&proxy, &client, gadgets).await;
    assert!(
        match_line(&proxy, "gadgets (gadget_no) primary_key").is_some(),
        "{}",
        proxy.logs().join("\n")
    );
    proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("comparing the statement again with the new keys")
    });

    // The key widens: `a` alone no longer identifies a row. Appending only
    // `a` would leave ties that come back in another order from the view.
    pg.sql(
        "ALTER TABLE slots DROP CONSTRAINT slots_pkey;
         INSERT INTO slots SELECT a, 2, day FROM slots;
         ALTER TABLE slots ADD PRIMARY KEY (a, b);",
    );
    let widened = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(30), || {
            let before = proxy.all_comparisons();
            let rt = tokio::runtime::Handle::current();
            rt.block_on(client.query(slots, &[])).unwrap();
            crate::wait_for_comparisons(&proxy, before + 1.0);
            match_line(&proxy, "slots (a, b) primary_key")
        })
    });
    assert!(widened.is_some(), "{}", proxy.logs().join("\n"));
    let text = proxy.metrics_text();
    assert_eq!(comparisons(&proxy, "mismatch"), 0.0, "{text}");
    assert_eq!(comparisons(&proxy, "rewrite_error"), 0.0, "{text}");
    assert_eq!(comparisons(&proxy, "both_error"), 0.0, "{text}");
}
