//! Shadow results are bounded in bytes (issue 14, acceptance 5): a
//! 10,000-row × 20 kB result (200 MB a side) sampled 32 times keeps the
//! proxy within the shadow memory budget the README states:
//!
//! ```text
//! max_queue_bytes + max_batch × max_capture_bytes
//!   + max_in_flight × (max_batch_result_bytes + 3 × max_result_bytes + 2 × largest row)
//! ```
//!
//! Rows beyond a budget are compared by digest, so the big result still
//! matches.

use crate::fixture;
use crate::harness::{connect, wait_until, Pg, Proxy};
use crate::{comparisons, wait_for_comparisons};
use futures_util::{pin_mut, TryStreamExt};
use std::time::Duration;

/// 10,000 rows of 20,000 bytes each.
const BIG: &str = "SELECT g AS id, repeat(md5(g::text), 625) AS body \
                   FROM generate_series(1, 10000) g ORDER BY g";
const ROW_BYTES: u64 = 20_000;
const SAMPLES: usize = 32;

const MIB: u64 = 1024 * 1024;
const MAX_RESULT: u64 = 8 * MIB;
const MAX_BATCH_RESULT: u64 = 16 * MIB;
const MAX_QUEUE: u64 = MIB;
const MAX_CAPTURE: u64 = MIB;
const MAX_BATCH: u64 = 32;
const IN_FLIGHT: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_result_sampled_32_times_stays_within_the_shadow_memory_budget() {
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config(&format!(
            "max_result_bytes = {MAX_RESULT}\nmax_batch_result_bytes = {MAX_BATCH_RESULT}\n\
             max_queue_bytes = {MAX_QUEUE}\nmax_capture_bytes = {MAX_CAPTURE}\n\
             max_batch = {MAX_BATCH}\nmax_in_flight = {IN_FLIGHT}\n\
             max_transaction_ms = 20000\nstatement_timeout_ms = 20000\nbaseline_rate = 0.0"
        )),
    );
    let app = connect(proxy.port).await;
    // Warm up: the proxy's own footprint with a shadow connection open.
    app.query("SELECT 1 AS id", &[]).await.unwrap();
    wait_for_comparisons(&proxy, 1.0);
    let (before, _) = proxy.rss_kib();

    let big = app.prepare(BIG).await.unwrap();
    for _ in 0..SAMPLES {
        let rows = app
            .query_raw(&big, std::iter::empty::<i32>())
            .await
            .unwrap();
        pin_mut!(rows);
        let mut n = 0;
        while let Some(row) = rows.try_next().await.unwrap() {
            assert_eq!(row.get::<_, &str>(1).len() as u64, ROW_BYTES);
            n += 1;
        }
        assert_eq!(n, 10_000, "the application's answer");
    }
    let budget_skips = || proxy.metric("pgshadow_skipped_total{reason=\"transaction_budget\"}");
    wait_until(Duration::from_secs(120), || {
        (proxy.all_comparisons() + budget_skips() >= 1.0 + SAMPLES as f64).then_some(())
    })
    .unwrap_or_else(|| panic!("samples not done: {}", proxy.metrics_text()));
    let (_, peak) = proxy.rss_kib();
    let grew = peak.saturating_sub(before) * 1024;
    let largest_row = ROW_BYTES + 1024;
    let budget = MAX_QUEUE
        + MAX_BATCH * MAX_CAPTURE
        + IN_FLIGHT * (MAX_BATCH_RESULT + 3 * MAX_RESULT + 2 * largest_row);
    let report = format!(
        "RSS before {before} KiB, peak {peak} KiB: grew {} MiB; budget {} MiB\n{}",
        grew / MIB,
        budget / MIB,
        proxy.metrics_text()
    );
    eprintln!("{report}");
    let compared = comparisons(&proxy, "match") - 1.0;
    assert!(compared >= 1.0, "the big result is compared: {report}");
    assert_eq!(
        compared + budget_skips(),
        SAMPLES as f64,
        "every sample matched by digest or was cut by the time budget: {report}"
    );
    assert!(
        proxy.metric("pgshadow_result_bytes_exceeded_total{budget=\"side\"}")
            + proxy.metric("pgshadow_result_bytes_exceeded_total{budget=\"batch\"}")
            >= 1.0,
        "{report}"
    );
    assert!(grew <= budget, "{report}");
}
