//! Server messages nobody asked for, backend identity, startup options.

use crate::harness::wire::{fe, Message, Wire};
use crate::harness::{psql, run, Pg, Proxy, DB, TRUST_USER};
use std::time::{Duration, Instant};

fn login(port: u16, extra: &[(&str, &str)]) -> (Wire, Vec<Message>) {
    let mut w = Wire::connect(port);
    let mut params = vec![("user", TRUST_USER), ("database", DB)];
    params.extend_from_slice(extra);
    let msgs = w.startup(&params);
    assert_eq!(
        msgs.last().map(|m| m.tag),
        Some(b'Z'),
        "login failed: {msgs:?}"
    );
    (w, msgs)
}

/// The single text value of a one-row, one-column result.
fn scalar(msgs: &[Message]) -> Vec<u8> {
    let row = msgs.iter().find(|m| m.tag == b'D').expect("a DataRow");
    let len = i32::from_be_bytes(row.body[2..6].try_into().unwrap()) as usize;
    row.body[6..6 + len].to_vec()
}

#[test]
fn notifications_reach_an_idle_listener_with_the_senders_real_pid() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let (mut listener, _) = login(proxy.port, &[]);
    listener.send(&fe::query("LISTEN jobs"));
    listener.read_until_ready();

    let (mut sender, startup) = login(proxy.port, &[]);
    let key_pid = startup
        .iter()
        .find_map(|m| (m.tag == b'K').then(|| m.pid()).flatten())
        .expect("BackendKeyData");
    sender.send(&fe::query("SELECT pg_backend_pid()"));
    let backend_pid: i32 = String::from_utf8(scalar(&sender.read_until_ready()))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        backend_pid, key_pid,
        "BackendKeyData must carry the real pid"
    );

    sender.send(&fe::query("NOTIFY jobs, 'payload 1'"));
    sender.read_until_ready();
    // The listener sends nothing: the notification must arrive on its own.
    let started = Instant::now();
    let note = listener.read_message().expect("a notification");
    assert_eq!(
        note.tag, b'A',
        "expected NotificationResponse, got {note:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(note.pid(), Some(key_pid));
    assert!(note.body.windows(9).any(|w| w == b"payload 1"));

    let (mut observer, _) = login(proxy.port, &[]);
    observer.send(&fe::query(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = {key_pid}"
    )));
    assert_eq!(
        scalar(&observer.read_until_ready()),
        b"1",
        "pg_stat_activity knows the same pid"
    );
}

#[test]
fn startup_options_such_as_client_encoding_take_effect_as_directly() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let options = [
        ("client_encoding", "EUC_JP"),
        ("application_name", "encoding-test"),
        ("options", "-c DateStyle=SQL,DMY -c search_path=pg_catalog"),
    ];
    let queries = [
        "SHOW client_encoding",
        "SHOW DateStyle",
        "SHOW search_path",
        "SELECT current_setting('application_name')",
        // The server converts this UTF-8 literal to EUC-JP bytes.
        "SELECT convert_from('\\xe697a5e69cace8aa9e'::bytea, 'UTF8')",
        "SELECT '2024-03-01'::date",
    ];
    let mut answers = Vec::new();
    for port in [pg.port(), proxy.port] {
        let (mut w, _) = login(port, &options);
        let values: Vec<Vec<u8>> = queries
            .iter()
            .map(|q| {
                w.send(&fe::query(q));
                scalar(&w.read_until_ready())
            })
            .collect();
        answers.push(values);
    }
    assert_eq!(answers[1], answers[0], "through the proxy vs directly");
    assert_eq!(answers[1][0], b"EUC_JP");
    assert_eq!(answers[1][1], b"SQL, DMY");
    assert_eq!(
        answers[1][4],
        [0xc6, 0xfc, 0xcb, 0xdc, 0xb8, 0xec],
        "日本語 in EUC-JP"
    );

    // psql picks the encoding up from PGCLIENTENCODING.
    let (ok, out, err) = run(psql(&pg, proxy.port, TRUST_USER)
        .env("PGCLIENTENCODING", "EUC_JP")
        .args(["-A", "-t", "-c", "SHOW client_encoding"]));
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "EUC_JP");
}
