//! The replies a session's server still owes, in request order.

use super::ticket::Ticket;
use crate::capture::fingerprint::Fingerprint;
use crate::capture::hot_path::boxed_name::BoxedName;
use crate::capture::hot_path::inline_queue::InlineQueue;
use std::sync::Arc;

/// The statement or portal a Parse or Bind names, for undoing it when the
/// server refuses the message: unnamed for the unnamed one. A message that
/// was not tracked counts as naming the unnamed one, which the tracker
/// forgot when it saw the message (a named one cannot be replaced without
/// being closed first).
pub(super) type Target = BoxedName;

/// Replies the server owes, oldest first.
pub(super) type ReplyQueue = InlineQueue<Expected>;

/// A simple Query picked for sampling.
#[derive(Debug)]
pub(super) struct Candidate {
    pub(super) fingerprint: Fingerprint,
    pub(super) sql: Arc<str>,
}

/// A reply the server owes, in request order.
///
/// Every client message pushes one and a reply pops it, so the queue's
/// slots are written for every statement: they are 16 bytes (see the test
/// `expected_replies_stay_small`), and whatever is larger is boxed and
/// exists only for picked executions or named statements and portals.
#[derive(Debug)]
pub(super) enum Expected {
    /// ParseComplete.
    Parse(Target),
    /// BindComplete.
    Bind(Target),
    /// ParameterDescription/RowDescription/NoData.
    Describe,
    /// Rows then CommandComplete, PortalSuspended or EmptyQueryResponse;
    /// with the ticket of a picked execution.
    Execute(Option<Box<Ticket>>),
    /// CloseComplete.
    Close,
    /// ReadyForQuery ending an extended-protocol batch.
    Sync,
    /// A simple Query, ended by ReadyForQuery.
    Query {
        candidate: Option<Box<Candidate>>,
        completed: bool,
        failed: bool,
    },
    /// FunctionCallResponse then ReadyForQuery.
    FunctionCall,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    /// A queue entry told apart by its number.
    fn entry(n: u8) -> Expected {
        Expected::Parse(Target::of(&[n]))
    }

    fn number(e: &Expected) -> Option<u8> {
        match e {
            Expected::Parse(t) => t.name().first().copied(),
            _ => None,
        }
    }

    #[test]
    fn expected_replies_stay_small() {
        // One is written for every message a client sends.
        assert!(
            std::mem::size_of::<Expected>() <= 16,
            "{} bytes",
            std::mem::size_of::<Expected>()
        );
    }

    proptest! {
        /// Pushes (true) and pops (false) in any order: the queue answers
        /// as a plain FIFO does, also while entries are spilled.
        #[test]
        fn replies_come_out_in_the_order_they_went_in(ops in proptest::collection::vec(any::<bool>(), 0..200)) {
            let mut queue = ReplyQueue::default();
            let mut model = VecDeque::new();
            let mut next = 0u8;
            for push in ops {
                if push {
                    queue.push_back(entry(next));
                    model.push_back(next);
                    next = next.wrapping_add(1);
                } else {
                    prop_assert_eq!(queue.pop_front().as_ref().and_then(number), model.pop_front());
                }
                prop_assert_eq!(queue.front().and_then(number), model.front().copied());
            }
            queue.clear();
            prop_assert!(queue.front().is_none());
        }
    }
}
