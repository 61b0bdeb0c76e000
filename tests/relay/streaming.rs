//! Large results stream through the proxy in bounded memory.

use crate::harness::{connect, Pg, Proxy};
use futures_util::TryStreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_result_streams_with_bounded_proxy_memory() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let client = connect(proxy.port).await;
    // Warm up: the first session allocates the proxy's steady-state memory.
    assert_eq!(
        client
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    let (rss_before, _) = proxy.rss_kib();

    // ~130 bytes per row, ~130 MB in all: far more than the budget.
    let rows = client
        .query_raw(
            "SELECT g, repeat('x', 100) || g AS payload FROM generate_series(1, 1000000) g",
            std::iter::empty::<i32>(),
        )
        .await
        .unwrap();
    futures_util::pin_mut!(rows);
    let mut count = 0u64;
    let mut bytes = 0u64;
    while let Some(row) = rows.try_next().await.unwrap() {
        count += 1;
        bytes += row.get::<_, &str>(1).len() as u64;
    }
    assert_eq!(count, 1_000_000);
    assert!(bytes > 100_000_000, "{bytes} payload bytes");

    let (_, peak) = proxy.rss_kib();
    let growth_mib = peak.saturating_sub(rss_before) as f64 / 1024.0;
    assert!(
        growth_mib < 50.0,
        "proxy RSS grew by {growth_mib:.1} MiB (peak {peak} KiB, before {rss_before} KiB)"
    );
}
