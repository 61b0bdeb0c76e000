//! Postgres type OIDs as the diff sees them: which types count as the same
//! across a migration, and how their values read in a report.
//!
//! Results are requested in text format, so an `int4` column widened to
//! `int8`, or a `varchar(50)` turned into `text`, sends the same bytes for
//! the same value. Such changes are the point of many migrations and are
//! not mismatches unless `strict_types` asks for it.

use std::borrow::Cow;

/// `bool`.
pub const BOOL: u32 = 16;
/// `name`.
pub const NAME: u32 = 19;
/// `int8`.
pub const INT8: u32 = 20;
/// `int2`.
pub const INT2: u32 = 21;
/// `int4`.
pub const INT4: u32 = 23;
/// `text`.
pub const TEXT: u32 = 25;
/// `oid`.
pub const OID: u32 = 26;
/// `float4`.
pub const FLOAT4: u32 = 700;
/// `float8`.
pub const FLOAT8: u32 = 701;
/// `bpchar` (`char(n)`).
pub const BPCHAR: u32 = 1042;
/// `varchar`.
pub const VARCHAR: u32 = 1043;
/// `numeric`.
pub const NUMERIC: u32 = 1700;

/// Groups of types whose text values compare as equals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Integer,
    Text,
    Float,
    Numeric,
}

fn family(oid: u32) -> Option<Family> {
    match oid {
        INT2 | INT4 | INT8 => Some(Family::Integer),
        TEXT | VARCHAR | BPCHAR | NAME => Some(Family::Text),
        FLOAT4 | FLOAT8 => Some(Family::Float),
        NUMERIC => Some(Family::Numeric),
        _ => None,
    }
}

/// Whether a column of type `old` may become `new` without a mismatch.
///
/// With `strict` only identical OIDs match; otherwise the families
/// {int2, int4, int8}, {text, varchar, bpchar, name}, {float4, float8} and
/// {numeric} each count as one type. Every other type must match exactly.
pub fn types_match(old: u32, new: u32, strict: bool) -> bool {
    if old == new {
        return true;
    }
    !strict && family(old).is_some() && family(old) == family(new)
}

/// Whether values of this type follow the float-tolerance rule.
pub fn is_float(oid: u32) -> bool {
    family(oid) == Some(Family::Float)
}

/// Whether values of this type follow the numeric-scale rule.
pub fn is_numeric(oid: u32) -> bool {
    oid == NUMERIC
}

/// Whether values of this type read as numbers, so a report shows them
/// unquoted (`score old=1 new=2`, but `title old='a' new='b'`).
pub fn reads_as_number(oid: u32) -> bool {
    matches!(
        family(oid),
        Some(Family::Integer | Family::Float | Family::Numeric)
    ) || oid == OID
}

/// The type's name for reports; `oid 1234` for types not listed here.
pub fn type_name(oid: u32) -> Cow<'static, str> {
    let name = match oid {
        BOOL => "bool",
        17 => "bytea",
        18 => "char",
        NAME => "name",
        INT8 => "int8",
        INT2 => "int2",
        INT4 => "int4",
        TEXT => "text",
        OID => "oid",
        114 => "json",
        142 => "xml",
        FLOAT4 => "float4",
        FLOAT8 => "float8",
        705 => "unknown",
        790 => "money",
        BPCHAR => "bpchar",
        VARCHAR => "varchar",
        1082 => "date",
        1083 => "time",
        1114 => "timestamp",
        1184 => "timestamptz",
        1186 => "interval",
        1266 => "timetz",
        1560 => "bit",
        1562 => "varbit",
        NUMERIC => "numeric",
        2950 => "uuid",
        3802 => "jsonb",
        _ => return Cow::Owned(format!("oid {oid}")),
    };
    Cow::Borrowed(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_match_unless_strict() {
        assert!(types_match(INT4, INT8, false));
        assert!(!types_match(INT4, INT8, true));
        assert!(types_match(VARCHAR, TEXT, false));
        assert!(types_match(FLOAT4, FLOAT8, false));
        assert!(types_match(NUMERIC, NUMERIC, true));
    }

    #[test]
    fn types_outside_a_family_must_be_identical() {
        assert!(!types_match(INT4, TEXT, false));
        assert!(!types_match(INT8, NUMERIC, false));
        assert!(!types_match(FLOAT8, NUMERIC, false));
        assert!(!types_match(1114, 1184, false));
        assert!(types_match(2950, 2950, false));
    }

    #[test]
    fn unknown_types_are_named_by_oid() {
        assert_eq!(type_name(INT4), "int4");
        assert_eq!(type_name(99_999), "oid 99999");
    }
}
