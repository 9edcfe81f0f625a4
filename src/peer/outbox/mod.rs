//! The sending side of a connection, shared by everyone who sends on it.
//!
//! Sending never waits: [`Outbox::push`] is a plain function, so the reader
//! can answer a request without ever waiting on the writer (the cause of
//! the old two-sided deadlock). What bounds the queue is credit: requests
//! and notifications enter only with the peer's credit, and an answer keeps
//! its request counted against ours until the answer is *written* (the
//! outbox releases it then), so a peer that never reads cannot make answers
//! pile up here. Control frames (credit returned, ping, pong) are not
//! queued at all but kept as counters and flags, so a flood of pings cannot
//! grow memory either.
//!
//! Who writes: the sender itself, from its own task, never a task woken for
//! it (waking one costs a thread hop on a multi-thread runtime). A lone
//! frame is written at once ([`When::Now`]). A frame that is one of a burst
//! is queued ([`When::Later`]) and its sender flushes the queue a moment
//! later: the reader once it has dispatched everything it read, a requester
//! after yielding once, so the frames its neighbours queue in the meantime
//! leave with one write. Whoever queues into a non-empty queue rides along
//! with the flush already owed. A long burst still leaves in batches of
//! [`BATCH`]. The writer task only steps in when the socket is full (it
//! waits for room) and when the connection closes (it writes what is left
//! and shuts the stream down).
//!
//! The socket is touched only under the lock and never across an `.await`,
//! so nothing can leave half a frame on the wire.
//!
//! - [`flush`]: when a pushed frame is written, and who owes the flush;
//! - [`queue`]: the queued frames and writing them to the socket;
//! - [`gather`]: merging small queued frames into one write;
//! - [`control`]: control frames kept as counters, not queued.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use tokio::io::AsyncWrite;

use super::credit::{Admitted, Cost};
use crate::transport::{OutFrame, Spare};

mod control;
mod flush;
mod gather;
mod queue;
#[cfg(test)]
mod tests;

pub use control::Control;
pub use flush::{Owed, When};
use queue::{Queued, State};

/// Why a frame could not be sent.
#[derive(Debug)]
pub enum Closed {
    /// This side closed the connection.
    Locally,
    /// Writing failed: the peer is gone or the connection broke.
    Broken,
}

/// The shared write side of one connection.
pub struct Outbox {
    state: Mutex<State>,
    /// Something is queued or owed (a frame, a control frame), readable
    /// without the lock: a flush with nothing to do (the common case for a
    /// reader that only received answers) does not contend for it.
    busy: AtomicBool,
}

fn lock(mutex: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every critical section leaves the state consistent, even if a write
    // panicked inside the sink.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Outbox {
    /// An outbox writing to `sink`, handing written large frames to
    /// `spare`, and returning written answers' credit to `admitted`.
    pub fn new(
        sink: Box<dyn AsyncWrite + Send + Unpin>,
        spare: Spare,
        admitted: Arc<Admitted>,
    ) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                sink,
                queue: VecDeque::new(),
                written: 0,
                stalled: false,
                closing: false,
                broken: false,
                writer: None,
                control: Control::default(),
                control_queued: false,
                queued_bytes: 0,
                spare,
                admitted,
            }),
            busy: AtomicBool::new(false),
        }
    }

    /// Sends a sealed frame, now or with the next flush. Never waits.
    pub fn push(&self, frame: OutFrame, when: When) -> Result<Owed, Closed> {
        self.enqueue(Queued::plain(frame), when)
    }

    /// Sends the answer to a request admitted at `cost`; the cost is
    /// released once the answer is written.
    pub fn push_answer(&self, frame: OutFrame, cost: Cost, when: When) -> Result<Owed, Closed> {
        self.enqueue(
            Queued {
                frame,
                answers: 1,
                answered_bytes: u64::from(cost.0),
            },
            when,
        )
    }

    /// Bytes queued and not yet fully written.
    #[cfg(test)]
    pub fn queued_bytes(&self) -> usize {
        lock(&self.state).queued_bytes
    }

    /// Stops taking frames; the writer task writes what is queued, then
    /// shuts the stream down.
    pub fn close(&self) {
        let mut state = lock(&self.state);
        state.closing = true;
        state.wake_writer();
    }

    /// The writer task: writes when the socket had no room for a sender,
    /// until the outbox is closed and empty, then shuts the stream down.
    /// Returns the error that broke the connection, if writing failed.
    pub async fn run_writer(&self) -> io::Result<()> {
        let written = poll_fn(|cx| {
            let mut state = lock(&self.state);
            let written = state.write_queued(cx);
            self.publish(&state);
            match written {
                Poll::Ready(Ok(())) => {
                    if state.closing || state.broken {
                        return Poll::Ready(Ok(()));
                    }
                    state.writer = Some(cx.waker().clone());
                    Poll::Pending
                }
                Poll::Ready(Err(e)) => {
                    state.broken = true;
                    Poll::Ready(Err(e))
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let shutdown = poll_fn(|cx| Pin::new(&mut lock(&self.state).sink).poll_shutdown(cx)).await;
        // Release the stream now: handles to this connection may outlive it,
        // and the peer sees the end only once the last owner lets go.
        lock(&self.state).sink = Box::new(tokio::io::sink());
        written.and(shutdown)
    }
}
