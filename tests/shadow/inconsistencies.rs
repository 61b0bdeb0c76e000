//! Differences injected into the new schema (`v2`) after the fixture is
//! built, each reported with the right kind and down to the id: a changed
//! value, a missing row, an extra row, NULL against '', a renamed column,
//! and an int4 → int8 change that only strict type comparison calls a
//! difference. The application's own reads keep seeing the old schema.

use crate::fixture::{self, sys_id};
use crate::harness::{connect, field, Pg, Proxy};
use crate::{comparisons, wait_for_comparisons};
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

/// A single-table read, ordered by the stable id.
const VERSIONS: &str =
    "SELECT sys_id, version FROM entries WHERE environment_id = $1 ORDER BY sys_id";

/// A cluster with the fixture, a proxy in front of it and a client of the
/// proxy. Fields drop in order: client, proxy, cluster.
struct Scene {
    client: Client,
    proxy: Proxy,
    pg: Pg,
}

impl Scene {
    async fn start(extra_toml: &str) -> Scene {
        let pg = Pg::start();
        fixture::create(&pg);
        // These tests read the differing values from the log line.
        let proxy = Proxy::start(pg.port(), &fixture::logging_values(extra_toml));
        let client = connect(proxy.port).await;
        Scene { client, proxy, pg }
    }

    /// Runs `sql` through the proxy and waits until its comparison has
    /// finished; returns the rows the client got.
    async fn read(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> usize {
        read(&self.client, &self.proxy, sql, params).await
    }
}

/// Runs `sql` on `client` (connected to `proxy`) and waits for its
/// comparison.
async fn read(client: &Client, proxy: &Proxy, sql: &str, params: &[&(dyn ToSql + Sync)]) -> usize {
    let before = proxy.all_comparisons();
    let rows = client
        .query(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    wait_for_comparisons(proxy, before + 1.0);
    rows.len()
}

/// The fields of the one `shadow mismatch` line a proxy logged.
struct Mismatch {
    line: String,
}

impl Mismatch {
    fn of(proxy: &Proxy) -> Mismatch {
        let line = proxy.wait_for_log(Duration::from_secs(5), |l| l.contains("shadow mismatch"));
        Mismatch { line }
    }

    /// A one-word field, unquoted; "" when empty or absent.
    fn field(&self, key: &str) -> &str {
        let needle = format!(" {key}=");
        let after = self.line.split_once(&needle).map_or("", |(_, v)| v);
        after.split(' ').next().unwrap_or("").trim_matches('"')
    }

    /// The summary runs up to the next field: `params=` when the
    /// statement had parameters, else `old_sql=`.
    fn summary(&self) -> &str {
        let after = self.line.split_once(" summary=").map_or("", |(_, s)| s);
        let end = [" params=", " old_sql="]
            .iter()
            .filter_map(|field| after.find(field))
            .min()
            .unwrap_or(after.len());
        &after[..end]
    }

    /// Asserts the kind, the differing columns and the summary, and that
    /// the recheck in a fresh snapshot confirmed it.
    fn assert(&self, kind: &str, columns: &str, summary: &str) {
        let line = &self.line;
        assert_eq!(self.field("diff"), kind, "{line}");
        assert_eq!(self.field("columns"), columns, "{line}");
        assert_eq!(self.summary(), summary, "{line}");
        assert_eq!(self.field("confirmed"), "true", "{line}");
    }
}

/// Asserts exactly one comparison so far, and that it found a difference.
fn assert_one_mismatch(proxy: &Proxy) {
    let text = proxy.metrics_text();
    assert_eq!(proxy.all_comparisons(), 1.0, "{text}");
    assert_eq!(comparisons(proxy, "mismatch"), 1.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_value_in_a_single_table_read_is_reported_by_id_and_column() {
    let s = Scene::start(&fixture::shadow_config("")).await;
    let broken = sys_id(2, 42);
    s.pg.sql(&format!(
        "UPDATE v2.entry_map SET version = 7 WHERE sys_id = {broken}"
    ));
    let rows = s.read(VERSIONS, &[&2i32]).await;
    assert_eq!(rows as i64, fixture::ENTRIES);
    assert_one_mismatch(&s.proxy);
    Mismatch::of(&s.proxy).assert(
        "values",
        "version",
        &format!("sys_id={broken}: version old=1 new=7"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_missing_from_the_new_schema_is_reported_as_missing_rows_with_its_id() {
    let s = Scene::start(&fixture::shadow_config("")).await;
    let lost = sys_id(3, 17);
    s.pg.sql(&format!("DELETE FROM v2.entry_map WHERE sys_id = {lost}"));
    assert_eq!(s.read(VERSIONS, &[&3i32]).await as i64, fixture::ENTRIES);
    assert_one_mismatch(&s.proxy);
    Mismatch::of(&s.proxy).assert(
        "missing_rows",
        "",
        &format!(
            "1 missing id ({lost}); row count old={} new={}",
            fixture::ENTRIES,
            fixture::ENTRIES - 1
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_only_in_the_new_schema_is_reported_as_extra_rows_with_its_id() {
    let s = Scene::start(&fixture::shadow_config("")).await;
    let stray = sys_id(1, 999);
    s.pg.sql(&format!(
        "INSERT INTO v2.entry_map (sys_id, entry_id, environment_id, updated_at, version)
         VALUES ({stray}, 999, 1, '2026-01-01 00:00+00', 1)"
    ));
    assert_eq!(s.read(VERSIONS, &[&1i32]).await as i64, fixture::ENTRIES);
    assert_one_mismatch(&s.proxy);
    Mismatch::of(&s.proxy).assert(
        "extra_rows",
        "",
        &format!(
            "1 extra id ({stray}); row count old={} new={}",
            fixture::ENTRIES,
            fixture::ENTRIES + 1
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_in_the_old_schema_and_an_empty_string_in_the_new_one_differ() {
    let s = Scene::start(&fixture::shadow_config("")).await;
    // Entry 5's body is NULL in both schemas; the backfill turns it into ''.
    let blank = sys_id(1, 5);
    s.pg.sql(&format!(
        "INSERT INTO v2.field_values (value) VALUES ('');
         UPDATE v2.entry_map SET body_id = (SELECT value_id FROM v2.field_values WHERE value = '')
          WHERE sys_id = {blank}"
    ));
    let bodies = "SELECT sys_id, value FROM entry_fields \
                  WHERE name = 'body' AND sys_id BETWEEN $1 AND $2 ORDER BY sys_id";
    let rows = s.read(bodies, &[&sys_id(1, 1), &sys_id(1, 10)]).await;
    assert_eq!(rows, 10);
    assert_one_mismatch(&s.proxy);
    Mismatch::of(&s.proxy).assert(
        "values",
        "value",
        &format!("sys_id={blank}: value old=NULL new=''"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_column_is_a_columns_mismatch_and_naming_it_is_a_new_error() {
    let s = Scene::start(&fixture::shadow_config("")).await;
    s.pg.sql(&format!(
        "DROP VIEW v2.entries;
         CREATE VIEW v2.entries AS
             SELECT sys_id, entry_id, environment_id, updated_at AS modified_at, version
               FROM v2.entry_map;
         GRANT SELECT ON v2.entries TO {}",
        fixture::SHADOW_ROLE
    ));
    let everything = "SELECT * FROM entries WHERE environment_id = $1 ORDER BY sys_id";
    assert_eq!(s.read(everything, &[&1i32]).await as i64, fixture::ENTRIES);
    assert_one_mismatch(&s.proxy);
    Mismatch::of(&s.proxy).assert(
        "columns",
        "modified_at,updated_at",
        "column 4: name old=updated_at new=modified_at",
    );

    // A query that names the old column cannot run on the new schema at
    // all: an error of the new side, not a difference in rows.
    let named = "SELECT sys_id, updated_at FROM entries WHERE environment_id = $1 ORDER BY sys_id";
    s.read(named, &[&1i32]).await;
    assert_eq!(comparisons(&s.proxy, "new_error"), 1.0);
    let failed = s.proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("shadow comparison failed")
    });
    assert_eq!(field(&failed, "result"), Some("\"new_error\""), "{failed}");
    assert!(
        failed.contains(" old_sqlstate= "),
        "the old side ran: {failed}"
    );
    assert_eq!(field(&failed, "new_sqlstate"), Some("42703"), "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int4_to_int8_matches_by_default_and_is_a_columns_mismatch_with_strict_types() {
    let pg = Pg::start();
    fixture::create(&pg);
    pg.sql(&format!(
        "DROP VIEW v2.entries;
         CREATE VIEW v2.entries AS
             SELECT sys_id, entry_id, environment_id, updated_at, version::int8 AS version
               FROM v2.entry_map;
         GRANT SELECT ON v2.entries TO {}",
        fixture::SHADOW_ROLE
    ));

    let lenient = Proxy::start(pg.port(), &fixture::shadow_config(""));
    let client = connect(lenient.port).await;
    read(&client, &lenient, VERSIONS, &[&1i32]).await;
    let text = lenient.metrics_text();
    assert_eq!(lenient.all_comparisons(), 1.0, "{text}");
    assert_eq!(comparisons(&lenient, "match"), 1.0, "{text}");

    let strict_config = format!(
        "{}\n[compare]\nstrict_types = true\n",
        fixture::shadow_config("")
    );
    let strict = Proxy::start(pg.port(), &strict_config);
    let client = connect(strict.port).await;
    read(&client, &strict, VERSIONS, &[&1i32]).await;
    assert_one_mismatch(&strict);
    Mismatch::of(&strict).assert("columns", "version", "int4 vs int8 in column version");
}
