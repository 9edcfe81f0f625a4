//! Request deadlines, kept by one sweep per connection instead of a timer
//! per request.
//!
//! A timer per request is costly where it matters most: registering one
//! takes a lock shared with the runtime's other threads, and while no other
//! timer is set it also wakes the thread that waits for I/O so that it
//! recomputes its sleep: one thread wake-up per request for a caller that
//! makes one request at a time. Requests with the connection's default
//! timeout ([`Config::request_timeout`]) all expire in the order they were
//! made, so one sweep that wakes at the earliest deadline in the pending
//! table, and at least once per default timeout, times every one of them
//! out on time; a request registers its deadline in the table and needs no
//! timer. Only a request with a shorter timeout of its own than the next
//! sweep still times itself (see `Pending::insert`).
//!
//! [`Config::request_timeout`]: crate::Config::request_timeout

use std::time::Duration;

use tokio::time::Instant;

use super::Peer;
use super::outbox::When;
use crate::protocol::message;

/// Runs until the connection ends, sweeping first at `first` (what the
/// pending table was told). `horizon` is the default request timeout: no
/// request that has it can expire before the next sweep.
pub(super) async fn sweep(peer: Peer, first: Instant, horizon: Duration) {
    let shared = &peer.shared;
    let mut next = first;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = shared.lifecycle.ended() => return,
        }
        let (expired, after) = shared.pending.expire(Instant::now(), horizon);
        for id in expired {
            // The requester already has its `Timeout`; the peer may stop.
            let _ = shared.outbox.push(message::cancel(id), When::Now);
        }
        next = after;
    }
}
