//! Acceptance 1: psql, psycopg and tokio-postgres through pgshadow with TLS
//! on both legs, COPY, and the shadow, in front of an ssl-only server.

use crate::harness::{self, python_with_psycopg, run_with_timeout, Proxy, TRUST_USER};
use crate::{conninfo, tls_only_cluster, Certs};
use futures_util::{SinkExt, StreamExt};
use std::process::Command;
use std::time::Duration;

/// psql with `conninfo`, running `sql`, without psqlrc or environment
/// defaults.
fn psql(pg: &harness::Pg, conninfo: &str, sql: &str) -> (bool, String, String) {
    run_with_timeout(
        Command::new(pg.program("psql"))
            .args(["-X", "-A", "-t", "-d", conninfo, "-c", sql])
            .env_remove("PGSSLMODE")
            .env_remove("PGSSLROOTCERT")
            .env_remove("PGPASSWORD"),
        Duration::from_secs(60),
    )
}

#[test]
fn psql_with_verify_full_works_and_plain_or_untrusting_clients_are_refused() {
    let certs = Certs::make();
    let pg = tls_only_cluster(&certs);
    let toml = certs.listen("require") + &certs.upstream("verify-full", &certs.ca_path);
    let proxy = Proxy::start(pg.port(), &toml);
    let trusted = format!(
        "sslmode=verify-full sslrootcert={}",
        certs.ca_path.display()
    );

    // The server's view of the proxy's upstream connection: encrypted.
    let (ok, out, err) = psql(
        &pg,
        &conninfo(&proxy, TRUST_USER, &trusted),
        "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert!(ok, "psql verify-full through the proxy failed: {err}");
    assert!(out.trim().starts_with("t|TLSv1."), "pg_stat_ssl: {out:?}");
    // And the client's own leg, as psql reports it.
    let (ok, out, err) = psql(&pg, &conninfo(&proxy, TRUST_USER, &trusted), "\\conninfo");
    assert!(ok, "{err}");
    assert!(out.contains("SSL connection (protocol: TLSv1."), "{out}");

    // Plain clients are refused with a FATAL that says what to do.
    let (ok, _, err) = psql(
        &pg,
        &conninfo(&proxy, TRUST_USER, "sslmode=disable"),
        "SELECT 1",
    );
    assert!(!ok, "a plain client was let in");
    assert!(
        err.contains("accepts only TLS connections") && err.contains("sslmode=require"),
        "{err}"
    );

    // A client that trusts another CA refuses the proxy's certificate.
    let (ok, _, err) = psql(
        &pg,
        &conninfo(
            &proxy,
            TRUST_USER,
            &format!(
                "sslmode=verify-full sslrootcert={}",
                certs.other_ca_path.display()
            ),
        ),
        "SELECT 1",
    );
    assert!(!ok, "a client trusting another CA connected");
    assert!(err.contains("certificate verify failed"), "{err}");
    proxy.wait_for_log(Duration::from_secs(10), |l| {
        l.contains("TLS handshake with the client failed")
    });
}

#[test]
fn psycopg_works_over_tls_on_both_legs() {
    let certs = Certs::make();
    let pg = tls_only_cluster(&certs);
    let toml = certs.listen("require") + &certs.upstream("verify-full", &certs.ca_path);
    let proxy = Proxy::start(pg.port(), &toml);
    let dsn = conninfo(
        &proxy,
        TRUST_USER,
        &format!(
            "sslmode=verify-full sslrootcert={}",
            certs.ca_path.display()
        ),
    );
    let script = "
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    ssl, = conn.execute('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()').fetchone()
    title, = conn.execute('SELECT title FROM items WHERE id = %s', (3,)).fetchone()
    print(conn.pgconn.ssl_in_use, ssl, title)
";
    let (ok, out, err) = run_with_timeout(
        Command::new(python_with_psycopg()).args(["-c", script, &dsn]),
        Duration::from_secs(60),
    );
    assert!(ok, "psycopg over TLS failed: {err}");
    assert_eq!(out.trim(), "True True Title 3");
}

/// 100,000 rows of text with tabs, backslashes, quotes and non-ASCII
/// characters, in COPY's text format.
fn copy_payload() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..100_000 {
        out.extend_from_slice(
            format!(
                "{i}\tzeile {i} – ünïcødé \\\\ \"quoted\" ✓\t{}\n",
                i * 7 % 1000
            )
            .as_bytes(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_over_tls_round_trips_a_100k_row_copy_byte_identical() {
    let certs = Certs::make();
    let pg = tls_only_cluster(&certs);
    let toml = certs.listen("require") + &certs.upstream("verify-full", &certs.ca_path);
    let proxy = Proxy::start(pg.port(), &toml);
    let tls_config = pgshadow::tls::verifying_client_config(Some(&certs.ca_path)).unwrap();
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={TRUST_USER} dbname={} sslmode=require",
            proxy.port,
            harness::DB
        ),
        tokio_postgres_rustls::MakeRustlsConnect::new(tls_config),
    )
    .await
    .expect("tokio-postgres over TLS through the proxy");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the upstream leg is encrypted");

    client
        .batch_execute("CREATE TABLE copied (id int, line text, n int)")
        .await
        .unwrap();
    let payload = copy_payload();
    let sink = client
        .copy_in("COPY copied FROM STDIN")
        .await
        .expect("COPY IN");
    futures_util::pin_mut!(sink);
    for chunk in payload.chunks(64 * 1024) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 100_000);

    let stream = client
        .copy_out("COPY (SELECT * FROM copied ORDER BY id) TO STDOUT")
        .await
        .expect("COPY OUT");
    futures_util::pin_mut!(stream);
    let mut back = Vec::with_capacity(payload.len());
    while let Some(chunk) = stream.next().await {
        back.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "COPY OUT differs from what went in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_compares_against_an_ssl_only_server() {
    let certs = Certs::make();
    let pg = tls_only_cluster(&certs);
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}{}[shadow]\nenabled = true\nsample_rate = 1.0\nuser = \"pgshadow\"\n\
         old_search_path = \"public\"\nnew_search_path = \"v2\"\nbatch_window_ms = 0\n\
         [store]\nurl = \"sqlite://{}\"\n",
        certs.listen("prefer"),
        certs.upstream("verify-full", &certs.ca_path),
        dir.path().join("store.db").display()
    );
    let proxy = Proxy::start(pg.port(), &toml);
    let client = harness::connect(proxy.port).await;
    for id in [1, 2, 3, 7] {
        harness::items::read(&client, id).await;
    }
    let compared = harness::wait_until(Duration::from_secs(30), || {
        let text = proxy.metrics_text();
        let matched = harness::metric_value(&text, "pgshadow_comparisons_total{result=\"match\"}");
        let mismatched =
            harness::metric_value(&text, "pgshadow_comparisons_total{result=\"mismatch\"}");
        (matched >= 3.0 && mismatched >= 1.0).then_some(text)
    })
    .unwrap_or_else(|| panic!("no comparisons: {}", proxy.metrics_text()));
    for result in [
        "old_error",
        "new_error",
        "both_error",
        "timeout",
        "rewrite_error",
        "shadow_error",
    ] {
        let series = format!("pgshadow_comparisons_total{{result=\"{result}\"}}");
        assert_eq!(
            harness::metric_value(&compared, &series),
            0.0,
            "{series}\n{compared}"
        );
    }
    // The shadow's own connections are encrypted too.
    let shadow_tls = pg.sql(
        "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*) FROM pg_stat_ssl s \
         JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'pgshadow'",
    );
    let (encrypted, all) = shadow_tls.split_once('/').unwrap();
    assert!(
        all != "0" && encrypted == all,
        "shadow connections: {shadow_tls}"
    );
}
