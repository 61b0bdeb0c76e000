//! What a picked execution carries until the primary has completed it.

use crate::capture::statement::Statement;
use bytes::Bytes;
use std::sync::Arc;

/// An execution picked for sampling: the portal it was bound to and the
/// parameters copied from its Bind. Boxed, and only for picked executions,
/// so that what every execution writes stays small.
#[derive(Debug)]
pub(super) struct Ticket {
    pub(super) portal: Vec<u8>,
    pub(super) statement: Arc<Statement>,
    pub(super) param_formats: Vec<i16>,
    pub(super) params: Vec<Option<Bytes>>,
}

/// A bound portal; carries the ticket while its execution is pending.
#[derive(Debug)]
pub(super) struct Portal {
    pub(super) ticket: Option<Box<Ticket>>,
}
