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
//! A frame is written straight from the sender's own task when nothing is
//! queued ahead of it: the common, latency-bound case costs no task hop.
//! Otherwise it joins a queue that the writer task drains, gathering small
//! frames into one write, so a burst of many small messages costs few system
//! calls; a long burst leaves in batches so the peer can start on the first
//! while the rest are prepared. The writer task also finishes frames the
//! socket took only part of.
//!
//! The socket is touched only under the lock and never across an `.await`,
//! so nothing can leave half a frame on the wire.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::AsyncWrite;

use super::credit::{Admitted, Cost};
use crate::protocol::message;
use crate::transport::{OutFrame, Spare};
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
    queue: VecDeque<Queued>,
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
    /// Control frames owed to the peer, written ahead of the queue.
    control: Control,
    /// A control frame is at the front of the queue, not yet written. The
    /// next is made only once it is out, so control never piles up.
    control_queued: bool,
    /// Bytes in `queue` (for the tests and the budget checks above).
    queued_bytes: usize,
    /// Where fully written large frames go, to carry the next one.
    spare: Spare,
    /// Where written answers return their requests' credit.
    admitted: Arc<Admitted>,
}

/// A queued frame and the requests it answers (several once gathered).
struct Queued {
    frame: OutFrame,
    answers: u32,
    answered_bytes: u64,
}

impl Queued {
    fn plain(frame: OutFrame) -> Queued {
        Queued {
            frame,
            answers: 0,
            answered_bytes: 0,
        }
    }
}

/// Control frames owed to the peer. They are counters and flags rather
/// than queued frames: however often they are asked for before the next
/// write, each costs at most one small frame.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    /// Notifications finished here, to be returned as credit.
    pub credit_messages: u32,
    /// Their bytes.
    pub credit_bytes: u64,
    /// A ping to send.
    pub ping: bool,
    /// A pong to send (the answer to the peer's ping).
    pub pong: bool,
}

impl Control {
    fn is_empty(&self) -> bool {
        *self == Control::default()
    }

    fn merge(&mut self, other: Control) {
        self.credit_messages = self.credit_messages.saturating_add(other.credit_messages);
        self.credit_bytes = self.credit_bytes.saturating_add(other.credit_bytes);
        self.ping |= other.ping;
        self.pong |= other.pong;
    }

    /// The owed frames, back to back in one buffer.
    fn take_frame(&mut self) -> OutFrame {
        let owed = std::mem::take(self);
        let mut bytes = Vec::with_capacity(32);
        if owed.credit_messages > 0 || owed.credit_bytes > 0 {
            bytes.extend_from_slice(
                message::credit(owed.credit_messages, owed.credit_bytes).first(),
            );
        }
        if owed.ping {
            bytes.extend_from_slice(message::ping(false).first());
        }
        if owed.pong {
            bytes.extend_from_slice(message::ping(true).first());
        }
        OutFrame::from_sealed(bytes)
    }
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
                hold: false,
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
        }
    }

    /// Sends a sealed frame: written now if nothing is queued, else queued
    /// for the writer task. Never waits.
    pub fn push(&self, frame: OutFrame) -> Result<(), Closed> {
        self.enqueue(Queued::plain(frame))
    }

    /// Sends the answer to a request admitted at `cost`; the cost is
    /// released once the answer is written.
    pub fn push_answer(&self, frame: OutFrame, cost: Cost) -> Result<(), Closed> {
        self.enqueue(Queued {
            frame,
            answers: 1,
            answered_bytes: u64::from(cost.0),
        })
    }

    fn enqueue(&self, queued: Queued) -> Result<(), Closed> {
        let mut state = lock(&self.state);
        if let Some(closed) = state.closed() {
            return Err(closed);
        }
        state.queued_bytes += queued.frame.len();
        state.queue.push_back(queued);
        state.kick()
    }

    /// Owes the peer control frames; they leave with the next write, which
    /// happens now unless a burst is being gathered. Never waits; dropped
    /// silently once the connection is closed.
    pub fn signal(&self, control: Control) {
        let mut state = lock(&self.state);
        if state.closed().is_none() {
            state.control.merge(control);
            let _ = state.kick();
        }
    }

    /// Bytes queued and not yet fully written.
    #[cfg(test)]
    pub fn queued_bytes(&self) -> usize {
        lock(&self.state).queued_bytes
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
            let had_work = !state.queue.is_empty() || !state.control.is_empty();
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
    }

    /// Writes now if this is the only thing to write and no burst is being
    /// gathered, or if a burst has gathered a batch; otherwise leaves it to
    /// the writer task. Writing here uses a no-op waker: if the socket is
    /// full, the writer task is woken and waits for it with its own.
    fn kick(&mut self) -> Result<(), Closed> {
        let owed = !self.control.is_empty() && !self.control_queued;
        let len = self.queue.len() + usize::from(owed);
        if (len == 1 && !self.hold) || (len >= BATCH && !self.stalled) {
            let mut cx = Context::from_waker(Waker::noop());
            match self.write_queued(&mut cx) {
                Poll::Ready(Ok(())) => return Ok(()),
                Poll::Ready(Err(_)) => {
                    self.broken = true;
                    self.wake_all();
                    return Err(Closed::Broken);
                }
                // The socket is full; the writer task finishes the frame.
                Poll::Pending => {}
            }
        }
        self.wake_writer();
        Ok(())
    }

    /// Writes the queue in order until it is empty (`Ready(Ok)`) or the
    /// socket is full (`Pending`, with `cx` registered for writability).
    fn write_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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

    /// Merges the small frames at the front of the queue into one buffer,
    /// so they leave in one write.
    fn gather(&mut self) {
        let mut take = 0;
        let mut total = 0;
        for Queued { frame, .. } in &self.queue {
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
        let (mut answers, mut answered_bytes) = (0, 0);
        let mut bytes = Vec::with_capacity(total);
        for queued in self.queue.drain(..take) {
            bytes.extend_from_slice(queued.frame.first());
            answers += queued.answers;
            answered_bytes += queued.answered_bytes;
        }
        self.queue.push_front(Queued {
            frame: OutFrame::from_sealed(bytes),
            answers,
            answered_bytes,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::seal;
    use tokio::io::AsyncReadExt;

    fn admitted() -> Arc<Admitted> {
        Arc::new(Admitted::new(crate::config::Window {
            messages: 10,
            bytes: 1000,
        }))
    }

    fn frame(byte: u8, len: usize) -> OutFrame {
        let mut frame = OutFrame::with_capacity(len);
        frame.extend_from_slice(&vec![byte; len]);
        seal(frame, u32::MAX).unwrap()
    }

    /// Reads `count` frames off the other end of the pipe.
    async fn read_frames(pipe: &mut tokio::io::DuplexStream, count: usize) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for _ in 0..count {
            let mut header = [0u8; 4];
            pipe.read_exact(&mut header).await.unwrap();
            let mut body = vec![0; u32::from_le_bytes(header) as usize];
            pipe.read_exact(&mut body).await.unwrap();
            frames.push(body);
        }
        frames
    }

    #[tokio::test]
    async fn a_push_never_waits_even_when_nobody_reads() {
        // A pipe that holds 1 KiB: after that, writes would block.
        let (near, _far) = tokio::io::duplex(1024);
        let outbox = Outbox::new(Box::new(near), Spare::default(), admitted());
        for i in 0..1000u32 {
            outbox.push(frame(i as u8, 100)).unwrap();
        }
        // Everything the socket did not take is queued, none of it lost.
        assert!(outbox.queued_bytes() >= 1000 * 104 - 1024);
    }

    #[tokio::test]
    async fn frames_arrive_whole_and_in_order_through_a_small_pipe() {
        let (near, mut far) = tokio::io::duplex(300);
        let outbox = std::sync::Arc::new(Outbox::new(Box::new(near), Spare::default(), admitted()));
        let writer = {
            let outbox = std::sync::Arc::clone(&outbox);
            tokio::spawn(async move { outbox.run_writer().await })
        };
        outbox.hold();
        for i in 0..200u32 {
            // Sizes around the pipe's, so frames are split across writes.
            outbox
                .push(frame(i as u8, (i as usize * 37) % 900))
                .unwrap();
        }
        let frames = read_frames(&mut far, 200).await;
        for (i, body) in frames.iter().enumerate() {
            assert_eq!(body.len(), (i * 37) % 900);
            assert!(body.iter().all(|b| *b == i as u8));
        }
        outbox.close();
        writer.await.unwrap().unwrap();
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn control_frames_are_counters_not_a_queue() {
        let (near, mut far) = tokio::io::duplex(64);
        let outbox = Outbox::new(Box::new(near), Spare::default(), admitted());
        // Fill the pipe so nothing more can be written for now.
        outbox.push(frame(1, 60)).unwrap();
        for _ in 0..10_000 {
            outbox.signal(Control {
                credit_messages: 1,
                credit_bytes: 10,
                pong: true,
                ..Control::default()
            });
        }
        // Ten thousand signals cost one small frame's worth of state.
        assert!(outbox.queued_bytes() < 64, "{}", outbox.queued_bytes());
        let outbox = std::sync::Arc::new(outbox);
        let writer = {
            let outbox = std::sync::Arc::clone(&outbox);
            tokio::spawn(async move { outbox.run_writer().await })
        };
        assert_eq!(read_frames(&mut far, 1).await, vec![vec![1; 60]]);
        // At most one control frame was made while the pipe was full; the
        // rest of the signals were summed into the next.
        let (mut messages, mut bytes, mut pongs, mut frames) = (0u64, 0u64, 0, 0);
        while messages < 10_000 {
            let body = read_frames(&mut far, 1).await.remove(0);
            frames += 1;
            match body[0] {
                6 => {
                    messages += u64::from(u32::from_le_bytes(body[1..5].try_into().unwrap()));
                    bytes += u64::from_le_bytes(body[5..13].try_into().unwrap());
                }
                8 => pongs += 1,
                other => panic!("unexpected frame kind {other}"),
            }
        }
        assert_eq!((messages, bytes), (10_000, 100_000));
        assert!(frames <= 4 && pongs <= 2, "{frames} frames, {pongs} pongs");
        outbox.close();
        writer.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn after_close_pushes_fail_and_queued_frames_still_go_out() {
        let (near, mut far) = tokio::io::duplex(16);
        let outbox = std::sync::Arc::new(Outbox::new(Box::new(near), Spare::default(), admitted()));
        outbox.push(frame(7, 100)).unwrap();
        outbox.close();
        assert!(matches!(outbox.push(frame(8, 1)), Err(Closed::Locally)));
        let writer = {
            let outbox = std::sync::Arc::clone(&outbox);
            tokio::spawn(async move { outbox.run_writer().await })
        };
        assert_eq!(read_frames(&mut far, 1).await, vec![vec![7; 100]]);
        writer.await.unwrap().unwrap();
        let mut rest = Vec::new();
        far.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "the stream was shut down after the frame");
    }

    #[tokio::test]
    async fn an_answer_keeps_its_request_counted_until_it_is_written() {
        let (near, mut far) = tokio::io::duplex(64);
        let admitted = admitted();
        let outbox = Outbox::new(Box::new(near), Spare::default(), Arc::clone(&admitted));
        let costs: Vec<_> = (0..3).map(|_| admitted.admit(100).unwrap()).collect();
        // The pipe takes the first answer whole; the second is the one being
        // written; the third waits in the queue, still counted.
        for cost in costs {
            outbox.push_answer(frame(1, 60), cost).unwrap();
        }
        assert_eq!(
            admitted.in_flight(),
            (1, 100),
            "queued answers stay counted"
        );
        let outbox = Arc::new(outbox);
        let writer = {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move { outbox.run_writer().await })
        };
        read_frames(&mut far, 3).await;
        outbox.close();
        writer.await.unwrap().unwrap();
        assert_eq!(admitted.in_flight(), (0, 0));
    }

    #[tokio::test]
    async fn a_broken_stream_fails_later_pushes() {
        let (near, far) = tokio::io::duplex(16);
        drop(far);
        let outbox = Outbox::new(Box::new(near), Spare::default(), admitted());
        let first = outbox.push(frame(1, 8));
        assert!(matches!(first, Err(Closed::Broken)), "{first:?}");
        assert!(matches!(outbox.push(frame(1, 8)), Err(Closed::Broken)));
    }
}
