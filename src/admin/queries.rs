//! What the API and the page need from the store beyond its plain
//! methods: incidents with their times and rates worked out for people, and
//! an unmute that lets the alerting side hear about it.

use crate::store::{
    format_utc, mismatch_rate_upper_bound, now_ms, Example, Incident, IncidentDetail,
    IncidentStatus, StoreError, StoreWriter,
};
use serde::Serialize;

/// An incident as the API returns it: the stored fields plus readable times
/// and its rate among the fingerprint's comparisons.
#[derive(Debug, Serialize)]
pub struct IncidentView<'a> {
    /// The stored incident.
    #[serde(flatten)]
    pub incident: &'a Incident,
    /// `first_seen_ms` in UTC.
    pub first_seen: String,
    /// `last_seen_ms` in UTC.
    pub last_seen: String,
    /// `muted_until_ms` in UTC, for muted incidents with an end.
    pub muted_until: Option<String>,
    /// `count / fingerprint_comparisons`: how often this signature shows
    /// up when the statement is compared.
    pub rate: Option<f64>,
    /// 95% upper bound of that rate (see [`mismatch_rate_upper_bound`]).
    pub rate_upper_95: Option<f64>,
}

impl<'a> IncidentView<'a> {
    /// The view of `incident`.
    pub fn of(incident: &'a Incident) -> Self {
        let (rate, rate_upper_95) = rate(incident);
        Self {
            incident,
            first_seen: format_utc(incident.first_seen_ms),
            last_seen: format_utc(incident.last_seen_ms),
            muted_until: incident
                .muted_until_ms
                .filter(|_| incident.status == IncidentStatus::Muted)
                .map(format_utc),
            rate,
            rate_upper_95,
        }
    }
}

/// An incident with its examples, as the API returns it.
#[derive(Debug, Serialize)]
pub struct IncidentDetailView<'a> {
    /// The incident.
    #[serde(flatten)]
    pub view: IncidentView<'a>,
    /// Its reproduction bundles, oldest first.
    pub examples: &'a [Example],
}

impl<'a> IncidentDetailView<'a> {
    /// The view of `detail`.
    pub fn of(detail: &'a IncidentDetail) -> Self {
        Self {
            view: IncidentView::of(&detail.incident),
            examples: &detail.examples,
        }
    }
}

/// The incident's share of its fingerprint's comparisons, and the 95%
/// upper bound of that share; `None` before the fingerprint was compared.
pub fn rate(incident: &Incident) -> (Option<f64>, Option<f64>) {
    let n = incident.fingerprint_comparisons;
    if n == 0 {
        return (None, None);
    }
    let k = incident.count.min(n);
    (Some(k as f64 / n as f64), mismatch_rate_upper_bound(k, n))
}

/// Reopens an incident. A muted one gets its mute ended *now* rather
/// than removed: the store writer (of whichever instance sees it first on a
/// shared store) then logs `incident mute ended` and raises
/// [`crate::store::IncidentEvent::Unmuted`] for the webhook, exactly as
/// when a mute runs out, and as `pgshadow mismatches unmute` does. `None`:
/// no such incident.
pub async fn unmute(
    writer: &StoreWriter,
    id: &str,
    by: Option<&str>,
) -> Result<Option<Incident>, StoreError> {
    let store = writer.store();
    let Some(current) = store.incident(id).await? else {
        return Ok(None);
    };
    let current = current.incident;
    match current.status {
        IncidentStatus::Open => Ok(Some(current)),
        IncidentStatus::Muted => {
            let reason = current.mute_reason.as_deref().unwrap_or("unmuted");
            store.mute(id, Some(now_ms()), reason, by).await
        }
        IncidentStatus::Acknowledged | IncidentStatus::Resolved => store.unmute(id, by).await,
    }
}
