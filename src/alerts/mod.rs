//! Alerts: telling people about new incidents (DESIGN §7).
//!
//! The mismatch store's writer raises an event when an incident is stored
//! for the first time and when a muted incident's mute ends
//! ([`crate::store::IncidentEvent`]); the [`webhook`] turns each into one
//! Slack-compatible POST to `alerts.webhook_url`, rate-limited per
//! incident, retried with backoff, and never in anybody's way.
//!
//! - [`webhook`]: the two tasks (intake, delivery) and their settings;
//! - [`message`]: what an alert says;
//! - [`rate_limit`]: one alert per incident per `min_interval_seconds`;
//! - [`client`]: the HTTP(S) client that POSTs it (reqwest over rustls).

pub mod client;
pub mod message;
pub mod rate_limit;
pub mod webhook;

pub use webhook::{Webhook, WebhookSettings};

use crate::config::Config;
use crate::store::StoreWriter;
use std::net::SocketAddr;
use std::sync::Arc;

/// Starts the webhook when `alerts.webhook_url` is set and the proxy has a
/// mismatch store (`shadow.enabled`); `None` otherwise, with a warning
/// when a URL is configured but there will be no incidents to send.
/// `admin_address` is the admin server's bound address, the default base
/// of the incident links in alerts.
pub fn start_webhook(
    config: &Config,
    admin_address: SocketAddr,
    store: Option<&Arc<StoreWriter>>,
) -> anyhow::Result<Option<Webhook>> {
    let Some(settings) =
        WebhookSettings::from_config(&config.alerts, admin_address).map_err(anyhow::Error::msg)?
    else {
        return Ok(None);
    };
    let Some(store) = store else {
        tracing::warn!(
            "alerts.webhook_url is set but shadow.enabled is false: there is no mismatch store, \
             so no incidents and no webhook alerts"
        );
        return Ok(None);
    };
    if config.alerts.page_url.is_none() && admin_address.ip().is_unspecified() {
        tracing::warn!(
            %admin_address,
            "webhook alerts link to the admin server at an unspecified address; \
             set alerts.page_url to the address people reach it at"
        );
    }
    tracing::info!(
        webhook = %settings.client.url(),
        min_interval_seconds = settings.min_interval.as_secs(),
        "webhook alerts on"
    );
    Ok(Some(Webhook::start(settings, store.subscribe())))
}
