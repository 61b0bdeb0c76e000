//! Whether the mismatch store answers, as the proxy last saw it.
//!
//! Every store operation reports here when it ends ([`super::Store`] wraps
//! each in `store.op_timeout_ms`): success sets `pgshadow_store_up` to 1,
//! a failure or timeout sets it to 0 and counts
//! `pgshadow_store_errors_total{op}`. Readiness never waits for the store:
//! `/readyz` shows this state without touching it, because a store outage
//! must not take the proxy out of its load balancer.

use super::error::StoreError;
use crate::observability::metrics::{STORE_ERRORS_TOTAL, STORE_UP};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What an operation on the store was doing: the bounded `op` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Opening (connecting, migrating) the store.
    Open,
    /// Writing a batch of outcomes.
    Write,
    /// Reading incidents, ids or coverage (admin API, page, CLI).
    Read,
    /// Acknowledging, muting or unmuting an incident.
    Status,
    /// The writer's upkeep: ending expired mutes, counting open incidents.
    Maintain,
    /// Applying `store.retention_days`.
    Retention,
}

impl StoreOp {
    /// Every operation, for pre-registering the counter's series.
    pub const ALL: [StoreOp; 6] = [
        StoreOp::Open,
        StoreOp::Write,
        StoreOp::Read,
        StoreOp::Status,
        StoreOp::Maintain,
        StoreOp::Retention,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            StoreOp::Open => "open",
            StoreOp::Write => "write",
            StoreOp::Read => "read",
            StoreOp::Status => "status",
            StoreOp::Maintain => "maintain",
            StoreOp::Retention => "retention",
        }
    }
}

/// The store's last known health. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    up: AtomicBool,
    /// Why the last failed operation failed, while the store is down.
    last_error: Mutex<Option<String>>,
}

impl StoreHealth {
    /// Health of a store believed up (`up`) or not yet reached.
    pub(crate) fn new(up: bool) -> Self {
        metrics::gauge!(STORE_UP).set(if up { 1.0 } else { 0.0 });
        for op in StoreOp::ALL {
            metrics::counter!(STORE_ERRORS_TOTAL, "op" => op.label()).increment(0);
        }
        Self {
            inner: Arc::new(Inner {
                up: AtomicBool::new(up),
                last_error: Mutex::new(None),
            }),
        }
    }

    /// Whether the last operation succeeded.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// Why the store is down, when it is.
    pub fn last_error(&self) -> Option<String> {
        if self.is_up() {
            return None;
        }
        self.lock().clone()
    }

    /// Records how an operation ended.
    pub(crate) fn record<T>(&self, op: StoreOp, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => {
                if !self.inner.up.swap(true, Ordering::Relaxed) {
                    metrics::gauge!(STORE_UP).set(1.0);
                    *self.lock() = None;
                }
            }
            Err(e) => {
                metrics::counter!(STORE_ERRORS_TOTAL, "op" => op.label()).increment(1);
                if e.is_unavailable() {
                    *self.lock() = Some(e.to_string());
                    if self.inner.up.swap(false, Ordering::Relaxed) {
                        metrics::gauge!(STORE_UP).set(0.0);
                    }
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
