//! What counts as a difference: the options of one comparison.
//!
//! A leaf every other file of the diff may name: the result builder (which
//! digests rows as the comparison will see them), the value rules, the
//! views and the report all read it.

/// What counts as a difference (config `[compare]`, with the id column
/// filled in per query by the executor).
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Output columns left out of the comparison, matched
    /// case-insensitively: columns expected to differ, such as a
    /// `migrated_at` the new schema adds.
    pub ignore_columns: Vec<String>,
    /// Relative tolerance for `float4`/`float8` values; `0.0` compares
    /// their text exactly.
    pub float_tolerance: f64,
    /// Compare `numeric` values ignoring trailing fractional zeros
    /// (`1.50` == `1.5`, `2.0` == `2`), for migrations that change a
    /// numeric's declared scale.
    pub numeric_scale: bool,
    /// Require identical type OIDs. When false, int2/int4/int8,
    /// text/varchar/bpchar/name and float4/float8 each count as one type,
    /// so a widened column is not a mismatch.
    pub strict_types: bool,
    /// Output columns that name rows (`id`; `env_id, entry_id` for a
    /// composite key): reports then say `id=123` and list missing and
    /// extra ids. Used when all are present at the same positions in both
    /// results.
    pub id_columns: Vec<String>,
    /// `id_columns` identify each row (every relation's whole key). Only
    /// then does a row found on both sides of a cut run of ties with other
    /// values count as changed: a partial key may name two different rows
    /// alike.
    pub id_unique: bool,
    /// At most this many differing rows, ids or column changes in a report.
    pub max_reported: usize,
    /// At most this many differing row ids listed in [`Diff::ids`](super::Diff::ids).
    pub max_ids: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            ignore_columns: Vec::new(),
            float_tolerance: 0.0,
            numeric_scale: false,
            strict_types: false,
            id_columns: Vec::new(),
            id_unique: false,
            max_reported: 10,
            max_ids: 10_000,
        }
    }
}
