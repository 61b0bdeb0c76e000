//! Authentication passes through the proxy untouched.

use crate::harness::wire::Wire;
use crate::harness::{
    connect_as, Pg, Proxy, DB, MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, TRUST_USER,
};
use pgshadow::protocol::framing::encode_message;
use pgshadow::protocol::startup::StartupMessage;
use std::io::{Read, Write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_md5_and_scram_users_log_in_through_the_proxy() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    for (user, password) in [
        (TRUST_USER, None),
        (MD5_USER, Some(MD5_PASSWORD)),
        (SCRAM_USER, Some(SCRAM_PASSWORD)),
    ] {
        let client = connect_as(proxy.port, user, password)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let row = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), user);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_gets_the_servers_own_error() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    for user in [MD5_USER, SCRAM_USER] {
        let direct = connect_as(pg.port(), user, Some("wrong"))
            .await
            .unwrap_err();
        let proxied = connect_as(proxy.port, user, Some("wrong"))
            .await
            .unwrap_err();
        let (direct, proxied) = (
            direct.as_db_error().unwrap(),
            proxied.as_db_error().unwrap(),
        );
        assert_eq!(proxied.code().code(), "28P01");
        assert_eq!(proxied.message(), direct.message());
        assert_eq!(proxied.severity(), "FATAL");
    }
    proxy.wait_for_log(std::time::Duration::from_secs(5), |l| {
        l.contains("upstream refused the session") && l.contains("28P01")
    });
}

/// A minimal upstream that offers SCRAM-SHA-256-PLUS on a plain connection
/// (PostgreSQL offers it only over TLS: tests/tls logs in through that):
/// the client must never see the PLUS mechanism.
#[test]
fn channel_binding_is_removed_from_the_offered_sasl_mechanisms() {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = upstream.accept().unwrap();
        let mut len = [0u8; 4];
        conn.read_exact(&mut len).unwrap();
        let mut startup = vec![0u8; i32::from_be_bytes(len) as usize - 4];
        conn.read_exact(&mut startup).unwrap();
        let mut body = 10i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        conn.write_all(&encode_message(b'R', &body)).unwrap();
        // Wait for the client to go away.
        let _ = conn.read(&mut [0u8; 1]);
    });
    let proxy = Proxy::start(port, "[upstream]\ntls = \"disable\"\n");
    let mut w = Wire::connect(proxy.port);
    w.send(&StartupMessage::encode(&[("user", "u"), ("database", DB)]));
    let offer = w.read_message().unwrap();
    assert_eq!(offer.tag, b'R');
    assert_eq!(&offer.body[..4], &10i32.to_be_bytes());
    assert_eq!(&offer.body[4..], b"SCRAM-SHA-256\0\0");
    drop(w);
    server.join().unwrap();
}
