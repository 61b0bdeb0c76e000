//! Every write to the store, written once over [`Db`] for both backends
//! (the reads are in [`super::queries`]).
//!
//! Writes are upserts (`count = count + excluded.count`), so several proxy
//! instances sharing one PostgreSQL store add up instead of overwriting
//! each other, and whoever inserts a signature first is the one that
//! reports the new incident.

use super::batch::{Batch, IncidentDelta};
use super::db::{one, Db, Param};
use super::error::StoreError;
use super::ids::write_ids;
use super::model::{IncidentStatus, StoredError};
use crate::capture::fingerprint::Fingerprint;
use crate::outcome::LatencySummary;
use crate::outcome::Outcome;
use crate::protocol::error_response::ErrorFields;
use std::collections::BTreeMap;

/// Longest SQL text or parameter kept in an example, in bytes; longer
/// ones are cut (marked with `…`) so a few huge statements cannot bloat
/// the store.
const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Bounds that keep the store small.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Examples per incident.
    pub(crate) max_examples: u64,
    /// Differing row ids per incident.
    pub(crate) max_ids: u64,
    /// Incidents in the store.
    pub(crate) max_incidents: u64,
}

/// Runs `body` in a transaction: committed if it succeeds, rolled back if
/// not.
macro_rules! transaction {
    ($db:expr, $body:expr) => {{
        $db.begin().await?;
        match $body {
            Ok(v) => {
                $db.commit().await?;
                Ok(v)
            }
            Err(e) => {
                $db.rollback().await;
                Err(e)
            }
        }
    }};
}

/// Writes one batch in one transaction; returns the ids of the incidents
/// it created (those no instance had stored before), minus any the
/// `max_incidents` bound evicted at once.
pub(crate) async fn write_batch(
    db: &mut impl Db,
    batch: &Batch,
    limits: Limits,
) -> Result<Vec<String>, StoreError> {
    transaction!(db, write_batch_in_tx(db, batch, limits).await)
}

async fn write_batch_in_tx(
    db: &mut impl Db,
    batch: &Batch,
    limits: Limits,
) -> Result<Vec<String>, StoreError> {
    let mut opened = Vec::new();
    // Rows are locked in a fixed order (PostgreSQL row locks last until
    // commit), so two instances writing overlapping batches cannot
    // deadlock.
    let mut incidents: Vec<_> = batch.incidents.iter().collect();
    incidents.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    for (signature, delta) in incidents {
        let columns = serde_json::to_string(&signature.columns).unwrap_or_else(|_| "[]".into());
        let row = one(db
            .query(
                "INSERT INTO incidents (id, signature, fingerprint, kind, diff_kind, columns,
                     old_sqlstate, new_sqlstate, client_sql, database, first_seen, last_seen,
                     count, confirmed_count)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (signature) DO UPDATE SET
                     count = incidents.count + excluded.count,
                     status = CASE WHEN incidents.status = 'resolved' THEN 'open'
                              ELSE incidents.status END,
                     confirmed_count = incidents.confirmed_count + excluded.confirmed_count,
                     first_seen = CASE WHEN excluded.first_seen < incidents.first_seen
                                  THEN excluded.first_seen ELSE incidents.first_seen END,
                     last_seen = CASE WHEN excluded.last_seen > incidents.last_seen
                                 THEN excluded.last_seen ELSE incidents.last_seen END
                 RETURNING id, count, example_count, ids_count",
                &[
                    delta.id.as_str().into(),
                    delta.signature_text.as_str().into(),
                    signature.fingerprint.to_string().as_str().into(),
                    signature.kind.label().into(),
                    signature.diff_kind.map(|k| k.label()).into(),
                    columns.as_str().into(),
                    signature.old_sqlstate.as_deref().into(),
                    signature.new_sqlstate.as_deref().into(),
                    bounded(&delta.client_sql).as_str().into(),
                    (&*delta.database).into(),
                    delta.first_seen_ms.into(),
                    delta.last_seen_ms.into(),
                    (delta.count as i64).into(),
                    (delta.confirmed as i64).into(),
                ],
            )
            .await?)?;
        let id = row.text(0)?;
        // The row existed before iff its count grew beyond this batch's.
        if row.count(1)? == delta.count {
            opened.push(id.clone());
        }
        let slots = limits.max_examples.saturating_sub(row.count(2)?);
        let stored = insert_examples(db, &id, delta, slots).await?;
        write_ids(db, &id, &delta.ids, row.count(3)?, limits.max_ids).await?;
        if stored > 0 {
            db.execute(
                "UPDATE incidents SET example_count = example_count + $2 WHERE id = $1",
                &[id.as_str().into(), (stored as i64).into()],
            )
            .await?;
        }
    }
    write_coverage(db, batch).await?;
    for id in &batch.resolved {
        db.execute(
            "UPDATE incidents SET status = 'resolved', status_by = 'pgshadow', status_at = $2,
                 muted_until = NULL, mute_reason = NULL
             WHERE id = $1 AND status NOT IN ('muted', 'resolved')",
            &[id.as_str().into(), super::model::now_ms().into()],
        )
        .await?;
    }
    if !opened.is_empty() {
        let evicted = evict_beyond(db, limits.max_incidents).await?;
        opened.retain(|id| !evicted.contains(id));
    }
    Ok(opened)
}

/// One coverage row the batch touches: compared, or only skipped.
struct CoverageRow<'a> {
    client_sql: Option<&'a str>,
    counts: [u64; 5],
    latency: Option<LatencySummary>,
    first_seen_ms: i64,
    last_seen_ms: i64,
}

/// Adds the batch's comparisons and skips to `coverage` and
/// `coverage_skips`, in fingerprint order.
async fn write_coverage(db: &mut impl Db, batch: &Batch) -> Result<(), StoreError> {
    let mut rows: BTreeMap<Fingerprint, CoverageRow<'_>> = batch
        .coverage
        .iter()
        .map(|(fingerprint, c)| {
            let row = CoverageRow {
                client_sql: Some(&c.client_sql),
                counts: [c.compared, c.matched, c.mismatched, c.errored, c.noisy],
                latency: c.latency,
                first_seen_ms: c.first_seen_ms,
                last_seen_ms: c.last_seen_ms,
            };
            (*fingerprint, row)
        })
        .collect();
    for ((fingerprint, _), s) in &batch.skips {
        let row = rows.entry(*fingerprint).or_insert(CoverageRow {
            client_sql: None,
            counts: [0; 5],
            latency: None,
            first_seen_ms: s.last_seen_ms,
            last_seen_ms: s.last_seen_ms,
        });
        row.last_seen_ms = row.last_seen_ms.max(s.last_seen_ms);
    }
    for (fingerprint, row) in &rows {
        let client_sql = row.client_sql.map(bounded);
        let [compared, matched, mismatched, errored, noisy] = row.counts.map(|n| n as i64);
        db.execute(
            "INSERT INTO coverage (fingerprint, client_sql, compared, matched, mismatched,
                 errored, first_seen, last_seen, noisy, latency_samples, old_p50_ms,
                 old_p95_ms, new_p50_ms, new_p95_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (fingerprint) DO UPDATE SET
                 latency_samples = COALESCE(excluded.latency_samples, coverage.latency_samples),
                 old_p50_ms = COALESCE(excluded.old_p50_ms, coverage.old_p50_ms),
                 old_p95_ms = COALESCE(excluded.old_p95_ms, coverage.old_p95_ms),
                 new_p50_ms = COALESCE(excluded.new_p50_ms, coverage.new_p50_ms),
                 new_p95_ms = COALESCE(excluded.new_p95_ms, coverage.new_p95_ms),
                 client_sql = COALESCE(coverage.client_sql, excluded.client_sql),
                 compared = coverage.compared + excluded.compared,
                 matched = coverage.matched + excluded.matched,
                 mismatched = coverage.mismatched + excluded.mismatched,
                 errored = coverage.errored + excluded.errored,
                 noisy = coverage.noisy + excluded.noisy,
                 last_seen = CASE WHEN excluded.last_seen > coverage.last_seen
                             THEN excluded.last_seen ELSE coverage.last_seen END",
            &[
                fingerprint.to_string().as_str().into(),
                client_sql.as_deref().into(),
                compared.into(),
                matched.into(),
                mismatched.into(),
                errored.into(),
                row.first_seen_ms.into(),
                row.last_seen_ms.into(),
                noisy.into(),
                row.latency
                    .map(|l| i64::try_from(l.samples).unwrap_or(i64::MAX))
                    .into(),
                row.latency.map(|l| l.old_p50_ms).into(),
                row.latency.map(|l| l.old_p95_ms).into(),
                row.latency.map(|l| l.new_p50_ms).into(),
                row.latency.map(|l| l.new_p95_ms).into(),
            ],
        )
        .await?;
    }
    let skips: BTreeMap<_, _> = batch.skips.iter().collect();
    for ((fingerprint, reason), s) in skips {
        db.execute(
            "INSERT INTO coverage_skips (fingerprint, reason, count, last_seen)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (fingerprint, reason) DO UPDATE SET
                 count = coverage_skips.count + excluded.count,
                 last_seen = CASE WHEN excluded.last_seen > coverage_skips.last_seen
                             THEN excluded.last_seen ELSE coverage_skips.last_seen END",
            &[
                fingerprint.to_string().as_str().into(),
                reason.label().into(),
                (s.count as i64).into(),
                s.last_seen_ms.into(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Stores up to `slots` of the delta's examples; returns how many.
async fn insert_examples(
    db: &mut impl Db,
    incident_id: &str,
    delta: &IncidentDelta,
    slots: u64,
) -> Result<u64, StoreError> {
    let mut stored = 0;
    for (seen_at, outcome) in delta.examples.iter().take(slots as usize) {
        let e = ExampleColumns::of(outcome);
        db.execute(
            "INSERT INTO examples (incident_id, seen_at, database, old_sql, new_sql, params,
                 settings, snapshot_xmin, confirmed, ordering, tiebreak, old_ms, new_ms,
                 diff_summary, diff, old_error, new_error, detail, keys, ratio, old_plan,
                 new_plan)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                 $17, $18, $19, $20, $21, $22)",
            &[
                incident_id.into(),
                (*seen_at).into(),
                (&*outcome.database).into(),
                e.old_sql.as_str().into(),
                e.new_sql.as_str().into(),
                e.params.as_str().into(),
                e.settings.as_str().into(),
                outcome
                    .snapshot_xmin
                    .and_then(|x| i64::try_from(x).ok())
                    .into(),
                outcome.confirmed.map(i64::from).into(),
                outcome.ordering.label().into(),
                outcome.tiebreak.label().into(),
                (outcome.old_time.as_secs_f64() * 1e3).into(),
                (outcome.new_time.as_secs_f64() * 1e3).into(),
                outcome.diff.as_ref().map(|d| d.summary.as_str()).into(),
                e.diff.as_deref().into(),
                e.old_error.as_deref().into(),
                e.new_error.as_deref().into(),
                outcome.detail.as_deref().into(),
                (&*outcome.keys).into(),
                outcome
                    .slower
                    .as_ref()
                    .map(|f| f.verdict.median_ratio)
                    .into(),
                e.old_plan.as_deref().into(),
                e.new_plan.as_deref().into(),
            ],
        )
        .await?;
        stored += 1;
    }
    Ok(stored)
}

/// An outcome's example columns, encoded and bounded.
struct ExampleColumns {
    old_sql: String,
    new_sql: String,
    params: String,
    settings: String,
    diff: Option<String>,
    old_error: Option<String>,
    new_error: Option<String>,
    old_plan: Option<String>,
    new_plan: Option<String>,
}

impl ExampleColumns {
    fn of(o: &Outcome) -> Self {
        let params: Vec<Option<String>> =
            o.params.iter().map(|p| p.as_deref().map(bounded)).collect();
        let error = |e: &Option<ErrorFields>| {
            e.as_ref().and_then(|e| {
                serde_json::to_string(&StoredError {
                    severity: e.severity.clone(),
                    code: e.code.clone(),
                    message: e.message.clone(),
                })
                .ok()
            })
        };
        Self {
            old_sql: bounded(&o.old_sql),
            new_sql: bounded(&o.new_sql),
            params: serde_json::to_string(&params).unwrap_or_else(|_| "[]".into()),
            settings: serde_json::to_string(&o.settings).unwrap_or_else(|_| "[]".into()),
            diff: o.diff.as_ref().and_then(|d| serde_json::to_string(d).ok()),
            old_error: error(&o.old_error),
            new_error: error(&o.new_error),
            old_plan: o
                .slower
                .as_ref()
                .and_then(|f| f.old_plan.as_deref().map(plan)),
            new_plan: o
                .slower
                .as_ref()
                .and_then(|f| f.new_plan.as_deref().map(plan)),
        }
    }
}

/// A plan as stored: the JSON EXPLAIN printed, or, when it is larger than
/// [`MAX_TEXT_BYTES`] (cutting it would break the JSON), a JSON string
/// that says so.
fn plan(json: &str) -> String {
    if json.len() <= MAX_TEXT_BYTES {
        return json.to_owned();
    }
    serde_json::to_string(&format!("plan of {} bytes not kept", json.len())).unwrap_or_default()
}

/// `text`, cut at [`MAX_TEXT_BYTES`] on a character boundary.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text.to_owned();
    }
    let cut = (0..=MAX_TEXT_BYTES)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &text[..cut])
}

/// Deletes incidents beyond `max`: acknowledged ones first, then open,
/// then muted (deleting a muted incident would undo a person's decision),
/// least recently seen first within each. Returns the ids deleted.
async fn evict_beyond(db: &mut impl Db, max: u64) -> Result<Vec<String>, StoreError> {
    let total = one(db.query("SELECT count(*) FROM incidents", &[]).await?)?.count(0)?;
    if total <= max {
        return Ok(Vec::new());
    }
    let victims = db
        .query(
            "SELECT id FROM incidents
             ORDER BY CASE status WHEN 'acknowledged' THEN 0 WHEN 'resolved' THEN 0
                                  WHEN 'open' THEN 1 ELSE 2 END,
                      last_seen, id
             LIMIT $1",
            &[((total - max) as i64).into()],
        )
        .await?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<Vec<_>, _>>()?;
    for id in &victims {
        delete_incident(db, id).await?;
    }
    Ok(victims)
}

async fn delete_incident(db: &mut impl Db, id: &str) -> Result<(), StoreError> {
    db.execute("DELETE FROM examples WHERE incident_id = $1", &[id.into()])
        .await?;
    db.execute(
        "DELETE FROM incident_ids WHERE incident_id = $1",
        &[id.into()],
    )
    .await?;
    db.execute("DELETE FROM incidents WHERE id = $1", &[id.into()])
        .await?;
    Ok(())
}

/// What [`expire`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Incidents not seen since the cutoff.
    pub incidents: u64,
    /// Examples older than the cutoff (including those of the incidents).
    pub examples: u64,
    /// Coverage rows (fingerprints and skip reasons) not seen since.
    pub coverage: u64,
}

/// Deletes what was last seen before `cutoff_ms`: examples, incidents,
/// coverage.
pub(crate) async fn expire(db: &mut impl Db, cutoff_ms: i64) -> Result<Expired, StoreError> {
    transaction!(db, expire_in_tx(db, cutoff_ms).await)
}

async fn expire_in_tx(db: &mut impl Db, cutoff_ms: i64) -> Result<Expired, StoreError> {
    let cutoff = [Param::from(cutoff_ms)];
    let mut examples = db
        .execute(
            "DELETE FROM examples WHERE incident_id IN
                 (SELECT id FROM incidents WHERE last_seen < $1)",
            &cutoff,
        )
        .await?;
    db.execute(
        "DELETE FROM incident_ids WHERE incident_id IN
             (SELECT id FROM incidents WHERE last_seen < $1)",
        &cutoff,
    )
    .await?;
    let incidents = db
        .execute("DELETE FROM incidents WHERE last_seen < $1", &cutoff)
        .await?;
    let old = db
        .execute("DELETE FROM examples WHERE seen_at < $1", &cutoff)
        .await?;
    if old > 0 {
        // Room for fresh examples in the incidents that lost some.
        db.execute(
            "UPDATE incidents SET example_count =
                 (SELECT count(*) FROM examples WHERE examples.incident_id = incidents.id)",
            &[],
        )
        .await?;
    }
    examples += old;
    let coverage = db
        .execute("DELETE FROM coverage WHERE last_seen < $1", &cutoff)
        .await?
        + db.execute("DELETE FROM coverage_skips WHERE last_seen < $1", &cutoff)
            .await?;
    Ok(Expired {
        incidents,
        examples,
        coverage,
    })
}

/// A status change by a person: sets the status columns of `id`; returns
/// whether the incident exists.
pub(crate) async fn set_status(
    db: &mut impl Db,
    id: &str,
    status: IncidentStatus,
    muted_until_ms: Option<i64>,
    mute_reason: Option<&str>,
    by: Option<&str>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let changed = db
        .execute(
            "UPDATE incidents SET status = $2, muted_until = $3, mute_reason = $4,
                 status_by = $5, status_at = $6
             WHERE id = $1",
            &[
                id.into(),
                status.label().into(),
                muted_until_ms.into(),
                mute_reason.into(),
                by.into(),
                now_ms.into(),
            ],
        )
        .await?;
    Ok(changed > 0)
}

/// Ends the mutes that are over; returns the ids reopened. Atomic, so with
/// several instances on one store only one of them reopens (and reports)
/// each incident.
pub(crate) async fn reopen_expired_mutes(
    db: &mut impl Db,
    now_ms: i64,
) -> Result<Vec<String>, StoreError> {
    db.query(
        "UPDATE incidents SET status = 'open', status_at = $1, status_by = NULL
         WHERE status = 'muted' AND muted_until IS NOT NULL AND muted_until <= $1
         RETURNING id",
        &[now_ms.into()],
    )
    .await?
    .iter()
    .map(|r| r.text(0))
    .collect()
}
