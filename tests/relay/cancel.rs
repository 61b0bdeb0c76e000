//! Cancel requests reach the right backend; abandoned queries do not
//! linger.

use crate::harness::wire::Wire;
use crate::harness::{connect, psql, wait_until, Pg, Proxy, TRUST_USER};
use pgshadow::protocol::startup::{BackendKey, CancelRequest};
use std::time::{Duration, Instant};

/// Waits until `pg_stat_activity` shows `query_fragment` running (seen
/// from a direct superuser connection) and returns the backend pid.
fn wait_for_running(pg: &Pg, query_fragment: &str) -> i32 {
    let sql = format!(
        "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%{query_fragment}%' \
         AND pid <> pg_backend_pid()"
    );
    wait_until(Duration::from_secs(10), || {
        pg.sql(&sql).lines().next().and_then(|l| l.parse().ok())
    })
    .unwrap_or_else(|| panic!("{query_fragment} never showed up in pg_stat_activity"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_through_the_proxy_stops_the_query_within_two_seconds() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let client = connect(proxy.port).await;
    let token = client.cancel_token();
    let running = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
    let backend = tokio::task::block_in_place(|| wait_for_running(&pg, "pg_sleep(30)"));

    let sent = Instant::now();
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let err = running.await.unwrap().unwrap_err();
    let elapsed = sent.elapsed();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert!(elapsed < Duration::from_secs(2), "cancel took {elapsed:?}");
    let log = proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("cancel request forwarded")
    });
    assert!(log.contains(&format!("pid={backend}")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_with_a_wrong_secret_is_forwarded_and_cancels_nothing() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let client = connect(proxy.port).await;
    let running = tokio::spawn(async move {
        client
            .simple_query("SELECT pg_sleep(1.5), 'finished'")
            .await
    });
    let backend = tokio::task::block_in_place(|| wait_for_running(&pg, "pg_sleep(1.5)"));

    // Right pid with a wrong secret, and a pid nobody has: no local
    // session owns them, so they go to the upstream, which checks the
    // secret and does nothing.
    for key in [
        BackendKey {
            pid: backend,
            secret: bytes::Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]),
        },
        BackendKey {
            pid: 999_999,
            secret: bytes::Bytes::from_static(&[1, 2, 3, 4]),
        },
    ] {
        let mut w = Wire::connect(proxy.port);
        w.send(&CancelRequest::encode(&key));
        assert!(
            w.read_message().is_none(),
            "the proxy answers a cancel request by closing"
        );
    }
    let rows = running.await.unwrap().expect("the query was not cancelled");
    assert!(format!("{rows:?}").contains("finished"));
    let forwarded = proxy
        .logs()
        .iter()
        .filter(|l| l.contains("cancel request with a key no local session owns forwarded"))
        .count();
    assert_eq!(forwarded, 2);
    assert_eq!(
        proxy.metric("pgshadow_cancel_requests_total{result=\"forwarded_unknown_key\"}"),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_started_through_one_instance_is_cancelled_through_another() {
    let pg = Pg::start();
    let a = Proxy::start(pg.port(), "");
    let b = Proxy::start(pg.port(), "");
    let client = connect(a.port).await;
    let token = client.cancel_token();
    let running = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
    tokio::task::block_in_place(|| wait_for_running(&pg, "pg_sleep(30)"));

    // What a load balancer does: the cancel connection lands on B, which
    // has never seen this session.
    let sent = Instant::now();
    let to_b = tokio::net::TcpStream::connect(("127.0.0.1", b.port))
        .await
        .unwrap();
    token
        .cancel_query_raw(to_b, tokio_postgres::NoTls)
        .await
        .unwrap();
    let err = running.await.unwrap().unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    b.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("cancel request with a key no local session owns forwarded")
    });
}

#[test]
fn a_client_killed_mid_query_leaves_no_backend_behind() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let mut client = psql(&pg, proxy.port, TRUST_USER)
        .env("PGAPPNAME", "killed_client")
        .args(["-c", "SELECT pg_sleep(30)"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_running(&pg, "pg_sleep(30)");
    client.kill().unwrap();
    client.wait().unwrap();
    let killed = Instant::now();
    let gone = wait_until(Duration::from_secs(2), || {
        (pg.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'killed_client'")
            == "0")
            .then_some(())
    });
    assert!(
        gone.is_some(),
        "backend still present {:?} after the client was killed: {}",
        killed.elapsed(),
        pg.sql("SELECT pid, state, query FROM pg_stat_activity WHERE application_name = 'killed_client'")
    );
    proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("cancelled the query the client left running")
    });
}
