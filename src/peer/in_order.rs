//! Notifications handled one after another, in the order they arrived.
//!
//! A notification whose handler finishes without waiting runs right in the
//! reader. One that waits moves to a worker task, and every notification
//! arriving meanwhile queues behind it; the worker takes them in order and
//! ends when the queue is empty. The queue is bounded by the credit the
//! peer was granted, and it is dropped (the running handler aborted) when
//! the connection ends.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::Poll;

use super::catch::CatchUnwind;
use super::credit::Cost;
use super::outbox::When;
use super::{Outcome, Peer, lock};

/// One notification's handler, not yet finished, and its credit.
pub(super) struct Job {
    pub(super) work: CatchUnwind<Outcome<()>>,
    pub(super) cost: Cost,
}

#[derive(Default)]
pub(super) struct InOrder {
    state: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// A notification is running (in the reader or the worker).
    busy: bool,
}

impl InOrder {
    /// Called by the reader: runs `job` now if nothing is ahead of it, else
    /// queues it behind.
    pub(super) async fn handle(&self, peer: &Peer, mut job: Job) {
        {
            let mut queue = lock(&self.state);
            if queue.busy {
                queue.jobs.push_back(job);
                return;
            }
            queue.busy = true;
        }
        // Only the reader starts work, and no worker runs: polling here
        // cannot overtake anything.
        match job.work.poll_once().await {
            Poll::Ready(outcome) => {
                super::notification_done(peer, outcome, job.cost, When::Later);
                lock(&self.state).busy = false;
            }
            Poll::Pending => {
                let worker_peer = peer.clone();
                peer.shared
                    .running
                    .spawn(peer, async move { work_through(worker_peer, job).await });
            }
        }
    }

    /// Drops queued notifications (the connection ended).
    pub(super) fn clear(&self) {
        lock(&self.state).jobs.clear();
    }
}

async fn work_through(peer: Peer, first: Job) {
    let mut job = first;
    loop {
        let outcome = (&mut job.work).await;
        super::notification_done(&peer, outcome, job.cost, When::Now);
        let next = {
            let mut queue = lock(&peer.shared.in_order.state);
            match queue.jobs.pop_front() {
                Some(next) => next,
                None => {
                    queue.busy = false;
                    return;
                }
            }
        };
        job = next;
    }
}
