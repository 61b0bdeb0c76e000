//! Acceptance 4: the JSON API lists, filters and shows incidents,
//! acknowledges and mutes them (the mute ends by itself), shows coverage,
//! and changes the sample rate and the kill switch without a restart.

use crate::harness::{connect, wait_until, Pg, Proxy};
use crate::http::{get, get_json, post_ok, send};
use crate::{config, create_schema, incidents, read, wait_for_incidents, READ_NOTE};
use serde_json::Value;
use std::time::{Duration, Instant};

fn by_columns<'a>(list: &'a [Value], column: &str) -> &'a Value {
    list.iter()
        .find(|i| i["columns"] == serde_json::json!([column]))
        .unwrap_or_else(|| panic!("no incident on column {column}: {list:#?}"))
}

fn ids(list: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = list
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_are_listed_filtered_shown_acknowledged_and_muted_until_the_mute_ends() {
    let pg = Pg::start();
    create_schema(&pg);
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(pg.port(), &config(dir.path(), "", ""));
    let port = proxy.admin_port;
    let client = connect(proxy.port).await;
    for id in [7, 7, 11, 3] {
        read(&client, id).await;
    }
    let rows = client.query(READ_NOTE, &[&1_i32]).await.expect("read note");
    assert_eq!(rows.len(), 1, "the old schema answers the application");

    // List: three incidents, all open, newest first.
    let list = wait_for_incidents(&proxy, 3);
    assert_eq!(list.len(), 3, "{list:#?}");
    assert!(list.iter().all(|i| i["status"] == "open"), "{list:#?}");
    let title = by_columns(&list, "title").clone();
    let body = by_columns(&list, "body").clone();
    let note = list
        .iter()
        .find(|i| i["kind"] == "new_error")
        .unwrap_or_else(|| panic!("no new_error incident: {list:#?}"))
        .clone();
    let title_id = title["id"].as_str().unwrap().to_string();
    let body_id = body["id"].as_str().unwrap().to_string();
    assert_eq!(title["kind"], "mismatch");
    assert_eq!(title["diff_kind"], "values");
    assert_eq!(note["new_sqlstate"], "42P01");
    assert!(title["first_seen"].as_str().unwrap().ends_with('Z'));

    // Filters.
    assert_eq!(
        ids(&incidents(&proxy, "?kind=mismatch")),
        ids(&[title.clone(), body.clone()])
    );
    assert_eq!(
        ids(&incidents(&proxy, "?kind=new_error")),
        ids(std::slice::from_ref(&note))
    );
    let fingerprint = title["fingerprint"].as_str().unwrap();
    assert_eq!(body["fingerprint"], fingerprint, "one statement, two bugs");
    assert_eq!(
        incidents(&proxy, &format!("?fingerprint={fingerprint}")).len(),
        2
    );
    assert_eq!(incidents(&proxy, "?since=1h").len(), 3);
    assert_eq!(incidents(&proxy, "?since=2999-01-01T00:00:00Z").len(), 0);
    assert_eq!(incidents(&proxy, "?status=open&kind=mismatch").len(), 2);
    for (query, expected) in [
        ("?kind=oops", "kind=\"oops\""),
        ("?status=closed", "open, acknowledged, muted"),
        ("?since=yesterday", "since="),
        ("?fingerprint=xyz", "16 hex digits"),
        ("?colour=red", "unknown field"),
    ] {
        let r = get(port, &format!("/api/incidents{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert!(r.error().contains(expected), "{query}: {}", r.body);
    }

    // Show: the examples carry the difference and the reproduction bundle.
    let shown = get_json(port, &format!("/api/incidents/{title_id}"));
    assert_eq!(shown["count"], 2);
    let examples = shown["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 2, "{shown:#}");
    let cell = &examples[0]["diff"]["changed"][0]["cells"][0];
    assert_eq!(cell["column"], "title");
    assert_eq!(cell["old"], "Title 7");
    assert_eq!(cell["new"], "Wrong title");
    assert!(examples[0]["snapshot_xmin"].is_u64(), "{shown:#}");
    assert!(examples[0]["old_sql"].as_str().unwrap().contains("items"));
    assert_eq!(examples[0]["params"], serde_json::json!(["\\x00000007"]));
    let missing = get(port, "/api/incidents/000000000000");
    assert_eq!(missing.status, 404);
    assert!(missing.error().contains("no incident"), "{}", missing.body);

    // Acknowledge.
    let acked = post_ok(
        port,
        &format!("/api/incidents/{title_id}/ack"),
        r#"{"by": "alice"}"#,
    );
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["status_by"], "alice");
    assert_eq!(
        ids(&incidents(&proxy, "?status=acknowledged")),
        vec![title_id.clone()]
    );
    assert_eq!(incidents(&proxy, "?status=open").len(), 2);

    // Mute: bad requests first, each with a message that says why.
    let mute_path = format!("/api/incidents/{body_id}/mute");
    for (request, expected) in [
        (r#"{"for": "soon", "reason": "x"}"#, "is not a duration"),
        (r#"{"seconds": 2}"#, "reason"),
        (r#"{"seconds": -1, "reason": "x"}"#, "greater than 0"),
        (r#"{"reason": "x"}"#, "how long"),
        (r#"{"for": "2h""#, "invalid JSON"),
    ] {
        let r = send(port, "POST", &mute_path, request, None);
        assert_eq!(r.status, 400, "{request}: {}", r.body);
        assert!(r.error().contains(expected), "{request}: {}", r.body);
    }
    let r = send(
        port,
        "POST",
        "/api/incidents/000000000000/mute",
        r#"{"for": "1h", "reason": "x"}"#,
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);

    // A mute of two seconds ends by itself.
    let muted_at = Instant::now();
    let muted = post_ok(
        port,
        &mute_path,
        r#"{"seconds": 2, "reason": "backfill rerun tonight"}"#,
    );
    assert_eq!(muted["status"], "muted", "{muted:#}");
    assert_eq!(muted["mute_reason"], "backfill rerun tonight");
    assert!(muted["muted_until"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        ids(&incidents(&proxy, "?status=muted")),
        vec![body_id.clone()]
    );
    wait_until(Duration::from_secs(30), || {
        let now = get_json(port, &format!("/api/incidents/{body_id}"));
        (now["status"] == "open").then_some(())
    })
    .unwrap_or_else(|| panic!("the mute did not end"));
    assert!(
        muted_at.elapsed() >= Duration::from_millis(1500),
        "the mute ended early: {:?}",
        muted_at.elapsed()
    );
    proxy.wait_for_log(Duration::from_secs(30), |l| {
        l.contains("incident mute ended") && l.contains(&body_id)
    });

    // Reopen the acknowledged one; then mute it for an hour and unmute it:
    // the mute ends at once, and the proxy says so as for a mute that ran out.
    let unmute_path = format!("/api/incidents/{title_id}/unmute");
    let reopened = post_ok(port, &unmute_path, "");
    assert_eq!(reopened["status"], "open");
    assert_eq!(incidents(&proxy, "?status=open").len(), 3);
    let muted = post_ok(
        port,
        &format!("/api/incidents/{title_id}/mute"),
        r#"{"for": "1h", "reason": "known"}"#,
    );
    assert_eq!(muted["status"], "muted");
    let unmuted = post_ok(port, &unmute_path, r#"{"by": "bob"}"#);
    assert_eq!(unmuted["status"], "open", "{unmuted:#}");
    proxy.wait_for_log(Duration::from_secs(30), |l| {
        l.contains("incident mute ended") && l.contains(&title_id)
    });
    assert_eq!(incidents(&proxy, "?status=open").len(), 3);

    // Coverage: the items statement was compared four times, three differed.
    let coverage = get_json(port, &format!("/api/coverage?fingerprint={fingerprint}"));
    let row = &coverage["coverage"][0];
    assert_eq!(row["compared"], 4, "{coverage:#}");
    assert_eq!(row["mismatched"], 3, "{coverage:#}");
    assert_eq!(
        get_json(port, "/api/coverage")["coverage"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let ready = get_json(port, "/readyz");
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["store"], "ok", "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_rate_and_the_kill_switch_change_without_a_restart() {
    let pg = Pg::start();
    create_schema(&pg);
    let dir = tempfile::tempdir().unwrap();
    let toml = config(dir.path(), "sample_rate = 0.0\nfirst_executions = 0", "");
    let proxy = Proxy::start(pg.port(), &toml);
    let port = proxy.admin_port;
    let client = connect(proxy.port).await;
    let sampling = get_json(port, "/api/sampling");
    assert_eq!(sampling["enabled"], true, "{sampling}");
    assert_eq!(sampling["sample_rate"], 0.0, "{sampling}");

    let skipped =
        |reason: &str| proxy.metric(&format!("pgshadow_skipped_total{{reason=\"{reason}\"}}"));
    let wait_skipped = |reason: &str, n: f64| {
        wait_until(Duration::from_secs(30), || {
            (skipped(reason) >= n).then_some(())
        })
        .unwrap_or_else(|| panic!("{reason}: {}", proxy.metrics_text()))
    };
    let wait_compared = |n: f64| {
        wait_until(Duration::from_secs(30), || {
            (proxy.all_comparisons() >= n).then_some(())
        })
        .unwrap_or_else(|| panic!("comparisons:\n{}", proxy.metrics_text()))
    };

    // Rate 0: nothing is compared.
    for _ in 0..5 {
        read(&client, 3).await;
    }
    wait_skipped("not_sampled", 5.0);
    assert_eq!(proxy.all_comparisons(), 0.0);

    // Rate 1, set at run time: the next read is compared.
    let changed = send(
        port,
        "PUT",
        "/api/sampling",
        r#"{"sample_rate": 1.0}"#,
        None,
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.json()["sample_rate"], 1.0);
    read(&client, 3).await;
    wait_compared(1.0);
    assert_eq!(proxy.all_comparisons(), 1.0);
    proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("sampling changed through the admin API")
    });

    // Invalid changes are refused and change nothing.
    for (request, expected) in [
        (r#"{"sample_rate": 1.5}"#, "between 0 and 1"),
        (r#"{"sample_rate": -0.1}"#, "between 0 and 1"),
        ("{}", "nothing to change"),
        (r#"{"rate": 1}"#, "unknown field `rate`"),
        (r#"{"enabled": "no"}"#, "invalid JSON"),
    ] {
        let r = send(port, "PUT", "/api/sampling", request, None);
        assert_eq!(r.status, 400, "{request}: {}", r.body);
        assert!(r.error().contains(expected), "{request}: {}", r.body);
    }
    assert_eq!(get_json(port, "/api/sampling")["sample_rate"], 1.0);

    // The kill switch, off and on again (POST works as well as PUT).
    let off = send(port, "POST", "/api/sampling", r#"{"enabled": false}"#, None);
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.json()["enabled"], false);
    read(&client, 3).await;
    wait_skipped("disabled", 1.0);
    assert_eq!(proxy.all_comparisons(), 1.0);
    let on = send(port, "PUT", "/api/sampling", r#"{"enabled": true}"#, None);
    assert_eq!(on.status, 200, "{}", on.body);
    read(&client, 3).await;
    wait_compared(2.0);
    assert_eq!(
        get_json(port, "/api/sampling"),
        serde_json::json!({
            "shadow_running": true,
            "enabled": true,
            "sample_rate": 1.0,
            "max_samples_per_second": 0,
            "muted_fingerprints": [],
        })
    );
}
