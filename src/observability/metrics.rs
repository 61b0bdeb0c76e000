//! Every metric pgshadow emits: names, label sets and help text in one
//! place.
//!
//! Labels are always drawn from small fixed sets (an enum's labels), never
//! from SQL text, user names or addresses, so the series count is bounded.

use ::metrics::{describe_counter, describe_gauge, Unit};

/// Client connections currently open.
pub const CLIENT_CONNECTIONS: &str = "pgshadow_client_connections";
/// Client connections accepted since start.
pub const CLIENT_CONNECTIONS_TOTAL: &str = "pgshadow_client_connections_total";
/// Sessions ended, by `reason` ([`crate::proxy::SessionEnd::label`]).
pub const SESSIONS_ENDED_TOTAL: &str = "pgshadow_sessions_ended_total";
/// Cancel requests received, by `result` (`forwarded`, `unknown_key`,
/// `failed`).
pub const CANCEL_REQUESTS_TOTAL: &str = "pgshadow_cancel_requests_total";
/// Failed attempts to reach the upstream server.
pub const UPSTREAM_CONNECT_ERRORS_TOTAL: &str = "pgshadow_upstream_connect_errors_total";

/// Registers help text for every metric with the installed recorder.
/// Harmless when no recorder is installed.
pub fn describe() {
    describe_gauge!(
        CLIENT_CONNECTIONS,
        Unit::Count,
        "Client connections currently open."
    );
    describe_counter!(
        CLIENT_CONNECTIONS_TOTAL,
        Unit::Count,
        "Client connections accepted since start."
    );
    describe_counter!(
        SESSIONS_ENDED_TOTAL,
        Unit::Count,
        "Client sessions ended, by reason."
    );
    describe_counter!(
        CANCEL_REQUESTS_TOTAL,
        Unit::Count,
        "Cancel requests received, by result (forwarded, unknown_key, failed)."
    );
    describe_counter!(
        UPSTREAM_CONNECT_ERRORS_TOTAL,
        Unit::Count,
        "Failed attempts to connect to the upstream server."
    );
}
