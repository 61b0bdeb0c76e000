//! Failure handling: an unreachable upstream, malformed clients.

use crate::harness::wire::{fe, Wire};
use crate::harness::{connect, connect_as, psql, run, Pg, Proxy, DB, TRUST_USER};
use pgshadow::protocol::startup::StartupMessage;
use std::io::Write;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_named_in_the_clients_error() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = Proxy::start(port, "");
    let err = connect_as(proxy.port, TRUST_USER, None).await.unwrap_err();
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {err}"));
    assert_eq!(db.code().code(), "08006");
    assert!(
        db.message().contains(&format!("127.0.0.1:{port}")),
        "{}",
        db.message()
    );
    assert!(db.message().contains("upstream"), "{}", db.message());
    assert!(
        db.message().to_lowercase().contains("refused"),
        "{}",
        db.message()
    );
}

#[test]
fn psql_shows_the_unreachable_upstream() {
    let pg = Pg::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = Proxy::start(port, "");
    let (ok, _, err) = run(psql(&pg, proxy.port, TRUST_USER).args(["-c", "SELECT 1"]));
    assert!(!ok);
    assert!(
        err.contains(&format!("could not connect to upstream 127.0.0.1:{port}")),
        "{err}"
    );
}

/// Sends `bytes` (after an optional login) and expects an 08P01
/// ErrorResponse followed by the connection closing.
fn expect_protocol_violation(port: u16, login: bool, bytes: &[u8], what: &str) -> String {
    let mut w = Wire::connect(port);
    if login {
        let msgs = w.startup(&[("user", TRUST_USER), ("database", DB)]);
        assert_eq!(msgs.last().unwrap().tag, b'Z');
    }
    // The proxy may close before reading everything; that is fine.
    let _ = w.stream.write_all(bytes);
    w.read_refusal(what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_08p01_while_other_sessions_keep_working() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "[listen]\nmax_message_bytes = 65536\n");
    let bystander = connect(proxy.port).await;
    bystander
        .batch_execute("CREATE TABLE counter (n int); INSERT INTO counter VALUES (0)")
        .await
        .unwrap();
    let mut bump = 0;
    let mut bystander_still_works = || {
        bump += 1;
        let client = &bystander;
        async move {
            let row = client
                .query_one("UPDATE counter SET n = n + 1 RETURNING n", &[])
                .await
                .unwrap();
            assert_eq!(row.get::<_, i32>(0), bump);
        }
    };

    let big_len = |tag: u8, len: i32| {
        let mut m = vec![tag];
        m.extend_from_slice(&len.to_be_bytes());
        m
    };
    let cases: Vec<(bool, Vec<u8>, &str, &str)> = vec![
        (
            false,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "invalid length of startup packet",
            "HTTP request",
        ),
        (
            false,
            (-8i32).to_be_bytes().to_vec(),
            "invalid length of startup packet",
            "negative startup length",
        ),
        (
            false,
            [8i32.to_be_bytes(), 0x0002_0000i32.to_be_bytes()].concat(),
            "unsupported frontend protocol 2.0",
            "protocol 2",
        ),
        (
            false,
            [8i32.to_be_bytes(), 0x1234_5678i32.to_be_bytes()].concat(),
            "unsupported frontend protocol",
            "unknown code",
        ),
        (
            true,
            big_len(b'Q', -5),
            "invalid message length",
            "negative message length",
        ),
        (
            true,
            big_len(b'Q', 2),
            "invalid message length",
            "length below 4",
        ),
        (
            true,
            big_len(b'Q', 1 << 30),
            "exceeds the limit of 65536 bytes",
            "oversize message",
        ),
        (
            true,
            [b"\x00\x00\x00\x00\x08".to_vec()].concat(),
            "invalid frontend message type 0x00",
            "garbage type byte",
        ),
        (
            true,
            fe::query("SELECT 1")
                .into_iter()
                .map(|b| b ^ 0x5a)
                .collect(),
            "invalid frontend message type",
            "scrambled bytes",
        ),
    ];
    for (login, bytes, expected, what) in cases {
        let message = expect_protocol_violation(proxy.port, login, &bytes, what);
        assert!(message.contains(expected), "{what}: {message}");
        bystander_still_works().await;
    }

    // A partial startup packet, then silence: the startup timeout applies.
    let quick = Proxy::start(pg.port(), "[listen]\nstartup_timeout_ms = 300\n");
    let mut w = Wire::connect(quick.port);
    w.send(&StartupMessage::encode(&[("user", TRUST_USER)])[..6]);
    let reply = w.read_message().expect("an error");
    assert_eq!(reply.sqlstate().as_deref(), Some("08P01"));
    assert!(reply
        .error_field(b'M')
        .unwrap()
        .contains("no startup packet received within 300 ms"));
    bystander_still_works().await;

    // The proxy is still alive and accepting new sessions.
    let late = connect(proxy.port).await;
    assert_eq!(
        late.query_one("SELECT 1", &[])
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
    assert_eq!(violations, 9);
}
