//! Every read of the store, written once over [`Db`] for both backends:
//! what the admin API, the CLI and the web page show.

use super::db::{one, Db, DbRow, Param};
use super::error::StoreError;
use super::model::{
    mismatch_rate_upper_bound, parse_diff_kind, Coverage, CoverageLatency, Example, Incident,
    IncidentDetail, IncidentFilter, IncidentStatus, StoredDiff,
};
use crate::diff::RowOrder;
use crate::outcome::signature::IncidentKind;
use crate::rewrite::TiebreakKind;
use std::collections::BTreeMap;

/// The status as people see it: a mute past its end reads as open. `$1`
/// is now.
const STATUS: &str = "CASE WHEN i.status = 'muted' AND i.muted_until IS NOT NULL
                           AND i.muted_until <= $1 THEN 'open' ELSE i.status END";

fn incident_select() -> String {
    format!(
        "SELECT i.id, i.signature, i.fingerprint, i.kind, i.diff_kind, i.columns,
                i.old_sqlstate, i.new_sqlstate, i.client_sql, i.database, i.first_seen,
                i.last_seen, i.count, i.confirmed_count, c.compared, {STATUS}, i.status_by,
                i.status_at, i.muted_until, i.mute_reason, i.example_count, i.ids_count,
                i.ids_omitted
         FROM incidents i LEFT JOIN coverage c ON c.fingerprint = i.fingerprint"
    )
}

fn incident_from(row: &DbRow) -> Result<Incident, StoreError> {
    let kind = row.text(3)?;
    let status = row.text(15)?;
    Ok(Incident {
        id: row.text(0)?,
        signature: row.text(1)?,
        fingerprint: row.text(2)?,
        kind: IncidentKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown incident kind {kind:?}")))?,
        diff_kind: row.opt_text(4)?.as_deref().and_then(parse_diff_kind),
        columns: serde_json::from_str(&row.text(5)?).unwrap_or_default(),
        old_sqlstate: row.opt_text(6)?,
        new_sqlstate: row.opt_text(7)?,
        client_sql: row.text(8)?,
        database: row.text(9)?,
        first_seen_ms: row.int(10)?,
        last_seen_ms: row.int(11)?,
        count: row.count(12)?,
        confirmed_count: row.count(13)?,
        fingerprint_comparisons: row.count(14)?,
        status: IncidentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
        status_by: row.opt_text(16)?,
        status_at_ms: row.opt_int(17)?,
        muted_until_ms: row.opt_int(18)?,
        mute_reason: row.opt_text(19)?,
        example_count: row.count(20)?,
        ids_count: row.count(21)?,
        ids_omitted: row.count(22)?,
    })
}

/// Incidents matching `filter`, most recently seen first.
pub(crate) async fn list_incidents(
    db: &mut impl Db,
    filter: &IncidentFilter,
    now_ms: i64,
) -> Result<Vec<Incident>, StoreError> {
    let mut sql = incident_select();
    let mut params: Vec<Param<'_>> = vec![now_ms.into()];
    let mut conditions = Vec::new();
    if let Some(status) = filter.status {
        params.push(status.label().into());
        conditions.push(format!("({STATUS}) = ${}", params.len()));
    }
    if let Some(kind) = filter.kind {
        params.push(kind.label().into());
        conditions.push(format!("i.kind = ${}", params.len()));
    }
    if let Some(fingerprint) = &filter.fingerprint {
        params.push(fingerprint.as_str().into());
        conditions.push(format!("i.fingerprint = ${}", params.len()));
    }
    if let Some(since) = filter.since_ms {
        params.push(since.into());
        conditions.push(format!("i.last_seen >= ${}", params.len()));
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    params.push((filter.limit.min(i64::MAX as u64) as i64).into());
    sql.push_str(&format!(
        " ORDER BY i.last_seen DESC, i.id LIMIT ${}",
        params.len()
    ));
    db.query(&sql, &params)
        .await?
        .iter()
        .map(incident_from)
        .collect()
}

/// One incident, without examples.
pub(crate) async fn incident(
    db: &mut impl Db,
    id: &str,
    now_ms: i64,
) -> Result<Option<Incident>, StoreError> {
    let sql = format!("{} WHERE i.id = $2", incident_select());
    let rows = db.query(&sql, &[now_ms.into(), id.into()]).await?;
    rows.first().map(incident_from).transpose()
}

/// One incident with its examples, oldest first.
pub(crate) async fn incident_detail(
    db: &mut impl Db,
    id: &str,
    now_ms: i64,
) -> Result<Option<IncidentDetail>, StoreError> {
    let Some(incident) = incident(db, id, now_ms).await? else {
        return Ok(None);
    };
    let rows = db
        .query(
            "SELECT id, seen_at, database, old_sql, new_sql, params, settings, snapshot_xmin,
                    confirmed, ordering, tiebreak, old_ms, new_ms, diff, old_error, new_error,
                    detail, keys, ratio, old_plan, new_plan
             FROM examples WHERE incident_id = $1 ORDER BY id",
            &[id.into()],
        )
        .await?;
    let examples = rows.iter().map(example_from).collect::<Result<_, _>>()?;
    Ok(Some(IncidentDetail { incident, examples }))
}

fn example_from(row: &DbRow) -> Result<Example, StoreError> {
    let json = |i: usize| -> Result<Option<String>, StoreError> { row.opt_text(i) };
    Ok(Example {
        id: row.int(0)?,
        seen_at_ms: row.int(1)?,
        database: row.text(2)?,
        old_sql: row.text(3)?,
        new_sql: row.text(4)?,
        params: serde_json::from_str(&row.text(5)?).unwrap_or_default(),
        settings: serde_json::from_str(&row.text(6)?).unwrap_or_default(),
        snapshot_xmin: row.opt_int(7)?.and_then(|x| u64::try_from(x).ok()),
        confirmed: row.opt_int(8)?.map(|c| c != 0),
        ordering: row.label(9, RowOrder::parse)?,
        tiebreak: row.label(10, TiebreakKind::parse)?,
        old_ms: row.real(11)?,
        new_ms: row.real(12)?,
        // A diff that no longer parses hides the rows, not the example.
        diff: json(13)?.and_then(|d| serde_json::from_str::<StoredDiff>(&d).ok()),
        old_error: json(14)?.and_then(|e| serde_json::from_str(&e).ok()),
        new_error: json(15)?.and_then(|e| serde_json::from_str(&e).ok()),
        detail: row.opt_text(16)?,
        keys: row.text(17)?,
        ratio: row.opt_real(18)?,
        old_plan: json(19)?.and_then(|p| serde_json::from_str(&p).ok()),
        new_plan: json(20)?.and_then(|p| serde_json::from_str(&p).ok()),
    })
}

/// Incidents that are open (including mutes past their end).
pub(crate) async fn open_incident_count(db: &mut impl Db, now_ms: i64) -> Result<u64, StoreError> {
    let sql = format!("SELECT count(*) FROM incidents i WHERE ({STATUS}) = 'open'");
    one(db.query(&sql, &[now_ms.into()]).await?)?.count(0)
}

/// Coverage of every fingerprint (or one), most compared first, at most
/// `limit`.
pub(crate) async fn coverage(
    db: &mut impl Db,
    fingerprint: Option<&str>,
    limit: u64,
) -> Result<Vec<Coverage>, StoreError> {
    let limit = limit.min(i64::MAX as u64) as i64;
    let chosen = "SELECT fingerprint, client_sql, compared, matched, mismatched, errored,
                         first_seen, last_seen, noisy, latency_samples, old_p50_ms,
                         old_p95_ms, new_p50_ms, new_p95_ms
                  FROM coverage WHERE ($2 = '' OR fingerprint = $2)
                  ORDER BY compared DESC, fingerprint LIMIT $1";
    let params = [limit.into(), fingerprint.unwrap_or("").into()];
    let rows = db.query(chosen, &params).await?;
    let skip_rows = db
        .query(
            &format!(
                "SELECT s.fingerprint, s.reason, s.count FROM coverage_skips s
                 JOIN ({chosen}) c ON c.fingerprint = s.fingerprint"
            ),
            &params,
        )
        .await?;
    let mut skips: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for r in &skip_rows {
        skips
            .entry(r.text(0)?)
            .or_default()
            .insert(r.text(1)?, r.count(2)?);
    }
    rows.iter()
        .map(|r| {
            let fingerprint = r.text(0)?;
            let (matched, mismatched) = (r.count(3)?, r.count(4)?);
            Ok(Coverage {
                skipped: skips.remove(&fingerprint).unwrap_or_default(),
                fingerprint,
                client_sql: r.opt_text(1)?,
                compared: r.count(2)?,
                matched,
                mismatched,
                errored: r.count(5)?,
                noisy: r.count(8)?,
                first_seen_ms: r.int(6)?,
                last_seen_ms: r.int(7)?,
                mismatch_rate_upper_95: mismatch_rate_upper_bound(mismatched, matched + mismatched),
                latency: match r.opt_int(9)? {
                    Some(samples) if samples > 0 => Some(CoverageLatency::new(
                        samples as u64,
                        r.real(10)?,
                        r.real(11)?,
                        r.real(12)?,
                        r.real(13)?,
                    )),
                    _ => None,
                },
            })
        })
        .collect()
}

/// A round trip to the store.
pub(crate) async fn ping(db: &mut impl Db) -> Result<(), StoreError> {
    db.query("SELECT 1", &[]).await.map(|_| ())
}
