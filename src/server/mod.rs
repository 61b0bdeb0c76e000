//! The application, assembled: what `pgshadow run` serves, and `pgshadow
//! demo` starts too.
//!
//! As mini-redis's `server::run` is handed its listener, the proxy is
//! handed its parts: the server binds the proxy's listener, assembles the
//! mismatch store, its writer, the shadow and the plan caches
//! ([`parts`]), and gives the proxy only what its sessions hand
//! statements to ([`handoff`]). The admin server and the webhook get the
//! shadow and the store from here too, and the SIGHUP reloader is
//! installed before the proxy is announced.
//!
//! Files: `parts.rs` (assembly from the configuration), `handoff.rs` (the
//! proxy's [`Handoff`](crate::proxy::Handoff) over the shadow and the plan
//! cache).

pub mod handoff;
pub mod parts;

use crate::admin::AdminServer;
use crate::config::Config;
use crate::proxy::Proxy;
use crate::shadow::Shadow;
use crate::store::StoreWriter;
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use parts::Parts;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A bound proxy and admin server with the parts behind them: the serving
/// part of `pgshadow run`.
///
/// `pgshadow demo` starts its proxy through this too, so the demo shows
/// exactly what `run` does (shadow, mismatch store, admin endpoints) and
/// cannot drift from it.
pub struct Server {
    config: Arc<Config>,
    proxy: Proxy,
    parts: Parts,
    admin: AdminServer,
    /// Alerts on new incidents, when `alerts.webhook_url` is set.
    webhook: Option<crate::alerts::Webhook>,
}

impl Server {
    /// Binds `listen.address`, starts the shadow and opens the mismatch
    /// store when `shadow.enabled`, binds `admin.address`, and logs both
    /// addresses (`listening`, `admin server listening`: tests and
    /// scripts read the ports chosen for port 0 from those lines).
    ///
    /// `before_announce` runs once the proxy is bound and its parts are
    /// assembled, before the first line announces it, with the TLS
    /// certificates in use (listener and admin server): `run` installs its
    /// SIGHUP handler there, so a reload can never hit a proxy that looks
    /// up but would still die of the signal.
    pub async fn bind(
        config: Arc<Config>,
        metrics: PrometheusHandle,
        before_announce: impl FnOnce(&Parts, Vec<Arc<crate::tls::ServerTls>>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Server> {
        let proxy = Proxy::bind(config.clone()).await?;
        let parts = Parts::assemble(&config).await?;
        let admin_tls = AdminServer::load_tls(&config)?;
        let certificates = proxy
            .client_tls()
            .into_iter()
            .chain(admin_tls.as_ref())
            .cloned()
            .collect();
        before_announce(&parts, certificates)?;
        let address = proxy
            .local_addr()
            .context("cannot read the bound address")?;
        tracing::info!(
            %address,
            upstream = %config.upstream.display_address(),
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        );
        let admin = AdminServer::bind(
            &config,
            metrics,
            parts.shadow.clone(),
            parts.store.clone(),
            address,
            admin_tls,
        )
        .await?;
        tracing::info!(address = %admin.local_addr()?, "admin server listening");
        let webhook =
            crate::alerts::start_webhook(&config, admin.local_addr()?, parts.store.as_ref())?;
        Ok(Server {
            config,
            proxy,
            parts,
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

    /// The shadow, when enabled (for run-time controls).
    pub fn shadow(&self) -> Option<&Arc<Shadow>> {
        self.parts.shadow.as_ref()
    }

    /// The mismatch store's writer, when the shadow is enabled: the store
    /// to query ([`StoreWriter::store`]) and incident events
    /// ([`StoreWriter::subscribe`]).
    pub fn store_writer(&self) -> Option<&Arc<StoreWriter>> {
        self.parts.store.as_ref()
    }

    /// Serves until the first message on `shutdown`, then shuts down
    /// gracefully (a second message cuts the grace period short; see
    /// [`Proxy::run`]). Outcomes still in memory are written once the
    /// sessions have ended; the admin server stops last, so `/metrics`
    /// stays scrapeable during the grace period.
    pub async fn run(self, shutdown: mpsc::Receiver<()>) {
        let admin_stop = CancellationToken::new();
        let admin_task = tokio::spawn(self.admin.run(admin_stop.clone()));
        let handoff = self.parts.handoff(&self.config);
        self.proxy.run(handoff, shutdown).await;
        if let Some(store) = &self.parts.store {
            // Outcomes still in memory are written before the process ends.
            store.shutdown().await;
        }
        tracing::info!("shutdown complete");
        if let Some(webhook) = self.webhook {
            // After the store's last flush, so its new incidents still alert.
            webhook.shutdown(std::time::Duration::from_secs(5)).await;
        }
        admin_stop.cancel();
        let _ = admin_task.await;
    }
}
