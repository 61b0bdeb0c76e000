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
use std::path::PathBuf;
use std::time::Duration;

/// The config file a running proxy was started with, from its command
/// line (`run --config FILE`), so a test can rewrite it before a SIGHUP.
pub fn config_path(proxy: &Proxy) -> PathBuf {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", proxy.pid())).expect("cmdline");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let at = args
        .iter()
        .position(|a| a == "--config")
        .expect("--config on the command line");
    PathBuf::from(&args[at + 1])
}

/// Comparisons with this result so far.
pub fn comparisons(proxy: &Proxy, result: &str) -> f64 {
    proxy.metric(&format!(
        "pgshadow_comparisons_total{{result=\"{result}\"}}"
    ))
}

/// All comparisons so far, whatever their result.
pub fn all_comparisons(proxy: &Proxy) -> f64 {
    proxy
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with("pgshadow_comparisons_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
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
