//! When two text values count as equal.
//!
//! Exact bytes by default. Two opt-in rules absorb differences a migration
//! may introduce on purpose: a relative tolerance for `float4`/`float8`
//! (a computation moved into SQL, a changed aggregation order) and scale
//! for `numeric` (`numeric(10,2)` became plain `numeric`, so `1.50` now
//! reads `1.5`). NULL equals only NULL; in particular NULL is not `''`.

use super::options::CompareOptions;
use super::types;

/// How one column's values are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Byte for byte.
    Exact,
    /// Parsed as f64, equal within the relative tolerance.
    Float,
    /// Trailing fractional zeros do not count.
    NumericScale,
}

/// The comparison rule of every compared column.
#[derive(Debug, Clone)]
pub(crate) struct ValueRules {
    rules: Vec<Rule>,
    tolerance: f64,
}

impl ValueRules {
    /// Rules for columns of these types (the old side's; the column check
    /// has made sure the new side's types are in the same families).
    pub(crate) fn new(types: impl IntoIterator<Item = u32>, opts: &CompareOptions) -> Self {
        let tolerant = opts.float_tolerance > 0.0;
        let rules = types
            .into_iter()
            .map(|oid| {
                if tolerant && types::is_float(oid) {
                    Rule::Float
                } else if opts.numeric_scale && types::is_numeric(oid) {
                    Rule::NumericScale
                } else {
                    Rule::Exact
                }
            })
            .collect();
        Self {
            rules,
            tolerance: opts.float_tolerance,
        }
    }

    fn rule(&self, column: usize) -> Rule {
        self.rules.get(column).copied().unwrap_or(Rule::Exact)
    }

    /// Whether some column compares within a tolerance, which hashing
    /// cannot capture: multiset matching then needs a second pass.
    pub(crate) fn has_tolerance(&self) -> bool {
        self.rules.contains(&Rule::Float)
    }

    /// Whether this column compares within a tolerance.
    pub(crate) fn is_tolerant(&self, column: usize) -> bool {
        self.rule(column) == Rule::Float
    }

    /// Whether two values of `column` are equal.
    pub(crate) fn equal(&self, column: usize, old: Option<&[u8]>, new: Option<&[u8]>) -> bool {
        match (old, new) {
            (None, None) => true,
            (Some(a), Some(b)) => match self.rule(column) {
                Rule::Exact => a == b,
                Rule::Float => floats_equal(a, b, self.tolerance),
                Rule::NumericScale => normalise_numeric(a) == normalise_numeric(b),
            },
            _ => false,
        }
    }

    /// A hashable form of the value: equal keys mean equal values. For
    /// tolerant float columns the converse does not hold (see
    /// [`has_tolerance`](Self::has_tolerance)).
    pub(crate) fn key<'a>(&self, column: usize, value: Option<&'a [u8]>) -> Option<&'a [u8]> {
        match self.rule(column) {
            Rule::NumericScale => value.map(normalise_numeric),
            Rule::Exact | Rule::Float => value,
        }
    }
}

/// `1.500` → `1.5`, `2.0` → `2`, `-0.00` → `0`. Postgres prints numeric
/// without exponent; anything else (`NaN`, garbage) is left as it is.
pub(crate) fn normalise_numeric(value: &[u8]) -> &[u8] {
    let plain = !value.is_empty()
        && value
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'));
    if !plain {
        return value;
    }
    let mut digits = value;
    if digits.contains(&b'.') {
        while let [rest @ .., b'0'] = digits {
            digits = rest;
        }
        if let [rest @ .., b'.'] = digits {
            digits = rest;
        }
    }
    let zero = digits.contains(&b'0') && digits.iter().all(|b| matches!(b, b'0' | b'-' | b'+'));
    if zero {
        b"0"
    } else {
        digits
    }
}

/// Equal when `|a - b| <= tolerance * max(1, |a|, |b|)`; NaN equals NaN,
/// an infinity only itself. Unparsable text falls back to exact bytes.
pub(crate) fn floats_equal(a: &[u8], b: &[u8], tolerance: f64) -> bool {
    if a == b {
        return true;
    }
    if tolerance.is_nan() || tolerance <= 0.0 {
        return false;
    }
    let (Some(x), Some(y)) = (parse_float(a), parse_float(b)) else {
        return false;
    };
    if x.is_nan() || y.is_nan() {
        return x.is_nan() && y.is_nan();
    }
    if x.is_infinite() || y.is_infinite() {
        return x == y;
    }
    (x - y).abs() <= tolerance * 1f64.max(x.abs()).max(y.abs())
}

fn parse_float(value: &[u8]) -> Option<f64> {
    match std::str::from_utf8(value).ok()?.trim() {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        text => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(types: &[u32], tolerance: f64, numeric_scale: bool) -> ValueRules {
        let opts = CompareOptions {
            float_tolerance: tolerance,
            numeric_scale,
            ..CompareOptions::default()
        };
        ValueRules::new(types.iter().copied(), &opts)
    }

    #[test]
    fn numeric_scale_normalisation() {
        let n = |s: &str| String::from_utf8_lossy(normalise_numeric(s.as_bytes())).into_owned();
        assert_eq!(n("1.50"), "1.5");
        assert_eq!(n("2.0"), "2");
        assert_eq!(n("2.000"), "2");
        assert_eq!(n("10"), "10");
        assert_eq!(n("100.000"), "100");
        assert_eq!(n("-0.00"), "0");
        assert_eq!(n("-0"), "0");
        assert_eq!(n("0.000"), "0");
        assert_eq!(n("-12.340"), "-12.34");
        assert_eq!(n("NaN"), "NaN");
        assert_eq!(n("Infinity"), "Infinity");
    }

    #[test]
    fn numeric_scale_applies_only_when_asked_and_only_to_numeric() {
        let on = rules(&[types::NUMERIC, types::TEXT], 0.0, true);
        assert!(on.equal(0, Some(b"1.50"), Some(b"1.5")));
        assert!(on.equal(0, Some(b"2"), Some(b"2.00")));
        assert!(!on.equal(0, Some(b"1.51"), Some(b"1.5")));
        assert!(!on.equal(1, Some(b"1.50"), Some(b"1.5")));
        assert_eq!(on.key(0, Some(b"1.50")), on.key(0, Some(b"1.5")));
        let off = rules(&[types::NUMERIC], 0.0, false);
        assert!(!off.equal(0, Some(b"1.50"), Some(b"1.5")));
    }

    #[test]
    fn floats_compare_within_a_relative_tolerance() {
        assert!(floats_equal(b"1.0", b"1.0000001", 1e-6));
        assert!(!floats_equal(b"1.0", b"1.001", 1e-6));
        // Relative for large values, absolute below 1.
        assert!(floats_equal(b"1000000", b"1000000.5", 1e-6));
        assert!(floats_equal(b"0", b"0.0000005", 1e-6));
        assert!(!floats_equal(b"0", b"0.00001", 1e-6));
        assert!(floats_equal(b"NaN", b"NaN", 1e-6));
        assert!(!floats_equal(b"NaN", b"1", 1e-6));
        assert!(floats_equal(b"Infinity", b"Infinity", 1e-6));
        assert!(!floats_equal(b"Infinity", b"-Infinity", 1e-6));
        assert!(!floats_equal(b"Infinity", b"1e308", 1e-6));
        assert!(!floats_equal(b"abc", b"abd", 1e-6));
    }

    #[test]
    fn zero_tolerance_compares_floats_as_text() {
        assert!(!floats_equal(b"1", b"1.0", 0.0));
        assert!(!floats_equal(b"1", b"1.0", f64::NAN));
        let exact = rules(&[types::FLOAT8], 0.0, false);
        assert!(!exact.has_tolerance());
        assert!(!exact.equal(0, Some(b"0.1"), Some(b"0.10000000000000001")));
        let tolerant = rules(&[types::FLOAT4, types::INT4], 1e-9, false);
        assert!(tolerant.has_tolerance());
        assert!(tolerant.equal(0, Some(b"0.1"), Some(b"0.10000000000000001")));
        assert!(!tolerant.equal(1, Some(b"1"), Some(b"01")));
    }

    #[test]
    fn null_vs_empty_string_is_not_equal() {
        let r = rules(&[types::TEXT], 0.0, false);
        assert!(r.equal(0, None, None));
        assert!(!r.equal(0, None, Some(b"")));
        assert!(!r.equal(0, Some(b""), None));
    }
}
