//! Reads over the extended protocol are captured with their parameters and
//! replayed byte for byte: binary parameters from tokio-postgres, text
//! parameters and server-prepared statements from psycopg 3, every
//! execution of a named statement, and an injected difference found
//! through the row a parameter selects.

use crate::fixture::{self, sys_id};
use crate::harness::{
    connect, field, python_with_psycopg, run_with_timeout, wait_until, Pg, Proxy, TRUST_USER,
};
use crate::{comparisons, wait_for_comparisons};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The psycopg client: 8 comparable executions, then a named cursor.
const PSYCOPG_READS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/psycopg_shadow_reads.py"
);
/// Comparable executions in that script.
const PSYCOPG_COMPARABLE: f64 = 8.0;

/// 2026-01-01 00:00 UTC plus `hours`: the fixture's `updated_at` values.
fn fixture_time(hours: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600 + hours * 3600)
}

/// One read of a window of entries: environment, first and last entry,
/// updated since this hour, this entry_id (or NULL), version unchanged;
/// and the rows it returns.
type Window = (i64, i64, i64, u64, Option<&'static str>, bool, usize);

/// Asserts that every comparison so far matched, and that there were `n`.
fn assert_all_matched(proxy: &Proxy, n: f64) {
    let text = proxy.metrics_text();
    assert_eq!(proxy.all_comparisons(), n, "{text}");
    assert_eq!(comparisons(proxy, "match"), n, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_parameters_of_every_kind_are_replayed_and_match() {
    let pg = Pg::start();
    fixture::create(&pg);
    // The application's dual write bumps one entry's version in both schemas.
    pg.sql(&format!("SELECT touch_entry({}, 'Touched')", sys_id(3, 5)));
    let proxy = Proxy::start(
        pg.port(),
        &fixture::logging_values(&fixture::shadow_config("")),
    );
    let client = connect(proxy.port).await;
    let window = client
        .prepare(
            "SELECT sys_id, updated_at, version FROM entries \
             WHERE sys_id BETWEEN $1 AND $2 AND updated_at >= $3 \
             AND ($4::text IS NULL OR entry_id::text = $4) AND (version = 1) = $5 \
             ORDER BY sys_id",
        )
        .await
        .expect("prepare");
    // tokio-postgres binds every parameter in binary: int8, int8,
    // timestamptz, text (or NULL), bool.
    let runs: [Window; 4] = [
        (1, 1, 200, 3, None, true, 140),
        (2, 1, 50, 0, Some("7"), true, 1),
        (2, 1, 50, 0, Some("7"), false, 0),
        (3, 1, 200, 0, None, false, 1),
    ];
    for (environment, first, last, hour, entry, unchanged, expected) in runs {
        let (from, to) = (sys_id(environment, first), sys_id(environment, last));
        let since = fixture_time(hour);
        let rows = client
            .query(&window, &[&from, &to, &since, &entry, &unchanged])
            .await
            .unwrap_or_else(|e| panic!("window {from}..{to}: {e}"));
        assert_eq!(
            rows.len(),
            expected,
            "window {from}..{to} {entry:?} {unchanged}"
        );
    }
    wait_for_comparisons(&proxy, runs.len() as f64);
    assert_all_matched(&proxy, runs.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_text_parameters_and_prepared_statements_are_compared_and_match() {
    let python = python_with_psycopg();
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(
        pg.port(),
        &fixture::logging_values(&fixture::shadow_config("")),
    );
    let (ok, out, err) = run_with_timeout(
        Command::new(python)
            .arg(PSYCOPG_READS)
            .arg(Pg::url(proxy.port, TRUST_USER, None))
            .env_remove("PYTHONOPTIMIZE")
            .env_remove("PGPASSWORD")
            .env_remove("PGOPTIONS")
            .env("PGCONNECT_TIMEOUT", "10"),
        Duration::from_secs(120),
    );
    assert!(ok, "--- stdout ---\n{out}\n--- stderr ---\n{err}");
    assert!(out.contains("prepared executions: 4"), "{out}");
    assert!(out.contains("psycopg shadow reads passed"), "{out}");
    wait_for_comparisons(&proxy, PSYCOPG_COMPARABLE);
    assert_all_matched(&proxy, PSYCOPG_COMPARABLE);
    // The named cursor's DECLARE and FETCHes are session state: skipped.
    assert!(
        crate::skipped(&proxy, "not_read") >= 2.0,
        "{}",
        proxy.metrics_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_execution_of_a_named_statement_is_compared() {
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config("first_executions = 0\nsample_rate = 1.0"),
    );
    let client = connect(proxy.port).await;
    client
        .query("SELECT count(*) FROM environments", &[])
        .await
        .expect("warm-up read");
    wait_for_comparisons(&proxy, 1.0);
    let before = proxy.all_comparisons();

    // Prepared once, executed 50 times: the only statement of this phase.
    let entry = client
        .prepare("SELECT sys_id, version, updated_at FROM entries WHERE sys_id = $1")
        .await
        .expect("prepare");
    for n in 1..=50 {
        let rows = client
            .query(&entry, &[&sys_id(2, n)])
            .await
            .unwrap_or_else(|e| panic!("entry {n}: {e}"));
        assert_eq!(rows.len(), 1);
    }
    wait_for_comparisons(&proxy, before + 50.0);
    assert_all_matched(&proxy, before + 50.0);

    // Per fingerprint, from the match log lines: 1 warm-up, 50 of these.
    let per_fingerprint = wait_until(Duration::from_secs(5), || {
        let mut counts = BTreeMap::<String, usize>::new();
        for line in proxy.logs().iter().filter(|l| l.contains("shadow match")) {
            let fingerprint = field(line, "fingerprint").unwrap_or_default();
            *counts.entry(fingerprint.to_string()).or_default() += 1;
        }
        let mut counts: Vec<usize> = counts.into_values().collect();
        counts.sort_unstable();
        (counts.iter().sum::<usize>() == 51).then_some(counts)
    });
    assert_eq!(
        per_fingerprint,
        Some(vec![1, 50]),
        "match lines per fingerprint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_difference_in_the_row_a_bound_parameter_selects_is_reported() {
    let pg = Pg::start();
    fixture::create(&pg);
    let broken = sys_id(3, 17);
    pg.sql(&format!(
        "UPDATE v2.entry_map SET version = 5 WHERE sys_id = {broken}"
    ));
    let proxy = Proxy::start(
        pg.port(),
        &fixture::logging_values(&fixture::shadow_config("")),
    );
    let client = connect(proxy.port).await;
    let entry = client
        .prepare("SELECT sys_id, version FROM entries WHERE sys_id = $1 AND updated_at >= $2")
        .await
        .expect("prepare");

    // The neighbour matches: only the parameter tells the two apart.
    let rows = client
        .query(&entry, &[&sys_id(3, 16), &fixture_time(0)])
        .await
        .expect("entry 16");
    assert_eq!(rows.len(), 1);
    wait_for_comparisons(&proxy, 1.0);
    assert_all_matched(&proxy, 1.0);

    let rows = client
        .query(&entry, &[&broken, &fixture_time(0)])
        .await
        .expect("entry 17");
    assert_eq!(
        rows.first().map(|r| r.get::<_, i32>(1)),
        Some(1),
        "the client sees the old schema"
    );
    wait_for_comparisons(&proxy, 2.0);
    assert_eq!(
        comparisons(&proxy, "mismatch"),
        1.0,
        "{}",
        proxy.metrics_text()
    );
    let line = proxy.wait_for_log(Duration::from_secs(5), |l| l.contains("shadow mismatch"));
    assert!(line.contains("diff=\"values\""), "{line}");
    assert!(line.contains("columns=version "), "{line}");
    assert!(
        line.contains(&format!(
            "summary=sys_id={broken}: version old=1 new=5 params="
        )),
        "{line}"
    );
    // The reproduction carries the parameters as bound (int8, binary).
    assert!(
        line.contains(&format!("params=$1='\\x{broken:016x}', $2=")),
        "{line}"
    );
    assert!(line.contains("confirmed=true"), "{line}");
}
