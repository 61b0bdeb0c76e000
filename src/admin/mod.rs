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
//!
//! Files, each naming only those listed before it: `error.rs` (why the
//! server could not start), `credentials.rs` (the token and allowed
//! hosts), `metrics.rs` (the recorder behind `/metrics`), `state.rs`
//! (what every handler works with), `html.rs`, `input.rs`, `queries.rs`
//! and `plans.rs` (escaping, request bodies, views of the store, plan
//! rendering), `api.rs`, `health.rs`, `layout.rs` (the frame of every
//! page), `incident.rs` (one incident's view), `page.rs`, `login.rs`,
//! `auth.rs` and `tls.rs`; this file binds the server and lists its
//! routes.

pub mod api;
pub mod auth;
mod credentials;
mod error;
pub mod health;
mod html;
mod incident;
pub mod input;
mod layout;
mod login;
mod metrics;
pub mod page;
mod plans;
mod queries;
mod state;
mod tls;

pub use credentials::{AllowedHosts, Token, COOKIE};
pub use error::AdminError;
pub use metrics::{install_metrics, MetricsSource};
pub use state::AdminState;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::shadow::Shadow;
use crate::store::StoreWriter;
use crate::tls::ServerTls;

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
        .route("/page.js", get(layout::script))
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
        layout::not_found("No such page.").into_response()
    }
}
