//! `/readyz` and the API of a proxy whose shadow is off.

use crate::harness::{Pg, Proxy};
use crate::http::{get, get_json, request, send};

#[test]
fn without_a_shadow_the_incident_api_answers_503_and_readiness_follows_the_upstream() {
    let pg = Pg::start();
    let proxy = Proxy::start(pg.port(), "");
    let port = proxy.admin_port;
    let ready = get_json(port, "/readyz");
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["upstream"], "ok");
    assert_eq!(ready["store"], "disabled");

    for path in [
        "/api/incidents",
        "/api/incidents/0123456789ab",
        "/api/coverage",
        "/",
    ] {
        let r = get(port, path);
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert!(r.body.contains("shadow.enabled"), "{path}: {}", r.body);
    }
    let sampling = get_json(port, "/api/sampling");
    assert_eq!(sampling["shadow_running"], false, "{sampling}");
    let r = send(port, "PUT", "/api/sampling", r#"{"sample_rate": 1}"#, None);
    assert_eq!(r.status, 503, "{}", r.body);
    // Without a token, a browser cannot be made to change things from
    // another site.
    let r = request(
        port,
        "POST",
        "/api/incidents/0123456789ab/ack",
        &[("Origin", "https://evil.example")],
        Some("{}"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.error().contains("another origin"), "{}", r.body);
    let r = get(port, "/api/nothing-here");
    assert_eq!(r.status, 404);
    assert!(r.error().contains("no such endpoint"), "{}", r.body);

    // An upstream nobody listens on: not ready, and the reason says why.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let proxy = Proxy::start(closed_port, "");
    let r = get(proxy.admin_port, "/readyz");
    assert_eq!(r.status, 503, "{}", r.body);
    let body = r.json();
    assert_eq!(body["ready"], false);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains(&format!("upstream 127.0.0.1:{closed_port} unreachable")),
        "{body}"
    );
    assert_eq!(
        get(proxy.admin_port, "/healthz").status,
        200,
        "alive all the same"
    );
}
