//! A streamed answer arriving for one of our requests.
//!
//! Items wait in the request's pending channel, each holding the credit the
//! peer spent on it; taking an item returns that credit, so a producer runs
//! at most one window ahead of its consumer. Dropping the stream before its
//! end cancels the request and returns the credit of what was never read.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::outbox::When;
use super::pending::{Event, Reply};
use super::{Peer, remote_error};
use crate::error::Result;
use crate::protocol::{RequestId, message, serializer};

/// The receiving end of a streamed answer, decoding items into `R`.
pub struct Incoming<R> {
    peer: Peer,
    id: RequestId,
    route: Arc<str>,
    events: mpsc::UnboundedReceiver<Event>,
    /// The end, an error or a plain answer arrived: nothing more comes.
    done: bool,
    item: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Incoming<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("route", &self.route)
            .field("id", &self.id)
            .field("done", &self.done)
            .finish()
    }
}

impl<R: DeserializeOwned> Incoming<R> {
    pub(super) fn new(
        peer: Peer,
        id: RequestId,
        route: &str,
        events: mpsc::UnboundedReceiver<Event>,
    ) -> Incoming<R> {
        Incoming {
            peer,
            id,
            route: route.into(),
            events,
            done: false,
            item: PhantomData,
        }
    }

    /// The next item, `None` after the last.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let Some(event) = std::task::ready!(self.events.poll_recv(cx)) else {
            self.done = true;
            return Poll::Ready(None);
        };
        let format = self.peer.format();
        let next = match event {
            Event::Item(mut body, cost) => {
                self.peer.shared.give_back(cost, When::Now);
                serializer::decode_body(format, &mut body)
            }
            Event::Reply(Reply::Ok(mut body)) => {
                self.done = true;
                serializer::decode_body(format, &mut body)
            }
            Event::Reply(Reply::Err {
                code,
                message,
                data,
            }) => {
                self.done = true;
                Err(remote_error(&self.route, code, message, data, format))
            }
            Event::End => {
                self.done = true;
                return Poll::Ready(None);
            }
            Event::Lost(error) => {
                self.done = true;
                Err(error)
            }
        };
        Poll::Ready(Some(next))
    }
}

impl<R> Drop for Incoming<R> {
    fn drop(&mut self) {
        let shared = &self.peer.shared;
        if !self.done && shared.pending.abandon(self.id) {
            let _ = shared.outbox.push(message::cancel(self.id), When::Now);
        }
        // Abandoning dropped the sender: what is queued is all there is.
        while let Ok(event) = self.events.try_recv() {
            if let Event::Item(_, cost) = event {
                shared.give_back(cost, When::Now);
            }
        }
    }
}
