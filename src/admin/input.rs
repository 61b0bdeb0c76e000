//! What the admin API accepts, validated into typed values. Every error is
//! a sentence that says what was wrong and what would be right; the API
//! returns it as `400 {"error": "…"}`.

use crate::outcome::signature::IncidentKind;
use crate::store::{IncidentFilter, IncidentStatus};
use serde::Deserialize;
use std::time::Duration;

/// The longest mute: long enough for any planned fix, short enough that a
/// forgotten mute comes back.
pub const MAX_MUTE: Duration = Duration::from_secs(365 * 86_400);

/// The longest mute reason kept.
pub const MAX_REASON_CHARS: usize = 500;

/// Most incidents one list request returns.
pub const MAX_LIST_LIMIT: u64 = 1000;

/// A duration such as `90s`, `15m`, `2h`, `7d` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration: use a number with a unit, e.g. 90s, 15m, 2h, 7d or 1h30m"
        )
    };
    let text_trimmed = text.trim();
    if text_trimmed.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text_trimmed.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// `2026-11-03T14:05:09Z` (or with `.123` milliseconds) as epoch
/// milliseconds: UTC only, the form the API and the page print.
pub fn parse_utc(text: &str) -> Option<i64> {
    let t = text.strip_suffix('Z').or_else(|| text.strip_suffix('z'))?;
    let (date, time) = t.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let (hms, millis) = match time.split_once('.') {
        Some((hms, frac)) => {
            let digits: String = frac.chars().take(3).collect();
            let scale = 10_i64.pow(3 - digits.len() as u32);
            (hms, digits.parse::<i64>().ok()? * scale)
        }
        None => (time, 0),
    };
    let mut h = hms.splitn(3, ':');
    let hour: i64 = h.next()?.parse().ok()?;
    let minute: i64 = h.next()?.parse().ok()?;
    let second: i64 = h.next().unwrap_or("0").parse().ok()?;
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..61).contains(&second);
    if !valid {
        return None;
    }
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hour * 3600 + minute * 60 + second) * 1000 + millis)
}

/// `since=`: a UTC time (`2026-11-03T14:05:09Z`), epoch milliseconds, or a
/// duration meaning "that long ago" (`2h`).
pub fn parse_since(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Some(ms) = parse_utc(text) {
        return Ok(ms);
    }
    if let Ok(ago) = parse_duration(text) {
        let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
        return Ok(now_ms.saturating_sub(ago));
    }
    Err(format!(
        "since={text:?}: use a UTC time (2026-11-03T14:05:09Z), epoch milliseconds, \
         or a duration ago (2h)"
    ))
}

/// The query string of `GET /api/incidents` (and of the page's filters).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `open`, `acknowledged` or `muted`.
    pub status: Option<String>,
    /// `mismatch`, `new_error`, ….
    pub kind: Option<String>,
    /// 16 hex digits.
    pub fingerprint: Option<String>,
    /// See [`parse_since`].
    pub since: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<u64>,
}

impl ListQuery {
    /// The store filter this query asks for. Empty values mean "any", so
    /// the page's filter form can submit blank fields.
    pub fn filter(&self, now_ms: i64) -> Result<IncidentFilter, String> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let mut filter = IncidentFilter::default();
        if let Some(s) = given(&self.status) {
            filter.status = Some(IncidentStatus::parse(s).ok_or_else(|| {
                format!("status={s:?}: use one of open, acknowledged, muted, resolved")
            })?);
        }
        if let Some(k) = given(&self.kind) {
            filter.kind = Some(IncidentKind::parse(k).ok_or_else(|| {
                let kinds: Vec<&str> = IncidentKind::ALL.iter().map(|k| k.label()).collect();
                format!("kind={k:?}: use one of {}", kinds.join(", "))
            })?);
        }
        if let Some(f) = given(&self.fingerprint) {
            if f.len() != 16 || !f.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "fingerprint={f:?}: a fingerprint is 16 hex digits, as in the logs"
                ));
            }
            filter.fingerprint = Some(f.to_ascii_lowercase());
        }
        if let Some(s) = given(&self.since) {
            filter.since_ms = Some(parse_since(s, now_ms)?);
        }
        if let Some(limit) = self.limit {
            if limit == 0 || limit > MAX_LIST_LIMIT {
                return Err(format!(
                    "limit={limit}: must be between 1 and {MAX_LIST_LIMIT}"
                ));
            }
            filter.limit = limit;
        }
        Ok(filter)
    }
}

/// The body of `POST /api/incidents/{id}/mute`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MuteRequest {
    /// How long, as a duration (`2h`).
    #[serde(rename = "for")]
    pub for_: Option<String>,
    /// How long, in seconds.
    pub seconds: Option<f64>,
    /// Why: shown on the page and in the CLI.
    pub reason: Option<String>,
    /// Who mutes it.
    pub by: Option<String>,
}

/// A validated mute.
#[derive(Debug, Clone, PartialEq)]
pub struct Mute {
    /// How long.
    pub duration: Duration,
    /// Why.
    pub reason: String,
    /// Who.
    pub by: Option<String>,
}

impl MuteRequest {
    /// Checks the request: exactly one of `for`/`seconds`, positive and at
    /// most [`MAX_MUTE`]; a non-empty reason.
    pub fn validate(self) -> Result<Mute, String> {
        let duration =
            match (&self.for_, self.seconds) {
                (Some(text), None) => parse_duration(text)?,
                (None, Some(s)) if s.is_finite() && s > 0.0 && s <= MAX_MUTE.as_secs_f64() => {
                    Duration::from_secs_f64(s)
                }
                (None, Some(s)) => {
                    return Err(format!(
                        "seconds={s}: must be a number greater than 0 and at most {}",
                        MAX_MUTE.as_secs()
                    ))
                }
                (Some(_), Some(_)) => {
                    return Err("give either \"for\" (e.g. \"2h\") or \"seconds\", not both".into())
                }
                (None, None) => return Err(
                    "say how long: {\"for\": \"2h\", \"reason\": \"…\"} or {\"seconds\": 7200, …}"
                        .into(),
                ),
            };
        if duration.is_zero() {
            return Err("a mute must last longer than 0 seconds".into());
        }
        if duration > MAX_MUTE {
            return Err(format!(
                "a mute lasts at most 365 days, got {} seconds",
                duration.as_secs()
            ));
        }
        let reason = self.reason.as_deref().map(str::trim).unwrap_or("");
        if reason.is_empty() {
            return Err(
                "give a \"reason\": it tells the next person why this incident is silent".into(),
            );
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(format!(
                "the reason is longer than {MAX_REASON_CHARS} characters"
            ));
        }
        Ok(Mute {
            duration,
            reason: reason.to_owned(),
            by: clean_by(self.by),
        })
    }
}

/// The (optional) body of ack and unmute.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// Who does it.
    pub by: Option<String>,
}

impl StatusRequest {
    /// Who, trimmed and bounded; `None` when not given.
    pub fn by(self) -> Option<String> {
        clean_by(self.by)
    }
}

fn clean_by(by: Option<String>) -> Option<String> {
    let by: String = by?.trim().chars().take(100).collect();
    (!by.is_empty()).then_some(by)
}

/// The body of `PUT /api/sampling`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingRequest {
    /// The new global sample rate, 0..1.
    pub sample_rate: Option<f64>,
    /// The kill switch: false stops sampling.
    pub enabled: Option<bool>,
}

impl SamplingRequest {
    /// Checks the request: at least one key, a rate within 0..1.
    pub fn validate(&self) -> Result<(), String> {
        if self.sample_rate.is_none() && self.enabled.is_none() {
            return Err(
                "nothing to change: send {\"sample_rate\": 0..1} and/or {\"enabled\": true|false}"
                    .into(),
            );
        }
        if let Some(rate) = self.sample_rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("sample_rate must be between 0 and 1, got {rate}"));
            }
        }
        Ok(())
    }
}

/// Parses a JSON body into `T`; an empty body reads as `{}`. Errors say
/// what was wrong, including unknown keys.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_combinations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "2", "h", "2x", "-2h", "2.5h", "99999999999999999999s"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("is not a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn utc_times_parse_back_what_format_utc_prints() {
        for ms in [0, 951_782_400_000, 1_793_000_000_000] {
            let text = crate::store::format_utc(ms);
            assert_eq!(parse_utc(&text), Some(ms), "{text}");
        }
        assert_eq!(parse_utc("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_utc("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_utc("2026-01-01T00:00:00+01:00"), None);
    }

    #[test]
    fn since_accepts_times_millis_and_durations_ago() {
        let now = 10_000_000;
        assert_eq!(parse_since("1234", now), Ok(1234));
        assert_eq!(parse_since("1970-01-01T00:00:02Z", now), Ok(2000));
        assert_eq!(parse_since("1h", now), Ok(now - 3_600_000));
        assert!(parse_since("yesterday", now).is_err());
    }

    #[test]
    fn list_filters_are_checked_and_blank_means_any() {
        let q = ListQuery {
            status: Some("acknowledged".into()),
            kind: Some("".into()),
            fingerprint: Some("90356C2A5F55A6F1".into()),
            ..Default::default()
        };
        let f = q.filter(0).unwrap();
        assert_eq!(f.status, Some(IncidentStatus::Acknowledged));
        assert_eq!(f.kind, None);
        assert_eq!(f.fingerprint.as_deref(), Some("90356c2a5f55a6f1"));
        let bad = ListQuery {
            kind: Some("oops".into()),
            ..Default::default()
        };
        assert!(bad.filter(0).unwrap_err().contains("mismatch, old_error"));
        let bad = ListQuery {
            limit: Some(0),
            ..Default::default()
        };
        assert!(bad.filter(0).is_err());
    }

    #[test]
    fn mutes_need_one_positive_duration_and_a_reason() {
        let ok: MuteRequest = json_body(br#"{"for": "2h", "reason": " deploy "}"#).unwrap();
        assert_eq!(
            ok.validate(),
            Ok(Mute {
                duration: Duration::from_secs(7200),
                reason: "deploy".into(),
                by: None
            })
        );
        let ok: MuteRequest = json_body(br#"{"seconds": 2, "reason": "x"}"#).unwrap();
        assert_eq!(ok.validate().unwrap().duration, Duration::from_secs(2));
        for (body, expected) in [
            (r#"{"reason": "x"}"#, "say how long"),
            (r#"{"for": "2h", "seconds": 3, "reason": "x"}"#, "not both"),
            (r#"{"seconds": 0, "reason": "x"}"#, "greater than 0"),
            (r#"{"seconds": -5, "reason": "x"}"#, "greater than 0"),
            (r#"{"for": "0s", "reason": "x"}"#, "longer than 0"),
            (r#"{"for": "400d", "reason": "x"}"#, "at most 365 days"),
            (r#"{"for": "soon", "reason": "x"}"#, "is not a duration"),
            (r#"{"for": "2h"}"#, "reason"),
            (r#"{"for": "2h", "reason": "   "}"#, "reason"),
        ] {
            let req: MuteRequest = json_body(body.as_bytes()).unwrap();
            let err = req.validate().unwrap_err();
            assert!(err.contains(expected), "{body}: {err}");
        }
        let err = json_body::<MuteRequest>(br#"{"for": "2h", "why": "x"}"#).unwrap_err();
        assert!(err.contains("unknown field `why`"), "{err}");
    }

    #[test]
    fn sampling_changes_are_validated() {
        let ok: SamplingRequest = json_body(br#"{"sample_rate": 0.5}"#).unwrap();
        assert!(ok.validate().is_ok());
        let off: SamplingRequest = json_body(br#"{"enabled": false}"#).unwrap();
        assert!(off.validate().is_ok());
        let high: SamplingRequest = json_body(br#"{"sample_rate": 1.5}"#).unwrap();
        assert!(high.validate().unwrap_err().contains("between 0 and 1"));
        let empty: SamplingRequest = json_body(b"").unwrap();
        assert!(empty.validate().unwrap_err().contains("nothing to change"));
        assert!(json_body::<SamplingRequest>(br#"{"sample_rate": "x"}"#).is_err());
    }
}
