//! Starting and ending one connection: its tasks (reader, writer,
//! keepalive, deadline sweep), and closing, draining and flushing it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::busy_poll::{self, BusyPoll};
use super::credit::{Admitted, SendCredit};
use super::in_order::InOrder;
use super::lifecycle::{End, Lifecycle};
use super::outbox::Outbox;
use super::pending::Pending;
use super::reading::Reading;
use super::running::Running;
use super::{ErrorHook, Inbound, Peer, Shared, deadlines, keepalive, reader};
use crate::config::{Config, Window};
use crate::error::Error;
use crate::protocol::format::Format;
use crate::protocol::handshake::ShmLink;
use crate::transport::{FrameReader, FrameWriter, Spare};

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
    /// Shared memory for large bodies, if the handshake settled it.
    pub shm: Option<ShmLink>,
    /// The connection runs over the shared-memory ring.
    pub ring: bool,
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
        // A ring's reader spins by itself, yielding between slices; on a
        // multi-thread runtime each yield of a caller running the loop
        // would wake the loop's task on another thread too (see
        // `reading`), which cost more than the hand-over it saves.
        let callers = !settings.ring || busy_poll::on_current_thread();
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
            reading: Reading::new(callers),
            read_poll: BusyPoll::new(settings.config.busy_poll, busy_poll::READ_SLICE),
            answer_poll: BusyPoll::new(settings.config.busy_poll, busy_poll::ANSWER_SLICE),
            answered: AtomicU64::new(0),
            #[cfg(any(target_os = "linux", windows))]
            shm: settings
                .shm
                .map(|link| super::shm::Shm::new(link, settings.max_frame)),
            #[cfg(not(any(target_os = "linux", windows)))]
            shm: settings.shm.map(|link| match link {}),
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
        let read = reader::read_loop(reader, peer.clone(), inbound);
        // Entering a span costs every poll of the read loop, the hottest
        // future there is, some hundred instructions even with nobody
        // listening (more with `tracing`'s `log` feature): it is entered
        // only where a subscriber wanted it.
        peer.shared.reading.start(match span.is_disabled() {
            true => Box::pin(read),
            false => Box::pin(read.instrument(span.clone())),
        });
        let mut tasks = vec![tokio::spawn(reading_task(peer.clone())).abort_handle()];
        if let Some(horizon) = peer.shared.default_timeout.filter(|t| !t.is_zero()) {
            let first = Instant::now() + horizon;
            peer.shared.pending.sweep_from(first);
            let sweep = deadlines::sweep(peer.clone(), first, horizon).instrument(span.clone());
            tasks.push(tokio::spawn(sweep).abort_handle());
        }
        #[cfg(any(target_os = "linux", windows))]
        if peer.shared.shm.is_some() {
            let releases = release_task(peer.clone()).instrument(span.clone());
            tasks.push(tokio::spawn(releases).abort_handle());
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

impl Connection {
    /// Closes and stops reading now, which lets the socket go (the writer
    /// ends by itself once it has written what was queued), for an owner
    /// that closes a connection others still hold (`Client::close` on one
    /// of its clones). Dropping the last holder does the same.
    pub fn shut_down(&self) {
        self.close();
        self.peer.shared.reading.stop();
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shut_down();
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

/// Polls the read loop whenever no waiting caller does (see
/// [`super::reading`]).
async fn reading_task(peer: Peer) {
    let reading = &peer.shared.reading;
    std::future::poll_fn(|cx| reading.poll_task(cx)).await;
    // The loop ends the connection as it ends; this is for one that
    // panicked.
    peer.shared.end_with(End::Disconnected, None);
}

async fn write_task(peer: Peer) {
    let shared = &peer.shared;
    if let Err(e) = shared.outbox.run_writer().await {
        shared.end_with(End::Disconnected, Some(Error::Io(e)));
    }
    shared.lifecycle.mark_flushed();
}

/// Hands bodies of the peer's that we are done with back to it, as they
/// are dropped (PROTOCOL.md §9). A task, because a body may be dropped
/// anywhere, even under the outbox's lock.
#[cfg(any(target_os = "linux", windows))]
async fn release_task(peer: Peer) {
    use crate::protocol::shared_message;
    let Some(shm) = &peer.shared.shm else {
        return;
    };
    loop {
        let offsets = shm.releases().next().await;
        for chunk in offsets.chunks(shared_message::MAX_RELEASES) {
            if peer
                .shared
                .outbox
                .push(shared_message::release(chunk), super::outbox::When::Now)
                .is_err()
            {
                return;
            }
        }
    }
}
