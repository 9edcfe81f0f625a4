//! Our requests awaiting their answers.
//!
//! Every request gets exactly one answer, also a cancelled one (PROTOCOL.md
//! §5), so an entry stays until its answer arrives even after its requester
//! gave up: the answer is what returns the request's credit.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::credit::Cost;
use super::lock;
use crate::error::{Error, Result};
use crate::protocol::{Body, RequestId};

/// What came back for a request.
pub(super) enum Reply {
    Ok(Body),
    Err { code: i32, message: String },
}

struct Entry {
    /// `None` once the requester gave up (timeout, dropped future).
    waiter: Option<oneshot::Sender<Result<Reply>>>,
    cost: Cost,
}

#[derive(Default)]
pub(super) struct Pending {
    entries: Mutex<HashMap<RequestId, Entry>>,
}

impl Pending {
    /// Registers a request about to be sent.
    pub(super) fn insert(&self, id: RequestId, cost: Cost) -> oneshot::Receiver<Result<Reply>> {
        let (tx, rx) = oneshot::channel();
        lock(&self.entries).insert(
            id,
            Entry {
                waiter: Some(tx),
                cost,
            },
        );
        rx
    }

    /// Delivers an answer; returns the credit it frees, or `None` for an id
    /// that is not ours (ignored, as PROTOCOL.md says).
    pub(super) fn complete(&self, id: RequestId, reply: Reply) -> Option<Cost> {
        let entry = lock(&self.entries).remove(&id)?;
        if let Some(waiter) = entry.waiter {
            let _ = waiter.send(Ok(reply));
        }
        Some(entry.cost)
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
            if let Some(waiter) = entry.waiter {
                let _ = waiter.send(Err(error()));
            }
        }
    }
}
