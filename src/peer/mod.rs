//! One live connection after the handshake, in both directions.
//!
//! This module holds what the parts share (the connection's state behind
//! every [`Peer`] handle, and the types the router implements). The parts,
//! each in its own module:
//! - [`connection`]: starting the connection's tasks, closing and draining;
//! - [`requester`]: our requests and notifications: sending them, waiting
//!   for answers;
//! - [`reader`]: the read loop, where every frame from the peer arrives,
//!   and [`reading`]: who polls it (its task, or a caller awaiting an
//!   answer);
//! - [`call`]: one incoming call, decoded, and the way back for its answer;
//! - [`incoming`]: a streamed answer arriving for one of our requests;
//! - [`outbox`]: the shared write side, which never makes a sender wait;
//! - [`credit`]: flow control, what we may send and what we admitted;
//! - [`pending`]: our requests awaiting answers, and [`deadlines`]: the
//!   sweep that times them out;
//! - [`running`] and [`in_order`]: handlers in tasks of their own, and
//!   notifications handled in arrival order;
//! - [`keepalive`]: pings on a silent connection, and dropping a dead peer;
//! - [`busy_poll`]: polling for a moment before sleeping, where an answer
//!   is likely to come within microseconds;
//! - [`lifecycle`]: open, draining, closed, and why.
//!
//! When the connection ends (the peer left, broke the protocol or fell
//! silent, or this side closed it), every pending request fails at once,
//! running handlers are aborted and queued notifications dropped: nothing
//! waits on a peer that is gone, and nothing runs on for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::Error;
use crate::protocol::code;
use crate::protocol::format::Format;
use crate::transport::Spare;

mod busy_poll;
mod call;
mod catch;
mod connection;
mod credit;
mod deadlines;
mod in_order;
mod incoming;
mod keepalive;
mod lifecycle;
mod loan;
mod outbox;
mod pending;
mod reader;
mod reading;
mod requester;
mod running;
mod shm;

use busy_poll::BusyPoll;
pub use call::{Answer, Call, Responder};
pub use connection::{Connection, Settings};
use credit::{Admitted, Cost, SendCredit};
use in_order::InOrder;
pub use incoming::Incoming;
use lifecycle::{End, Lifecycle};
pub use loan::Loan;
use outbox::{Control, Outbox, When};
use pending::Pending;
pub(crate) use requester::failure_to_error;
use requester::remote_error;
use running::Running;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a handler did not succeed: an error code (PROTOCOL.md §4), a
/// message for the other side, and optionally the handler's error value.
#[derive(Debug, Clone)]
pub struct Failure {
    /// See [`crate::protocol::code`].
    pub code: i32,
    /// For the other side (and the logs).
    pub message: String,
    /// The error as a value, for a caller that decodes it (typed errors).
    pub data: Option<serde_json::Value>,
}

impl Failure {
    /// A failure with this code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            data: None,
        }
    }
}

/// A handler's outcome.
pub type Outcome<T> = std::result::Result<T, Failure>;

/// How notifications to a route are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// One after another, in the order they were sent (the default).
    InOrder,
    /// Each as soon as it arrives, alongside the others.
    Concurrent,
}

/// What a connection does with what the other side sends. Implemented by the
/// router; the peer knows nothing of routes beyond their names.
pub trait Inbound: Send + Sync + 'static {
    /// Handles a request: its answer, or why not.
    fn request(&self, call: Call) -> BoxFuture<Outcome<Answer>>;

    /// Handles a notification; a failure is reported, never sent back.
    fn notification(&self, call: Call) -> (BoxFuture<Outcome<()>>, Order);
}

/// Called with connection-level failures that have no caller to return to
/// (a failed notification handler, a peer that broke the protocol).
pub type ErrorHook = Arc<dyn Fn(&Error) + Send + Sync>;

struct Shared {
    client_id: String,
    peer_pid: Option<u32>,
    peer_uid: Option<u32>,
    format: Format,
    max_frame: u32,
    default_timeout: Option<Duration>,
    report: Option<ErrorHook>,
    /// Frame memory for reuse, both ways (see [`Spare`]).
    spare: Spare,
    outbox: Outbox,
    next_id: AtomicU64,
    lifecycle: Lifecycle,
    pending: Pending,
    credit: SendCredit,
    admitted: Arc<Admitted>,
    running: Running,
    in_order: InOrder,
    /// The read loop, polled by its task or by a caller awaiting an answer.
    reading: reading::Reading,
    /// The reader's polling before it sleeps (current-thread runtimes).
    read_poll: BusyPoll,
    /// A caller's polling for answers (multi-thread runtimes).
    answer_poll: BusyPoll,
    /// Bursts of answers the reader has handed over, for a polling caller
    /// to see that its thread has work again.
    answered: AtomicU64,
    /// Large bodies through shared memory, when the handshake settled it.
    shm: Option<shm::Shm>,
}

/// A handle to the other side of one connection: send it requests and
/// notifications. Cheap to clone; all clones share the connection.
#[derive(Clone)]
pub struct Peer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("client_id", &self.shared.client_id)
            .field("format", &self.shared.format)
            .field("closed", &self.is_closed())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these short critical sections leaves the data
    // consistent, so poisoning carries no information here.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Peer {
    /// The id of the client end of this connection.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// The process id of the other side, from the operating system (Unix
    /// socket peer credentials, named pipe client/server process); `None`
    /// over TCP or where the OS does not say. Useful for matching a
    /// connection to the child process it came from.
    pub fn process_id(&self) -> Option<u32> {
        self.shared.peer_pid
    }

    /// The user id of the other side's process, from the operating system
    /// (Unix sockets only); `None` elsewhere.
    pub fn user_id(&self) -> Option<u32> {
        self.shared.peer_uid
    }

    /// The body format the handshake settled.
    pub fn format(&self) -> Format {
        self.shared.format
    }

    pub(crate) fn max_frame(&self) -> u32 {
        self.shared.max_frame
    }

    /// The largest message this side encodes: the frame limit, or more
    /// where bodies can go through shared memory.
    pub(crate) fn max_message(&self) -> u32 {
        match &self.shared.shm {
            #[cfg(any(target_os = "linux", windows))]
            Some(shm) => shm.max_message(),
            _ => self.shared.max_frame,
        }
    }

    /// True if large bodies on this connection go through shared memory
    /// (PROTOCOL.md §9): a local connection on Linux, both sides willing.
    pub fn shares_memory(&self) -> bool {
        self.shared.shm.is_some()
    }

    /// Bytes of this side's shared-memory pool the peer holds now (bodies
    /// it received and has not dropped yet), or `None` without shared
    /// memory. At most [`SharedMemory::pool_bytes`](crate::SharedMemory):
    /// beyond it, large bodies take the socket.
    pub fn shared_memory_used(&self) -> Option<usize> {
        match &self.shared.shm {
            #[cfg(any(target_os = "linux", windows))]
            Some(shm) => Some(shm.used()),
            _ => None,
        }
    }

    /// A buffer of `len` bytes to write a byte payload into, in this
    /// connection's shared memory when it has room there: frozen into
    /// [`Bytes`](crate::Bytes) and sent, it reaches the peer without a
    /// copy. Elsewhere an ordinary buffer (see [`Loan`]).
    pub fn loan(&self, len: usize) -> Loan {
        #[cfg(any(target_os = "linux", windows))]
        if let Some(slot) = self.shared.shm.as_ref().and_then(|shm| shm.loan(len)) {
            return Loan::shared(slot, len);
        }
        Loan::plain(len)
    }

    /// `frame` as it should leave: through shared memory if its body is
    /// large and the connection has it.
    fn divert(
        &self,
        frame: crate::transport::OutFrame,
    ) -> crate::error::Result<crate::transport::OutFrame> {
        match &self.shared.shm {
            #[cfg(any(target_os = "linux", windows))]
            Some(shm) => shm.divert(frame),
            _ => Ok(frame),
        }
    }

    /// Memory to build the next outgoing frame in: the spare large buffer
    /// if an earlier large frame has been written, else a small one.
    pub(crate) fn buffer(&self) -> Vec<u8> {
        let spare = &self.shared.spare;
        spare.take(0).unwrap_or_else(|| spare.take_small(0))
    }

    /// True once the connection is closed, from either side.
    pub fn is_closed(&self) -> bool {
        self.shared.lifecycle.end().is_some()
    }

    /// Waits until the connection has ended, from either side.
    pub async fn closed(&self) {
        self.shared.lifecycle.ended().await;
    }
}

impl Shared {
    /// Ends the connection (once): every pending request fails, handlers
    /// whose answers can no longer be delivered stop, queued frames are
    /// still written and the stream is shut down.
    fn end_with(&self, end: End, why: Option<Error>) {
        if let Some(why) = why {
            self.lifecycle.record(why);
        }
        if !self.lifecycle.finish(end) {
            return;
        }
        self.credit.close();
        #[cfg(any(target_os = "linux", windows))]
        if let Some(shm) = &self.shm {
            shm.close();
        }
        self.pending.fail_all(|| end.error());
        self.running.abort_all();
        self.in_order.clear();
        self.outbox.close();
        self.lifecycle.announce_end();
    }

    /// We are done with a message the peer sent on its credit (a
    /// notification handled, a stream item consumed or unwanted): the peer
    /// may send that much more.
    fn give_back(&self, cost: Cost, when: When) {
        self.admitted.release(1, u64::from(cost.0));
        self.outbox.signal(
            Control {
                credit_messages: 1,
                credit_bytes: u64::from(cost.0),
                ..Control::default()
            },
            when,
        );
    }

    /// Reports a failure that has no caller to return to.
    fn report(&self, error: Error) {
        tracing::warn!(client_id = %self.client_id, "{error}");
        if let Some(report) = &self.report {
            report(&error);
        }
    }
}

/// A notification's handler finished: its credit goes back to the peer
/// (`when`: the reader sends it with the rest of its burst), and a failure
/// is reported (nobody else would hear of it).
fn notification_done(
    peer: &Peer,
    outcome: std::result::Result<Outcome<()>, String>,
    cost: Cost,
    when: When,
) {
    let shared = &peer.shared;
    shared.give_back(cost, when);
    let failure = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(failure)) => failure,
        Err(panic) => Failure::new(code::INTERNAL_ERROR, format!("handler panicked: {panic}")),
    };
    shared.report(Error::NotificationFailed {
        code: failure.code,
        message: failure.message,
    });
}
