//! Overload: the shadow sheds what it cannot keep up with, counts it, and
//! the client does not wait for it.

use crate::fixture;
use crate::harness::total_comparisons;
use crate::harness::{connect, wait_until, Pg, Proxy};
use crate::skipped;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_new_schema_with_one_worker_drops_samples_and_counts_them() {
    let pg = Pg::start();
    fixture::create(&pg);
    // Every new-schema read of this view takes ~50 ms.
    pg.sql(
        "CREATE VIEW entry_titles AS SELECT sys_id, value AS title FROM entry_fields WHERE name = 'title';
         CREATE VIEW v2.entry_titles AS SELECT f.sys_id, f.value AS title FROM v2.entry_fields f, pg_sleep(0.05)
          WHERE f.name = 'title';
         GRANT SELECT ON entry_titles, v2.entry_titles TO pgshadow;",
    );
    let sql = "SELECT sys_id, title FROM entry_titles WHERE sys_id = $1";
    let reads = 300;

    let timed = |port: u16| async move {
        let client = connect(port).await;
        let stmt = client.prepare(sql).await.unwrap();
        let started = Instant::now();
        for i in 0..reads {
            let id = fixture::sys_id(1, i % fixture::ENTRIES + 1);
            let row = client.query_one(&stmt, &[&id]).await.unwrap();
            assert_eq!(row.get::<_, i64>(0), id);
        }
        started.elapsed()
    };
    let off = Proxy::start(pg.port(), "");
    let without_shadow = timed(off.port).await;
    let on = Proxy::start(
        pg.port(),
        &fixture::shadow_config("max_in_flight = 1\nqueue_capacity = 2\nfirst_executions = 0"),
    );
    let with_shadow = timed(on.port).await;

    // The shadow can do ~20 comparisons a second; the client did 300 reads
    // in far less time than 300 comparisons would take, so most samples
    // were dropped at the full queue, and counted.
    let dropped = skipped(&on, "queue_full");
    assert!(dropped > 0.0, "{}", on.metrics_text());
    let settled = wait_until(Duration::from_secs(30), || {
        let text = on.metrics_text();
        // A batch that outlasts shadow.max_transaction_ms on a loaded
        // machine is given up and counted too.
        let shed = |reason: &str| {
            crate::harness::metric_value(
                &text,
                &format!("pgshadow_skipped_total{{reason=\"{reason}\"}}"),
            )
        };
        let done = total_comparisons(&text) + shed("queue_full") + shed("transaction_budget");
        (done >= reads as f64).then_some(done)
    });
    assert!(
        settled.is_some(),
        "every read is either compared or counted as dropped:\n{}",
        on.metrics_text()
    );
    // Latency is reported, not asserted (see scripts/bench.sh for the
    // measured comparison).
    eprintln!(
        "300 reads: {without_shadow:?} with the shadow off, {with_shadow:?} with one slow worker \
         ({dropped} samples dropped)"
    );
}
