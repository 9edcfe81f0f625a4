//! Handlers that run in tasks of their own: requests that had to wait,
//! notifications handled concurrently, and the in-order notification worker.
//! A cancel reaches a request's task here, the end of the connection aborts
//! them all, and a graceful drain waits until none is left.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::credit::Cost;
use super::{Peer, lock};
use crate::protocol::RequestId;

#[derive(Default)]
pub(super) struct Running {
    /// Requests by id, with the credit their answer gives back.
    requests: Mutex<HashMap<RequestId, (AbortHandle, Cost)>>,
    /// Every other handler task, by a number of its own.
    others: Mutex<HashMap<u64, AbortHandle>>,
    next_other: AtomicU64,
    active: AtomicUsize,
    idle: Notify,
}

impl Running {
    /// True if a request with this id is running in a task.
    pub(super) fn has_request(&self, id: RequestId) -> bool {
        // With no task running (the common case) there is nothing to look up.
        self.active.load(Ordering::SeqCst) > 0 && lock(&self.requests).contains_key(&id)
    }

    /// Takes a running request out, so that whoever took it answers it:
    /// its own task when it finishes, or a cancel.
    pub(super) fn take_request(&self, id: RequestId) -> Option<(AbortHandle, Cost)> {
        lock(&self.requests).remove(&id)
    }

    /// Runs a request's handler in a task; `answer` runs at its end unless a
    /// cancel took the request first.
    pub(super) fn spawn_request<F, A>(
        &self,
        peer: &Peer,
        id: RequestId,
        cost: Cost,
        work: F,
        answer: A,
    ) where
        F: Future + Send + 'static,
        F::Output: Send,
        A: FnOnce(&Peer, F::Output, Cost) + Send + 'static,
    {
        let done = ActiveGuard::new(peer);
        let task_peer = peer.clone();
        // The map stays locked until the handle is in it, so the task's own
        // removal cannot run first.
        let mut requests = lock(&self.requests);
        let task = tokio::spawn(async move {
            let _done = done;
            let outcome = work.await;
            let taken = task_peer.shared.running.take_request(id);
            if let Some((_, cost)) = taken {
                answer(&task_peer, outcome, cost);
            }
        });
        requests.insert(id, (task.abort_handle(), cost));
    }

    /// Runs other handler work in a task that the end of the connection
    /// aborts and a drain waits for.
    pub(super) fn spawn(&self, peer: &Peer, work: impl Future<Output = ()> + Send + 'static) {
        let done = ActiveGuard::new(peer);
        let key = self.next_other.fetch_add(1, Ordering::Relaxed);
        let task_peer = peer.clone();
        let mut others = lock(&self.others);
        let task = tokio::spawn(async move {
            let _done = done;
            work.await;
            lock(&task_peer.shared.running.others).remove(&key);
        });
        others.insert(key, task.abort_handle());
    }

    /// Aborts every task (their answers could not be delivered anyway).
    pub(super) fn abort_all(&self) {
        for (_, (task, _)) in lock(&self.requests).drain() {
            task.abort();
        }
        for (_, task) in lock(&self.others).drain() {
            task.abort();
        }
    }

    /// Counts a request the reader is handling itself (checking, calling
    /// its handler, queueing an answer that is ready at once) until the
    /// guard drops, so a drain that starts meanwhile, on another worker,
    /// waits for that answer to be queued instead of closing before it.
    pub(super) fn handling(&self, peer: &Peer) -> ActiveGuard {
        ActiveGuard::new(peer)
    }

    /// Waits until no handler task is left.
    pub(super) async fn idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Counts a running task so a drain can wait for it, also when the task is
/// aborted.
pub(super) struct ActiveGuard {
    peer: Peer,
}

impl ActiveGuard {
    fn new(peer: &Peer) -> ActiveGuard {
        peer.shared.running.active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard { peer: peer.clone() }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let running = &self.peer.shared.running;
        if running.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            running.idle.notify_waiters();
        }
    }
}
