//! The process exit codes of the command line.

/// Exit code for bad usage or invalid configuration.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a failure while running.
pub const EXIT_FAILURE: u8 = 1;
