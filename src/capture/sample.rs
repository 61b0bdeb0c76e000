//! What the relay hands to the shadow: one completed execution of a read,
//! with everything needed to replay it on another connection.

use super::fingerprint::Fingerprint;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

/// Session settings the shadow applies with SET LOCAL, as last reported by
/// the server (ParameterStatus) or sent in the startup packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSettings {
    /// `TimeZone`.
    pub timezone: Option<String>,
    /// `DateStyle`.
    pub datestyle: Option<String>,
    /// `IntervalStyle`.
    pub intervalstyle: Option<String>,
    /// `extra_float_digits` (not reported by the server; startup only).
    pub extra_float_digits: Option<String>,
    /// `client_encoding`: parameters and SQL are in this encoding.
    pub client_encoding: Option<String>,
}

impl SessionSettings {
    fn slots(&self) -> [(&'static str, &Option<String>); 5] {
        [
            ("TimeZone", &self.timezone),
            ("DateStyle", &self.datestyle),
            ("IntervalStyle", &self.intervalstyle),
            ("extra_float_digits", &self.extra_float_digits),
            ("client_encoding", &self.client_encoding),
        ]
    }

    /// The settings as `(name, value)` pairs, for SET LOCAL.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.slots()
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    }

    /// The settings whose value differs from `current` (what a connection
    /// has in effect already): only these need SET LOCAL.
    pub fn changes_from<'a>(
        &'a self,
        current: &'a SessionSettings,
    ) -> impl Iterator<Item = (&'static str, &'a str)> {
        self.slots()
            .into_iter()
            .zip(current.slots())
            .filter_map(|((k, v), (_, now))| match v {
                Some(v) if now.as_ref() != Some(v) => Some((k, v.as_str())),
                _ => None,
            })
    }

    /// Applies one setting by its server name; others are ignored.
    pub fn set(&mut self, name: &str, value: &str) {
        let slot = match name.to_ascii_lowercase().as_str() {
            "timezone" => &mut self.timezone,
            "datestyle" => &mut self.datestyle,
            "intervalstyle" => &mut self.intervalstyle,
            "extra_float_digits" => &mut self.extra_float_digits,
            "client_encoding" => &mut self.client_encoding,
            _ => return,
        };
        *slot = Some(value.to_string());
    }
}

/// One execution of a read, completed on the primary, to be replayed.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Groups executions of the same statement.
    pub fingerprint: Fingerprint,
    /// The SQL as the client sent it.
    pub sql: Arc<str>,
    /// Parameter type OIDs from Parse (empty for a simple Query).
    pub param_types: Arc<[u32]>,
    /// Parameter format codes exactly as bound.
    pub param_formats: Vec<i16>,
    /// Parameter values exactly as bound (`None` = NULL).
    pub params: Vec<Option<Bytes>>,
    /// Session settings at the time of the execution.
    pub settings: Arc<SessionSettings>,
    /// The database the client is connected to.
    pub database: Arc<str>,
    /// When the primary completed it.
    pub completed_at: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_settings_that_differ_from_the_connection_s_need_setting() {
        let mut client = SessionSettings::default();
        client.set("TimeZone", "Europe/Berlin");
        client.set("DateStyle", "ISO, MDY");
        client.set("extra_float_digits", "3");
        let mut conn = SessionSettings::default();
        conn.set("timezone", "UTC");
        conn.set("DateStyle", "ISO, MDY");
        conn.set("IntervalStyle", "postgres");
        let changes: Vec<_> = client.changes_from(&conn).collect();
        assert_eq!(
            changes,
            [("TimeZone", "Europe/Berlin"), ("extra_float_digits", "3")]
        );
        assert_eq!(client.changes_from(&client).count(), 0);
        assert_eq!(client.pairs().count(), 3);
    }
}
