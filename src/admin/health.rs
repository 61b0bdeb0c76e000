//! `/readyz`: can this instance serve applications right now?
//!
//! Ready means the relay can do its job: the proxy's listener is bound
//! (the admin server only starts once it is) and the upstream accepts TCP
//! connections (a connect, closed at once, within at most two seconds). A
//! load balancer or Kubernetes takes an instance that is not ready out of
//! rotation; `/healthz` only says the process is alive.
//!
//! The mismatch store is not part of it: a store outage costs coverage
//! records, never the application's queries, and must not take every
//! proxy out of rotation at once. The body still says how the store is,
//! from its last operation ([`crate::store::StoreHealth`]), without
//! touching it, so a hung store cannot slow the probe either.

use super::state::AdminState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tokio::net::TcpStream;

/// The body of `/readyz`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// The relay can serve: the upstream answers.
    pub ready: bool,
    /// `ok`, or why the upstream cannot be reached.
    pub upstream: String,
    /// The address applications connect to, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// Informational, never part of `ready`: `ok`, `disabled` (no store:
    /// the shadow is off), or `down: ` and why its last operation failed.
    pub store: String,
    /// When not ready: one sentence saying what is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /readyz`: 200 when the relay can serve, 503 with the reason
/// otherwise.
pub async fn ready(State(state): State<AdminState>) -> Response {
    let upstream = check_upstream(&state).await;
    let ready = upstream.is_ok();
    let error = upstream.as_ref().err().cloned();
    let body = Readiness {
        ready,
        upstream: upstream.unwrap_or_else(|e| e),
        listener: state.inner.listener.map(|a| a.to_string()),
        store: store_state(&state),
        error,
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

/// The store's last known state, without touching it.
fn store_state(state: &AdminState) -> String {
    let Some(writer) = state.store() else {
        return "disabled".into();
    };
    match writer.store().health().last_error() {
        None if writer.store().health().is_up() => "ok".into(),
        None => format!(
            "down: mismatch store {} not reached yet",
            writer.store().url()
        ),
        Some(e) => format!("down: {e}"),
    }
}
