//! Certificates are re-read on SIGHUP (a renewal replaces the files), and
//! the admin server speaks HTTPS with `admin.tls_cert`.

use crate::harness::certs::TestCa;
use crate::harness::{run_with_timeout, Pg, Proxy, TRUST_USER};
use crate::{conninfo, Certs, LOCAL_NAMES};
use std::process::Command;
use std::time::Duration;

fn psql_ok(pg: &Pg, conninfo: &str) -> (bool, String) {
    let (ok, _, err) = run_with_timeout(
        Command::new(pg.program("psql")).args(["-X", "-At", "-d", conninfo, "-c", "SELECT 1"]),
        Duration::from_secs(60),
    );
    (ok, err)
}

#[test]
fn a_renewed_certificate_is_served_after_sighup_and_a_broken_one_changes_nothing() {
    let certs = Certs::make();
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), &certs.listen("require"));
    let trusting = |ca: &std::path::Path| {
        conninfo(
            &proxy,
            TRUST_USER,
            &format!("sslmode=verify-full sslrootcert={}", ca.display()),
        )
    };
    assert!(psql_ok(&pg, &trusting(&certs.ca_path)).0);

    // A broken renewal (key missing) keeps the running certificate.
    std::fs::write(&certs.proxy_key, "not a key").unwrap();
    proxy.signal(libc::SIGHUP);
    proxy.wait_for_log(Duration::from_secs(10), |l| {
        l.contains("TLS certificate reload failed")
    });
    assert!(psql_ok(&pg, &trusting(&certs.ca_path)).0, "still served");

    // The renewal: a certificate from another CA.
    let renewed_ca = TestCa::new("renewed CA");
    let renewed_ca_path = renewed_ca.write(certs.dir.path(), "renewed-ca.crt");
    let renewed = renewed_ca.issue(LOCAL_NAMES);
    std::fs::write(&certs.proxy_cert, &renewed.cert_pem).unwrap();
    std::fs::write(&certs.proxy_key, &renewed.key_pem).unwrap();
    proxy.signal(libc::SIGHUP);
    proxy.wait_for_log(Duration::from_secs(10), |l| {
        l.contains("TLS certificates re-read")
    });
    let (ok, err) = psql_ok(&pg, &trusting(&renewed_ca_path));
    assert!(ok, "the renewed certificate is not served: {err}");
    let (ok, _) = psql_ok(&pg, &trusting(&certs.ca_path));
    assert!(!ok, "the old certificate is still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_server_speaks_https_with_a_certificate() {
    let certs = Certs::make();
    let pg = Pg::start();
    let toml = format!(
        "[admin]\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntoken = \"admin-tls-token\"\n",
        certs.proxy_cert.display(),
        certs.proxy_key.display()
    );
    let proxy = Proxy::start(pg.port(), &toml);
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(
            pgshadow::tls::verifying_client_config(Some(&certs.ca_path)).unwrap(),
        )
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", proxy.admin_port);
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let login = client
        .post(format!("{base}/login"))
        .header("Content-Type", "application/json")
        .body(r#"{"token": "admin-tls-token"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 204);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    // Plain HTTP on the TLS port gets nothing.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/healthz", proxy.admin_port)).await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}
