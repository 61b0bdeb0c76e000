//! Decoding a shadow pipeline's replies: one statement's rows or error at a
//! time, with the project's bounds-checked readers.

use super::conn::{server_error, ConnError, Reply, ShadowConn};
use crate::diff::result::{Column, ResultBuilder, ResultSet};
use crate::diff::CompareOptions;
use crate::protocol::error_response::ErrorFields;
use crate::protocol::reader::BodyReader;
use bytes::Bytes;

/// Reads the replies of one control statement up to its completion: the
/// values of its last row, or its error.
pub(super) async fn read_control(
    conn: &mut ShadowConn,
) -> Result<Result<Vec<Option<Bytes>>, ErrorFields>, ConnError> {
    let mut row = Vec::new();
    loop {
        let Reply { tag, body } = conn.read_reply().await?;
        match tag {
            b'D' => row = data_row(&body)?,
            b'C' | b'I' => return Ok(Ok(row)),
            b'E' => return Ok(Err(server_error(&body))),
            b'Z' => return Err(out_of_step(conn)),
            _ => {} // ParseComplete, BindComplete
        }
    }
}

/// Reads the replies of one side's query up to its completion, keeping
/// `max_rows` rows holding at most `max_bytes` (the rest digested under
/// `compare`'s rules).
pub(super) async fn read_query(
    conn: &mut ShadowConn,
    max_rows: usize,
    max_bytes: usize,
    compare: &CompareOptions,
) -> Result<Result<ResultSet, ErrorFields>, ConnError> {
    let mut rows = ResultBuilder::normalised(max_rows, compare).with_max_bytes(max_bytes);
    loop {
        let Reply { tag, body } = conn.read_reply().await?;
        match tag {
            b'T' => rows.columns(row_description(&body)?),
            b'D' => rows.push(data_row(&body)?),
            b'C' | b'I' => return Ok(Ok(rows.finish())),
            b'E' => return Ok(Err(server_error(&body))),
            b'Z' => return Err(out_of_step(conn)),
            _ => {} // ParseComplete, BindComplete, NoData
        }
    }
}

/// Reads the rows of a simple Query up to its ReadyForQuery; a server
/// error becomes a protocol error (only pgshadow's own queries use this).
pub(super) async fn read_values(
    conn: &mut ShadowConn,
) -> Result<Vec<Vec<Option<Bytes>>>, ConnError> {
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let Reply { tag, body } = conn.read_reply().await?;
        match tag {
            b'D' => rows.push(data_row(&body)?),
            b'E' => error = Some(server_error(&body)),
            b'Z' => break,
            _ => {}
        }
    }
    match error {
        Some(e) => Err(ConnError::Protocol(format!("{} {}", e.code, e.message))),
        None => Ok(rows),
    }
}

/// Reads up to ReadyForQuery; returns its transaction status.
pub(super) async fn read_until_ready(conn: &mut ShadowConn) -> Result<u8, ConnError> {
    loop {
        let Reply { tag, body } = conn.read_reply().await?;
        if tag == b'Z' {
            return Ok(body.first().copied().unwrap_or(0));
        }
    }
}

/// The server ended the pipeline earlier than the replies said it would.
fn out_of_step(conn: &mut ShadowConn) -> ConnError {
    conn.poisoned = true;
    ConnError::Protocol("shadow connection out of step: ReadyForQuery before the reply".into())
}

/// The `index`th value of a control statement's row, parsed.
pub(super) fn value_at<T: std::str::FromStr>(row: &[Option<Bytes>], index: usize) -> Option<T> {
    let value = row.get(index)?.as_ref()?;
    std::str::from_utf8(value).ok()?.trim().parse().ok()
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
fn data_row(body: &Bytes) -> Result<Vec<Option<Bytes>>, ConnError> {
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
