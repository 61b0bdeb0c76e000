//! Graceful shutdown and per-connection logging.

use crate::harness::wire::{fe, Wire};
use crate::harness::{wait_until, Pg, Proxy, DB, TRUST_USER};
use std::time::{Duration, Instant};

fn login(port: u16) -> Wire {
    let mut w = Wire::connect(port);
    let msgs = w.startup(&[
        ("user", TRUST_USER),
        ("database", DB),
        ("application_name", "lifecycle"),
    ]);
    assert_eq!(msgs.last().unwrap().tag, b'Z');
    w
}

fn wait_for_running(pg: &Pg, fragment: &str) {
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%{fragment}%' AND pid <> pg_backend_pid()");
    wait_until(Duration::from_secs(10), || {
        (pg.sql(&sql) == "1").then_some(())
    })
    .unwrap_or_else(|| panic!("{fragment} is not running"));
}

#[test]
fn sigterm_closes_idle_sessions_lets_busy_ones_finish_and_exits_zero() {
    let pg = Pg::start();
    let mut proxy = Proxy::start(pg.port(), "[listen]\nshutdown_timeout_ms = 20000\n");
    let mut idle = login(proxy.port);
    let mut busy = login(proxy.port);
    busy.send(&fe::query("SELECT pg_sleep(1.5), 'finished'"));
    wait_for_running(&pg, "pg_sleep(1.5)");

    proxy.signal(libc::SIGTERM);
    // The idle session is closed at once, with the server-style error.
    let bye = idle.read_message().expect("an error before the close");
    assert_eq!(bye.sqlstate().as_deref(), Some("57P01"), "{bye:?}");
    assert!(idle.read_message().is_none());
    // No new connections once shutdown has started.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", proxy.port)).is_err(),
        "listener must be closed"
    );
    // The busy session gets its whole answer, then the same goodbye.
    let answer = busy.read_until_ready();
    assert!(
        answer
            .iter()
            .any(|m| m.tag == b'D' && m.body.windows(8).any(|w| w == b"finished")),
        "{answer:?}"
    );
    let bye = busy.read_message().expect("an error before the close");
    assert_eq!(bye.sqlstate().as_deref(), Some("57P01"));
    assert!(busy.read_message().is_none());
    assert_eq!(proxy.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lifecycle'"),
        "0"
    );
}

#[test]
fn after_the_shutdown_timeout_long_queries_are_cancelled_and_the_proxy_exits_zero() {
    let pg = Pg::start();
    let mut proxy = Proxy::start(pg.port(), "[listen]\nshutdown_timeout_ms = 500\n");
    let mut busy = login(proxy.port);
    busy.send(&fe::query("SELECT pg_sleep(30)"));
    wait_for_running(&pg, "pg_sleep(30)");
    let started = Instant::now();
    proxy.signal(libc::SIGTERM);
    assert_eq!(proxy.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        started.elapsed()
    );
    let gone = wait_until(Duration::from_secs(2), || {
        (pg.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lifecycle'")
            == "0")
            .then_some(())
    });
    assert!(gone.is_some(), "the abandoned query is still running");
    assert!(proxy
        .logs()
        .iter()
        .any(|l| l.contains("shutdown timeout reached")));
}

#[test]
fn a_second_signal_cuts_the_grace_period_short() {
    let pg = Pg::start();
    let mut proxy = Proxy::start(pg.port(), "[listen]\nshutdown_timeout_ms = 60000\n");
    let mut busy = login(proxy.port);
    busy.send(&fe::query("SELECT pg_sleep(30)"));
    wait_for_running(&pg, "pg_sleep(30)");
    proxy.signal(libc::SIGINT);
    proxy.wait_for_log(Duration::from_secs(5), |l| l.contains("shutting down"));
    proxy.signal(libc::SIGINT);
    assert_eq!(proxy.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(proxy
        .logs()
        .iter()
        .any(|l| l.contains("second shutdown request")));
}

#[test]
fn every_session_log_line_carries_its_connection_id() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    for _ in 0..2 {
        let mut w = login(proxy.port);
        w.send(&fe::query("SELECT 1"));
        w.read_until_ready();
        w.send(&fe::terminate());
        assert!(w.read_message().is_none());
    }
    for conn in [1, 2] {
        let ended = proxy.wait_for_log(Duration::from_secs(5), |l| {
            l.contains(&format!("session{{conn={conn} ")) && l.contains("session ended")
        });
        assert!(ended.contains("reason=\"client_terminated\""), "{ended}");
        assert!(ended.contains(&format!("user=\"{TRUST_USER}\"")), "{ended}");
    }
}

#[test]
fn json_logs_are_one_object_per_line_with_the_connection_id() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "[log]\nformat = \"json\"\n");
    let mut w = login(proxy.port);
    w.send(&fe::terminate());
    assert!(w.read_message().is_none());
    proxy.wait_for_log(Duration::from_secs(5), |l| l.contains("session ended"));
    let lines = proxy.logs();
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ended = parsed
        .iter()
        .find(|v| v["fields"]["message"] == "session ended")
        .expect("a session ended line");
    assert_eq!(ended["span"]["conn"], 1);
    assert_eq!(ended["fields"]["reason"], "client_terminated");
    assert_eq!(ended["level"], "INFO");
}
