//! Comparison outcomes built by hand, as the shadow would report them, and
//! a way to push them through a real store writer.

use pgshadow::capture::fingerprint::Fingerprint;
use pgshadow::diff::{Diff, DiffKind, RowIds, RowRef};
use pgshadow::outcome::{Outcome, OutcomeKind};
use pgshadow::protocol::error_response::ErrorFields;
use pgshadow::store::{IncidentEvent, Store, StoreWriter, WriterOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Fingerprint of the "entries by id" statement.
pub const ENTRIES: Fingerprint = Fingerprint(0x1111_2222_3333_4444);
/// Fingerprint of another statement.
pub const OTHER: Fingerprint = Fingerprint(0x5555_6666_7777_8888);

fn base(fingerprint: Fingerprint, kind: OutcomeKind) -> Outcome {
    crate::outcome::outcome(
        fingerprint,
        kind,
        "SELECT id, title, body FROM entries WHERE id = $1",
        "SELECT id, title, body FROM entries WHERE id = $1 ORDER BY id",
        "SELECT id, title, body FROM entries WHERE id = $1 ORDER BY id",
    )
}

/// Both sides returned the same rows.
pub fn matched(fingerprint: Fingerprint) -> Outcome {
    base(fingerprint, OutcomeKind::Match)
}

/// Row `id` differs in `column`: `old` on the old side, `new` on the new.
pub fn changed(fingerprint: Fingerprint, id: i64, column: &str, old: &str, new: &str) -> Outcome {
    crate::outcome::values_differ(
        base(fingerprint, OutcomeKind::Mismatch),
        id,
        column,
        old,
        new,
    )
}

/// Row `id` is missing from the new side.
pub fn missing(fingerprint: Fingerprint, id: i64) -> Outcome {
    Outcome {
        confirmed: Some(false),
        diff: Some(Diff {
            kind: DiffKind::MissingRows,
            differing_columns: Vec::new(),
            summary: format!("1 missing id ({id}); row count old=1 new=0"),
            old_rows: 1,
            new_rows: 0,
            old_columns: vec!["id".into()],
            new_columns: vec!["id".into()],
            changed: Vec::new(),
            missing: vec![RowRef {
                key: format!("id={id}"),
                row: vec![Some(id.to_string())],
            }],
            extra: Vec::new(),
            column_changes: Vec::new(),
            ordering: pgshadow::diff::RowOrder::Total,
            truncated: false,
            ids: RowIds {
                columns: vec!["id".into()],
                missing: vec![vec![Some(id.to_string())]],
                ..RowIds::default()
            },
        }),
        ..base(fingerprint, OutcomeKind::Mismatch)
    }
}

/// A failure of one or both sides with these SQLSTATEs.
pub fn failed(
    fingerprint: Fingerprint,
    kind: OutcomeKind,
    old: Option<&str>,
    new: Option<&str>,
) -> Outcome {
    let error = |code: &str| ErrorFields {
        severity: "ERROR".into(),
        code: code.into(),
        message: format!("failure {code}"),
    };
    Outcome {
        old_error: old.map(error),
        new_error: new.map(error),
        ..base(fingerprint, kind)
    }
}

/// Writer options that batch like production but flush quickly.
pub fn options() -> WriterOptions {
    WriterOptions {
        flush_interval: Duration::from_millis(50),
        ..WriterOptions::default()
    }
}

/// A running writer and a sender of outcomes to it.
pub struct Feeder {
    pub writer: Arc<StoreWriter>,
    pub events: broadcast::Receiver<IncidentEvent>,
    tx: Option<mpsc::Sender<Arc<Outcome>>>,
}

impl Feeder {
    /// Starts a writer on `store`.
    pub fn start(store: &Store) -> Feeder {
        let (tx, rx) = mpsc::channel(1024);
        let writer = StoreWriter::start(store.clone(), options(), rx);
        let events = writer.subscribe();
        Feeder {
            writer,
            events,
            tx: Some(tx),
        }
    }

    /// Sends outcomes, waiting for room (the test must not lose any).
    pub async fn send(&self, outcomes: impl IntoIterator<Item = Outcome>) {
        let tx = self.tx.as_ref().expect("feeder still open");
        for outcome in outcomes {
            tx.send(Arc::new(outcome)).await.expect("writer running");
        }
    }

    /// Stops the writer after it has written everything sent; returns the
    /// events it raised that were not received yet.
    pub async fn finish(mut self) -> Vec<IncidentEvent> {
        self.tx = None;
        self.writer.shutdown().await;
        let mut events = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            events.push(e);
        }
        events
    }
}

/// Writes `outcomes` through a fresh writer; returns the events raised.
pub async fn feed(
    store: &Store,
    outcomes: impl IntoIterator<Item = Outcome>,
) -> Vec<IncidentEvent> {
    let feeder = Feeder::start(store);
    feeder.send(outcomes).await;
    feeder.finish().await
}

/// The ids of `Opened` events.
pub fn opened(events: &[IncidentEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            IncidentEvent::Opened(n) => Some(n.id.clone()),
            IncidentEvent::Unmuted(_) => None,
        })
        .collect()
}
