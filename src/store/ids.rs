//! Every differing row id of an incident (DESIGN §6): the list a repair
//! script needs, and the reason a real defect is never hidden behind the
//! few examples an incident keeps.
//!
//! Each mismatch's diff names the rows that differ by their key (one column
//! or several: composite keys are normal). The writer folds those ids into
//! its batch, per incident; the store keeps each distinct id once, with how
//! it differed last (`changed`, `missing`, `extra`), when it was first and
//! last seen and how often. At most `store.max_ids_per_incident` are kept
//! per incident; sightings of further ids are only counted
//! (`ids_omitted`), as are ids whose value is too long to be a key.

use super::db::{one, Db, DbRow};
use super::error::StoreError;
use crate::diff::RowIds;
use crate::utc::format_utc;
use serde::Serialize;
use std::collections::BTreeMap;

/// Longest id kept, as JSON text of its values: a key longer than this is
/// not something a person or a repair script matches by, and it would not
/// fit a PostgreSQL index entry.
const MAX_ID_BYTES: usize = 512;

/// How a row differed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdChange {
    /// On both sides, with other values.
    Changed,
    /// Only in the old schema's result.
    Missing,
    /// Only in the new schema's result.
    Extra,
}

impl IdChange {
    /// The stored label.
    pub fn label(self) -> &'static str {
        match self {
            IdChange::Changed => "changed",
            IdChange::Missing => "missing",
            IdChange::Extra => "extra",
        }
    }

    /// Parses a stored label.
    pub fn parse(label: &str) -> Option<IdChange> {
        [IdChange::Changed, IdChange::Missing, IdChange::Extra]
            .into_iter()
            .find(|c| c.label() == label)
    }
}

/// One differing row of an incident, by its key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentRowId {
    /// The key's columns, as the result named them.
    pub columns: Vec<String>,
    /// The key's values (`None` = NULL), in the order of `columns`.
    pub values: Vec<Option<String>>,
    /// How the row differed the last time it was seen.
    pub change: IdChange,
    /// When it first differed.
    pub first_seen_ms: i64,
    /// When it last differed.
    pub last_seen_ms: i64,
    /// Comparisons it differed in.
    pub seen: u64,
}

/// The ids an incident kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentIds {
    /// The incident.
    pub incident_id: String,
    /// Distinct ids kept (at most `store.max_ids_per_incident`).
    pub ids_count: u64,
    /// Sightings of ids not kept: beyond the bound, or too long.
    pub ids_omitted: u64,
    /// The ids, by key (at most the limit asked for).
    pub ids: Vec<IncidentRowId>,
}

impl IncidentIds {
    /// The ids as CSV (RFC 4180), one row per id: the key's columns (as
    /// named by the first id; ids of another key shape are written under
    /// the same header), then `change`, `first_seen`, `last_seen` (UTC)
    /// and `seen`. NULL is an empty field, the empty string `""`.
    pub fn to_csv(&self) -> String {
        let columns = self.ids.first().map_or(&[][..], |i| i.columns.as_slice());
        let mut out = String::new();
        let header: Vec<String> = columns
            .iter()
            .map(|c| csv_field(Some(c)))
            .chain(["change", "first_seen", "last_seen", "seen"].map(String::from))
            .collect();
        out.push_str(&header.join(","));
        out.push_str("\r\n");
        for id in &self.ids {
            let mut fields: Vec<String> =
                id.values.iter().map(|v| csv_field(v.as_deref())).collect();
            fields.extend([
                id.change.label().to_string(),
                format_utc(id.first_seen_ms),
                format_utc(id.last_seen_ms),
                id.seen.to_string(),
            ]);
            out.push_str(&fields.join(","));
            out.push_str("\r\n");
        }
        out
    }
}

/// One CSV field: quoted when it must be (or is empty, to tell it from
/// NULL).
fn csv_field(value: Option<&str>) -> String {
    match value {
        None => String::new(),
        Some(v) if v.is_empty() || v.contains([',', '"', '\r', '\n']) => {
            format!("\"{}\"", v.replace('"', "\"\""))
        }
        Some(v) => v.to_string(),
    }
}

/// One id's sightings within a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sighting {
    change: IdChange,
    first_seen_ms: i64,
    last_seen_ms: i64,
    seen: u64,
}

/// The ids one incident's outcomes named in a batch, bounded.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdsDelta {
    /// By (columns JSON, values JSON).
    ids: BTreeMap<(String, String), Sighting>,
    /// Sightings not kept in memory (beyond the bound, too long, or not
    /// listed by the diff).
    omitted: u64,
}

impl IdsDelta {
    /// Adds the ids of one diff, keeping at most `max` distinct ids.
    pub(crate) fn add(&mut self, ids: &RowIds, now_ms: i64, max: usize) {
        self.omitted += ids.omitted;
        let Ok(columns) = serde_json::to_string(&ids.columns) else {
            return;
        };
        let listed = [
            (IdChange::Changed, &ids.changed),
            (IdChange::Missing, &ids.missing),
            (IdChange::Extra, &ids.extra),
        ];
        for (change, values) in listed {
            for value in values {
                let key = match serde_json::to_string(value) {
                    Ok(text) if text.len() <= MAX_ID_BYTES => text,
                    _ => {
                        self.omitted += 1;
                        continue;
                    }
                };
                let entry = (columns.clone(), key);
                if let Some(s) = self.ids.get_mut(&entry) {
                    s.change = change;
                    s.last_seen_ms = s.last_seen_ms.max(now_ms);
                    s.seen += 1;
                } else if self.ids.len() < max {
                    let s = Sighting {
                        change,
                        first_seen_ms: now_ms,
                        last_seen_ms: now_ms,
                        seen: 1,
                    };
                    self.ids.insert(entry, s);
                } else {
                    self.omitted += 1;
                }
            }
        }
    }

    /// Whether there is nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.omitted == 0
    }
}

/// Writes one incident's ids of a batch: known ids are updated; new ones
/// are inserted while the incident has room (`ids_count` is what it holds
/// now), further ones only counted. In key order, so two instances writing
/// overlapping batches lock rows in the same order.
pub(crate) async fn write_ids(
    db: &mut impl Db,
    incident_id: &str,
    delta: &IdsDelta,
    ids_count: u64,
    max: u64,
) -> Result<(), StoreError> {
    if delta.is_empty() {
        return Ok(());
    }
    let mut room = max.saturating_sub(ids_count);
    let (mut added, mut omitted) = (0u64, delta.omitted);
    for ((columns, values), s) in &delta.ids {
        let seen = i64::try_from(s.seen).unwrap_or(i64::MAX);
        if room > 0 {
            let row = one(db
                .query(
                    "INSERT INTO incident_ids (incident_id, key_columns, key_values, change,
                         first_seen, last_seen, seen)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (incident_id, key_columns, key_values) DO UPDATE SET
                         change = excluded.change,
                         seen = incident_ids.seen + excluded.seen,
                         first_seen = CASE WHEN excluded.first_seen < incident_ids.first_seen
                                      THEN excluded.first_seen ELSE incident_ids.first_seen END,
                         last_seen = CASE WHEN excluded.last_seen > incident_ids.last_seen
                                     THEN excluded.last_seen ELSE incident_ids.last_seen END
                     RETURNING seen",
                    &[
                        incident_id.into(),
                        columns.as_str().into(),
                        values.as_str().into(),
                        s.change.label().into(),
                        s.first_seen_ms.into(),
                        s.last_seen_ms.into(),
                        seen.into(),
                    ],
                )
                .await?)?;
            // The row existed before iff its count grew beyond this batch's.
            if row.count(0)? == s.seen {
                room -= 1;
                added += 1;
            }
        } else {
            let updated = db
                .execute(
                    "UPDATE incident_ids SET change = $4, seen = seen + $5,
                         last_seen = CASE WHEN $6 > last_seen THEN $6 ELSE last_seen END
                     WHERE incident_id = $1 AND key_columns = $2 AND key_values = $3",
                    &[
                        incident_id.into(),
                        columns.as_str().into(),
                        values.as_str().into(),
                        s.change.label().into(),
                        seen.into(),
                        s.last_seen_ms.into(),
                    ],
                )
                .await?;
            if updated == 0 {
                omitted += s.seen;
            }
        }
    }
    db.execute(
        "UPDATE incidents SET ids_count = ids_count + $2, ids_omitted = ids_omitted + $3
         WHERE id = $1",
        &[
            incident_id.into(),
            i64::try_from(added).unwrap_or(i64::MAX).into(),
            i64::try_from(omitted).unwrap_or(i64::MAX).into(),
        ],
    )
    .await?;
    Ok(())
}

/// The ids of incident `id`, most recently seen first, at most `limit`;
/// `None` when there is no such incident.
pub(crate) async fn incident_ids(
    db: &mut impl Db,
    id: &str,
    limit: u64,
) -> Result<Option<IncidentIds>, StoreError> {
    let counts = db
        .query(
            "SELECT ids_count, ids_omitted FROM incidents WHERE id = $1",
            &[id.into()],
        )
        .await?;
    let Some(counts) = counts.first() else {
        return Ok(None);
    };
    let rows = db
        .query(
            "SELECT key_columns, key_values, change, first_seen, last_seen, seen
             FROM incident_ids WHERE incident_id = $1
             ORDER BY last_seen DESC, key_columns, key_values LIMIT $2",
            &[id.into(), i64::try_from(limit).unwrap_or(i64::MAX).into()],
        )
        .await?;
    Ok(Some(IncidentIds {
        incident_id: id.to_string(),
        ids_count: counts.count(0)?,
        ids_omitted: counts.count(1)?,
        ids: rows.iter().map(row_id).collect::<Result<_, _>>()?,
    }))
}

fn row_id(row: &DbRow) -> Result<IncidentRowId, StoreError> {
    let change = row.text(2)?;
    Ok(IncidentRowId {
        columns: serde_json::from_str(&row.text(0)?)
            .map_err(|e| StoreError::Corrupt(format!("incident id columns: {e}")))?,
        values: serde_json::from_str(&row.text(1)?)
            .map_err(|e| StoreError::Corrupt(format!("incident id values: {e}")))?,
        change: IdChange::parse(&change)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown id change {change:?}")))?,
        first_seen_ms: row.int(3)?,
        last_seen_ms: row.int(4)?,
        seen: row.count(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(changed: &[&str], missing: &[&str]) -> RowIds {
        let one = |v: &&str| vec![Some(v.to_string())];
        RowIds {
            columns: vec!["id".into()],
            changed: changed.iter().map(one).collect(),
            missing: missing.iter().map(one).collect(),
            extra: Vec::new(),
            omitted: 0,
        }
    }

    #[test]
    fn a_batch_keeps_each_id_once_and_counts_beyond_its_bound() {
        let mut delta = IdsDelta::default();
        delta.add(&ids(&["1", "2"], &["3"]), 10, 3);
        delta.add(&ids(&["1"], &["4"]), 20, 3);
        assert_eq!(delta.ids.len(), 3);
        assert_eq!(delta.omitted, 1, "id 4 is beyond the bound of 3");
        let one = &delta.ids[&(r#"["id"]"#.to_string(), r#"["1"]"#.to_string())];
        assert_eq!((one.seen, one.first_seen_ms, one.last_seen_ms), (2, 10, 20));
    }

    #[test]
    fn ids_export_as_csv_with_nulls_apart_from_empty_strings() {
        let id = |values: &[Option<&str>], change| IncidentRowId {
            columns: vec!["env_id".into(), "entry_id".into()],
            values: values.iter().map(|v| v.map(str::to_string)).collect(),
            change,
            first_seen_ms: 0,
            last_seen_ms: 1_000,
            seen: 2,
        };
        let ids = IncidentIds {
            incident_id: "x".into(),
            ids_count: 2,
            ids_omitted: 0,
            ids: vec![
                id(&[Some("1"), Some("a,\"b\"")], IdChange::Changed),
                id(&[None, Some("")], IdChange::Missing),
            ],
        };
        assert_eq!(
            ids.to_csv(),
            "env_id,entry_id,change,first_seen,last_seen,seen\r\n\
             1,\"a,\"\"b\"\"\",changed,1970-01-01T00:00:00Z,1970-01-01T00:00:01Z,2\r\n\
             ,\"\",missing,1970-01-01T00:00:00Z,1970-01-01T00:00:01Z,2\r\n"
        );
    }

    #[test]
    fn an_id_too_long_to_be_a_key_is_only_counted() {
        let mut delta = IdsDelta::default();
        let long = "x".repeat(MAX_ID_BYTES);
        delta.add(&ids(&[&long], &[]), 10, 100);
        assert!(delta.ids.is_empty());
        assert_eq!(delta.omitted, 1);
    }
}
