//! Logs and metrics: how the proxy reports every decision it makes.

pub mod logs;
pub mod metrics;
