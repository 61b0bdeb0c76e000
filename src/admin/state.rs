//! What every handler of the admin server works with.

use super::credentials::{AllowedHosts, Token};
use super::error::AdminError;
use super::metrics::MetricsSource;
use crate::config::Config;
use crate::shadow::Shadow;
use crate::store::StoreWriter;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the handlers work with: the metrics, the running shadow and store
/// (absent when the shadow is disabled) and the few config values the
/// admin surface needs. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) metrics: MetricsSource,
    pub(super) upstream_host: String,
    pub(super) upstream_port: u16,
    /// The proxy's listening address, when served beside it.
    pub(super) listener: Option<SocketAddr>,
    /// How long `/readyz` waits for a TCP connection to the upstream.
    pub(super) ready_timeout: Duration,
    /// `shadow.sample_rate` from the file, shown while there is no shadow.
    pub(super) configured_sample_rate: f64,
    pub(super) token: Option<Token>,
    /// Host names the server answers to.
    pub(super) hosts: AllowedHosts,
    /// Served over HTTPS (session cookies are then `Secure`).
    pub(super) tls: bool,
    pub(super) shadow: Option<Arc<Shadow>>,
    pub(super) store: Option<Arc<StoreWriter>>,
}

/// Longest `/readyz` waits for the upstream: a readiness probe must answer
/// well within a load balancer's or kubelet's own timeout.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

impl AdminState {
    /// The state for `config`, with the proxy's shadow and store when the
    /// shadow is enabled (`None` for either answers 503 on the endpoints
    /// that need it).
    pub fn new(
        config: &Config,
        metrics: PrometheusHandle,
        shadow: Option<Arc<Shadow>>,
        store: Option<Arc<StoreWriter>>,
    ) -> Result<Self, AdminError> {
        let token = config
            .admin
            .resolve_token()
            .map_err(AdminError::Token)?
            .map(Token::new);
        Ok(Self {
            inner: Arc::new(Inner {
                metrics: MetricsSource::new(metrics, shadow.clone()),
                upstream_host: config.upstream.host.clone(),
                upstream_port: config.upstream.port,
                listener: None,
                ready_timeout: config.upstream.connect_timeout().min(READY_TIMEOUT),
                configured_sample_rate: config.shadow.sample_rate,
                token,
                hosts: AllowedHosts::new(&config.admin.allowed_hosts),
                tls: config.admin.tls_cert.is_some(),
                shadow,
                store,
            }),
        })
    }

    /// The running shadow, if the proxy started one.
    pub(super) fn shadow(&self) -> Option<&Arc<Shadow>> {
        self.inner.shadow.as_ref()
    }

    /// The mismatch store's writer, if the proxy opened a store.
    pub(super) fn store(&self) -> Option<&Arc<StoreWriter>> {
        self.inner.store.as_ref()
    }

    /// Whether changes need a bearer token.
    pub(super) fn token_required(&self) -> bool {
        self.inner.token.is_some()
    }
}
