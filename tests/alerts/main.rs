//! The webhook (issue "On-call surface", acceptance 7): the real binary in
//! front of a real schema difference, alerting a local HTTP receiver.
//!
//! - a burst of identical mismatches is one incident and one POST;
//! - a receiver that hangs or is gone costs the application nothing: its
//!   queries keep flowing and the failures are counted;
//! - an `https://` receiver with a certificate from a private CA gets its
//!   alert when `alerts.tls_root_cert` trusts that CA, and not otherwise.

#[path = "../harness/mod.rs"]
mod harness;

use harness::items::{stored_outcomes, SCHEMA};
use harness::{connect, field, items, wait_until, Pg, Proxy};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_postgres::Client;

/// Where the webhook posts: a Slack-like path with the secret in it.
const HOOK_PATH: &str = "/services/T000/B000/secret";

fn config(store_dir: &std::path::Path, webhook_url: &str, extra_alerts: &str) -> String {
    format!(
        "[shadow]\nenabled = true\nsample_rate = 1.0\nuser = \"pgshadow\"\n\
         old_search_path = \"public\"\nnew_search_path = \"v2\"\n\
         [store]\nurl = \"sqlite://{}\"\nflush_interval_ms = 50\n\
         [alerts]\nwebhook_url = \"{webhook_url}\"\n{extra_alerts}\n",
        store_dir.join("store.db").display()
    )
}

/// Reads item `id` through the proxy; the application's answer must be
/// the old schema's, whatever the shadow and the webhook are doing.
async fn read(client: &Client, id: i32) {
    assert_eq!(items::read(client, id).await, format!("Title {id}"));
}

fn wait_metric(proxy: &Proxy, series: &str, value: f64) {
    wait_until(Duration::from_secs(30), || {
        (proxy.metric(series) == value).then_some(())
    })
    .unwrap_or_else(|| panic!("{series} never reached {value}:\n{}", proxy.metrics_text()));
}

const OK: &str = "pgshadow_webhook_deliveries_total{result=\"ok\"}";
const ERROR: &str = "pgshadow_webhook_deliveries_total{result=\"error\"}";
const DROPPED: &str = "pgshadow_webhook_deliveries_total{result=\"dropped\"}";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Request {
    head: String,
    body: String,
}

/// A local HTTP server standing in for Slack: it records every request
/// and answers 200, or (`hang`) reads it and never answers.
struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Receiver {
    async fn start(hang: bool) -> Receiver {
        Self::start_with(hang, None).await
    }

    /// An `https://` receiver presenting `tls`'s certificate.
    async fn start_tls(tls: pgshadow::tls::ServerTls) -> Receiver {
        Self::start_with(false, Some(Arc::new(tls))).await
    }

    async fn start_with(hang: bool, tls: Option<Arc<pgshadow::tls::ServerTls>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (sink, count) = (requests.clone(), connections.clone());
        let task = tokio::spawn(async move {
            // Dropped with this task: stopping the receiver closes every
            // connection it holds.
            let mut handlers = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let sink = sink.clone();
                let tls = tls.clone();
                handlers.spawn(async move {
                    match tls {
                        None => serve(stream, sink, hang).await,
                        Some(tls) => {
                            if let Ok(stream) = tls.acceptor().accept(stream).await {
                                serve(stream, sink, hang).await;
                            }
                        }
                    }
                });
            }
        });
        Receiver {
            port,
            requests,
            connections,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}{HOOK_PATH}", self.port)
    }

    fn https_url(&self) -> String {
        format!("https://localhost:{}{HOOK_PATH}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Closes the listener and every open connection.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Records one request and answers 200 (or never, with `hang`).
async fn serve<S>(mut stream: S, sink: Arc<Mutex<Vec<Request>>>, hang: bool)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    sink.lock().unwrap().push(request);
    if hang {
        std::future::pending::<()>().await;
    }
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await;
    let _ = stream.shutdown().await;
}

/// The value of header `name` in a request head (names compare
/// case-insensitively, as HTTP says).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The head, then as many body bytes as Content-Length announces.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Request> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            let length: usize = header(&head, "content-length")?.parse().ok()?;
            if got.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&got[end + 4..end + 4 + length]).into_owned();
                return Some(Request { head, body });
            }
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_identical_mismatches_sends_exactly_one_webhook() {
    let pg = Pg::start();
    pg.sql(SCHEMA);
    let receiver = Receiver::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(pg.port(), &config(dir.path(), &receiver.url(), ""));
    assert_eq!(proxy.metric(OK), 0.0, "registered at 0");
    assert!(
        proxy.metrics_text().contains(&format!("{DROPPED} 0")),
        "every result series exists from the start:\n{}",
        proxy.metrics_text()
    );

    let client = connect(proxy.port).await;
    for _ in 0..20 {
        read(&client, 7).await;
    }
    // All twenty compared, stored (a new incident is announced after the
    // write that stored it), and the one alert delivered.
    wait_metric(
        &proxy,
        "pgshadow_comparisons_total{result=\"mismatch\"}",
        20.0,
    );
    wait_until(Duration::from_secs(30), || {
        (stored_outcomes(&proxy) == 20).then_some(())
    })
    .unwrap_or_else(|| panic!("stored {} outcomes", stored_outcomes(&proxy)));
    wait_metric(&proxy, OK, 1.0);

    let opened: Vec<String> = proxy
        .logs()
        .into_iter()
        .filter(|l| l.contains("incident opened"))
        .collect();
    assert_eq!(opened.len(), 1, "one incident: {opened:#?}");
    let id = field(&opened[0], "incident").unwrap().to_string();
    let fingerprint = field(&opened[0], "fingerprint").unwrap().to_string();

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "exactly one webhook: {requests:#?}");
    let request = &requests[0];
    assert!(
        request
            .head
            .starts_with(&format!("POST {HOOK_PATH} HTTP/1.1\r\n")),
        "{}",
        request.head
    );
    assert_eq!(
        header(&request.head, "content-type"),
        Some("application/json"),
        "{}",
        request.head
    );
    let message: Value = serde_json::from_str(&request.body).expect("JSON body");
    let text = message["text"].as_str().expect("a Slack `text`");
    for part in [
        format!("new incident {id}"),
        "mismatch (values) on title".to_string(),
        format!("fingerprint {fingerprint}"),
        "SELECT id, title, body FROM items WHERE id = $1".to_string(),
        format!("http://127.0.0.1:{}/incidents/{id}", proxy.admin_port),
    ] {
        assert!(text.contains(&part), "{part:?} not in {text}");
    }
    assert!(message["blocks"].as_array().is_some_and(|b| !b.is_empty()));
    assert!(
        !request.body.contains("Wrong title"),
        "row values stay out of alerts: {}",
        request.body
    );
    assert_eq!(proxy.metric(ERROR), 0.0);
    assert_eq!(proxy.metric(DROPPED), 0.0);

    // More of the same later: counted in the incident, no new alert.
    for _ in 0..5 {
        read(&client, 7).await;
    }
    wait_until(Duration::from_secs(30), || {
        (stored_outcomes(&proxy) == 25).then_some(())
    })
    .unwrap_or_else(|| panic!("stored {} outcomes", stored_outcomes(&proxy)));
    assert_eq!(receiver.requests().len(), 1);
    assert_eq!(proxy.metric(OK), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_keeps_relaying_while_the_webhook_receiver_hangs_or_is_gone() {
    let pg = Pg::start();
    pg.sql(SCHEMA);
    let receiver = Receiver::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    // Each attempt may hang for 20 s: far longer than the reads below.
    let proxy = Proxy::start(
        pg.port(),
        &config(
            dir.path(),
            &receiver.url(),
            "timeout_ms = 20000\nmax_retries = 1",
        ),
    );
    let client = connect(proxy.port).await;

    // Incident 1 (wrong title): its alert goes to a receiver that hangs.
    read(&client, 7).await;
    wait_until(Duration::from_secs(30), || {
        (receiver.requests().len() == 1).then_some(())
    })
    .expect("the webhook reached the receiver");
    // The webhook is stuck waiting for an answer; the application is not.
    for round in 0..10 {
        for id in 1..=10 {
            read(&client, id).await;
        }
        assert_eq!(
            proxy.metric(ERROR) + proxy.metric(OK),
            0.0,
            "round {round}: the delivery is still hanging"
        );
    }
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 1);

    // The receiver goes away: the hanging attempt fails, the retry is
    // refused, and the failure is counted.
    receiver.stop().await;
    wait_metric(&proxy, ERROR, 1.0);

    // Incident 2 (wrong body) while nothing listens: reads still succeed,
    // the alert fails after its retry and is counted too.
    for _ in 0..10 {
        read(&client, 11).await;
    }
    wait_metric(&proxy, ERROR, 2.0);
    for id in 1..=20 {
        read(&client, id).await;
    }
    assert_eq!(proxy.metric(OK), 0.0);
    assert_eq!(proxy.metric(DROPPED), 0.0);
    let failures: Vec<String> = proxy
        .logs()
        .into_iter()
        .filter(|l| l.contains("webhook delivery failed"))
        .collect();
    assert_eq!(failures.len(), 2, "{failures:#?}");
    assert!(
        failures.iter().all(|l| !l.contains("secret")),
        "the webhook URL's secret path stays out of logs: {failures:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_webhook_delivers_over_https_to_a_receiver_with_a_private_ca() {
    let pg = Pg::start();
    pg.sql(SCHEMA);
    let certs = tempfile::tempdir().unwrap();
    let ca = harness::certs::TestCa::new("receiver CA");
    let ca_path = ca.write(certs.path(), "ca.crt");
    let other_ca = harness::certs::TestCa::new("unrelated CA").write(certs.path(), "other.crt");
    let (cert, key) = ca
        .issue(&["localhost", "127.0.0.1"])
        .write(certs.path(), "receiver");
    let tls = || pgshadow::tls::ServerTls::load(&cert, &key, &[]).unwrap();

    // Trusting the receiver's CA: delivered.
    let receiver = Receiver::start_tls(tls()).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(
        pg.port(),
        &config(
            dir.path(),
            &receiver.https_url(),
            &format!("tls_root_cert = \"{}\"", ca_path.display()),
        ),
    );
    let client = connect(proxy.port).await;
    read(&client, 7).await;
    wait_metric(&proxy, OK, 1.0);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert!(requests[0]
        .head
        .starts_with(&format!("POST {HOOK_PATH} HTTP/1.1")));
    let message: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert!(message["text"]
        .as_str()
        .unwrap()
        .contains("mismatch (values) on title"));
    drop(proxy);

    // Trusting another CA: refused, and the log says why without the URL.
    let receiver = Receiver::start_tls(tls()).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(
        pg.port(),
        &config(
            dir.path(),
            &receiver.https_url(),
            &format!(
                "tls_root_cert = \"{}\"\nmax_retries = 0",
                other_ca.display()
            ),
        ),
    );
    let client = connect(proxy.port).await;
    read(&client, 7).await;
    wait_metric(&proxy, ERROR, 1.0);
    assert!(receiver.requests().is_empty());
    let failure = proxy.wait_for_log(Duration::from_secs(5), |l| {
        l.contains("webhook delivery failed")
    });
    assert!(
        failure.contains("UnknownIssuer") || failure.to_lowercase().contains("unknown"),
        "{failure}"
    );
    assert!(!failure.contains("secret"), "{failure}");
}
