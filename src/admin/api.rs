//! The JSON API under `/api/`: incidents, coverage and the sampling
//! controls. Errors are `{"error": "…"}` with a status that says whose
//! fault it was: 400 bad input, 401/403 see [`super::auth`], 404 no such
//! incident, 503 no mismatch store or shadow (the shadow is disabled), 500
//! the store failed.

use super::input::{json_body, ListQuery, MuteRequest, SamplingRequest, StatusRequest};
use super::queries::{self, IncidentDetailView, IncidentView};
use super::state::AdminState;
use crate::store::{now_ms, Incident, StoreError, StoreWriter};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// An API error: a status and a sentence for the caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: nothing by that name.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 503 for endpoints that need the mismatch store.
    pub fn no_store() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no mismatch store: the shadow is disabled (shadow.enabled = false), so nothing is \
             compared or recorded; enable it and restart pgshadow",
        )
    }

    /// 503 for endpoints that need the running shadow.
    pub fn no_shadow() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the shadow is not running (shadow.enabled = false at startup): sampling cannot be \
             changed at run time; enable it and restart pgshadow",
        )
    }

    /// 503 for a store that cannot be reached or did not answer within
    /// `store.op_timeout_ms` (try again later), 500 for any other failure;
    /// logged either way, since it is ours to fix.
    pub fn store(e: StoreError) -> Self {
        tracing::warn!(error = %e, "admin request failed in the mismatch store");
        if e.is_unavailable() {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "mismatch store unavailable: {e}; the proxy keeps serving applications, \
                     try again later"
                ),
            )
        } else {
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("mismatch store: {e}"),
            )
        }
    }

    fn no_incident(id: &str) -> Self {
        Self::not_found(format!("no incident with id {id:?}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

type ApiResult = Result<Response, ApiError>;

fn store(state: &AdminState) -> Result<&StoreWriter, ApiError> {
    state
        .store()
        .map(|s| s.as_ref())
        .ok_or_else(ApiError::no_store)
}

/// Incident ids are 12 hex digits; anything much longer cannot be one.
fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 {
        return Err(ApiError::no_incident(id));
    }
    Ok(())
}

fn incident_response(incident: Option<Incident>, id: &str) -> ApiResult {
    let incident = incident.ok_or_else(|| ApiError::no_incident(id))?;
    Ok(Json(IncidentView::of(&incident)).into_response())
}

/// `GET /api/incidents?status=&kind=&fingerprint=&since=&limit=`: incidents,
/// most recently seen first.
pub async fn list_incidents(
    State(state): State<AdminState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let Query(query) = query?;
    let filter = query.filter(now_ms()).map_err(ApiError::bad_request)?;
    let incidents = store(&state)?
        .store()
        .list_incidents(&filter)
        .await
        .map_err(ApiError::store)?;
    let views: Vec<IncidentView<'_>> = incidents.iter().map(IncidentView::of).collect();
    Ok(Json(json!({ "incidents": views })).into_response())
}

/// `GET /api/incidents/{id}`: one incident with its examples.
pub async fn show_incident(State(state): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    check_id(&id)?;
    let detail = store(&state)?
        .store()
        .incident(&id)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::no_incident(&id))?;
    Ok(Json(IncidentDetailView::of(&detail)).into_response())
}

/// The query string of `GET /api/incidents/{id}/ids`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdsQuery {
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    /// At most this many ids, most recently seen first (default 100000).
    pub limit: Option<u64>,
}

/// `GET /api/incidents/{id}/ids?format=json|csv&limit=`: every differing
/// row id the incident kept, with how it differed and when.
pub async fn incident_ids(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    query: Result<Query<IdsQuery>, QueryRejection>,
) -> ApiResult {
    check_id(&id)?;
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(100_000);
    if limit == 0 || limit > 1_000_000 {
        return Err(ApiError::bad_request(format!(
            "limit={limit}: must be between 1 and 1000000"
        )));
    }
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format={other:?}: must be json or csv"
            )))
        }
    };
    let ids = store(&state)?
        .store()
        .incident_ids(&id, limit)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::no_incident(&id))?;
    if csv {
        let name: String = ids
            .incident_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let disposition = format!("attachment; filename=\"incident-{name}-ids.csv\"");
        return Ok((
            StatusCode::OK,
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "text/csv; charset=utf-8".to_string(),
                ),
                (axum::http::header::CONTENT_DISPOSITION, disposition),
            ],
            ids.to_csv(),
        )
            .into_response());
    }
    Ok(Json(ids).into_response())
}

/// `POST /api/incidents/{id}/ack` (optional body `{"by": "…"}`).
pub async fn ack(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    check_id(&id)?;
    let by = json_body::<StatusRequest>(&body)
        .map_err(ApiError::bad_request)?
        .by();
    let incident = store(&state)?
        .store()
        .ack(&id, by.as_deref())
        .await
        .map_err(ApiError::store)?;
    if incident.is_some() {
        tracing::info!(incident = %id, by = by.as_deref().unwrap_or(""), "incident acknowledged");
    }
    incident_response(incident, &id)
}

/// `POST /api/incidents/{id}/mute` with `{"for": "2h" | "seconds": N,
/// "reason": "…", "by": "…"}`.
pub async fn mute(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    check_id(&id)?;
    let mute = json_body::<MuteRequest>(&body)
        .and_then(MuteRequest::validate)
        .map_err(ApiError::bad_request)?;
    let millis = i64::try_from(mute.duration.as_millis()).unwrap_or(i64::MAX);
    let until = now_ms().saturating_add(millis);
    let incident = store(&state)?
        .store()
        .mute(&id, Some(until), &mute.reason, mute.by.as_deref())
        .await
        .map_err(ApiError::store)?;
    if incident.is_some() {
        tracing::info!(
            incident = %id,
            seconds = mute.duration.as_secs(),
            reason = %mute.reason,
            by = mute.by.as_deref().unwrap_or(""),
            "incident muted"
        );
    }
    incident_response(incident, &id)
}

/// `POST /api/incidents/{id}/unmute` (optional body `{"by": "…"}`): reopens
/// a muted or acknowledged incident.
pub async fn unmute(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    check_id(&id)?;
    let by = json_body::<StatusRequest>(&body)
        .map_err(ApiError::bad_request)?
        .by();
    let incident = queries::unmute(store(&state)?, &id, by.as_deref())
        .await
        .map_err(ApiError::store)?;
    if incident.is_some() {
        tracing::info!(incident = %id, by = by.as_deref().unwrap_or(""), "incident reopened");
    }
    incident_response(incident, &id)
}

/// The query string of `GET /api/coverage`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageQuery {
    /// Only this fingerprint.
    pub fingerprint: Option<String>,
    /// At most this many rows (default 500).
    pub limit: Option<u64>,
}

/// `GET /api/coverage?fingerprint=&limit=`: per fingerprint, what was
/// compared and how it went, most compared first.
pub async fn coverage(
    State(state): State<AdminState>,
    query: Result<Query<CoverageQuery>, QueryRejection>,
) -> ApiResult {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(500);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::bad_request(format!(
            "limit={limit}: must be between 1 and 10000"
        )));
    }
    let fingerprint = query.fingerprint.as_deref().filter(|f| !f.is_empty());
    let rows = store(&state)?
        .store()
        .list_coverage(fingerprint, limit)
        .await
        .map_err(ApiError::store)?;
    Ok(Json(json!({ "coverage": rows })).into_response())
}

/// The sampling controls as `GET /api/sampling` shows them.
#[derive(Debug, Serialize)]
pub struct Sampling {
    /// Whether a shadow runs at all (`shadow.enabled` at startup).
    pub shadow_running: bool,
    /// The kill switch: false while sampling is switched off.
    pub enabled: bool,
    /// The global sample rate, 0..1.
    pub sample_rate: f64,
    /// The per-second cap (0 = none).
    pub max_samples_per_second: u64,
    /// Fingerprints never compared.
    pub muted_fingerprints: Vec<String>,
}

/// The sampling controls now.
pub fn sampling_now(state: &AdminState) -> Sampling {
    match state.shadow() {
        Some(shadow) => {
            let sampler = shadow.sampler();
            let mut muted: Vec<String> = sampler.muted().iter().map(|f| f.to_string()).collect();
            muted.sort();
            Sampling {
                shadow_running: true,
                enabled: sampler.enabled(),
                sample_rate: sampler.rate(),
                max_samples_per_second: sampler.max_samples_per_second(),
                muted_fingerprints: muted,
            }
        }
        None => Sampling {
            shadow_running: false,
            enabled: false,
            sample_rate: state.inner.configured_sample_rate,
            max_samples_per_second: 0,
            muted_fingerprints: Vec::new(),
        },
    }
}

/// `GET /api/sampling`.
pub async fn sampling(State(state): State<AdminState>) -> Json<Sampling> {
    Json(sampling_now(&state))
}

/// `PUT` or `POST /api/sampling` with `{"sample_rate": 0..1, "enabled":
/// bool}` (either or both): takes effect for the next read, no restart.
/// A later SIGHUP only overrides what changed in the file.
pub async fn change_sampling(State(state): State<AdminState>, body: Bytes) -> ApiResult {
    let request: SamplingRequest = json_body(&body).map_err(ApiError::bad_request)?;
    request.validate().map_err(ApiError::bad_request)?;
    let shadow = state.shadow().ok_or_else(ApiError::no_shadow)?;
    let sampler = shadow.sampler();
    let before = (sampler.enabled(), sampler.rate());
    if let Some(rate) = request.sample_rate {
        sampler.set_rate(rate);
    }
    if let Some(enabled) = request.enabled {
        sampler.set_enabled(enabled);
    }
    tracing::info!(
        enabled = format!("{} -> {}", before.0, sampler.enabled()),
        sample_rate = format!("{} -> {}", before.1, sampler.rate()),
        "sampling changed through the admin API"
    );
    Ok(Json(sampling_now(&state)).into_response())
}
