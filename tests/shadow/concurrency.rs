//! The snapshot is what keeps concurrent writes from raising false alarms.
//!
//! A writer updates both schemas in one transaction in a tight loop (the
//! application's dual write) while readers query the rows it touches
//! through the proxy, every read sampled. With old and new run in one
//! REPEATABLE READ snapshot, no comparison may differ. Run in two separate
//! transactions, the same workload does differ: proof that the zero comes
//! from the snapshot, not from luck.

use crate::fixture::{self, sys_id};
use crate::harness::total_comparisons;
use crate::harness::{connect, metric_value, Pg, Proxy};
use crate::wait_for_comparisons;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Runs the workload until `target` comparisons have finished; returns
/// (comparisons, mismatches).
async fn dual_write_workload(snapshot: &str, target: f64) -> (f64, f64) {
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config(&format!("snapshot = \"{snapshot}\"\nqueue_capacity = 64")),
    );
    let stop = Arc::new(AtomicBool::new(false));

    let writer =
        fixture::dual_writer(pg.port(), stop.clone(), |n| sys_id(1, (n % 20 + 1) as i64)).await;
    let mut readers = Vec::new();
    for r in 0..3 {
        let stop = stop.clone();
        let client = connect(proxy.port).await;
        readers.push(tokio::spawn(async move {
            let page = client
                .prepare(
                    "SELECT e.sys_id, e.version, e.updated_at, f.value AS title FROM entries e \
                     JOIN entry_fields f ON f.sys_id = e.sys_id AND f.name = 'title' \
                     WHERE e.environment_id = 1 AND e.entry_id <= $1 ORDER BY e.updated_at DESC",
                )
                .await
                .unwrap();
            let totals = client
                .prepare("SELECT count(*), sum(version) FROM entries WHERE environment_id = $1")
                .await
                .unwrap();
            let mut i = 0i32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                if (i + r) % 2 == 0 {
                    client.query(&page, &[&20i32]).await.unwrap();
                } else {
                    client.query(&totals, &[&1i32]).await.unwrap();
                }
            }
        }));
    }
    tokio::task::block_in_place(|| wait_for_comparisons(&proxy, target));
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let writes = writer.await.unwrap();
    assert!(
        writes > 100,
        "the writer must really run concurrently ({writes} writes)"
    );
    // One scrape, so the numbers agree with each other.
    let text = proxy.metrics_text();
    let total = total_comparisons(&text);
    let bad = metric_value(&text, "pgshadow_comparisons_total{result=\"mismatch\"}");
    let matched = metric_value(&text, "pgshadow_comparisons_total{result=\"match\"}");
    assert_eq!(total, bad + matched, "no shadow errors expected:\n{text}");
    (total, bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_snapshot_keeps_concurrent_dual_writes_from_raising_mismatches() {
    let (total, mismatches) = dual_write_workload("shared", 2000.0).await;
    assert!(total >= 2000.0);
    assert_eq!(mismatches, 0.0, "{total} comparisons");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_transactions_make_the_same_workload_mismatch() {
    let (total, mismatches) = dual_write_workload("separate", 500.0).await;
    assert!(mismatches >= 1.0, "{total} comparisons, none differed");
}
