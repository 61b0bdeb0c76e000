//! The serving part of `pgshadow run`, which `pgshadow demo` starts too.

use crate::admin::AdminServer;
use crate::config::Config;
use crate::proxy::Proxy;
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A bound proxy and admin server: the serving part of `pgshadow run`.
///
/// `pgshadow demo` starts its proxy through this too, so the demo shows
/// exactly what `run` does (shadow, mismatch store, admin endpoints) and
/// cannot drift from it.
pub struct Server {
    proxy: Proxy,
    admin: AdminServer,
    /// Alerts on new incidents, when `alerts.webhook_url` is set.
    webhook: Option<crate::alerts::Webhook>,
}

impl Server {
    /// Binds `listen.address` (starting the shadow and opening the
    /// mismatch store when `shadow.enabled`) and `admin.address`, and logs
    /// both addresses (`listening`, `admin server listening`: tests and
    /// scripts read the ports chosen for port 0 from those lines).
    ///
    /// `before_announce` runs once the proxy is bound and before the first
    /// line announces it, with the TLS certificates in use (listener and
    /// admin server): `run` installs its SIGHUP handler there, so a
    /// reload can never hit a proxy that looks up but would still die of
    /// the signal.
    pub async fn bind(
        config: Arc<Config>,
        metrics: PrometheusHandle,
        before_announce: impl FnOnce(&Proxy, Vec<Arc<crate::tls::ServerTls>>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Server> {
        let proxy = Proxy::bind(config.clone()).await?;
        let admin_tls = AdminServer::load_tls(&config)?;
        let certificates = proxy
            .client_tls()
            .into_iter()
            .chain(admin_tls.as_ref())
            .cloned()
            .collect();
        before_announce(&proxy, certificates)?;
        let address = proxy
            .local_addr()
            .context("cannot read the bound address")?;
        tracing::info!(
            %address,
            upstream = %config.upstream.display_address(),
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        );
        let admin = AdminServer::bind(&config, metrics, &proxy, admin_tls).await?;
        tracing::info!(address = %admin.local_addr()?, "admin server listening");
        let webhook =
            crate::alerts::start_webhook(&config, admin.local_addr()?, proxy.store_writer())?;
        Ok(Server {
            proxy,
            admin,
            webhook,
        })
    }

    /// The address clients connect to.
    pub fn proxy_address(&self) -> std::io::Result<SocketAddr> {
        self.proxy.local_addr()
    }

    /// The admin server's address (`/metrics`, `/healthz`, the page).
    pub fn admin_address(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// The proxy, for its shadow and mismatch store handles.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Serves until the first message on `shutdown`, then shuts down
    /// gracefully (a second message cuts the grace period short; see
    /// [`Proxy::run`]). The admin server stops once the proxy has finished,
    /// so `/metrics` stays scrapeable during the grace period.
    pub async fn run(self, shutdown: mpsc::Receiver<()>) {
        let admin_stop = CancellationToken::new();
        let admin_task = tokio::spawn(self.admin.run(admin_stop.clone()));
        self.proxy.run(shutdown).await;
        if let Some(webhook) = self.webhook {
            // After the store's last flush, so its new incidents still alert.
            webhook.shutdown(std::time::Duration::from_secs(5)).await;
        }
        admin_stop.cancel();
        let _ = admin_task.await;
    }
}
