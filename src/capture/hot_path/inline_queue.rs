//! A FIFO whose first entries live inline (see [`super`] for what it
//! saves).

use std::collections::VecDeque;

/// Entries kept inline before a deeper queue spills onto the heap: a
/// client that waits for each reply has at most a few outstanding (Bind,
/// Execute, Sync).
const INLINE: usize = 4;

/// A FIFO, oldest first, whose first [`INLINE`] entries live inside its
/// owner.
///
/// The tracker's queue of replies the server owes: kept inline, its first
/// entries sit in cache lines the relay touches for every message anyway;
/// a heap queue, a line of its own, was read back from memory for most
/// replies. A deeper pipeline spills into `spilled`. Every inline entry is
/// older than every spilled one: a push goes inline only while nothing is
/// spilled.
#[derive(Debug)]
pub(crate) struct InlineQueue<T> {
    inline: [Option<T>; INLINE],
    /// Where the oldest inline entry is.
    head: usize,
    /// Inline entries.
    len: usize,
    spilled: VecDeque<T>,
}

impl<T> Default for InlineQueue<T> {
    fn default() -> Self {
        Self {
            inline: std::array::from_fn(|_| None),
            head: 0,
            len: 0,
            spilled: VecDeque::new(),
        }
    }
}

impl<T> InlineQueue<T> {
    #[inline]
    pub(crate) fn push_back(&mut self, entry: T) {
        if self.spilled.is_empty() && self.len < INLINE {
            if let Some(slot) = self.inline.get_mut((self.head + self.len) % INLINE) {
                *slot = Some(entry);
                self.len += 1;
                return;
            }
        }
        self.spilled.push_back(entry);
    }

    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return self.spilled.pop_front();
        }
        let oldest = self.inline.get_mut(self.head).and_then(Option::take);
        self.head = (self.head + 1) % INLINE;
        self.len -= 1;
        oldest
    }

    #[inline]
    pub(crate) fn front(&self) -> Option<&T> {
        if self.len == 0 {
            self.spilled.front()
        } else {
            self.inline.get(self.head).and_then(Option::as_ref)
        }
    }

    #[inline]
    pub(crate) fn front_mut(&mut self) -> Option<&mut T> {
        if self.len == 0 {
            self.spilled.front_mut()
        } else {
            self.inline.get_mut(self.head).and_then(Option::as_mut)
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}
