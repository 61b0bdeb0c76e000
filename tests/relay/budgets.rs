//! Byte budgets on the primary path: what a client announces is never
//! what the proxy holds. Bodyless messages with a body and oversized
//! messages before authentication are refused on their header.

use crate::harness::wire::{fe, Wire};
use crate::harness::{connect, Pg, Proxy, DB, SCRAM_USER, TRUST_USER};
use pgshadow::protocol::startup::StartupMessage;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A header announcing a body of `len` bytes.
fn header(tag: u8, len: usize) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((len + 4) as i32).to_be_bytes());
    m
}

/// A connection that has sent its StartupMessage as a SCRAM user and
/// received the server's authentication request: not logged in.
fn unauthenticated(port: u16) -> Wire {
    let mut w = Wire::connect(port);
    w.send(&StartupMessage::encode(&[
        ("user", SCRAM_USER),
        ("database", DB),
    ]));
    let request = w.read_message().expect("an authentication request");
    assert_eq!(request.tag, b'R', "{request:?}");
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_sync_and_flush_with_a_body_get_08p01_and_close_before_and_after_login() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    for (tag, name) in [(b'X', "Terminate"), (b'S', "Sync"), (b'H', "Flush")] {
        for logged_in in [false, true] {
            let what = format!("{name} with a body, logged in: {logged_in}");
            let mut w = if logged_in {
                let mut w = Wire::connect(proxy.port);
                let msgs = w.startup(&[("user", TRUST_USER), ("database", DB)]);
                assert_eq!(msgs.last().unwrap().tag, b'Z', "{what}");
                w
            } else {
                unauthenticated(proxy.port)
            };
            let mut message = header(tag, 3);
            message.extend_from_slice(b"abc");
            w.send(&message);
            let text = w.read_refusal(&what);
            assert!(
                text.contains(&format!("invalid {name} message"))
                    && text.contains("body of 3 bytes"),
                "{what}: {text}"
            );
        }
    }
    // Before login, any message beyond Postgres's auth token limit.
    let mut w = unauthenticated(proxy.port);
    w.send(&header(b'p', 1 << 20));
    let text = w.read_refusal("a 1 MiB password message");
    assert!(
        text.contains("before authentication completed exceeds the limit of 65535 bytes"),
        "{text}"
    );
    // The same messages without a body are fine.
    let mut w = Wire::connect(proxy.port);
    w.startup(&[("user", TRUST_USER), ("database", DB)]);
    w.send(&[fe::flush(), fe::sync()].concat());
    assert_eq!(w.read_until_ready().last().unwrap().tag, b'Z');
    let client = connect(proxy.port).await;
    assert_eq!(
        client
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    let violations = proxy
        .logs()
        .iter()
        .filter(|l| l.contains("reason=\"client_protocol_violation\""))
        .count();
    assert_eq!(violations, 7);
}

/// Issue 14, acceptance 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_clients_announcing_1_gib_messages_do_not_grow_the_proxy() {
    const CONNECTIONS: usize = 8;
    const STREAMED: usize = 160 << 20;
    const CHUNK: usize = 256 << 10;
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let client = connect(proxy.port).await;
    client.batch_execute("SELECT 1").await.unwrap();
    let (rss_before, _) = proxy.rss_kib();

    // A normal client keeps querying while the attack runs.
    let attacking = Arc::new(AtomicBool::new(true));
    let served_during = Arc::new(AtomicU64::new(0));
    let bystander = {
        let (attacking, served) = (attacking.clone(), served_during.clone());
        tokio::spawn(async move {
            while attacking.load(Ordering::Relaxed) {
                let row = client.query_one("SELECT 41 + 1", &[]).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), 42);
                served.fetch_add(1, Ordering::Relaxed);
            }
            client
        })
    };
    let port = proxy.port;
    let attackers: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            std::thread::spawn(move || {
                let tag = if i % 2 == 0 { b'X' } else { b'S' };
                let mut w = unauthenticated(port);
                let mut sent = 0;
                let chunk = vec![0u8; CHUNK];
                if w.stream.write_all(&header(tag, (1 << 30) - 5)).is_ok() {
                    while sent < STREAMED && w.stream.write_all(&chunk).is_ok() {
                        sent += CHUNK;
                    }
                }
                sent
            })
        })
        .collect();
    let sent: Vec<usize> = attackers.into_iter().map(|t| t.join().unwrap()).collect();
    let (_, peak) = proxy.rss_kib();
    attacking.store(false, Ordering::Relaxed);
    let client = bystander.await.unwrap();

    let growth_mib = peak.saturating_sub(rss_before) as f64 / 1024.0;
    eprintln!("bytes each attacker got to send: {sent:?}; RSS growth {growth_mib:.1} MiB");
    assert!(
        growth_mib < 64.0,
        "proxy RSS grew by {growth_mib:.1} MiB (peak {peak} KiB, before {rss_before} KiB)"
    );
    assert!(
        sent.iter().all(|&s| s < STREAMED),
        "the proxy closed every attacking connection early: {sent:?}"
    );
    assert!(
        served_during.load(Ordering::Relaxed) > 0,
        "the normal client was served during the attack"
    );
    let row = client.query_one("SELECT 7", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 7, "and after it");
    // Each closed attacker is logged once; the lines may still be on
    // their way from the proxy's stderr when the last attacker is done.
    let violations = || {
        proxy
            .logs()
            .iter()
            .filter(|l| l.contains("reason=\"client_protocol_violation\""))
            .count()
    };
    crate::harness::wait_until(std::time::Duration::from_secs(30), || {
        (violations() >= CONNECTIONS).then_some(())
    });
    assert_eq!(violations(), CONNECTIONS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_in_clients_large_bind_and_copy_data_stream_through_unbuffered() {
    const BIG: usize = 100 << 20;
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let client = connect(proxy.port).await;
    client
        .batch_execute("CREATE TABLE blobs (body text)")
        .await
        .unwrap();
    let (rss_before, _) = proxy.rss_kib();

    // One Bind carrying a 100 MiB parameter.
    let parameter = "p".repeat(BIG);
    let row = client
        .query_one("SELECT length($1::text)", &[&parameter])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0) as usize, BIG);
    drop(parameter);

    // One CopyData message of 100 MiB.
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY blobs FROM STDIN")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    let mut line = vec![b'c'; BIG];
    line.push(b'\n');
    futures_util::SinkExt::send(&mut sink, bytes::Bytes::from(line))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 1);
    let row = client
        .query_one("SELECT length(body) FROM blobs", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0) as usize, BIG);

    let (_, peak) = proxy.rss_kib();
    let growth_mib = peak.saturating_sub(rss_before) as f64 / 1024.0;
    assert!(
        growth_mib < 32.0,
        "proxy RSS grew by {growth_mib:.1} MiB for two 100 MiB messages (peak {peak} KiB, \
         before {rss_before} KiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_client_connections_a_client_gets_53300_and_the_others_are_served() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "[listen]\nmax_client_connections = 2\n");
    let first = connect(proxy.port).await;
    let second = connect(proxy.port).await;

    let err = crate::harness::connect_as(proxy.port, TRUST_USER, None)
        .await
        .expect_err("a third client is refused");
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {err}"));
    assert_eq!(db.code().code(), "53300");
    assert_eq!(
        db.message(),
        "too many connections to pgshadow (listen.max_client_connections = 2)"
    );

    // A full proxy still routes cancel requests.
    let cancel = first.cancel_token();
    let sleeping = tokio::spawn(async move {
        let r = first.simple_query("SELECT pg_sleep(30)").await;
        (first, r)
    });
    let busy = "SELECT count(*) FROM pg_stat_activity \
                WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'";
    poll(|| async { (pg.sql(busy) == "1").then_some(()) })
        .await
        .expect("the sleep started");
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (first, result) = sleeping.await.unwrap();
    let err = result.expect_err("cancelled");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");

    // The two served clients work; once one leaves, a new one gets in.
    for client in [&first, &second] {
        let row = client.query_one("SELECT 1", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
    }
    drop(second);
    let third = poll(|| async {
        crate::harness::connect_as(proxy.port, TRUST_USER, None)
            .await
            .ok()
    })
    .await
    .expect("a slot came free");
    let row = third.query_one("SELECT 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    let refused = proxy.metric("pgshadow_sessions_ended_total{reason=\"too_many_connections\"}");
    assert!(refused >= 1.0, "{}", proxy.metrics_text());
}

/// Polls `f` every 20 ms until it returns `Some`, for at most ten seconds.
async fn poll<T, F: std::future::Future<Output = Option<T>>>(
    mut f: impl FnMut() -> F,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_preparing_beyond_its_statement_budget_is_served_and_the_skips_counted() {
    const STATEMENTS: usize = 40;
    let pg = Pg::start();
    let setup = connect(pg.port()).await;
    setup
        .batch_execute(crate::harness::items::SCHEMA)
        .await
        .unwrap();
    let proxy = Proxy::start(
        pg.port(),
        "[shadow]\nenabled = true\nsample_rate = 1.0\nuser = \"pgshadow\"\n\
         old_search_path = \"public\"\nnew_search_path = \"v2\"\n\
         max_session_statement_bytes = 4096\n",
    );
    let client = connect(proxy.port).await;
    // Forty named statements of ~330 bytes each: about ten fit in 4 KiB.
    let mut statements = Vec::new();
    for i in 0..STATEMENTS {
        let sql = format!(
            "SELECT id, title FROM items WHERE id = $1 AND '{}{i}' <> ''",
            "pad".repeat(90)
        );
        statements.push(client.prepare(&sql).await.unwrap());
    }
    for (i, statement) in statements.iter().enumerate() {
        let id = 1 + (i % 5) as i32; // ids 1..5 match in both schemas
        let row = client.query_one(statement, &[&id]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), id);
        assert_eq!(row.get::<_, String>(1), format!("Title {id}"));
    }
    let too_large = "pgshadow_skipped_total{reason=\"too_large\"}";
    let compared = |p: &Proxy| p.all_comparisons();
    crate::harness::wait_until(std::time::Duration::from_secs(30), || {
        let total = proxy.metric(too_large) + compared(&proxy);
        (total >= STATEMENTS as f64).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "not every execution accounted for:\n{}",
            proxy.metrics_text()
        )
    });
    let (skipped, compared) = (proxy.metric(too_large), compared(&proxy));
    assert_eq!(skipped + compared, STATEMENTS as f64);
    assert!(
        (25.0..=35.0).contains(&skipped),
        "{skipped} executions skipped as too_large, {compared} compared"
    );
    let matched = proxy.metric("pgshadow_comparisons_total{result=\"match\"}");
    assert_eq!(matched, compared, "the remembered statements were compared");
}
