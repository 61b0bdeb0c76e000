//! `/readyz` and the API of a proxy whose shadow is off.

use crate::harness::{Pg, Proxy, TRUST_USER};
use crate::http::{get, get_json, request, send};

#[test]
fn without_a_shadow_the_incident_api_answers_503_and_readiness_follows_the_upstream() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let port = proxy.admin_port;
    let ready = get_json(port, "/readyz");
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["upstream"], "ok");
    assert_eq!(ready["store"], "disabled");

    for path in [
        "/api/incidents",
        "/api/incidents/0123456789ab",
        "/api/coverage",
        "/",
    ] {
        let r = get(port, path);
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert!(r.body.contains("shadow.enabled"), "{path}: {}", r.body);
    }
    let sampling = get_json(port, "/api/sampling");
    assert_eq!(sampling["shadow_running"], false, "{sampling}");
    let r = send(port, "PUT", "/api/sampling", r#"{"sample_rate": 1}"#, None);
    assert_eq!(r.status, 503, "{}", r.body);
    // Without a token, a browser cannot be made to change things from
    // another site.
    let r = request(
        port,
        "POST",
        "/api/incidents/0123456789ab/ack",
        &[("Origin", "https://evil.example")],
        Some("{}"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.error().contains("another origin"), "{}", r.body);
    let r = get(port, "/api/nothing-here");
    assert_eq!(r.status, 404);
    assert!(r.error().contains("no such endpoint"), "{}", r.body);

    // An upstream nobody listens on: not ready, and the reason says why.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let proxy = Proxy::start(closed_port, "");
    let r = get(proxy.admin_port, "/readyz");
    assert_eq!(r.status, 503, "{}", r.body);
    let body = r.json();
    assert_eq!(body["ready"], false);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains(&format!("upstream 127.0.0.1:{closed_port} unreachable")),
        "{body}"
    );
    assert_eq!(
        get(proxy.admin_port, "/healthz").status,
        200,
        "alive all the same"
    );
}

/// The shadow on, every read compared, the store at `store_url` holding at
/// most three outcomes while it cannot be written (unless `extra_store`
/// says otherwise).
fn store_config(store_url: &str, extra_store: &str) -> String {
    let pending = if extra_store.contains("max_pending_outcomes") {
        ""
    } else {
        "max_pending_outcomes = 3\n"
    };
    format!(
        "[shadow]\nenabled = true\nsample_rate = 1.0\nuser = \"pgshadow\"\n\
         old_search_path = \"public\"\nnew_search_path = \"v2\"\n\
         [store]\nurl = \"{store_url}\"\nflush_interval_ms = 50\n{pending}{extra_store}\n"
    )
}

/// Ten reads through the proxy, each answered correctly.
async fn ten_reads(proxy: &Proxy) {
    let client = crate::harness::connect(proxy.port).await;
    for id in 1..=10 {
        let title = crate::harness::items::read(&client, id).await;
        assert_eq!(title, format!("Title {id}"));
    }
}

/// Waits until the proxy counts `n` outcomes dropped for the store.
fn wait_dropped(proxy: &Proxy, n: f64) {
    crate::harness::wait_until(std::time::Duration::from_secs(30), || {
        (proxy.metric("pgshadow_store_dropped_total") >= n).then_some(())
    })
    .unwrap_or_else(|| panic!("fewer than {n} outcomes dropped:\n{}", proxy.metrics_text()));
}

/// The relay is ready and the store reported down, on every count.
fn ready_with_the_store_down(proxy: &Proxy) {
    let r = get(proxy.admin_port, "/readyz");
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["upstream"], "ok", "{body}");
    assert!(
        body["store"].as_str().unwrap().starts_with("down: "),
        "{body}"
    );
    assert_eq!(proxy.metric("pgshadow_store_up"), 0.0);
    let r = get(proxy.admin_port, "/api/incidents");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.error().starts_with("mismatch store unavailable: "),
        "{}",
        r.body
    );
}

/// Issue 14, acceptance 6 (SQLite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_store_path_leaves_the_proxy_ready_and_serving_and_drops_outcomes() {
    let pg = Pg::start();
    crate::create_schema(&pg);
    // Nobody, not even root, can create a file under /proc.
    let proxy = Proxy::start(
        pg.port(),
        &store_config("sqlite:///proc/pgshadow-store/store.db", ""),
    );
    proxy.wait_for_log(std::time::Duration::from_secs(10), |l| {
        l.contains("mismatch store unreachable: serving without it")
    });
    ten_reads(&proxy).await;
    wait_dropped(&proxy, 7.0);
    ready_with_the_store_down(&proxy);
    assert!(proxy.metric("pgshadow_store_errors_total{op=\"open\"}") >= 1.0);
    wait_store_errors(&proxy, "write");
}

/// Waits until the proxy counts a failed store operation `op`.
fn wait_store_errors(proxy: &Proxy, op: &str) {
    let series = format!("pgshadow_store_errors_total{{op=\"{op}\"}}");
    crate::harness::wait_until(std::time::Duration::from_secs(30), || {
        (proxy.metric(&series) >= 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("no {series}:\n{}", proxy.metrics_text()));
}

/// Issue 14, acceptance 6 (PostgreSQL): the store stops while the proxy
/// runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_postgres_store_leaves_the_proxy_ready_and_serving_and_drops_outcomes() {
    let pg = Pg::start();
    crate::create_schema(&pg);
    let store_pg = Pg::start();
    store_pg
        .cluster
        .psql(
            "postgres",
            &format!("CREATE DATABASE store OWNER {TRUST_USER}"),
        )
        .unwrap();
    let store_port = store_pg.port();
    let url = format!("postgres://{TRUST_USER}@127.0.0.1:{store_port}/store");
    let mut proxy = Proxy::start(pg.port(), &store_config(&url, ""));
    ten_reads(&proxy).await;
    proxy.wait_for_log(std::time::Duration::from_secs(30), |l| {
        l.contains("store batch written")
    });
    assert_eq!(proxy.metric("pgshadow_store_up"), 1.0);
    assert_eq!(get_json(proxy.admin_port, "/readyz")["store"], "ok");

    let Pg { cluster } = store_pg;
    cluster.stop().unwrap();
    ten_reads(&proxy).await;
    wait_dropped(&proxy, 7.0);
    ready_with_the_store_down(&proxy);
    wait_store_errors(&proxy, "write");
    // Graceful shutdown does not hang on the store either.
    proxy.signal(libc::SIGTERM);
    assert_eq!(proxy.wait_exit(std::time::Duration::from_secs(30)), Some(0));
}

/// A store that accepts connections and never answers: every operation
/// ends at `store.op_timeout_ms`, the admin API says so with a 503, and
/// the relay never notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_times_out_without_blocking_readiness_or_clients() {
    let pg = Pg::start();
    crate::create_schema(&pg);
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    // Accepts, holds and never answers.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hung.incoming() {
            held.push(conn);
        }
    });
    let url = format!(
        "postgres://{TRUST_USER}@127.0.0.1:{hung_port}/store?connect_timeout=60&sslmode=disable"
    );
    let proxy = Proxy::start(pg.port(), &store_config(&url, "op_timeout_ms = 300"));
    proxy.wait_for_log(std::time::Duration::from_secs(10), |l| {
        l.contains("mismatch store unreachable") && l.contains("did not answer within 300 ms")
    });
    let started = std::time::Instant::now();
    ten_reads(&proxy).await;
    let r = get(proxy.admin_port, "/readyz");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(proxy.admin_port, "/api/coverage");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.error().contains("did not answer within 300 ms"),
        "{}",
        r.body
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    wait_dropped(&proxy, 7.0);
    assert_eq!(proxy.metric("pgshadow_store_up"), 0.0);
}

/// A store that could not be opened at startup is opened by the writer's
/// retry once it can be, and what waited in memory is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_unreachable_at_startup_is_opened_later_and_gets_what_waited() {
    let pg = Pg::start();
    crate::create_schema(&pg);
    let dir = tempfile::tempdir().unwrap();
    let later = dir.path().join("not-yet");
    let url = format!("sqlite://{}", later.join("store.db").display());
    let proxy = Proxy::start(pg.port(), &store_config(&url, "max_pending_outcomes = 100"));
    ten_reads(&proxy).await;
    wait_store_errors(&proxy, "write");
    assert_eq!(proxy.metric("pgshadow_store_up"), 0.0);

    std::fs::create_dir(&later).unwrap();
    proxy.wait_for_log(std::time::Duration::from_secs(60), |l| {
        l.contains("mismatch store writable again")
    });
    assert_eq!(proxy.metric("pgshadow_store_up"), 1.0);
    assert_eq!(get_json(proxy.admin_port, "/readyz")["store"], "ok");
    assert_eq!(crate::harness::items::stored_outcomes(&proxy), 10);
    assert_eq!(proxy.metric("pgshadow_store_dropped_total"), 0.0);
    let r = get(proxy.admin_port, "/api/incidents");
    assert_eq!(r.status, 200, "{}", r.body);
}
