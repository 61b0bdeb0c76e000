//! The admin HTTP server: metrics and health for operators.
//!
//! Serves `/metrics` (Prometheus text format) and `/healthz` on
//! `admin.address`. It runs beside the proxy on the same runtime and never
//! touches the relay.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::OnceLock;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::observability::metrics::{describe, DURATION_BUCKETS, SHADOW_DURATION_SECONDS};

/// Why the admin server could not start.
#[derive(Debug, Error)]
pub enum AdminError {
    /// The address is taken or not ours.
    #[error("cannot listen on admin address {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    /// The metrics recorder could not be installed.
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
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
        .install_recorder()
        .map_err(|e| AdminError::Recorder(e.to_string()))?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// A bound admin server.
pub struct AdminServer {
    listener: TcpListener,
    metrics: PrometheusHandle,
}

impl AdminServer {
    /// Binds `address`.
    pub async fn bind(address: SocketAddr, metrics: PrometheusHandle) -> Result<Self, AdminError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AdminError::Bind { address, source })?;
        Ok(Self { listener, metrics })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` fires.
    pub async fn run(self, stop: CancellationToken) {
        let app = Router::new()
            .route("/metrics", get(render_metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .with_state(self.metrics);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin server failed");
        }
    }
}

async fn render_metrics(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}
