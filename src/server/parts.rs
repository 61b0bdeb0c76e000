//! The application's parts, assembled from the configuration: the
//! mismatch store and its writer, the shadow (with the config file's
//! mutes) and the plan cache for the primary's tiebreaker.

use super::handoff::ShadowHandoff;
use crate::config::Config;
use crate::observability::metrics::{INCIDENTS_OPEN, STORE_DROPPED_TOTAL};
use crate::rewrite::PlanCache;
use crate::shadow::{primary_rules, Shadow, ShadowError};
use crate::store::{Store, StoreError, StoreWriter, WriterOptions};
use std::collections::HashSet;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::mpsc;

/// Why the application could not be assembled.
#[derive(Debug, Error)]
pub enum AssemblyError {
    /// The shadow could not start.
    #[error(transparent)]
    Shadow(#[from] ShadowError),
    /// The mismatch store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What runs beside the proxy, for one configuration.
pub struct Parts {
    /// The shadow, when `shadow.enabled`.
    pub shadow: Option<Arc<Shadow>>,
    /// The mismatch store's writer, when the shadow is enabled: outcomes
    /// go to it, skips per fingerprint through its `skip_counts()`.
    pub store: Option<Arc<StoreWriter>>,
    /// Plans for `tiebreak.apply_to_primary`.
    pub primary_rewrites: Option<Arc<PlanCache>>,
}

impl Parts {
    /// Opens the store, starts its writer and the shadow (which then need
    /// a running Tokio runtime) when `shadow.enabled`, and builds the
    /// primary's plan cache when `tiebreak.apply_to_primary`.
    pub async fn assemble(config: &Config) -> Result<Parts, AssemblyError> {
        // Present from the first scrape, so alerts on them work at once.
        metrics::gauge!(INCIDENTS_OPEN).set(0.0);
        metrics::counter!(STORE_DROPPED_TOTAL).increment(0);
        let store = if config.shadow.enabled {
            // A store configured wrong (bad URL, missing password, newer
            // schema) stops the proxy now; one that only cannot be reached
            // (a read-only path, its server down) does not: the relay
            // serves, outcomes wait or are dropped and counted, and the
            // writer keeps trying.
            let (store, unreachable) = Store::from_config_or_later(&config.store).await?;
            match unreachable {
                None => tracing::info!(store = %store.url(), "mismatch store open"),
                Some(e) => tracing::error!(
                    store = %store.url(),
                    error = %e,
                    "mismatch store unreachable: serving without it, retrying in the background \
                     (pgshadow_store_up = 0)"
                ),
            }
            let (tx, rx) = mpsc::channel(config.store.queue_capacity);
            let writer = StoreWriter::start(store, WriterOptions::from_config(&config.store), rx);
            Some((writer, tx))
        } else {
            None
        };
        let (store, outcomes) = match store {
            Some((writer, tx)) => (Some(writer), Some(tx)),
            None => (None, None),
        };
        let shadow = if config.shadow.enabled {
            let skip_counts = store.as_ref().map(|w| w.skip_counts()).unwrap_or_default();
            let shadow = Shadow::start(config, outcomes, skip_counts)?;
            // The config file's mutes, applied the way a reload applies them.
            let muted = crate::reload::muted_fingerprints(&config.shadow);
            shadow.sampler().update_muted(&HashSet::new(), &muted);
            Some(shadow)
        } else {
            None
        };
        let primary_rewrites = config.tiebreak.apply_to_primary.then(|| {
            Arc::new(PlanCache::new(
                config.shadow.plan_cache_size,
                primary_rules(config),
            ))
        });
        Ok(Parts {
            shadow,
            store,
            primary_rewrites,
        })
    }

    /// What the proxy's sessions hand their statements to.
    pub fn handoff(&self, config: &Config) -> ShadowHandoff {
        ShadowHandoff {
            shadow: self.shadow.clone(),
            statement_budget: config.shadow.max_session_statement_bytes,
            primary_rewrites: self.primary_rewrites.clone(),
        }
    }
}
