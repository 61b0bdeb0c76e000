//! The real `pgshadow` binary with a store, in front of a real migration
//! with two backfill bugs (one per column): incidents are stored, survive
//! a SIGKILL, keep counting after a restart, and a graceful shutdown
//! writes what was still in memory.

use crate::backend::Backend;
use crate::harness::items::{read, stored_outcomes, READ, SCHEMA};
use crate::harness::{connect, field, wait_until, Pg, Proxy};
use pgshadow::outcome::signature::IncidentKind;
use pgshadow::store::{IncidentFilter, Store, StoreOptions};
use std::time::Duration;

fn config(store_url: &str, extra_store: &str) -> String {
    format!(
        "[shadow]\nenabled = true\nsample_rate = 1.0\nuser = \"pgshadow\"\n\
         old_search_path = \"public\"\nnew_search_path = \"v2\"\n\
         [store]\nurl = \"{store_url}\"\n{extra_store}\n"
    )
}

fn wait_stored(proxy: &Proxy, n: u64) {
    wait_until(Duration::from_secs(30), || {
        (stored_outcomes(proxy) >= n).then_some(())
    })
    .unwrap_or_else(|| panic!("only {} outcomes stored", stored_outcomes(proxy)));
    assert_eq!(stored_outcomes(proxy), n, "one outcome per read");
}

fn kill(mut proxy: Proxy) {
    proxy.signal(libc::SIGKILL);
    proxy.wait_exit(Duration::from_secs(10));
}

async fn sigkill_loses_nothing_stored(pg: &Pg, store_url: &str) {
    let toml = config(store_url, "flush_interval_ms = 50");
    let proxy = Proxy::start(pg.port(), &toml);
    let client = connect(proxy.port).await;
    for _ in 0..5 {
        read(&client, 7).await;
    }
    let line = proxy.wait_for_log(Duration::from_secs(30), |l| l.contains("incident opened"));
    let id = field(&line, "incident").expect("incident id").to_string();
    assert!(line.contains("columns=title"), "{line}");
    wait_stored(&proxy, 5);
    wait_until(Duration::from_secs(10), || {
        (proxy.metric("pgshadow_incidents_open") == 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("gauge not updated:\n{}", proxy.metrics_text()));
    assert!(proxy
        .metrics_text()
        .contains("pgshadow_store_dropped_total 0"));
    kill(proxy);

    let store = Store::open(store_url, StoreOptions::default())
        .await
        .expect("reopen");
    let incident = store
        .incident(&id)
        .await
        .unwrap()
        .expect("the incident survived");
    assert_eq!(incident.incident.count, 5);
    assert_eq!(incident.incident.columns, ["title"]);
    assert_eq!(incident.examples.len(), 5);
    // tokio-postgres binds an int4 in binary: shown as hex.
    assert_eq!(
        incident.examples[0].params,
        [Some("\\x00000007".to_string())]
    );
    drop(store);

    // A new process on the same store: the same signature adds up.
    let proxy = Proxy::start(pg.port(), &toml);
    let client = connect(proxy.port).await;
    for _ in 0..3 {
        read(&client, 7).await;
    }
    wait_stored(&proxy, 3);
    assert!(
        !proxy.logs().iter().any(|l| l.contains("incident opened")),
        "a known signature opens no new incident"
    );
    kill(proxy);
    let store = Store::open(store_url, StoreOptions::default())
        .await
        .expect("reopen");
    let incidents = store
        .list_incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0].id, id);
    assert_eq!(incidents[0].count, 8);
    assert_eq!(incidents[0].fingerprint_comparisons, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_store_loses_nothing_to_sigkill_and_counts_on_after_a_restart() {
    let pg = Pg::start();
    pg.sql(SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    sigkill_loses_nothing_stored(&pg, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_loses_nothing_to_sigkill_and_counts_on_after_a_restart() {
    let pg = Pg::start();
    pg.sql(SCHEMA);
    Backend::create_store_database(&pg);
    sigkill_loses_nothing_stored(&pg, &Backend::postgres_url(&pg)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_differing_columns_make_two_incidents_written_at_graceful_shutdown() {
    let pg = Pg::start();
    pg.sql(SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    // Nothing is written before shutdown: the last flush must do it all.
    let toml = config(
        &url,
        "flush_interval_ms = 60000\nflush_max_outcomes = 1000000",
    );
    let mut proxy = Proxy::start(pg.port(), &toml);
    let client = connect(proxy.port).await;
    for id in [7, 7, 7, 11, 11, 3, 3] {
        read(&client, id).await;
    }
    wait_until(Duration::from_secs(30), || {
        (proxy.all_comparisons() >= 7.0).then_some(())
    })
    .unwrap_or_else(|| panic!("comparisons:\n{}", proxy.metrics_text()));
    assert_eq!(stored_outcomes(&proxy), 0, "nothing written yet");
    drop(client);
    proxy.signal(libc::SIGTERM);
    assert_eq!(proxy.wait_exit(Duration::from_secs(30)), Some(0));
    let opened = proxy
        .logs()
        .iter()
        .filter(|l| l.contains("incident opened"))
        .count();
    assert_eq!(opened, 2, "{}", proxy.logs().join("\n"));

    let store = Store::open(&url, StoreOptions::default())
        .await
        .expect("open");
    let mut incidents = store
        .list_incidents(&IncidentFilter::default())
        .await
        .unwrap();
    incidents.sort_by_key(|i| i.count);
    assert_eq!(incidents.len(), 2, "{incidents:#?}");
    let (body, title) = (&incidents[0], &incidents[1]);
    assert_eq!(
        (body.columns.as_slice(), body.count),
        (&["body".to_string()][..], 2)
    );
    assert_eq!(
        (title.columns.as_slice(), title.count),
        (&["title".to_string()][..], 3)
    );
    assert_eq!(
        title.fingerprint, body.fingerprint,
        "one statement, two bugs"
    );
    assert_eq!(title.kind, IncidentKind::Mismatch);
    assert_eq!(title.client_sql, READ);

    let detail = store.incident(&title.id).await.unwrap().expect("incident");
    let example = &detail.examples[0];
    assert_eq!(example.params, [Some("\\x00000007".to_string())]);
    assert_eq!(example.confirmed, Some(true));
    assert!(example.snapshot_xmin.is_some());
    assert!(example
        .settings
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("timezone")));
    let diff = example.diff.as_ref().expect("diff");
    let cell = &diff.changed[0].cells[0];
    assert_eq!(
        (cell.old.as_deref(), cell.new.as_deref()),
        (Some("Title 7"), Some("Wrong title"))
    );
    assert_eq!(diff.old_columns, ["id", "title", "body"]);

    let coverage = store
        .list_coverage(Some(&title.fingerprint), 10)
        .await
        .unwrap();
    assert_eq!(coverage.len(), 1);
    let c = &coverage[0];
    assert_eq!(
        (c.compared, c.matched, c.mismatched, c.errored),
        (7, 2, 5, 0)
    );
}
