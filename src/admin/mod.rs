//! The admin HTTP server: the on-call surface of DESIGN §7.
//!
//! Served on `admin.address`, beside the proxy on the same runtime; it
//! never touches the relay. What it serves:
//!
//! - `/metrics` (Prometheus text), `/healthz` (the process is up) and
//!   `/readyz` (the relay can serve: the upstream answers; the mismatch
//!   store is reported, never required): [`health`];
//! - the JSON API under `/api/`: incidents (list, show, their differing
//!   row ids as JSON or CSV, ack, mute, unmute),
//!   coverage, and the sampling controls (rate, kill switch): [`api`];
//! - the web page for people: the incident list at `/`, one incident with
//!   its side-by-side diff at `/incidents/{id}`, coverage at `/coverage`:
//!   [`page`].
//!
//! With a token (required off loopback), everything but health and
//! metrics needs it; the `Host` header is checked, changes must be JSON
//! and come from this origin: [`auth`], with the browser's login form in
//! [`login`]. `admin.tls_cert`/`admin.tls_key` serve HTTPS ([`tls`]).

pub mod api;
pub mod auth;
pub mod health;
mod html;
pub mod input;
mod login;
pub mod page;
mod plans;
mod queries;
mod tls;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::observability::metrics::{
    describe, BATCH_BUCKETS, DURATION_BUCKETS, KEY_LOOKUP_SECONDS, SHADOW_BATCH_SAMPLES,
    SHADOW_DURATION_SECONDS,
};
use crate::shadow::Shadow;
use crate::store::StoreWriter;
use crate::tls::ServerTls;
use auth::{AllowedHosts, Token};

/// Why the admin server could not start.
#[derive(Debug, Error)]
pub enum AdminError {
    /// The address is taken or not ours.
    #[error("cannot listen on admin address {address}: {source}")]
    Bind {
        /// The address from `admin.address`.
        address: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The metrics recorder could not be installed.
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
    /// `admin.token_env` names a variable that is unset or empty.
    #[error("admin token: {0}")]
    Token(String),
    /// `admin.tls_cert` / `admin.tls_key` cannot be used.
    #[error("admin TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// What `/metrics` shows: the recorder's text, with the relay's sharded
/// statement counts summed into their counters first
/// ([`crate::capture::counts`]).
#[derive(Clone)]
pub struct MetricsSource {
    handle: PrometheusHandle,
    shadow: Option<Arc<Shadow>>,
}

impl MetricsSource {
    /// Renders `handle`, bringing `shadow`'s counts up to date first.
    pub fn new(handle: PrometheusHandle, shadow: Option<Arc<Shadow>>) -> Self {
        Self { handle, shadow }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        if let Some(shadow) = &self.shadow {
            shadow.publish_counts();
        }
        self.handle.render()
    }
}

/// Installs the process-wide Prometheus recorder (once) and returns the
/// handle that renders it.
pub fn install_metrics() -> Result<PrometheusHandle, AdminError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(SHADOW_DURATION_SECONDS.to_string()),
            &DURATION_BUCKETS,
        )
        .map_err(|e| AdminError::Recorder(e.to_string()))?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(SHADOW_BATCH_SAMPLES.to_string()),
            &BATCH_BUCKETS,
        )
        .map_err(|e| AdminError::Recorder(e.to_string()))?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(KEY_LOOKUP_SECONDS.to_string()),
            &DURATION_BUCKETS,
        )
        .map_err(|e| AdminError::Recorder(e.to_string()))?
        .install_recorder()
        .map_err(|e| AdminError::Recorder(e.to_string()))?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// What the handlers work with: the metrics, the running shadow and store
/// (absent when the shadow is disabled) and the few config values the
/// admin surface needs. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: MetricsSource,
    upstream_host: String,
    upstream_port: u16,
    /// The proxy's listening address, when served beside it.
    listener: Option<SocketAddr>,
    /// How long `/readyz` waits for a TCP connection to the upstream.
    ready_timeout: Duration,
    /// `shadow.sample_rate` from the file, shown while there is no shadow.
    configured_sample_rate: f64,
    token: Option<Token>,
    /// Host names the server answers to.
    hosts: AllowedHosts,
    /// Served over HTTPS (session cookies are then `Secure`).
    tls: bool,
    shadow: Option<Arc<Shadow>>,
    store: Option<Arc<StoreWriter>>,
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
    fn shadow(&self) -> Option<&Arc<Shadow>> {
        self.inner.shadow.as_ref()
    }

    /// The mismatch store's writer, if the proxy opened a store.
    fn store(&self) -> Option<&Arc<StoreWriter>> {
        self.inner.store.as_ref()
    }

    /// Whether changes need a bearer token.
    fn token_required(&self) -> bool {
        self.inner.token.is_some()
    }
}

/// A bound admin server.
pub struct AdminServer {
    listener: TcpListener,
    state: AdminState,
    /// The certificate when serving HTTPS (SIGHUP re-reads it).
    tls: Option<Arc<ServerTls>>,
}

impl AdminServer {
    /// Binds `admin.address` for the proxy listening on `proxy_address`:
    /// its shadow and mismatch store (when the shadow is enabled) back the
    /// API and the page. `tls` is the certificate from
    /// [`AdminServer::load_tls`], when `admin.tls_cert` is set.
    pub async fn bind(
        config: &Config,
        metrics: PrometheusHandle,
        shadow: Option<Arc<Shadow>>,
        store: Option<Arc<StoreWriter>>,
        proxy_address: SocketAddr,
        tls: Option<Arc<ServerTls>>,
    ) -> Result<Self, AdminError> {
        let state = AdminState::new(config, metrics, shadow, store)?;
        let mut state = state;
        if let Some(inner) = Arc::get_mut(&mut state.inner) {
            inner.listener = Some(proxy_address);
        }
        let mut server = Self::bind_with(config.admin.address, state).await?;
        server.tls = tls;
        Ok(server)
    }

    /// The admin server's certificate, when `admin.tls_cert` is set.
    pub fn load_tls(config: &Config) -> Result<Option<Arc<ServerTls>>, AdminError> {
        match (&config.admin.tls_cert, &config.admin.tls_key) {
            (Some(cert), Some(key)) => {
                Ok(Some(Arc::new(ServerTls::load(cert, key, &[b"http/1.1"])?)))
            }
            _ => Ok(None),
        }
    }

    /// Binds `address` with a state built by hand (tests, embedding).
    pub async fn bind_with(address: SocketAddr, state: AdminState) -> Result<Self, AdminError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AdminError::Bind { address, source })?;
        Ok(Self {
            listener,
            state,
            tls: None,
        })
    }

    /// The certificate, when the server speaks HTTPS.
    pub fn tls(&self) -> Option<&Arc<ServerTls>> {
        self.tls.as_ref()
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` fires.
    pub async fn run(self, stop: CancellationToken) {
        let router = router(self.state);
        let served = match self.tls {
            None => {
                axum::serve(self.listener, router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            }
            Some(tls) => {
                axum::serve(tls::TlsListener::new(self.listener, tls), router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "admin server failed");
        }
    }
}

/// Every route of the admin server.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(health::ready))
        .route("/api/incidents", get(api::list_incidents))
        .route("/api/incidents/{id}", get(api::show_incident))
        .route("/api/incidents/{id}/ids", get(api::incident_ids))
        .route("/api/incidents/{id}/ack", post(api::ack))
        .route("/api/incidents/{id}/mute", post(api::mute))
        .route("/api/incidents/{id}/unmute", post(api::unmute))
        .route("/api/coverage", get(api::coverage))
        .route(
            "/api/sampling",
            get(api::sampling)
                .put(api::change_sampling)
                .post(api::change_sampling),
        )
        .route("/", get(page::incident_list))
        .route("/incidents/{id}", get(page::incident))
        .route("/coverage", get(page::coverage))
        .route("/page.js", get(page::script))
        .route("/login", get(login::show).post(login::login))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .with_state(state)
}

async fn render_metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.inner.metrics.render(),
    )
}

/// JSON for the API's paths, a small page for everything else.
async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    if uri.path().starts_with("/api/") {
        api::ApiError::not_found(format!("no such endpoint: {}", uri.path())).into_response()
    } else {
        page::not_found("No such page.").into_response()
    }
}
