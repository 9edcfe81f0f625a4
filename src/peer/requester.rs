//! What this side sends on its own account: requests, and waiting for
//! their answers, and notifications.
//!
//! A request is encoded, waits for the peer's credit, is registered in the
//! pending table with its deadline and handed to the outbox: at once if it
//! is alone in flight, else queued and flushed after one yield with the
//! others of its burst. Its caller then waits for the answer, polling for
//! it first where that pays (see [`super::busy_poll`]); the connection's
//! sweep, or a timer of the request's own, ends the wait at the deadline.
//! A caller that gives up (timeout, dropped future) leaves a guard behind
//! that cancels the request on the other side.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::busy_poll;
use super::credit::Cost;
use super::incoming::Incoming;
use super::lifecycle::End;
use super::outbox::{Owed, When};
use super::pending::{Deadline, Registered, Reply};
use super::reading::Driving;
use super::{Failure, Peer, Shared};
use crate::error::{Error, Result};
use crate::protocol::format::Format;
use crate::protocol::{RequestId, code, message, serializer};
use crate::transport::{HEADER_LEN, OutFrame};

impl Peer {
    /// Sends a request and waits for its response, with the connection's
    /// default timeout ([`Config::request_timeout`](crate::Config::request_timeout)).
    pub async fn request<T, R>(&self, route: &str, params: &T) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.request_with(route, params, self.shared.default_timeout)
            .await
    }

    /// Sends a request and waits at most `timeout` for its response
    /// (waiting for the peer to have room included). On timeout the request
    /// is cancelled on the other side; the connection stays usable.
    pub async fn request_timeout<T, R>(
        &self,
        route: &str,
        params: &T,
        timeout: Duration,
    ) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.request_with(route, params, Some(timeout)).await
    }

    async fn request_with<T, R>(
        &self,
        route: &str,
        params: &T,
        timeout: Option<Duration>,
    ) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let deadline = timeout.map(Deadline::after);
        let shared = &self.shared;
        let (id, registered) = self
            .send_request(route, params, deadline, |id, cost| {
                shared.pending.insert(id, cost, deadline)
            })
            .await?;
        let Registered {
            waiter: answer,
            in_flight: _,
            swept,
        } = registered;
        // While it waits, the caller reads its answer itself where it can
        // (see `reading`).
        let mut answer = Driving::new(&shared.reading, answer);
        let mut guard = PendingGuard {
            shared,
            id,
            armed: true,
        };
        // On a multi-thread runtime the read loop's task runs on another
        // thread: a caller outside the workers polls for its answer, reading
        // it itself, rather than sleep until that thread wakes it (see
        // `busy_poll` for who polls where).
        let early = match busy_poll::caller_should_poll() {
            true => {
                let answered = shared.answered.load(Ordering::Relaxed);
                let progress = || shared.answered.load(Ordering::Relaxed) != answered;
                answer.polling_busily(true);
                let early = shared
                    .answer_poll
                    .poll_until(Pin::new(&mut answer), progress)
                    .await;
                answer.polling_busily(false);
                early
            }
            false => None,
        };
        // The connection's sweep keeps the deadline unless it is sooner
        // than the next sweep; then this request keeps it itself.
        let outcome = match (early, deadline) {
            (Some(outcome), _) => outcome,
            (None, Some(deadline)) if !swept => deadline.bound(answer).await?,
            (None, _) => answer.await,
        };
        guard.armed = false;
        let reply = outcome.map_err(|_| self.closed_error())??;
        match reply {
            Reply::Ok(mut body) => serializer::decode_body(shared.format, &mut body),
            Reply::Err {
                code,
                message,
                data,
            } => Err(remote_error(route, code, message, data, shared.format)),
        }
    }

    /// Sends a request and waits for it to complete, whatever value it
    /// answers with: for routes whose result says nothing (a `()` handler),
    /// with no type to name.
    pub async fn call<T: Serialize + ?Sized>(&self, route: &str, params: &T) -> Result<()> {
        let serde::de::IgnoredAny = self.request(route, params).await?;
        Ok(())
    }

    /// Sends a request whose answer is a stream of items, and returns them
    /// as they arrive: what the API's `Stream` (`stream.rs`, which also
    /// gives `Peer` its public `request_stream`) reads. The peer's credit
    /// for the request is waited for at most the default request timeout.
    pub(crate) async fn request_incoming<T, R>(
        &self,
        route: &str,
        params: &T,
    ) -> Result<Incoming<R>>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let shared = &self.shared;
        let deadline = shared.default_timeout.map(Deadline::after);
        let (id, registered) = self
            .send_request(route, params, deadline, |id, cost| {
                shared.pending.insert_stream(id, cost)
            })
            .await?;
        Ok(Incoming::new(self.clone(), id, route, registered.waiter))
    }

    /// Encodes a request, waits for the peer's credit for it (until
    /// `deadline`), registers it in the pending table with `register` and
    /// sends it. Returns its id and what `register` returned.
    ///
    /// A lone request is written at once. One of several is likely one of
    /// a burst (many callers, or one caller pipelining): it is queued, and
    /// after one yield, in which the others queue theirs, they all leave
    /// with one write.
    async fn send_request<T, W>(
        &self,
        route: &str,
        params: &T,
        deadline: Option<Deadline>,
        register: impl FnOnce(RequestId, Cost) -> Registered<W>,
    ) -> Result<(RequestId, Registered<W>)>
    where
        T: Serialize + ?Sized,
    {
        let shared = &self.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = message::request(
            self.buffer(),
            id,
            route,
            shared.format,
            params,
            self.max_message(),
        )?;
        let cost = self.take_credit(&frame, deadline).await?;
        let registered = register(id, cost);
        let when = match registered.in_flight {
            1 => When::Now,
            _ => When::Later,
        };
        // Checked after registering: a concurrent end either fails our
        // entry or we see it here.
        match self.check_open().and_then(|()| self.push(frame, when)) {
            Ok(Owed::Nothing) => {}
            Ok(Owed::Flush) => {
                let mut sending = Sending {
                    shared,
                    id,
                    sent: false,
                };
                tokio::task::yield_now().await;
                sending.sent = true;
            }
            Err(e) => {
                shared.pending.remove(id);
                return Err(e);
            }
        }
        Ok((id, registered))
    }

    /// Sends a notification: no response. Waits only while the peer has no
    /// room for it (at most the default request timeout).
    pub async fn throw<T: Serialize + ?Sized>(&self, route: &str, params: &T) -> Result<()> {
        self.check_open()?;
        let frame = message::notification(
            self.buffer(),
            route,
            self.shared.format,
            params,
            self.max_message(),
        )?;
        let deadline = self.shared.default_timeout.map(Deadline::after);
        self.take_credit(&frame, deadline).await?;
        // Rides along with a flush someone already owes, else leaves now.
        if self.push(frame, When::Later)? == Owed::Flush {
            self.shared.outbox.flush();
        }
        Ok(())
    }

    /// Waits for the peer's credit for `frame`, until `deadline`.
    pub(super) async fn take_credit(
        &self,
        frame: &OutFrame,
        deadline: Option<Deadline>,
    ) -> Result<Cost> {
        let credit = &self.shared.credit;
        let cost = credit.cost(frame.len() - HEADER_LEN);
        if credit.try_acquire(cost) {
            return Ok(cost);
        }
        let taken = match deadline {
            None => credit.acquire(cost).await,
            Some(deadline) => deadline.bound(credit.acquire(cost)).await?,
        };
        taken.map_err(|_| self.closed_error())?;
        Ok(cost)
    }

    pub(super) fn push(&self, frame: OutFrame, when: When) -> Result<Owed> {
        let frame = self.divert(frame)?;
        self.shared
            .outbox
            .push(frame, when)
            .map_err(|_| self.closed_error())
    }

    fn check_open(&self) -> Result<()> {
        match self.shared.lifecycle.end() {
            None => Ok(()),
            Some(end) => Err(end.error()),
        }
    }

    fn closed_error(&self) -> Error {
        self.shared
            .lifecycle
            .end()
            .unwrap_or(End::Disconnected)
            .error()
    }
}

pub(super) fn remote_error(
    route: &str,
    code: i32,
    message: String,
    data: Option<Vec<u8>>,
    format: Format,
) -> Error {
    match code {
        code::METHOD_NOT_FOUND => Error::NoSuchRoute {
            route: route.to_owned(),
        },
        code::INVALID_PARAMS | code::PARSE_ERROR => Error::BadRequest { message },
        code::SHUTTING_DOWN => Error::ShuttingDown,
        code => Error::HandlerFailed {
            code,
            message,
            data: data.map(|bytes| crate::error::ErrorData::new(format, bytes)),
        },
    }
}

/// A failure seen in this process (a local stream read in place) as the
/// error a remote caller would get.
pub(crate) fn failure_to_error(failure: Failure) -> Error {
    let data = failure
        .data
        .as_ref()
        .and_then(|data| serde_json::to_vec(data).ok());
    remote_error("", failure.code, failure.message, data, Format::Json)
}

/// A request queued for a flush its requester owes after one yield. The
/// flush happens when this is dropped, also if the requester is dropped
/// during the yield: then the request is abandoned and cancelled too, as
/// [`PendingGuard`] does for one already sent.
struct Sending<'a> {
    shared: &'a Shared,
    id: RequestId,
    sent: bool,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        let outbox = &self.shared.outbox;
        if !self.sent && self.shared.pending.abandon(self.id) {
            // Leaves at once, with the request queued ahead of it.
            let _ = outbox.push(message::cancel(self.id), When::Now);
        }
        outbox.flush();
    }
}

/// Tells the other side to stop working on a request its requester
/// abandoned (timeout, or the caller dropped the future). The pending entry
/// stays until the answer comes, which returns the credit.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: RequestId,
    armed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.armed && self.shared.pending.abandon(self.id) {
            let _ = self.shared.outbox.push(message::cancel(self.id), When::Now);
        }
    }
}
