//! The admin server's on-call surface (issue "On-call surface",
//! acceptance 4 and 5): the JSON API over incidents, coverage and sampling
//! ([`api`]), the bearer token ([`token`]), readiness ([`ready`]), and the
//! web page driven in headless Chromium ([`page`]).
//!
//! Every test runs the real `pgshadow` binary in front of a real
//! PostgreSQL whose new schema has deliberate backfill bugs ([`create_schema`]),
//! so the incidents are the ones the proxy really finds.

#[path = "../harness/mod.rs"]
mod harness;

mod api;
mod chromium;
mod http;
mod page;
mod ready;
mod token;

use harness::{items, wait_until, Pg, Proxy};
use serde_json::Value;
use std::time::Duration;
use tokio_postgres::Client;

/// The shared migration with its two backfill bugs (a wrong title for
/// item 7, a wrong body for item 11), plus a third: the new schema forgot
/// the table `legacy_notes`.
pub fn create_schema(pg: &Pg) {
    pg.sql(items::SCHEMA);
    pg.sql(
        "CREATE TABLE legacy_notes (id int PRIMARY KEY, note text NOT NULL);
         INSERT INTO legacy_notes VALUES (1, 'a note');
         GRANT SELECT ON legacy_notes TO pgshadow;",
    );
}

/// A read of the table the new schema lacks.
pub const READ_NOTE: &str = "SELECT id, note FROM legacy_notes WHERE id = $1";

/// The shadow on, comparing every read, with a store in `dir` written
/// every 50 ms; `extra_shadow` lines are appended to `[shadow]`, `rest`
/// after it (other sections).
/// `sample_rate` defaults to 1.0 unless `extra_shadow` sets it.
pub fn config(dir: &std::path::Path, extra_shadow: &str, rest: &str) -> String {
    let rate = if extra_shadow.contains("sample_rate") {
        ""
    } else {
        "sample_rate = 1.0\n"
    };
    format!(
        "[shadow]\nenabled = true\n{rate}user = \"pgshadow\"\n\
         old_search_path = \"public\"\nnew_search_path = \"v2\"\n{extra_shadow}\n\
         [store]\nurl = \"sqlite://{}\"\nflush_interval_ms = 50\n{rest}\n",
        dir.join("store.db").display()
    )
}

/// Reads item `id` through the proxy.
pub async fn read(client: &Client, id: i32) {
    items::read(client, id).await;
}

/// The incidents the API lists for `query` (e.g. `?kind=mismatch`).
pub fn incidents(proxy: &Proxy, query: &str) -> Vec<Value> {
    incidents_with(proxy, query, None)
}

/// [`incidents`], with the admin token when one is configured.
pub fn incidents_with(proxy: &Proxy, query: &str, token: Option<&str>) -> Vec<Value> {
    let path = format!("/api/incidents{query}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let r = http::request(proxy.admin_port, "GET", &path, &headers, None);
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    let body = r.json();
    body["incidents"]
        .as_array()
        .unwrap_or_else(|| panic!("no incident list: {body}"))
        .clone()
}

/// Waits until the API lists `n` incidents, and returns them.
pub fn wait_for_incidents(proxy: &Proxy, n: usize) -> Vec<Value> {
    wait_for_incidents_with(proxy, n, None)
}

/// [`wait_for_incidents`], with the admin token when one is configured.
pub fn wait_for_incidents_with(proxy: &Proxy, n: usize, token: Option<&str>) -> Vec<Value> {
    wait_until(Duration::from_secs(30), || {
        let list = incidents_with(proxy, "", token);
        (list.len() >= n).then_some(list)
    })
    .unwrap_or_else(|| {
        panic!(
            "fewer than {n} incidents: {:#?}",
            incidents_with(proxy, "", token)
        )
    })
}
