//! Acceptance 2: an upstream certificate pgshadow must not trust is
//! refused, and the client's FATAL names the upstream and the reason.

use crate::harness::{psql, run_with_timeout, Pg, Proxy, TRUST_USER};
use crate::Certs;
use std::time::Duration;

/// Connects through `proxy` with psql (plain client leg) and returns
/// (success, stderr).
fn connect(pg: &Pg, proxy: &Proxy) -> (bool, String) {
    let (ok, _, err) = run_with_timeout(
        psql(pg, proxy.port, TRUST_USER).args(["-c", "SELECT 1"]),
        Duration::from_secs(60),
    );
    (ok, err)
}

#[test]
fn a_certificate_for_another_name_is_refused_under_verify_full_and_the_client_is_told_why() {
    let certs = Certs::make();
    let pg = Pg::start_tls_only(&certs.ca.issue(&["db.other.example"]));
    let upstream = format!("127.0.0.1:{}", pg.port());

    let proxy = Proxy::start(pg.port(), &certs.upstream("verify-full", &certs.ca_path));
    let (ok, err) = connect(&pg, &proxy);
    assert!(!ok, "verify-full accepted a certificate for another name");
    for expected in [
        &format!("could not connect to upstream {upstream}"),
        "is for db.other.example, not for the name \"127.0.0.1\"",
        "upstream.tls = \"verify-full\"",
    ] {
        assert!(err.contains(expected), "{expected:?} not in: {err}");
    }
    drop(proxy);

    // verify-ca checks the chain only: the same certificate passes.
    let proxy = Proxy::start(pg.port(), &certs.upstream("verify-ca", &certs.ca_path));
    let (ok, err) = connect(&pg, &proxy);
    assert!(ok, "verify-ca refused a trusted chain: {err}");
    drop(proxy);

    // A CA the proxy does not trust.
    let proxy = Proxy::start(
        pg.port(),
        &certs.upstream("verify-ca", &certs.other_ca_path),
    );
    let (ok, err) = connect(&pg, &proxy);
    assert!(!ok, "an unknown CA was accepted");
    assert!(
        err.contains(&format!("could not connect to upstream {upstream}"))
            && err.contains("unknown CA"),
        "{err}"
    );
    drop(proxy);

    // disable: the ssl-only server itself refuses the plain connection.
    let proxy = Proxy::start(pg.port(), "[upstream]\ntls = \"disable\"\n");
    let (ok, err) = connect(&pg, &proxy);
    assert!(!ok);
    assert!(err.contains("no encryption"), "{err}");
}

#[test]
fn an_expired_upstream_certificate_is_refused_with_its_date() {
    let certs = Certs::make();
    let pg = Pg::start_tls_only(&certs.ca.issue_expired(crate::LOCAL_NAMES));
    let proxy = Proxy::start(pg.port(), &certs.upstream("verify-full", &certs.ca_path));
    let (ok, err) = connect(&pg, &proxy);
    assert!(!ok, "an expired certificate was accepted");
    assert!(
        err.contains("the server's certificate expired at 2001-01-01"),
        "{err}"
    );
    // require encrypts without verifying (libpq's meaning) when no root
    // certificate is given.
    let proxy = Proxy::start(pg.port(), "[upstream]\ntls = \"require\"\n");
    let (ok, err) = connect(&pg, &proxy);
    assert!(ok, "require must not verify the certificate: {err}");
}

#[test]
fn scram_over_tls_on_both_legs_needs_channel_binding_disabled_and_says_so() {
    // Over TLS PostgreSQL offers SCRAM-SHA-256-PLUS. Its binding is to the
    // TLS session the server sees (pgshadow's), which the client cannot
    // know, so the offer is stripped; but a libpq client on TLS then says
    // "I support binding, you do not", which the server refuses as a
    // downgrade. pgshadow says what to do instead of the server's riddle.
    let certs = Certs::make();
    let pg = Pg::start_tls_only(&certs.server());
    let toml = certs.listen("require") + &certs.upstream("verify-full", &certs.ca_path);
    let proxy = Proxy::start(pg.port(), &toml);
    let login = |extra: &str| {
        run_with_timeout(
            std::process::Command::new(pg.program("psql"))
                .args([
                    "-X",
                    "-At",
                    "-d",
                    &crate::conninfo(
                        &proxy,
                        crate::harness::SCRAM_USER,
                        &format!(
                            "sslmode=verify-full sslrootcert={} {extra} password='{}'",
                            certs.ca_path.display(),
                            crate::harness::SCRAM_PASSWORD
                        ),
                    ),
                    "-c",
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                ])
                .env_remove("PGPASSWORD"),
            Duration::from_secs(60),
        )
    };
    let (ok, _, err) = login("");
    assert!(!ok, "libpq's default channel_binding=prefer cannot pass");
    assert!(
        err.contains("SCRAM channel binding cannot pass through pgshadow")
            && err.contains("channel_binding=disable"),
        "{err}"
    );
    let (ok, out, err) = login("channel_binding=disable");
    assert!(ok, "SCRAM through TLS on both legs failed: {err}");
    assert_eq!(out.trim(), "t");
}
