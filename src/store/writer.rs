//! The store writer: turns the stream of outcomes into batched writes.
//!
//! The shadow hands every outcome to a bounded channel without waiting
//! (full: dropped and counted as `pgshadow_store_dropped_total`). This
//! task folds them into an in-memory [`Batch`] and writes it in one
//! transaction every `store.flush_interval_ms`, or as soon as
//! `store.flush_max_outcomes` have accumulated: thousands of matches a
//! second cost a few small transactions, never one per outcome.
//!
//! After a batch commits, each incident it created is logged once
//! (`incident opened`, WARN): that line means "stored" — a SIGKILL after it
//! loses none of it — and the same moment raises
//! [`IncidentEvent::Opened`] for subscribers (the webhook). Once a second
//! it also ends expired mutes ([`IncidentEvent::Unmuted`]) and refreshes
//! `pgshadow_incidents_open`; every ten minutes it applies
//! `store.retention_days`.
//!
//! A failed write keeps the batch and retries it with the next one, so a
//! store restart loses nothing; while the store stays unwritable, at most
//! `store.max_pending_outcomes` outcomes are held and further ones are
//! dropped and counted, and a pending batch grown beyond [`MAX_PENDING`]
//! distinct rows is dropped (and counted) too. Every store operation is
//! bounded by `store.op_timeout_ms`, so a hung store never blocks this
//! task for longer; a write that timed out is retried, so if it did
//! commit late its outcomes are counted twice (at least once, never lost
//! silently). A store that could not be opened at startup is opened by the
//! first retry that succeeds; the relay never waits for any of it.

use super::batch::{Batch, IncidentDelta};
use super::error::StoreError;
use super::model::{now_ms, Incident, IncidentEvent, IncidentNotice};
use super::Store;
use crate::capture::skip::SkipCounts;
use crate::config::{StoreConfig, StoreValues};
use crate::observability::metrics::{
    INCIDENTS_OPEN, INCIDENTS_OPENED_TOTAL, STORE_DROPPED_TOTAL, STORE_WRITE_ERRORS_TOTAL,
};
use crate::outcome::signature::Signature;
use crate::outcome::Outcome;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Distinct incidents + fingerprints + skip keys a batch that cannot be
/// written may hold before it is dropped: the writer's memory bound while
/// the store is down.
pub const MAX_PENDING: usize = 20_000;

/// How often expired mutes are ended and the open-incident gauge refreshed.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// How often `store.retention_days` is applied.
const RETENTION_INTERVAL: Duration = Duration::from_secs(600);

/// First and longest wait between attempts to write to a failing store.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Subscribers that fall this many events behind lose the oldest.
const EVENT_CAPACITY: usize = 256;

/// How long shutdown waits for the last batch.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How the writer batches.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Longest time an outcome waits in memory (`store.flush_interval_ms`).
    pub flush_interval: Duration,
    /// Outcomes that trigger a write at once (`store.flush_max_outcomes`).
    pub flush_max_outcomes: u64,
    /// Examples kept per incident and batch (`store.max_examples`).
    pub max_examples: usize,
    /// Differing row ids kept per incident and batch
    /// (`store.max_ids_per_incident`).
    pub max_ids: usize,
    /// Whether examples keep values or their hashes (`store.values`).
    pub values: StoreValues,
    /// Outcomes held while the store cannot be written
    /// (`store.max_pending_outcomes`); beyond, new ones are dropped.
    pub max_pending_outcomes: u64,
}

impl WriterOptions {
    /// The options `[store]` describes.
    pub fn from_config(config: &StoreConfig) -> Self {
        Self {
            flush_interval: Duration::from_millis(config.flush_interval_ms.max(1)),
            flush_max_outcomes: config.flush_max_outcomes.max(1),
            max_examples: usize::try_from(config.max_examples).unwrap_or(usize::MAX),
            max_ids: usize::try_from(config.max_ids_per_incident).unwrap_or(usize::MAX),
            values: config.values,
            max_pending_outcomes: config.max_pending_outcomes.max(1),
        }
    }
}

impl WriterOptions {
    /// The outcome as the store may keep it: unchanged, or with its values
    /// hashed (`store.values = "hash"`, [`Outcome::hashed`]).
    fn stored_form(&self, outcome: Arc<Outcome>) -> Arc<Outcome> {
        match self.values {
            StoreValues::Keep => outcome,
            StoreValues::Hash => Arc::new(outcome.hashed()),
        }
    }
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self::from_config(&StoreConfig::default())
    }
}

/// The running writer: the store, its event stream and a way to stop it.
pub struct StoreWriter {
    store: Store,
    events: broadcast::Sender<IncidentEvent>,
    skips: SkipCounts,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl StoreWriter {
    /// Starts the writer on the current runtime, reading `outcomes`.
    pub fn start(
        store: Store,
        options: WriterOptions,
        outcomes: mpsc::Receiver<Arc<Outcome>>,
    ) -> Arc<StoreWriter> {
        metrics::gauge!(INCIDENTS_OPEN).set(0.0);
        metrics::counter!(INCIDENTS_OPENED_TOTAL).increment(0);
        metrics::counter!(STORE_WRITE_ERRORS_TOTAL).increment(0);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let skips = SkipCounts::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            Writer {
                store: store.clone(),
                options,
                events: events.clone(),
                skips: skips.clone(),
                batch: Batch::default(),
                // A store not reached at startup is retried like one
                // that failed.
                failing: !store.health().is_up(),
                dropping: false,
                retry_at: (!store.health().is_up()).then(|| Instant::now() + MIN_BACKOFF),
                backoff: MIN_BACKOFF,
            }
            .run(outcomes, stop.clone()),
        );
        Arc::new(StoreWriter {
            store,
            events,
            skips,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// The store written to, for queries.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// New incidents and ended mutes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<IncidentEvent> {
        self.events.subscribe()
    }

    /// Raises an event for the subscribers (e.g. after an unmute through
    /// the admin API).
    pub fn publish(&self, event: IncidentEvent) {
        let _ = self.events.send(event);
    }

    /// Where the capture layer counts skipped executions per fingerprint.
    pub fn skip_counts(&self) -> SkipCounts {
        self.skips.clone()
    }

    /// Writes what is pending and stops. Waits at most ten seconds.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            if tokio::time::timeout(SHUTDOWN_TIMEOUT, task).await.is_err() {
                tracing::warn!("the mismatch store did not finish its last write in time");
            }
        }
    }
}

/// The task's state.
struct Writer {
    store: Store,
    options: WriterOptions,
    events: broadcast::Sender<IncidentEvent>,
    skips: SkipCounts,
    batch: Batch,
    /// The last write failed (logged once, until one succeeds).
    failing: bool,
    /// Outcomes are being dropped (logged once per outage).
    dropping: bool,
    /// While failing: no new attempt before this.
    retry_at: Option<Instant>,
    /// Wait before the next attempt after another failure.
    backoff: Duration,
}

impl Writer {
    async fn run(mut self, mut outcomes: mpsc::Receiver<Arc<Outcome>>, stop: CancellationToken) {
        let mut flush = tokio::time::interval(self.options.flush_interval);
        let mut maintenance = tokio::time::interval(MAINTENANCE_INTERVAL);
        for timer in [&mut flush, &mut maintenance] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        // First retention pass a little after start, not in its way.
        let mut last_retention = Instant::now()
            .checked_sub(RETENTION_INTERVAL - Duration::from_secs(10))
            .unwrap_or_else(Instant::now);
        loop {
            // Timers first: under a steady stream of outcomes the channel
            // is always ready, and writes must still happen on time.
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = flush.tick() => self.flush(false).await,
                // While the store is failing, upkeep waits for the next
                // write to succeed: it would only time out again.
                _ = maintenance.tick(), if !self.failing => {
                    self.maintain().await;
                    if last_retention.elapsed() >= RETENTION_INTERVAL {
                        last_retention = Instant::now();
                        self.apply_retention().await;
                    }
                }
                received = outcomes.recv() => match received {
                    Some(_) if self.failing && self.batch.outcomes >= self.options.max_pending_outcomes => {
                        self.drop_outcome();
                    }
                    Some(outcome) => {
                        let outcome = self.options.stored_form(outcome);
                        let o = &self.options;
                        self.batch.add(outcome, now_ms(), o.max_examples, o.max_ids);
                        if self.batch.outcomes >= self.options.flush_max_outcomes {
                            self.flush(false).await;
                        }
                    }
                    None => break,
                },
            }
        }
        // Shutdown: what is already queued is written too.
        while let Ok(outcome) = outcomes.try_recv() {
            let outcome = self.options.stored_form(outcome);
            let o = &self.options;
            self.batch.add(outcome, now_ms(), o.max_examples, o.max_ids);
        }
        self.flush(true).await;
    }

    /// Writes the pending batch (with the skips counted since the last).
    /// While the store is failing, attempts are spaced out (up to 30 s
    /// apart) unless `force`d at shutdown.
    async fn flush(&mut self, force: bool) {
        if !force && self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let now = now_ms();
        for ((fingerprint, reason), n) in self.skips.take() {
            self.batch.add_skips(fingerprint, reason, n, now);
        }
        if self.batch.is_empty() {
            if self.failing {
                self.probe().await;
            }
            return;
        }
        match self.store.write_batch(&self.batch).await {
            Ok(opened) => {
                if self.failing {
                    tracing::info!(store = %self.store.url(), "mismatch store writable again");
                    self.failing = false;
                    self.dropping = false;
                }
                self.retry_at = None;
                self.backoff = MIN_BACKOFF;
                let batch = std::mem::take(&mut self.batch);
                tracing::debug!(
                    outcomes = batch.outcomes,
                    verdicts = batch.verdicts,
                    incidents = batch.incidents.len(),
                    fingerprints = batch.coverage.len(),
                    opened = opened.len(),
                    "store batch written"
                );
                if !opened.is_empty() {
                    self.announce(&batch, &opened);
                    self.refresh_open_gauge().await;
                }
            }
            Err(e) => {
                metrics::counter!(STORE_WRITE_ERRORS_TOTAL).increment(1);
                self.failed(&e);
                if self.batch.distinct() > MAX_PENDING {
                    let lost = std::mem::take(&mut self.batch);
                    let lost = lost.outcomes + lost.verdicts;
                    metrics::counter!(STORE_DROPPED_TOTAL).increment(lost);
                    tracing::error!(
                        outcomes = lost,
                        "mismatch store unwritable for too long: dropped the pending outcomes"
                    );
                }
            }
        }
    }

    /// After a failed operation: logged once per outage, the next attempt
    /// spaced out (up to 30 s), upkeep paused.
    fn failed(&mut self, e: &StoreError) {
        if !self.failing {
            tracing::warn!(
                error = %e,
                store = %self.store.url(),
                "cannot write to the mismatch store; keeping outcomes in memory and retrying"
            );
            self.failing = true;
        }
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// While failing with nothing to write: asks the store something cheap,
    /// so that it is found again (and `pgshadow_store_up` goes back to 1)
    /// without waiting for an outcome.
    async fn probe(&mut self) {
        match self.store.open_incident_count().await {
            Ok(open) => {
                tracing::info!(store = %self.store.url(), "mismatch store reachable again");
                metrics::gauge!(INCIDENTS_OPEN).set(open as f64);
                self.failing = false;
                self.dropping = false;
                self.retry_at = None;
                self.backoff = MIN_BACKOFF;
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Drops one outcome: the store has been unwritable for
    /// `store.max_pending_outcomes` outcomes. Logged once per outage.
    fn drop_outcome(&mut self) {
        metrics::counter!(STORE_DROPPED_TOTAL).increment(1);
        if !self.dropping {
            self.dropping = true;
            tracing::error!(
                pending = self.batch.outcomes,
                store = %self.store.url(),
                "mismatch store unwritable: store.max_pending_outcomes outcomes are waiting, \
                 further outcomes are dropped until a write succeeds"
            );
        }
    }

    /// Logs and publishes the incidents a committed batch created.
    fn announce(&self, batch: &Batch, opened: &[String]) {
        for (signature, delta) in &batch.incidents {
            if !opened.contains(&delta.id) {
                continue;
            }
            metrics::counter!(INCIDENTS_OPENED_TOTAL).increment(1);
            tracing::warn!(
                incident = %delta.id,
                fingerprint = %signature.fingerprint,
                kind = signature.kind.label(),
                diff = signature.diff_kind.map_or("", |k| k.label()),
                columns = %signature.columns.join(","),
                old_sqlstate = signature.old_sqlstate.as_deref().unwrap_or(""),
                new_sqlstate = signature.new_sqlstate.as_deref().unwrap_or(""),
                count = delta.count,
                "incident opened"
            );
            let _ = self
                .events
                .send(IncidentEvent::Opened(notice_of_delta(signature, delta)));
        }
    }

    /// Ends expired mutes and refreshes the open-incident gauge.
    async fn maintain(&mut self) {
        match self.store.reopen_expired_mutes().await {
            Ok(reopened) => {
                for incident in reopened {
                    tracing::info!(
                        incident = %incident.id,
                        fingerprint = %incident.fingerprint,
                        "incident mute ended"
                    );
                    let summary = self.store.incident(&incident.id).await.ok().flatten();
                    let summary = summary.and_then(|d| {
                        d.examples.first().and_then(|e| {
                            e.diff.as_ref().map(|d| d.summary.clone()).or_else(|| {
                                let err = e.new_error.as_ref().or(e.old_error.as_ref());
                                err.map(|e| e.message.clone())
                            })
                        })
                    });
                    let _ = self.events.send(IncidentEvent::Unmuted(notice_of_incident(
                        &incident, summary,
                    )));
                }
            }
            Err(e) if e.is_unavailable() => {
                self.failed(&e);
                return;
            }
            Err(e) => tracing::debug!(error = %e, "cannot end expired mutes"),
        }
        self.refresh_open_gauge().await;
    }

    async fn refresh_open_gauge(&self) {
        if let Ok(open) = self.store.open_incident_count().await {
            metrics::gauge!(INCIDENTS_OPEN).set(open as f64);
        }
    }

    async fn apply_retention(&self) {
        match self.store.expire().await {
            Ok(expired) if expired != Default::default() => tracing::info!(
                incidents = expired.incidents,
                examples = expired.examples,
                coverage = expired.coverage,
                "mismatch store retention applied"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot apply the mismatch store's retention"),
        }
    }
}

fn notice_of_delta(signature: &Signature, delta: &IncidentDelta) -> IncidentNotice {
    let summary = delta.examples.first().and_then(|(_, o)| {
        o.diff.as_ref().map(|d| d.summary.clone()).or_else(|| {
            let err = o.new_error.as_ref().or(o.old_error.as_ref());
            err.map(|e| e.message.clone()).or_else(|| o.detail.clone())
        })
    });
    IncidentNotice {
        id: delta.id.clone(),
        fingerprint: signature.fingerprint.to_string(),
        kind: signature.kind,
        diff_kind: signature.diff_kind,
        columns: signature.columns.clone(),
        old_sqlstate: signature.old_sqlstate.clone(),
        new_sqlstate: signature.new_sqlstate.clone(),
        client_sql: delta.client_sql.to_string(),
        database: delta.database.to_string(),
        summary,
        count: delta.count,
    }
}

fn notice_of_incident(incident: &Incident, summary: Option<String>) -> IncidentNotice {
    IncidentNotice {
        id: incident.id.clone(),
        fingerprint: incident.fingerprint.clone(),
        kind: incident.kind,
        diff_kind: incident.diff_kind,
        columns: incident.columns.clone(),
        old_sqlstate: incident.old_sqlstate.clone(),
        new_sqlstate: incident.new_sqlstate.clone(),
        client_sql: incident.client_sql.clone(),
        database: incident.database.clone(),
        summary,
        count: incident.count,
    }
}
