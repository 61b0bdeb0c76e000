//! `[compare]`: how two result sets are compared, and when a new side
//! counts as slower.

use super::error::{check, Rejection};
use crate::diff::CompareOptions;
use serde::Deserialize;

/// Paired samples (old and new time of one sample) kept per fingerprint
/// for the slower verdict ([`crate::shadow::latency`]), so
/// `compare.slower_min_samples` may ask for at most this many. Defined
/// here, the lower layer, so the config need not depend on the shadow.
pub const PAIR_WINDOW: usize = 128;

/// `[compare]`: how two result sets are compared.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompareConfig {
    /// Columns left out of every comparison.
    pub ignore_columns: Vec<String>,
    /// Rows compared per side at most; further rows are compared through
    /// digests only.
    pub max_rows: usize,
    /// Relative tolerance for float4/float8 values (0 = exact).
    pub float_tolerance: f64,
    /// Treat numeric values that differ only in trailing zeros (1.50 vs
    /// 1.5) as equal.
    pub numeric_scale: bool,
    /// Require identical column types. By default compatible types are
    /// equal: int2/int4/int8, text/varchar/bpchar/name, float4/float8.
    pub strict_types: bool,
    /// Differing rows listed per mismatch at most.
    pub max_reported: usize,
    /// A statement's new side is `slower` when it takes at least this many
    /// times as long as the old side, reliably (see `slower_min_samples`).
    pub slower_factor: f64,
    /// Paired samples (old and new time of one sample) needed before a
    /// statement can be judged slower; a sign test over them must pass
    /// (with 20: at least 18 clearly slower), so a few unlucky samples
    /// cannot. At most 128.
    pub slower_min_samples: usize,
    /// A sample counts as slower only when the new side also takes at
    /// least this many milliseconds longer: a 0.1 ms lookup that takes
    /// 0.4 ms is not worth an incident.
    pub slower_min_ms: f64,
}

impl Default for CompareConfig {
    fn default() -> Self {
        Self {
            ignore_columns: Vec::new(),
            max_rows: 10_000,
            float_tolerance: 0.0,
            numeric_scale: false,
            strict_types: false,
            max_reported: 10,
            slower_factor: 3.0,
            slower_min_samples: 20,
            slower_min_ms: 5.0,
        }
    }
}

impl CompareConfig {
    /// The comparison options `[compare]` describes, listing at most
    /// `max_ids` differing row ids; which columns name rows is up to each
    /// statement's plan, so none are set here.
    pub fn options(&self, max_ids: usize) -> CompareOptions {
        CompareOptions {
            ignore_columns: self.ignore_columns.clone(),
            float_tolerance: self.float_tolerance,
            numeric_scale: self.numeric_scale,
            strict_types: self.strict_types,
            id_columns: Vec::new(),
            id_unique: false,
            max_reported: self.max_reported,
            max_ids,
        }
    }

    /// `[compare]` checks.
    pub(super) fn validate(&self) -> Result<(), Rejection> {
        check(
            self.float_tolerance >= 0.0 && self.float_tolerance.is_finite(),
            "compare.float_tolerance",
            || format!("must be a finite number >= 0, got {}", self.float_tolerance),
        )?;
        check(self.max_rows > 0, "compare.max_rows", || {
            "must be at least 1".into()
        })?;
        self.validate_slower()
    }

    /// `compare.slower_*` checks.
    fn validate_slower(&self) -> Result<(), Rejection> {
        let c = self;
        if !(c.slower_factor.is_finite() && c.slower_factor > 1.0) {
            return Err((
                "compare.slower_factor",
                format!("must be a finite number > 1, got {}", c.slower_factor),
            ));
        }
        let window = PAIR_WINDOW;
        if !(1..=window).contains(&c.slower_min_samples) {
            return Err((
                "compare.slower_min_samples",
                format!(
                    "must be between 1 and {window}, got {}",
                    c.slower_min_samples
                ),
            ));
        }
        if !(c.slower_min_ms.is_finite() && c.slower_min_ms >= 0.0) {
            return Err((
                "compare.slower_min_ms",
                format!("must be a finite number >= 0, got {}", c.slower_min_ms),
            ));
        }
        Ok(())
    }
}
