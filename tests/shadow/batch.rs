//! Batches: the samples a worker takes together run on one shadow
//! connection, in one transaction and one write when their settings are
//! the same; a sample that fails does not fail the others, a stale cached
//! plan is run again, and samples with different settings each run under
//! their own.

use crate::fixture::{self, sys_id, SHADOW_ROLE};
use crate::harness::{connect, Pg, Proxy, DB};
use crate::{comparisons, wait_for_comparisons};
use bytes::Bytes;
use pgshadow::capture::fingerprint::Fingerprint;
use pgshadow::capture::tracker::{Sample, SessionSettings};
use pgshadow::diff::CompareOptions;
use pgshadow::shadow::answers::{SampleResult, SideResult};
use pgshadow::shadow::conn::{ConnParams, ShadowConn};
use pgshadow::shadow::execute::execute_batch;
use pgshadow::shadow::limits::Limits;
use pgshadow::shadow::transaction::{SampleSpec, Snapshot};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FIRST_ENTRIES: &str =
    "SELECT sys_id FROM entries WHERE environment_id = $1 ORDER BY sys_id LIMIT 3";
const DIVIDE: &str = "SELECT 100 / $1::int AS quotient";
const STALE: &str = "SELECT id, label FROM labels ORDER BY id";

/// A sample of `sql` with text parameters.
fn sample(sql: &str, params: &[&str]) -> Sample {
    Sample {
        fingerprint: Fingerprint(1),
        sql: Arc::from(sql),
        param_types: Arc::from(vec![0u32; params.len()]),
        param_formats: vec![0; params.len()],
        params: params
            .iter()
            .map(|p| Some(Bytes::copy_from_slice(p.as_bytes())))
            .collect(),
        settings: Arc::new(SessionSettings::default()),
        database: Arc::from(DB),
        completed_at: Instant::now(),
    }
}

fn spec<'a>(sample: &'a Sample, compare: &'a CompareOptions) -> SampleSpec<'a> {
    SampleSpec {
        old_sql: &sample.sql,
        new_sql: &sample.sql,
        old_search_path: "public",
        new_search_path: "v2",
        statement_timeout: Duration::from_secs(5),
        lock_timeout: Duration::from_millis(100),
        max_rows: 100,
        max_bytes: usize::MAX,
        compare,
        snapshot: Snapshot::Shared,
        baseline: false,
        new_first: false,
    }
}

/// A shadow connection to `pg` as the shadow role.
async fn shadow_login(pg: &Pg) -> ShadowConn {
    ShadowConn::connect(&ConnParams {
        host: "127.0.0.1".into(),
        port: pg.port(),
        user: SHADOW_ROLE.into(),
        password: None,
        database: DB.into(),
        connect_timeout: Duration::from_secs(10),
        tls: pgshadow::tls::UpstreamTls::disabled("127.0.0.1"),
    })
    .await
    .expect("shadow login")
}

/// Runs `samples` as one batch; returns each run and the writes it took.
async fn run_all(
    conn: &mut ShadowConn,
    samples: &[Sample],
    compare: &CompareOptions,
) -> (Vec<SampleResult>, u64) {
    let items: Vec<(&Sample, SampleSpec<'_>)> =
        samples.iter().map(|s| (s, spec(s, compare))).collect();
    let before = conn.writes();
    let results = execute_batch(conn, &items, &Limits::budget(Duration::from_secs(10))).await;
    assert_eq!(
        results.len(),
        samples.len(),
        "every sample ran on one connection"
    );
    let runs = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("shadow connection failed: {e}")))
        .collect();
    (runs, conn.writes() - before)
}

/// The first column of every row of a side, as text.
fn first_column(side: &SideResult) -> Vec<String> {
    match side {
        SideResult::Rows(rows) => rows
            .rows
            .iter()
            .map(|row| {
                let value = row.first().cloned().flatten().unwrap_or_default();
                String::from_utf8_lossy(&value).into_owned()
            })
            .collect(),
        SideResult::Error(e) => panic!("expected rows, got {} {}", e.code, e.message),
    }
}

fn error_code(side: &SideResult) -> &str {
    match side {
        SideResult::Error(e) => &e.code,
        SideResult::Rows(_) => panic!("expected an error, got rows"),
    }
}

/// Both sides returned the first entries of `environment`.
fn assert_first_entries(run: &SampleResult, environment: i64) {
    let expected: Vec<String> = (1..=3)
        .map(|n| sys_id(environment, n).to_string())
        .collect();
    assert_eq!(first_column(&run.old), expected, "old side");
    assert_eq!(first_column(&run.new), expected, "new side");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_prepared_samples_is_one_write_and_a_failing_sample_fails_alone() {
    let pg = Pg::start();
    fixture::create(&pg);
    pg.sql(&format!(
        "CREATE TABLE labels (id int PRIMARY KEY, label text);
         INSERT INTO labels VALUES (1, 'one'), (2, 'two');
         CREATE TABLE v2.labels (id int PRIMARY KEY, label text);
         INSERT INTO v2.labels VALUES (1, 'one'), (2, 'two');
         GRANT SELECT ON labels, v2.labels TO {SHADOW_ROLE};"
    ));
    let mut conn = shadow_login(&pg).await;
    let compare = CompareOptions::default();

    // First use: every statement is parsed and bound in the same write.
    let warm_up = [
        sample(FIRST_ENTRIES, &["1"]),
        sample(DIVIDE, &["4"]),
        sample(STALE, &[]),
    ];
    let (runs, writes) = run_all(&mut conn, &warm_up, &compare).await;
    assert_first_entries(&runs[0], 1);
    assert_eq!(first_column(&runs[1].old), ["25"]);
    assert_eq!(first_column(&runs[2].new), ["1", "2"]);
    assert_eq!(writes, 1, "a batch is one write, statements parsed or not");

    // Steady state: everything prepared, the whole batch is one write.
    let steady: Vec<Sample> = (1..=3)
        .map(|env| sample(FIRST_ENTRIES, &[&env.to_string()]))
        .chain([sample(DIVIDE, &["5"])])
        .collect();
    let (runs, writes) = run_all(&mut conn, &steady, &compare).await;
    for (env, run) in (1..=3).zip(&runs) {
        assert_first_entries(run, env);
    }
    assert_eq!(first_column(&runs[3].new), ["20"]);
    assert_eq!(writes, 1, "a batch of prepared samples is one write");
    assert!(runs[0].snapshot_xmin.is_some());
    assert!(
        runs.iter()
            .all(|r| r.snapshot_xmin == runs[0].snapshot_xmin),
        "one transaction, one snapshot"
    );

    // A division by zero in the middle: that sample fails on its own, the
    // ones after it (skipped by the server in the failed transaction) are
    // run again in a new one, and they return their own rows.
    let failing = [
        sample(FIRST_ENTRIES, &["1"]),
        sample(DIVIDE, &["0"]),
        sample(FIRST_ENTRIES, &["2"]),
        sample(DIVIDE, &["10"]),
    ];
    let (runs, writes) = run_all(&mut conn, &failing, &compare).await;
    assert_first_entries(&runs[0], 1);
    assert_eq!(error_code(&runs[1].old), "22012", "division_by_zero");
    assert_first_entries(&runs[2], 2);
    assert_eq!(first_column(&runs[3].old), ["10"]);
    assert_eq!(first_column(&runs[3].new), ["10"]);
    assert!(
        writes <= 3,
        "batch, rollback, the rest again: {writes} writes"
    );
    assert!(!conn.is_poisoned());

    // The new schema's relation changes its columns under a prepared
    // statement: that sample's first attempt fails with "cached plan must
    // not change result type" and is run again; its neighbours are not
    // disturbed.
    pg.sql("ALTER TABLE v2.labels ALTER COLUMN label TYPE varchar(20)");
    let stale = [
        sample(FIRST_ENTRIES, &["3"]),
        sample(STALE, &[]),
        sample(DIVIDE, &["50"]),
    ];
    let (runs, _) = run_all(&mut conn, &stale, &compare).await;
    assert_first_entries(&runs[0], 3);
    assert_eq!(first_column(&runs[1].old), ["1", "2"]);
    assert_eq!(first_column(&runs[1].new), ["1", "2"]);
    assert_eq!(first_column(&runs[2].new), ["2"]);

    // Afterwards the statement cache and the server agree again: one write.
    let (runs, writes) = run_all(&mut conn, &steady, &compare).await;
    assert_first_entries(&runs[0], 1);
    assert_eq!(writes, 1, "prepared statements intact after the failures");
    assert!(!conn.is_poisoned());
}

/// A sample of `SELECT current_setting('TimeZone')` from a client in
/// `timezone` (`None`: the connection's own).
fn time_zone_sample(timezone: Option<&str>) -> Sample {
    let mut s = sample("SELECT current_setting('TimeZone')", &[]);
    s.settings = Arc::new(SessionSettings {
        timezone: timezone.map(str::to_string),
        ..Default::default()
    });
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_with_different_settings_in_one_batch_each_run_under_their_own() {
    let pg = Pg::start();
    fixture::create(&pg);
    let mut conn = shadow_login(&pg).await;
    let compare = CompareOptions::default();
    let batch = [
        time_zone_sample(Some("Asia/Tokyo")),
        time_zone_sample(Some("Asia/Tokyo")),
        time_zone_sample(None),
        time_zone_sample(Some("America/Lima")),
        time_zone_sample(Some("America/Lima")),
    ];
    let (runs, writes) = run_all(&mut conn, &batch, &compare).await;
    let zones: Vec<Vec<String>> = runs.iter().map(|r| first_column(&r.new)).collect();
    let own = first_column(&runs[2].old);
    assert_ne!(own, ["Asia/Tokyo"], "the connection's own time zone");
    assert_eq!(
        zones,
        [
            vec!["Asia/Tokyo".to_string()],
            vec!["Asia/Tokyo".to_string()],
            own,
            vec!["America/Lima".to_string()],
            vec!["America/Lima".to_string()],
        ],
        "every sample sees its client's setting, none a neighbour's"
    );
    assert_eq!(writes, 3, "one transaction per run of equal settings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_arriving_within_the_window_go_to_workers_in_batches_of_at_most_max_batch() {
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config("max_batch = 4\nbatch_window_ms = 3000"),
    );
    let client = connect(proxy.port).await;
    for environment in 1..=10i32 {
        let rows = client
            .query(FIRST_ENTRIES, &[&(environment % 3 + 1)])
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
    }
    wait_for_comparisons(&proxy, 10.0);
    assert_eq!(
        comparisons(&proxy, "match"),
        10.0,
        "{}",
        proxy.metrics_text()
    );
    let batches = proxy.metric("pgshadow_shadow_batch_samples_count");
    let samples = proxy.metric("pgshadow_shadow_batch_samples_sum");
    let at_most_four = proxy.metric("pgshadow_shadow_batch_samples_bucket{le=\"4\"}");
    let text = proxy.metrics_text();
    assert_eq!(samples, 10.0, "{text}");
    assert_eq!(at_most_four, batches, "no batch exceeds max_batch: {text}");
    assert!(
        (3.0..=4.0).contains(&batches),
        "ten samples within one window make three batches of at most four, not one each: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_goes_to_a_worker_without_waiting_for_the_window() {
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config("max_batch = 4\nbatch_window_ms = 10000"),
    );
    let client = connect(proxy.port).await;
    let started = Instant::now();
    for environment in 1..=8i32 {
        let rows = client
            .query(FIRST_ENTRIES, &[&(environment % 3 + 1)])
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
    }
    wait_for_comparisons(&proxy, 8.0);
    let text = proxy.metrics_text();
    assert_eq!(comparisons(&proxy, "match"), 8.0, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "eight samples fill two batches of four, which go at once instead of after the 10 s window: {:?}\n{text}",
        started.elapsed()
    );
    assert_eq!(
        proxy.metric("pgshadow_shadow_batch_samples_count"),
        2.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_new_side_first_each_result_still_belongs_to_its_side() {
    let pg = Pg::start();
    fixture::create(&pg);
    pg.sql(&format!(
        "CREATE TABLE side (name text);
         INSERT INTO side VALUES ('old');
         CREATE TABLE v2.side (name text);
         INSERT INTO v2.side VALUES ('new');
         CREATE TABLE only_old (id int);
         GRANT SELECT ON side, v2.side, only_old TO {SHADOW_ROLE};"
    ));
    let mut conn = shadow_login(&pg).await;
    let compare = CompareOptions::default();
    let which = sample("SELECT name FROM side", &[]);
    let missing = sample("SELECT id FROM only_old", &[]);
    let items: Vec<(&Sample, SampleSpec<'_>)> = [(&which, false), (&which, true), (&missing, true)]
        .into_iter()
        .map(|(s, baseline)| {
            let spec = SampleSpec {
                new_first: true,
                baseline,
                ..spec(s, &compare)
            };
            (s, spec)
        })
        .collect();
    let results: Vec<SampleResult> =
        execute_batch(&mut conn, &items, &Limits::budget(Duration::from_secs(10)))
            .await
            .into_iter()
            .map(|r| r.expect("runs"))
            .collect();
    for run in &results[..2] {
        assert!(run.new_first);
        assert_eq!(first_column(&run.old), ["old"]);
        assert_eq!(first_column(&run.new), ["new"]);
    }
    let baseline = results[1].baseline.as_ref().expect("A/A run");
    assert_eq!(
        first_column(baseline),
        ["old"],
        "the baseline is the old query again"
    );
    // The new side ran first and failed: the old one never ran.
    assert_eq!(error_code(&results[2].new), "42P01");
    assert_eq!(error_code(&results[2].old), "25P02");
}
