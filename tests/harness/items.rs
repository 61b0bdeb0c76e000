//! A small migration with two deliberate backfill bugs, shared by the
//! tests of the on-call surface (store, admin API and page, webhook).

use super::Proxy;
use tokio_postgres::Client;

/// Old schema `public`, new schema `v2`, identical but for two bugs: the
/// backfill wrote a wrong title for item 7 and a wrong body for item 11.
/// The `pgshadow` role may read both.
pub const SCHEMA: &str = "
    CREATE TABLE items (id int PRIMARY KEY, title text NOT NULL, body text NOT NULL);
    INSERT INTO items SELECT g, 'Title ' || g, 'Body ' || g FROM generate_series(1, 20) g;
    CREATE SCHEMA v2;
    CREATE TABLE v2.items (id int PRIMARY KEY, title text NOT NULL, body text NOT NULL);
    INSERT INTO v2.items SELECT * FROM items;
    UPDATE v2.items SET title = 'Wrong title' WHERE id = 7;
    UPDATE v2.items SET body = 'Wrong body' WHERE id = 11;
    CREATE ROLE pgshadow LOGIN;
    GRANT USAGE ON SCHEMA public, v2 TO pgshadow;
    GRANT SELECT ON ALL TABLES IN SCHEMA public, v2 TO pgshadow;
";

/// The application's read: one item by id.
pub const READ: &str = "SELECT id, title, body FROM items WHERE id = $1";

/// Reads item `id` through the proxy and returns its title: the
/// application's answer, which must be exactly one row.
pub async fn read(client: &Client, id: i32) -> String {
    let rows = client
        .query(READ, &[&id])
        .await
        .expect("read through the proxy");
    assert_eq!(rows.len(), 1);
    rows[0].get(1)
}

/// Outcomes the proxy reported as committed to its store: the sum of
/// `outcomes=` over its `store batch written` lines.
pub fn stored_outcomes(proxy: &Proxy) -> u64 {
    proxy
        .logs()
        .iter()
        .filter(|l| l.contains("store batch written"))
        .filter_map(|l| super::field(l, "outcomes")?.parse::<u64>().ok())
        .sum()
}
