//! A result set as the shadow received it, kept within bounded memory.
//!
//! Values are the text-format bytes the server sent, shared with the
//! receive buffer (no copy). At most `max_rows` rows are kept; the rest
//! are folded into two digests (one order-sensitive, one not), so results
//! of any size can still be compared, only not reported row by row.
//!
//! Digests only see bytes, so rules such as ignored columns must be applied
//! before hashing: build with [`ResultBuilder::normalised`] and the
//! options later given to [`compare`](super::compare()).

use super::normalise::normalise_numeric;
use super::options::CompareOptions;
use super::types;
use bytes::Bytes;

/// One output column from RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name as Postgres reports it.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
}

/// One row: text-format values, `None` for NULL.
pub type Row = Vec<Option<Bytes>>;

/// Digests of the rows beyond `max_rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TailDigest {
    /// Depends on the rows and their order.
    pub ordered: u64,
    /// Depends on the rows only (a commutative combination).
    pub unordered: u64,
    /// The rows were hashed without the ignored columns and with numeric
    /// scale normalised (see [`ResultBuilder::normalised`]); otherwise
    /// as sent.
    pub normalised: bool,
}

/// A bounded result set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultSet {
    /// The columns.
    pub columns: Vec<Column>,
    /// The first `max_rows` rows.
    pub rows: Vec<Row>,
    /// Every row received, kept or not.
    pub total_rows: u64,
    /// Digests of the rows that were not kept.
    pub tail: TailDigest,
}

impl ResultSet {
    /// Whether some rows were only digested.
    pub fn truncated(&self) -> bool {
        self.total_rows > self.rows.len() as u64
    }
}

/// Collects rows as they stream in.
#[derive(Debug)]
pub struct ResultBuilder {
    max_rows: usize,
    /// Bytes of kept rows at most (values plus [`ROW_OVERHEAD`] a row).
    max_bytes: usize,
    /// Bytes of the rows kept so far.
    kept_bytes: usize,
    /// A row was digested because `max_bytes` was reached.
    bytes_exceeded: bool,
    set: ResultSet,
    /// Set for [`normalised`](Self::normalised) builders.
    digest_rules: Option<DigestRules>,
}

/// What a normalising builder needs to hash the tail as the comparison
/// will see it; the shape is known once the columns are.
#[derive(Debug)]
struct DigestRules {
    ignore_columns: Vec<String>,
    numeric_scale: bool,
    shape: Option<DigestShape>,
}

impl ResultBuilder {
    /// Keeps at most `max_rows` rows; digests the rest as sent.
    pub fn new(max_rows: usize) -> Self {
        Self {
            max_rows,
            max_bytes: usize::MAX,
            kept_bytes: 0,
            bytes_exceeded: false,
            set: ResultSet::default(),
            digest_rules: None,
        }
    }

    /// Keeps at most `max_rows` rows; digests the rest without the
    /// ignored columns and with numeric scale normalised, so that rows
    /// beyond `max_rows` follow the same rules as the kept ones. Pass the
    /// options later given to [`compare`](super::compare()). (Float
    /// tolerance cannot be hashed: floats are digested as sent.)
    pub fn normalised(max_rows: usize, opts: &CompareOptions) -> Self {
        Self {
            digest_rules: Some(DigestRules {
                ignore_columns: opts.ignore_columns.clone(),
                numeric_scale: opts.numeric_scale,
                shape: None,
            }),
            ..Self::new(max_rows)
        }
    }

    /// Also keeps rows only while they hold at most `max_bytes` in all;
    /// the rest is digested like rows beyond `max_rows`.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Bytes of the rows kept (values plus [`ROW_OVERHEAD`] a row).
    pub fn kept_bytes(&self) -> usize {
        self.kept_bytes
    }

    /// Whether rows were digested because the byte bound was reached.
    pub fn bytes_exceeded(&self) -> bool {
        self.bytes_exceeded
    }

    /// Sets the columns (from RowDescription).
    pub fn columns(&mut self, columns: Vec<Column>) {
        if let Some(rules) = &mut self.digest_rules {
            rules.shape = Some(DigestShape::new(
                &columns,
                &rules.ignore_columns,
                rules.numeric_scale,
            ));
        }
        self.set.columns = columns;
    }

    /// Adds one row.
    pub fn push(&mut self, row: Row) {
        self.set.total_rows += 1;
        let bytes = row_bytes(&row);
        let fits = self.kept_bytes.saturating_add(bytes) <= self.max_bytes
            // Once a row was digested, all later ones are: the kept rows
            // stay a prefix.
            && !self.bytes_exceeded;
        if self.set.rows.len() < self.max_rows && fits {
            self.kept_bytes += bytes;
            self.set.rows.push(row);
        } else {
            if !fits && self.set.rows.len() < self.max_rows {
                self.bytes_exceeded = true;
            }
            let h = match self.shape() {
                Some(shape) => shape.hash(&row),
                None => row_hash(&row),
            };
            let tail = &mut self.set.tail;
            tail.ordered = ordered_step(tail.ordered, h);
            tail.unordered = tail.unordered.wrapping_add(unordered_term(h));
        }
    }

    fn shape(&self) -> Option<&DigestShape> {
        self.digest_rules.as_ref().and_then(|r| r.shape.as_ref())
    }

    /// The collected result.
    pub fn finish(mut self) -> ResultSet {
        self.set.tail.normalised = self.shape().is_some();
        self.set
    }
}

/// What a kept row costs beyond its values' bytes (the row's vector and
/// each value's handle), for byte bounds.
pub const ROW_OVERHEAD: usize = 24;

/// The bytes a kept row holds, as byte bounds count them.
pub fn row_bytes(row: &Row) -> usize {
    row.iter()
        .map(|v| v.as_ref().map_or(0, |b| b.len()) + 32)
        .sum::<usize>()
        + ROW_OVERHEAD
}

/// Folds one row hash into the order-sensitive digest.
pub(crate) fn ordered_step(digest: u64, h: u64) -> u64 {
    (digest ^ h)
        .wrapping_mul(0x0000_0100_0000_01b3)
        .rotate_left(7)
}

/// One row's share of the order-insensitive digest (a sum of these).
pub(crate) fn unordered_term(h: u64) -> u64 {
    h.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

/// FNV-1a over a row, with NULL distinct from every value.
pub fn row_hash(row: &Row) -> u64 {
    hash_cells(row.iter().map(|v| v.as_deref()))
}

/// FNV-1a over a sequence of values (length-prefixed, so `ab|c` and
/// `a|bc` differ), with NULL distinct from every value.
pub(crate) fn hash_cells<'a>(cells: impl Iterator<Item = Option<&'a [u8]>>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for value in cells {
        match value {
            None => eat(0xff),
            Some(v) => {
                for b in (v.len() as u32).to_be_bytes() {
                    eat(b);
                }
                for &b in v {
                    eat(b);
                }
            }
        }
        eat(0xfe);
    }
    h
}

/// Indices of the columns not named in `ignore_columns` (compared
/// case-insensitively).
pub(crate) fn kept_columns(columns: &[Column], ignore_columns: &[String]) -> Vec<usize> {
    let ignored = |name: &str| {
        let name = name.to_lowercase();
        ignore_columns.iter().any(|i| i.to_lowercase() == name)
    };
    columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !ignored(&c.name))
        .map(|(i, _)| i)
        .collect()
}

/// Which cells a normalised digest covers and how: the columns left after
/// the ignore list, numeric values scale-normalised. Float tolerance
/// cannot be hashed, so floats are digested as sent.
#[derive(Debug, Clone)]
pub(crate) struct DigestShape {
    keep: Vec<usize>,
    numeric: Vec<bool>,
}

impl DigestShape {
    /// The shape for a result with these columns under `ignore_columns`
    /// and the numeric-scale rule.
    pub(crate) fn new(columns: &[Column], ignore_columns: &[String], numeric_scale: bool) -> Self {
        let keep = kept_columns(columns, ignore_columns);
        let numeric = keep
            .iter()
            .map(|&i| {
                numeric_scale
                    && columns
                        .get(i)
                        .is_some_and(|c| types::is_numeric(c.type_oid))
            })
            .collect();
        Self { keep, numeric }
    }

    /// The row's hash as the comparison sees it.
    pub(crate) fn hash(&self, row: &Row) -> u64 {
        hash_cells(self.keep.iter().zip(&self.numeric).map(|(&i, &numeric)| {
            let value = row.get(i).and_then(|v| v.as_deref());
            if numeric {
                value.map(normalise_numeric)
            } else {
                value
            }
        }))
    }
}

/// The order-insensitive digest of *all* rows of a result, the kept ones
/// and the digested tail alike.
///
/// Which rows end up kept is arbitrary when the order is not total (two
/// plans may return the same rows in another order), so only the digest
/// of the whole result compares fairly. The kept rows are hashed the way
/// the builder hashed the tail: normalised when it was.
pub(crate) fn whole_unordered_digest(set: &ResultSet, opts: &CompareOptions) -> u64 {
    let shape = set
        .tail
        .normalised
        .then(|| DigestShape::new(&set.columns, &opts.ignore_columns, opts.numeric_scale));
    set.rows.iter().fold(set.tail.unordered, |acc, row| {
        let h = match &shape {
            Some(shape) => shape.hash(row),
            None => row_hash(row),
        };
        acc.wrapping_add(unordered_term(h))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[Option<&str>]) -> Row {
        values
            .iter()
            .map(|v| v.map(|s| Bytes::copy_from_slice(s.as_bytes())))
            .collect()
    }

    #[test]
    fn rows_beyond_the_limit_are_digested_order_sensitively_and_not() {
        let build = |order: &[&str]| {
            let mut b = ResultBuilder::new(1);
            for v in order {
                b.push(row(&[Some(v)]));
            }
            b.finish()
        };
        let a = build(&["x", "1", "2", "3"]);
        let b = build(&["x", "3", "2", "1"]);
        assert_eq!(a.rows.len(), 1);
        assert_eq!(a.total_rows, 4);
        assert!(a.truncated());
        assert_eq!(a.tail.unordered, b.tail.unordered);
        assert_ne!(a.tail.ordered, b.tail.ordered);
        assert_ne!(
            build(&["x", "1", "2", "4"]).tail.unordered,
            a.tail.unordered
        );
    }

    #[test]
    fn null_differs_from_every_value() {
        assert_ne!(row_hash(&row(&[None])), row_hash(&row(&[Some("")])));
        assert_ne!(
            row_hash(&row(&[Some("ab"), Some("c")])),
            row_hash(&row(&[Some("a"), Some("bc")]))
        );
    }
}
