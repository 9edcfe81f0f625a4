//! The read loop: every frame the peer sends comes through here and goes
//! where it belongs. Answers complete our pending requests and return our
//! credit; requests and notifications are admitted against the credit we
//! granted and handed to the [`Inbound`]; cancels, credit and pings are
//! bookkeeping.
//!
//! The reader never waits for the writer: answers are pushed to the outbox,
//! which never blocks. That is what keeps two peers flooding each other with
//! requests from waiting on each other forever.

use std::sync::Arc;
use std::task::Poll;

use super::call::{Answer, Call};
use super::catch::CatchUnwind;
use super::credit::Cost;
use super::in_order::Job;
use super::lifecycle::End;
use super::outbox::Control;
use super::pending::{Delivery, Reply};
use super::{Failure, Inbound, Order, Outcome, Peer};
use crate::error::{Error, Result};
use crate::protocol::{Body, Message, RequestId, code, message, serializer};
use crate::transport::FrameReader;

pub(super) async fn read_loop(mut reader: FrameReader, peer: Peer, inbound: Arc<dyn Inbound>) {
    let why = loop {
        if reader.is_drained() {
            // About to ask the OS for more, likely in vain. Let the tasks
            // this reader just woke (a requester whose response came in) run
            // and send first: they are on the critical path, this read is not.
            tokio::task::yield_now().await;
        }
        let frame = match reader.read().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break None,
            Err(e) => break Some(e),
        };
        if !reader.is_drained() {
            // More frames already arrived with this one: a burst. Whatever it
            // makes us send goes out together in one write.
            peer.shared.outbox.hold();
        }
        let len = frame.len();
        let dispatched = match Message::parse(frame) {
            Ok(message) => dispatch(&peer, &inbound, message, len).await,
            Err(e) => Err(e),
        };
        if let Err(e) = dispatched {
            break Some(e);
        }
    };
    peer.shared.end_with(End::Disconnected, why);
}

async fn dispatch(
    peer: &Peer,
    inbound: &Arc<dyn Inbound>,
    message: Message,
    len: usize,
) -> Result<()> {
    let shared = &peer.shared;
    match message {
        Message::Response { id, body } => answered(peer, id, Reply::Ok(body)),
        Message::Error {
            id,
            code,
            message,
            data,
        } => answered(
            peer,
            id,
            Reply::Err {
                code,
                message,
                data,
            },
        ),
        Message::Item { id, body } => {
            // An item travels on our credit like a notification.
            let cost = shared.admitted.admit(len).map_err(Error::Protocol)?;
            if let Delivery::Unwanted { cancel } = shared.pending.item(id, body, cost) {
                shared.give_back(cost);
                if cancel {
                    let _ = shared.outbox.push(message::cancel(id));
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
                        super::notification_done(&task_peer, outcome, job.cost);
                    });
                }
            }
            Ok(())
        }
        Message::Cancel { id } => {
            if let Some((task, cost)) = shared.running.take_request(id) {
                task.abort();
                let cancelled = Failure::new(code::CANCELLED, "cancelled by the requester");
                answer(peer, id, Ok(Err(cancelled)), cost);
            }
            Ok(())
        }
        Message::Credit { messages, bytes } => shared
            .credit
            .release(messages, bytes)
            .map_err(Error::Protocol),
        Message::Ping => {
            shared.outbox.signal(Control {
                pong: true,
                ..Control::default()
            });
            Ok(())
        }
        Message::Pong => Ok(()),
    }
}

/// An answer to one of our requests: its requester gets it, and its credit
/// comes back.
fn answered(peer: &Peer, id: RequestId, reply: Reply) -> Result<()> {
    let shared = &peer.shared;
    match shared.pending.complete(id, reply) {
        Some(cost) => shared
            .credit
            .release(1, u64::from(cost.0))
            .map_err(Error::Protocol),
        None => Ok(()),
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
    if shared.lifecycle.is_draining() {
        let refusal = Failure::new(code::SHUTTING_DOWN, "the server is shutting down");
        answer(peer, id, Ok(Err(refusal)), cost);
        return Ok(());
    }
    let call = Call {
        peer: peer.clone(),
        id: Some(id),
        body,
    };
    let mut work = CatchUnwind(inbound.request(call));
    match work.poll_once().await {
        Poll::Ready(outcome) => answer(peer, id, outcome, cost),
        Poll::Pending => {
            shared
                .running
                .spawn_request(peer, id, cost, work, move |peer, outcome, cost| {
                    answer(peer, id, outcome, cost)
                })
        }
    }
    Ok(())
}

/// Sends the one answer a request gets, and stops counting it against the
/// peer's credit.
fn answer(peer: &Peer, id: RequestId, outcome: Result<Outcome<Answer>, String>, cost: Cost) {
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
    // The request stays counted against the peer's credit until the answer
    // is written: a peer that never reads cannot make answers pile up here.
    let _ = peer.shared.outbox.push_answer(frame, cost);
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
