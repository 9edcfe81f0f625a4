//! When a pushed frame reaches the socket: at once, with the next flush,
//! or with the batch it completes; and who owes that flush.

use std::sync::atomic::Ordering;

use super::control::Control;
use super::{Closed, Outbox, Queued, State, lock};

/// A burst's frames leave in batches of this many rather than all at its
/// end. Holding a whole burst back makes the two sides take turns: the peer
/// idles until the last frame is ready, then this side idles while the peer
/// works through them. Cut into batches, the peer starts on the first while
/// this side prepares the next. The batch is large enough that the system
/// call, and waking the peer, cost little per frame.
pub(super) const BATCH: usize = 32;

/// When a pushed frame should reach the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Now, from the caller's thread, with everything queued ahead of it.
    Now,
    /// With the next flush: more frames are coming, and the caller (or
    /// whoever queued ahead of it) flushes once they are queued.
    Later,
}

/// What the sender of a [`When::Later`] frame still owes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Owed {
    /// Nothing: the frame is written, or rides along with a flush that
    /// somebody else owes (or the writer task, if the socket is full).
    Nothing,
    /// A call to [`Outbox::flush`] soon: this frame started the queue.
    Flush,
}

impl Outbox {
    pub(super) fn enqueue(&self, queued: Queued, when: When) -> Result<Owed, Closed> {
        let mut state = lock(&self.state);
        if let Some(closed) = state.closed() {
            return Err(closed);
        }
        let first = state.queue.is_empty();
        state.queued_bytes += queued.frame.len();
        state.queue.push_back(queued);
        let due = when == When::Now || state.queue.len() >= BATCH;
        let written = if due { state.write_now() } else { Ok(()) };
        self.publish(&state);
        written?;
        Ok(if first && !due && !state.stalled {
            Owed::Flush
        } else {
            Owed::Nothing
        })
    }

    /// Writes everything queued now (unless the socket is full: then the
    /// writer task does, as soon as it has room).
    pub fn flush(&self) {
        // What this thread queued itself is seen here; what others queue
        // meanwhile, they flush.
        if !self.busy.load(Ordering::Acquire) {
            return;
        }
        let mut state = lock(&self.state);
        if state.closed().is_none() {
            let _ = state.write_now();
            self.publish(&state);
        }
    }

    /// Updates the hint [`Outbox::flush`] reads without the lock.
    pub(super) fn publish(&self, state: &State) {
        let busy = !state.queue.is_empty() || !state.control.is_empty();
        self.busy.store(busy, Ordering::Release);
    }

    /// Owes the peer control frames. With [`When::Now`] they leave at once,
    /// unless frames are queued (then with their flush); with
    /// [`When::Later`] the caller flushes. Never waits; dropped silently
    /// once the connection is closed.
    pub fn signal(&self, control: Control, when: When) {
        let mut state = lock(&self.state);
        if state.closed().is_none() {
            state.control.merge(control);
            if when == When::Now && state.queue.is_empty() {
                let _ = state.write_now();
            }
            self.publish(&state);
        }
    }
}
