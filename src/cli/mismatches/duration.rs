//! Durations as people type them: `30m`, `2h`, `1d`, `1h30m`.

use std::time::Duration;

/// Longest duration accepted (a mute of ten years is a mistake or a
/// delete; either way not a mute).
const MAX: Duration = Duration::from_secs(3650 * 86_400);

/// Parses `30s`, `30m`, `2h`, `1d`, `1w` or a sum of them (`1h30m`). The
/// error says what was wrong and shows valid forms; clap prints it with
/// the option's name.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let help = "use a number and a unit, e.g. 30m, 2h, 1d or 1h30m (units: s, m, h, d, w)";
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty duration: {help}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!("invalid duration {text:?}: {help}"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let seconds_per_unit = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "" => return Err(format!("invalid duration {text:?}: missing unit; {help}")),
            other => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {other:?}; {help}"
                ))
            }
        };
        rest = &rest[unit_len..];
        let part = number
            .checked_mul(seconds_per_unit)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("invalid duration {text:?}: too long"))?;
        total = total.saturating_add(part);
    }
    if total.is_zero() {
        return Err(format!("duration {text:?} is zero: {help}"));
    }
    if total > MAX {
        return Err(format!("duration {text:?} is longer than 3650d"));
    }
    Ok(total)
}

/// `2h`, `1d 3h`, `45m`: a duration for people, at most two units.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size && parts.len() < 2 {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_forms_parse() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 45s "), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
    }

    #[test]
    fn nonsense_is_refused_with_a_hint() {
        for (text, expect) in [
            ("", "empty"),
            ("2", "missing unit"),
            ("2x", "unknown unit \"x\""),
            ("h", "invalid duration"),
            ("-1h", "invalid duration"),
            ("0m", "is zero"),
            ("99999999999999999999h", "number too large"),
            ("4000d", "longer than 3650d"),
            ("2 h", "invalid duration"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(expect), "{text:?}: {err}");
        }
    }

    #[test]
    fn durations_print_in_at_most_two_units() {
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(format_duration(Duration::from_secs(90_061)), "1d 1h");
        assert_eq!(format_duration(Duration::from_secs(59)), "59s");
    }
}
