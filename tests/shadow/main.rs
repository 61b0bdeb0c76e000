//! The shadow comparison engine (issue "Shadow comparison engine"): reads
//! sampled through the proxy are re-run against the old and new schema in
//! one snapshot and compared. Every test runs a real PostgreSQL with the
//! migration from `fixture`, the real `pgshadow` binary, and real clients.

#[path = "../harness/mod.rs"]
mod harness;

mod batch;
mod catalog_keys;
mod composite_keys;
mod concurrency;
mod extended;
mod fixture;
mod inconsistencies;
mod latency;
mod leftovers;
mod locks;
mod memory;
mod never_writes;
mod noise;
mod overload;
mod privacy;
mod settings;
mod smoke;
mod ties;
mod trouble;

use harness::{wait_until, Proxy};
use std::time::Duration;

/// Comparisons with this result so far.
pub fn comparisons(proxy: &Proxy, result: &str) -> f64 {
    proxy.metric(&format!(
        "pgshadow_comparisons_total{{result=\"{result}\"}}"
    ))
}

/// Statements skipped for `reason` so far.
pub fn skipped(proxy: &Proxy, reason: &str) -> f64 {
    proxy.metric(&format!("pgshadow_skipped_total{{reason=\"{reason}\"}}"))
}

/// Waits until at least `n` comparisons have finished.
pub fn wait_for_comparisons(proxy: &Proxy, n: f64) {
    wait_until(Duration::from_secs(60), || {
        (proxy.all_comparisons() >= n).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "only {} comparisons after 60 s:\n{}",
            proxy.all_comparisons(),
            proxy.metrics_text()
        )
    });
}
