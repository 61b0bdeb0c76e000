//! The admin token (issue "In front of a managed production database",
//! acceptance 4): off loopback a token is required; with one, everything
//! but health and metrics needs it; the Host header is checked; changes
//! must be JSON.

use crate::harness::{Pg, Proxy};
use crate::http::{get, request, send};
use crate::{config, create_schema};
use std::process::Command;

const TOKEN: &str = "t0ken-for-the-admin-tests";

#[test]
fn with_a_token_everything_but_health_and_metrics_needs_it() {
    let pg = Pg::start();
    create_schema(&pg);
    let dir = tempfile::tempdir().unwrap();
    // From the environment, as a deployment would keep it.
    let toml = config(
        dir.path(),
        "",
        "[admin]\ntoken_env = \"PGSHADOW_TEST_ADMIN_TOKEN\"",
    );
    let proxy = Proxy::start_with_env(pg.port(), &toml, &[("PGSHADOW_TEST_ADMIN_TOKEN", TOKEN)]);
    let port = proxy.admin_port;
    let bearer = format!("Bearer {TOKEN}");

    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(port, path).status, 200, "GET {path} needs no token");
    }
    for path in [
        "/api/sampling",
        "/api/incidents",
        "/api/incidents/000000000000",
        "/api/coverage",
    ] {
        let r = get(port, path);
        assert_eq!(r.status, 401, "GET {path} without a token: {}", r.body);
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{r:?}"
        );
        let r = request(port, "GET", path, &[("Authorization", &bearer)], None);
        assert!(
            r.status == 200 || r.status == 404,
            "GET {path} with the token: {} {}",
            r.status,
            r.body
        );
    }
    // Pages answer with the login form, which carries no data.
    for path in ["/", "/coverage", "/incidents/000000000000"] {
        let r = get(port, path);
        assert_eq!(r.status, 401, "GET {path}");
        assert!(r.body.contains("id=\"login-form\""), "{path}: {}", r.body);
        assert!(!r.body.contains("sampling on"), "{path}: {}", r.body);
    }

    let change = r#"{"sample_rate": 0.5}"#;
    for token in [None, Some("wrong"), Some("")] {
        let r = send(port, "PUT", "/api/sampling", change, token);
        assert_eq!(r.status, 401, "token {token:?}: {}", r.body);
        assert!(r.error().contains("token"), "{}", r.body);
    }
    let r = request(
        port,
        "GET",
        "/api/sampling",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(r.json()["sample_rate"], 1.0, "unchanged");
    let r = send(port, "PUT", "/api/sampling", change, Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["sample_rate"], 0.5);

    // The login form trades the token for an HttpOnly cookie that opens
    // the pages (and is not the token).
    let r = request(port, "POST", "/login", &[], Some(r#"{"token": "wrong"}"#));
    assert_eq!(r.status, 401, "{}", r.body);
    let r = request(
        port,
        "POST",
        "/login",
        &[],
        Some(&format!(r#"{{"token": "{TOKEN}"}}"#)),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let set_cookie = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    assert!(!set_cookie.contains(TOKEN), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap();
    let r = request(port, "GET", "/", &[("Cookie", cookie)], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("data-token-required=\"true\""));
}

#[test]
fn a_foreign_host_header_and_non_json_changes_are_refused() {
    let pg = Pg::start();
    create_schema(&pg);
    let dir = tempfile::tempdir().unwrap();
    let toml = config(
        dir.path(),
        "",
        "[admin]\nallowed_hosts = [\"pgshadow.example.internal\"]",
    );
    let proxy = Proxy::start(pg.port(), &toml);
    let port = proxy.admin_port;

    // DNS rebinding: a page on evil.example whose name now resolves to the
    // admin address; its requests carry its own host name.
    for host in ["evil.example", "evil.example:9930"] {
        let r = request(port, "GET", "/api/incidents", &[("Host", host)], None);
        assert_eq!(r.status, 403, "Host {host}: {}", r.body);
        assert!(r.error().contains("admin.allowed_hosts"), "{}", r.body);
    }
    for host in ["pgshadow.example.internal", "localhost:1", "127.0.0.1"] {
        let r = request(port, "GET", "/api/incidents", &[("Host", host)], None);
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
    }
    // Probes may use any name.
    let r = request(port, "GET", "/healthz", &[("Host", "evil.example")], None);
    assert_eq!(r.status, 200);

    // A form post (what a cross-site page can send without a preflight).
    let r = request(
        port,
        "PUT",
        "/api/sampling",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("sample_rate=0"),
    );
    assert_eq!(r.status, 415, "{}", r.body);
    assert!(r.error().contains("application/json"), "{}", r.body);
}

#[test]
fn an_admin_address_off_loopback_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgshadow.toml");
    std::fs::write(
        &file,
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"0.0.0.0:0\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgshadow"))
        .args(["run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("admin.token") && stderr.contains("0.0.0.0:0"),
        "{stderr}"
    );
    std::fs::write(
        &file,
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"0.0.0.0:0\"\ntoken = \"x\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgshadow"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
