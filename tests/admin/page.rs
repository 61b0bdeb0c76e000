//! Acceptance 5: the web page in headless Chromium. Log in with the admin
//! token (the page is closed without it: incidents carry production
//! values), load the incident list, open the incident, find the
//! highlighted old and new values of the injected difference, press
//! "Acknowledge" and see the status change.
//! On failure a screenshot is saved as `target/admin-page-failure.png`;
//! the incident page and the list of a passing run are kept as
//! `target/admin-page-incident.png` and `target/admin-page-list.png`.

use crate::chromium::Chromium;
use crate::harness::{connect, Pg, Proxy};
use crate::{config, create_schema, read, wait_for_incidents_with};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// The admin token the login form asks for.
const TOKEN: &str = "page-test-token";

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(PathBuf::from).unwrap_or(tmp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_highlighted_difference_and_acknowledges_in_headless_chromium() {
    let binary = match Chromium::find_or_install() {
        Ok(b) => b,
        Err(why) => {
            eprintln!(
                "SKIPPED the_page_shows_the_highlighted_difference_and_acknowledges_in_headless_chromium: \
                 {why}. Install Debian's `chromium` package to run it."
            );
            return;
        }
    };
    let pg = Pg::start();
    create_schema(&pg);
    let dir = tempfile::tempdir().unwrap();
    let toml = config(dir.path(), "", &format!("[admin]\ntoken = \"{TOKEN}\""));
    let proxy = Proxy::start(pg.port(), &toml);
    let client = connect(proxy.port).await;
    for _ in 0..3 {
        read(&client, 7).await;
    }
    let incidents = wait_for_incidents_with(&proxy, 1, Some(TOKEN));
    let id = incidents[0]["id"].as_str().unwrap().to_string();
    assert_eq!(incidents[0]["columns"], json!(["title"]));

    let mut browser = Chromium::start(&binary);
    let base = format!("http://127.0.0.1:{}", proxy.admin_port);
    let outcome = drive(&mut browser, &base, &id);
    if let Err(failure) = outcome {
        let shot = target_dir().join("admin-page-failure.png");
        let saved = browser.screenshot(&shot);
        panic!("{failure}\nscreenshot: {} ({saved:?})", shot.display());
    }
    let _ = browser.screenshot(&target_dir().join("admin-page-incident.png"));
    if browser.open(&format!("{base}/")).is_ok() {
        let _ = browser.screenshot(&target_dir().join("admin-page-list.png"));
    }
    let shown = crate::http::request(
        proxy.admin_port,
        "GET",
        &format!("/api/incidents/{id}"),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        None,
    )
    .json();
    assert_eq!(
        shown["status"], "acknowledged",
        "the click reached the store"
    );
}

/// The steps a person takes; the first that fails says what went wrong.
fn drive(browser: &mut Chromium, base: &str, id: &str) -> Result<(), String> {
    let wait = Duration::from_secs(20);
    // Without the session cookie the page is the login form.
    browser.open(&format!("{base}/"))?;
    browser.wait_for("document.getElementById('login-form') !== null", wait)?;
    let shown = browser.eval("document.body.innerText")?;
    if shown.as_str().unwrap_or_default().contains("Title 7") {
        return Err(format!("the login page shows data: {shown}"));
    }
    // Log in as a person would: type the token, submit.
    browser.eval(&format!(
        "document.getElementById('token').value = {}; \
         document.getElementById('login-form').requestSubmit()",
        json!(TOKEN)
    ))?;
    // The list shows the incident, open, with its kind and statement.
    let row = format!("document.querySelector('#incidents tr[data-id=\"{id}\"]')");
    let text = browser.wait_for(&format!("{row} && {row}.innerText"), wait)?;
    let text = text.as_str().unwrap_or_default();
    for expected in [
        "open",
        "mismatch · values",
        "title",
        "SELECT id, title, body FROM items",
    ] {
        if !text.contains(expected) {
            return Err(format!("the list row lacks {expected:?}: {text:?}"));
        }
    }

    // Open it, as a person would: click the id.
    browser.eval(&format!("{row}.querySelector('a').click()"))?;
    browser.wait_for(
        &format!(
            "location.pathname === '/incidents/{id}' && document.readyState === 'complete' \
             && document.getElementById('status') !== null"
        ),
        wait,
    )?;

    // The injected difference, highlighted on both sides.
    let cells = |class: &str| {
        format!(
            "JSON.stringify([...document.querySelectorAll('td.{class}')].map(td => \
             [td.textContent, getComputedStyle(td).backgroundColor]))"
        )
    };
    let old = browser.eval(&cells("diff-old"))?;
    let new = browser.eval(&cells("diff-new"))?;
    let parse = |v: serde_json::Value| -> Vec<(String, String)> {
        serde_json::from_str(v.as_str().unwrap_or("[]")).unwrap_or_default()
    };
    let (old, new) = (parse(old), parse(new));
    let values = |cells: &[(String, String)]| -> Vec<String> {
        let mut v: Vec<String> = cells.iter().map(|(t, _)| t.clone()).collect();
        v.dedup();
        v
    };
    if values(&old) != ["Title 7"] || values(&new) != ["Wrong title"] {
        return Err(format!("highlighted cells: old {old:?}, new {new:?}"));
    }
    let plain = browser.eval("getComputedStyle(document.querySelector('td')).backgroundColor")?;
    for (_, colour) in old.iter().chain(&new) {
        if json!(colour) == plain || colour == "rgba(0, 0, 0, 0)" {
            return Err(format!("a differing cell is not highlighted: {colour}"));
        }
    }
    if old[0].1 == new[0].1 {
        return Err(format!("old and new share one colour: {}", old[0].1));
    }
    let status = browser.eval("document.getElementById('status').textContent")?;
    if status != "open" {
        return Err(format!("status before: {status}"));
    }

    // Acknowledge: the session cookie authorises the click.
    browser.eval("document.getElementById('ack').click()")?;
    // The status changes on the page.
    browser.wait_for(
        "document.getElementById('status').textContent === 'acknowledged'",
        wait,
    )?;
    let message = browser.eval("document.getElementById('action-message').textContent")?;
    if message != "Acknowledged." {
        return Err(format!("message after the click: {message}"));
    }
    // The script cannot read the session (HttpOnly), let alone the token.
    let readable = browser.eval("document.cookie")?;
    if readable
        .as_str()
        .unwrap_or_default()
        .contains("pgshadow_admin")
    {
        return Err(format!(
            "the session cookie is readable by scripts: {readable}"
        ));
    }
    // And it is what the server now renders.
    browser.open(&format!("{base}/incidents/{id}"))?;
    let status = browser.eval("document.getElementById('status').textContent")?;
    if status != "acknowledged" {
        return Err(format!("status after a reload: {status}"));
    }
    Ok(())
}
