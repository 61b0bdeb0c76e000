//! Running one sample: old query and new query in one snapshot.
//!
//! Everything is written to the connection in one go and the replies are
//! read in order: the round trips of a sample are those of the server,
//! not of the network.
//!
//! ```text
//! BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
//! SET LOCAL statement_timeout = …; SET LOCAL TimeZone = …; …
//! SET LOCAL search_path = <old>;
//! SELECT txid_snapshot_xmin(txid_current_snapshot())   -- takes the snapshot
//! Parse/Bind/Describe/Execute/Sync  (old query, the client's parameters, text results)
//! SET LOCAL search_path = <new>
//! Parse/Bind/Describe/Execute/Sync  (new query)
//! COMMIT
//! DISCARD ALL                        -- back to the pool without session state
//! ```
//!
//! In a REPEATABLE READ transaction every statement sees the snapshot taken
//! by the first one, so concurrent writes cannot make the two runs differ.
//! READ ONLY makes the database itself refuse writes.

use super::conn::{server_error, ConnError, Reply, ShadowConn};
use crate::capture::tracker::Sample;
use crate::diff::result::{Column, ResultBuilder, ResultSet};
use crate::diff::CompareOptions;
use crate::protocol::error_response::ErrorFields;
use crate::protocol::reader::BodyReader;
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;
use std::time::{Duration, Instant};

/// Whether both sides share one snapshot. `Separate` exists to show what
/// the shared snapshot buys (tests and demos); never use it otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    /// Old and new in one REPEATABLE READ transaction.
    Shared,
    /// Old and new in two transactions: concurrent writes between them
    /// show up as (false) mismatches.
    Separate,
}

/// What one side of a sample produced.
#[derive(Debug)]
pub enum SideResult {
    /// The rows.
    Rows(ResultSet),
    /// The server's error.
    Error(ErrorFields),
}

/// Both sides of one run.
#[derive(Debug)]
pub struct RunResult {
    /// The old schema's answer.
    pub old: SideResult,
    /// The new schema's answer.
    pub new: SideResult,
    /// Oldest transaction still running when the snapshot was taken.
    pub snapshot_xmin: Option<u64>,
    /// Time from sending the old query to its last reply.
    pub old_time: Duration,
    /// Same for the new query.
    pub new_time: Duration,
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// The old query, rewritten (tiebreaker).
    pub old_sql: &'a str,
    /// The new query, rewritten (tiebreaker, table map).
    pub new_sql: &'a str,
    /// `search_path` of the old schema, in SET syntax.
    pub old_search_path: &'a str,
    /// `search_path` of the new schema.
    pub new_search_path: &'a str,
    /// Per-statement timeout.
    pub statement_timeout: Duration,
    /// Rows kept per side.
    pub max_rows: usize,
    /// The comparison options, so that rows beyond `max_rows` are digested
    /// under the same rules (ignored columns, numeric scale).
    pub compare: &'a CompareOptions,
    /// Shared or separate snapshots.
    pub snapshot: Snapshot,
}

/// Runs `sample` on `conn`.
pub async fn run(
    conn: &mut ShadowConn,
    sample: &Sample,
    spec: &RunSpec<'_>,
) -> Result<RunResult, ConnError> {
    let mut out = BytesMut::new();
    let begin = begin_sql(sample, spec, spec.old_search_path);
    push_query(&mut out, &begin)?;
    push_extended(&mut out, sample, spec.old_sql)?;
    match spec.snapshot {
        Snapshot::Shared => {
            push_query(
                &mut out,
                &format!("SET LOCAL search_path = {}", spec.new_search_path),
            )?;
        }
        Snapshot::Separate => {
            push_query(&mut out, "COMMIT")?;
            push_query(&mut out, &begin_sql(sample, spec, spec.new_search_path))?;
        }
    }
    push_extended(&mut out, sample, spec.new_sql)?;
    push_query(&mut out, "COMMIT")?;
    // Back to the pool clean: a function the statement called may have
    // taken a session-level lock or changed a setting.
    push_query(&mut out, "DISCARD ALL")?;
    let started = Instant::now();
    conn.send(&out).await?;

    let mut begin_result = read_simple(conn, 0).await?;
    let snapshot_xmin = begin_result
        .last_value
        .take()
        .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok());
    if let Some(e) = begin_result.error {
        // The transaction could not start: that is the shadow's problem,
        // not the schemas'. Report it on both sides and close the
        // connection (its replies are not drained).
        conn.poisoned = true;
        return Ok(RunResult {
            old: SideResult::Error(e.clone()),
            new: SideResult::Error(e),
            snapshot_xmin,
            old_time: started.elapsed(),
            new_time: Duration::ZERO,
        });
    }
    let old_started = Instant::now();
    let old = read_extended(conn, spec).await?;
    let old_time = old_started.elapsed();
    let between = read_simple(conn, 0).await?;
    if spec.snapshot == Snapshot::Separate {
        read_simple(conn, 0).await?;
    }
    let new_started = Instant::now();
    let mut new = read_extended(conn, spec).await?;
    let new_time = new_started.elapsed();
    let commit = read_simple(conn, 0).await?;
    let discard = read_simple(conn, 0).await?;
    if let (Some(e), SideResult::Rows(_)) = (between.error, &new) {
        new = SideResult::Error(e);
    }
    if commit.status != Some(b'I') || discard.error.is_some() || discard.status != Some(b'I') {
        conn.poisoned = true;
    }
    Ok(RunResult {
        old,
        new,
        snapshot_xmin,
        old_time,
        new_time,
    })
}

/// The simple Query that opens a transaction and takes its snapshot.
fn begin_sql(sample: &Sample, spec: &RunSpec<'_>, search_path: &str) -> String {
    let mut sql = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = {};",
        spec.statement_timeout.as_millis().max(1)
    );
    for (name, value) in sample.settings.pairs() {
        sql.push_str(&format!(" SET LOCAL {name} = {};", quote_literal(value)));
    }
    sql.push_str(&format!(
        " SET LOCAL search_path = {search_path}; SELECT txid_snapshot_xmin(txid_current_snapshot())::text"
    ));
    sql
}

/// A SQL string literal.
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn push_query(out: &mut BytesMut, sql: &str) -> Result<(), ConnError> {
    frontend::query(sql, out).map_err(|e| ConnError::Protocol(e.to_string()))
}

/// Parse/Bind/Describe/Execute/Sync with the client's parameters replayed
/// byte for byte, and every result column requested as text.
fn push_extended(out: &mut BytesMut, sample: &Sample, sql: &str) -> Result<(), ConnError> {
    let err = |e: std::io::Error| ConnError::Protocol(e.to_string());
    frontend::parse("", sql, sample.param_types.iter().copied(), out).map_err(err)?;
    frontend::bind(
        "",
        "",
        sample.param_formats.iter().copied(),
        sample.params.iter(),
        |value, buf| match value {
            Some(bytes) => {
                buf.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        },
        [0i16],
        out,
    )
    .map_err(|e| {
        let why = match e {
            frontend::BindError::Conversion(e) => e.to_string(),
            frontend::BindError::Serialization(e) => e.to_string(),
        };
        ConnError::Protocol(format!("cannot encode parameters: {why}"))
    })?;
    frontend::describe(b'P', "", out).map_err(err)?;
    frontend::execute("", 0, out).map_err(err)?;
    frontend::sync(out);
    Ok(())
}

/// What a simple Query produced.
struct SimpleResult {
    error: Option<ErrorFields>,
    /// The first value of the last row, if any.
    last_value: Option<Vec<u8>>,
    status: Option<u8>,
}

/// Reads replies up to ReadyForQuery.
async fn read_simple(conn: &mut ShadowConn, _max_rows: usize) -> Result<SimpleResult, ConnError> {
    let mut result = SimpleResult {
        error: None,
        last_value: None,
        status: None,
    };
    loop {
        let Reply { tag, body } = conn.read_reply().await?;
        match tag {
            b'E' => {
                result.error.get_or_insert_with(|| server_error(&body));
            }
            b'D' => {
                result.last_value = first_value(&body);
            }
            b'Z' => {
                result.status = body.first().copied();
                return Ok(result);
            }
            _ => {}
        }
    }
}

/// Reads one Parse/Bind/Describe/Execute/Sync batch.
async fn read_extended(conn: &mut ShadowConn, spec: &RunSpec<'_>) -> Result<SideResult, ConnError> {
    let mut rows = ResultBuilder::normalised(spec.max_rows, spec.compare);
    let mut error = None;
    loop {
        let Reply { tag, body } = conn.read_reply().await?;
        match tag {
            b'T' => rows.columns(row_description(&body)?),
            b'D' => rows.push(data_row(&body)?),
            b'E' => {
                error.get_or_insert_with(|| server_error(&body));
            }
            b'Z' => {
                return Ok(match error {
                    Some(e) => SideResult::Error(e),
                    None => SideResult::Rows(rows.finish()),
                })
            }
            _ => {} // ParseComplete, BindComplete, NoData, CommandComplete
        }
    }
}

fn first_value(body: &bytes::Bytes) -> Option<Vec<u8>> {
    data_row(body)
        .ok()?
        .into_iter()
        .next()
        .flatten()
        .map(|b| b.to_vec())
}

/// Decodes RowDescription: names and type OIDs.
fn row_description(body: &[u8]) -> Result<Vec<Column>, ConnError> {
    let bad = |e: crate::protocol::reader::DecodeError| ConnError::Protocol(e.to_string());
    let mut r = BodyReader::new(body);
    let n = r.count16("field count").map_err(bad)?;
    let mut columns = Vec::with_capacity(n);
    for _ in 0..n {
        let name = String::from_utf8_lossy(r.cstr("field name").map_err(bad)?).into_owned();
        r.bytes(6, "table oid and column").map_err(bad)?;
        let type_oid = r.i32("type oid").map_err(bad)? as u32;
        r.bytes(8, "type size, modifier and format").map_err(bad)?;
        columns.push(Column { name, type_oid });
    }
    Ok(columns)
}

/// Decodes DataRow into values that share the reply's buffer.
fn data_row(body: &bytes::Bytes) -> Result<Vec<Option<bytes::Bytes>>, ConnError> {
    let bad = |e: crate::protocol::reader::DecodeError| ConnError::Protocol(e.to_string());
    let mut r = BodyReader::new(body);
    let n = r.count16("column count").map_err(bad)?;
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.i32("value length").map_err(bad)?;
        if len < 0 {
            values.push(None);
        } else {
            let start = body.len() - r.remaining().len();
            r.bytes(len as usize, "value").map_err(bad)?;
            values.push(Some(body.slice(start..start + len as usize)));
        }
    }
    Ok(values)
}
