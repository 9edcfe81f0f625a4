//! Our requests awaiting their answers.
//!
//! Every request gets exactly one answer, also a cancelled one (PROTOCOL.md
//! §5), so an entry stays until its answer arrives even after its requester
//! gave up: the answer is what returns the request's credit. A request
//! answered by a stream receives its items here too, until the end.
//!
//! Entries may carry their request's deadline, for the connection's sweep
//! ([`super::deadlines`]) to time out.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

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
    /// For the sweep to time out; `None` when the requester times itself.
    deadline: Option<Deadline>,
}

/// When a request times out, and the limit it was given (for the error).
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    pub(super) at: Instant,
    pub(super) limit: Duration,
}

impl Deadline {
    /// `limit` from now.
    pub(super) fn after(limit: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + limit,
            limit,
        }
    }

    /// `work`'s output, or [`Error::Timeout`] if the deadline comes first.
    pub(super) async fn bound<F: std::future::Future>(self, work: F) -> Result<F::Output> {
        tokio::time::timeout_at(self.at, work)
            .await
            .map_err(|_| Error::Timeout(self.limit))
    }
}

/// A request just registered.
pub(super) struct Registered<W> {
    /// The requester's end of the answer.
    pub(super) waiter: W,
    /// Requests now in flight, this one included.
    pub(super) in_flight: usize,
    /// The sweep times this request out: its requester needs no timer.
    pub(super) swept: bool,
}

/// An answer taken from the table, not yet handed to its requester.
pub(super) struct Delivery(oneshot::Sender<Result<Reply>>, Reply);

impl Delivery {
    /// Hands the answer over (a requester that gave up no longer wants it).
    pub(super) fn deliver(self) {
        let _ = self.0.send(Ok(self.1));
    }
}

/// What became of a stream item.
pub(super) enum Fate {
    /// Its requester has it (and returns its credit once consumed).
    Delivered,
    /// Nobody wants it: its credit goes back now. `cancel` when the
    /// request should be cancelled, as its requester cannot take a stream.
    Unwanted { cancel: bool },
}

#[derive(Default)]
pub(super) struct Pending {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    entries: HashMap<RequestId, Entry, BuildHasherDefault<IdHasher>>,
    /// When the sweep runs next, if there is one. A deadline no earlier is
    /// the sweep's to keep; an earlier one is left to its requester.
    sweep_at: Option<Instant>,
}

impl Pending {
    /// Registers a request about to be sent, with the deadline it has.
    pub(super) fn insert(
        &self,
        id: RequestId,
        cost: Cost,
        deadline: Option<Deadline>,
    ) -> Registered<oneshot::Receiver<Result<Reply>>> {
        let (tx, rx) = oneshot::channel();
        self.put(id, cost, Waiter::Once(tx), deadline).with(rx)
    }

    /// Registers a request whose answer is read as a stream (no deadline:
    /// its items come as fast as its consumer takes them). The channel is
    /// unbounded in code but not in fact: every item in it holds the peer's
    /// credit until consumed.
    pub(super) fn insert_stream(
        &self,
        id: RequestId,
        cost: Cost,
    ) -> Registered<mpsc::UnboundedReceiver<Event>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.put(id, cost, Waiter::Stream(tx), None).with(rx)
    }

    fn put(
        &self,
        id: RequestId,
        cost: Cost,
        waiter: Waiter,
        deadline: Option<Deadline>,
    ) -> Registered<()> {
        let mut table = lock(&self.table);
        // Decided under the lock the sweep reschedules under, so a sweep
        // cannot move past a deadline it has not seen.
        let swept = match (deadline, table.sweep_at) {
            (Some(deadline), Some(sweep_at)) => deadline.at >= sweep_at,
            _ => false,
        };
        table.entries.insert(
            id,
            Entry {
                waiter: Some(waiter),
                cost,
                deadline: deadline.filter(|_| swept),
            },
        );
        Registered {
            waiter: (),
            in_flight: table.entries.len(),
            swept,
        }
    }

    /// The sweep runs for the first time at `at`.
    pub(super) fn sweep_from(&self, at: Instant) {
        lock(&self.table).sweep_at = Some(at);
    }

    /// Times out every request whose deadline has passed: its requester
    /// gets [`Error::Timeout`], and its id is returned so the peer can be
    /// told to stop (the entry stays until the answer comes, which returns
    /// the credit). Also schedules the next sweep: at the earliest deadline
    /// left, and at the latest `horizon` from now.
    pub(super) fn expire(&self, now: Instant, horizon: Duration) -> (Vec<RequestId>, Instant) {
        let mut table = lock(&self.table);
        let mut expired = Vec::new();
        let mut next = now + horizon;
        for (id, entry) in &mut table.entries {
            let Some(deadline) = entry.deadline else {
                continue;
            };
            if deadline.at > now {
                next = next.min(deadline.at);
                continue;
            }
            entry.deadline = None;
            if let Some(Waiter::Once(waiter)) = entry.waiter.take() {
                let _ = waiter.send(Err(Error::Timeout(deadline.limit)));
                expired.push(*id);
            }
        }
        table.sweep_at = Some(next);
        (expired, next)
    }

    /// Takes the answers of a burst from the table at once (one lock);
    /// returns what to hand to their requesters, and the credit they free
    /// (messages, bytes). Ids that are not ours are ignored, as PROTOCOL.md
    /// says. A requester whose answer is here is woken when `deliveries` is
    /// handed over, after the lock: one wake-up for a whole burst's worth.
    pub(super) fn complete_all(
        &self,
        answers: impl Iterator<Item = (RequestId, Reply)>,
        deliveries: &mut Vec<Delivery>,
    ) -> (u32, u64) {
        let mut table = lock(&self.table);
        let (mut messages, mut bytes) = (0, 0);
        for (id, reply) in answers {
            let Some(entry) = table.entries.remove(&id) else {
                continue;
            };
            messages += 1;
            bytes += u64::from(entry.cost.0);
            match entry.waiter {
                Some(Waiter::Once(waiter)) => deliveries.push(Delivery(waiter, reply)),
                Some(Waiter::Stream(events)) => {
                    let _ = events.send(Event::Reply(reply));
                }
                None => {}
            }
        }
        (messages, bytes)
    }

    /// A stream's end; returns the credit it frees, or `None` for an id
    /// that is not ours.
    pub(super) fn end(&self, id: RequestId) -> Option<Cost> {
        let entry = lock(&self.table).entries.remove(&id)?;
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
    pub(super) fn item(&self, id: RequestId, body: Body, cost: Cost) -> Fate {
        let mut table = lock(&self.table);
        let Some(entry) = table.entries.get_mut(&id) else {
            return Fate::Unwanted { cancel: false };
        };
        match entry.waiter.take() {
            Some(Waiter::Stream(events)) => match events.send(Event::Item(body, cost)) {
                Ok(()) => {
                    entry.waiter = Some(Waiter::Stream(events));
                    Fate::Delivered
                }
                Err(_) => Fate::Unwanted { cancel: true },
            },
            Some(Waiter::Once(waiter)) => {
                let _ = waiter.send(Err(streamed_to_plain_request()));
                Fate::Unwanted { cancel: true }
            }
            None => Fate::Unwanted { cancel: false },
        }
    }

    /// The requester gave up. True if the request was still unanswered, so
    /// the peer should be told to stop working on it.
    pub(super) fn abandon(&self, id: RequestId) -> bool {
        match lock(&self.table).entries.get_mut(&id) {
            Some(entry) => entry.waiter.take().is_some(),
            None => false,
        }
    }

    /// Forgets a request that never left (the connection closed first).
    pub(super) fn remove(&self, id: RequestId) {
        lock(&self.table).entries.remove(&id);
    }

    /// The connection ended: every waiting requester gets `error()`.
    pub(super) fn fail_all(&self, error: impl Fn() -> Error) {
        for (_, entry) in lock(&self.table).entries.drain() {
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

/// Hashes our own request ids: they count up from one, chosen by us, so
/// a multiplication spreads them well and no peer can pick collisions
/// (SipHash, the default, costs more than the rest of a lookup).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8 | u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl<W> Registered<W> {
    fn with<V>(self, waiter: V) -> Registered<V> {
        Registered {
            waiter,
            in_flight: self.in_flight,
            swept: self.swept,
        }
    }
}

fn streamed_to_plain_request() -> Error {
    Error::Unsupported(
        "a streamed answer to `request`: call this route with `request_stream`".into(),
    )
}
