//! What the relay hands statement capture: the one way in from the
//! primary path.
//!
//! The relay is generic over [`SessionCapture`] (monomorphized, so every
//! message is a direct call), and so knows nothing of the tracker's state
//! or of the shadow behind it: [`Tracker`](super::tracker::Tracker)
//! implements it, and the server decides what each session gets.

use crate::protocol::backend::TransactionStatus;

/// One session's statement capture, fed copies of the messages the relay
/// looks at. Every method runs on the relay's task between two awaits: it
/// must not block, and it must be cheap for the statements not picked.
pub trait SessionCapture {
    /// A simple Query (`body` is the message body).
    fn on_query(&mut self, body: &[u8]);
    /// A Parse message.
    fn on_parse(&mut self, body: &[u8]);
    /// A Bind message: one execution of a statement.
    fn on_bind(&mut self, body: &[u8]);
    /// An Execute message.
    fn on_execute(&mut self, body: &[u8]);
    /// A Close message.
    fn on_close(&mut self, body: &[u8]);
    /// A client message whose content is not copied (not needed, or too
    /// large): its type byte keeps the pairing of replies in step.
    fn on_untracked(&mut self, tag: u8);
    /// A server reply that pairs with a request, by type byte.
    fn on_server_message(&mut self, tag: u8);
    /// ReadyForQuery, with the transaction status it reports.
    fn on_ready_for_query(&mut self, status: TransactionStatus);
    /// A reported setting changed (ParameterStatus).
    fn on_parameter_status(&mut self, name: &str, value: &str);
}
