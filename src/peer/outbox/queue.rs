//! The queued frames of one connection and writing them, in order, to
//! the socket: from a sender's thread while the socket has room, from the
//! writer task once it is full.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::io::AsyncWrite;

use super::Closed;
use super::control::Control;
use crate::peer::credit::Admitted;
use crate::transport::{OutFrame, Spare};

pub(super) struct State {
    pub(super) sink: Box<dyn AsyncWrite + Send + Unpin>,
    pub(super) queue: VecDeque<Queued>,
    /// How much of `queue.front()` the socket has taken.
    pub(super) written: usize,
    /// The socket took no more at the last attempt: only the writer task
    /// writes until it has room again (a sender's attempt would replace the
    /// writer's registration for writability with its own no-op one).
    pub(super) stalled: bool,
    pub(super) closing: bool,
    pub(super) broken: bool,
    pub(super) writer: Option<Waker>,
    /// Control frames owed to the peer, written ahead of the queue.
    pub(super) control: Control,
    /// A control frame is at the front of the queue, not yet written. The
    /// next is made only once it is out, so control never piles up.
    pub(super) control_queued: bool,
    /// Bytes in `queue` (for the tests and the budget checks above).
    pub(super) queued_bytes: usize,
    /// Where fully written large frames go, to carry the next one.
    pub(super) spare: Spare,
    /// Where written answers return their requests' credit.
    pub(super) admitted: Arc<Admitted>,
}

/// A queued frame and the requests it answers (several once gathered).
pub(super) struct Queued {
    pub(super) frame: OutFrame,
    pub(super) answers: u32,
    pub(super) answered_bytes: u64,
}

impl Queued {
    pub(super) fn plain(frame: OutFrame) -> Queued {
        Queued {
            frame,
            answers: 0,
            answered_bytes: 0,
        }
    }
}

impl State {
    pub(super) fn closed(&self) -> Option<Closed> {
        if self.broken {
            Some(Closed::Broken)
        } else if self.closing {
            Some(Closed::Locally)
        } else {
            None
        }
    }

    pub(super) fn wake_writer(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.wake();
        }
    }

    /// Writes the queue from the caller's thread, unless the writer task is
    /// waiting for room. Uses a no-op waker: if the socket fills up, the
    /// writer task is woken to wait for room with its own.
    pub(super) fn write_now(&mut self) -> Result<(), Closed> {
        if self.stalled {
            return Ok(());
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.write_queued(&mut cx) {
            Poll::Ready(Ok(())) => Ok(()),
            Poll::Ready(Err(_)) => {
                self.broken = true;
                self.wake_writer();
                Err(Closed::Broken)
            }
            Poll::Pending => {
                self.wake_writer();
                Ok(())
            }
        }
    }

    /// Writes the queue in order until it is empty (`Ready(Ok)`) or the
    /// socket is full (`Pending`, with `cx` registered for writability).
    pub(super) fn write_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.written == 0 && !self.control_queued && !self.control.is_empty() {
                // Control frames may overtake data: they carry no order.
                let frame = self.control.take_frame();
                self.queued_bytes += frame.len();
                self.queue.push_front(Queued::plain(frame));
                self.control_queued = true;
            }
            if self.written == 0 && self.queue.len() > 1 {
                self.gather();
            }
            let Some(queued) = self.queue.front_mut() else {
                return Poll::Ready(Ok(()));
            };
            if queued.answers > 0 {
                // Released as the answers start to leave, not once they are
                // out: after the write the peer may already have them and
                // send more before this thread gets to count. So the front
                // entry is the one answer (or gathered batch) not counted.
                self.admitted.release(queued.answers, queued.answered_bytes);
                queued.answers = 0;
                queued.answered_bytes = 0;
            }
            let front = &queued.frame;
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
                            self.queued_bytes -= done.frame.len();
                            self.spare.put(done.frame.into_buffer());
                        }
                        // A control frame is only ever at the front (gathered
                        // or not), so the front going out takes it along.
                        self.control_queued = false;
                        self.written = 0;
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
}
