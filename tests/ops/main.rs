//! The operator's side of the proxy (issue "On-call surface"): SIGHUP
//! reloads of the config file, and the Prometheus alert rules and Grafana
//! dashboard under `docker/`, checked against what the proxy really emits.

#[path = "../harness/mod.rs"]
mod harness;

#[path = "../shadow/fixture.rs"]
#[allow(dead_code)]
mod fixture;

mod monitoring;
mod reload;

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

/// Config reloads with this result (`ok`, `error`) so far.
pub fn reloads(proxy: &Proxy, result: &str) -> f64 {
    proxy.metric(&format!(
        "pgshadow_config_reloads_total{{result=\"{result}\"}}"
    ))
}

/// Waits until `value` reaches at least `n`.
pub fn wait_for_metric(proxy: &Proxy, n: f64, value: impl Fn(&Proxy) -> f64, what: &str) {
    wait_until(Duration::from_secs(30), || {
        (value(proxy) >= n).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{what} did not reach {n} within 30 s:\n{}",
            proxy.metrics_text()
        )
    });
}
