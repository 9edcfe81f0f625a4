//! One live connection after the handshake, in both directions.
//!
//! A connection runs two tasks. The reader decodes frames: responses complete
//! the matching entry in the pending table; requests go to the [`Inbound`]
//! handler, which runs right in the reader until it first has to wait and
//! then in a task of its own (so slow handlers never block others and
//! responses may leave out of order). Sending goes through the [`outbox`]:
//! straight to the socket when nothing is queued, else gathered by the
//! writer task into few system calls.
//!
//! When the reader stops (the peer left, or sent garbage), every pending
//! request fails at once and running handlers are aborted: nothing waits on a
//! peer that is gone.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::AbortHandle;

use crate::connector::Format;
use crate::error::{Error, Result};
use crate::protocol::{Body, Message, RequestId, code, message, serializer};
use crate::transport::{FrameReader, FrameWriter, OutFrame, Spare};

mod outbox;
use outbox::Outbox;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a connection does with what the other side sends. Implemented by the
/// router; the peer knows nothing of routes beyond their names.
pub trait Inbound: Send + Sync + 'static {
    /// Handles a request and returns the sealed response frame (success or
    /// error) for `id`. `None` would be a bug in the implementation; the
    /// requester then gets an internal error.
    fn request(&self, peer: Peer, id: RequestId, body: Body) -> BoxFuture<Option<OutFrame>>;

    /// Handles a notification; nothing is sent back (the output is `None`).
    fn notification(&self, peer: Peer, body: Body) -> BoxFuture<Option<OutFrame>>;
}

const OPEN: u8 = 0;
const CLOSED: u8 = 1;
const DISCONNECTED: u8 = 2;

enum Reply {
    Ok(Body),
    Err { code: i32, message: String },
}

struct Shared {
    client_id: String,
    /// Large frames the outbox has finished writing, for reuse.
    sent: Spare,
    peer_pid: Option<u32>,
    format: Format,
    max_frame: u32,
    default_timeout: Option<Duration>,
    outbox: Outbox,
    next_id: AtomicU64,
    state: AtomicU8,
    pending: Mutex<HashMap<RequestId, oneshot::Sender<Result<Reply>>>>,
    running: Mutex<HashMap<RequestId, AbortHandle>>,
    active: AtomicUsize,
    idle: Notify,
    draining: AtomicBool,
    done: watch::Sender<bool>,
    flushed: watch::Sender<bool>,
    end_error: Mutex<Option<Error>>,
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
    // A panic while holding these short critical sections leaves the maps
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

    /// The body format the handshake settled.
    pub fn format(&self) -> Format {
        self.shared.format
    }

    pub(crate) fn max_frame(&self) -> u32 {
        self.shared.max_frame
    }

    /// Memory to build the next outgoing frame in: the spare large buffer
    /// if an earlier large frame has been written, else a fresh one.
    pub(crate) fn buffer(&self) -> Vec<u8> {
        self.shared.sent.take(0).unwrap_or_default()
    }

    /// True once the connection is closed, from either side.
    pub fn is_closed(&self) -> bool {
        self.shared.state.load(Ordering::SeqCst) != OPEN
    }

    /// Sends a request and waits for its response, with the connection's
    /// default timeout (none unless configured).
    pub async fn request<T, R>(&self, route: &str, params: &T) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.request_with(route, params, self.shared.default_timeout)
            .await
    }

    /// Sends a request and waits at most `timeout` for its response. On
    /// timeout the request is cancelled on the other side; the connection
    /// stays usable.
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
        let (tx, rx) = oneshot::channel();
        lock(&shared.pending).insert(id, tx);
        let mut guard = PendingGuard {
            shared,
            id,
            armed: true,
        };
        // Checked after inserting: a concurrent close either sees our entry
        // or we see its state.
        self.check_open()?;
        shared
            .outbox
            .send(frame)
            .await
            .map_err(|_| self.closed_error())?;
        let outcome = match timeout {
            None => rx.await,
            Some(limit) => match tokio::time::timeout(limit, rx).await {
                Ok(outcome) => outcome,
                Err(_) => return Err(Error::Timeout(limit)),
            },
        };
        guard.armed = false;
        let reply = outcome.map_err(|_| self.closed_error())??;
        match reply {
            Reply::Ok(mut body) => serializer::decode_body(shared.format, &mut body),
            Reply::Err { code, message } => Err(remote_error(route, code, message)),
        }
    }

    /// Sends a notification: no response, no waiting beyond queueing it.
    pub async fn throw<T: Serialize + ?Sized>(&self, route: &str, params: &T) -> Result<()> {
        self.check_open()?;
        let frame = message::notification(
            self.buffer(),
            route,
            self.shared.format,
            params,
            self.shared.max_frame,
        )?;
        self.shared
            .outbox
            .send(frame)
            .await
            .map_err(|_| self.closed_error())
    }

    fn check_open(&self) -> Result<()> {
        match self.shared.state.load(Ordering::SeqCst) {
            OPEN => Ok(()),
            _ => Err(self.closed_error()),
        }
    }

    fn closed_error(&self) -> Error {
        match self.shared.state.load(Ordering::SeqCst) {
            CLOSED => Error::Closed,
            _ => Error::Disconnected,
        }
    }
}

fn remote_error(route: &str, code: i32, message: String) -> Error {
    match code {
        code::METHOD_NOT_FOUND => Error::NoSuchRoute {
            route: route.to_owned(),
        },
        code::INVALID_PARAMS | code::PARSE_ERROR => Error::BadRequest { message },
        code::SHUTTING_DOWN => Error::ShuttingDown,
        code => Error::HandlerFailed { code, message },
    }
}

/// Removes a pending entry and tells the other side to stop working on it
/// when a request is abandoned (timeout, or the caller dropped the future).
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: RequestId,
    armed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.armed && lock(&self.shared.pending).remove(&self.id).is_some() {
            // Best effort: if the queue is full the handler just runs to the end.
            self.shared.outbox.queue(message::cancel(self.id));
        }
    }
}

/// Settings for starting a connection.
pub struct Settings {
    /// The client's id (ours on the client side, the caller's on the server).
    pub client_id: String,
    /// The other side's process id, where the transport tells.
    pub peer_pid: Option<u32>,
    /// The settled body format.
    pub format: Format,
    /// Largest frame either side sends.
    pub max_frame: u32,
    /// Timeout for requests that do not give one.
    pub default_timeout: Option<Duration>,
}

/// Owns one connection's tasks; dropping it closes the connection.
pub struct Connection {
    peer: Peer,
    reader: AbortHandle,
    writer: AbortHandle,
}

impl Connection {
    /// Starts the reader and writer tasks on an authenticated link.
    pub fn start(
        reader: FrameReader,
        writer: FrameWriter,
        settings: Settings,
        inbound: Arc<dyn Inbound>,
    ) -> Connection {
        let sent = Spare::default();
        let shared = Arc::new(Shared {
            outbox: Outbox::new(writer.into_inner(), sent.clone()),
            sent,
            client_id: settings.client_id,
            peer_pid: settings.peer_pid,
            format: settings.format,
            max_frame: settings.max_frame,
            default_timeout: settings.default_timeout,
            next_id: AtomicU64::new(1),
            state: AtomicU8::new(OPEN),
            pending: Mutex::default(),
            running: Mutex::default(),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            draining: AtomicBool::new(false),
            done: watch::Sender::new(false),
            flushed: watch::Sender::new(false),
            end_error: Mutex::default(),
        });
        let peer = Peer { shared };
        let writer = tokio::spawn(write_task(peer.clone())).abort_handle();
        let reader = tokio::spawn(read_loop(reader, peer.clone(), inbound)).abort_handle();
        Connection {
            peer,
            reader,
            writer,
        }
    }

    /// The handle for sending to the other side.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Waits until the other side has gone (or the connection was closed).
    pub async fn closed(&self) {
        let mut done = self.peer.shared.done.subscribe();
        let _ = done.wait_for(|done| *done).await;
    }

    /// Why the connection ended, if it ended badly (a protocol violation, an
    /// oversized frame, an i/o error). `None` after a clean close.
    pub fn take_error(&self) -> Option<Error> {
        lock(&self.peer.shared.end_error).take()
    }

    /// Stops taking new requests (they get a "shutting down" error), waits
    /// for running handlers to finish and their responses to be queued, then
    /// closes.
    pub async fn drain(&self) {
        let shared = &self.peer.shared;
        shared.draining.store(true, Ordering::SeqCst);
        loop {
            let idle = shared.idle.notified();
            if shared.active.load(Ordering::SeqCst) == 0 {
                break;
            }
            idle.await;
        }
        self.close();
    }

    /// Closes from this side: pending requests fail with [`Error::Closed`],
    /// queued frames are still written, then the stream is shut down.
    pub fn close(&self) {
        end(&self.peer.shared, CLOSED);
    }

    /// Closes, then waits (at most `limit`) until everything queued has been
    /// written, so a process can exit right after without losing messages.
    pub async fn close_and_flush(&self, limit: Duration) {
        self.close();
        let mut flushed = self.peer.shared.flushed.subscribe();
        let _ = tokio::time::timeout(limit, flushed.wait_for(|done| *done)).await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        end(&self.peer.shared, CLOSED);
        self.reader.abort();
        // The writer finishes flushing on its own after `end`; it is aborted
        // only if the OS never lets it finish.
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

/// Moves the connection out of the open state (once), failing everything
/// that waits on the other side and stopping handlers whose answers can no
/// longer be delivered.
fn end(shared: &Shared, state: u8) {
    if shared
        .state
        .compare_exchange(OPEN, state, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return;
    }
    let error = || match state {
        CLOSED => Error::Closed,
        _ => Error::Disconnected,
    };
    for (_, waiter) in lock(&shared.pending).drain() {
        let _ = waiter.send(Err(error()));
    }
    // Their answers can no longer be delivered. (A graceful drain lets them
    // finish before it gets here.)
    for (_, task) in lock(&shared.running).drain() {
        task.abort();
    }
    shared.outbox.close();
    shared.done.send_replace(true);
}

async fn write_task(peer: Peer) {
    let shared = &peer.shared;
    if let Err(e) = shared.outbox.run_writer().await {
        record(shared, Error::Io(e));
        end(shared, DISCONNECTED);
    }
    shared.flushed.send_replace(true);
}

async fn read_loop(mut reader: FrameReader, peer: Peer, inbound: Arc<dyn Inbound>) {
    let shared = &peer.shared;
    loop {
        if reader.is_drained() {
            // About to ask the OS for more, likely in vain. Let the tasks
            // this reader just woke (a requester whose response came in) run
            // and send first: they are on the critical path, this read is not.
            tokio::task::yield_now().await;
        }
        let frame = match reader.read().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                record(shared, e);
                break;
            }
        };
        if !reader.is_drained() {
            // More frames already arrived with this one: a burst. Whatever it
            // makes us send goes out together in one write.
            shared.outbox.hold();
        }
        let message = match Message::parse(frame) {
            Ok(message) => message,
            Err(e) => {
                record(shared, e);
                break;
            }
        };
        match message {
            Message::Response { id, body } => complete(shared, id, Ok(Reply::Ok(body))),
            Message::Error { id, code, message } => {
                complete(shared, id, Ok(Reply::Err { code, message }))
            }
            Message::Request { id, body } => {
                if shared.draining.load(Ordering::SeqCst) {
                    let frame =
                        message::error(id, code::SHUTTING_DOWN, "the server is shutting down");
                    let _ = shared.outbox.send(frame).await;
                    continue;
                }
                handle_request(&peer, &inbound, id, body).await;
            }
            Message::Notification { body } => {
                let work = inbound.notification(peer.clone(), body);
                let done = ActiveGuard::new(&peer);
                tokio::spawn(async move {
                    let _done = done;
                    if let Err(panic) = CatchUnwind(work).await {
                        eprintln!(
                            "switchboard: notification handler panicked: {}",
                            panic_message(&panic)
                        );
                    }
                });
            }
            Message::Cancel { id } => {
                if let Some(task) = lock(&shared.running).remove(&id) {
                    task.abort();
                }
            }
        }
    }
    end(shared, DISCONNECTED);
}

/// Runs a request's handler. Most handlers answer without waiting, so the
/// first poll happens right here: no task, no thread hop. A handler that has
/// to wait continues in a task of its own, where a cancel can reach it.
async fn handle_request(peer: &Peer, inbound: &Arc<dyn Inbound>, id: RequestId, body: Body) {
    let shared = &peer.shared;
    // Only a handler still running in its own task can share the id; with
    // none active (the common case) there is nothing to look up.
    if shared.active.load(Ordering::SeqCst) > 0 && lock(&shared.running).contains_key(&id) {
        let frame = message::error(
            id,
            code::INVALID_REQUEST,
            "a request with this id is already running",
        );
        let _ = shared.outbox.send(frame).await;
        return;
    }
    let mut work = CatchUnwind(inbound.request(peer.clone(), id, body));
    // Polled with the reader's waker: if the handler waits, the task below
    // polls it again at once and so re-registers its own waker.
    let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut work).poll(cx))).await;
    match first {
        Poll::Ready(outcome) => {
            let _ = shared.outbox.send(response_frame(id, outcome)).await;
        }
        Poll::Pending => spawn_request(peer, id, work),
    }
}

fn response_frame(
    id: RequestId,
    outcome: std::result::Result<Option<OutFrame>, Box<dyn Any + Send>>,
) -> OutFrame {
    match outcome {
        Ok(Some(frame)) => frame,
        Ok(None) => message::error(id, code::INTERNAL_ERROR, "the handler produced no response"),
        Err(panic) => message::error(
            id,
            code::INTERNAL_ERROR,
            &format!("handler panicked: {}", panic_message(&panic)),
        ),
    }
}

fn spawn_request(peer: &Peer, id: RequestId, work: CatchUnwind<Option<OutFrame>>) {
    let done = ActiveGuard::new(peer);
    let task_peer = peer.clone();
    // The map stays locked until the handle is in it, so the task's own
    // removal cannot run first.
    let mut running = lock(&peer.shared.running);
    let task = tokio::spawn(async move {
        let _done = done;
        let frame = response_frame(id, work.await);
        if lock(&task_peer.shared.running).remove(&id).is_some() {
            let _ = task_peer.shared.outbox.send(frame).await;
        }
    });
    running.insert(id, task.abort_handle());
}

fn complete(shared: &Shared, id: RequestId, reply: Result<Reply>) {
    // An unknown id is a response to a request we already gave up on.
    if let Some(waiter) = lock(&shared.pending).remove(&id) {
        let _ = waiter.send(reply);
    }
}

fn record(shared: &Shared, error: Error) {
    lock(&shared.end_error).get_or_insert(error);
}

/// Counts a running handler so `drain` can wait for it, also when the task
/// is aborted.
struct ActiveGuard {
    peer: Peer,
}

impl ActiveGuard {
    fn new(peer: &Peer) -> ActiveGuard {
        peer.shared.active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard { peer: peer.clone() }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.peer.shared.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.peer.shared.idle.notify_waiters();
        }
    }
}

/// Turns a panic inside a handler future into an error value.
struct CatchUnwind<T>(BoxFuture<T>);

impl<T> Future for CatchUnwind<T> {
    type Output = std::result::Result<T, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}
