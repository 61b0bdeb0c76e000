//! SIGHUP re-reads the config file: sampling keys take effect at once,
//! keys fixed at startup are named and ignored, and a broken file changes
//! nothing.

use crate::fixture;
use crate::harness::{connect, field, Pg, Proxy};
use crate::{comparisons, reloads, skipped, wait_for_metric};
use std::path::Path;
use std::time::Duration;

const LOG_WAIT: Duration = Duration::from_secs(30);

/// A read the shadow can compare.
const READ: &str = "SELECT sys_id, entry_id FROM entries WHERE environment_id = $1 ORDER BY sys_id";
/// Another read, with another fingerprint.
const OTHER_READ: &str = "SELECT id, name FROM environments WHERE id <= $1 ORDER BY id";

/// Replaces the one occurrence of `from` in the config file with `to`.
fn rewrite(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read config");
    assert_eq!(
        text.matches(from).count(),
        1,
        "expected {from:?} once in the config:\n{text}"
    );
    std::fs::write(path, text.replacen(from, to, 1)).expect("write config");
}

async fn read(client: &tokio_postgres::Client, sql: &str) {
    let rows = client.query(sql, &[&2i32]).await.expect("read");
    assert!(!rows.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_new_sample_rate_takes_effect_and_a_broken_file_changes_nothing() {
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config("sample_rate = 0.0\nfirst_executions = 0"),
    );
    let client = connect(proxy.port).await;
    let path = proxy.config_path().to_path_buf();
    assert_eq!(reloads(&proxy, "ok"), 0.0);

    // Sample rate 0: the read is skipped as not sampled, never compared.
    read(&client, READ).await;
    wait_for_metric(&proxy, 1.0, |p| skipped(p, "not_sampled"), "not_sampled");
    assert_eq!(proxy.all_comparisons(), 0.0);

    // Rate 1.0, plus a key that needs a restart.
    rewrite(&path, "sample_rate = 0.0", "sample_rate = 1.0");
    rewrite(
        &path,
        "[admin]\naddress = \"127.0.0.1:0\"",
        "[admin]\naddress = \"127.0.0.1:1\"",
    );
    proxy.signal(libc::SIGHUP);
    let line = proxy.wait_for_log(LOG_WAIT, |l| l.contains("config reloaded"));
    assert!(line.contains("shadow.sample_rate 0 -> 1"), "{line}");
    let warning = proxy.wait_for_log(LOG_WAIT, |l| l.contains("restart to apply"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("admin.address changed; restart to apply"),
        "{warning}"
    );
    assert_eq!(reloads(&proxy, "ok"), 1.0);

    // Now the same read is compared; the admin server still answers on the
    // port it was started with (this scrape goes there).
    read(&client, READ).await;
    wait_for_metric(&proxy, 1.0, |p| comparisons(p, "match"), "matches");
    assert_eq!(proxy.all_comparisons(), 1.0);

    // An invalid value: refused, logged at error level naming the key.
    rewrite(&path, "sample_rate = 1.0", "sample_rate = 2.5");
    proxy.signal(libc::SIGHUP);
    wait_for_metric(&proxy, 1.0, |p| reloads(p, "error"), "reload errors");
    let error = proxy.wait_for_log(LOG_WAIT, |l| l.contains("config reload failed"));
    assert!(error.contains("ERROR"), "{error}");
    assert!(error.contains("shadow.sample_rate"), "{error}");
    assert!(error.contains("must be between 0 and 1"), "{error}");

    // Not TOML at all: refused as well.
    std::fs::write(&path, "[shadow\nsample_rate = 0.0\n").unwrap();
    proxy.signal(libc::SIGHUP);
    wait_for_metric(&proxy, 2.0, |p| reloads(p, "error"), "reload errors");
    assert_eq!(reloads(&proxy, "ok"), 1.0);
    let error = proxy.wait_for_log(LOG_WAIT, |l| {
        l.contains("config reload failed") && l.contains("TOML parse error")
    });
    assert!(error.contains("line 1"), "{error}");

    // The running sample rate is still 1.0: every read is still compared.
    let not_sampled = skipped(&proxy, "not_sampled");
    for expected in [2.0, 3.0] {
        read(&client, READ).await;
        wait_for_metric(&proxy, expected, |p| comparisons(p, "match"), "matches");
    }
    assert_eq!(skipped(&proxy, "not_sampled"), not_sampled);
    assert_eq!(proxy.all_comparisons(), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_and_a_muted_fingerprint_reload_without_a_restart() {
    let pg = Pg::start();
    fixture::create(&pg);
    let proxy = Proxy::start(
        pg.port(),
        &fixture::shadow_config("sample_rate = 1.0\nfirst_executions = 0"),
    );
    let client = connect(proxy.port).await;
    let path = proxy.config_path().to_path_buf();

    read(&client, READ).await;
    wait_for_metric(&proxy, 1.0, |p| comparisons(p, "match"), "matches");
    let matched = proxy.wait_for_log(LOG_WAIT, |l| l.contains("shadow match"));
    let fingerprint = field(&matched, "fingerprint")
        .expect("fingerprint in the match line")
        .to_string();

    // Kill switch: nothing is sampled, the reads still work.
    rewrite(&path, "\nenabled = true\n", "\nenabled = false\n");
    proxy.signal(libc::SIGHUP);
    let line = proxy.wait_for_log(LOG_WAIT, |l| {
        l.contains("config reloaded") && l.contains("shadow.enabled true -> false")
    });
    assert!(!line.contains("restart"), "{line}");
    read(&client, READ).await;
    read(&client, OTHER_READ).await;
    wait_for_metric(&proxy, 2.0, |p| skipped(p, "disabled"), "disabled skips");
    assert_eq!(proxy.all_comparisons(), 1.0);

    // Back on, with the first read's fingerprint muted in the file.
    rewrite(
        &path,
        "\nenabled = false\n",
        &format!("\nenabled = true\nmuted_fingerprints = [\"{fingerprint}\"]\n"),
    );
    proxy.signal(libc::SIGHUP);
    let line = proxy.wait_for_log(LOG_WAIT, |l| {
        l.contains("config reloaded") && l.contains("shadow.enabled false -> true")
    });
    assert!(
        line.contains("shadow.muted_fingerprints (+1 muted, -0 unmuted)"),
        "{line}"
    );
    read(&client, READ).await;
    wait_for_metric(&proxy, 1.0, |p| skipped(p, "muted"), "muted skips");
    read(&client, OTHER_READ).await;
    wait_for_metric(&proxy, 2.0, |p| comparisons(p, "match"), "matches");
    assert_eq!(proxy.all_comparisons(), 2.0);
    assert_eq!(reloads(&proxy, "ok"), 2.0);
    assert_eq!(reloads(&proxy, "error"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_started_with_the_shadow_off_says_switching_it_on_needs_a_restart() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "[shadow]\nenabled = false\n");
    let path = proxy.config_path().to_path_buf();
    rewrite(&path, "enabled = false", "enabled = true");
    proxy.signal(libc::SIGHUP);
    let warning = proxy.wait_for_log(LOG_WAIT, |l| l.contains("restart to apply"));
    assert!(
        warning.contains("shadow.enabled changed; restart to apply"),
        "{warning}"
    );
    assert!(warning.contains("started with the shadow off"), "{warning}");
    proxy.wait_for_log(LOG_WAIT, |l| l.contains("config reloaded"));
    // Still relaying, and nothing was compared.
    let client = connect(proxy.port).await;
    let rows = client.query("SELECT 1", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(proxy.all_comparisons(), 0.0);
}
