//! psycopg 3, a libpq-based driver, works through the proxy: parameters in
//! text and binary format, server-side cursors, COPY both ways,
//! (pipelined) executemany, autocommit and transactions. The checks live in
//! `tests/clients/psycopg_suite.py`; this test runs that script directly
//! against the server and through the proxy.

use crate::harness::{python_with_psycopg, run_with_timeout, Pg, Proxy, TRUST_USER};
use std::process::Command;
use std::time::Duration;

const SUITE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/psycopg_suite.py"
);

/// Runs the suite against `port`: (success, stdout, stderr).
fn suite(python: &std::path::Path, port: u16) -> (bool, String, String) {
    run_with_timeout(
        Command::new(python)
            .arg(SUITE)
            .arg(Pg::url(port, TRUST_USER, None))
            .env_remove("PYTHONOPTIMIZE")
            .env_remove("PGPASSWORD")
            .env_remove("PGCLIENTENCODING")
            .env_remove("PGOPTIONS")
            .env("PGCONNECT_TIMEOUT", "10"),
        Duration::from_secs(120),
    )
}

#[test]
fn psycopg_suite_passes_through_the_proxy_as_it_does_directly() {
    let python = python_with_psycopg();
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");

    // Directly first: if this fails, the script or the server is at fault,
    // not the proxy.
    let (ok, direct, err) = suite(&python, pg.port());
    assert!(
        ok,
        "psycopg suite failed DIRECTLY against PostgreSQL (not a proxy problem)\n\
         --- stdout ---\n{direct}\n--- stderr ---\n{err}"
    );

    let (ok, proxied, err) = suite(&python, proxy.port);
    assert!(
        ok,
        "psycopg suite failed THROUGH THE PROXY (it passed directly)\n\
         --- stdout ---\n{proxied}\n--- stderr ---\n{err}"
    );
    // The summary is deterministic: the same checks ran with the same counts.
    assert_eq!(proxied, direct, "summaries differ");
    assert!(proxied.contains("psycopg suite passed"), "{proxied}");
}
