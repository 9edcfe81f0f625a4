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

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// The shared write side of one connection.
pub struct Outbox {
    state: Mutex<State>,
    /// Something is queued or owed (a frame, a control frame), readable
    /// without the lock: a flush with nothing to do (the common case for a
    /// reader that only received answers) does not contend for it.
    busy: AtomicBool,
}

struct State {
    sink: Box<dyn AsyncWrite + Send + Unpin>,
    queue: VecDeque<Queued>,
    /// How much of `queue.front()` the socket has taken.
    written: usize,
    /// The socket took no more at the last attempt: only the writer task
    /// writes until it has room again (a sender's attempt would replace the
    /// writer's registration for writability with its own no-op one).
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

    fn enqueue(&self, queued: Queued, when: When) -> Result<Owed, Closed> {
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
    fn publish(&self, state: &State) {
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

    /// Writes the queue from the caller's thread, unless the writer task is
    /// waiting for room. Uses a no-op waker: if the socket fills up, the
    /// writer task is woken to wait for room with its own.
    fn write_now(&mut self) -> Result<(), Closed> {
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
            self.spare.put(queued.frame.into_buffer());
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
            let _ = outbox.push(frame(i as u8, 100), When::Now).unwrap();
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
        for i in 0..200u32 {
            // Sizes around the pipe's, so frames are split across writes.
            let _ = outbox
                .push(frame(i as u8, (i as usize * 37) % 900), When::Later)
                .unwrap();
        }
        outbox.flush();
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
        let _ = outbox.push(frame(1, 60), When::Now).unwrap();
        for _ in 0..10_000 {
            outbox.signal(
                Control {
                    credit_messages: 1,
                    credit_bytes: 10,
                    pong: true,
                    ..Control::default()
                },
                When::Now,
            );
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
        let _ = outbox.push(frame(7, 100), When::Now).unwrap();
        outbox.close();
        assert!(matches!(
            outbox.push(frame(8, 1), When::Now),
            Err(Closed::Locally)
        ));
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
            let _ = outbox.push_answer(frame(1, 60), cost, When::Now).unwrap();
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
        let first = outbox.push(frame(1, 8), When::Now);
        assert!(matches!(first, Err(Closed::Broken)), "{first:?}");
        assert!(matches!(
            outbox.push(frame(1, 8), When::Now),
            Err(Closed::Broken)
        ));
    }

    /// A pipe end that counts the writes made to it.
    struct Counting {
        inner: tokio::io::DuplexStream,
        writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    fn counting(
        capacity: usize,
    ) -> (
        Outbox,
        tokio::io::DuplexStream,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let (near, far) = tokio::io::duplex(capacity);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let sink = Counting {
            inner: near,
            writes: Arc::clone(&writes),
        };
        (
            Outbox::new(Box::new(sink), Spare::default(), admitted()),
            far,
            writes,
        )
    }

    #[tokio::test]
    async fn a_burst_leaves_with_one_write_when_its_first_sender_flushes() {
        let (outbox, mut far, writes) = counting(64 * 1024);
        let writes_now = || writes.load(std::sync::atomic::Ordering::Relaxed);
        // The first frame of a burst makes its sender owe the flush; the
        // others ride along.
        assert_eq!(outbox.push(frame(0, 10), When::Later).unwrap(), Owed::Flush);
        for i in 1..20u8 {
            assert_eq!(
                outbox.push(frame(i, 10), When::Later).unwrap(),
                Owed::Nothing
            );
        }
        assert_eq!(writes_now(), 0, "nothing written before the flush");
        outbox.flush();
        assert_eq!(writes_now(), 1, "the burst in one write");
        let frames = read_frames(&mut far, 20).await;
        assert!(
            frames
                .iter()
                .enumerate()
                .all(|(i, f)| f == &vec![i as u8; 10])
        );
        // A frame sent now takes the queue ahead of it along.
        let _ = outbox.push(frame(1, 10), When::Later).unwrap();
        let _ = outbox.push(frame(2, 10), When::Now).unwrap();
        assert_eq!(writes_now(), 2);
        assert_eq!(
            read_frames(&mut far, 2).await,
            vec![vec![1; 10], vec![2; 10]]
        );
    }

    #[tokio::test]
    async fn control_owed_for_later_leaves_with_the_flush() {
        let (outbox, mut far, writes) = counting(1024);
        let pong = Control {
            pong: true,
            ..Control::default()
        };
        outbox.signal(pong, When::Later);
        assert_eq!(writes.load(std::sync::atomic::Ordering::Relaxed), 0);
        // Nothing but control is owed: the flush still writes it.
        outbox.flush();
        assert_eq!(read_frames(&mut far, 1).await, vec![vec![8]]);
    }

    #[tokio::test]
    async fn a_long_burst_leaves_in_batches_without_waiting_for_the_flush() {
        let (outbox, mut far, writes) = counting(64 * 1024);
        for i in 0..(BATCH * 2 + 5) {
            let _ = outbox.push(frame(i as u8, 10), When::Later).unwrap();
        }
        assert_eq!(writes.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(
            outbox.queued_bytes(),
            5 * 14,
            "the tail waits for the flush"
        );
        outbox.flush();
        assert_eq!(
            read_frames(&mut far, BATCH * 2 + 5).await.len(),
            BATCH * 2 + 5
        );
    }

    #[tokio::test]
    async fn a_full_socket_is_left_to_the_writer_task() {
        // Room for about one frame: the first write fills it.
        let (outbox, mut far, writes) = counting(120);
        let outbox = Arc::new(outbox);
        let writer = {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move { outbox.run_writer().await })
        };
        tokio::task::yield_now().await;
        for i in 0..10u8 {
            let _ = outbox.push(frame(i, 100), When::Now).unwrap();
        }
        // Senders stopped trying once the socket was full: a handful of
        // writes, not one per frame per attempt.
        let before = writes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(before <= 3, "{before} writes");
        // The writer task finishes the job as the reader makes room.
        let frames = read_frames(&mut far, 10).await;
        assert!(
            frames
                .iter()
                .enumerate()
                .all(|(i, f)| f == &vec![i as u8; 100])
        );
        outbox.close();
        writer.await.unwrap().unwrap();
    }
}
