//! Our requests awaiting their answers.
//!
//! Every request gets exactly one answer, also a cancelled one (PROTOCOL.md
//! §5), so an entry stays until its answer arrives even after its requester
//! gave up: the answer is what returns the request's credit. A request
//! answered by a stream receives its items here too, until the end.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

use super::credit::Cost;
use super::lock;
use crate::error::{Error, Result};
use crate::protocol::{Body, RequestId};

/// What came back for a request.
pub(super) enum Reply {
    Ok(Body),
    Err {
        code: i32,
        message: String,
        data: Option<Vec<u8>>,
    },
}

/// What arrives for a request answered by a stream.
pub(super) enum Event {
    /// One item, and the credit it holds until consumed.
    Item(Body, Cost),
    /// A plain answer: one value (a stream of one), or an error.
    Reply(Reply),
    /// The stream is complete.
    End,
    /// The connection ended first.
    Lost(Error),
}

enum Waiter {
    Once(oneshot::Sender<Result<Reply>>),
    Stream(mpsc::UnboundedSender<Event>),
}

struct Entry {
    /// `None` once the requester gave up (timeout, dropped future or stream).
    waiter: Option<Waiter>,
    cost: Cost,
}

/// What became of a stream item.
pub(super) enum Delivery {
    /// Its requester has it (and returns its credit once consumed).
    Delivered,
    /// Nobody wants it: its credit goes back now. `cancel` when the
    /// request should be cancelled, as its requester cannot take a stream.
    Unwanted { cancel: bool },
}

#[derive(Default)]
pub(super) struct Pending {
    entries: Mutex<HashMap<RequestId, Entry>>,
}

impl Pending {
    /// Registers a request about to be sent.
    pub(super) fn insert(&self, id: RequestId, cost: Cost) -> oneshot::Receiver<Result<Reply>> {
        let (tx, rx) = oneshot::channel();
        self.put(id, cost, Waiter::Once(tx));
        rx
    }

    /// Registers a request whose answer is read as a stream. The channel is
    /// unbounded in code but not in fact: every item in it holds the
    /// peer's credit until consumed.
    pub(super) fn insert_stream(
        &self,
        id: RequestId,
        cost: Cost,
    ) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.put(id, cost, Waiter::Stream(tx));
        rx
    }

    fn put(&self, id: RequestId, cost: Cost, waiter: Waiter) {
        lock(&self.entries).insert(
            id,
            Entry {
                waiter: Some(waiter),
                cost,
            },
        );
    }

    /// Delivers an answer; returns the credit it frees, or `None` for an id
    /// that is not ours (ignored, as PROTOCOL.md says).
    pub(super) fn complete(&self, id: RequestId, reply: Reply) -> Option<Cost> {
        let entry = lock(&self.entries).remove(&id)?;
        match entry.waiter {
            Some(Waiter::Once(waiter)) => {
                let _ = waiter.send(Ok(reply));
            }
            Some(Waiter::Stream(events)) => {
                let _ = events.send(Event::Reply(reply));
            }
            None => {}
        }
        Some(entry.cost)
    }

    /// A stream's end; returns the credit it frees, like [`Pending::complete`].
    pub(super) fn end(&self, id: RequestId) -> Option<Cost> {
        let entry = lock(&self.entries).remove(&id)?;
        match entry.waiter {
            Some(Waiter::Once(waiter)) => {
                let _ = waiter.send(Err(streamed_to_plain_request()));
            }
            Some(Waiter::Stream(events)) => {
                let _ = events.send(Event::End);
            }
            None => {}
        }
        Some(entry.cost)
    }

    /// Delivers one stream item.
    pub(super) fn item(&self, id: RequestId, body: Body, cost: Cost) -> Delivery {
        let mut entries = lock(&self.entries);
        let Some(entry) = entries.get_mut(&id) else {
            return Delivery::Unwanted { cancel: false };
        };
        match entry.waiter.take() {
            Some(Waiter::Stream(events)) => match events.send(Event::Item(body, cost)) {
                Ok(()) => {
                    entry.waiter = Some(Waiter::Stream(events));
                    Delivery::Delivered
                }
                Err(_) => Delivery::Unwanted { cancel: true },
            },
            Some(Waiter::Once(waiter)) => {
                let _ = waiter.send(Err(streamed_to_plain_request()));
                Delivery::Unwanted { cancel: true }
            }
            None => Delivery::Unwanted { cancel: false },
        }
    }

    /// The requester gave up. True if the request was still unanswered, so
    /// the peer should be told to stop working on it.
    pub(super) fn abandon(&self, id: RequestId) -> bool {
        match lock(&self.entries).get_mut(&id) {
            Some(entry) => entry.waiter.take().is_some(),
            None => false,
        }
    }

    /// Forgets a request that never left (the connection closed first).
    pub(super) fn remove(&self, id: RequestId) {
        lock(&self.entries).remove(&id);
    }

    /// The connection ended: every waiting requester gets `error()`.
    pub(super) fn fail_all(&self, error: impl Fn() -> Error) {
        for (_, entry) in lock(&self.entries).drain() {
            match entry.waiter {
                Some(Waiter::Once(waiter)) => {
                    let _ = waiter.send(Err(error()));
                }
                Some(Waiter::Stream(events)) => {
                    let _ = events.send(Event::Lost(error()));
                }
                None => {}
            }
        }
    }
}

fn streamed_to_plain_request() -> Error {
    Error::Unsupported(
        "a streamed answer to `request`: call this route with `request_stream`".into(),
    )
}
