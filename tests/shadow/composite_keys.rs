//! Comparisons a new user can trust with no configuration (issue 13,
//! acceptance 1 to 3): a copy-on-write migration with composite keys
//! (`composite_keys.sql`), concurrent dual writes, and paginated reads whose
//! sort keys tie, compared at `sample_rate = 1.0` with no `[tiebreak]`
//! section. The keys come from the catalog; the keyless reporting view is
//! compared tie-tolerantly; real defects are found and listed by id.

use crate::harness::{
    connect, http_get, metric_value, run, total_comparisons, wait_until, Pg, Proxy,
};
use crate::{comparisons, fixture};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Client;

/// The migration, its data and the dual-write functions.
const SCHEMA: &str = include_str!("composite_keys.sql");

/// Entries per environment, and environments.
const ENTRIES: i64 = 240;
const ENVIRONMENTS: i64 = 3;

/// A page of entries with their fields: a join of two composite keys,
/// sorted by a column that ties.
const JOIN_PAGE: &str = "SELECT e.env_id, e.entry_id, e.title, e.updated_at, f.field, f.value \
     FROM entries e JOIN entry_fields f ON f.env_id = e.env_id AND f.entry_id = e.entry_id \
     WHERE e.env_id = $1 ORDER BY e.updated_at DESC LIMIT 50 OFFSET $2";
/// A page of a view over the mapping table (v2) or a table (old).
const ENTRY_PAGE: &str = "SELECT entry_id, title, updated_at FROM entries \
     WHERE env_id = $1 ORDER BY updated_at LIMIT 25 OFFSET $2";
/// A page of the keyless reporting view.
const REPORT_PAGE: &str = "SELECT entry_id, title, updated_at, fields_set FROM entry_activity \
     WHERE env_id = $1 ORDER BY updated_at DESC LIMIT 40 OFFSET $2";
/// Each entry's most recently changed field: its fields' `changed_at` tie,
/// so which one DISTINCT ON picks is up to the plan unless keys break the
/// tie.
const LATEST_FIELD: &str = "SELECT DISTINCT ON (e.env_id, e.entry_id) e.env_id, e.entry_id, \
     f.field, f.value FROM entries e JOIN entry_fields f \
     ON f.env_id = e.env_id AND f.entry_id = e.entry_id \
     WHERE e.env_id = $1 ORDER BY e.env_id, e.entry_id, f.changed_at DESC LIMIT 40 OFFSET $2";
/// A page sorted by a column the output does not show.
const TITLES: &str = "SELECT e.entry_id, e.title FROM entries e WHERE e.env_id = $1 \
     ORDER BY e.updated_at DESC LIMIT 30 OFFSET $2";

/// The shadow as a new user writes it: no `[tiebreak]` section.
fn config(extra: &str) -> String {
    format!(
        "[shadow]\nenabled = true\nsample_rate = 1.0\nuser = \"pgshadow\"\n\
         old_search_path = \"public\"\nnew_search_path = \"v2\"\nmax_in_flight = 4\n{extra}"
    )
}

/// A cluster with the migration.
fn migration() -> Pg {
    let pg = Pg::start();
    pg.sql(SCHEMA);
    pg
}

/// Dual writers (straight to the database: the proxy compares reads) until
/// `stop`; each edits random entries of every environment.
fn start_writers(pg: &Pg, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..2)
        .map(|w| {
            let stop = stop.clone();
            let port = pg.port();
            tokio::spawn(async move {
                let client = connect(port).await;
                let edit = client
                    .prepare("SELECT edit_entry($1, $2, $3)")
                    .await
                    .unwrap();
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let env = (n % ENVIRONMENTS as u64) as i32 + 1;
                    let entry = ((n * 37 + w * 101) % ENTRIES as u64) as i32 + 1;
                    client
                        .execute(&edit, &[&env, &entry, &format!("body v{w}.{n}")])
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                n
            })
        })
        .collect()
}

/// Reads `statements` pages through the proxy (every environment, offsets
/// cutting runs of ties anywhere) until `stop`.
async fn read_pages(client: Client, statements: Vec<&str>, reader: i64, stop: Arc<AtomicBool>) {
    let mut prepared = Vec::new();
    for sql in &statements {
        prepared.push(client.prepare(sql).await.unwrap());
    }
    let mut n: i64 = reader * 7;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let statement = &prepared[n as usize % prepared.len()];
        let env = (n % ENVIRONMENTS) as i32 + 1;
        let offset = (n * 37) % (3 * ENTRIES);
        client.query(statement, &[&env, &offset]).await.unwrap();
    }
}

/// Drives readers of `statements` and the writers until `done` says the
/// proxy's counts suffice (or two minutes pass).
async fn drive(pg: &Pg, proxy: &Proxy, statements: &[&'static str], done: impl Fn(&Proxy) -> bool) {
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(pg, &stop);
    let mut readers = Vec::new();
    for r in 0..3 {
        let client = connect(proxy.port).await;
        let statements = statements.to_vec();
        readers.push(tokio::spawn(read_pages(
            client,
            statements,
            r,
            stop.clone(),
        )));
    }
    let reached = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(120), || done(proxy).then_some(()))
    });
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    tokio::task::block_in_place(|| settled(proxy));
    let mut writes = 0;
    for writer in writers {
        writes += writer.await.unwrap();
    }
    assert!(writes > 0, "the writers wrote nothing");
    assert!(
        reached.is_some(),
        "the workload did not finish:\n{}",
        proxy.metrics_text()
    );
}

/// Waits until every statement the readers ran has been compared or
/// skipped: at `sample_rate = 1.0` nothing is left in the shadow's queue.
fn settled(proxy: &Proxy) {
    let done = wait_until(Duration::from_secs(60), || {
        let text = proxy.metrics_text();
        let skipped: f64 = text
            .lines()
            .filter(|l| l.starts_with("pgshadow_skipped_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        let queries = metric_value(&text, "pgshadow_queries_total");
        (total_comparisons(&text) + skipped >= queries).then_some(())
    });
    assert!(
        done.is_some(),
        "comparisons still pending:\n{}",
        proxy.metrics_text()
    );
}

/// Every result that is neither a match nor a mismatch.
fn failures(proxy: &Proxy) -> f64 {
    [
        "old_error",
        "new_error",
        "both_error",
        "timeout",
        "rewrite_error",
        "shadow_error",
        "noisy",
    ]
    .iter()
    .map(|r| comparisons(proxy, r))
    .sum()
}

fn ordered(proxy: &Proxy, basis: &str) -> f64 {
    proxy.metric(&format!(
        "pgshadow_comparison_ordering_total{{ordering=\"{basis}\"}}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tied_pages_of_composite_keys_and_views_never_mismatch_with_no_configuration() {
    let pg = migration();
    let proxy = Proxy::start(pg.port(), &config(""));
    drive(
        &pg,
        &proxy,
        &[JOIN_PAGE, ENTRY_PAGE, REPORT_PAGE, LATEST_FIELD, TITLES],
        |p| comparisons(p, "match") + comparisons(p, "mismatch") >= 2000.0,
    )
    .await;
    let text = proxy.metrics_text();
    assert_eq!(comparisons(&proxy, "mismatch"), 0.0, "{text}");
    assert_eq!(failures(&proxy), 0.0, "{text}");
    // The tables' keys made four of the five statements total orders; the
    // view's pages were compared tie-tolerantly.
    assert!(ordered(&proxy, "catalog_key") >= 1500.0, "{text}");
    assert!(ordered(&proxy, "partial") >= 300.0, "{text}");
    assert_eq!(ordered(&proxy, "config"), 0.0, "nothing was configured");
    // The join page's line names both relations' keys (other statements
    // over `entries` alone name only the first).
    proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("shadow match")
            && l.contains("e (env_id, entry_id) primary_key")
            && l.contains("f (env_id, entry_id, field) primary_key")
    });
    proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("shadow match") && l.contains("entry_activity no key (no_key)")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_keys_the_same_pages_raise_false_alarms() {
    let pg = migration();
    let proxy = Proxy::start(pg.port(), &config("[tiebreak]\nenabled = false\n"));
    drive(
        &pg,
        &proxy,
        &[JOIN_PAGE, ENTRY_PAGE, REPORT_PAGE, LATEST_FIELD, TITLES],
        |p| comparisons(p, "mismatch") >= 1.0 || p.all_comparisons() >= 2000.0,
    )
    .await;
    assert!(
        comparisons(&proxy, "mismatch") >= 1.0,
        "no false alarm without keys:\n{}",
        proxy.metrics_text()
    );
    assert_eq!(ordered(&proxy, "catalog_key"), 0.0);
    let line = proxy.wait_for_log(Duration::from_secs(10), |l| l.contains("shadow mismatch"));
    assert!(line.contains("DISTINCT ON"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_view_page_never_cries_wolf_and_a_wrong_value_in_a_complete_run_is_reported() {
    let pg = migration();
    let proxy = Proxy::start(pg.port(), &fixture::logging_values(&config("")));
    drive(&pg, &proxy, &[REPORT_PAGE], |p| {
        comparisons(p, "match") + comparisons(p, "mismatch") >= 1000.0
    })
    .await;
    assert_eq!(
        comparisons(&proxy, "mismatch"),
        0.0,
        "{}",
        proxy.metrics_text()
    );
    assert_eq!(failures(&proxy), 0.0, "{}", proxy.metrics_text());
    assert!(ordered(&proxy, "partial") >= 1000.0);

    // A page of master whose first run of ties is cut by the offset and
    // whose second run, of several tied rows, is complete: break a title in
    // the new schema in that second run.
    let order = pg.sql(
        "SELECT string_agg(entry_id || ':' || (extract(epoch FROM updated_at) * 1000000)::bigint, \
         ' ' ORDER BY updated_at DESC, entry_id) FROM entry_activity WHERE env_id = 1",
    );
    let rows: Vec<(i64, i64)> = order
        .split_whitespace()
        .filter_map(|pair| {
            let (id, at) = pair.split_once(':')?;
            Some((id.parse().ok()?, at.parse().ok()?))
        })
        .collect();
    let run_start = (1..rows.len())
        .find(|&i| {
            let at = rows[i].1;
            let len = rows[i..].iter().take_while(|r| r.1 == at).count();
            rows[i - 1].1 != at && (2..30).contains(&len)
        })
        .expect("a run of ties");
    let offset = (run_start - 1) as i64;
    let broken = rows[run_start].0;
    pg.sql(&format!(
        "UPDATE v2.contents SET title = 'WRONG' WHERE content_id = \
         (SELECT content_id FROM v2.env_entries WHERE env_id = 1 AND entry_id = {broken})"
    ));
    let client = connect(proxy.port).await;
    client
        .query(REPORT_PAGE, &[&1i32, &offset])
        .await
        .expect("page");
    tokio::task::block_in_place(|| settled(&proxy));
    assert_eq!(
        comparisons(&proxy, "mismatch"),
        1.0,
        "{}",
        proxy.metrics_text()
    );
    let line = proxy.wait_for_log(Duration::from_secs(5), |l| l.contains("shadow mismatch"));
    assert!(line.contains("WRONG"), "{line}");
    assert!(line.contains("ordering=\"tie_runs\""), "{line}");
}

/// The ids of every incident of the join page's fingerprint, through the
/// CLI (`--json`) and the API: they must agree.
fn seeded_ids(proxy: &Proxy) -> Vec<(String, String, String, String)> {
    let incidents: serde_json::Value =
        serde_json::from_str(&http_get(proxy.admin_port, "/api/incidents")).unwrap();
    let mut found = Vec::new();
    for incident in incidents["incidents"].as_array().unwrap() {
        let id = incident["id"].as_str().unwrap();
        let api: serde_json::Value = serde_json::from_str(&http_get(
            proxy.admin_port,
            &format!("/api/incidents/{id}/ids"),
        ))
        .unwrap();
        let (ok, out, err) = run(std::process::Command::new(env!("CARGO_BIN_EXE_pgshadow"))
            .args(["mismatches", "--config"])
            .arg(proxy.config_path())
            .args(["ids", id, "--json"]));
        assert!(ok, "{err}");
        let cli: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(cli, api, "the CLI and the API list the same ids");
        for row in api["ids"].as_array().unwrap() {
            let values: Vec<String> = row["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap_or("NULL").to_string())
                .collect();
            if let [env, entry, field] = values.as_slice() {
                found.push((
                    row["change"].as_str().unwrap().to_string(),
                    env.clone(),
                    entry.clone(),
                    field.clone(),
                ));
            }
        }
        let csv = http_get(
            proxy.admin_port,
            &format!("/api/incidents/{id}/ids?format=csv"),
        );
        assert!(
            csv.starts_with("env_id,entry_id,field,change,first_seen,last_seen,seen\r\n"),
            "{csv}"
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_defects_appear_by_id_in_mismatches_ids_and_the_api() {
    let pg = migration();
    // A changed value (master's entry 7, after an edit gave it a content of
    // its own), a lost mapping row (master's entry 42), and an edit of
    // master's entry 99 that leaked into staging and preview.
    pg.sql(
        "SELECT edit_entry(1, 7, 'body of entry 7, edited');
         UPDATE v2.content_fields SET value = 'wrong summary' WHERE field = 'summary'
            AND content_id = (SELECT content_id FROM v2.env_entries WHERE env_id = 1 AND entry_id = 7);
         DELETE FROM v2.env_entries WHERE env_id = 1 AND entry_id = 42;
         SELECT edit_entry_in_place(1, 99, 'body of entry 99, edited in master');",
    );
    let proxy = Proxy::start(pg.port(), &config(""));
    let client = connect(proxy.port).await;
    let page = client.prepare(JOIN_PAGE).await.unwrap();
    let mut reads = 0.0;
    for env in [1i32, 2] {
        for offset in (0..3 * ENTRIES).step_by(50) {
            client.query(&page, &[&env, &offset]).await.unwrap();
            reads += 1.0;
        }
    }
    tokio::task::block_in_place(|| crate::wait_for_comparisons(&proxy, reads));
    assert!(
        comparisons(&proxy, "mismatch") >= 3.0,
        "{}",
        proxy.metrics_text()
    );
    let expected = [
        ("changed", "1", "7", "summary"),
        ("missing", "1", "42", "body"),
        ("missing", "1", "42", "slug"),
        ("missing", "1", "42", "summary"),
        ("changed", "2", "99", "body"),
    ];
    let ids = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(30), || {
            let ids = seeded_ids(&proxy);
            expected
                .iter()
                .all(|(c, e, n, f)| {
                    ids.iter().any(|id| {
                        id == &(c.to_string(), e.to_string(), n.to_string(), f.to_string())
                    })
                })
                .then_some(ids)
        })
    });
    assert!(
        ids.is_some(),
        "seeded ids not all listed: {:?}",
        seeded_ids(&proxy)
    );
    let ids = ids.unwrap_or_default();
    // Rows of preview were not read; an id is never invented.
    assert!(
        ids.iter().all(|(_, env, _, _)| env == "1" || env == "2"),
        "{ids:?}"
    );
}
