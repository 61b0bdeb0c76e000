//! Acceptance 4: with `admin.token` set, changes need the bearer token;
//! reading stays open.

use crate::harness::{Pg, Proxy};
use crate::http::{get, send};
use crate::{config, create_schema};

const TOKEN: &str = "t0ken-for-the-admin-tests";

#[test]
fn with_a_token_changes_need_it_and_reads_stay_open() {
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

    for path in [
        "/api/sampling",
        "/api/incidents",
        "/api/coverage",
        "/",
        "/coverage",
        "/metrics",
    ] {
        assert_eq!(get(port, path).status, 200, "GET {path} needs no token");
    }

    let change = r#"{"sample_rate": 0.5}"#;
    for token in [None, Some("wrong"), Some("")] {
        let r = send(port, "PUT", "/api/sampling", change, token);
        assert_eq!(r.status, 401, "token {token:?}: {}", r.body);
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{r:?}"
        );
        assert!(r.error().contains("token"), "{}", r.body);
    }
    let r = send(port, "POST", "/api/incidents/000000000000/ack", "{}", None);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        get(port, "/api/sampling").json()["sample_rate"],
        1.0,
        "unchanged"
    );

    let r = send(port, "PUT", "/api/sampling", change, Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["sample_rate"], 0.5);
    let r = send(
        port,
        "POST",
        "/api/incidents/000000000000/ack",
        "{}",
        Some(TOKEN),
    );
    assert_eq!(r.status, 404, "past the token check: {}", r.body);

    // The page tells its script that a token is needed.
    assert!(get(port, "/").body.contains("data-token-required=\"true\""));
}
