//! One live connection after the handshake, in both directions.
//!
//! The parts, each in its own module:
//! - [`reader`]: the read loop, where every frame from the peer arrives;
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{Config, Window};
use crate::connector::Format;
use crate::error::{Error, Result};
use crate::protocol::{RequestId, code, message, serializer};
use crate::transport::{FrameReader, FrameWriter, HEADER_LEN, OutFrame, Spare};

mod busy_poll;
mod call;
mod catch;
mod credit;
mod deadlines;
mod in_order;
mod incoming;
mod keepalive;
mod lifecycle;
mod outbox;
mod pending;
mod reader;
mod running;

use busy_poll::BusyPoll;
pub use call::{Answer, Call, Responder};
use credit::{Admitted, Cost, SendCredit};
use in_order::InOrder;
pub use incoming::Incoming;
use lifecycle::{End, Lifecycle};
use outbox::{Control, Outbox, Owed, When};
use pending::{Deadline, Pending, Registered, Reply};
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
    /// The reader's polling before it sleeps (current-thread runtimes).
    read_poll: BusyPoll,
    /// A caller's polling for answers (multi-thread runtimes).
    answer_poll: BusyPoll,
    /// Bursts of answers the reader has handed over, for a polling caller
    /// to see that its thread has work again.
    answered: AtomicU64,
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

    /// Sends a request and waits for its response, with the connection's
    /// default timeout ([`Config::request_timeout`]).
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
        let deadline = timeout.map(|limit| Deadline {
            at: Instant::now() + limit,
            limit,
        });
        let shared = &self.shared;
        let (id, registered) = self
            .send_request(route, params, deadline, |id, cost| {
                shared.pending.insert(id, cost, deadline)
            })
            .await?;
        let Registered {
            waiter: mut answer,
            in_flight: _,
            swept,
        } = registered;
        let mut guard = PendingGuard {
            shared,
            id,
            armed: true,
        };
        // On a multi-thread runtime the reader runs on another thread: a
        // caller outside the workers polls until answers arrive rather than
        // sleep until that thread wakes it (see `busy_poll` for who polls
        // where).
        let early = match busy_poll::caller_should_poll() {
            true => {
                let answered = shared.answered.load(Ordering::Relaxed);
                let progress = || shared.answered.load(Ordering::Relaxed) != answered;
                let answer = Pin::new(&mut answer);
                shared.answer_poll.poll_until(answer, progress).await
            }
            false => None,
        };
        // The connection's sweep keeps the deadline unless it is sooner
        // than the next sweep; then this request keeps it itself.
        let outcome = match (early, deadline) {
            (Some(outcome), _) => outcome,
            (None, Some(Deadline { at, limit })) if !swept => {
                match tokio::time::timeout_at(at, answer).await {
                    Ok(outcome) => outcome,
                    Err(_) => return Err(Error::Timeout(limit)),
                }
            }
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

    /// Sends a request whose answer is a stream of items (see
    /// [`Stream`](crate::Stream)). The peer's credit for the request is
    /// waited for at most the default request timeout; the items then come
    /// as fast as the consumer takes them, with no overall time limit.
    /// Dropping the stream cancels the request on the other side.
    pub async fn request_stream<T, R>(&self, route: &str, params: &T) -> Result<crate::Stream<R>>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let shared = &self.shared;
        let deadline = shared.default_timeout.map(|limit| Deadline {
            at: Instant::now() + limit,
            limit,
        });
        let (id, registered) = self
            .send_request(route, params, deadline, |id, cost| {
                shared.pending.insert_stream(id, cost)
            })
            .await?;
        Ok(crate::Stream::remote(Incoming::new(
            self.clone(),
            id,
            route,
            registered.waiter,
        )))
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
            shared.max_frame,
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
            self.shared.max_frame,
        )?;
        let deadline = self.shared.default_timeout.map(|limit| Deadline {
            at: Instant::now() + limit,
            limit,
        });
        self.take_credit(&frame, deadline).await?;
        // Rides along with a flush someone already owes, else leaves now.
        if self.push(frame, When::Later)? == Owed::Flush {
            self.shared.outbox.flush();
        }
        Ok(())
    }

    /// Waits for the peer's credit for `frame`, until `deadline`.
    async fn take_credit(&self, frame: &OutFrame, deadline: Option<Deadline>) -> Result<Cost> {
        let credit = &self.shared.credit;
        let cost = credit.cost(frame.len() - HEADER_LEN);
        if credit.try_acquire(cost) {
            return Ok(cost);
        }
        let taken = match deadline {
            None => credit.acquire(cost).await,
            Some(Deadline { at, limit }) => tokio::time::timeout_at(at, credit.acquire(cost))
                .await
                .map_err(|_| Error::Timeout(limit))?,
        };
        taken.map_err(|_| self.closed_error())?;
        Ok(cost)
    }

    fn push(&self, frame: OutFrame, when: When) -> Result<Owed> {
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

fn remote_error(
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

/// What a connection is started with, besides its link.
pub struct Settings {
    /// What carries the connection (`unix`, `pipe`, `tcp`, `amqp`), for
    /// the logs.
    pub transport: &'static str,
    /// The client's id (ours on the client side, the caller's on the server).
    pub client_id: String,
    /// The other side's process id, where the transport tells.
    pub peer_pid: Option<u32>,
    /// The other side's user id, where the transport tells.
    pub peer_uid: Option<u32>,
    /// The settled body format.
    pub format: Format,
    /// Largest frame either side sends.
    pub max_frame: u32,
    /// Budgets and timers; its window is what this side announced.
    pub config: Config,
    /// What the other side announced it accepts in flight.
    pub peer_window: Window,
    /// Where failures without a caller go, besides the log.
    pub report: Option<ErrorHook>,
}

/// Owns one connection's tasks; dropping it closes the connection.
pub struct Connection {
    peer: Peer,
    tasks: Vec<AbortHandle>,
    writer: AbortHandle,
}

impl Connection {
    /// Starts the reader, writer and keepalive tasks on an authenticated
    /// link.
    pub fn start(
        mut reader: FrameReader,
        writer: FrameWriter,
        settings: Settings,
        inbound: Arc<dyn Inbound>,
    ) -> Connection {
        // One connection's frames, read or written, share their memory.
        let spare = Spare::default();
        reader.share_spare(spare.clone());
        let ours = settings.config.window();
        let activity = Arc::new(AtomicBool::new(false));
        reader.watch_activity(Arc::clone(&activity));
        let admitted = Arc::new(Admitted::new(ours));
        let shared = Arc::new(Shared {
            outbox: Outbox::new(writer.into_inner(), spare.clone(), Arc::clone(&admitted)),
            spare,
            client_id: settings.client_id,
            peer_pid: settings.peer_pid,
            peer_uid: settings.peer_uid,
            format: settings.format,
            max_frame: settings.max_frame,
            default_timeout: settings.config.request_timeout,
            report: settings.report,
            next_id: AtomicU64::new(1),
            lifecycle: Lifecycle::new(),
            pending: Pending::default(),
            // Never more than the peer takes, nor more than we would.
            credit: SendCredit::new(settings.peer_window.min(ours)),
            admitted,
            running: Running::default(),
            in_order: InOrder::default(),
            read_poll: BusyPoll::new(settings.config.busy_poll),
            answer_poll: BusyPoll::new(settings.config.busy_poll),
            answered: AtomicU64::new(0),
        });
        // Everything the connection's tasks log says which connection.
        let span = tracing::info_span!(
            "connection",
            transport = settings.transport,
            client_id = %shared.client_id,
            peer_pid = ?shared.peer_pid,
            peer_uid = ?shared.peer_uid,
        );
        let peer = Peer { shared };
        let writer = tokio::spawn(write_task(peer.clone()).instrument(span.clone())).abort_handle();
        let read = reader::read_loop(reader, peer.clone(), inbound).instrument(span.clone());
        let mut tasks = vec![tokio::spawn(read).abort_handle()];
        if let Some(horizon) = peer.shared.default_timeout.filter(|t| !t.is_zero()) {
            let first = Instant::now() + horizon;
            peer.shared.pending.sweep_from(first);
            let sweep = deadlines::sweep(peer.clone(), first, horizon).instrument(span.clone());
            tasks.push(tokio::spawn(sweep).abort_handle());
        }
        // A zero interval would make the timer panic; it means "off".
        if let Some(interval) = settings.config.keepalive.filter(|i| !i.is_zero()) {
            let watch = keepalive::watch(peer.clone(), activity, interval).instrument(span);
            tasks.push(tokio::spawn(watch).abort_handle());
        }
        Connection {
            peer,
            tasks,
            writer,
        }
    }

    /// The handle for sending to the other side.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Waits until the other side has gone (or the connection was closed).
    pub async fn closed(&self) {
        self.peer.closed().await;
    }

    /// Why the connection ended, if it ended badly (a protocol violation, an
    /// oversized frame, an i/o error, a silent peer). `None` after a clean
    /// close.
    pub fn take_error(&self) -> Option<Error> {
        self.peer.shared.lifecycle.take_error()
    }

    /// Stops taking new requests (they get a "shutting down" error), waits
    /// for running handlers to finish and their answers to be queued, then
    /// closes.
    pub async fn drain(&self) {
        let shared = &self.peer.shared;
        shared.lifecycle.start_draining();
        shared.running.idle().await;
        self.close();
    }

    /// Closes from this side: pending requests fail with [`Error::Closed`],
    /// queued frames are still written, then the stream is shut down.
    pub fn close(&self) {
        self.peer.shared.end_with(End::Closed, None);
    }

    /// Closes, then waits (at most `limit`) until everything queued has been
    /// written, so a process can exit right after without losing messages.
    pub async fn close_and_flush(&self, limit: Duration) {
        self.close();
        self.peer.shared.lifecycle.flushed(limit).await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
        for task in &self.tasks {
            task.abort();
        }
        // The writer finishes flushing on its own after the end; it is
        // aborted only if the OS never lets it finish.
        let writer = self.writer.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                writer.abort();
            });
        } else {
            self.writer.abort();
        }
    }
}

async fn write_task(peer: Peer) {
    let shared = &peer.shared;
    if let Err(e) = shared.outbox.run_writer().await {
        shared.end_with(End::Disconnected, Some(Error::Io(e)));
    }
    shared.lifecycle.mark_flushed();
}
