//! The read loop: every frame the peer sends comes through here and goes
//! where it belongs. Answers complete our pending requests and return our
//! credit; requests and notifications are admitted against the credit we
//! granted and handed to the [`Inbound`]; cancels, credit and pings are
//! bookkeeping.
//!
//! The reader never waits for the writer: answers are pushed to the outbox,
//! which never blocks. That is what keeps two peers flooding each other with
//! requests from waiting on each other forever.
//!
//! A read brings a burst of frames at times. Their effects leave together
//! once all of them are dispatched: what they make this side send (answers,
//! credit, pongs) in one write, the answers to our own requests handed to
//! their requesters at once (one wake-up for a requester on another
//! thread). On a current-thread runtime the reader then polls the socket
//! for a moment before letting the thread sleep (see [`super::busy_poll`]).
//!
//! The loop is one future that its own task or a caller waiting for an
//! answer polls (see [`super::reading`]); nothing here depends on which.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use super::busy_poll::{self, BusyPoll};
use super::call::{Answer, Call};
use super::catch::CatchUnwind;
use super::credit::Cost;
use super::in_order::Job;
use super::lifecycle::End;
use super::outbox::{Control, When};
use super::pending::{Delivery, Fate, Reply};
use super::{Failure, Inbound, Order, Outcome, Peer};
use crate::error::{Error, Result};
use crate::polled_busily::Busily;
use crate::protocol::{Body, Message, RequestId, code, message, serializer};
use crate::transport::{Frame, FrameReader};

pub(super) async fn read_loop(mut reader: FrameReader, peer: Peer, inbound: Arc<dyn Inbound>) {
    let shared = &peer.shared;
    let current_thread = busy_poll::on_current_thread();
    // Where the reader has a thread of its own (multi-thread runtimes), a
    // polling reader would compete for CPUs with a polling requester.
    let busy = current_thread.then_some(&shared.read_poll);
    // Answers to our requests, handed over once the burst is dispatched.
    let mut answers = Answers::default();
    let why = loop {
        if reader.is_drained() {
            if let Err(e) = answers.settle(&peer) {
                break Some(e);
            }
            // Everything read is dispatched: what it made us send leaves now,
            // in one write.
            shared.outbox.flush();
            if current_thread {
                // About to ask the OS for more, likely in vain. Let the tasks
                // this reader just woke (a requester whose answer came in) run
                // and send first: they are on the critical path, this read is
                // not. (On a multi-thread runtime they run on other threads,
                // and a yield would only make this worker wake another to look
                // for work that is not there.)
                tokio::task::yield_now().await;
            }
        }
        let frame = match next_frame(&mut reader, busy).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break None,
            Err(e) => break Some(e),
        };
        let len = frame.len();
        let dispatched = match Message::parse(frame).and_then(|m| resolve(&peer, m, len)) {
            Ok((message, len)) => dispatch(&peer, &inbound, message, len, &mut answers).await,
            Err(e) => Err(e),
        };
        if let Err(e) = dispatched {
            break Some(e);
        }
    };
    // Answers already read still reach their requesters.
    let settled = answers.settle(&peer);
    shared.end_with(End::Disconnected, why.or(settled.err()));
}

/// A message whose body is in shared memory, with the body resolved, and
/// its size for flow control: what it would have been as one frame.
fn resolve(peer: &Peer, message: Message, len: usize) -> Result<(Message, usize)> {
    match message {
        Message::Shared {
            offset,
            len: body,
            frame,
        } => match &peer.shared.shm {
            #[cfg(any(target_os = "linux", windows))]
            Some(shm) => {
                let header = crate::protocol::shared_message::SHARED_HEADER;
                let size = (len - header).saturating_add(body as usize);
                Ok((shm.resolve(offset, body, frame)?, size))
            }
            _ => {
                let _ = (offset, body, frame);
                Err(unsettled())
            }
        },
        Message::Release { offsets } => match &peer.shared.shm {
            #[cfg(any(target_os = "linux", windows))]
            Some(shm) => shm.release(&offsets).map(|()| (Message::Pong, len)),
            _ => {
                let _ = offsets;
                Err(unsettled())
            }
        },
        other => Ok((other, len)),
    }
}

fn unsettled() -> Error {
    Error::Protocol(
        "the peer sent a shared-memory message, which the handshake did not settle".into(),
    )
}

/// The answers to our requests in one burst, taken from the pending table
/// and handed to their requesters together, their credit returned in one
/// go.
#[derive(Default)]
struct Answers {
    read: Vec<(RequestId, Reply)>,
    deliveries: Vec<Delivery>,
}

impl Answers {
    fn settle(&mut self, peer: &Peer) -> Result<()> {
        if self.read.is_empty() {
            return Ok(());
        }
        let shared = &peer.shared;
        let (messages, bytes) = shared
            .pending
            .complete_all(self.read.drain(..), &mut self.deliveries);
        // Checked before anything is handed over, but the answers are
        // genuine either way.
        let released = shared.credit.release(messages, bytes);
        self.deliveries.drain(..).for_each(Delivery::deliver);
        shared.answered.fetch_add(1, Ordering::Relaxed);
        released.map_err(Error::Protocol)
    }
}

/// The next frame, polling for it busily first when `busy` says so.
async fn next_frame(reader: &mut FrameReader, busy: Option<&BusyPoll>) -> Result<Option<Frame>> {
    let drained = reader.is_drained();
    let mut next = std::pin::pin!(reader.read());
    // Under the hint: the busy poll polls again in a moment, and `next` is
    // awaited the ordinary way below before this task sleeps, so the
    // socket may leave the event loop meanwhile (`crate::unix_socket`).
    if let Some(busy) = busy.filter(|_| drained)
        && let Some(frame) = busy.poll(std::pin::pin!(Busily(next.as_mut()))).await
    {
        return frame;
    }
    next.await
}

async fn dispatch(
    peer: &Peer,
    inbound: &Arc<dyn Inbound>,
    message: Message,
    len: usize,
    answers: &mut Answers,
) -> Result<()> {
    let shared = &peer.shared;
    match message {
        Message::Response { id, body } => {
            answers.read.push((id, Reply::Ok(body)));
            Ok(())
        }
        Message::Error {
            id,
            code,
            message,
            data,
        } => {
            let reply = Reply::Err {
                code,
                message,
                data,
            };
            answers.read.push((id, reply));
            Ok(())
        }
        Message::Item { id, body } => {
            // An item travels on our credit like a notification.
            let cost = shared.admitted.admit(len).map_err(Error::Protocol)?;
            if let Fate::Unwanted { cancel } = shared.pending.item(id, body, cost) {
                shared.give_back(cost, When::Later);
                if cancel {
                    let _ = shared.outbox.push(message::cancel(id), When::Later);
                }
            }
            Ok(())
        }
        Message::End { id } => match shared.pending.end(id) {
            Some(cost) => shared
                .credit
                .release(1, u64::from(cost.0))
                .map_err(Error::Protocol),
            None => Ok(()),
        },
        Message::Request { id, body } => request(peer, inbound, id, body, len).await,
        Message::Notification { body } => {
            let cost = shared.admitted.admit(len).map_err(Error::Protocol)?;
            let call = Call {
                peer: peer.clone(),
                id: None,
                body,
            };
            let (work, order) = inbound.notification(call);
            let job = Job {
                work: CatchUnwind(work),
                cost,
            };
            match order {
                Order::InOrder => shared.in_order.handle(peer, job).await,
                Order::Concurrent => {
                    let task_peer = peer.clone();
                    shared.running.spawn(peer, async move {
                        let outcome = job.work.await;
                        super::notification_done(&task_peer, outcome, job.cost, When::Now);
                    });
                }
            }
            Ok(())
        }
        Message::Cancel { id } => {
            if let Some((task, cost)) = shared.running.take_request(id) {
                task.abort();
                let cancelled = Failure::new(code::CANCELLED, "cancelled by the requester");
                answer(peer, id, Ok(Err(cancelled)), cost, When::Later);
            }
            Ok(())
        }
        Message::Credit { messages, bytes } => shared
            .credit
            .release(messages, bytes)
            .map_err(Error::Protocol),
        Message::Ping => {
            let pong = Control {
                pong: true,
                ..Control::default()
            };
            shared.outbox.signal(pong, When::Later);
            Ok(())
        }
        Message::Pong => Ok(()),
        // Resolved before dispatch.
        Message::Shared { .. } | Message::Release { .. } => Err(unsettled()),
    }
}

async fn request(
    peer: &Peer,
    inbound: &Arc<dyn Inbound>,
    id: RequestId,
    body: Body,
    len: usize,
) -> Result<()> {
    let shared = &peer.shared;
    let cost = shared.admitted.admit(len).map_err(Error::Protocol)?;
    if shared.running.has_request(id) {
        return Err(Error::Protocol(format!(
            "the peer reused request id {id} while that request is still running"
        )));
    }
    // Counted before the drain check: a drain either sees this request
    // running, or this request sees the drain and refuses (both SeqCst).
    let _handling = shared.running.handling(peer);
    if shared.lifecycle.is_draining() {
        let refusal = Failure::new(code::SHUTTING_DOWN, "the server is shutting down");
        answer(peer, id, Ok(Err(refusal)), cost, When::Later);
        return Ok(());
    }
    let call = Call {
        peer: peer.clone(),
        id: Some(id),
        body,
    };
    let mut work = CatchUnwind(inbound.request(call));
    match work.poll_once().await {
        Poll::Ready(outcome) => answer(peer, id, outcome, cost, When::Later),
        Poll::Pending => {
            shared
                .running
                .spawn_request(peer, id, cost, work, move |peer, outcome, cost| {
                    answer(peer, id, outcome, cost, When::Now)
                })
        }
    }
    Ok(())
}

/// Sends the one answer a request gets (`when`: the reader sends it with the
/// rest of its burst), and stops counting it against the peer's credit.
fn answer(
    peer: &Peer,
    id: RequestId,
    outcome: Result<Outcome<Answer>, String>,
    cost: Cost,
    when: When,
) {
    let frame = match outcome {
        Ok(Ok(Answer(Some(frame)))) => frame,
        Ok(Ok(Answer(None))) => error_frame(
            peer,
            id,
            Failure::new(code::INTERNAL_ERROR, "the handler produced no response"),
        ),
        Ok(Err(failure)) => error_frame(peer, id, failure),
        Err(panic) => {
            tracing::warn!("a handler panicked: {panic}");
            let failure = Failure::new(code::INTERNAL_ERROR, format!("handler panicked: {panic}"));
            error_frame(peer, id, failure)
        }
    };
    let frame = peer.divert(frame).unwrap_or_else(|e| {
        let failure = Failure::new(
            code::INTERNAL_ERROR,
            format!("the result could not be sent: {e}"),
        );
        error_frame(peer, id, failure)
    });
    // The request stays counted against the peer's credit until the answer
    // is written: a peer that never reads cannot make answers pile up here.
    let _ = peer.shared.outbox.push_answer(frame, cost, when);
}

/// An error answer, with the handler's error value encoded in the
/// connection's format when it gave one.
fn error_frame(peer: &Peer, id: RequestId, failure: Failure) -> crate::transport::OutFrame {
    let data = failure
        .data
        .as_ref()
        .and_then(|data| serializer::encode(peer.format(), data).ok())
        .unwrap_or_default();
    message::error(id, failure.code, &failure.message, &data, peer.max_frame())
}
