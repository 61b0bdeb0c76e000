//! The replies a session's server still owes, in request order.

use super::Ticket;
use crate::capture::fingerprint::Fingerprint;
use std::collections::VecDeque;
use std::sync::Arc;

/// The statement or portal a Parse or Bind names, for undoing it when the
/// server refuses the message: `None` for the unnamed one. A message that
/// was not tracked counts as naming the unnamed one, which the tracker
/// forgot when it saw the message (a named one cannot be replaced without
/// being closed first).
#[derive(Debug)]
#[expect(
    clippy::box_collection,
    reason = "a thin pointer keeps `Expected` at 16 bytes; named ones are rare"
)]
pub(super) struct Target(Option<Box<Vec<u8>>>);

impl Target {
    pub(super) const UNNAMED: Target = Target(None);

    #[inline]
    pub(super) fn of(name: &[u8]) -> Self {
        Target((!name.is_empty()).then(|| Box::new(name.to_vec())))
    }

    /// The name; empty for the unnamed statement or portal.
    pub(super) fn name(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

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

/// Replies kept inside the tracker before a deeper pipeline spills onto
/// the heap: a client that waits for each reply has at most a few
/// outstanding (Bind, Execute, Sync).
const INLINE: usize = 4;

/// Replies the server owes, oldest first.
///
/// The first [`INLINE`] live in the tracker itself, in cache lines the relay
/// touches for every message anyway; a heap queue, a line of its own, was
/// read back from memory for most replies. A deeper pipeline spills into
/// `spilled`. Every inline entry is older than every spilled one: a push
/// goes inline only while nothing is spilled.
#[derive(Debug, Default)]
pub(super) struct ReplyQueue {
    inline: [Option<Expected>; INLINE],
    /// Where the oldest inline entry is.
    head: usize,
    /// Inline entries.
    len: usize,
    spilled: VecDeque<Expected>,
}

impl ReplyQueue {
    #[inline]
    pub(super) fn push_back(&mut self, expected: Expected) {
        if self.spilled.is_empty() && self.len < INLINE {
            if let Some(slot) = self.inline.get_mut((self.head + self.len) % INLINE) {
                *slot = Some(expected);
                self.len += 1;
                return;
            }
        }
        self.spilled.push_back(expected);
    }

    #[inline]
    pub(super) fn pop_front(&mut self) -> Option<Expected> {
        if self.len == 0 {
            return self.spilled.pop_front();
        }
        let oldest = self.inline.get_mut(self.head).and_then(Option::take);
        self.head = (self.head + 1) % INLINE;
        self.len -= 1;
        oldest
    }

    #[inline]
    pub(super) fn front(&self) -> Option<&Expected> {
        if self.len == 0 {
            self.spilled.front()
        } else {
            self.inline.get(self.head).and_then(Option::as_ref)
        }
    }

    #[inline]
    pub(super) fn front_mut(&mut self) -> Option<&mut Expected> {
        if self.len == 0 {
            self.spilled.front_mut()
        } else {
            self.inline.get_mut(self.head).and_then(Option::as_mut)
        }
    }

    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
