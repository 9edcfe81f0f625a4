//! The sending side of a connection, shared by everyone who sends on it.
//!
//! A frame is written straight from the sender's own task when nothing is
//! queued ahead of it: the common, latency-bound case costs no task hop.
//! Otherwise it joins a queue that the writer task drains, gathering small
//! frames into one write, so a burst of many small messages costs few system
//! calls; a long burst leaves in batches so the peer can start on the first
//! while the rest are prepared. The writer task also finishes frames the
//! socket took only part of.
//!
//! The socket is touched only under the lock and never across an `.await`,
//! so a sender whose future is dropped can never leave half a frame on the
//! wire.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::AsyncWrite;

use crate::transport::{OutFrame, Spare};

/// Frames queued before senders wait: a peer that stops reading slows its
/// senders down instead of growing memory without bound.
const CAPACITY: usize = 1024;
/// A burst's frames leave in batches of this many rather than all at its
/// end. Holding a whole burst back makes the two sides take turns: the peer
/// idles until the last frame is ready, then this side idles while the peer
/// works through them. Cut into batches, the peer starts on the first while
/// this side prepares the next. The batch is large enough that the system
/// call, and waking the peer, cost little per frame.
const BATCH: usize = 32;
/// Frames smaller than this are gathered into one buffer before writing;
/// larger ones are written from their own memory.
const GATHER_LIMIT: usize = 64 * 1024;

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
}

struct State {
    sink: Box<dyn AsyncWrite + Send + Unpin>,
    queue: VecDeque<OutFrame>,
    /// How much of `queue.front()` the socket has taken.
    written: usize,
    /// Senders queue instead of writing directly while a burst is expected
    /// (many requesters woken at once); every [`BATCH`] frames the sender
    /// writes the queue, and the writer task writes what is left in one go.
    hold: bool,
    /// The socket took no more at the last attempt; the writer task waits
    /// for it, and senders do not retry in vain.
    stalled: bool,
    closing: bool,
    broken: bool,
    writer: Option<Waker>,
    waiting_for_space: Vec<Waker>,
    /// Where fully written large frames go, to carry the next one.
    spare: Spare,
}

fn lock(mutex: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every critical section leaves the state consistent, even if a write
    // panicked inside the sink.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Outbox {
    /// An outbox writing to `sink`, handing written large frames to `spare`.
    pub fn new(sink: Box<dyn AsyncWrite + Send + Unpin>, spare: Spare) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                sink,
                queue: VecDeque::new(),
                written: 0,
                hold: false,
                stalled: false,
                closing: false,
                broken: false,
                writer: None,
                waiting_for_space: Vec::new(),
                spare,
            }),
        }
    }

    /// Sends a sealed frame: written now if nothing is queued, else queued
    /// for the writer task. Waits only while the queue is full.
    pub async fn send(&self, frame: OutFrame) -> Result<(), Closed> {
        let mut frame = Some(frame);
        poll_fn(|cx| {
            let mut state = lock(&self.state);
            if let Some(closed) = state.closed() {
                return Poll::Ready(Err(closed));
            }
            if state.queue.len() >= CAPACITY {
                state.waiting_for_space.push(cx.waker().clone());
                return Poll::Pending;
            }
            state
                .queue
                .push_back(frame.take().expect("send polled after completion"));
            let len = state.queue.len();
            if (len == 1 && !state.hold) || (len >= BATCH && !state.stalled) {
                match state.write_queued(cx) {
                    Poll::Ready(Ok(())) => return Poll::Ready(Ok(())),
                    Poll::Ready(Err(_)) => {
                        state.broken = true;
                        state.wake_all();
                        return Poll::Ready(Err(Closed::Broken));
                    }
                    // The socket is full; the writer task finishes the frame.
                    Poll::Pending => {}
                }
            }
            state.wake_writer();
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Queues a frame without waiting or writing, for callers that cannot
    /// wait (a `Drop`). Best effort: dropped if the connection is closed.
    pub fn queue(&self, frame: OutFrame) {
        let mut state = lock(&self.state);
        if state.closed().is_none() {
            state.queue.push_back(frame);
            state.wake_writer();
        }
    }

    /// Expect a burst of sends: queue them, to leave in batches of
    /// [`BATCH`] and the rest in one write by the writer task. The writer is
    /// not woken here: it would find nothing queued yet and end the burst
    /// before it began.
    pub fn hold(&self) {
        lock(&self.state).hold = true;
    }

    /// Stops taking frames; the writer task writes what is queued, then
    /// shuts the stream down.
    pub fn close(&self) {
        let mut state = lock(&self.state);
        state.closing = true;
        state.wake_all();
    }

    /// The writer task: writes whatever is queued until the outbox is closed
    /// and empty, then shuts the stream down. Returns the error that broke
    /// the connection, if writing failed.
    pub async fn run_writer(&self) -> io::Result<()> {
        let written = poll_fn(|cx| {
            let mut state = lock(&self.state);
            let had_work = !state.queue.is_empty();
            let outcome = state.write_queued(cx);
            match outcome {
                Poll::Ready(Ok(())) => {
                    // Everything the burst queued is out: the burst is over.
                    // (Woken with nothing to write, it has not begun.)
                    if had_work {
                        state.hold = false;
                    }
                    if state.closing || state.broken {
                        return Poll::Ready(Ok(()));
                    }
                    state.writer = Some(cx.waker().clone());
                    Poll::Pending
                }
                Poll::Ready(Err(e)) => {
                    state.broken = true;
                    state.wake_all();
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

impl State {
    fn closed(&self) -> Option<Closed> {
        if self.broken {
            Some(Closed::Broken)
        } else if self.closing {
            Some(Closed::Locally)
        } else {
            None
        }
    }

    fn wake_writer(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.wake();
        }
    }

    fn wake_all(&mut self) {
        self.wake_writer();
        for sender in self.waiting_for_space.drain(..) {
            sender.wake();
        }
    }

    /// Writes the queue in order until it is empty (`Ready(Ok)`) or the
    /// socket is full (`Pending`, with `cx` registered for writability).
    fn write_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.written == 0 && self.queue.len() > 1 {
                self.gather();
            }
            let Some(front) = self.queue.front() else {
                return Poll::Ready(Ok(()));
            };
            let sink = Pin::new(&mut self.sink);
            let wrote = if front.is_contiguous() {
                sink.poll_write(cx, &front.first()[self.written..])
            } else {
                sink.poll_write_vectored(cx, &front.slices_from(self.written))
            };
            match wrote {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.stalled = false;
                    self.written += n;
                    if self.written == front.len() {
                        if let Some(done) = self.queue.pop_front() {
                            self.spare.put(done.into_buffer());
                        }
                        self.written = 0;
                        if let Some(sender) = self.waiting_for_space.pop() {
                            sender.wake();
                        }
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.stalled = true;
                    return Poll::Pending;
                }
            }
        }
    }

    /// Merges the small frames at the front of the queue into one buffer,
    /// so they leave in one write.
    fn gather(&mut self) {
        let mut take = 0;
        let mut total = 0;
        for frame in &self.queue {
            let len = frame.len();
            if !frame.is_contiguous() || len >= GATHER_LIMIT || total + len > GATHER_LIMIT {
                break;
            }
            take += 1;
            total += len;
        }
        if take < 2 {
            return;
        }
        let mut merged = Vec::with_capacity(total);
        for frame in self.queue.drain(..take) {
            merged.extend_from_slice(frame.first());
        }
        let merged = OutFrame::from_sealed(merged);
        self.queue.push_front(merged);
        // One queue slot now stands for several frames; senders waiting for
        // space may go on.
        for sender in self.waiting_for_space.drain(..) {
            sender.wake();
        }
    }
}
