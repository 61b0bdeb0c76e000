//! The webhook: incident events from the store writer become HTTP POSTs
//! of Slack-compatible JSON ([`super::message`]).
//!
//! Two tasks, so that nothing upstream ever waits for a receiver:
//!
//! - **intake** follows the writer's broadcast of [`IncidentEvent`]s,
//!   applies the per-incident rate limit and `try_send`s the rendered
//!   message into a bounded queue. A full queue drops the alert; so does
//!   falling behind the broadcast. Both are counted
//!   (`pgshadow_webhook_deliveries_total{result="dropped"}`) and logged.
//!   The writer's `send` on the broadcast never blocks either.
//! - **delivery** POSTs one message at a time, each attempt bounded by
//!   `alerts.timeout_ms`, retrying with exponential backoff up to
//!   `alerts.max_retries` times when the failure may pass (no answer,
//!   5xx, 429); the final result is counted as `ok` or `error`.
//!
//! A receiver that hangs or is gone therefore costs one task's time and a
//! few counted drops, never a relayed byte.

use super::client::{PostError, WebhookClient};
use super::message;
use super::rate_limit::RateLimiter;
use crate::config::AlertsConfig;
use crate::observability::metrics::WEBHOOK_DELIVERIES_TOTAL;
use crate::store::IncidentEvent;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Alerts waiting for delivery; beyond, new ones are dropped and counted.
pub const QUEUE_CAPACITY: usize = 64;

/// Wait before the first retry; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How the webhook delivers: `[alerts]` with the URL parsed and the page
/// link's base resolved.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Where and how alerts are POSTed.
    pub client: WebhookClient,
    /// Base of incident links: `http://<admin address>` or
    /// `alerts.page_url`.
    pub page_base: String,
    /// Least time between two alerts about one incident.
    pub min_interval: Duration,
    /// Further attempts after a failure that may pass.
    pub max_retries: u32,
}

impl WebhookSettings {
    /// The settings `[alerts]` describes, `None` when no `webhook_url` is
    /// set. `admin_address` is the admin server's bound address, the
    /// default base of incident links.
    pub fn from_config(
        alerts: &AlertsConfig,
        admin_address: SocketAddr,
    ) -> Result<Option<WebhookSettings>, String> {
        let Some(url) = &alerts.webhook_url else {
            return Ok(None);
        };
        let url = url.clone();
        let timeout = Duration::from_millis(alerts.timeout_ms.max(1));
        let client = WebhookClient::new(url, timeout, alerts.tls_root_cert.as_deref())
            .map_err(|e| format!("alerts.tls_root_cert: {e}"))?;
        let page_base = match &alerts.page_url {
            Some(base) => base.trim_end_matches('/').to_string(),
            None => format!("http://{admin_address}"),
        };
        Ok(Some(WebhookSettings {
            client,
            page_base,
            min_interval: Duration::from_secs(alerts.min_interval_seconds),
            max_retries: alerts.max_retries,
        }))
    }
}

/// One rendered alert on its way out.
struct Delivery {
    incident: String,
    body: Vec<u8>,
}

/// The running webhook.
pub struct Webhook {
    settings: Arc<ArcSwap<WebhookSettings>>,
    stop: CancellationToken,
    intake: JoinHandle<()>,
    delivery: JoinHandle<()>,
}

impl Webhook {
    /// Starts both tasks on the current runtime, following `events` (from
    /// [`crate::store::StoreWriter::subscribe`]). Registers the three
    /// `pgshadow_webhook_deliveries_total` series at 0.
    pub fn start(settings: WebhookSettings, events: broadcast::Receiver<IncidentEvent>) -> Webhook {
        for result in ["ok", "error", "dropped"] {
            metrics::counter!(WEBHOOK_DELIVERIES_TOTAL, "result" => result).increment(0);
        }
        let settings = Arc::new(ArcSwap::from_pointee(settings));
        let (queue, pending) = mpsc::channel(QUEUE_CAPACITY);
        let stop = CancellationToken::new();
        let intake = tokio::spawn(
            Intake {
                settings: settings.clone(),
                limiter: RateLimiter::default(),
                queue,
            }
            .run(events, stop.clone()),
        );
        let delivery = tokio::spawn(deliver_all(settings.clone(), pending));
        Webhook {
            settings,
            stop,
            intake,
            delivery,
        }
    }

    /// Replaces the settings (a config reload): the next alert uses them.
    pub fn update(&self, settings: WebhookSettings) {
        self.settings.store(Arc::new(settings));
    }

    /// Stops following events once those already raised are queued, then
    /// gives the queue up to `grace` to be delivered; what is left then is
    /// abandoned. Called after the store writer's last flush, so the
    /// incidents it opened are still announced.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.cancel();
        let _ = self.intake.await;
        let abort = self.delivery.abort_handle();
        if tokio::time::timeout(grace, self.delivery).await.is_err() {
            abort.abort();
            tracing::warn!("webhook alerts still undelivered at shutdown were abandoned");
        }
    }
}

/// The intake task's state.
struct Intake {
    settings: Arc<ArcSwap<WebhookSettings>>,
    limiter: RateLimiter,
    queue: mpsc::Sender<Delivery>,
}

impl Intake {
    async fn run(
        mut self,
        mut events: broadcast::Receiver<IncidentEvent>,
        stop: CancellationToken,
    ) {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                received = events.recv() => match received {
                    Ok(event) => self.accept(&event),
                    Err(RecvError::Lagged(missed)) => drop_alerts(missed, None, "fell behind the incident events"),
                    Err(RecvError::Closed) => return,
                },
            }
        }
        // Shutdown: events already raised (the writer's last flush) still
        // go into the queue.
        loop {
            match events.try_recv() {
                Ok(event) => self.accept(&event),
                Err(TryRecvError::Lagged(missed)) => {
                    drop_alerts(missed, None, "fell behind the incident events")
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
    }

    /// Rate-limits, renders and queues one event without waiting.
    fn accept(&mut self, event: &IncidentEvent) {
        let settings = self.settings.load();
        let (IncidentEvent::Opened(notice) | IncidentEvent::Unmuted(notice)) = event;
        let now = Instant::now();
        if !self.limiter.allows(&notice.id, now, settings.min_interval) {
            tracing::debug!(incident = %notice.id, "webhook alert rate-limited");
            return;
        }
        let body = message::payload(event, &settings.page_base).to_string();
        let delivery = Delivery {
            incident: notice.id.clone(),
            body: body.into_bytes(),
        };
        match self.queue.try_send(delivery) {
            Ok(()) => self.limiter.record(&notice.id, now, settings.min_interval),
            Err(mpsc::error::TrySendError::Full(_)) => {
                drop_alerts(1, Some(&notice.id), "the webhook queue is full")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

fn drop_alerts(n: u64, incident: Option<&str>, why: &str) {
    metrics::counter!(WEBHOOK_DELIVERIES_TOTAL, "result" => "dropped").increment(n);
    tracing::warn!(
        alerts = n,
        incident = incident.unwrap_or(""),
        "webhook alert dropped: {why}"
    );
}

/// The delivery task: one alert at a time until the intake is gone.
async fn deliver_all(
    settings: Arc<ArcSwap<WebhookSettings>>,
    mut pending: mpsc::Receiver<Delivery>,
) {
    while let Some(delivery) = pending.recv().await {
        let settings = settings.load_full();
        let result = deliver(&settings, &delivery.body).await;
        match result {
            Ok((status, attempts)) => {
                metrics::counter!(WEBHOOK_DELIVERIES_TOTAL, "result" => "ok").increment(1);
                tracing::info!(
                    incident = %delivery.incident,
                    webhook = %settings.client.url(),
                    status,
                    attempts,
                    "webhook delivered"
                );
            }
            Err((error, attempts)) => {
                metrics::counter!(WEBHOOK_DELIVERIES_TOTAL, "result" => "error").increment(1);
                tracing::warn!(
                    incident = %delivery.incident,
                    webhook = %settings.client.url(),
                    attempts,
                    %error,
                    "webhook delivery failed"
                );
            }
        }
    }
}

/// Why a delivery failed for good.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error(transparent)]
    Post(#[from] PostError),
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
}

/// POSTs `body`, retrying what may pass; returns the final status or
/// error and the attempts made.
async fn deliver(
    settings: &WebhookSettings,
    body: &[u8],
) -> Result<(u16, u32), (DeliveryError, u32)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match settings.client.post_json(body).await {
            Ok(status) if (200..300).contains(&status) => return Ok((status, attempt)),
            Ok(status) => DeliveryError::Status(status),
            Err(e) => DeliveryError::Post(e),
        };
        let may_pass = match &error {
            DeliveryError::Post(_) => true,
            // Rate limited, timed out or broken on the receiver's side;
            // other 4xx (a revoked hook, a rejected payload) stay so.
            DeliveryError::Status(s) => *s == 408 || *s == 429 || *s >= 500,
        };
        if !may_pass || attempt > settings.max_retries {
            return Err((error, attempt));
        }
        tracing::debug!(%error, attempt, "webhook attempt failed; retrying");
        tokio::time::sleep(backoff(attempt)).await;
    }
}

/// Wait after the `attempt`th failure: 0.5 s, 1 s, 2 s, … up to 30 s.
fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::signature::IncidentKind;
    use crate::store::IncidentNotice;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn event(id: &str) -> IncidentEvent {
        IncidentEvent::Opened(IncidentNotice {
            id: id.into(),
            fingerprint: "90356c2a5f55a6f1".into(),
            kind: IncidentKind::NewError,
            diff_kind: None,
            columns: Vec::new(),
            old_sqlstate: None,
            new_sqlstate: Some("42P01".into()),
            client_sql: "SELECT 1".into(),
            database: "app".into(),
            summary: None,
            count: 1,
        })
    }

    fn settings(url: &str) -> WebhookSettings {
        let url = crate::config::WebhookUrl::parse(url).unwrap();
        WebhookSettings {
            client: WebhookClient::new(url, Duration::from_millis(500), None).unwrap(),
            page_base: "http://admin".into(),
            min_interval: Duration::from_secs(300),
            max_retries: 0,
        }
    }

    /// Reads one request: its head, then as many body bytes as its
    /// Content-Length announces.
    async fn read_request(s: &mut tokio::net::TcpStream) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap();
                if body.len() >= length {
                    return body.to_string();
                }
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "request cut short");
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// Answers every request with `status` and reports its body.
    async fn receiver(status: u16) -> (String, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let _ = tx.send(read_request(&mut s).await);
                let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        (url, rx)
    }

    #[test]
    fn a_full_queue_drops_alerts_without_using_up_their_rate_limit() {
        let (queue, mut pending) = mpsc::channel(1);
        let mut intake = Intake {
            settings: Arc::new(ArcSwap::from_pointee(settings("http://127.0.0.1:9/"))),
            limiter: RateLimiter::default(),
            queue,
        };
        intake.accept(&event("aaaaaaaaaaaa"));
        intake.accept(&event("bbbbbbbbbbbb"));
        assert_eq!(pending.try_recv().unwrap().incident, "aaaaaaaaaaaa");
        assert!(pending.try_recv().is_err(), "the second alert was dropped");
        // The dropped alert never went out, so it may still go.
        intake.accept(&event("bbbbbbbbbbbb"));
        assert_eq!(pending.try_recv().unwrap().incident, "bbbbbbbbbbbb");
        // The first one did: rate-limited now.
        intake.accept(&event("aaaaaaaaaaaa"));
        assert!(pending.try_recv().is_err());
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn repeated_events_of_one_incident_are_sent_once() {
        let (url, mut bodies) = receiver(200).await;
        let (tx, rx) = broadcast::channel(16);
        let webhook = Webhook::start(settings(&url), rx);
        for _ in 0..5 {
            tx.send(event("aaaaaaaaaaaa")).unwrap();
        }
        tx.send(event("bbbbbbbbbbbb")).unwrap();
        webhook.shutdown(Duration::from_secs(10)).await;
        let mut got = Vec::new();
        while let Ok(body) = bodies.try_recv() {
            got.push(body);
        }
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("aaaaaaaaaaaa"), "{}", got[0]);
        assert!(got[1].contains("bbbbbbbbbbbb"), "{}", got[1]);
        let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
        assert!(v["text"].as_str().unwrap().contains("new_error"));
    }

    #[tokio::test]
    async fn permanent_rejections_are_not_retried_and_passing_failures_are() {
        let (url, mut bodies) = receiver(404).await;
        let mut s = settings(&url);
        s.max_retries = 3;
        let err = deliver(&s, b"{}").await.unwrap_err();
        assert!(matches!(err.0, DeliveryError::Status(404)), "{}", err.0);
        assert_eq!(err.1, 1, "a 404 is not retried");
        assert_eq!(bodies.recv().await.as_deref(), Some("{}"));

        let (url, _) = receiver(503).await;
        let mut s = settings(&url);
        s.max_retries = 1;
        let err = deliver(&s, b"{}").await.unwrap_err();
        assert!(matches!(err.0, DeliveryError::Status(503)), "{}", err.0);
        assert_eq!(err.1, 2, "a 503 is retried");
    }
}
