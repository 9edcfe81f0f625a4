//! One incoming request or notification, as the [`Inbound`](super::Inbound)
//! sees it, and the way back for its answer.
//!
//! The peer owns the wire: a [`Call`] decodes its parameters in the
//! connection's format, and its [`Responder`] encodes the answer (a value,
//! an error, or a stream of items and an end) into frames. What handles
//! the call (the router) sees serde values and never a frame or a buffer.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::outbox::When;
use super::{Failure, Outcome, Peer};
use crate::error::Error;
use crate::protocol::{Body, RequestId, code, message, serializer};
use crate::transport::OutFrame;

/// A request (with an id) or a notification, not yet decoded.
pub struct Call {
    pub(super) peer: Peer,
    pub(super) id: Option<RequestId>,
    pub(super) body: Body,
}

impl Call {
    /// The route it is addressed to.
    pub fn route(&self) -> &str {
        self.body.route()
    }

    /// The connection it came over.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Decodes the parameters. A body that does not decode into `T` is the
    /// caller's mistake ([`code::INVALID_PARAMS`]), naming the route.
    pub fn open<T: DeserializeOwned>(mut self) -> Outcome<(T, Responder)> {
        let format = self.peer.format();
        let params = serializer::decode_body(format, &mut self.body).map_err(|e| {
            Failure::new(
                code::INVALID_PARAMS,
                format!("route {:?}: {e}", self.body.route()),
            )
        })?;
        // The request's own memory carries the answer (a large one goes
        // back to the reader for the next large frame instead).
        let buffer = self.body.into_small_buffer();
        Ok((
            params,
            Responder {
                peer: self.peer,
                id: self.id,
                buffer,
            },
        ))
    }
}

/// Where a call's answer goes. For a notification, answers go nowhere.
pub struct Responder {
    peer: Peer,
    id: Option<RequestId>,
    buffer: Option<Vec<u8>>,
}

/// A request's answer, ready to send: a value's response frame, or the end
/// of a stream. For a notification, nothing.
pub struct Answer(pub(super) Option<OutFrame>);

impl Responder {
    /// True if nobody waits for an answer (a notification).
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }

    /// The connection the answer goes over.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    fn take_buffer(&mut self) -> Vec<u8> {
        self.buffer.take().unwrap_or_else(|| self.peer.buffer())
    }

    /// The answer is this value.
    pub fn value<T: Serialize + ?Sized>(mut self, value: &T) -> Outcome<Answer> {
        let Some(id) = self.id else {
            return Ok(Answer(None));
        };
        let (format, max) = (self.peer.format(), self.peer.max_message());
        message::response(self.take_buffer(), id, format, value, max)
            .map(|frame| Answer(Some(frame)))
            .map_err(unsendable)
    }

    /// Sends one item of a streamed answer, waiting while the requester
    /// has no room for it (its consumer is slower than this producer). An
    /// error means the connection ended: stop producing. The item is
    /// encoded before the wait, so the future does not borrow it.
    pub fn item<'a, T: Serialize + ?Sized>(
        &'a mut self,
        item: &T,
    ) -> impl Future<Output = Outcome<()>> + Send + use<'a, T> {
        let frame = match self.id {
            None => Ok(None),
            // A graceful shutdown waits for running handlers: a stream
            // ends rather than keep it waiting forever.
            Some(_) if self.peer.shared.lifecycle.is_draining() => Err(Failure::new(
                code::SHUTTING_DOWN,
                "the server is shutting down",
            )),
            Some(id) => {
                let (format, max) = (self.peer.format(), self.peer.max_message());
                message::item(self.take_buffer(), id, format, item, max)
                    .map(Some)
                    .map_err(unsendable)
            }
        };
        let peer = &self.peer;
        async move {
            let Some(frame) = frame? else {
                return Ok(());
            };
            let gone = |e: Error| Failure::new(code::INTERNAL_ERROR, e.to_string());
            peer.take_credit(&frame, None).await.map_err(gone)?;
            peer.push(frame, When::Now).map_err(gone).map(drop)
        }
    }

    /// A streamed answer is complete.
    pub fn end(self) -> Answer {
        Answer(self.id.map(message::end))
    }
}

fn unsendable(error: Error) -> Failure {
    Failure::new(
        code::INTERNAL_ERROR,
        format!("could not send the result: {error}"),
    )
}
