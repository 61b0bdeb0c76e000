//! `/readyz`: can this instance do its job right now?
//!
//! Ready means the upstream accepts TCP connections (a connect, closed at
//! once, within at most two seconds) and the mismatch store answers a
//! trivial query. A load balancer or Kubernetes takes an instance that is
//! not ready out of rotation; `/healthz` only says the process is alive.

use super::AdminState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tokio::net::TcpStream;

/// The body of `/readyz`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// Both checks passed.
    pub ready: bool,
    /// `ok`, or why the upstream cannot be reached.
    pub upstream: String,
    /// `ok`, `disabled` (no store: the shadow is off), or why it fails.
    pub store: String,
    /// When not ready: one sentence saying what is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /readyz`: 200 when ready, 503 with the reason otherwise.
pub async fn ready(State(state): State<AdminState>) -> Response {
    let (upstream, store) = tokio::join!(check_upstream(&state), check_store(&state));
    let upstream_ok = upstream.is_ok();
    let store_ok = store.is_ok();
    let mut problems = Vec::new();
    let upstream = upstream.unwrap_or_else(|e| {
        problems.push(e.clone());
        e
    });
    let store = store.unwrap_or_else(|e| {
        problems.push(e.clone());
        e
    });
    let ready = upstream_ok && store_ok;
    let body = Readiness {
        ready,
        upstream,
        store,
        error: (!ready).then(|| problems.join("; ")),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn check_upstream(state: &AdminState) -> Result<String, String> {
    let (host, port) = (
        state.inner.upstream_host.as_str(),
        state.inner.upstream_port,
    );
    let shown = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match tokio::time::timeout(state.inner.ready_timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok("ok".into()),
        Ok(Err(e)) => Err(format!("upstream {shown} unreachable: {e}")),
        Err(_) => Err(format!(
            "upstream {shown} unreachable: no connection within {} ms",
            state.inner.ready_timeout.as_millis()
        )),
    }
}

async fn check_store(state: &AdminState) -> Result<String, String> {
    let Some(writer) = state.store() else {
        return Ok("disabled".into());
    };
    match tokio::time::timeout(state.inner.ready_timeout, writer.store().ping()).await {
        Ok(Ok(())) => Ok("ok".into()),
        Ok(Err(e)) => Err(format!("mismatch store {}: {e}", writer.store().url())),
        Err(_) => Err(format!(
            "mismatch store {} did not answer within {} ms",
            writer.store().url(),
            state.inner.ready_timeout.as_millis()
        )),
    }
}
