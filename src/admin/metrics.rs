//! `/metrics`: the process-wide Prometheus recorder and what renders it.

use super::error::AdminError;
use crate::observability::metrics::{
    describe, BATCH_BUCKETS, DURATION_BUCKETS, KEY_LOOKUP_SECONDS, SHADOW_BATCH_SAMPLES,
    SHADOW_DURATION_SECONDS,
};
use crate::shadow::Shadow;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};

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
